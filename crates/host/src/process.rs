//! The serving process on the host: found by the port it listens on or by its name when `--pid` is not given,
//! and read from `/proc` (its engine arguments, environment and start), so `collect` needs no `ps` or `lsof`.

use std::path::Path;

use infer_doctor_core::{ServerMemory, ThreadCpu};

/// The clock tick `/proc` counts CPU and start times in: `USER_HZ`, 100 on every architecture Linux exports.
const TICKS_PER_SECOND: u64 = 100;

/// The programs that serve an OpenAI-compatible API, as they appear in a command line.
const SERVER_NAMES: [&str; 7] = [
    "vllm serve",
    "vllm.entrypoints",
    "sglang.launch_server",
    "llama-server",
    "trtllm-serve",
    "text-generation-launcher",
    "text-generation-router",
];

/// The server process and how it was found, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundServer {
    pub pid: u32,
    pub how: String,
}

/// The process listening on `port` (found through the socket's inode in `/proc/net/tcp*` and the process's
/// open files), else the one serving process by name. Several by name and none on the port is ambiguous:
/// the error names them, for `--pid`.
pub fn find_server(root: &Path, port: Option<u16>) -> Result<FoundServer, String> {
    if let Some(port) = port
        && let Some(pid) = listening_on(root, port)
    {
        return Ok(FoundServer {
            pid,
            how: format!("listening on port {port}"),
        });
    }
    let named = serving_processes(root);
    match named.as_slice() {
        [(pid, program)] => Ok(FoundServer {
            pid: *pid,
            how: format!("the only {program} process"),
        }),
        [] => Err(match port {
            Some(port) => format!(
                "no process of this host listens on port {port} (a container's server shows as its proxy), and \
                 none is named {}; give --pid",
                SERVER_NAMES.join(", ")
            ),
            None => format!(
                "no process is named {}; give --pid",
                SERVER_NAMES.join(", ")
            ),
        }),
        several => Err(format!(
            "several serving processes ({}); give --pid",
            several
                .iter()
                .map(|(pid, program)| format!("{pid}: {program}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The command line's words.
pub fn command_line(root: &Path, pid: u32) -> std::io::Result<Vec<String>> {
    let raw = std::fs::read(root.join(format!("proc/{pid}/cmdline")))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect())
}

/// Every variable of the process's environment (the secret ones are the redactor's to hide).
pub fn environment(root: &Path, pid: u32) -> std::io::Result<Vec<(String, String)>> {
    let raw = std::fs::read(root.join(format!("proc/{pid}/environ")))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter_map(|var| {
            let var = String::from_utf8_lossy(var);
            let (name, value) = var.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect())
}

/// The Python interpreter that runs a vLLM server, to run `python -m vllm.collect_env` in the server's own
/// environment: the command line's program when it is Python, else the interpreter named in its script's `#!`
/// line (`/venv/bin/vllm serve …`). `None` when the server is not vLLM.
pub fn vllm_python(root: &Path, command_line: &[String]) -> Option<String> {
    let line = command_line.join(" ");
    if !line.contains("vllm serve") && !line.contains("vllm.entrypoints") {
        return None;
    }
    let program = command_line.first()?;
    let is_python = |path: &str| {
        Path::new(path)
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("python"))
    };
    if is_python(program) {
        return Some(program.clone());
    }
    // A relative program was resolved by the server's shell from its PATH, which collect does not know.
    let script = std::fs::read(root.join(program.trim_start_matches('/'))).ok()?;
    let first_line = script.split(|b| *b == b'\n').next()?;
    let interpreter = String::from_utf8_lossy(first_line.strip_prefix(b"#!")?)
        .split_whitespace()
        .next()?
        .to_string();
    is_python(&interpreter).then_some(interpreter)
}

/// When the process started, in Unix seconds: its start after boot (`/proc/PID/stat`, in clock ticks) plus
/// the boot time (`/proc/stat`'s btime).
pub fn start_time(root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(root.join(format!("proc/{pid}/stat"))).ok()?;
    // The fields after the command name, which may itself hold spaces and parentheses.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    // starttime is field 22 of the line; field 3 is the first after the name.
    let ticks: u64 = after_name.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string(root.join("proc/stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / TICKS_PER_SECOND)
}

/// One reading of a process's threads: (tid, name, user + system CPU time in clock ticks).
pub fn thread_times(root: &Path, pid: u32) -> Vec<(u32, String, u64)> {
    std::fs::read_dir(root.join(format!("proc/{pid}/task")))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
            // utime and stime are fields 14 and 15 of the line; field 3 is the first after the name.
            let mut after_name = stat
                .get(stat.rfind(')')? + 2..)?
                .split_whitespace()
                .skip(14 - 3);
            let user: u64 = after_name.next()?.parse().ok()?;
            let system: u64 = after_name.next()?.parse().ok()?;
            Some((tid, name, user + system))
        })
        .collect()
}

/// Each thread's CPU over the window between two readings, as a share of one core, busiest first. A thread
/// born during the window counts from zero; one that ended is left out.
pub fn thread_cpu(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
    window_s: f64,
) -> Vec<ThreadCpu> {
    if window_s <= 0.0 {
        return Vec::new();
    }
    let mut threads: Vec<ThreadCpu> = after
        .iter()
        .map(|(tid, name, ticks)| {
            let earlier = before
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, ticks)| *ticks);
            ThreadCpu {
                tid: *tid,
                name: name.clone(),
                core_percent: ticks.saturating_sub(earlier) as f64
                    / TICKS_PER_SECOND as f64
                    / window_s
                    * 100.0,
            }
        })
        .collect();
    threads.sort_by(|a, b| b.core_percent.total_cmp(&a.core_percent));
    threads
}

/// The pid owning a socket that listens on `port` (IPv4 or IPv6, any address).
fn listening_on(root: &Path, port: u16) -> Option<u32> {
    const LISTEN: &str = "0A";
    let inodes: Vec<String> = ["proc/net/tcp", "proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(root.join(table)).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit_once(':')?.1;
                    let listens = u16::from_str_radix(local_port, 16).ok()? == port
                        && *fields.get(3)? == LISTEN;
                    listens.then(|| fields.get(9).map(|inode| inode.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .filter(|inode| inode != "0")
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let sockets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    // The lowest pid holding it: a server's workers inherit the listening socket from it.
    pids(root).into_iter().find(|pid| {
        std::fs::read_dir(root.join(format!("proc/{pid}/fd")))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
            })
    })
}

/// The processes whose command line names a server program, without their children that carry the same
/// command line (a server's workers), lowest pid first.
fn serving_processes(root: &Path) -> Vec<(u32, &'static str)> {
    let named: Vec<(u32, &'static str)> = pids(root)
        .into_iter()
        .filter_map(|pid| {
            let line = command_line(root, pid).ok()?.join(" ");
            let program = SERVER_NAMES.iter().find(|name| line.contains(*name))?;
            Some((pid, *program))
        })
        .collect();
    named
        .iter()
        .filter(|(pid, _)| {
            parent(root, *pid).is_none_or(|parent| !named.iter().any(|(p, _)| *p == parent))
        })
        .copied()
        .collect()
}

/// The resident memory of a process and of every process under it (its children, theirs, and so on).
pub fn tree_memory(root: &Path, pid: u32) -> Option<ServerMemory> {
    let status = |pid: u32| crate::system::read_text(root, &format!("proc/{pid}/status"));
    let bytes = |status: &str, key: &str| {
        crate::system::field(status, key, ':')?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    let main = status(pid)?;
    let parents: Vec<(u32, u32)> = pids(root)
        .into_iter()
        .filter_map(|child| Some((child, parent(root, child)?)))
        .collect();
    let mut tree = vec![pid];
    let mut next = 0;
    while let Some(&at) = tree.get(next) {
        for (child, _) in parents.iter().filter(|(_, parent)| *parent == at) {
            if !tree.contains(child) {
                tree.push(*child);
            }
        }
        next += 1;
    }
    let rss_bytes = tree
        .iter()
        .filter_map(|pid| status(*pid))
        .filter_map(|text| bytes(&text, "VmRSS"))
        .sum();
    Some(ServerMemory {
        processes: tree.len() as u32,
        rss_bytes,
        main_peak_rss_bytes: bytes(&main, "VmHWM"),
    })
}

fn parent(root: &Path, pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(root.join(format!("proc/{pid}/stat"))).ok()?;
    stat.get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process's pid, in increasing order.
fn pids(root: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(root.join("proc"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(root: &Path, pid: u32, parent: u32, cmdline: &[&str]) {
        let dir = root.join(format!("proc/{pid}"));
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::write(dir.join("cmdline"), cmdline.join("\0") + "\0").unwrap();
        let mut fields = vec!["0"; 50];
        fields[0] = "S";
        let parent = parent.to_string();
        fields[1] = &parent;
        // starttime, field 22: the 20th after the name.
        fields[19] = "123456";
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (python3 (vllm) x) {}\n", fields.join(" ")),
        )
        .unwrap();
    }

    /// A command name with spaces and parentheses must not shift the fields counted after it.
    #[test]
    fn the_server_start_is_read_from_proc_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 42, 1, &["vllm", "serve", "m"]);
        std::fs::write(
            root.path().join("proc/stat"),
            "cpu  1 2 3\nbtime 1700000000\n",
        )
        .unwrap();
        assert_eq!(start_time(root.path(), 42), Some(1_700_000_000 + 1234));
        assert_eq!(start_time(root.path(), 43), None);
    }

    #[test]
    fn vllms_python_is_its_program_or_its_scripts_interpreter() {
        let root = tempfile::tempdir().unwrap();
        let words = |line: &str| line.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            vllm_python(
                root.path(),
                &words("/venv/bin/python3.12 -m vllm.entrypoints.openai.api_server")
            ),
            Some("/venv/bin/python3.12".to_string())
        );
        std::fs::create_dir_all(root.path().join("venv/bin")).unwrap();
        std::fs::write(
            root.path().join("venv/bin/vllm"),
            "#!/venv/bin/python3\n# -*- coding: utf-8 -*-\nimport sys\n",
        )
        .unwrap();
        assert_eq!(
            vllm_python(root.path(), &words("/venv/bin/vllm serve m --port 8000")),
            Some("/venv/bin/python3".to_string())
        );
        assert_eq!(vllm_python(root.path(), &words("vllm serve m")), None);
        assert_eq!(
            vllm_python(root.path(), &words("./llama-server -m m.gguf")),
            None
        );
    }

    #[test]
    fn thread_cpu_is_the_growth_of_each_threads_ticks_over_the_window() {
        let root = tempfile::tempdir().unwrap();
        let task = |tid: u32, name: &str, user: u64, system: u64| {
            let dir = root.path().join(format!("proc/7/task/{tid}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut fields = vec!["0".to_string(); 50];
            fields[11] = user.to_string();
            fields[12] = system.to_string();
            std::fs::write(
                dir.join("stat"),
                format!("{tid} ({name}) {}\n", fields.join(" ")),
            )
            .unwrap();
        };
        task(7, "python3", 1000, 200);
        task(8, "tokenizers (x)", 50, 0);
        let before = thread_times(root.path(), 7);
        task(7, "python3", 1900, 290);
        task(8, "tokenizers (x)", 60, 0);
        task(9, "uvicorn", 30, 0);
        let after = thread_times(root.path(), 7);
        let cpu = thread_cpu(&before, &after, 10.0);
        let shares: Vec<(u32, &str, f64)> = cpu
            .iter()
            .map(|t| {
                (
                    t.tid,
                    t.name.as_str(),
                    (t.core_percent * 10.0).round() / 10.0,
                )
            })
            .collect();
        assert_eq!(
            shares,
            vec![
                (7, "python3", 99.0),
                (9, "uvicorn", 3.0),
                (8, "tokenizers (x)", 1.0)
            ]
        );
        assert!(thread_cpu(&before, &after, 0.0).is_empty());
    }

    #[test]
    fn the_server_is_the_process_listening_on_the_port_else_the_one_by_name() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        process(
            root,
            7,
            1,
            &[
                "/usr/bin/python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
            ],
        );
        // Its engine core, started with the same command line.
        process(
            root,
            9,
            7,
            &[
                "/usr/bin/python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
            ],
        );
        process(root, 12, 1, &["/usr/sbin/sshd", "-D"]);
        assert_eq!(
            find_server(root, Some(8000)),
            Ok(FoundServer {
                pid: 7,
                how: "the only vllm.entrypoints process".to_string()
            })
        );
        // A llama-server on 8000 (0x1F40), in the IPv6 table, is the one on the port.
        process(
            root,
            20,
            1,
            &["./llama-server", "-m", "model.gguf", "--port", "8000"],
        );
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        std::fs::write(
            root.join("proc/net/tcp6"),
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1 0000000000000000 100 0 0 10 0\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("socket:[424242]", root.join("proc/20/fd/3")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("proc/7/fd/0")).unwrap();
        assert_eq!(
            find_server(root, Some(8000)).map(|f| (f.pid, f.how)),
            Ok((20, "listening on port 8000".to_string()))
        );
        let ambiguous = find_server(root, Some(9000)).unwrap_err();
        assert!(
            ambiguous.contains("7: vllm.entrypoints") && ambiguous.contains("20: llama-server"),
            "{ambiguous}"
        );
    }
}
