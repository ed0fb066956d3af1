//! The delivery engine's recovery paths, on both adapter sets: the retry sweeper (a retry due
//! past the queue's delay limit, an expired lease, a `queued` record whose job never reached
//! the queue, an exhausted record), overlapping sweeps, the sweeper's deadline, ambiguous sends
//! settled by a status webhook, and redrive.

use carteiro_e2e::moto::moto;
use carteiro_e2e::webhooks::{
    ACCESS_TOKEN, PHONE_NUMBER_ID, queued_whatsapp_record, whatsapp_secret_json,
};
use carteiro_shared::adapters::aws::{DynamoStore, SqsQueue};
use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::config::GraphSettings;
use carteiro_shared::config::{DispatchSettings, SweepSettings};
use carteiro_shared::dispatch::{self, DispatchContext};
use carteiro_shared::domain::delivery::{
    Attempt, DeliveryRecord, FallbackStep, UNKNOWN_OUTCOME, fallback_id,
};
use carteiro_shared::domain::{DeliveryStatus, MessageId, Timestamp};
use carteiro_shared::ports::{DeliveryStore, OutgoingMessage, Queue, SystemClock};
use carteiro_shared::providers::email_sandbox::EmailOutbox;
use carteiro_shared::providers::whatsapp::GraphClient;
use carteiro_shared::redrive::{RedriveFilter, redrive};
use carteiro_shared::resilience::RetryPolicy;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::sweeper::{SweepContext, sweep};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const MINUTE: Duration = Duration::from_secs(60);

fn policy(unknown_wait: Duration) -> RetryPolicy {
    RetryPolicy::new(
        carteiro_shared::config::parse_schedule("0s,1s,1s").unwrap(),
        0.0,
        Duration::from_secs(24 * 3600),
        unknown_wait,
    )
}

fn settings(unknown_wait: Duration) -> DispatchSettings {
    DispatchSettings {
        retry: policy(unknown_wait),
        ..DispatchSettings::default()
    }
}

fn ago(d: Duration) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() - i64::try_from(d.as_millis()).unwrap())
}

fn record(created: Timestamp) -> DeliveryRecord {
    queued_whatsapp_record(created, "hi")
}

fn failed_attempt(n: u32, outcome: &str) -> Attempt {
    Attempt {
        number: n,
        started_at: ago(10 * MINUTE),
        outcome: outcome.to_owned(),
        provider_code: Some("131000".to_owned()),
        provider_status: None,
        latency_ms: 5,
        details: None,
        settled: None,
    }
}

/// The five records the sweeper exists for, written straight into the store.
struct Scenario {
    far_retry: MessageId,
    expired_lease: MessageId,
    never_queued: MessageId,
    exhausted: MessageId,
    orphaned_fallback: MessageId,
}

async fn seed(store: &dyn DeliveryStore) -> Scenario {
    // A retry that was scheduled 20 minutes out (past the queue's delay) and is now due.
    let mut far = record(ago(30 * MINUTE));
    far.status = DeliveryStatus::RetryScheduled;
    far.attempts.push(failed_attempt(1, "retryable"));
    far.next_attempt_at = Some(ago(2 * MINUTE));
    // A worker claimed this one and died mid-call: its lease ran out.
    let mut lease = record(ago(10 * MINUTE));
    lease.status = DeliveryStatus::Sending;
    lease.lease_expires_at = Some(ago(MINUTE));
    // Accepted, but the send API's queue call failed: no job exists.
    let never = record(ago(10 * MINUTE));
    // Every attempt of its budget failed, and its last retry is due.
    let mut exhausted = record(ago(10 * MINUTE));
    exhausted.status = DeliveryStatus::RetryScheduled;
    exhausted.attempts = (1..=3).map(|n| failed_attempt(n, "retryable")).collect();
    exhausted.next_attempt_at = Some(ago(MINUTE));
    // Refused for good, with a fallback: its worker died before taking the step.
    let mut orphaned = record(ago(10 * MINUTE));
    orphaned.status = DeliveryStatus::Failed;
    orphaned.attempts.push(failed_attempt(1, "permanent"));
    orphaned.fallbacks = vec![FallbackStep {
        recipient: "+5511999990002".to_owned(),
        payload: orphaned.payload.clone().unwrap(),
    }];
    orphaned.updated_at = ago(MINUTE);
    for r in [&far, &lease, &never, &exhausted, &orphaned] {
        store.create(r).await.unwrap();
    }
    Scenario {
        far_retry: far.id,
        expired_lease: lease.id,
        never_queued: never.id,
        exhausted: exhausted.id,
        orphaned_fallback: orphaned.id,
    }
}

async fn graph_accepting() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
            "messages": [{"id": "wamid.SWEPT", "message_status": "accepted"}]
        })))
        .mount(&graph)
        .await;
    graph
}

fn dispatch_ctx(
    store: Arc<dyn DeliveryStore>,
    outbound: Arc<dyn Queue>,
    graph: &MockServer,
    timeout: Duration,
    unknown_wait: Duration,
) -> DispatchContext {
    carteiro_e2e::logs::capture();
    let mut whatsapp = whatsapp_secret_json();
    whatsapp["access_token"] = json!(ACCESS_TOKEN);
    whatsapp["phone_number_id"] = json!(PHONE_NUMBER_ID);
    whatsapp["graph_base_url"] = json!(graph.uri());
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(
        json!({ "whatsapp": whatsapp }),
    )));
    let graph_client = GraphClient::new(&GraphSettings {
        request_timeout: timeout,
        ..GraphSettings::default()
    })
    .unwrap();
    DispatchContext {
        store,
        outbound,
        providers: carteiro_shared::providers::standard(
            &secrets,
            Arc::new(graph_client),
            Arc::new(EmailOutbox::new(Default::default()).unwrap()),
        ),
        clock: Arc::new(SystemClock),
        settings: settings(unknown_wait),
        events: None,
        limits: None,
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: None,
    }
}

/// Runs dispatch over every job on the queue until it is empty.
async fn drain(ctx: &DispatchContext, queue: &dyn Queue) -> usize {
    let mut handled = 0;
    loop {
        let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            return handled;
        }
        let events: Vec<QueuedEvent> = batch.iter().map(QueuedEvent::from).collect();
        assert!(dispatch::process_batch(ctx, &events).await.is_empty());
        for m in &batch {
            queue.ack(&m.receipt_handle).await.unwrap();
        }
        handled += batch.len();
    }
}

async fn sweeper_recovers_everything_left_behind(
    store: Arc<dyn DeliveryStore>,
    outbound: Arc<dyn Queue>,
) {
    let s = seed(store.as_ref()).await;
    let graph = graph_accepting().await;
    let sweep_ctx = SweepContext {
        store: store.clone(),
        outbound: outbound.clone(),
        clock: Arc::new(SystemClock),
        dispatch: settings(Duration::ZERO),
        settings: SweepSettings::default(),
    };
    // Two sweeps at once.
    let deadline = Instant::now() + MINUTE;
    let (a, b) = tokio::join!(sweep(&sweep_ctx, deadline), sweep(&sweep_ctx, deadline));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.examined, 5, "{a:?}");
    assert!(a.dead + b.dead >= 1, "{a:?} {b:?}");
    assert!(a.fallbacks + b.fallbacks >= 1, "{a:?} {b:?}");
    let orphaned = store.get(&s.orphaned_fallback).await.unwrap().unwrap();
    assert!(orphaned.fallback_taken, "{orphaned:?}");
    let child_id = fallback_id(&s.orphaned_fallback);
    let child = store.get(&child_id).await.unwrap().unwrap();
    assert_eq!(child.fallback_of.as_ref(), Some(&s.orphaned_fallback));

    let exhausted = store.get(&s.exhausted).await.unwrap().unwrap();
    assert_eq!(exhausted.status, DeliveryStatus::Dead);
    assert_eq!(exhausted.last_error.unwrap().code, "attempts_exhausted");
    let lease = store.get(&s.expired_lease).await.unwrap().unwrap();
    assert_eq!(lease.attempts.len(), 1);
    assert_eq!(lease.attempts[0].outcome, UNKNOWN_OUTCOME);
    assert_eq!(
        lease.attempts[0].provider_code.as_deref(),
        Some("lease_expired")
    );

    let ctx = dispatch_ctx(
        store.clone(),
        outbound.clone(),
        &graph,
        Duration::from_secs(5),
        Duration::ZERO,
    );
    drain(&ctx, outbound.as_ref()).await;
    for id in [&s.far_retry, &s.expired_lease, &s.never_queued, &child_id] {
        let r = store.get(id).await.unwrap().unwrap();
        assert_eq!(r.status, DeliveryStatus::Sent, "{id}: {r:?}");
    }
    let lease = store.get(&s.expired_lease).await.unwrap().unwrap();
    assert_eq!(lease.attempts[0].settled.as_deref(), Some("retried"));
    // One provider call per record (the fallback's included), although both sweeps queued
    // each one.
    assert_eq!(graph.received_requests().await.unwrap().len(), 4);
    // Nothing is left for a third sweep.
    let c = sweep(&sweep_ctx, Instant::now() + MINUTE).await.unwrap();
    assert_eq!(
        (c.examined, c.requeued, c.recovered, c.dead, c.fallbacks),
        (0, 0, 0, 0, 0),
        "{c:?}"
    );
}

#[tokio::test]
async fn embedded_sweeper_recovers_everything_left_behind() {
    let db = EmbeddedDb::in_memory().unwrap();
    sweeper_recovers_everything_left_behind(Arc::new(db.store()), Arc::new(db.queue("outbound")))
        .await;
}

#[tokio::test]
async fn aws_sweeper_recovers_everything_left_behind() {
    let m = moto();
    let sdk = m.sdk_config().await;
    let table = m.create_table().await;
    let queue = m.create_queue("sweep").await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let outbound = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue);
    sweeper_recovers_everything_left_behind(Arc::new(store), Arc::new(outbound)).await;
}

#[tokio::test]
async fn a_sweep_past_its_deadline_stops_and_leaves_the_rest() {
    let db = EmbeddedDb::in_memory().unwrap();
    let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
    seed(store.as_ref()).await;
    let ctx = SweepContext {
        store: store.clone(),
        outbound: Arc::new(db.queue("outbound")),
        clock: Arc::new(SystemClock),
        dispatch: settings(Duration::ZERO),
        settings: SweepSettings::default(),
    };
    let report = sweep(&ctx, Instant::now()).await.unwrap();
    assert!(report.stopped_at_deadline);
    assert_eq!(report.examined, 0);
    assert_eq!(db.queue("outbound").counts().await.unwrap().visible, 0);
    // The next run, with time to spare, does the work.
    let report = sweep(&ctx, Instant::now() + MINUTE).await.unwrap();
    assert!(!report.stopped_at_deadline);
    assert_eq!(report.examined, 5);
}

/// A Graph call that times out after the request was written is `unknown`: the record waits
/// the reconciliation window, and Meta's status webhook settles it as sent with no second call.
#[tokio::test]
async fn an_ambiguous_send_is_settled_by_its_status_webhook_without_a_second_call() {
    let db = EmbeddedDb::in_memory().unwrap();
    let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
    let outbound = db.queue("outbound");
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&graph)
        .await;
    let ctx = dispatch_ctx(
        store.clone(),
        Arc::new(outbound.clone()),
        &graph,
        Duration::from_millis(200),
        MINUTE,
    );
    let r = record(Timestamp::now());
    store.create(&r).await.unwrap();
    let job = serde_json::to_string(&carteiro_shared::domain::DispatchJob::new(
        r.id.clone(),
        None,
    ))
    .unwrap();
    dispatch::dispatch(&ctx, &job).await.unwrap();
    let after = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(after.status, DeliveryStatus::RetryScheduled);
    assert_eq!(after.attempts[0].outcome, UNKNOWN_OUTCOME);
    let wait = after.next_attempt_at.unwrap().as_millis() - Timestamp::now().as_millis();
    assert!(
        wait > 55_000,
        "waits the reconciliation window, {wait} ms left"
    );

    // Meta's `sent` arrives with our id in biz_opaque_callback_data.
    let inbound = carteiro_shared::inbound::InboundContext {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        settings: Default::default(),
        events: None,
        outbound: None,
        limits: None,
        suppressions: None,
    };
    let payload = carteiro_e2e::webhooks::status_payload(
        "wamid.AMBIGUOUS",
        "sent",
        1_730_000_000,
        Some(r.id.as_str()),
    );
    let events = carteiro_shared::domain::webhook::WebhookPayload::from_slice(&payload)
        .unwrap()
        .into_events();
    for e in events {
        carteiro_shared::inbound::process(&inbound, &serde_json::to_string(&e).unwrap())
            .await
            .unwrap();
    }
    let settled = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(settled.status, DeliveryStatus::Sent);
    assert_eq!(
        settled.attempts[0].settled.as_deref(),
        Some("status_webhook")
    );
    // The delayed retry job, when it comes, finds nothing to send.
    drain(&ctx, &outbound).await;
    let job = carteiro_shared::domain::DispatchJob::new(r.id.clone(), None)
        .for_retry_at(after.next_attempt_at.unwrap());
    let d = dispatch::dispatch(&ctx, &serde_json::to_string(&job).unwrap())
        .await
        .unwrap();
    assert!(matches!(d, dispatch::Dispatched::Skipped(_)), "{d:?}");
    assert_eq!(graph.received_requests().await.unwrap().len(), 1);
}

async fn redrive_moves_dead_letters_back(dlq: &dyn Queue, source: &dyn Queue) {
    for i in 0..3 {
        dlq.send_batch(&[OutgoingMessage::new(format!("{{\"n\":{i}}}"))])
            .await
            .unwrap();
    }
    let dry = redrive(
        dlq,
        source,
        RedriveFilter {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.moved.len(), 3);
    assert!(
        source
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "a dry run moves nothing"
    );
    // A window that ended an hour ago matches none of them.
    tokio::time::sleep(Duration::from_secs(6)).await; // the dry run's look-visibility
    let none = redrive(
        dlq,
        source,
        RedriveFilter {
            until: Some(ago(60 * MINUTE)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((none.moved.len(), none.skipped), (0, 3));
    assert!(
        source
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn redrive_all(dlq: &dyn Queue, source: &dyn Queue) {
    for i in 0..3 {
        dlq.send_batch(&[OutgoingMessage::new(format!("{{\"n\":{i}}}"))])
            .await
            .unwrap();
    }
    let report = redrive(dlq, source, RedriveFilter::default())
        .await
        .unwrap();
    assert_eq!(report.moved.len(), 3);
    let mut bodies = Vec::new();
    loop {
        let batch = source.receive(10, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        bodies.extend(batch.into_iter().map(|m| m.body));
    }
    bodies.sort();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
    assert!(
        dlq.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "the dead-letter queue is empty"
    );
}

#[tokio::test]
async fn embedded_redrive_moves_dead_letters_back_and_dry_run_moves_nothing() {
    let db = EmbeddedDb::in_memory().unwrap();
    redrive_moves_dead_letters_back(&db.queue("a-dlq"), &db.queue("a")).await;
    redrive_all(&db.queue("b-dlq"), &db.queue("b")).await;
}

#[tokio::test]
async fn aws_redrive_moves_dead_letters_back_and_dry_run_moves_nothing() {
    let m = moto();
    let sqs = aws_sdk_sqs::Client::new(&m.sdk_config().await);
    let q = |url: String| SqsQueue::new(sqs.clone(), url);
    let (a, adlq) = (
        q(m.create_queue("a").await),
        q(m.create_queue("a-dlq").await),
    );
    redrive_moves_dead_letters_back(&adlq, &a).await;
    let (b, bdlq) = (
        q(m.create_queue("b").await),
        q(m.create_queue("b-dlq").await),
    );
    redrive_all(&bdlq, &b).await;
}

#[tokio::test]
async fn aws_the_redrive_command_moves_sqs_dead_letters_by_url() {
    let m = moto();
    let sdk = m.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (queue_url, dlq_url) = (m.create_queue("cmd").await, m.create_queue("cmd-dlq").await);
    let dlq = SqsQueue::new(sqs.clone(), dlq_url.clone());
    let source = SqsQueue::new(sqs, queue_url.clone());
    dlq.send_batch(&[OutgoingMessage::new("{\"id\":\"dead\"}".to_owned())])
        .await
        .unwrap();
    let report =
        carteiro_local::redrive::run_sqs(&sdk, &dlq_url, &queue_url, RedriveFilter::default())
            .await
            .unwrap();
    assert_eq!(report.moved.len(), 1);
    let back = source.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "{\"id\":\"dead\"}");
    assert!(
        dlq.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The real embedded queue behind a switch that makes sends fail, as an SQS outage would.
#[derive(Debug)]
struct Outage {
    inner: carteiro_shared::adapters::embedded::EmbeddedQueue,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Queue for Outage {
    async fn send_batch(
        &self,
        m: &[OutgoingMessage],
    ) -> Result<(), carteiro_shared::ports::QueueError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(carteiro_shared::ports::QueueError::Unavailable(
                "injected outage".into(),
            ));
        }
        self.inner.send_batch(m).await
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<carteiro_shared::ports::ReceivedMessage>, carteiro_shared::ports::QueueError>
    {
        self.inner.receive(max, visibility).await
    }
    async fn depth(
        &self,
    ) -> Result<carteiro_shared::ports::queue::QueueDepth, carteiro_shared::ports::QueueError> {
        self.inner.depth().await
    }
    async fn ack(&self, receipt: &str) -> Result<(), carteiro_shared::ports::QueueError> {
        self.inner.ack(receipt).await
    }
}

#[tokio::test]
async fn a_queue_outage_leaves_a_queued_record_and_the_idempotent_retry_queues_its_job() {
    use carteiro_e2e::webhooks::{API_KEY, API_KEY_ID};
    use carteiro_shared::send_api::{self, SendApiContext};
    let db = EmbeddedDb::in_memory().unwrap();
    let queue = Arc::new(Outage {
        inner: db.queue("outbound"),
        down: std::sync::atomic::AtomicBool::new(true),
    });
    let ctx = SendApiContext {
        store: Arc::new(db.store()),
        outbound: queue.clone(),
        secrets: Secrets::new(Arc::new(FileSecretSource::from_json(json!({
            "api_keys": {"keys": [{"id": API_KEY_ID, "key": API_KEY}]}
        })))),
        clock: Arc::new(SystemClock),
        templates: Arc::new(carteiro_shared::providers::templates::EmailTemplates::embedded()),
        settings: Default::default(),
        limits: None,
        suppressions: None,
        status: None,
    };
    let post = || {
        http::Request::builder()
            .method("POST")
            .uri("/v1/messages")
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "outage-1")
            .body(bytes::Bytes::from_static(
                br#"{"channel":"whatsapp","to":"+5511999990001","text":{"body":"hi"}}"#,
            ))
            .unwrap()
    };
    let res = send_api::handle(&ctx, post()).await;
    assert_eq!(res.status().as_u16(), 503);
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["error"]["code"], "queue_unavailable");
    // The record was written first and stays queued, marked as never queued.
    let due = db.store().list_due(Timestamp::now(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let record = db.store().get(&due[0].id).await.unwrap().unwrap();
    assert_eq!(record.status, DeliveryStatus::Queued);
    assert!(record.job_not_queued);
    assert_eq!(db.queue("outbound").counts().await.unwrap().visible, 0);

    queue.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let res = send_api::handle(&ctx, post()).await;
    assert_eq!(res.status().as_u16(), 202);
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["id"], record.id.as_str());
    assert_eq!(
        db.queue("outbound").counts().await.unwrap().visible,
        1,
        "the retry queued the job"
    );
    // A third identical request answers the same and queues nothing more.
    assert_eq!(send_api::handle(&ctx, post()).await.status().as_u16(), 202);
    assert_eq!(db.queue("outbound").counts().await.unwrap().visible, 1);
}
