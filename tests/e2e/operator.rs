//! Operator actions over the local runtime's HTTP API: cancel and retry, and the send API's
//! 503 path (the record is written before the job is queued, and a retry with the same
//! Idempotency-Key queues the job that never made it).

use carteiro_e2e::local::spawn_app;
use carteiro_e2e::webhooks::{API_KEY, API_KEY_ID, OTHER_API_KEY, queued_whatsapp_record};
use carteiro_shared::domain::delivery::DeliveryError;
use carteiro_shared::domain::{DeliveryStatus, MessageId, Timestamp};
use serde_json::{Value, json};
use std::time::Duration;

async fn post(app: &carteiro_e2e::local::TestApp, path: &str, key: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn seeded(app: &carteiro_e2e::local::TestApp, status: DeliveryStatus) -> MessageId {
    let mut r = queued_whatsapp_record(Timestamp::now(), "again");
    let id = r.id.clone();
    r.api_key_id = Some(API_KEY_ID.to_owned());
    r.status = status;
    if status == DeliveryStatus::RetryScheduled {
        r.next_attempt_at = Some(Timestamp::now().plus(Duration::from_secs(3_600)));
    }
    if status == DeliveryStatus::Dead {
        r.last_error = Some(DeliveryError {
            source: "whatsapp".into(),
            code: "131000".into(),
            message: "x".into(),
            details: None,
        });
    }
    app.gateway.send_api.store.create(&r).await.unwrap();
    id
}

#[tokio::test]
async fn cancel_stops_a_pending_message_and_is_refused_once_it_is_terminal() {
    let app = spawn_app().await;
    let id = seeded(&app, DeliveryStatus::RetryScheduled).await;
    let path = format!("/v1/messages/{id}/cancel");
    // Another key's message does not exist, as for GET.
    let (status, body) = post(&app, &path, OTHER_API_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = post(&app, &path, API_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["id"], id.as_str());
    let (status, body) = post(&app, &path, API_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_cancellable"))
    );
    let (status, _) = post(
        &app,
        &format!("/v1/messages/{}/cancel", MessageId::generate()),
        API_KEY,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(&app, &path, "wrong-key").await;
    assert_eq!(status, 401);
    // A GET on the action route is refused with the method it takes.
    let res = app
        .http
        .get(app.url(&path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
}

#[tokio::test]
async fn retry_gives_a_dead_message_a_fresh_budget_and_sends_it() {
    let app = spawn_app().await;
    let id = seeded(&app, DeliveryStatus::Dead).await;
    let path = format!("/v1/messages/{id}/retry");
    let (status, _) = post(&app, &path, OTHER_API_KEY).await;
    assert_eq!(status, 404);
    let (status, body) = post(&app, &path, API_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    let sent = app
        .message_when(id.as_str(), |m| m["provider_message_id"].is_string())
        .await;
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 1);
    // A sent message is not retryable; neither is one still pending.
    let (status, body) = post(&app, &path, API_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_retryable"))
    );
    let pending = seeded(&app, DeliveryStatus::RetryScheduled).await;
    let (status, _) = post(&app, &format!("/v1/messages/{pending}/retry"), API_KEY).await;
    assert_eq!(status, 409);
    let outbox = app.sandbox_outbox().await;
    assert_eq!(outbox["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_may_carry_its_own_retry_limits_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let ok = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "x"},
                    "retry": {"max_attempts": 2, "max_age": "2h"}});
    let res = app.send(&ok, None).await;
    assert_eq!(res.status().as_u16(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = app
        .gateway
        .send_api
        .store
        .get(&MessageId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let limits = record.retry.unwrap();
    assert_eq!(limits.max_attempts, Some(2));
    assert_eq!(limits.max_age_ms, Some(7_200_000));
    for (retry, field) in [
        (json!({"max_attempts": 0}), "retry.max_attempts"),
        (json!({"max_attempts": "3"}), "retry.max_attempts"),
        (json!({"max_age": "soon"}), "retry.max_age"),
        (json!({"max_age": 60}), "retry.max_age"),
        (json!({"forever": true}), "retry.forever"),
        (json!([]), "retry"),
    ] {
        let body = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "x"}, "retry": retry});
        let res = app.send(&body, None).await;
        assert_eq!(res.status().as_u16(), 422, "{retry}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["field"], field, "{retry}: {err}");
    }
}
