//! Fallbacks on the local runtime: a WhatsApp message refused for good, or reported `failed`
//! by Meta, hands over to the next path of its `fallback` chain (here an email), as a delivery
//! of its own linked to it; the first message shows the chain and which path got through.

use carteiro_e2e::local::{TestApp, default_secrets, spawn_app_with};
use carteiro_e2e::webhooks::{ACCESS_TOKEN, APP_SECRET, PHONE_NUMBER_ID, sign, status_payload};
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
    let mut secrets = default_secrets();
    secrets["whatsapp"]["access_token"] = json!(ACCESS_TOKEN);
    secrets["whatsapp"]["phone_number_id"] = json!(PHONE_NUMBER_ID);
    secrets["whatsapp"]["graph_base_url"] = json!(graph.uri());
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
    let mut secrets = default_secrets();
    secrets["whatsapp"]["access_token"] = json!(ACCESS_TOKEN);
    secrets["whatsapp"]["phone_number_id"] = json!(PHONE_NUMBER_ID);
    secrets["whatsapp"]["graph_base_url"] = json!(graph.uri());
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
