//! The sandbox that answers, end to end through the `carteiro` binary (what `cargo run`
//! starts), with no Meta account: a text sent through the send API comes back to the app as
//! `message.status` callbacks for sent, delivered and read, and `POST /sandbox/inbound` as a
//! `message.received` callback. Each callback is checked with the published
//! `standardwebhooks` crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Gateway, free_addr, wait_until_up};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "sandbox-test-api-key";

async fn callbacks(receiver: &MockServer) -> Vec<(Value, wiremock::Request)> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        // Callbacks only: the sweeper's probe of the endpoint is a HEAD.
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| (serde_json::from_slice(&r.body).unwrap(), r))
        .collect()
}

async fn wait_for(
    receiver: &MockServer,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> wiremock::Request {
    let started = Instant::now();
    loop {
        if let Some((_, r)) = callbacks(receiver).await.into_iter().find(|(b, _)| pick(b)) {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {what} callback: {:?}",
            callbacks(receiver)
                .await
                .iter()
                .map(|(b, _)| b.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sent_text_and_a_simulated_reply_come_back_as_signed_callbacks() {
    let receiver = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode("sandbox-test-signing-secret")
    );
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    // WhatsApp without an access token: the sandbox.
    let doc = json!({
        "whatsapp": {"app_secret": "sandbox-app-secret", "verify_token": "sandbox-verify"},
        "api_keys": {"keys": [{"id": "app-1", "key": API_KEY}]},
        "callbacks": {"endpoints": [{"id": "app", "url": format!("{}/hooks", receiver.uri()), "secret": secret}]},
    });
    std::fs::write(&secrets, doc.to_string()).unwrap();
    let addr = free_addr();
    let (log, log_path) = support::suite_log("sandbox-answers");
    let _gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .args(["--listen", &addr, "--secrets-file"])
            .arg(&secrets)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_until_up(&http, &addr).await;
    let stdout = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        stdout.contains("development allowlist"),
        "the start-up banner does not say so: {stdout}"
    );

    let res = http
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth(API_KEY)
        .json(&json!({"channel": "whatsapp", "to": "+5511999990013", "text": {"body": "Olá"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wh = standardwebhooks::Webhook::new(&secret).unwrap();
    for status in ["sent", "delivered", "read"] {
        let r = wait_for(&receiver, status, |b| {
            b["type"] == "message.status"
                && b["data"]["message_id"] == id.as_str()
                && b["data"]["status"] == status
        })
        .await;
        wh.verify(&r.body, &r.headers).unwrap();
    }
    let record = support::message(&http, &addr, API_KEY, &id).await;
    assert_eq!(record["status"], "read", "{record}");

    let res = http
        .post(format!("http://{addr}/sandbox/inbound"))
        .json(&json!({"from": "+5511999990013", "text": "oi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let r = wait_for(&receiver, "message.received", |b| {
        b["type"] == "message.received"
    })
    .await;
    wh.verify(&r.body, &r.headers).unwrap();
    let b: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(b["data"]["text"], "oi");
    assert_eq!(b["data"]["wa_id"], "5511999990013");

    // `carteiro replay` sends it again, with the same webhook-id, while the gateway runs.
    let event_id = r
        .headers
        .get("webhook-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(["replay", &event_id, "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("app: queued again"), "{printed}");
    let started = Instant::now();
    loop {
        let copies = callbacks(&receiver)
            .await
            .into_iter()
            .filter(|(_, r)| {
                r.headers.get("webhook-id").and_then(|v| v.to_str().ok()) == Some(event_id.as_str())
            })
            .count();
        if copies == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replay did not arrive ({copies})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args([
            "replay",
            "evt_00000000000000000000000000000000",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no event"));

    // Bad input gets a precise 4xx.
    let res = http
        .post(format!("http://{addr}/sandbox/inbound"))
        .json(&json!({"from": "not a number", "text": "oi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["field"], "from");
}
