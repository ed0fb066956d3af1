//! The send path on the local runtime over HTTP: send API → embedded outbound queue →
//! in-process dispatch → WhatsApp (sandbox or the Graph API on wiremock) → delivery state.

use carteiro_e2e::local::{TestApp, graph_secrets, spawn_app, spawn_app_with};
use carteiro_e2e::webhooks::{ACCESS_TOKEN, APP_SECRET, OTHER_API_KEY, sign, status_payload};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GRAPH_PATH: &str = "/v23.0/1122334455667/messages";

fn text_message() -> Value {
    json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá", "preview_url": false}})
}

fn accepted(wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
        "messages": [{"id": wamid, "message_status": "accepted"}]
    }))
}

fn meta_error(status: u16, code: i64, details: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {
        "message": format!("(#{code}) test"), "type": "OAuthException", "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "AbCdEf"
    }}))
}

/// A gateway whose WhatsApp secret points at `graph` with `token`.
async fn app_with_graph(graph: &MockServer, token: &str) -> TestApp {
    spawn_app_with(graph_secrets(&graph.uri(), token)).await
}

async fn accepted_id(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn local_whatsapp_without_credentials_is_delivered_to_the_sandbox_outbox() {
    let app = spawn_app().await;
    let id = accepted_id(app.send(&text_message(), None).await).await;
    let record = app.message_when(&id, |m| m["status"] == "sent").await;
    assert_eq!(record["attempts"][0]["provider_status"], "sandbox");
    assert!(
        record["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.sandbox.")
    );

    let outbox = app.sandbox_outbox().await;
    let sent = &outbox["messages"][0]["body"];
    assert_eq!(sent["to"], "5511999990001");
    assert_eq!(sent["text"]["body"], "Olá");
    assert_eq!(sent["biz_opaque_callback_data"], id.as_str());
}

#[tokio::test]
async fn local_whatsapp_is_sent_through_the_graph_api_and_its_statuses_reconcile() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GRAPH_PATH))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(accepted("wamid.LOCAL1"))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph, ACCESS_TOKEN).await;
    let id = accepted_id(app.send(&text_message(), None).await).await;
    let record = app.message_when(&id, |m| m["status"] == "sent").await;
    assert_eq!(record["provider_message_id"], "wamid.LOCAL1");
    assert_eq!(record["attempts"][0]["provider_status"], "accepted");
    assert_eq!(record["channel"], "whatsapp");
    assert_eq!(record["recipient"], "+5511999990001");

    let webhook = status_payload("wamid.LOCAL1", "delivered", 1_700_000_100, Some(&id));
    let res = app
        .post_webhook(&webhook, Some(&sign(APP_SECRET, &webhook)))
        .await;
    assert_eq!(res.status(), 200);
    let record = app.message_when(&id, |m| m["status"] == "delivered").await;
    assert_eq!(record["events"][0]["status"], "delivered");
}

#[tokio::test]
async fn fifty_concurrent_posts_with_one_idempotency_key_make_one_message_and_one_provider_call() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GRAPH_PATH))
        .respond_with(accepted("wamid.ONCE"))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph, ACCESS_TOKEN).await;
    let body = text_message();
    let posts = (0..50).map(|_| app.send(&body, Some("order-42-confirmation")));
    let responses = futures::future::join_all(posts).await;
    let mut ids = Vec::new();
    for res in responses {
        ids.push(accepted_id(res).await);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the same message");
    app.message_when(&ids[0], |m| m["status"] == "sent").await;

    // The same key with another body is refused, and changes nothing.
    let other = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Outra"}});
    let res = app.send(&other, Some("order-42-confirmation")).await;
    assert_eq!(res.status(), 422);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    // Every job has been handled: a stray second dispatch would have happened by now, and
    // wiremock checks `expect(1)` on drop.
    app.wait_until_idle().await;
}

#[tokio::test]
async fn a_message_is_visible_only_to_the_key_that_sent_it() {
    let app = spawn_app().await;
    let id = accepted_id(app.send(&text_message(), None).await).await;
    let (status, _) = app.message(&id).await;
    assert_eq!(status, 200);
    let res = app
        .http
        .get(app.url(&format!("/v1/messages/{id}")))
        .bearer_auth(OTHER_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, body) = app.message("msg_0190f0c2a0f47c1e9c7e6d4a8b2f1e3d").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(app.message("not-an-id").await.0, 404);
}

#[tokio::test]
async fn a_transient_meta_error_schedules_a_retry() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_error(500, 131000, "Something went wrong"))
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph, ACCESS_TOKEN).await;
    let id = accepted_id(app.send(&text_message(), None).await).await;
    let record = app
        .message_when(&id, |m| m["status"] == "retry_scheduled")
        .await;
    assert_eq!(record["last_error"]["code"], "131000");
    assert_eq!(record["attempts"][0]["outcome"], "retryable");
    assert!(
        record["next_attempt_at"].as_i64().unwrap()
            > record["attempts"][0]["started_at"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn throttling_and_pair_limits_schedule_retries_with_their_class() {
    for (code, class) in [(130429, "throttled"), (131056, "pair_limited")] {
        let graph = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(meta_error(400, code, "limit"))
            .mount(&graph)
            .await;
        let app = app_with_graph(&graph, ACCESS_TOKEN).await;
        let id = accepted_id(app.send(&text_message(), None).await).await;
        let record = app
            .message_when(&id, |m| m["status"] == "retry_scheduled")
            .await;
        assert_eq!(record["attempts"][0]["outcome"], class, "{code}");
        assert_eq!(record["last_error"]["code"], code.to_string());
    }
}

#[tokio::test]
async fn a_permanent_meta_error_fails_the_message_with_metas_reason() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_error(
            404,
            132001,
            "template name does not exist in the translation",
        ))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph, ACCESS_TOKEN).await;
    let id = accepted_id(app.send(&text_message(), None).await).await;
    let record = app.message_when(&id, |m| m["status"] == "failed").await;
    assert_eq!(record["last_error"]["code"], "132001");
    assert_eq!(
        record["last_error"]["details"],
        "template name does not exist in the translation"
    );
    assert_eq!(record["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_from_the_secret_and_the_message_sent() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer old-token"))
        .respond_with(meta_error(401, 190, "Session has expired"))
        .expect(1)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer new-token"))
        .respond_with(accepted("wamid.AFTERREFRESH"))
        .expect(1)
        .mount(&graph)
        .await;
    let app = app_with_graph(&graph, "old-token").await;
    // The operator rotates the token; the gateway still holds the old one in its cache.
    let mut secrets: Value =
        serde_json::from_str(&std::fs::read_to_string(app.secrets_file()).unwrap()).unwrap();
    secrets["whatsapp"]["access_token"] = json!("new-token");
    std::fs::write(app.secrets_file(), secrets.to_string()).unwrap();

    let id = accepted_id(app.send(&text_message(), None).await).await;
    let record = app.message_when(&id, |m| m["status"] == "sent").await;
    assert_eq!(record["provider_message_id"], "wamid.AFTERREFRESH");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 1);
}
