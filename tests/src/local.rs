//! The local runtime on an ephemeral loopback port, as a test sees it from outside.

use crate::webhooks::whatsapp_secret_json;
use carteiro_local::{Application, Config, Gateway};
use serde_json::json;
use std::net::SocketAddr;
use tokio::sync::watch;

/// A running local gateway. Stops when dropped.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    _stop: watch::Sender<bool>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a webhook body signed with `secret` (pass `None` for no signature header).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send().await.unwrap()
    }
}

/// Starts the local runtime with the test secrets in a fresh data directory.
pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let secrets_file = data_dir.path().join("secrets.json");
    std::fs::write(
        &secrets_file,
        json!({ "whatsapp": whatsapp_secret_json() }).to_string(),
    )
    .unwrap();
    let config = Config::for_tests(data_dir.path().join("data"), Some(secrets_file));
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let gateway = app.gateway().clone();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(app.run(stopped));
    TestApp {
        addr,
        gateway,
        http: reqwest::Client::new(),
        _stop: stop,
        _data_dir: data_dir,
    }
}
