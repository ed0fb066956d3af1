//! Suppressions on the local runtime: a user who stops marketing messages (the
//! `user_preferences` webhook, or Meta's 131050) gets no marketing template until they resume;
//! an email address a server refused as unknown (550 5.1.1) gets nothing until the suppression
//! lapses or an operator lifts it. Both are refused at acceptance with 422
//! `recipient_suppressed`, or — with a fallback — go straight to it; `GET /v1/suppressions`
//! lists them and `DELETE /v1/suppressions/{channel}/{address}` lifts one.

use carteiro_e2e::local::{TestApp, default_secrets, graph_secrets, spawn_app_with};
use carteiro_e2e::smtp::SmtpServer;
use carteiro_e2e::webhooks::{ACCESS_TOKEN, API_KEY, APP_SECRET, fixture, sign};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "+16505551234";

fn template(category: &str) -> Value {
    json!({"channel": "whatsapp", "to": USER,
           "template": {"name": "weekly_offers", "language": "pt_BR", "category": category}})
}

/// The `user_preferences` fixture (a resume) with `value` and `timestamp` set.
fn preference(value: &str, timestamp: i64) -> Vec<u8> {
    let mut doc: Value =
        serde_json::from_slice(&fixture("webhook_user_preferences_marketing_resume.json")).unwrap();
    let p = &mut doc["entry"][0]["changes"][0]["value"]["user_preferences"][0];
    p["value"] = json!(value);
    p["timestamp"] = json!(timestamp);
    doc.to_string().into_bytes()
}

async fn suppressions(app: &TestApp) -> Vec<Value> {
    let res = app
        .http
        .get(app.url("/v1/suppressions"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["suppressions"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the listing holds `n` suppressions.
async fn suppressions_when(app: &TestApp, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let now = suppressions(app).await;
        if now.len() == n {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the listing never held {n} suppressions: {:?}",
        suppressions(app).await
    );
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app
        .http
        .delete(app.url(path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn post_webhook(app: &TestApp, body: &[u8]) {
    let res = app.post_webhook(body, Some(&sign(APP_SECRET, body))).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_user_who_stopped_marketing_gets_no_marketing_template_until_they_resume() {
    let app = spawn_app_with(default_secrets()).await;
    assert_eq!(app.send(&template("marketing"), None).await.status(), 202);

    post_webhook(&app, &preference("stop", 1_731_705_000)).await;
    let listed = suppressions_when(&app, 1).await;
    assert_eq!(listed[0]["channel"], "whatsapp");
    assert_eq!(listed[0]["address"], "16505551234");
    assert_eq!(listed[0]["scope"], "marketing");
    assert_eq!(listed[0]["reason"], "user_preferences");

    // Marketing: refused. Anything else: sent.
    let res = app.send(&template("marketing"), None).await;
    assert_eq!(res.status(), 422);
    let err = res.json::<Value>().await.unwrap();
    assert_eq!(err["error"]["code"], "recipient_suppressed", "{err}");
    assert_eq!(err["error"]["field"], "to");
    assert_eq!(app.send(&template("utility"), None).await.status(), 202);
    let text = json!({"channel": "whatsapp", "to": USER, "text": {"body": "Seu pedido saiu"}});
    assert_eq!(app.send(&text, None).await.status(), 202);

    // With a fallback: accepted, and the fallback goes instead.
    let mut with_fallback = template("marketing");
    with_fallback["fallback"] = json!([{"channel": "email", "to": ["ana@example.com"], "subject": "Ofertas", "text": "Ofertas da semana"}]);
    let res = app.send(&with_fallback, Some("offers-1")).await;
    assert_eq!(res.status(), 202);
    let body = res.json::<Value>().await.unwrap();
    assert!(
        body["warnings"]
            .as_array()
            .unwrap()
            .contains(&json!("recipient_suppressed")),
        "{body}"
    );
    let id = body["id"].as_str().unwrap().to_owned();
    let parent = app
        .message_when_within(&id, Duration::from_secs(10), |m| {
            m["delivered_by"].is_string() && m["delivered_by"] != m["id"]
        })
        .await;
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(parent["last_error"]["code"], "recipient_suppressed");
    assert!(
        parent["attempts"].as_array().unwrap().is_empty(),
        "no attempt: {parent}"
    );
    assert_eq!(parent["fallbacks"][0]["channel"], "email");

    // A resume older than the stop changes nothing; a newer one lifts it.
    post_webhook(&app, &preference("resume", 1_731_704_000)).await;
    app.wait_until_idle().await;
    assert_eq!(suppressions(&app).await.len(), 1);
    post_webhook(&app, &preference("resume", 1_731_705_721)).await;
    suppressions_when(&app, 0).await;
    assert_eq!(app.send(&template("marketing"), None).await.status(), 202);

    // Lifting what is not there: 404 with a JSON body; an unknown channel too.
    let (status, body) = delete(&app, "/v1/suppressions/whatsapp/16505551234").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(delete(&app, "/v1/suppressions/sms/123").await.0, 404);
}

#[tokio::test]
async fn metas_131050_suppresses_the_users_marketing() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
            "type": "OAuthException", "code": 131050, "fbtrace_id": "Atest"}})))
        .expect(1)
        .mount(&graph)
        .await;
    let app = spawn_app_with(graph_secrets(&graph.uri(), ACCESS_TOKEN)).await;
    let res = app.send(&template("marketing"), None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.message_when(&id, |m| m["status"] == "failed").await;
    assert_eq!(failed["last_error"]["code"], "131050", "{failed}");
    let listed = suppressions_when(&app, 1).await;
    assert_eq!(listed[0]["reason"], "131050");
    assert_eq!(listed[0]["message_id"], id.as_str());
    let res = app.send(&template("marketing"), None).await;
    assert_eq!(
        res.status(),
        422,
        "refused at acceptance, not sent to Meta again"
    );
}

#[tokio::test]
async fn an_address_refused_as_unknown_is_suppressed_until_lifted() {
    let smtp = SmtpServer::start_failing(&[(
        "RCPT",
        "nobody@example.com",
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown",
    )]);
    let mut secrets = default_secrets();
    secrets["smtp"] = json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "from_email": "Loja <loja@example.com>"});
    let app = spawn_app_with(secrets).await;
    let email =
        |to: &[&str]| json!({"channel": "email", "to": to, "subject": "Pedido", "text": "Olá"});

    // Two recipients, one unknown: the refused one is the one suppressed.
    let res = app
        .send(
            &email(&["Ninguém <Nobody@Example.com>", "ana@example.com"]),
            None,
        )
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.message_when(&id, |m| m["status"] == "failed").await;
    assert_eq!(failed["last_error"]["code"], "550", "{failed}");
    let listed = suppressions_when(&app, 1).await;
    assert_eq!(listed[0]["channel"], "email");
    assert_eq!(listed[0]["address"], "nobody@example.com");
    assert_eq!(listed[0]["reason"], "smtp_5.1.1");
    assert_eq!(listed[0]["scope"], "all");
    let until = listed[0]["until"].as_str().unwrap();
    let until = carteiro_shared::domain::Timestamp::parse_rfc3339(until).unwrap();
    let in_days =
        (until.as_millis() - carteiro_shared::domain::Timestamp::now().as_millis()) / 86_400_000;
    assert_eq!(in_days, 29, "suppressed for the default 30 days: {until:?}");

    // Refused at acceptance, whoever else it is to.
    let res = app
        .send(&email(&["ana@example.com", "nobody@example.com"]), None)
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "recipient_suppressed"
    );
    assert_eq!(
        app.send(&email(&["ana@example.com"]), None).await.status(),
        202
    );

    // Lifted by an operator (the address percent-encoded): accepted again.
    let (status, body) = delete(&app, "/v1/suppressions/email/nobody%40example.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], true);
    assert!(suppressions(&app).await.is_empty());
    assert_eq!(
        app.send(&email(&["nobody@example.com"]), None)
            .await
            .status(),
        202
    );
}
