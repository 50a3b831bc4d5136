//! Traces as they arrive in tickets: cut off when the profiler was killed, truncated in transfer, holding events
//! no Kineto version here writes, from ranks whose clocks disagree. The readable part is analysed and the cut is
//! said; what is no trace at all is an error naming the file. Never a panic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use infer_doctor_trace::{Options, TraceError, analyse, analyse_inputs, read_trace};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/trace")
        .join(name)
}

const NCCL: &str = "hta__nccl_parser_config__nccl_data.json.gz";

fn unzipped(name: &str) -> Vec<u8> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture(name)).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    text
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

#[test]
fn a_trace_cut_mid_array_is_analysed_up_to_the_cut_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let whole = read_trace(&fixture(NCCL)).unwrap();
    let text = unzipped(NCCL);
    let cut = write(dir.path(), "cut.json", &text[..text.len() / 2]);
    let trace = read_trace(&cut).unwrap();
    let said = trace.cut.as_deref().expect("the cut is said");
    assert!(
        said.contains("ends early") && said.contains("events before the cut"),
        "{said}"
    );
    assert!(trace.counts.events > 1000 && trace.counts.events < whole.counts.events);
    let analysis = analyse(&trace, &Options::default());
    assert!(analysis.temporal.is_some() && analysis.cut.is_some());
}

#[test]
fn a_truncated_gzip_is_analysed_up_to_where_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture(NCCL)).unwrap();
    let truncated = write(
        dir.path(),
        "truncated.json.gz",
        &bytes[..bytes.len() * 6 / 10],
    );
    let trace = read_trace(&truncated).unwrap();
    assert!(
        trace
            .cut
            .as_deref()
            .is_some_and(|c| c.contains("ends early")),
        "{:?}",
        trace.cut
    );
    assert!(!trace.gpu_ops.is_empty());
}

#[test]
fn unknown_event_kinds_and_odd_fields_are_counted_and_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"traceEvents": [
        {"ph": "X", "cat": "mystery_accelerator_op", "name": "m", "ts": 1, "dur": 2, "pid": 0, "tid": 0},
        {"ph": "Z", "cat": "kernel", "name": "unknown phase", "ts": 1, "dur": 2},
        {"ph": "X", "cat": "kernel", "name": 5, "ts": "3.5", "dur": 2, "args": []},
        {"ph": "X", "cat": "kernel", "name": "gemm", "ts": 10, "dur": 4, "args": {"stream": 7, "correlation": 1}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 8, "dur": 1, "args": {"correlation": 1}},
        {"ph": "X", "cat": "kernel", "name": "later", "ts": 20, "dur": 2, "args": {"stream": "0x7", "correlation": null}}
    ]}"#;
    let path = write(dir.path(), "odd.json", text.as_bytes());
    let trace = read_trace(&path).unwrap();
    assert_eq!(trace.cut, None);
    assert_eq!(trace.counts.events, 6);
    assert_eq!(
        trace
            .counts
            .unknown_categories
            .get("mystery_accelerator_op"),
        Some(&1)
    );
    // The kernel whose args are no object has no stream: not a GPU op. The hex stream reads as HTA reads it (-1).
    assert_eq!(trace.gpu_ops.len(), 1);
    let analysis = analyse(&trace, &Options::default());
    assert_eq!(analysis.temporal.unwrap().span_us, 4.0);
    assert_eq!(analysis.launches.pairs, 1);
}

#[test]
fn files_that_are_no_trace_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty.json", &b""[..]),
        ("text.json", &b"profiler output was here\n"[..]),
        (
            "object.json",
            &br#"{"schemaVersion": 1, "deviceProperties": []}"#[..],
        ),
    ] {
        let path = write(dir.path(), name, bytes);
        match read_trace(&path) {
            Err(e @ TraceError::NotATrace { .. }) => {
                assert!(e.to_string().contains(name), "{e}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let missing = dir.path().join("missing.json.gz");
    assert!(matches!(read_trace(&missing), Err(TraceError::Open { .. })));
}

#[test]
fn ranks_whose_clocks_disagree_are_each_analysed_and_the_gap_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let rank = |rank: u32, base_ns: u64| {
        format!(
            r#"{{"distributedInfo": {{"rank": {rank}}}, "baseTimeNanoseconds": {base_ns}, "traceEvents": [
            {{"ph": "X", "cat": "kernel", "name": "gemm", "ts": 100, "dur": 50, "args": {{"stream": 7}}}},
            {{"ph": "X", "cat": "kernel", "name": "gemm", "ts": 200, "dur": 50, "args": {{"stream": 7}}}}]}}"#
        )
    };
    let files = [
        write(
            dir.path(),
            "rank0.json",
            rank(0, 1_700_000_000_000_000_000).as_bytes(),
        ),
        // Ten seconds ahead: another host's clock.
        write(
            dir.path(),
            "rank1.json",
            rank(1, 1_700_000_010_000_000_000).as_bytes(),
        ),
    ];
    let report = analyse_inputs(&files, &Options::default()).unwrap();
    assert_eq!(report.ranks.len(), 2);
    assert_eq!(report.ranks[1].rank, Some(1));
    let spread = report.rank_start_spread_ms.unwrap();
    assert!((spread - 10_000.0).abs() < 1.0, "{spread}");
    for rank in &report.ranks {
        let t = rank.temporal.as_ref().unwrap();
        assert_eq!((t.span_us, t.idle_us), (150.0, 50.0));
    }
}
