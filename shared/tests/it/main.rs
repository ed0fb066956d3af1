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
