//! A bundle as one `.tar.gz` file, the form a ticket or a chat takes: packed by `collect --out FILE.tar.gz`,
//! unpacked by `diagnose --bundle FILE.tar.gz`, with the host's own `tar` under a deadline like every command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{self, CommandSpec, Status};

/// Whether a path names a gzipped tarball rather than a directory.
pub fn is_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// The directory name a tarball's bundle gets inside it (`bundle.tar.gz` → `bundle`).
pub fn stem(archive: &Path) -> String {
    let name = archive
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(&name);
    if stem.is_empty() {
        "bundle".into()
    } else {
        stem.to_string()
    }
}

fn tar(args: &[&str], timeout: Duration) -> Result<(), String> {
    let ran = command::run(&CommandSpec::new("tar", args, timeout));
    match ran.status {
        Status::Ok => Ok(()),
        _ => Err(format!(
            "`{}`: {}",
            ran.command_line,
            ran.why.unwrap_or_else(|| ran.status.words().to_string())
        )),
    }
}

/// Packs `dir` into `archive`, the directory's own name as the tarball's one top-level entry.
pub fn pack(dir: &Path, archive: &Path, timeout: Duration) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| format!("{}: not a directory name", dir.display()))?;
    tar(
        &[
            "-czf",
            &archive.to_string_lossy(),
            "-C",
            &parent.to_string_lossy(),
            &name.to_string_lossy(),
        ],
        timeout,
    )
}

/// Unpacks `archive` into the empty directory `into` and returns the bundle's root: the one directory the
/// tarball holds, or `into` itself when its files sit at the top. GNU tar keeps members inside `into`
/// (leading `/` and `..` are refused).
pub fn unpack(archive: &Path, into: &Path, timeout: Duration) -> Result<PathBuf, String> {
    tar(
        &[
            "-xzf",
            &archive.to_string_lossy(),
            "-C",
            &into.to_string_lossy(),
            "--no-same-owner",
        ],
        timeout,
    )?;
    let entries: Vec<PathBuf> = std::fs::read_dir(into)
        .map_err(|e| format!("{}: {e}", into.display()))?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    Ok(match entries.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => into.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_through_a_tarball() {
        let work = tempfile::tempdir().unwrap();
        let bundle = work.path().join("gpu-host-bundle");
        std::fs::create_dir_all(bundle.join("gpu")).unwrap();
        std::fs::write(bundle.join("gpu/topo.txt"), "\tGPU0\n").unwrap();
        std::fs::write(bundle.join("manifest.json"), "{}").unwrap();
        let archive = work.path().join("gpu-host-bundle.tar.gz");
        assert!(is_archive(&archive) && !is_archive(&bundle));
        assert_eq!(stem(&archive), "gpu-host-bundle");
        pack(&bundle, &archive, Duration::from_secs(30)).unwrap();
        let into = tempfile::tempdir().unwrap();
        let root = unpack(&archive, into.path(), Duration::from_secs(30)).unwrap();
        assert_eq!(root, into.path().join("gpu-host-bundle"));
        assert_eq!(
            std::fs::read_to_string(root.join("gpu/topo.txt")).unwrap(),
            "\tGPU0\n"
        );
        // Not a tarball: an error naming the command and why, not a panic or an empty bundle.
        let bogus = work.path().join("notes.tar.gz");
        std::fs::write(&bogus, "plain text").unwrap();
        let err = unpack(&bogus, into.path(), Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("tar -xzf"), "{err}");
    }
}
