//! N unique messages in, N unique acceptances out, with faults injected: 200 messages posted
//! through the send API, dispatched from the queue while the Graph API fails a quarter of the
//! attempts (transient 500s and bare 429s). Every message ends `sent`, Meta accepted each one
//! exactly once, and every provider call is in some record's attempt log.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::config::{GraphSettings, SmtpSettings};
use carteiro_shared::dispatch::{self, DispatchContext, DispatchSettings};
use carteiro_shared::domain::{DeliveryStatus, MessageId};
use carteiro_shared::ports::{DeliveryStore, Queue, SystemClock};
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::templates::EmailTemplates;
use carteiro_shared::resilience::RetryPolicy;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::{self, SendApiContext, SendApiSettings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const MESSAGES: usize = 200;

/// Fails attempt n of a message when (its hash + n) % 8 is 0 (a 500 with Meta's 131000) or 4
/// (a bare 429): a quarter of the attempts, never two in a row for one message, the same on
/// every run.
#[derive(Clone, Default)]
struct FlakyGraph {
    /// Per Carteiro id: attempts seen, and how many were accepted.
    seen: Arc<Mutex<HashMap<String, (u32, u32)>>>,
}

impl Respond for FlakyGraph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let id = body["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut seen = self.seen.lock().unwrap();
        let entry = seen.entry(id.clone()).or_default();
        entry.0 += 1;
        let hash = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        match hash.wrapping_add(entry.0) % 8 {
            0 => ResponseTemplate::new(500).set_body_json(
                json!({"error": {"code": 131000, "message": "Something went wrong"}}),
            ),
            4 => ResponseTemplate::new(429),
            _ => {
                entry.1 += 1;
                ResponseTemplate::new(200).set_body_json(json!({
                    "messaging_product": "whatsapp",
                    "messages": [{"id": format!("wamid.{id}"), "message_status": "accepted"}]
                }))
            }
        }
    }
}

#[tokio::test]
async fn n_unique_messages_in_n_unique_acceptances_out_despite_provider_faults() {
    carteiro_e2e::logs::capture();
    let graph = MockServer::start().await;
    let flaky = FlakyGraph::default();
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(flaky.clone())
        .mount(&graph)
        .await;

    let db = EmbeddedDb::in_memory().unwrap();
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(json!({
        "whatsapp": {"access_token": "t", "phone_number_id": "1", "app_secret": "a", "verify_token": "v",
                     "graph_base_url": graph.uri()},
        "api_keys": {"keys": [{"id": "app", "key": "k"}]}
    }))));
    let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
    let outbound = db.queue("outbound");
    let send_api = SendApiContext {
        store: store.clone(),
        outbound: Arc::new(outbound.clone()),
        secrets: secrets.clone(),
        clock: Arc::new(SystemClock),
        templates: Arc::new(EmailTemplates::embedded()),
        settings: SendApiSettings::default(),
        limits: None,
        suppressions: None,
        status: None,
    };
    let dispatch = DispatchContext {
        store: store.clone(),
        outbound: Arc::new(outbound.clone()),
        providers: providers::live(
            &secrets,
            &GraphSettings::default(),
            &SmtpSettings::default(),
            MailerOptions::default(),
        )
        .unwrap(),
        clock: Arc::new(SystemClock),
        settings: DispatchSettings {
            // Short waits: the queue's whole-second delays then set the pace.
            retry: RetryPolicy::new(
                vec![Duration::from_millis(10); 9],
                0.2,
                Duration::from_secs(3600),
                Duration::from_millis(10),
            ),
            ..DispatchSettings::default()
        },
        events: None,
        limits: None,
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: None,
    };

    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let body = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": format!("#{i}")}});
        let mut req = http::Request::new(bytes::Bytes::from(serde_json::to_vec(&body).unwrap()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = "/v1/messages".parse().unwrap();
        req.headers_mut()
            .insert("authorization", "Bearer k".parse().unwrap());
        req.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        let res = send_api::handle(&send_api, req).await;
        assert_eq!(res.status(), 202);
        let v: Value = serde_json::from_slice(res.body()).unwrap();
        ids.push(MessageId::parse(v["id"].as_str().unwrap()).unwrap());
    }

    // What SQS's event source mapping does: receive, dispatch, acknowledge what succeeded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let batch = outbound.receive(10, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            let mut pending = 0;
            for id in &ids {
                if !store.get(id).await.unwrap().unwrap().status.is_terminal() {
                    pending += 1;
                }
            }
            if pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{pending} messages still pending"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let events: Vec<QueuedEvent> = batch.iter().map(QueuedEvent::from).collect();
        let failed = dispatch::process_batch(&dispatch, &events).await;
        assert!(failed.is_empty(), "infrastructure failures: {failed:?}");
        for m in &batch {
            outbound.ack(&m.receipt_handle).await.unwrap();
        }
    }

    let seen = flaky.seen.lock().unwrap().clone();
    let mut total_attempts = 0;
    let mut retried = 0;
    for id in &ids {
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.status, DeliveryStatus::Sent, "{id}");
        assert_eq!(
            record.provider_message_id.as_deref(),
            Some(format!("wamid.{id}").as_str())
        );
        let (calls, accepted) = seen[id.as_str()];
        assert_eq!(accepted, 1, "{id} was accepted {accepted} times");
        assert_eq!(
            record.attempts.len() as u32,
            calls,
            "{id}: every call is in the attempt log"
        );
        total_attempts += calls;
        retried += u32::from(calls > 1);
    }
    assert_eq!(
        seen.len(),
        MESSAGES,
        "exactly the posted messages reached Meta"
    );
    assert!(
        retried > 0 && total_attempts > MESSAGES as u32,
        "faults were injected"
    );
}
