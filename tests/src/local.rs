//! The local runtime on an ephemeral loopback port, as a test sees it from outside.

use crate::webhooks::{API_KEY, API_KEY_ID, OTHER_API_KEY, whatsapp_secret_json};
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
    data_dir: tempfile::TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The secrets file the gateway reads (rewrite it to rotate a secret).
    pub fn secrets_file(&self) -> std::path::PathBuf {
        self.data_dir.path().join("secrets.json")
    }

    /// POSTs a send request with the test API key and an optional Idempotency-Key.
    pub async fn send(
        &self,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/messages"))
            .bearer_auth(API_KEY)
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        req.send().await.unwrap()
    }

    /// What the local sandboxes took (`GET /sandbox/outbox`).
    pub async fn sandbox_outbox(&self) -> serde_json::Value {
        let res = self
            .http
            .get(self.url("/sandbox/outbox"))
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    }

    /// GETs a message with the test API key.
    pub async fn message(&self, id: &str) -> (u16, serde_json::Value) {
        let res = self
            .http
            .get(self.url(&format!("/v1/messages/{id}")))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Polls a message until `done` holds (5 s at most).
    pub async fn message_when(
        &self,
        id: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.message_when_within(id, std::time::Duration::from_secs(5), done)
            .await
    }

    /// Polls a message until `done` holds, for at most `limit`.
    pub async fn message_when_within(
        &self,
        id: &str,
        limit: std::time::Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let rounds = limit.as_millis() / 20;
        for _ in 0..rounds {
            let (status, body) = self.message(id).await;
            if status == 200 && done(&body) {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "message {id} never reached the expected state: {:?}",
            self.message(id).await
        );
    }

    /// Waits until both queues hold nothing at all — no visible, in-flight or delayed message —
    /// so every webhook and job posted so far has been processed and acknowledged (5 s at
    /// most). After it, nothing more can happen by itself.
    pub async fn wait_until_idle(&self) {
        let queues = [
            self.gateway.db.queue(carteiro_local::INBOUND_QUEUE),
            self.gateway.db.queue(carteiro_local::OUTBOUND_QUEUE),
        ];
        for _ in 0..250 {
            let mut left = 0;
            for queue in &queues {
                let c = queue.counts().await.unwrap();
                left += c.visible + c.in_flight + c.delayed;
            }
            if left == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the gateway's queues never drained");
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

/// The secrets every test gateway starts with: WhatsApp without an access token (so the
/// sandbox takes WhatsApp messages) and one API key.
pub fn default_secrets() -> serde_json::Value {
    json!({
        "whatsapp": whatsapp_secret_json(),
        "api_keys": { "keys": [ { "id": API_KEY_ID, "key": API_KEY }, { "id": "other-app", "key": OTHER_API_KEY } ] },
    })
}

/// The test secrets with WhatsApp sent through a Graph API at `graph_uri` (wiremock) with
/// the access token `token`.
pub fn graph_secrets(graph_uri: &str, token: &str) -> serde_json::Value {
    let mut secrets = default_secrets();
    let w = &mut secrets["whatsapp"];
    w["access_token"] = json!(token);
    w["phone_number_id"] = json!(crate::webhooks::PHONE_NUMBER_ID);
    w["graph_base_url"] = json!(graph_uri);
    w["graph_api_version"] = json!("v23.0");
    secrets
}

/// Starts the local runtime with the test secrets in a fresh data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(default_secrets()).await
}

/// Starts the local runtime with the given secrets document.
pub async fn spawn_app_with(secrets: serde_json::Value) -> TestApp {
    spawn_app_configured(secrets, |_| {}).await
}

/// Starts the local runtime with the given secrets document and settings changed by `adjust`.
pub async fn spawn_app_configured(
    secrets: serde_json::Value,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    crate::logs::capture();
    let data_dir = tempfile::tempdir().unwrap();
    let secrets_file = data_dir.path().join("secrets.json");
    std::fs::write(&secrets_file, secrets.to_string()).unwrap();
    let mut config = Config::for_tests(data_dir.path().join("data"), Some(secrets_file));
    adjust(&mut config);
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
        data_dir,
    }
}
