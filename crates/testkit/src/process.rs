//! The binary as tests start it: no key from the developer's environment, and a history of its own, so a test
//! run never reads or writes the developer's `~/.local/share/infer-doctor`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// One scratch data directory per test process, shared by its tests (the history file tolerates concurrent
/// writers); tests that look into the history give `--history FILE` of their own.
fn scratch_data_home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("infer-doctor-test-data-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// `exe` (the test's `env!("CARGO_BIN_EXE_infer-doctor")`) with a clean environment for the tool.
pub fn command(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("OPENAI_API_KEY")
        .env("XDG_DATA_HOME", scratch_data_home());
    cmd
}
