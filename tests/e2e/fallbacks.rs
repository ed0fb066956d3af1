//! Fallbacks on the local runtime: a WhatsApp message refused for good, or reported `failed`
//! by Meta, hands over to the next path of its `fallback` chain (here an email), as a delivery
//! of its own linked to it; the first message shows the chain and which path got through.

use carteiro_e2e::local::{TestApp, graph_secrets, spawn_app_with};
use carteiro_e2e::webhooks::{ACCESS_TOKEN, APP_SECRET, sign, status_payload};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn with_email_fallback(to: &str) -> Value {
    json!({
        "channel": "whatsapp", "to": to, "text": {"body": "Seu pedido saiu"},
        "fallback": [{"channel": "email", "to": ["ana@example.com"], "subject": "Pedido", "text": "Seu pedido saiu"}],
        "metadata": {"order": "A-7"},
    })
}

/// The message once a fallback of it got through.
async fn chain_of(app: &TestApp, id: &str) -> Value {
    app.message_when_within(id, std::time::Duration::from_secs(10), |m| {
        m["delivered_by"].is_string() && m["delivered_by"] != m["id"]
    })
    .await
}

#[tokio::test]
async fn a_permanent_refusal_hands_over_to_the_email_fallback() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131026) Message Undeliverable.", "type": "OAuthException", "code": 131026,
            "error_data": {"messaging_product": "whatsapp", "details": "Message Undeliverable."}}})))
        .expect(1)
        .mount(&graph)
        .await;
    let secrets = graph_secrets(&graph.uri(), ACCESS_TOKEN);
    let app = spawn_app_with(secrets).await;
    let res = app.send(&with_email_fallback("+5511999990095"), None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let parent = chain_of(&app, &id).await;
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(parent["fallbacks"].as_array().unwrap().len(), 1, "{parent}");
    let child_id = parent["fallbacks"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(parent["fallbacks"][0]["channel"], "email");
    assert_eq!(parent["delivered_by"], child_id.as_str());
    let (_, child) = app.message(&child_id).await;
    assert_eq!(child["fallback_of"], id.as_str());
    assert_eq!(child["status"], "sent");
    assert_eq!(child["metadata"]["order"], "A-7");
    app.wait_until_idle().await;
    let emails = app.sandbox_outbox().await["emails"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        emails.len(),
        1,
        "the fallback was sent {} times",
        emails.len()
    );
}

#[tokio::test]
async fn metas_failed_status_hands_over_once_however_often_it_comes() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511999990096", "wa_id": "5511999990096"}],
            "messages": [{"id": "wamid.FALLBACK2", "message_status": "accepted"}]
        })))
        .mount(&graph)
        .await;
    let secrets = graph_secrets(&graph.uri(), ACCESS_TOKEN);
    let app = spawn_app_with(secrets).await;
    let res = app.send(&with_email_fallback("+5511999990096"), None).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app
        .message_when(&id, |m| m["provider_message_id"].is_string())
        .await;
    let wamid = sent["provider_message_id"].as_str().unwrap().to_owned();
    let failed = status_payload(&wamid, "failed", 1_700_000_100, Some(&id));
    for _ in 0..3 {
        assert_eq!(
            app.post_webhook(&failed, Some(&sign(APP_SECRET, &failed)))
                .await
                .status(),
            200
        );
    }
    let parent = chain_of(&app, &id).await;
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(parent["fallbacks"].as_array().unwrap().len(), 1, "{parent}");
    assert_eq!(parent["delivered_by"], parent["fallbacks"][0]["id"]);
    app.wait_until_idle().await;
    assert_eq!(
        app.sandbox_outbox().await["emails"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A `failed` status that arrived before the send's own write was kept as an orphan; applied
/// when dispatch records the wamid, it starts the fallback all the same.
#[tokio::test]
async fn a_failed_status_reconciled_from_an_orphan_starts_the_fallback() {
    use carteiro_shared::adapters::embedded::EmbeddedDb;
    use carteiro_shared::domain::delivery::{DeliveryStatus, fallback_id};
    use carteiro_shared::domain::message::SendRequest;
    use carteiro_shared::domain::webhook::WebhookPayload;
    use carteiro_shared::domain::{DeliveryPayload, Timestamp, Wamid};
    use carteiro_shared::inbound::{InboundContext, process, reconcile_orphans};
    use carteiro_shared::ports::{DeliveryStore, Queue, SystemClock};
    use std::sync::Arc;

    let db = EmbeddedDb::in_memory().unwrap();
    let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
    let outbound = db.queue("outbound");
    let body = with_email_fallback("+5511999990098");
    let request = SendRequest::parse(&body).unwrap();
    let mut record = carteiro_e2e::webhooks::queued_whatsapp_record(Timestamp::now(), "Olá");
    let step = fallback_id(&record.id);
    record
        .fallbacks
        .push(carteiro_shared::domain::delivery::FallbackStep {
            recipient: request.fallback[0].recipient(),
            payload: DeliveryPayload::build(&step, &request.fallback[0]),
        });
    store.create(&record).await.unwrap();

    // Meta's `failed`, before the record knows its wamid and without our id: kept as an orphan.
    let wamid = carteiro_e2e::webhooks::new_wamid();
    let inbound = InboundContext {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        settings: Default::default(),
        events: None,
        outbound: None,
        limits: None,
        suppressions: None,
    };
    let failed = status_payload(&wamid, "failed", 1_700_000_100, None);
    for event in WebhookPayload::from_slice(&failed).unwrap().into_events() {
        process(&inbound, &serde_json::to_string(&event).unwrap())
            .await
            .unwrap();
    }
    // The send's write lands: sent, with the wamid. Then the orphans are reconciled.
    let mut sent = store.get(&record.id).await.unwrap().unwrap();
    sent.status = DeliveryStatus::Sent;
    sent.provider_message_id = Some(wamid.clone());
    sent.version += 1;
    store.replace(&sent, sent.version - 1).await.unwrap();
    let wamid = Wamid::parse(&wamid).unwrap();
    for _ in 0..2 {
        reconcile_orphans(
            store.as_ref(),
            None,
            Some(&outbound),
            &record.id,
            &wamid,
            Timestamp::now(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        store.get(&record.id).await.unwrap().unwrap().status,
        DeliveryStatus::Failed
    );
    let child = store
        .get(&step)
        .await
        .unwrap()
        .expect("the fallback was not started");
    assert_eq!(child.fallback_of.as_ref(), Some(&record.id));
    let jobs = outbound
        .receive(10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "the fallback was queued {} times",
        jobs.len()
    );
}

/// A Graph API that takes every message (and never reports it delivered).
async fn accepting_graph(wamid: &str) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511999990096", "wa_id": "5511999990096"}],
            "messages": [{"id": wamid, "message_status": "accepted"}]
        })))
        .mount(&graph)
        .await;
    graph
}

#[tokio::test]
async fn a_message_not_delivered_in_time_hands_over_to_its_fallback() {
    let spawn = async |graph: &MockServer| {
        carteiro_e2e::local::spawn_app_configured(graph_secrets(&graph.uri(), ACCESS_TOKEN), |c| {
            c.settings.sweep.interval = std::time::Duration::from_millis(200)
        })
        .await
    };
    let graph = accepting_graph("wamid.NOTDELIVERED").await;
    let app = spawn(&graph).await;
    let mut body = with_email_fallback("+5511999990096");
    body["if_not_delivered_within"] = json!("2s");
    let accepted = std::time::Instant::now();
    let res = app.send(&body, None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parent = chain_of(&app, &id).await;
    assert!(
        accepted.elapsed() >= std::time::Duration::from_secs(2),
        "not before the deadline"
    );
    // The first path was sent (Meta took it) but not delivered: it stays as it is.
    assert_eq!(parent["status"], "sent", "{parent}");
    assert_eq!(parent["fallback_reason"], "not_delivered_in_time");
    assert_eq!(parent["fallbacks"][0]["channel"], "email");
    assert_eq!(parent["delivered_by"], parent["fallbacks"][0]["id"]);
    assert_eq!(graph.received_requests().await.unwrap().len(), 1);

    // Delivered in time: no fallback.
    let graph = accepting_graph("wamid.DELIVERED").await;
    let app = spawn(&graph).await;
    let mut body = with_email_fallback("+5511999990097");
    body["if_not_delivered_within"] = json!("1s");
    let res = app.send(&body, None).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.message_when(&id, |m| m["status"] == "sent").await;
    let wamid = sent["provider_message_id"].as_str().unwrap();
    let delivered = status_payload(wamid, "delivered", 1_767_000_000, None);
    let res = app
        .post_webhook(&delivered, Some(&sign(APP_SECRET, &delivered)))
        .await;
    assert_eq!(res.status(), 200);
    app.message_when(&id, |m| m["status"] == "delivered").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, m) = app.message(&id).await;
    assert!(m["fallbacks"].as_array().is_none_or(Vec::is_empty), "{m}");
    assert_eq!(m["delivered_by"], id.as_str());
}

#[tokio::test]
async fn a_message_held_by_an_open_circuit_past_fallback_after_hands_over_to_its_fallback() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"code": 131000, "message": "down"}})),
        )
        .mount(&graph)
        .await;
    let app =
        carteiro_e2e::local::spawn_app_configured(graph_secrets(&graph.uri(), ACCESS_TOKEN), |c| {
            c.settings.dispatch.breaker = carteiro_shared::resilience::breaker::BreakerPolicy {
                consecutive: 2,
                cool_down: std::time::Duration::from_secs(60),
                ..Default::default()
            };
        })
        .await;
    // Two failures open the Graph API's breaker.
    for n in 0..2 {
        let body = json!({"channel": "whatsapp", "to": format!("+55119999901{n}"), "text": {"body": "Olá"}});
        assert_eq!(app.send(&body, None).await.status(), 202);
    }
    let started = std::time::Instant::now();
    while graph.received_requests().await.unwrap().len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the failing calls were not made"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut body = with_email_fallback("+5511999990098");
    body["fallback_after"] = json!("2s");
    let accepted = std::time::Instant::now();
    let res = app.send(&body, None).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parent = chain_of(&app, &id).await;
    let took = accepted.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2),
        "not before fallback_after: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(8),
        "soon after it, not at the cool-down's end: {took:?}"
    );
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(parent["last_error"]["code"], "circuit_open");
    assert!(
        parent["attempts"].as_array().unwrap().is_empty(),
        "never attempted: {parent}"
    );
    assert_eq!(parent["last_deferral"]["limit"], "circuit_open");
    assert_eq!(
        graph.received_requests().await.unwrap().len(),
        2,
        "no call while open"
    );
}

#[tokio::test]
async fn fallback_rules_are_checked_at_acceptance() {
    let app = carteiro_e2e::local::spawn_app().await;
    let cases = [
        (
            json!({"channel": "whatsapp", "to": "+5511999990099", "text": {"body": "Olá"}, "fallback_after": "10m"}),
            "fallback_after",
        ),
        (
            json!({"channel": "email", "to": ["ana@example.com"], "subject": "S", "text": "T", "if_not_delivered_within": "1h",
                "fallback": [{"channel": "email", "to": ["bia@example.com"], "subject": "S", "text": "T"}]}),
            "if_not_delivered_within",
        ),
        (
            {
                let mut b = with_email_fallback("+5511999990099");
                b["fallback_after"] = json!("8d");
                b
            },
            "fallback_after",
        ),
        (
            {
                let mut b = with_email_fallback("+5511999990099");
                b["if_not_delivered_within"] = json!(5);
                b
            },
            "if_not_delivered_within",
        ),
    ];
    for (body, field) in cases {
        let res = app.send(&body, None).await;
        assert_eq!(res.status(), 422, "{body}");
        let err = res.json::<Value>().await.unwrap();
        assert_eq!(err["error"]["field"], field, "{err}");
    }
}
