//! `carteiro check` against real parts: a wiremock Graph API (`debug_token` and the phone
//! number's fields), aiosmtpd requiring AUTH, and a wiremock callback receiver. Every part
//! healthy exits 0 with nothing sent; a wrong SMTP password or a token Graph calls invalid
//! exits non-zero naming the part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use std::process::Command;
use support::SmtpServer;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PNID: &str = "106540352242922";

async fn graph(token_data: serde_json::Value) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .and(query_param("input_token", "EAAG-check-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": token_data})))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{PNID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "display_phone_number": "+1 555-0100",
            "verified_name": "Carteiro Test",
            "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_1K",
            "throughput": {"level": "STANDARD"},
            "id": PNID
        })))
        .mount(&graph)
        .await;
    graph
}

fn valid_token() -> serde_json::Value {
    json!({
        "app_id": "1234567890", "type": "SYSTEM_USER", "application": "Carteiro",
        "expires_at": 0, "data_access_expires_at": 0, "is_valid": true,
        "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
        "user_id": "100000000000001"
    })
}

struct Parts {
    graph: MockServer,
    receiver: MockServer,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
}

async fn parts(token_data: serde_json::Value, smtp_password: &str) -> (Parts, std::path::PathBuf) {
    let graph = graph(token_data).await;
    let receiver = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/hooks/carteiro"))
        .respond_with(ResponseTemplate::new(405))
        .mount(&receiver)
        .await;
    let smtp = SmtpServer::start(&["--auth", "mailer:right-password", "--auth-plain-ok"]);
    let dir = tempfile::tempdir().unwrap();
    let secrets = json!({
        "whatsapp": {
            "access_token": "EAAG-check-token", "phone_number_id": PNID,
            "app_id": "1234567890", "app_secret": "check-app-secret", "verify_token": "vt",
            "graph_base_url": graph.uri()
        },
        "smtp": {
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_user": "mailer",
            "smtp_password": smtp_password, "from_email": "noreply@example.com"
        },
        "callbacks": {"endpoints": [{
            "id": "crm", "url": format!("{}/hooks/carteiro", receiver.uri()),
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        }]},
        "api_keys": {"keys": []}
    });
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, secrets.to_string()).unwrap();
    (
        Parts {
            graph,
            receiver,
            smtp,
            dir,
        },
        file,
    )
}

fn check(file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(["check", "--secrets-file"])
        .arg(file)
        .env_remove("CARTEIRO_SECRETS_FILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn result_of<'a>(table: &'a str, part: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{part} ")))
        .and_then(|l| l[part.len()..].split_whitespace().next())
        .unwrap_or_else(|| panic!("no row for {part}:\n{table}"))
}

#[tokio::test]
async fn every_part_healthy_and_nothing_sent() {
    let (parts, file) = parts(valid_token(), "right-password").await;
    let (ok, out, err) = check(&file);
    assert!(ok, "check failed:\n{out}\n{err}");
    for part in [
        "whatsapp token",
        "whatsapp phone number",
        "smtp:primary",
        "webhook:crm",
    ] {
        assert_eq!(result_of(&out, part), "ok", "{part}:\n{out}");
    }
    assert!(out.contains("never expires"), "{out}");
    assert!(
        out.contains("quality GREEN, tier TIER_1K, throughput STANDARD"),
        "{out}"
    );
    assert!(out.contains("AUTH accepted"), "{out}");
    assert!(out.contains("answered 405"), "{out}");
    // The app token asked debug_token; nothing was sent anywhere.
    let asked = parts.graph.received_requests().await.unwrap();
    let debug = asked
        .iter()
        .find(|r| r.url.path().ends_with("/debug_token"))
        .unwrap();
    assert_eq!(
        debug.headers.get("authorization").unwrap(),
        "Bearer 1234567890|check-app-secret"
    );
    assert!(
        asked.iter().all(|r| r.method.as_str() == "GET"),
        "{asked:?}"
    );
    let hooks = parts.receiver.received_requests().await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].method.as_str(), "HEAD");
    assert_eq!(parts.smtp.received(), 0, "check sent an email");
    assert!(
        !out.contains("check-app-secret") && !out.contains("EAAG-check-token"),
        "{out}"
    );
    drop(parts.dir);
}

#[tokio::test]
async fn a_wrong_smtp_password_fails_naming_the_relay() {
    let (parts, file) = parts(valid_token(), "wrong-password").await;
    let (ok, out, err) = check(&file);
    assert!(!ok, "check passed with a wrong password:\n{out}");
    assert_eq!(result_of(&out, "smtp:primary"), "FAILED", "{out}");
    assert_eq!(result_of(&out, "whatsapp token"), "ok", "{out}");
    assert!(err.contains("failed: smtp:primary"), "{err}");
    assert!(!out.contains("wrong-password") && !err.contains("wrong-password"));
    drop(parts);
}

#[tokio::test]
async fn a_token_graph_calls_invalid_fails_naming_the_token() {
    let invalid = json!({
        "app_id": "1234567890", "is_valid": false, "expires_at": 1_700_000_000, "scopes": [],
        "error": {"code": 190, "message": "Error validating access token: Session has expired"}
    });
    let (parts, file) = parts(invalid, "right-password").await;
    let (ok, out, err) = check(&file);
    assert!(!ok, "check passed with an invalid token:\n{out}");
    assert_eq!(result_of(&out, "whatsapp token"), "FAILED", "{out}");
    assert!(out.contains("Session has expired"), "{out}");
    assert_eq!(result_of(&out, "smtp:primary"), "ok", "{out}");
    assert!(err.contains("failed: whatsapp token"), "{err}");
    drop(parts);
}
