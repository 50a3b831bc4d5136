//! Reads `nvidia-smi topo -m`, `nvidia-smi nvlink -s` and `nvidia-smi nvlink -e`: how the host's GPUs reach each
//! other (NVLink or which PCIe path), which CPUs and NUMA node sit near each, which NVLinks are up, and their error
//! counters, for the topology rules.
//!
//! Real output is not always clean: the header is wrapped in ANSI underline codes even in a file, cells can be
//! glued where a tab is missing (`NODEPXB`), and pasted copies are re-spaced. So cells are read as tokens of the
//! matrix's own vocabulary, not by column position.

use infer_doctor_core::{
    GpuLink, GpuNvLinkErrors, GpuNvLinks, GpuTopology, NvLinkErrorCounters, NvLinkLane, PciePath,
    TopologyGpu,
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopoReadError {
    #[error("not `nvidia-smi topo -m` output: no header row naming GPU0")]
    NotTopology,
    #[error("line {line}: {reason}")]
    Row { line: usize, reason: String },
    #[error("not `nvidia-smi nvlink -s` output: no `GPU N: …` line")]
    NotNvLink,
    #[error("not `nvidia-smi nvlink -e` output: no `Link N: counter: value` line")]
    NotNvLinkErrors,
}

/// Removes ANSI escape sequences (`ESC[4m`), which nvidia-smi writes around the header even into a file.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ended by a letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A device the matrix has a column for: `GPU0`, `NIC3`, or an older driver's `mlx5_0`.
fn device_name(text: &str) -> Option<usize> {
    let prefix = ["GPU", "NIC", "mlx5_"]
        .into_iter()
        .find(|p| text.starts_with(p))?;
    let digits = text[prefix.len()..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    (digits > 0).then_some(prefix.len() + digits)
}

/// The device columns of the header, in order, glued names (`NIC8NIC9`) split.
fn header_devices(header: &str) -> Vec<String> {
    let mut devices = Vec::new();
    let mut rest = header;
    while !rest.is_empty() {
        match device_name(rest) {
            Some(len) => {
                devices.push(rest[..len].to_string());
                rest = &rest[len..];
            }
            None => rest = &rest[rest.chars().next().map_or(1, char::len_utf8)..],
        }
    }
    devices
}

/// One matrix cell at the start of `text`: its token and length, or `None` where the cells end.
fn cell(text: &str) -> Option<(&str, usize)> {
    if let Some(rest) = text.strip_prefix("NV") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        return (digits > 0).then(|| (&text[..2 + digits], 2 + digits));
    }
    if text.starts_with('X') && !text[1..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(("X", 1));
    }
    ["SYS", "NODE", "PHB", "PXB", "PIX"]
        .into_iter()
        .find(|t| text.starts_with(t))
        .map(|t| (t, t.len()))
}

fn link(token: &str) -> Option<GpuLink> {
    Some(match token {
        "PIX" => GpuLink::Pcie(PciePath::Pix),
        "PXB" => GpuLink::Pcie(PciePath::Pxb),
        "PHB" => GpuLink::Pcie(PciePath::Phb),
        "NODE" => GpuLink::Pcie(PciePath::Node),
        "SYS" => GpuLink::Pcie(PciePath::Sys),
        nv => GpuLink::NvLink(nv.strip_prefix("NV")?.parse().ok()?),
    })
}

/// The GPUs of one `nvidia-smi topo -m` output; `source` names the file for the facts' provenance.
pub fn read_topology(text: &str, source: &str) -> Result<GpuTopology, TopoReadError> {
    let lines: Vec<String> = text.lines().map(strip_ansi).collect();
    let (header_at, header) = lines
        .iter()
        .enumerate()
        .take_while(|(_, l)| !l.trim_start().starts_with("Legend"))
        .find(|(_, l)| {
            let first = l.split_whitespace().next();
            // The header's first cell is empty: its first word is a device, where a row's is its own name.
            first.is_some_and(|w| w.starts_with("GPU0")) && l.starts_with(char::is_whitespace)
        })
        .ok_or(TopoReadError::NotTopology)?;
    let devices = header_devices(header);
    let mut gpus = Vec::new();
    for (index, line) in lines.iter().enumerate().skip(header_at + 1) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("Legend") {
            break;
        }
        let Some(name_len) = device_name(trimmed) else {
            continue;
        };
        let name = &trimmed[..name_len];
        if !name.starts_with("GPU") {
            continue;
        }
        let row_error = |reason: String| TopoReadError::Row {
            line: index + 1,
            reason,
        };
        let mut rest = &trimmed[name_len..];
        let mut links = Vec::new();
        for device in &devices {
            rest = rest.trim_start();
            let (token, len) = cell(rest).ok_or_else(|| {
                row_error(format!(
                    "{name}: {} cells for {} columns",
                    links.len(),
                    devices.len()
                ))
            })?;
            rest = &rest[len..];
            if device.starts_with("GPU") && device != name {
                let link = link(token)
                    .ok_or_else(|| row_error(format!("{name} to {device}: `{token}`")))?;
                links.push((device.clone(), link));
            }
        }
        let mut affinity = rest.split_whitespace().filter(|w| *w != "N/A");
        let cpu_affinity = affinity.next().map(str::to_string);
        let numa_node = affinity.next().and_then(|w| w.parse().ok());
        gpus.push(TopologyGpu {
            name: name.to_string(),
            links,
            cpu_affinity,
            numa_node,
        });
    }
    if gpus.is_empty() {
        return Err(TopoReadError::NotTopology);
    }
    Ok(GpuTopology {
        source: source.to_string(),
        gpus,
    })
}

/// The GPU a block of `nvidia-smi nvlink` output is about: `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)` gives its
/// index and model name.
fn gpu_heading(line: &str) -> Option<(u32, String)> {
    let (number, name) = line.strip_prefix("GPU ")?.split_once(':')?;
    let index = number.trim().parse().ok()?;
    let name = name.split(" (UUID").next().unwrap_or(name).trim();
    Some((index, name.to_string()))
}

/// A counter line's link and `counter: value` (`Link 3: CRC Errors: 0` gives 3 and `CRC Errors: 0`).
fn counter_line(line: &str) -> Option<(&str, &str)> {
    let (number, counter) = line.strip_prefix("Link ")?.split_once(':')?;
    counter.contains(':').then_some((number, counter))
}

/// Every GPU's NVLink error counters in one `nvidia-smi nvlink -e` output (`Link 0: CRC Errors: 3`), whatever
/// names the driver gives them. A value that is not a count (a Blackwell driver's `Effective BER: 1.5e-15`, a
/// counter's `N/A`) is left out: it cannot be subtracted from a later reading. A GPU whose links are all inactive
/// has no links; a text without a single counter line is not this output at all (an `nvlink -s` text, which says
/// the same of such a GPU, is read by [`read_nvlinks`]).
pub fn read_nvlink_errors(text: &str) -> Result<Vec<GpuNvLinkErrors>, TopoReadError> {
    if !text.lines().any(|line| counter_line(line.trim()).is_some()) {
        return Err(TopoReadError::NotNvLinkErrors);
    }
    let mut gpus: Vec<GpuNvLinkErrors> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some((gpu, name)) = gpu_heading(line) {
            gpus.push(GpuNvLinkErrors {
                index: gpu,
                name,
                links: Vec::new(),
            });
            continue;
        }
        if !line.starts_with("Link ") {
            continue;
        }
        let error = |reason: &str| TopoReadError::Row {
            line: index + 1,
            reason: reason.to_string(),
        };
        let gpu = gpus
            .last_mut()
            .ok_or_else(|| error("a link before any GPU"))?;
        let (number, counter) = counter_line(line).ok_or_else(|| error("no `counter: value`"))?;
        let link = number.trim().parse().map_err(|_| error("no link number"))?;
        let (name, value) = counter
            .rsplit_once(':')
            .ok_or_else(|| error("no `counter: value`"))?;
        let value = value.trim();
        let count = match value.parse::<u64>() {
            Ok(count) => count,
            Err(_) if value == "N/A" || value.parse::<f64>().is_ok() => continue,
            Err(_) => return Err(error("the value is not a count")),
        };
        let at = match gpu.links.iter().position(|l| l.link == link) {
            Some(at) => at,
            None => {
                gpu.links.push(NvLinkErrorCounters {
                    link,
                    counters: Default::default(),
                });
                gpu.links.len() - 1
            }
        };
        gpu.links[at]
            .counters
            .insert(name.trim().to_string(), count);
    }
    Ok(gpus)
}

/// Every GPU's NVLinks in one `nvidia-smi nvlink -s` output (`Link 3: <inactive>` is a link that is down).
pub fn read_nvlinks(text: &str) -> Result<Vec<GpuNvLinks>, TopoReadError> {
    let mut gpus: Vec<GpuNvLinks> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some((gpu, name)) = gpu_heading(line) {
            gpus.push(GpuNvLinks {
                index: gpu,
                name,
                links: Vec::new(),
                all_inactive: false,
            });
        } else if line.to_ascii_lowercase().contains("all links are inactive") {
            // `NVML: Unable to retrieve NVLink information as all links are inActive`, in place of the list.
            if let Some(gpu) = gpus.last_mut() {
                gpu.all_inactive = true;
            }
        } else if let Some(rest) = line.strip_prefix("Link ") {
            let error = |reason: &str| TopoReadError::Row {
                line: index + 1,
                reason: reason.to_string(),
            };
            let gpu = gpus
                .last_mut()
                .ok_or_else(|| error("a link before any GPU"))?;
            let (number, state) = rest.split_once(':').ok_or_else(|| error("no `:`"))?;
            let link = number.trim().parse().map_err(|_| error("no link number"))?;
            let state = state.trim();
            let speed_gb_per_s = if state.contains("inactive") {
                None
            } else {
                let value = state.strip_suffix("GB/s").ok_or_else(|| error("no GB/s"))?;
                Some(value.trim().parse().map_err(|_| error("no speed"))?)
            };
            gpu.links.push(NvLinkLane {
                link,
                speed_gb_per_s,
            });
        }
    }
    if gpus.is_empty() {
        return Err(TopoReadError::NotNvLink);
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../fixtures/gpu/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn one_h100s_real_matrix_reads_with_its_ansi_header() {
        let topology = read_topology(&fixture("h100_topo_m.txt"), "topo.txt").unwrap();
        assert_eq!(
            topology.gpus,
            [TopologyGpu {
                name: "GPU0".into(),
                links: Vec::new(),
                cpu_affinity: Some("0-19".into()),
                numa_node: Some(0),
            }]
        );
    }

    /// An 8-GPU box as the research notes describe such matrices (GPUs 0-3 on node 0, 4-7 on node 1, NICs
    /// after the GPUs), with one pair degraded to PCIe and a NIC row whose affinity cells are empty.
    const EIGHT_GPUS: &str = "\
\x1b[4m\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m
GPU0\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tPXB\t0-55,112-167\t0\t\tN/A
GPU1\tNV18\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tNODE\t0-55,112-167\t0\t\tN/A
GPU2\tNV18\tNV18\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tNODE\t0-55,112-167\t0\t\tN/A
GPU3\tNV18\tNV18\tNV18\t X \tSYS\tNV18\tNV18\tNV18\tNODE\t0-55,112-167\t0\t\tN/A
GPU4\tNV18\tNV18\tNV18\tSYS\t X \tNV18\tNV18\tNV18\tSYS\t56-111,168-223\t1\t\tN/A
GPU5\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tNV18\tNV18\tSYS\t56-111,168-223\t1\t\tN/A
GPU6\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tNV18\tSYS\t56-111,168-223\t1\t\tN/A
GPU7\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tSYS\t56-111,168-223\t1\t\tN/A
NIC0\tPXB\tNODE\tNODE\tNODE\tSYS\tSYS\tSYS\tSYS\t X \t\t\t

Legend:

  X    = Self
  NV#  = Connection traversing a bonded set of # NVLinks

NIC Legend:

  NIC0: mlx5_0
";

    #[test]
    fn eight_gpus_give_their_links_and_numa_nodes() {
        let topology = read_topology(EIGHT_GPUS, "topo.txt").unwrap();
        assert_eq!(topology.gpus.len(), 8);
        let gpu3 = &topology.gpus[3];
        assert_eq!(gpu3.links.len(), 7, "to the other GPUs only, not the NIC");
        assert_eq!(
            gpu3.links
                .iter()
                .find(|(d, _)| d == "GPU4")
                .map(|(_, l)| *l),
            Some(GpuLink::Pcie(PciePath::Sys))
        );
        assert_eq!(gpu3.links[0], ("GPU0".to_string(), GpuLink::NvLink(18)));
        assert_eq!(gpu3.cpu_affinity.as_deref(), Some("0-55,112-167"));
        assert_eq!(topology.gpus[4].numa_node, Some(1));
    }

    #[test]
    fn glued_and_respaced_cells_read_the_same() {
        // A missing tab glues cells (`NODEPXB`) and header names (`GPU1GPU2`); a paste turns tabs into spaces.
        let glued = "\tGPU0\tGPU1GPU2\tNIC0\tCPU Affinity\tNUMA Affinity\n\
                     GPU0\t X \tPHB\tPXB\tNODE\t0-7\t0\n\
                     GPU1\tPHB\t X \tNODEPXB\t0-7\t0\n\
                     GPU2\tPXB\tNODE\t X \tSYS\t8-15\t1\n";
        let spaced = glued.replace('\t', "   ");
        for text in [glued.to_string(), spaced] {
            let topology = read_topology(&text, "paste").unwrap();
            assert_eq!(
                topology.gpus[1].links,
                [
                    ("GPU0".to_string(), GpuLink::Pcie(PciePath::Phb)),
                    ("GPU2".to_string(), GpuLink::Pcie(PciePath::Node))
                ]
            );
            assert_eq!(topology.gpus[2].numa_node, Some(1));
        }
    }

    #[test]
    fn bad_matrices_are_named_with_their_line() {
        assert_eq!(
            read_topology("GPU 0: NVIDIA H100\n", "x"),
            Err(TopoReadError::NotTopology)
        );
        let short = "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \t0-7\t0\n";
        assert!(matches!(
            read_topology(short, "x"),
            Err(TopoReadError::Row { line: 2, .. })
        ));
    }

    #[test]
    fn nvlink_status_gives_each_links_speed_or_that_it_is_down() {
        let gpus = read_nvlinks(&fixture("h100_nvlink_s.txt")).unwrap();
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].links.len(), 18);
        assert!(
            gpus[0]
                .links
                .iter()
                .all(|l| l.speed_gb_per_s == Some(26.562))
        );
        let down = "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-x)\n\t Link 0: 25 GB/s\n\t Link 1: <inactive>\n";
        let gpus = read_nvlinks(down).unwrap();
        assert_eq!(gpus[0].index, 1);
        assert_eq!(gpus[0].links[1].speed_gb_per_s, None);
        assert_eq!(
            read_nvlinks("nothing here\n"),
            Err(TopoReadError::NotNvLink)
        );
        let all_down = "GPU 0: NVIDIA B200 (UUID: GPU-x)\n\
                        NVML: Unable to retrieve NVLink information as all links are inActive\n";
        let gpus = read_nvlinks(all_down).unwrap();
        assert!(gpus[0].all_inactive && gpus[0].links.is_empty());
        assert!(matches!(
            read_nvlinks("GPU 0: X\n\t Link 0: fast\n"),
            Err(TopoReadError::Row { line: 2, .. })
        ));
    }

    #[test]
    fn nvlink_error_counters_are_read_per_link_by_the_drivers_names() {
        // A real H100's capture, elided by its author (`[...]`) between links 1 and 17.
        let gpus = read_nvlink_errors(&fixture("h100_nvlink_e.txt")).unwrap();
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        let links: Vec<u32> = gpus[0].links.iter().map(|l| l.link).collect();
        assert_eq!(links, [0, 1, 17]);
        let names: Vec<&str> = gpus[0].links[2]
            .counters
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["CRC Errors", "Recovery Errors", "Replay Errors"]);
        assert!(
            gpus[0]
                .links
                .iter()
                .all(|l| l.counters.values().all(|v| *v == 0))
        );
        // A Blackwell driver's names, its rates left out, and a GPU whose links are all inactive.
        let newer = "GPU 0: NVIDIA B200 (UUID: GPU-x)\n\t Link 4: Rx Errors: 7\n\t Link 4: Effective BER: 1.5e-15\n\
                     \t Link 4: FEC Errors - 1: 12\n\t Link 4: Link recovery failed events: N/A\n\
                     GPU 1: NVIDIA B200 (UUID: GPU-y)\n\
                     NVML: Unable to retrieve NVLink information as all links are inActive\n";
        let gpus = read_nvlink_errors(newer).unwrap();
        assert_eq!(
            gpus[0].links[0].counters,
            std::collections::BTreeMap::from([
                ("FEC Errors - 1".to_string(), 12),
                ("Rx Errors".to_string(), 7)
            ])
        );
        assert_eq!((gpus[1].index, gpus[1].links.len()), (1, 0));
    }

    #[test]
    fn texts_that_are_not_error_counters_are_told_apart_or_named_by_line() {
        for other in [fixture("h100_nvlink_s.txt"), "nothing here\n".to_string()] {
            assert_eq!(
                read_nvlink_errors(&other),
                Err(TopoReadError::NotNvLinkErrors)
            );
        }
        // One GPU alone with every link inactive lists no counter: `nvlink -s` says as much, and more.
        let all_down = "GPU 0: NVIDIA B200 (UUID: GPU-x)\n\
                        NVML: Unable to retrieve NVLink information as all links are inActive\n";
        assert_eq!(
            read_nvlink_errors(all_down),
            Err(TopoReadError::NotNvLinkErrors)
        );
        assert!(matches!(
            read_nvlink_errors(
                "GPU 0: X\n\t Link 0: CRC Errors: 0\n\t Link 0: Replay Errors: many\n"
            ),
            Err(TopoReadError::Row { line: 3, .. })
        ));
        assert!(matches!(
            read_nvlink_errors("\t Link 0: CRC Errors: 1\n"),
            Err(TopoReadError::Row { line: 1, .. })
        ));
    }

    proptest::proptest! {
        /// Any text, and any cut of the real captures, reads or gives a named error, never a panic.
        #[test]
        fn any_text_reads_without_panicking(noise in ".{0,200}", cut in 0usize..2_000) {
            for text in [
                fixture("h100_topo_m.txt"),
                fixture("h100_nvlink_s.txt"),
                fixture("h100_nvlink_e.txt"),
                EIGHT_GPUS.to_string(),
            ] {
                let mut end = cut.min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                for candidate in [noise.clone(), format!("{}{noise}", &text[..end])] {
                    let _ = read_topology(&candidate, "f");
                    let _ = read_nvlinks(&candidate);
                    let _ = read_nvlink_errors(&candidate);
                }
            }
        }
    }
}
