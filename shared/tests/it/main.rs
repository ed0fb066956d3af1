//! Integration tests for `carteiro-shared`: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod callback_sender;
mod event_schemas;
mod fixtures;
mod fuzz_corpus;
mod signature;
mod smtp_provider;
mod webhook_tolerance;
mod whatsapp_provider;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What this binary logged, for the tests that read it back; every line is also appended to
/// the suite's log directory (`CARTEIRO_TEST_LOG_DIR`, set by scripts/test) for the log scan.
#[derive(Debug, Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>, Option<Arc<Mutex<std::fs::File>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        if let Some(file) = &self.1 {
            file.lock().unwrap().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the whole test binary, capturing everything at TRACE, installed
/// by the first helper that needs it (the providers' clients). A scoped (`set_default`)
/// subscriber is flaky here: other tests' threads race on tracing's global callsite-interest
/// cache and can leave the provider's callsites disabled.
pub fn logs() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let file = std::env::var_os("CARTEIRO_TEST_LOG_DIR").map(|dir| {
            std::fs::create_dir_all(&dir).unwrap();
            let path = PathBuf::from(dir).join(format!("it-{}.log", std::process::id()));
            Arc::new(Mutex::new(std::fs::File::create(path).unwrap()))
        });
        let captured = Captured(Arc::default(), file);
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        captured
    })
}

/// `tests/fixtures/whatsapp/` at the repository root: Meta payloads, error bodies and
/// signature vectors, byte-exact (see its `SOURCES.md`).
pub fn whatsapp_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/whatsapp")
}

/// The bytes of one fixture file.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = whatsapp_fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
