//! Hostile send requests get precise 4xx answers with the contract's JSON error body and
//! create nothing: no record is queued, nothing reaches a provider, no Idempotency-Key is used up.

use carteiro_e2e::local::spawn_app;
use carteiro_e2e::webhooks::API_KEY;
use carteiro_shared::ports::Queue;
use serde_json::{Value, json};
use std::time::Duration;

struct Case {
    name: &'static str,
    auth: Option<&'static str>,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn json_case(
    name: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        auth: Some(API_KEY),
        content_type: "application/json",
        body: serde_json::to_vec(&body).unwrap(),
        status,
        code,
        field,
    }
}

fn cases() -> Vec<Case> {
    let valid = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}});
    let valid_bytes = serde_json::to_vec(&valid).unwrap();
    let mut big = valid.clone();
    big["text"]["body"] = json!("a".repeat(300 * 1024));
    vec![
        Case {
            name: "no API key",
            auth: None,
            content_type: "application/json",
            body: valid_bytes.clone(),
            status: 401,
            code: "missing_api_key",
            field: None,
        },
        Case {
            name: "wrong API key",
            auth: Some("not-a-key"),
            content_type: "application/json",
            body: valid_bytes.clone(),
            status: 401,
            code: "invalid_api_key",
            field: None,
        },
        Case {
            name: "malformed JSON",
            auth: Some(API_KEY),
            content_type: "application/json",
            body: br#"{"channel":"whatsapp","#.to_vec(),
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Case {
            name: "not JSON",
            auth: Some(API_KEY),
            content_type: "text/plain",
            body: valid_bytes.clone(),
            status: 415,
            code: "unsupported_media_type",
            field: None,
        },
        json_case("oversize body", big, 413, "payload_too_large", None),
        json_case(
            "unknown channel",
            json!({"channel": "sms", "to": "+5511999990001", "text": {"body": "x"}}),
            422,
            "unknown_channel",
            Some("channel"),
        ),
        json_case(
            "no channel",
            json!({"to": "+5511999990001", "text": {"body": "x"}}),
            422,
            "missing_field",
            Some("channel"),
        ),
        json_case(
            "invalid number",
            json!({"channel": "whatsapp", "to": "12345", "text": {"body": "x"}}),
            422,
            "invalid_field",
            Some("to"),
        ),
        json_case(
            "no content",
            json!({"channel": "whatsapp", "to": "+5511999990001"}),
            422,
            "missing_content",
            Some("text"),
        ),
        json_case(
            "text too long",
            json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "a".repeat(4097)}}),
            422,
            "too_long",
            Some("text.body"),
        ),
        json_case(
            "caption too long",
            json!({"channel": "whatsapp", "to": "+5511999990001", "image": {"link": "https://example.com/a.png", "caption": "c".repeat(1025)}}),
            422,
            "too_long",
            Some("image.caption"),
        ),
        json_case(
            "four reply buttons",
            json!({"channel": "whatsapp", "to": "+5511999990001", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "1", "title": "a"}}, {"type": "reply", "reply": {"id": "2", "title": "b"}},
            {"type": "reply", "reply": {"id": "3", "title": "c"}}, {"type": "reply", "reply": {"id": "4", "title": "d"}}]}}}),
            422,
            "too_many",
            Some("interactive.action.buttons"),
        ),
        json_case(
            "template parameter without its value",
            json!({"channel": "whatsapp", "to": "+5511999990001", "template": {"name": "order_update", "language": "pt_BR",
            "components": [{"type": "body", "parameters": [{"type": "text"}]}]}}),
            422,
            "missing_field",
            Some("template.components[0].parameters[0].text"),
        ),
        json_case(
            "invalid email address",
            json!({"channel": "email", "to": ["not-an-address"], "subject": "Oi", "text": "x"}),
            422,
            "invalid_field",
            Some("to[0]"),
        ),
        json_case(
            "header injection in subject",
            json!({"channel": "email", "to": ["ana@example.com"], "subject": "Oi\r\nBcc: victim@example.com", "text": "x"}),
            422,
            "invalid_field",
            Some("subject"),
        ),
        json_case(
            "header injection in reply-to",
            json!({"channel": "email", "to": ["ana@example.com"], "reply_to": "ana@example.com\nX-Evil: 1", "subject": "Oi", "text": "x"}),
            422,
            "invalid_field",
            Some("reply_to"),
        ),
        json_case(
            "email template missing a variable",
            json!({"channel": "email", "to": ["ana@example.com"], "subject": "Oi", "template": {"name": "welcome", "variables": {"name": "Ana"}}}),
            422,
            "invalid_template",
            Some("template"),
        ),
        json_case(
            "unknown email template",
            json!({"channel": "email", "to": ["ana@example.com"], "subject": "Oi", "template": {"name": "no_such_template", "variables": {}}}),
            422,
            "invalid_template",
            Some("template"),
        ),
    ]
}

#[tokio::test]
async fn hostile_send_requests_are_refused_precisely_and_create_nothing() {
    let app = spawn_app().await;
    for (i, case) in cases().into_iter().enumerate() {
        let mut req = app
            .http
            .post(app.url("/v1/messages"))
            .header("content-type", case.content_type)
            .header("idempotency-key", format!("hostile-{i}"))
            .body(case.body);
        if let Some(key) = case.auth {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert_eq!(
            body["error"]["field"].as_str(),
            case.field,
            "{}: {body}",
            case.name
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
    }
    // Nothing was stored, queued or sent...
    app.wait_until_idle().await;
    let far_future = carteiro_shared::domain::Timestamp::from_millis(i64::MAX / 2);
    let stray = app
        .gateway
        .send_api
        .store
        .list_due(far_future, 10)
        .await
        .unwrap();
    assert!(
        stray.is_empty(),
        "hostile requests stored records: {stray:?}"
    );
    let outbound = app.gateway.db.queue(carteiro_local::OUTBOUND_QUEUE);
    assert!(
        outbound
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let outbox = app.sandbox_outbox().await;
    assert_eq!(outbox["messages"], json!([]));
    assert_eq!(outbox["emails"], json!([]));
    // ...and no Idempotency-Key was used up: each still accepts a valid request.
    let valid = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}});
    for i in [2, 5, 12] {
        let res = app.send(&valid, Some(&format!("hostile-{i}"))).await;
        assert_eq!(res.status(), 202, "hostile-{i} was consumed");
    }
}

#[tokio::test]
async fn bad_idempotency_keys_and_methods_are_refused() {
    let app = spawn_app().await;
    let valid = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}});
    let res = app.send(&valid, Some(&"k".repeat(256))).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["field"],
        "Idempotency-Key"
    );

    // The collection takes GET (the listing) and POST, nothing else.
    let res = app
        .http
        .put(app.url("/v1/messages"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = app
        .http
        .delete(app.url("/v1/messages/msg_0190f0c2a0f47c1e9c7e6d4a8b2f1e3d"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}
