//! The Debian packages some tests run for real (Prometheus, Chromium, cmake), installed on first use so the
//! README's test command passes on a fresh machine; the same script serves `.ci/run`.

use std::path::Path;
use std::process::Command;

/// Installs whichever of `packages` are missing (through `scripts/ensure-debian-packages.sh`), or panics with
/// the installer's words: a test that needs the package cannot go on without it.
pub fn ensure_debian_packages(packages: &[&str]) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-debian-packages.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(packages)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "installing {packages:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
