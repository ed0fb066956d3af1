//! What the tests that run the `carteiro` binary share: the child process, killed when the
//! test ends, a free loopback address for it, and the wait for it to answer.
#![allow(clippy::unwrap_used)]

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
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Waits until the gateway at `addr` answers `GET /health` (30 s at most).
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
