//! The messaging-limit quota on the local runtime: templates Meta takes for users outside their
//! customer-service window count once per user per 24 h (a reply inside an open window does
//! not), and the tier is the one a `phone_number_quality_update` webhook stated, else the
//! configured one.

use carteiro_e2e::local::{TestApp, graph_secrets, spawn_app_configured};
use carteiro_e2e::webhooks::{
    ACCESS_TOKEN, APP_SECRET, fixture, inbound_text_payload, new_wamid, sign,
};
use carteiro_shared::domain::Timestamp;
use carteiro_shared::resilience::quota::{self, MessagingLimit, QuotaReport};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn report(app: &TestApp) -> QuotaReport {
    let limits = app.gateway.dispatch.limits.as_ref().unwrap();
    quota::report(
        limits.as_ref(),
        app.gateway.dispatch.settings.messaging_limit,
        Timestamp::now(),
    )
    .await
    .unwrap()
}

async fn post(app: &TestApp, body: &[u8]) {
    assert_eq!(
        app.post_webhook(body, Some(&sign(APP_SECRET, body)))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn business_initiated_conversations_are_counted_once_per_user_against_the_tier() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
            "messages": [{"id": "wamid.QUOTA", "message_status": "accepted"}]
        })))
        .mount(&graph)
        .await;
    let app = spawn_app_configured(graph_secrets(&graph.uri(), ACCESS_TOKEN), |c| {
        c.settings.dispatch.messaging_limit = Some(MessagingLimit::Users(250));
    })
    .await;
    let initial = report(&app).await;
    assert_eq!(
        (initial.used, initial.limit, initial.source),
        (0, Some(MessagingLimit::Users(250)), "configured")
    );

    // One user wrote in: their window is open, a template to them opens no conversation.
    let now = Timestamp::now().as_millis() / 1000;
    post(
        &app,
        &inbound_text_payload("5511977770009", &new_wamid(), now, "Oi"),
    )
    .await;
    app.wait_until_idle().await;

    let template = |to: &str| json!({"channel": "whatsapp", "to": to, "template": {"name": "order_update", "language": "pt_BR"}});
    let sends = [
        "+5511977770001",
        "+5511977770002",
        "+5511977770003",
        "+5511977770001",
        "+5511977770009",
    ];
    let mut ids = Vec::new();
    for to in sends {
        let res = app.send(&template(to), None).await;
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Free-form text (only possible inside a window) never counts.
    app.send(
        &json!({"channel": "whatsapp", "to": "+5511977770009", "text": {"body": "Olá"}}),
        None,
    )
    .await;
    for id in &ids {
        app.message_when(id, |m| m["status"] == "sent").await;
    }
    app.wait_until_idle().await;
    let counted = report(&app).await;
    assert_eq!(
        counted.used, 3,
        "three users outside their window, one of them twice: {counted:?}"
    );
    assert_eq!(counted.share(), Some(3.0 / 250.0));

    // Meta states the tier: it wins over the configured one.
    let mut upgrade: Value = serde_json::from_slice(&fixture(
        "meta_doc_webhook_phone_number_quality_update_throughput_upgrade.json",
    ))
    .unwrap();
    upgrade["entry"][0]["changes"][0]["value"]["max_daily_conversations_per_business"] =
        json!("TIER_2K");
    post(&app, upgrade.to_string().as_bytes()).await;
    for _ in 0..200 {
        if report(&app).await.source == "webhook" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let stated = report(&app).await;
    assert_eq!(
        (stated.used, stated.limit, stated.source),
        (3, Some(MessagingLimit::Users(2_000)), "webhook")
    );
}
