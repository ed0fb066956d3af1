//! Callbacks on the local runtime: inbound messages and statuses reach a local receiver as
//! signed Standard Webhooks requests, verified with the published `standardwebhooks` crate
//! (not Carteiro's code); the sender's answers to 500, 429, 410 and redirects; rotation.

use carteiro_e2e::local::{TestApp, default_secrets, spawn_app_configured};
use carteiro_e2e::webhooks::{
    APP_SECRET, inbound_text_payload, new_wamid, sign, status_payload, whsec,
};
use carteiro_shared::config::parse_schedule;
use carteiro_shared::resilience::RetryPolicy;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fast_callbacks(config: &mut carteiro_local::Config) {
    config.settings.dispatch.callback_retry = RetryPolicy::new(
        parse_schedule("0s,200ms,200ms,200ms,200ms").unwrap(),
        0.0,
        Duration::from_secs(600),
        Duration::ZERO,
    );
}

fn secrets_with(endpoints: Value) -> Value {
    let mut s = default_secrets();
    s["callbacks"] = json!({ "endpoints": endpoints });
    s
}

/// Requests to `at` so far.
async fn requests_to(server: &MockServer, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

/// Waits (10 s at most) until `at` got `n` requests matching `pick`, and returns those.
async fn wait_for(
    server: &MockServer,
    at: &str,
    n: usize,
    pick: impl Fn(&Value) -> bool,
) -> Vec<Request> {
    for _ in 0..500 {
        let got: Vec<Request> = requests_to(server, at)
            .await
            .into_iter()
            .filter(|r| pick(&serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{at} did not get {n} matching callbacks: {:?}",
        requests_to(server, at)
            .await
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn header<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Checks the request with the published Standard Webhooks library.
fn verify(secret: &str, r: &Request) {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    wh.verify(&r.body, &r.headers)
        .unwrap_or_else(|e| panic!("signature does not verify with {secret}: {e:?}"));
}

async fn post_inbound(app: &TestApp, from: &str, text: &str) -> String {
    let wamid = new_wamid();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let payload = inbound_text_payload(from, &wamid, now, text);
    let res = app
        .post_webhook(&payload, Some(&sign(APP_SECRET, &payload)))
        .await;
    assert_eq!(res.status(), 200);
    wamid
}

#[tokio::test]
async fn an_inbound_text_and_a_status_reach_the_app_as_signed_callbacks() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let secret = whsec("app");
    let app = spawn_app_configured(
        secrets_with(
            json!([{ "id": "app", "url": format!("{}/hook", receiver.uri()), "secret": secret,
                              "events": ["message.received", "message.status"] }]),
        ),
        fast_callbacks,
    )
    .await;

    let wamid = post_inbound(&app, "5511999990013", "oi").await;
    let got = wait_for(&receiver, "/hook", 1, |b| b["type"] == "message.received").await;
    let r = &got[0];
    verify(&secret, r);
    let b = body(r);
    assert_eq!(b["data"]["text"], "oi");
    assert_eq!(b["data"]["wa_id"], "5511999990013");
    assert_eq!(b["data"]["profile_name"], "Ana");
    assert_eq!(b["data"]["message_id"], wamid.as_str());
    assert!(b["timestamp"].as_str().unwrap().ends_with('Z'), "{b}");
    let event_id = header(r, "webhook-id").to_owned();
    assert!(event_id.starts_with("evt_"), "{event_id}");

    // The receiver has the callback a moment before dispatch writes its outcome: read the
    // event once its delivery is no longer `sending`.
    let mut event = Value::Null;
    for _ in 0..100 {
        let res = app
            .http
            .get(app.url(&format!("/v1/events/{event_id}")))
            .bearer_auth(carteiro_e2e::webhooks::API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        event = res.json().await.unwrap();
        if event["deliveries"][0]["status"] != "sending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(event["type"], "message.received");
    assert_eq!(event["deliveries"][0]["endpoint_id"], "app");
    assert_eq!(event["deliveries"][0]["status"], "sent");
    assert_eq!(
        event["deliveries"][0]["attempts"][0]["provider_status"],
        "204"
    );

    // A message sent through the send API, then Meta's status for it.
    let res = app
        .send(
            &json!({"channel": "whatsapp", "to": "+5511999990013", "text": {"body": "Olá"}}),
            Some("cb-1"),
        )
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app
        .message_when(&id, |m| m["provider_message_id"].is_string())
        .await;
    let sent_wamid = sent["provider_message_id"].as_str().unwrap().to_owned();
    let status = status_payload(&sent_wamid, "delivered", 1_767_225_700, Some(&id));
    assert_eq!(
        app.post_webhook(&status, Some(&sign(APP_SECRET, &status)))
            .await
            .status(),
        200
    );
    let got = wait_for(&receiver, "/hook", 1, |b| {
        b["type"] == "message.status"
            && b["data"]["message_id"] == id.as_str()
            && b["data"]["status"] == "delivered"
    })
    .await;
    verify(&secret, &got[0]);
    let b = body(&got[0]);
    assert_eq!(b["data"]["provider_message_id"], sent_wamid.as_str());
    assert_eq!(b["data"]["recipient"], "+5511999990013");

    // The status webhook again: still one callback for it.
    assert_eq!(
        app.post_webhook(&status, Some(&sign(APP_SECRET, &status)))
            .await
            .status(),
        200
    );
    app.wait_until_idle().await;
    let delivered: Vec<_> = requests_to(&receiver, "/hook")
        .await
        .into_iter()
        .filter(|r| {
            let b = body(r);
            b["type"] == "message.status"
                && b["data"]["message_id"] == id.as_str()
                && b["data"]["status"] == "delivered"
        })
        .collect();
    assert_eq!(delivered.len(), 1);
}

#[tokio::test]
async fn the_sender_retries_500_honours_retry_after_disables_on_410_and_follows_no_redirect() {
    let receiver = MockServer::start().await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down for a bit"))
        .up_to_n_times(2)
        .mount(&receiver)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_string("thanks, got it"))
        .mount(&receiver)
        .await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(410))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let elsewhere = format!("{}/elsewhere", receiver.uri());
    Mock::given(path("/moved"))
        .respond_with(ResponseTemplate::new(308).insert_header("location", elsewhere.as_str()))
        .mount(&receiver)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let url = |p: &str| format!("{}{p}", receiver.uri());
    let secret = whsec("semantics");
    let app = spawn_app_configured(
        secrets_with(json!([
            { "id": "flaky", "url": url("/flaky"), "secret": secret },
            { "id": "busy", "url": url("/busy"), "secret": secret },
            { "id": "gone", "url": url("/gone"), "secret": secret },
            { "id": "moved", "url": url("/moved"), "secret": secret },
        ])),
        fast_callbacks,
    )
    .await;
    post_inbound(&app, "5511999990014", "primeira").await;

    // 500, 500, then 200: three attempts of one event, one webhook-id.
    let flaky = wait_for(&receiver, "/flaky", 3, |_| true).await;
    let ids: std::collections::BTreeSet<_> = flaky
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "webhook-id changed between retries");
    for r in &flaky {
        verify(&secret, r);
    }
    let event_id = ids.into_iter().next().unwrap();

    // 429 with Retry-After: 2 → the next attempt waits at least 2 s (the schedule says 200 ms).
    wait_for(&receiver, "/busy", 2, |_| true).await;
    let event: Value = app
        .http
        .get(app.url(&format!("/v1/events/{event_id}")))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = |id: &str| {
        event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == id)
            .unwrap()
            .clone()
    };
    let busy_attempts = delivery("busy")["attempts"].as_array().unwrap().clone();
    assert_eq!(busy_attempts[0]["outcome"], "throttled");
    let waited = busy_attempts[1]["started_at"].as_i64().unwrap()
        - busy_attempts[0]["started_at"].as_i64().unwrap();
    assert!(
        waited >= 2_000,
        "retried after {waited} ms despite Retry-After: 2"
    );
    let flaky_attempts = delivery("flaky")["attempts"].as_array().unwrap().clone();
    assert_eq!(flaky_attempts[0]["provider_code"], "500");
    assert_eq!(flaky_attempts[0]["details"], "down for a bit");
    // A success keeps the endpoint's answer too.
    assert_eq!(flaky_attempts[2]["provider_status"], "200");
    assert_eq!(flaky_attempts[2]["details"], "thanks, got it");

    // 308: not followed, retried on the schedule until given up; /elsewhere never called.
    app.wait_until_idle().await;
    assert!(
        requests_to(&receiver, "/elsewhere").await.is_empty(),
        "a redirect was followed"
    );
    let moved = app
        .http
        .get(app.url(&format!("/v1/events/{event_id}")))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let moved = moved["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["endpoint_id"] == "moved")
        .unwrap()
        .clone();
    assert_eq!(moved["attempts"][0]["provider_code"], "308");
    assert_eq!(moved["status"], "dead", "{moved}");

    // 410: the endpoint is disabled; the next event is not sent to it at all.
    let gone = delivery("gone");
    assert_eq!(gone["status"], "failed", "{gone}");
    let endpoints: Value = app
        .http
        .get(app.url("/v1/endpoints"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let state = endpoints["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "gone")
        .unwrap()
        .clone();
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["disabled"]["reason"], "gone");
    post_inbound(&app, "5511999990014", "segunda").await;
    wait_for(&receiver, "/flaky", 1, |b| b["data"]["text"] == "segunda").await;
    app.wait_until_idle().await;
    assert_eq!(
        requests_to(&receiver, "/gone").await.len(),
        1,
        "a disabled endpoint was called"
    );

    // Enabled again, a replay of the first event reaches it, with the same webhook-id.
    let res = app
        .http
        .post(app.url("/v1/endpoints/gone/enable"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["enabled"], true);
    let res = app
        .http
        .post(app.url(&format!("/v1/events/{event_id}/replay")))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let replayed = wait_for(&receiver, "/gone", 2, |_| true).await;
    assert_eq!(header(&replayed[1], "webhook-id"), event_id);
    verify(&secret, &replayed[1]);
}

#[tokio::test]
async fn during_a_rotation_each_secret_verifies_alone() {
    let receiver = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (old, new) = (whsec("old"), whsec("new"));
    let app = spawn_app_configured(
        secrets_with(json!([{ "id": "app", "url": format!("{}/hook", receiver.uri()), "secrets": [old, new] }])),
        fast_callbacks,
    )
    .await;
    post_inbound(&app, "5511999990015", "rotação").await;
    let got = wait_for(&receiver, "/hook", 1, |_| true).await;
    let signatures: Vec<&str> = header(&got[0], "webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    verify(&old, &got[0]);
    verify(&new, &got[0]);
    assert!(
        standardwebhooks::Webhook::new(&whsec("other"))
            .unwrap()
            .verify(&got[0].body, &got[0].headers)
            .is_err()
    );
}

#[tokio::test]
async fn unauthenticated_and_unknown_event_requests_are_refused() {
    let app = carteiro_e2e::local::spawn_app().await;
    let res = app
        .http
        .get(app.url("/v1/events/evt_00000000000000000000000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .get(app.url("/v1/events/evt_00000000000000000000000000000000"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .get(app.url("/v1/events/nope"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let res = app
        .http
        .post(app.url("/v1/endpoints/nope/enable"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .delete(app.url("/v1/endpoints"))
        .bearer_auth(carteiro_e2e::webhooks::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn an_ordered_endpoint_gets_one_contacts_events_in_order() {
    let receiver = MockServer::start().await;
    for at in ["/ordered", "/unordered"] {
        Mock::given(path(at))
            .and(wiremock::matchers::body_string_contains("primeira"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(2)
            .mount(&receiver)
            .await;
        Mock::given(path(at))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
    }
    let secret = whsec("ordered");
    let app = spawn_app_configured(
        secrets_with(json!([
            { "id": "ordered", "url": format!("{}/ordered", receiver.uri()), "secret": secret, "ordered": true,
              "events": ["message.received"] },
            { "id": "unordered", "url": format!("{}/unordered", receiver.uri()), "secret": secret,
              "events": ["message.received"] },
        ])),
        fast_callbacks,
    )
    .await;
    // The order is the order Carteiro learnt of them: the second is posted once the first has
    // been published (its first attempt made), as two webhooks a moment apart would be.
    post_inbound(&app, "5511999990051", "primeira").await;
    wait_for(&receiver, "/ordered", 1, |_| true).await;
    post_inbound(&app, "5511999990051", "segunda").await;
    wait_for(&receiver, "/ordered", 4, |_| true).await;
    wait_for(&receiver, "/unordered", 4, |_| true).await;
    let texts = |rs: Vec<Request>| {
        rs.iter()
            .map(|r| body(r)["data"]["text"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Two failures and the success of the first, then the second.
    assert_eq!(
        texts(requests_to(&receiver, "/ordered").await),
        ["primeira", "primeira", "primeira", "segunda"]
    );
    // Without `ordered`, the second does not wait for the first's retries.
    let unordered = texts(requests_to(&receiver, "/unordered").await);
    assert_eq!(unordered.len(), 4);
    assert_ne!(
        unordered.last().map(String::as_str),
        Some("segunda"),
        "{unordered:?}"
    );
}
