//! Whole-suite log capture: the harness's entry points (moto, the local runtime, the SMTP
//! server, the conformance suite) call [`capture`], which installs — once per test binary —
//! the product's own JSON subscriber (masked, every span's fields) writing to
//! `$CARTEIRO_TEST_LOG_DIR/<binary>-<pid>.jsonl`, at debug for Carteiro's crates. From then
//! on every line any test of the binary logs lands there (a global subscriber; a test binary
//! cannot install one before `main` without unsafe code, which the workspace forbids).
//! scripts/test sets the directory; the log scan (`log_scan.rs`) reads it after the suite.

use std::path::PathBuf;

pub const DIR_VAR: &str = "CARTEIRO_TEST_LOG_DIR";

/// The suite's log directory, if scripts/test named one.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR).map(PathBuf::from)
}

/// Sends this process's logs to the suite's log directory (nothing without one); once.
pub fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| install("e2e"));
}

fn install(binary: &str) {
    let Some(dir) = dir() else { return };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join(format!("{binary}-{}.jsonl", std::process::id()));
    let Ok(file) = std::fs::File::create(&path) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::new(
        "info,carteiro_shared=debug,carteiro_local=debug,carteiro_e2e=debug",
    );
    let subscriber =
        carteiro_shared::observability::json_subscriber(filter, std::sync::Mutex::new(file));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
