//! The Graph API's circuit breaker on the local runtime: failures open it, no call is made
//! while it is open (the work is deferred, not failed), one probe goes after the cool-down,
//! and its success closes it.

use carteiro_e2e::local::{graph_secrets, spawn_app_configured};
use carteiro_e2e::webhooks::ACCESS_TOKEN;
use carteiro_shared::config::parse_schedule;
use carteiro_shared::resilience::RetryPolicy;
use carteiro_shared::resilience::breaker::BreakerPolicy;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn failures_open_the_breaker_nothing_is_called_while_open_and_a_probe_closes_it() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"code": 131000, "message": "down"}})),
        )
        .up_to_n_times(3)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
            "messages": [{"id": "wamid.BREAKER", "message_status": "accepted"}]
        })))
        .mount(&graph)
        .await;
    let secrets = graph_secrets(&graph.uri(), ACCESS_TOKEN);
    let cool_down = Duration::from_secs(2);
    let app = spawn_app_configured(secrets, |c| {
        c.settings.dispatch.breaker = BreakerPolicy {
            consecutive: 3,
            cool_down,
            ..BreakerPolicy::default()
        };
        c.settings.dispatch.retry = RetryPolicy::new(
            parse_schedule("0s,300ms,300ms,300ms,300ms,300ms").unwrap(),
            0.0,
            Duration::from_secs(600),
            Duration::from_secs(1),
        );
    })
    .await;

    // Three sends fail: the breaker opens.
    let mut ids = Vec::new();
    for n in 0..3 {
        let res = app.send(&json!({"channel": "whatsapp", "to": format!("+55119900000{n}"), "text": {"body": "Olá"}}), None).await;
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let started = Instant::now();
    while graph.received_requests().await.unwrap_or_default().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the failing calls were not made"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While open, new work waits: it is deferred and counted, never attempted or failed.
    let res = app
        .send(
            &json!({"channel": "whatsapp", "to": "+5511990000009", "text": {"body": "Olá"}}),
            None,
        )
        .await;
    ids.push(
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for id in &ids {
        app.message_when_within(id, Duration::from_secs(20), |m| {
            m["provider_message_id"].is_string()
        })
        .await;
    }
    let calls: Vec<_> = graph.received_requests().await.unwrap();
    // Three failures, then nothing until the cool-down, then the probe and the rest.
    assert_eq!(
        calls.len(),
        3 + ids.len(),
        "calls made while the breaker was open"
    );
    let (_, waiting) = app.message(&ids[3]).await;
    assert!(waiting["deferrals"].as_u64().unwrap_or(0) >= 1, "{waiting}");
    assert_eq!(
        waiting["last_deferral"]["limit"], "circuit_open",
        "{waiting}"
    );
    assert_eq!(
        waiting["attempts"].as_array().unwrap().len(),
        1,
        "{waiting}"
    );
    // The first success came at least a cool-down after the third failure.
    let mut firsts: Vec<(i64, String)> = Vec::new();
    for id in &ids {
        let (_, m) = app.message(id).await;
        for a in m["attempts"].as_array().unwrap() {
            firsts.push((
                a["started_at"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap().to_owned(),
            ));
        }
    }
    firsts.sort();
    let last_failure = firsts
        .iter()
        .filter(|(_, o)| o != "accepted")
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    let first_success = firsts
        .iter()
        .filter(|(_, o)| o == "accepted")
        .map(|(t, _)| *t)
        .min()
        .unwrap();
    assert!(
        first_success - last_failure >= cool_down.as_millis() as i64 - 50,
        "a call went {} ms after the breaker opened: {firsts:?}",
        first_success - last_failure
    );
}
