//! A real SMTP server for end-to-end tests: aiosmtpd, through the script the SMTP provider's
//! own tests use (shared/tests/it/smtp_server.py), on a free loopback port, plain mode. Every
//! accepted message is written to a directory as `<n>.json` (envelope and parsed MIME tree).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn python() -> PathBuf {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    match std::env::var_os("CARTEIRO_PYTHON").map(PathBuf::from) {
        Some(p) => p,
        None if fallback.exists() => fallback,
        None => panic!("no Python with aiosmtpd: run scripts/test or set CARTEIRO_PYTHON"),
    }
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_failing(&[])
    }

    /// A server that answers `reply` to `verb` (`RCPT`, `MAIL`, `DATA`) for `address`.
    pub fn start_failing(failures: &[(&str, &str, &str)]) -> Self {
        crate::logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/it/smtp_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--dir"])
            .arg(dir.path())
            .args(["--mode", "plain"])
            .args(
                failures
                    .iter()
                    .flat_map(|(verb, address, reply)| ["--fail", verb, address, reply]),
            )
            // The server exits when its stdin closes, so it dies with the test process.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Self { port, dir, child }
    }

    /// The messages received so far, as the script recorded them, waiting up to 5 s for `n`.
    pub fn received(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..250 {
            let mut found: Vec<(u32, serde_json::Value)> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .filter_map(|e| {
                    let path = e.ok()?.path();
                    let index = path.file_stem()?.to_str()?.parse().ok()?;
                    (path.extension()? == "json")
                        .then(|| serde_json::from_slice(&std::fs::read(&path).ok()?).ok())
                        .flatten()
                        .map(|v| (index, v))
                })
                .collect();
            if found.len() >= n {
                found.sort_by_key(|(i, _)| *i);
                return found.into_iter().map(|(_, v)| v).collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the SMTP server did not receive {n} messages");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
