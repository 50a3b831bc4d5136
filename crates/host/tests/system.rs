//! The host reader over a fake root built from real files, over this machine's own root, and over damaged files.
//!
//! `fixtures/host_root` holds, copied unchanged from a 2-core Debian 12 VM (24 GiB, no swap, kernel 6.18, cgroup v1
//! there): `proc/{cpuinfo,meminfo,loadavg,sys/vm/swappiness,sys/kernel/osrelease}`, `proc/pressure/*`,
//! `sys/devices/system/cpu/{online,smt/active}` and `sys/kernel/mm/transparent_hugepage/enabled`; and
//! `proc/4242/{status,limits}`, that VM's `/proc/self/{status,limits}` (the status with its allowed CPUs and memory
//! nodes set to 1) as the server process's, and the same status and that VM's `/proc/self/stat` renamed as its
//! child `proc/4243` (vLLM's engine core, 1 GiB resident). Built by
//! hand, in the formats of the kernel's ABI documents (sysfs-devices-system-cpu, sysfs-bus-pci, cgroup-v2), to
//! make that VM a 2-node GPU host: `sys/devices/system/node/node{0,1}` (CPU 0 on node 0, CPU 1 on node 1, half
//! the memory each), cpufreq governors (`performance` on CPU 0, `powersave` on CPU 1), two H100s' PCI folders
//! (`0000:19:00.0` on node 0 at gen 5 x16; `0000:9b:00.0` on node 1 trained down to gen 4 x8; NVIDIA's vendor id
//! and the 3D-controller class), an Intel network controller's vendor and class at `0000:00:1f.6`, and a Kubernetes
//! pod's cgroup v2 (`proc/4242/cgroup`, and its `cpu.max`, `cpu.stat` with 3,000 of 12,000 periods throttled,
//! `memory.max`, `memory.events` with one OOM kill).

use std::path::{Path, PathBuf};

use infer_doctor_host::system::{self, HostQuery, read_host};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host_root")
}

#[test]
fn a_two_node_gpu_host_reads_from_its_files() {
    let gpus = [
        "00000000:19:00.0".to_string(),
        "00000000:9B:00.0".to_string(),
    ];
    let facts = read_host(
        &fixture_root(),
        &HostQuery {
            gpu_bus_ids: &gpus,
            kubernetes_service_host: None,
            server_pid: Some(4242),
        },
    );
    assert_eq!(
        facts.cpu_model.as_deref(),
        Some("Intel(R) Xeon(R) Processor")
    );
    assert_eq!(facts.logical_cores, Some(2));
    assert_eq!(facts.smt_active, Some(false));
    assert_eq!(facts.kernel.as_deref(), Some("6.18.44-fc-v1252"));
    let governors = facts.governors.clone().expect("cpufreq governors");
    assert_eq!(governors.get(&0).map(String::as_str), Some("performance"));
    assert_eq!(governors.get(&1).map(String::as_str), Some("powersave"));

    let nodes = facts.numa_nodes.clone().expect("NUMA nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!((nodes[1].id, nodes[1].cpus.clone()), (1, vec![1]));
    assert_eq!(nodes[0].memory_total_bytes, Some(12_341_896 * 1024));
    assert_eq!(facts.node_of_cpu(1), Some(1));

    let [near, far] = &facts.pci_devices[..] else {
        panic!("two GPUs: {:?}", facts.pci_devices)
    };
    assert_eq!(
        (near.bus_id.as_str(), near.numa_node),
        ("0000:19:00.0", Some(0))
    );
    assert_eq!(near.current_link_speed.as_deref(), Some("32.0 GT/s PCIe"));
    assert_eq!(
        (far.bus_id.as_str(), far.numa_node),
        ("0000:9b:00.0", Some(1))
    );
    assert_eq!(
        (far.current_link_width, far.max_link_width),
        (Some(8), Some(16))
    );
    assert_eq!(far.max_link_speed.as_deref(), Some("32.0 GT/s PCIe"));

    assert_eq!(facts.memory_total_bytes, Some(24_683_792 * 1024));
    assert_eq!(facts.memory_available_bytes, Some(23_785_496 * 1024));
    assert_eq!(
        (facts.swap_total_bytes, facts.swap_used_bytes),
        (Some(0), Some(0))
    );
    assert_eq!(facts.swappiness, Some(60));
    assert_eq!(facts.transparent_hugepages.as_deref(), Some("madvise"));
    assert_eq!(facts.load_average, Some([1.18, 0.93, 1.18]));
    let cpu = facts.pressure.cpu.clone().expect("CPU pressure");
    assert_eq!((cpu.some_avg10, cpu.some_avg60), (Some(17.13), Some(7.05)));
    assert_eq!(cpu.full_avg10, Some(0.0));
    let memory = facts.pressure.memory.clone().expect("memory pressure");
    assert_eq!(
        (memory.some_avg10, memory.full_avg60),
        (Some(0.0), Some(0.0))
    );
    let io = facts.pressure.io.clone().expect("I/O pressure");
    assert_eq!((io.full_avg10, io.full_avg60), (Some(0.5), Some(0.21)));
    assert_eq!(facts.open_files_limit, Some(20_000));

    let cgroup = facts.cgroup.clone().expect("a cgroup v2");
    assert!(cgroup.path.ends_with("cri-containerd-3f2e.scope"));
    assert_eq!(
        (cgroup.cpu_quota_us, cgroup.cpu_period_us),
        (Some(400_000), Some(100_000))
    );
    assert_eq!(
        (cgroup.nr_periods, cgroup.nr_throttled),
        (Some(12_000), Some(3_000))
    );
    assert_eq!(cgroup.throttled_usec, Some(412_000_000));
    assert_eq!(cgroup.memory_max_bytes, Some(64 << 30));
    assert_eq!(cgroup.oom_kills, Some(1));
    assert_eq!(facts.container.as_deref(), Some("kubernetes"));
    assert!(facts.kubernetes);
    assert_eq!(facts.server_cpus, Some(vec![1]));
    assert_eq!(facts.server_memory_nodes, Some(vec![1]));
    // The engine core's memory counts with the API server's: 2,284 kB + 1 GiB, the peak the main process's own.
    let memory = facts.server_memory.as_ref().unwrap();
    assert_eq!(
        (
            memory.processes,
            memory.rss_bytes,
            memory.main_peak_rss_bytes
        ),
        (2, (2284 + 1_048_576) * 1024, Some(2284 * 1024))
    );

    // The facts travel in a bundle's host.json.
    let json = serde_json::to_string(&facts).expect("host facts serialize");
    let back: infer_doctor_core::HostFacts = serde_json::from_str(&json).expect("and read back");
    assert_eq!(back, facts);
}

#[test]
fn this_machines_own_root_reads_what_every_linux_host_has() {
    // A child of this process, so its memory is found under this one's.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let facts = read_host(
        Path::new("/"),
        &HostQuery {
            kubernetes_service_host: Some("10.96.0.1"),
            server_pid: Some(std::process::id()),
            ..HostQuery::default()
        },
    );
    assert!(facts.logical_cores.is_some_and(|n| n >= 1), "{facts:#?}");
    assert!(
        facts.memory_total_bytes.is_some_and(|n| n > 0),
        "{facts:#?}"
    );
    assert!(facts.kernel.is_some(), "{facts:#?}");
    assert!(facts.kubernetes, "the caller said a service host is set");
    let cpus = facts.server_cpus.expect("this process's allowed CPUs");
    assert!(!cpus.is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let memory = facts.server_memory.expect("this process's memory");
    assert!(memory.processes >= 2, "{memory:?}");
    assert!(
        memory.rss_bytes >= memory.main_peak_rss_bytes.unwrap() / 2 && memory.rss_bytes > 0,
        "{memory:?}"
    );
}

#[test]
fn missing_and_malformed_files_are_unknown_not_a_panic() {
    let root = tempfile::tempdir().expect("a temporary root");
    let empty = read_host(root.path(), &HostQuery::default());
    assert_eq!(
        infer_doctor_core::HostFacts {
            source: empty.source.clone(),
            ..Default::default()
        },
        empty,
        "an empty root knows nothing"
    );

    let files = [
        (
            "proc/meminfo",
            "MemTotal: lots kB\nSwapTotal: 10 MB\nSwapFree\n",
        ),
        ("proc/cpuinfo", "model name\nprocessor :\n"),
        ("proc/loadavg", "1.0 x"),
        ("proc/pressure/cpu", "some avg10=high\nfull"),
        ("proc/7/limits", "Max open files unlimited unlimited files"),
        ("proc/7/cgroup", "0::/../../etc"),
        ("proc/sys/vm/swappiness", "-1"),
        (
            "proc/7/status",
            "Cpus_allowed_list:\t4-2\nMems_allowed_list:\tzero\n",
        ),
        ("sys/devices/system/cpu/online", "0-"),
        ("sys/devices/system/cpu/smt/active", "\u{fffd}"),
        ("sys/devices/system/node/node0/cpulist", "0-x"),
        ("sys/devices/system/node/nodeX/cpulist", "0"),
        ("sys/kernel/mm/transparent_hugepage/enabled", "[always"),
        ("sys/bus/pci/devices/0000:19:00.0/numa_node", "-1"),
        ("sys/bus/pci/devices/0000:19:00.0/current_link_width", "x16"),
    ];
    for (path, text) in files {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
        std::fs::write(path, text).expect("a file");
    }
    std::fs::write(
        root.path().join("sys/devices/system/cpu/online"),
        [0xff, 0xfe],
    )
    .expect("bytes");
    let gpus = ["0000:19:00.0".to_string(), "../../../etc".to_string()];
    let facts = read_host(
        root.path(),
        &HostQuery {
            gpu_bus_ids: &gpus,
            kubernetes_service_host: Some("  "),
            server_pid: Some(7),
        },
    );
    assert_eq!(facts.memory_total_bytes, None);
    assert_eq!(facts.swap_used_bytes, None);
    assert_eq!(facts.cpu_model, None);
    assert_eq!(facts.logical_cores, None);
    assert_eq!(facts.load_average, None);
    assert_eq!(facts.pressure.cpu, None);
    assert_eq!(facts.open_files_limit, None);
    assert_eq!(facts.cgroup, None);
    assert_eq!(facts.swappiness, None);
    assert_eq!(facts.smt_active, None);
    assert_eq!(facts.numa_nodes, None);
    assert_eq!(facts.transparent_hugepages, None);
    assert_eq!((facts.server_cpus, facts.server_memory_nodes), (None, None));
    assert!(!facts.kubernetes);
    let [gpu, outside] = &facts.pci_devices[..] else {
        panic!("{:?}", facts.pci_devices)
    };
    assert_eq!((gpu.numa_node, gpu.current_link_width), (None, None));
    assert_eq!(outside.numa_node, None);
}

#[test]
fn nvidia_gpus_are_found_in_sysfs_by_vendor_and_class() {
    // The two H100s, not the Intel network controller beside them.
    assert_eq!(
        system::nvidia_gpu_bus_ids(&fixture_root()),
        ["0000:19:00.0", "0000:9b:00.0"]
    );
    assert!(system::nvidia_gpu_bus_ids(Path::new("/no/such/root")).is_empty());
}
