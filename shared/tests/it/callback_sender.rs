//! The callback sender alone: which URLs it refuses to call (SSRF), outside the development
//! allowlist, and that it never reaches the receiver when it refuses.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::config::CallbackSettings;
use carteiro_shared::domain::app_event::{EventId, EventType};
use carteiro_shared::domain::ids::MessageId;
use carteiro_shared::domain::outcome::{FailureClass, SendOutcome};
use carteiro_shared::domain::payload::DeliveryPayload;
use carteiro_shared::ports::{Provider, SystemClock};
use carteiro_shared::providers::ssrf::StaticLookup;
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::secrets::Secrets;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn attempt(url: &str, allow_loopback_http: bool) -> SendOutcome {
    crate::logs();
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(json!({
        "callbacks": { "endpoints": [ { "id": "app", "url": url, "secret": SECRET } ] }
    }))));
    let store = Arc::new(EmbeddedDb::in_memory().unwrap().store());
    let settings = CallbackSettings {
        allow_loopback_http,
        ..CallbackSettings::default()
    };
    // A name that resolves to a private address, without a DNS server.
    let lookup = StaticLookup(vec![
        (
            "internal.example".to_owned(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()],
        ),
        (
            "localhost".to_owned(),
            vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        ),
        (
            "mixed.example".to_owned(),
            vec!["169.254.169.254".parse().unwrap(), "::1".parse().unwrap()],
        ),
    ]);
    let sender = CallbackSender::with_lookup(
        secrets,
        store,
        Arc::new(SystemClock),
        settings,
        Arc::new(lookup),
    )
    .unwrap();
    let payload = DeliveryPayload::WebhookV1 {
        endpoint_id: "app".to_owned(),
        event_id: EventId::derive(&["test"]),
        event_type: EventType::MessageReceived,
        body: r#"{"type":"message.received","timestamp":"2026-12-01T00:00:00.000Z","data":{}}"#
            .to_owned(),
    };
    sender.send(&MessageId::generate(), &payload, false).await
}

fn refusal(outcome: &SendOutcome) -> Option<String> {
    match outcome {
        SendOutcome::Failed(f) if f.class == FailureClass::Permanent => Some(f.error.code.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn private_loopback_metadata_and_reserved_addresses_are_refused_before_any_request() {
    let receiver = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let port = receiver.address().port();
    let urls = [
        format!("https://127.0.0.1:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
        "https://10.0.0.1/hook".to_owned(),
        "https://100.64.0.1/hook".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        format!("https://[::1]:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        "https://[fd00::1]/hook".to_owned(),
        "https://[fd00:ec2::254]/hook".to_owned(),
        "https://internal.example/hook".to_owned(),
        "https://mixed.example/hook".to_owned(),
        format!("https://localhost:{port}/hook"),
        "ftp://example.com/hook".to_owned(),
    ];
    for url in &urls {
        let outcome = attempt(url, false).await;
        let code =
            refusal(&outcome).unwrap_or_else(|| panic!("{url} was not refused: {outcome:?}"));
        assert!(
            code == "blocked_url" || code == "blocked_address",
            "{url}: refused for the wrong reason ({code})"
        );
    }
    // Even the development allowlist adds only loopback: private and metadata stay refused,
    // and plain http goes nowhere but loopback.
    for url in [
        "https://10.0.0.1/hook",
        "http://10.0.0.1/hook",
        "https://169.254.169.254/",
        "https://[fd00::1]/hook",
        "http://internal.example/hook",
    ] {
        let outcome = attempt(url, true).await;
        assert!(
            refusal(&outcome).is_some(),
            "{url} allowed under the dev allowlist: {outcome:?}"
        );
    }
    assert!(
        receiver
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "a refused callback reached the receiver"
    );
    // The allowlist does let plain http reach loopback: the control case.
    let outcome = attempt(&format!("http://127.0.0.1:{port}/hook"), true).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        receiver.received_requests().await.unwrap_or_default().len(),
        1
    );
}
