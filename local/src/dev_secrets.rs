//! Development secrets: generated on first start when no secrets file is given, kept in the
//! data directory so restarts keep working with the same values, and printed at start-up so
//! a newcomer can sign webhooks and call the API straight away.

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "dev-secrets.json";

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Returns the path of the development secrets file, creating it if needed.
pub fn ensure(data_dir: &Path) -> std::io::Result<PathBuf> {
    let path = data_dir.join(FILE_NAME);
    if !path.exists() {
        let doc = json!({
            "whatsapp": {
                "app_secret": random(32),
                "verify_token": random(24),
                "previous_app_secret": null,
            },
            "api_keys": { "keys": [ { "id": "local", "key": format!("ck_{}", random(32)) } ] },
        });
        let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
        write_private(&path, text.as_bytes())?;
    }
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
