//! Infrastructure faults: a store that fails for some records, wrapped around the real adapter
//! (embedded SQLite, or DynamoDB on moto). Dispatch and inbound processing report exactly the
//! queue messages they could not handle as batch item failures and finish the rest; a message
//! that keeps failing reaches the dead-letter queue after the receive limit — through SQS's
//! own redrive policy on moto, and through the local consumer's equivalent — and, once the
//! fault is gone, a redrive delivers it.

use carteiro_e2e::moto::moto;
use carteiro_e2e::webhooks::{queued_whatsapp_record, status_payload, whatsapp_secret_json};
use carteiro_local::consumer::{Consumer, MAX_RECEIVES, poll_once};
use carteiro_local::{Application, Config, OUTBOUND_DLQ, OUTBOUND_QUEUE};
use carteiro_shared::adapters::aws::{DynamoStore, SqsQueue};
use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::dispatch::{self, DispatchContext};
use carteiro_shared::domain::delivery::DeliveryRecord;
use carteiro_shared::domain::webhook::WebhookPayload;
use carteiro_shared::domain::{DeliveryStatus, MessageId, Timestamp, Wamid};
use carteiro_shared::inbound::{self, InboundContext};
use carteiro_shared::ports::store::{
    CreateOutcome, DueRecord, InsertOutcome, KeptKind, KeptRecord, ReplaceOutcome, StoreError,
};
use carteiro_shared::ports::{DeliveryStore, OutgoingMessage, Queue, SystemClock};
use carteiro_shared::providers::email_sandbox::EmailOutbox;
use carteiro_shared::providers::whatsapp::SandboxOutbox;
use carteiro_shared::redrive::{RedriveFilter, redrive};
use carteiro_shared::secrets::Secrets;
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real store, except that every call about a record in `failing` fails as an outage
/// would, until the record is healed.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn DeliveryStore>,
    failing: Mutex<HashSet<String>>,
}

impl FlakyStore {
    fn new(inner: Arc<dyn DeliveryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failing: Mutex::new(HashSet::new()),
        })
    }

    fn fail(&self, key: &str) {
        self.failing.lock().unwrap().insert(key.to_owned());
    }

    fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    fn check(&self, key: &str) -> Result<(), StoreError> {
        if self.failing.lock().unwrap().contains(key) {
            return Err(StoreError::Unavailable(format!(
                "injected outage for {key}"
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DeliveryStore for FlakyStore {
    async fn create(&self, record: &DeliveryRecord) -> Result<CreateOutcome, StoreError> {
        self.check(record.id.as_str())?;
        self.inner.create(record).await
    }
    async fn get(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.check(id.as_str())?;
        self.inner.get(id).await
    }
    async fn find_by_wamid(&self, wamid: &Wamid) -> Result<Option<DeliveryRecord>, StoreError> {
        self.check(wamid.as_str())?;
        self.inner.find_by_wamid(wamid).await
    }
    async fn replace(
        &self,
        record: &DeliveryRecord,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        self.check(record.id.as_str())?;
        self.inner.replace(record, expected_version).await
    }
    async fn list_due(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueRecord>, StoreError> {
        self.inner.list_due(before, limit).await
    }
    async fn put_kept(&self, record: &KeptRecord) -> Result<InsertOutcome, StoreError> {
        self.inner.put_kept(record).await
    }
    async fn list_kept(&self, kind: KeptKind, key: &str) -> Result<Vec<KeptRecord>, StoreError> {
        self.inner.list_kept(kind, key).await
    }
    async fn list_messages(
        &self,
        owner: &str,
        filter: &carteiro_shared::ports::store::MessageFilter,
        cursor: Option<&carteiro_shared::ports::store::Cursor>,
        limit: usize,
    ) -> Result<carteiro_shared::ports::store::Page<DeliveryRecord>, StoreError> {
        self.inner.list_messages(owner, filter, cursor, limit).await
    }
    async fn list_conversation(
        &self,
        wa_id: &str,
        cursor: Option<&carteiro_shared::ports::store::Cursor>,
        limit: usize,
    ) -> Result<
        carteiro_shared::ports::store::Page<carteiro_shared::ports::store::ConversationItem>,
        StoreError,
    > {
        self.inner.list_conversation(wa_id, cursor, limit).await
    }
    async fn get_state(
        &self,
        kind: carteiro_shared::ports::store::StateKind,
        key: &str,
    ) -> Result<Option<carteiro_shared::ports::store::StateDoc>, StoreError> {
        self.inner.get_state(kind, key).await
    }
    async fn put_state(
        &self,
        doc: &carteiro_shared::ports::store::StateDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        self.inner.put_state(doc, expected_version).await
    }
}

fn dispatch_ctx(store: Arc<dyn DeliveryStore>, outbound: Arc<dyn Queue>) -> DispatchContext {
    carteiro_e2e::logs::capture();
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(
        serde_json::json!({ "whatsapp": whatsapp_secret_json() }),
    )));
    DispatchContext {
        store,
        outbound,
        providers: carteiro_shared::providers::standard(
            &secrets,
            Arc::new(SandboxOutbox::new()),
            Arc::new(EmailOutbox::new(Default::default()).unwrap()),
        ),
        clock: Arc::new(SystemClock),
        settings: Default::default(),
        events: None,
        limits: None,
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: None,
    }
}

fn job(record: &DeliveryRecord, message_id: &str) -> QueuedEvent {
    QueuedEvent {
        message_id: message_id.to_owned(),
        body: serde_json::json!({"id": record.id.as_str()}).to_string(),
        correlation_id: None,
    }
}

async fn queued_records(store: &dyn DeliveryStore, n: usize) -> Vec<DeliveryRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let r = queued_whatsapp_record(Timestamp::now(), &format!("fault {i}"));
        store.create(&r).await.unwrap();
        out.push(r);
    }
    out
}

async fn status_of(store: &dyn DeliveryStore, r: &DeliveryRecord) -> DeliveryStatus {
    store.get(&r.id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn dispatch_and_inbound_report_exactly_the_messages_whose_store_calls_failed() {
    let db = EmbeddedDb::in_memory().unwrap();
    let real: Arc<dyn DeliveryStore> = Arc::new(db.store());
    let flaky = FlakyStore::new(real.clone());
    let records = queued_records(real.as_ref(), 3).await;
    flaky.fail(records[1].id.as_str());
    let ctx = dispatch_ctx(flaky.clone(), Arc::new(db.queue("outbound")));
    let batch: Vec<QueuedEvent> = ["sqs-a", "sqs-b", "sqs-c"]
        .iter()
        .zip(&records)
        .map(|(m, r)| job(r, m))
        .collect();

    let failed = dispatch::process_batch(&ctx, &batch).await;
    assert_eq!(
        failed,
        vec!["sqs-b".to_owned()],
        "only the faulty record's job"
    );
    assert_eq!(
        status_of(real.as_ref(), &records[0]).await,
        DeliveryStatus::Sent
    );
    assert_eq!(
        status_of(real.as_ref(), &records[1]).await,
        DeliveryStatus::Queued
    );
    assert_eq!(
        status_of(real.as_ref(), &records[2]).await,
        DeliveryStatus::Sent
    );
    // The queue gives the failed job back; with the store healthy again it goes through.
    flaky.heal();
    assert!(dispatch::process_batch(&ctx, &batch[1..2]).await.is_empty());
    assert_eq!(
        status_of(real.as_ref(), &records[1]).await,
        DeliveryStatus::Sent
    );

    // Inbound: a `delivered` status for each, the middle record's store failing.
    let inbound = InboundContext {
        store: flaky.clone(),
        clock: Arc::new(SystemClock),
        settings: Default::default(),
        events: None,
        outbound: None,
        limits: None,
        suppressions: None,
    };
    let mut events = Vec::new();
    for (n, r) in records.iter().enumerate() {
        let wamid = real
            .get(&r.id)
            .await
            .unwrap()
            .unwrap()
            .provider_message_id
            .unwrap();
        let body = status_payload(&wamid, "delivered", 1_700_000_100, Some(r.id.as_str()));
        for event in WebhookPayload::from_slice(&body).unwrap().into_events() {
            events.push(QueuedEvent {
                message_id: format!("event-{n}"),
                body: serde_json::to_string(&event).unwrap(),
                correlation_id: None,
            });
        }
    }
    flaky.fail(records[1].id.as_str());
    let failed = inbound::process_batch(&inbound, &events).await;
    assert_eq!(failed, vec!["event-1".to_owned()]);
    assert_eq!(
        status_of(real.as_ref(), &records[0]).await,
        DeliveryStatus::Delivered
    );
    assert_eq!(
        status_of(real.as_ref(), &records[1]).await,
        DeliveryStatus::Sent
    );
    assert_eq!(
        status_of(real.as_ref(), &records[2]).await,
        DeliveryStatus::Delivered
    );
    flaky.heal();
    assert!(
        inbound::process_batch(&inbound, &events[1..2])
            .await
            .is_empty()
    );
    assert_eq!(
        status_of(real.as_ref(), &records[1]).await,
        DeliveryStatus::Delivered
    );
}

#[tokio::test]
async fn the_local_consumer_moves_a_job_to_the_dead_letter_queue_after_its_receive_limit() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        serde_json::json!({"whatsapp": whatsapp_secret_json()}).to_string(),
    )
    .unwrap();
    // Built, not run: this test is the only consumer.
    let app = Application::build(Config::for_tests(dir.path().join("data"), Some(secrets)))
        .await
        .unwrap();
    let mut gateway = app.gateway().clone();
    let flaky = FlakyStore::new(gateway.dispatch.store.clone());
    gateway.dispatch.store = flaky.clone();
    let records = queued_records(flaky.inner.as_ref(), 2).await;
    flaky.fail(records[0].id.as_str());
    let outbound = gateway.db.queue(OUTBOUND_QUEUE);
    let dlq = gateway.db.queue(OUTBOUND_DLQ);
    for r in &records {
        let body = serde_json::json!({"id": r.id.as_str()}).to_string();
        outbound
            .send_batch(&[OutgoingMessage::new(body)])
            .await
            .unwrap();
    }

    // Visibility zero: a failed job is visible again at once, as after its timeout.
    let poll = || {
        poll_once(
            Consumer::Dispatch,
            &outbound,
            &dlq,
            &gateway,
            Duration::ZERO,
        )
    };
    assert_eq!(poll().await.unwrap(), 2, "both jobs in the first batch");
    assert_eq!(
        status_of(flaky.inner.as_ref(), &records[1]).await,
        DeliveryStatus::Sent
    );
    for receive in 2..=MAX_RECEIVES {
        assert_eq!(
            poll().await.unwrap(),
            1,
            "receive {receive} of the failing job"
        );
        assert_eq!(dlq.counts().await.unwrap().visible, 0);
    }
    // One receive past the limit: moved, not processed.
    assert_eq!(poll().await.unwrap(), 1);
    let counts = outbound.counts().await.unwrap();
    assert_eq!(counts.visible + counts.in_flight + counts.delayed, 0);
    assert_eq!(dlq.counts().await.unwrap().visible, 1);
    assert_eq!(
        status_of(flaky.inner.as_ref(), &records[0]).await,
        DeliveryStatus::Queued
    );

    // The fault is fixed; redrive puts it back and it is delivered.
    flaky.heal();
    let report = redrive(&dlq, &outbound, RedriveFilter::default())
        .await
        .unwrap();
    assert_eq!(report.moved.len(), 1);
    assert_eq!(poll().await.unwrap(), 1);
    assert_eq!(
        status_of(flaky.inner.as_ref(), &records[0]).await,
        DeliveryStatus::Sent
    );
}

/// Creates a queue whose redrive policy moves a message to a new dead-letter queue after
/// `max_receives` receives. Returns (queue URL, DLQ URL).
async fn queue_with_dlq(max_receives: u32) -> (String, String) {
    let moto = moto();
    let sqs = moto.sqs().await;
    let dlq_url = moto.create_queue("faults-dlq").await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap();
    let url = moto.create_queue("faults").await;
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    (url, dlq_url)
}

#[tokio::test]
async fn aws_a_job_that_keeps_failing_reaches_the_dead_letter_queue_after_the_receive_limit() {
    const MAX_RECEIVES: u32 = 3;
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let (url, dlq_url) = queue_with_dlq(MAX_RECEIVES).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = SqsQueue::new(sqs.clone(), url);
    let dlq = SqsQueue::new(sqs, dlq_url);
    let real: Arc<dyn DeliveryStore> = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        moto.create_table().await,
    ));
    let flaky = FlakyStore::new(real.clone());
    let records = queued_records(real.as_ref(), 2).await;
    flaky.fail(records[0].id.as_str());
    let ctx = dispatch_ctx(flaky.clone(), Arc::new(queue.clone()));
    for r in &records {
        let body = serde_json::json!({"id": r.id.as_str()}).to_string();
        queue
            .send_batch(&[OutgoingMessage::new(body)])
            .await
            .unwrap();
    }

    // What the event source mapping does: receive, invoke the dispatch Lambda handler, delete
    // what it did not report (and nothing when it fails the whole batch).
    let mut partial_failures = Vec::new();
    let mut receives = 0;
    loop {
        let batch = queue.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        receives += 1;
        assert!(receives <= 10, "the failing job never left the queue");
        let event = carteiro_e2e::apigw::sqs_event(&batch);
        let failed: Vec<String> =
            match carteiro_dispatch::handler(&ctx, LambdaEvent::new(event, Context::default()))
                .await
            {
                Ok(response) => response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect(),
                Err(_) => batch.iter().map(|m| m.message_id.clone()).collect(),
            };
        if failed.len() < batch.len() && !failed.is_empty() {
            partial_failures.push(failed.clone());
        }
        for m in &batch {
            if !failed.contains(&m.message_id) {
                queue.ack(&m.receipt_handle).await.unwrap();
            }
        }
    }
    assert_eq!(
        partial_failures.len(),
        1,
        "the first batch failed one of its two jobs"
    );
    assert_eq!(
        status_of(real.as_ref(), &records[1]).await,
        DeliveryStatus::Sent
    );
    assert_eq!(
        receives, MAX_RECEIVES as usize,
        "received up to the limit, then moved"
    );
    let dead = dlq.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "SQS moved the failing job to the dead-letter queue"
    );
    assert!(dead[0].body.contains(records[0].id.as_str()));
    assert_eq!(
        status_of(real.as_ref(), &records[0]).await,
        DeliveryStatus::Queued
    );
}
