//! The whole webhook path on the local runtime, over HTTP: intake → embedded queue →
//! in-process consumer → embedded store.

use carteiro_e2e::local::spawn_app;
use carteiro_e2e::webhooks::{
    APP_SECRET, VERIFY_TOKEN, fixture, new_wamid, sent_record, sign, status_payload,
};
use carteiro_shared::domain::DeliveryStatus;
use carteiro_shared::ports::KeptKind;
use std::time::Duration;

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..250 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn local_handshake_echoes_the_challenge_and_refuses_a_wrong_token() {
    let app = spawn_app().await;
    let ok = app
        .http
        .get(app.url(&format!(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    let wrong = app
        .http
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_verify_token");
}

#[tokio::test]
async fn local_signed_status_webhook_advances_the_delivery_record() {
    let app = spawn_app().await;
    let store = app.gateway.inbound.store.clone();
    let wamid = new_wamid();
    let record = sent_record(&wamid);
    store.create(&record).await.unwrap();

    let body = status_payload(&wamid, "delivered", 1_700_000_100, None);
    let res = app
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(res.status(), 200);
    let ack: serde_json::Value = res.json().await.unwrap();
    assert_eq!(ack, serde_json::json!({"status": "ok", "queued": 1}));

    let updated = eventually("the delivered status", || {
        let store = store.clone();
        let id = record.id.clone();
        async move {
            let r = store.get(&id).await.unwrap()?;
            (r.status == DeliveryStatus::Delivered).then_some(r)
        }
    })
    .await;
    assert_eq!(updated.events.len(), 1);
    assert_eq!(updated.version, record.version + 1);
}

#[tokio::test]
async fn local_inbound_message_fixture_is_stored_for_the_app() {
    let app = spawn_app().await;
    let body = fixture("webhook_msg_text.json");
    let res = app
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(res.status(), 200);

    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let wamid = parsed["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = app.gateway.inbound.store.clone();
    let stored = eventually("the stored inbound message", || {
        let store = store.clone();
        let wamid = wamid.clone();
        async move {
            let found = store.list_kept(KeptKind::Message, &wamid).await.unwrap();
            (!found.is_empty()).then_some(found)
        }
    })
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload["kind"], "message");
    assert!(stored[0].expires_at > stored[0].received_at);
}

#[tokio::test]
async fn local_status_for_an_unknown_wamid_is_kept_for_reconciliation() {
    let app = spawn_app().await;
    let wamid = new_wamid();
    let body = status_payload(&wamid, "sent", 1_700_000_000, None);
    let res = app
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(res.status(), 200);
    let store = app.gateway.inbound.store.clone();
    let orphans = eventually("the orphan status", || {
        let store = store.clone();
        let wamid = wamid.clone();
        async move {
            let found = store
                .list_kept(KeptKind::OrphanStatus, &wamid)
                .await
                .unwrap();
            (!found.is_empty()).then_some(found)
        }
    })
    .await;
    assert_eq!(orphans[0].sub_key, "sent");
}

#[tokio::test]
async fn health_answers_ok_and_unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
    let res = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}
