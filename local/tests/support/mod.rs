//! What the tests that run the `carteiro` binary share: the child process, killed when the
//! test ends, a free loopback address for it, and the wait for it to answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Child;
use std::time::{Duration, Instant};

/// The gateway process, killed (and reaped) when dropped.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `127.0.0.1:<a port nothing listens on now>`.
#[allow(dead_code)] // not every test binary runs the gateway
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Waits until the gateway at `addr` answers `GET /health` (30 s at most).
#[allow(dead_code)]
pub async fn wait_until_up(http: &reqwest::Client, addr: &str) {
    let started = Instant::now();
    while http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// aiosmtpd on a free loopback port, through the script the SMTP provider's tests use, in
/// plain mode with `args` added (`--auth user:password --auth-plain-ok`, ...). Exits when the
/// test process does (its stdin closes).
#[allow(dead_code)] // not every test binary talks SMTP
pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _child: Gateway,
}

#[allow(dead_code)]
impl SmtpServer {
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = std::env::var_os("CARTEIRO_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(python)
            .arg(root.join("shared/tests/it/smtp_server.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(["--mode", "plain"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("no Python with aiosmtpd: run scripts/test or set CARTEIRO_PYTHON");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Self {
            port,
            dir,
            _child: Gateway(child),
        }
    }

    /// Messages it accepted.
    pub fn received(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
    }
}

/// A file for a child process's output in the suite's log directory (`CARTEIRO_TEST_LOG_DIR`,
/// set by scripts/test; the system temp directory otherwise), so the log scan after the suite
/// reads every line the gateways wrote. `name` says which test it is.
#[allow(dead_code)]
pub fn suite_log(name: &str) -> (std::fs::File, std::path::PathBuf) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::var_os("CARTEIRO_TEST_LOG_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("carteiro-test-logs"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "local-{name}-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    (std::fs::File::create(&path).unwrap(), path)
}

/// `GET /v1/messages/{id}` on the gateway at `addr`, with `key`.
#[allow(dead_code)]
pub async fn message(http: &reqwest::Client, addr: &str, key: &str, id: &str) -> serde_json::Value {
    http.get(format!("http://{addr}/v1/messages/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The message once its status is `status` (20 s at most).
#[allow(dead_code)]
pub async fn message_when(
    http: &reqwest::Client,
    addr: &str,
    key: &str,
    id: &str,
    status: &str,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let record = message(http, addr, key, id).await;
        if record["status"] == status {
            return record;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not {status}: {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `carteiro` binary logging JSON at `info` into the suite's log directory, over its own
/// data directory and `secrets`, with `env` added; killed when dropped.
#[allow(dead_code)]
pub struct JsonGateway {
    _gateway: Gateway,
    pub addr: String,
    /// Its stdout: JSON lines only.
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl JsonGateway {
    pub fn start(name: &str, secrets: &serde_json::Value, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        std::fs::write(&file, secrets.to_string()).unwrap();
        let addr = free_addr();
        let (out, log) = suite_log(name);
        let (err, _) = suite_log(&format!("{name}-stderr"));
        let gateway = Gateway(
            std::process::Command::new(env!("CARGO_BIN_EXE_carteiro"))
                .args(["--listen", &addr, "--log-json", "--secrets-file"])
                .arg(&file)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap(),
        );
        Self {
            _gateway: gateway,
            addr,
            log,
            _dir: dir,
        }
    }
}
