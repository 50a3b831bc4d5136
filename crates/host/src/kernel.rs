//! Reads what a GPU host's kernel log (`dmesg`, `journalctl -k`, `/var/log/kern.log`) says about serving: the GPU
//! driver's XIDs and falls off the bus, the OOM killer's victims, and tasks stuck past the hung-task timeout.

use std::io::{self, BufRead};

use infer_doctor_core::{HungTask, KernelFacts, OomKill, XidEvent};

/// The facts of a kernel log, or `None` when the text does not look like one.
///
/// XIDs: besides `NVRM: Xid (PCI:…): N, …`, drivers report a GPU that fell off the bus without an XID line
/// (`GPU at BUS has fallen off the bus`, `GPU BUS: GPU has fallen off the bus`, or across three lines); those
/// count as XID 79, as NVIDIA's own tools count them, and lines telling of the same fall within a few lines of
/// each other count once. OOM kills: each `Killed process PID (NAME) …` line once (older kernels announce the
/// victim first with `Kill process … or sacrifice child`). Hung tasks: `INFO: task NAME:PID blocked for more
/// than N seconds.`, once per task.
///
/// Read as a stream, line by line (invalid UTF-8 replaced), so a multi-gigabyte log costs no memory.
pub fn read_kernel_log<R: BufRead>(mut reader: R, source: &str) -> io::Result<Option<KernelFacts>> {
    let mut reading = Reading {
        source,
        kernel: false,
        facts: KernelFacts {
            sources: vec![source.to_string()],
            ..Default::default()
        },
        announced: None,
        last_fall: Vec::new(),
        memcg_victim: None,
        hung_stack: None,
    };
    let mut buffer = Vec::new();
    for index in 0.. {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buffer);
        reading.line(line.trim_end_matches(['\n', '\r']), index);
    }
    Ok(reading.kernel.then_some(reading.facts))
}

/// The state of one pass over a kernel log.
struct Reading<'a> {
    source: &'a str,
    kernel: bool,
    facts: KernelFacts,
    /// "NVRM: The NVIDIA GPU 0000:b3:00.0" opens the three-line form; its bus holds for the next lines.
    announced: Option<(String, usize)>,
    /// Per bus, the line of the last fall off the bus, to merge the reports of one fall.
    last_fall: Vec<(String, usize)>,
    /// The pid a cgroup's limit is about to kill, as the OOM summary (`oom-kill:constraint=CONSTRAINT_MEMCG,…,
    /// pid=N`) or an older kernel's `Memory cgroup out of memory: Kill process N` says: its `Killed process`
    /// line follows.
    memcg_victim: Option<u32>,
    /// The task of the last hung-task report and its line: the stack that follows it is that task's.
    hung_stack: Option<(u32, usize)>,
}

impl Reading<'_> {
    fn line(&mut self, line: &str, index: usize) {
        self.kernel |=
            line.contains("NVRM:") || is_dmesg_line(line) || is_journal_kernel_line(line);
        if let Some(at) = line.find("NVRM:") {
            self.driver(line[at + "NVRM:".len()..].trim(), index);
        } else if let Some(at) = line.find("oom-kill:") {
            let summary = &line[at..];
            self.memcg_victim = summary
                .contains("constraint=CONSTRAINT_MEMCG")
                .then(|| field(summary, "pid="))
                .flatten();
        } else if let Some(at) = line.find("Memory cgroup out of memory: Kill process ") {
            // Older kernels name a cgroup's victim first, then print its `Killed process` line bare.
            let rest = &line[at + "Memory cgroup out of memory: Kill process ".len()..];
            self.memcg_victim = leading_number(rest).and_then(|pid| u32::try_from(pid).ok());
        } else if let Some(at) = line.find("Killed process ") {
            self.oom_kill(&line[..at], &line[at + "Killed process ".len()..], index);
        } else if let Some(at) = line.find("INFO: task ") {
            self.hung_task(&line[at + "INFO: task ".len()..], index);
        } else if line.contains("</TASK>") || line.contains("Showing all locks held") {
            // The stack ended; what follows (lockdep's list of every task's locks) is no longer the hung task's.
            self.hung_stack = None;
        } else if line.contains("[nvidia") && line.contains("+0x") {
            self.driver_frame(index);
        }
    }

    /// A stack frame in an NVIDIA module (`uvm_gpu_retain_by_uuid+0x1e/0x40 [nvidia_uvm]`; a driver message such
    /// as `[drm] [nvidia-drm] …` has no `+0x` offset): when it follows a hung-task report, the driver holds that
    /// task.
    fn driver_frame(&mut self, index: usize) {
        /// A hung task's report is followed by its registers and stack: some tens of lines.
        const STACK_LINES: usize = 60;
        let Some((pid, at)) = self.hung_stack else {
            return;
        };
        if index - at > STACK_LINES {
            return;
        }
        if let Some(task) = self.facts.hung_tasks.iter_mut().find(|t| t.pid == pid) {
            task.in_gpu_driver = true;
        }
    }

    fn at(&self, index: usize) -> String {
        format!("{}:{}", self.source, index + 1)
    }

    /// `Memory cgroup out of memory: ` + `1234 (python3) total-vm:…kB, anon-rss:…kB, …`.
    fn oom_kill(&mut self, before: &str, rest: &str, index: usize) {
        let Some((pid, after)) = rest.split_once(" (") else {
            return;
        };
        let (Ok(pid), Some((process, details))) =
            (pid.trim().parse::<u32>(), after.split_once(')'))
        else {
            return;
        };
        let cgroup_limit =
            before.contains("Memory cgroup out of memory") || self.memcg_victim.take() == Some(pid);
        self.facts.oom_kills.push(OomKill {
            pid,
            process: process.to_string(),
            anon_rss_bytes: kilobytes(details, "anon-rss:").map(|kb| kb * 1024),
            cgroup_limit,
            seen: self.at(index),
        });
    }

    /// `python3:4242 blocked for more than 120 seconds.` (a name may hold colons: `kworker/u16:3:123`).
    fn hung_task(&mut self, rest: &str, index: usize) {
        let Some((task, after)) = rest.split_once(" blocked for more than ") else {
            return;
        };
        let Some((process, Ok(pid))) = task.rsplit_once(':').map(|(n, p)| (n, p.parse::<u32>()))
        else {
            return;
        };
        let blocked_s = leading_number(after).unwrap_or(0);
        self.hung_stack = Some((pid, index));
        match self.facts.hung_tasks.iter_mut().find(|t| t.pid == pid) {
            Some(seen) => {
                seen.count += 1;
                seen.blocked_s = seen.blocked_s.max(blocked_s);
            }
            None => {
                let first_seen = self.at(index);
                self.facts.hung_tasks.push(HungTask {
                    pid,
                    process: process.to_string(),
                    blocked_s,
                    count: 1,
                    first_seen,
                    in_gpu_driver: false,
                });
            }
        }
    }

    /// What follows `NVRM:` on a driver line.
    fn driver(&mut self, said: &str, index: usize) {
        /// Lines within which a fell-off-the-bus report and its XID 79 are one event.
        const SAME_EVENT_LINES: usize = 5;
        let found = if let Some(rest) = said.strip_prefix("Xid (") {
            parse_xid(rest)
        } else if let Some(rest) = said.strip_prefix("The NVIDIA GPU ") {
            self.announced = rest
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
                self.announced
                    .as_ref()
                    .filter(|(_, at)| index - at <= 3)
                    .map(|(bus, _)| bus.clone())
            });
            bus.map(|bus| (bus, 79, "GPU has fallen off the bus".to_string()))
        } else {
            None
        };
        let Some((bus, code, message)) = found else {
            return;
        };
        let bus_id = pci_address(&bus);
        if code == 79 {
            let same_fall = self
                .last_fall
                .iter()
                .any(|(b, at)| *b == bus_id && index - at <= SAME_EVENT_LINES);
            self.last_fall.retain(|(b, _)| *b != bus_id);
            self.last_fall.push((bus_id.clone(), index));
            if same_fall {
                return;
            }
        }
        let first_seen = self.at(index);
        match self
            .facts
            .xids
            .iter_mut()
            .find(|x| x.bus_id == bus_id && x.code == code)
        {
            Some(seen) => seen.count += 1,
            None => self.facts.xids.push(XidEvent {
                bus_id,
                code,
                message,
                count: 1,
                first_seen,
            }),
        }
    }
}

/// The number after `name` in an OOM line (`pid=4242,`), if any.
fn field(text: &str, name: &str) -> Option<u32> {
    let at = text.find(name)? + name.len();
    leading_number(&text[at..]).and_then(|n| u32::try_from(n).ok())
}

/// `anon-rss:31451456kB` → 31451456; some dmesg builds group the digits (`26,184,840kB`).
fn kilobytes(text: &str, name: &str) -> Option<u64> {
    let at = text.find(name)? + name.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

fn leading_number(text: &str) -> Option<u64> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
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
        read_kernel_log(text.as_bytes(), source)
            .unwrap()
            .map(|facts| facts.xids)
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

    #[test]
    fn oom_kills_and_hung_tasks_are_read_in_the_forms_kernels_print_them() {
        // Lines as users pasted them from dmesg in public issues (pcyin/tranX#41, 0jc1/py-autovod#7 whose dmesg
        // groups digits, NVIDIA/k8s-device-plugin#77, ROCm/tensorflow-upstream#180), plus the cgroup forms of
        // current and older kernels.
        let log = "[2059991.491436] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=python3,pid=25315,uid=0\n\
                   [2059991.491542] Out of memory: Killed process 25315 (python3) total-vm:53312244kB, anon-rss:31451456kB, file-rss:74816kB, shmem-rss:12296kB, UID:0 pgtables:69068kB oom_score_adj:0\n\
                   [2059992.056260] oom_reaper: reaped process 25315 (python3), now anon-rss:0kB, file-rss:74732kB, shmem-rss:12296kB\n\
                   [2059993.000000] python3 invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0\n\
                   [2059993.100000] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=pod1,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=VLLM::EngineCor,pid=4242,uid=0\n\
                   [2059993.100100] Memory cgroup out of memory: Killed process 4242 (VLLM::EngineCor) total-vm:90000000kB, anon-rss:20971520kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1000kB oom_score_adj:999\n\
                   [   55.000000] Memory cgroup out of memory: Kill process 7001 (python) score 1000 or sacrifice child\n\
                   [   55.000100] Killed process 7001 (python) total-vm:1000kB, anon-rss:900kB, file-rss:0kB\n\
                   [Sun Mar 30 08:24:00 2025] Out of memory: Killed process 7899 (python) total-vm:26,184,840kB, anon-rss:15,370,088kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:38964kB oom_score_adj:0\n\
                   [  721.028170] INFO: task nvc:[driver]:5403 blocked for more than 120 seconds.\n\
                   [  721.028229]       Tainted: P           O    4.4.146-1.el7.elrepo.x86_64 #1\n\
                   [  721.028273] \"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n\
                   [  721.028379]  [<ffffffff8170fca4>] __mutex_lock_slowpath+0xb4/0x130\n\
                   [  721.028422]  [<ffffffffa09c376e>] uvm_gpu_retain_by_uuid+0x1e/0x40 [nvidia_uvm]\n\
                   [  841.000000] INFO: task nvc:[driver]:5403 blocked for more than 241 seconds.\n\
                   [  900.000000] INFO: task python:19772 blocked for more than 120 seconds.\n\
                   [  900.000100]  schedule_timeout+0x1cf/0x350\n\
                   [  900.000200]  </TASK>\n\
                   [  900.000300] Showing all locks held in the system:\n\
                   [  900.000400]  #0: (&uvm_gpu->lock){+.+.}, at: uvm_gpu_retain_by_uuid+0x1e/0x40 [nvidia_uvm]\n\
                   [  900.000500] [drm] [nvidia-drm] [GPU ID 0x00000100] Loading driver\n";
        let facts = read_kernel_log(log.as_bytes(), "dmesg.txt")
            .unwrap()
            .unwrap();
        let kills: Vec<(u32, &str, Option<u64>, bool, &str)> = facts
            .oom_kills
            .iter()
            .map(|k| {
                let (pid, name, rss, cgroup) =
                    (k.pid, k.process.as_str(), k.anon_rss_bytes, k.cgroup_limit);
                (pid, name, rss, cgroup, k.seen.as_str())
            })
            .collect();
        assert_eq!(
            kills,
            [
                (
                    25315,
                    "python3",
                    Some(31_451_456 * 1024),
                    false,
                    "dmesg.txt:2"
                ),
                (
                    4242,
                    "VLLM::EngineCor",
                    Some(20_971_520 * 1024),
                    true,
                    "dmesg.txt:6"
                ),
                (7001, "python", Some(900 * 1024), true, "dmesg.txt:8"),
                (
                    7899,
                    "python",
                    Some(15_370_088 * 1024),
                    false,
                    "dmesg.txt:9"
                ),
            ]
        );
        let hung: Vec<(&str, u32, u64, u64, bool)> = facts
            .hung_tasks
            .iter()
            .map(|t| {
                (
                    t.process.as_str(),
                    t.pid,
                    t.blocked_s,
                    t.count,
                    t.in_gpu_driver,
                )
            })
            .collect();
        // One task per pid, at its longest block; the NVIDIA module in the first one's stack is kept.
        assert_eq!(
            hung,
            [
                ("nvc:[driver]", 5403, 241, 2, true),
                ("python", 19772, 120, 1, false)
            ]
        );
        assert_eq!(facts.hung_tasks[0].first_seen, "dmesg.txt:10");
        assert!(facts.xids.is_empty());
        // An engine log that prints "Killed process" is still no kernel log.
        assert!(
            read_kernel_log("worker: Killed process 12 (x)\n".as_bytes(), "e")
                .unwrap()
                .is_none()
        );
    }
}
