//! The customer-service window: Carteiro knows when each contact last wrote, shows it on
//! `GET /v1/conversations/{wa_id}`, and applies `CARTEIRO_SERVICE_WINDOW` to free-form
//! WhatsApp messages at acceptance.

use carteiro_e2e::local::{TestApp, default_secrets, spawn_app, spawn_app_configured};
use carteiro_e2e::webhooks::{API_KEY, APP_SECRET, inbound_text_payload, new_wamid, sign};
use carteiro_shared::config::ServiceWindowRule;
use serde_json::{Value, json};

const HOUR: i64 = 3_600;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The contact `from` wrote `hours_ago` hours ago.
async fn wrote(app: &TestApp, from: &str, hours_ago: i64) {
    let payload = inbound_text_payload(from, &new_wamid(), now_secs() - hours_ago * HOUR, "oi");
    let res = app
        .post_webhook(&payload, Some(&sign(APP_SECRET, &payload)))
        .await;
    assert_eq!(res.status(), 200);
    app.wait_until_idle().await;
}

fn text(to: &str) -> Value {
    json!({"channel": "whatsapp", "to": to, "text": {"body": "Olá"}})
}

fn template(to: &str) -> Value {
    json!({"channel": "whatsapp", "to": to, "template": {"name": "order_update", "language": "pt_BR"}})
}

async fn answer(app: &TestApp, body: &Value) -> (u16, Value) {
    let res = app.send(body, None).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn under_enforce_free_form_needs_a_message_in_the_last_24_hours() {
    let app = spawn_app_configured(default_secrets(), |c| {
        c.settings.send_api.service_window = ServiceWindowRule::Enforce;
    })
    .await;
    wrote(&app, "5511999990021", 23).await;
    wrote(&app, "5511999990022", 25).await;

    let (status, body) = answer(&app, &text("+5511999990021")).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.get("warnings").is_none(), "{body}");

    for to in ["+5511999990022", "+5511999990023"] {
        let (status, body) = answer(&app, &text(to)).await;
        assert_eq!(status, 422, "{to}: {body}");
        assert_eq!(body["error"]["code"], "outside_service_window");
        assert_eq!(body["error"]["field"], "to");
        let (status, body) = answer(&app, &template(to)).await;
        assert_eq!(status, 202, "a template to {to} must be accepted: {body}");
    }

    // With a fallback, the first one that may be sent takes the message's place.
    let mut with_fallback = text("+5511999990023");
    with_fallback["fallback"] = json!([text("+5511999990023"), template("+5511999990023")]);
    let (status, body) = answer(&app, &with_fallback).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["warnings"],
        json!(["outside_service_window", "fallback_used"])
    );
    let id = body["id"].as_str().unwrap().to_owned();
    let sent = app
        .message_when(&id, |m| m["provider_message_id"].is_string())
        .await;
    assert_eq!(sent["channel"], "whatsapp");
    // The request the sandbox took for this message (others may be sent after it).
    let outbox = app.sandbox_outbox().await;
    let taken = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["body"]["biz_opaque_callback_data"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(taken["body"]["type"], "template", "{taken}");
}

#[tokio::test]
async fn under_warn_the_text_is_accepted_with_a_warning_and_the_window_is_shown() {
    let app = spawn_app().await;
    let (status, body) = answer(&app, &text("+5511999990031")).await;
    assert_eq!(status, 202);
    assert_eq!(body["warnings"], json!(["outside_service_window"]));

    wrote(&app, "5511999990031", 1).await;
    let (status, body) = answer(&app, &text("+5511999990031")).await;
    assert_eq!(status, 202);
    assert!(body.get("warnings").is_none(), "{body}");

    let res = app
        .http
        .get(app.url("/v1/conversations/+5511999990031"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["wa_id"], "5511999990031");
    assert_eq!(c["profile_name"], "Ana");
    assert_eq!(c["service_window"]["open"], true);
    let expires = c["service_window"]["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.contains('T'), "{expires}");

    let never: Value = app
        .http
        .get(app.url("/v1/conversations/5511999990039"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(never["service_window"]["open"], false);
    assert_eq!(never["last_inbound_at"], Value::Null);
    let bad = app
        .http
        .get(app.url("/v1/conversations/not-a-number"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
