//! Reads the GPU driver's reports from a kernel log (`dmesg`, `journalctl -k`, `/var/log/kern.log`): XID errors and
//! GPUs fallen off the bus, per GPU and code, so a hardware fault shows beside the server's own evidence.

use std::io::{self, BufRead};

use infer_doctor_core::XidEvent;

/// The XIDs in a kernel log (`dmesg`, `journalctl -k`, `/var/log/kern.log`), or `None` when the text does not
/// look like one. Besides `NVRM: Xid (PCI:…): N, …`, drivers report a GPU that fell off the bus without an XID
/// line (`GPU at BUS has fallen off the bus`, `GPU BUS: GPU has fallen off the bus`, or across three lines);
/// those count as XID 79, as NVIDIA's own tools count them, and lines telling of the same fall within a few
/// lines of each other count once.
///
/// Read as a stream, line by line (invalid UTF-8 replaced), so a multi-gigabyte log costs no memory.
pub fn read_kernel_log<R: BufRead>(
    mut reader: R,
    source: &str,
) -> io::Result<Option<Vec<XidEvent>>> {
    /// Lines within which a fell-off-the-bus report and its XID 79 are one event.
    const SAME_EVENT_LINES: usize = 5;
    let mut kernel = false;
    let mut xids: Vec<XidEvent> = Vec::new();
    // "NVRM: The NVIDIA GPU 0000:b3:00.0" opens the three-line form; its bus holds for the next lines.
    let mut announced: Option<(String, usize)> = None;
    // Per bus, the line of the last fall off the bus, to merge the reports of one fall.
    let mut last_fall: Vec<(String, usize)> = Vec::new();
    let mut buffer = Vec::new();
    for index in 0.. {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buffer);
        let line = line.trim_end_matches(['\n', '\r']);
        kernel |= line.contains("NVRM:") || is_dmesg_line(line) || is_journal_kernel_line(line);
        let Some(at) = line.find("NVRM:") else {
            continue;
        };
        let said = line[at + "NVRM:".len()..].trim();
        let found = if let Some(rest) = said.strip_prefix("Xid (") {
            parse_xid(rest)
        } else if let Some(rest) = said.strip_prefix("The NVIDIA GPU ") {
            announced = rest
                .split_whitespace()
                .next()
                .map(|bus| (bus.to_string(), index));
            None
        } else if said.contains("fallen off the bus") {
            // "GPU at 0000:01:00.0 has fallen…" (older drivers) or "GPU 0000:29:00.0: GPU has fallen…" (current).
            let named = said
                .strip_prefix("GPU at ")
                .or_else(|| said.strip_prefix("GPU "))
                .and_then(|rest| rest.split_whitespace().next())
                .map(|bus| bus.trim_end_matches(':').to_string())
                .filter(|bus| bus.contains(':'));
            let bus = named.or_else(|| {
                announced
                    .as_ref()
                    .filter(|(_, at)| index - at <= 3)
                    .map(|(bus, _)| bus.clone())
            });
            bus.map(|bus| (bus, 79, "GPU has fallen off the bus".to_string()))
        } else {
            None
        };
        let Some((bus, code, message)) = found else {
            continue;
        };
        let bus_id = pci_address(&bus);
        if code == 79 {
            let same_fall = last_fall
                .iter()
                .any(|(b, at)| *b == bus_id && index - at <= SAME_EVENT_LINES);
            last_fall.retain(|(b, _)| *b != bus_id);
            last_fall.push((bus_id.clone(), index));
            if same_fall {
                continue;
            }
        }
        match xids
            .iter_mut()
            .find(|x| x.bus_id == bus_id && x.code == code)
        {
            Some(seen) => seen.count += 1,
            None => xids.push(XidEvent {
                bus_id,
                code,
                message,
                count: 1,
                first_seen: format!("{source}:{}", index + 1),
            }),
        }
    }
    Ok(kernel.then_some(xids))
}

/// A PCI address as `dddd:bb:dd`, lower case, without the function: XID lines write `0000:01:00`, other
/// lines `0000:01:00.0`, and nvidia-smi `00000000:01:00.0`.
pub fn pci_address(bus: &str) -> String {
    let full = crate::system::sysfs_bus_id(bus.trim().trim_start_matches("PCI:"));
    full.split('.').next().unwrap_or_default().to_string()
}

/// `Feb 14 05:03:41 host kernel: …` or `2026-02-14T05:03:41+0000 host kernel: …`: the kernel's lines in
/// `journalctl -k` or syslog, where the tag follows a timestamp and a host name.
fn is_journal_kernel_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().take(5).collect();
    let is_clock = |w: &str| w.len() == 8 && w.chars().filter(|c| *c == ':').count() == 2;
    match words.as_slice() {
        [month, day, clock, _host, "kernel:"] => {
            month.len() == 3 && day.chars().all(|c| c.is_ascii_digit()) && is_clock(clock)
        }
        [stamp, _host, "kernel:", ..] => {
            stamp.len() >= 19 && stamp.as_bytes().get(10) == Some(&b'T')
        }
        _ => false,
    }
}

/// `[ 1843.308145] …` or, with `dmesg -T`, `[Sat Dec  5 11:23:09 2026] …`: the timestamp dmesg puts before each
/// line, seconds since boot with six decimals or a ctime date, so a progress bar's `[12.5]` in an engine log does
/// not make it a kernel log.
fn is_dmesg_line(line: &str) -> bool {
    let Some((stamp, _)) = line.strip_prefix('[').and_then(|rest| rest.split_once(']')) else {
        return false;
    };
    let since_boot = stamp
        .trim()
        .split_once('.')
        .is_some_and(|(seconds, micros)| {
            !seconds.is_empty()
                && seconds.chars().all(|c| c.is_ascii_digit())
                && micros.len() == 6
                && micros.chars().all(|c| c.is_ascii_digit())
        });
    let words: Vec<&str> = stamp.split_whitespace().collect();
    let ctime = matches!(
        words.as_slice(),
        [weekday, month, day, clock, year]
            if weekday.len() == 3
                && month.len() == 3
                && day.parse::<u8>().is_ok()
                && clock.len() == 8
                && clock.matches(':').count() == 2
                && year.len() == 4
                && year.parse::<u16>().is_ok()
    );
    since_boot || ctime
}

/// `PCI:0000:44:00): 79, GPU has fallen off the bus` → (bus, code, message).
fn parse_xid(rest: &str) -> Option<(String, u32, String)> {
    let (bus, after) = rest.split_once("):")?;
    let bus = bus.trim_start_matches("PCI:").to_string();
    let after = after.trim();
    let digits = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    let code = after[..digits].parse().ok()?;
    let message = after[digits..]
        .trim_start_matches([',', ' '])
        .trim()
        .to_string();
    Some((bus, code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(text: &str, source: &str) -> Option<Vec<XidEvent>> {
        read_kernel_log(text.as_bytes(), source).unwrap()
    }

    #[test]
    fn kernel_logs_give_their_xids_in_every_form() {
        let dmesg = "[   12.100000] nvidia-nvlink: Nvlink Core is being initialized\n\
                     [ 1201.500000] NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, reset gpu to activate.\n\
                     [ 1843.308145] NVRM: The NVIDIA GPU 0000:b3:00.0\n\
                     \x20              NVRM: (PCI ID: 10de:26b5) installed in this system has\n\
                     \x20              NVRM: fallen off the bus and is not responding to commands.\n\
                     [ 1843.308200] NVRM: GPU 0000:b3:00.0: GPU has fallen off the bus.\n\
                     [ 1900.100000] NVRM: Xid (PCI:0000:01:00): 79, pid=77, GPU has fallen off the bus.\n\
                     [ 1900.100100] NVRM: GPU at 0000:01:00.0 has fallen off the bus.\n\
                     [ 1900.200000] NVRM: GPU at 0000:01:00.0 has fallen off the bus.\n\
                     [ 7200.000000] NVRM: GPU 0000:29:00.0: GPU has fallen off the bus.\n\
                     [ 8000.000000] eth0: link up\n\
                     [ 8000.100000] eth0: link down\n\
                     [ 8000.200000] eth0: link up\n\
                     [ 8000.300000] eth0: link down\n\
                     [ 8000.400000] eth0: link up\n\
                     [ 9000.000000] NVRM: Xid (PCI:0000:01:00): 79, pid=91, GPU has fallen off the bus.\n";
        let xids = kernel(dmesg, "dmesg.txt").unwrap();
        let seen: Vec<(&str, u32, u64)> = xids
            .iter()
            .map(|x| (x.bus_id.as_str(), x.code, x.count))
            .collect();
        assert_eq!(
            seen,
            // Each fall once however many lines tell of it, under one spelling of its bus: the three-line
            // block and the current driver's line are one fall of b3; the XID and two lines one fall of 01,
            // which fell again much later.
            [
                ("0000:10:1c", 63, 1),
                ("0000:b3:00", 79, 1),
                ("0000:01:00", 79, 2),
                ("0000:29:00", 79, 1)
            ]
        );
        assert_eq!(
            xids[0].message,
            "pid=1896, Row Remapper: New row marked for remapping, reset gpu to activate."
        );
        assert_eq!(xids[0].first_seen, "dmesg.txt:2");
        // journalctl -k without any NVRM line is still a kernel log, and a clean one.
        let journal =
            "Feb 14 05:03:41 host kernel: mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link ACTIVE\n";
        assert_eq!(kernel(journal, "k.log"), Some(Vec::new()));
        // An engine log is not a kernel log, not even with a progress bar's bracketed number; the real ones
        // are not either.
        assert_eq!(kernel("INFO engine started\n[12.5] 40%\n", "x"), None);
        assert_eq!(
            kernel("INFO 11-20 Using triton kernel: fused_moe\n", "x"),
            None
        );
        assert_eq!(
            kernel(
                "2026-02-14T05:03:41+0000 gpu-1 kernel: nvidia: loaded\n",
                "x"
            ),
            Some(Vec::new())
        );
        assert_eq!(
            pci_address("00000000:00:09.0"),
            pci_address("PCI:0000:00:09")
        );
        // A domain that is not ASCII is kept as written, not sliced mid-character.
        assert_eq!(pci_address("ééééa:01:00"), "ééééa:01:00");
        assert_eq!(
            kernel("[    3.100000] nvidia: loading\n", "d"),
            Some(Vec::new())
        );
        // `dmesg -T`, collect's fallback where journald is absent: a clean one is still a kernel log.
        assert_eq!(
            kernel("[Sat Dec  5 11:23:09 2026] nvidia: loading\n", "d"),
            Some(Vec::new())
        );
        for log in [
            "vllm_cpu/startup_and_run.log",
            "llamacpp/llama_server.log",
            "llamacpp/medium_server.log",
        ] {
            let path = format!("{}/../../fixtures/{log}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(path).unwrap();
            assert_eq!(kernel(&text, log), None, "{log}");
        }
    }
}
