//! One failed message followed through the JSON log alone: from the id the send API answered
//! to the Graph API's error code, with the request id, API key id and correlation id on the
//! way, and the recipient's number masked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{JsonGateway, wait_until_up};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "trace-test-api-key";
const PNID: &str = "106540352242922";
const RECIPIENT: &str = "+5511987650123";

/// The span fields of a log line, merged (inner spans win), with the event's own fields.
fn fields_of(line: &Value) -> serde_json::Map<String, Value> {
    let mut all = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten() {
        for (k, v) in span.as_object().into_iter().flatten() {
            all.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in line["fields"].as_object().into_iter().flatten() {
        all.insert(k.clone(), v.clone());
    }
    all
}

#[tokio::test]
async fn a_failed_message_is_traced_from_its_id_to_the_provider_code_in_the_logs() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PNID}/messages")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131026) Message undeliverable", "type": "OAuthException",
            "code": 131026, "error_data": {"details": "Message Undeliverable."},
            "fbtrace_id": "TraceFb123"
        }})))
        .mount(&graph)
        .await;
    let gateway = JsonGateway::start(
        "trace",
        &json!({
            "whatsapp": {
                "access_token": "EAAG-trace-token", "phone_number_id": PNID,
                "app_secret": "trace-app-secret", "verify_token": "trace-vt",
                "graph_base_url": graph.uri()
            },
            "api_keys": {"keys": [{"id": "app-7", "key": API_KEY}]},
        }),
        &[("CARTEIRO_PROBE_INTERVAL", "0s")],
    );
    let (addr, log) = (gateway.addr.clone(), gateway.log.clone());
    let http = reqwest::Client::new();
    wait_until_up(&http, &addr).await;

    let res = http
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", "trace-1")
        .header("X-Correlation-Id", "order-4711")
        .json(&json!({"channel": "whatsapp", "to": RECIPIENT, "text": {"body": "Olá"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    support::message_when(&http, &addr, API_KEY, &id, "failed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Only the logs from here on.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not one JSON line: {l}")))
        .collect();
    let mine: Vec<serde_json::Map<String, Value>> = lines
        .iter()
        .map(fields_of)
        .filter(|f| f.get("message_id").and_then(Value::as_str) == Some(id.as_str()))
        .collect();
    assert!(mine.len() >= 3, "too few lines for {id}:\n{text}");

    // The acceptance: the request, the key and the caller's correlation id.
    let accepted = mine
        .iter()
        .find(|f| f["message"] == "message accepted")
        .unwrap_or_else(|| panic!("no acceptance line:\n{text}"));
    assert_eq!(accepted["request_id"], request_id.as_str());
    assert_eq!(accepted["api_key_id"], "app-7");
    assert_eq!(accepted["correlation_id"], "order-4711");

    // The attempt: the provider's code and trace id, under the same message id.
    let refused = mine
        .iter()
        .find(|f| f["message"] == "the Graph API refused the message")
        .unwrap_or_else(|| panic!("no provider error line for {id}:\n{text}"));
    assert_eq!(refused["code"], 131026);
    assert_eq!(refused["fbtrace_id"], "TraceFb123");
    assert_eq!(refused["correlation_id"], "order-4711");
    let finished = mine
        .iter()
        .find(|f| f["message"] == "dispatch attempt finished")
        .unwrap();
    assert_eq!(finished["status"], "failed");

    // No personal data or secret in the whole log.
    assert!(
        !text.contains("5511987650123"),
        "the recipient's number is in the log"
    );
    for secret in ["EAAG-trace-token", "trace-app-secret", "trace-vt", API_KEY] {
        assert!(!text.contains(secret), "{secret} is in the log");
    }
}
