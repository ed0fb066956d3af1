//! The whole webhook path on the AWS adapters against moto: a real API Gateway v2 event through
//! the intake Lambda handler, the events through SQS, the inbound-events Lambda handler with
//! partial batch failures, and the state read back from DynamoDB.

use carteiro_e2e::apigw;
use carteiro_e2e::moto::moto;
use carteiro_e2e::webhooks::{
    APP_SECRET, VERIFY_TOKEN, fixture, new_wamid, sent_record, sign, status_payload,
    whatsapp_secret_json,
};
use carteiro_shared::adapters::aws::{DynamoStore, SecretIds, SecretsManagerSource, SqsQueue};
use carteiro_shared::config::{InboundSettings, IntakeSettings};
use carteiro_shared::domain::DeliveryStatus;
use carteiro_shared::inbound::InboundContext;
use carteiro_shared::intake::IntakeContext;
use carteiro_shared::ports::{DeliveryStore, KeptKind, Queue, SystemClock};
use carteiro_shared::secrets::Secrets;
use lambda_runtime::{Context, LambdaEvent};
use std::sync::Arc;
use std::time::Duration;

pub struct AwsStack {
    pub intake: IntakeContext,
    pub inbound: InboundContext,
    pub queue: SqsQueue,
    pub store: DynamoStore,
}

pub async fn aws_stack() -> AwsStack {
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let queue_url = moto.create_queue("inbound").await;
    let table = moto.create_table().await;
    let secret = moto
        .create_secret("whatsapp", &whatsapp_secret_json().to_string())
        .await;
    let ids = SecretIds {
        whatsapp: Some(secret),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::new(&sdk, ids, Duration::from_secs(300))
        .await
        .unwrap();
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    AwsStack {
        intake: IntakeContext {
            queue: Arc::new(queue.clone()),
            secrets: Secrets::new(Arc::new(secrets)),
            settings: IntakeSettings::default(),
        },
        inbound: InboundContext {
            store: Arc::new(store.clone()),
            clock: Arc::new(SystemClock),
            settings: InboundSettings::default(),
            events: None,
            outbound: None,
            limits: None,
            suppressions: None,
        },
        queue,
        store,
    }
}

impl AwsStack {
    /// Sends a signed webhook through the intake Lambda handler as API Gateway would.
    pub async fn post_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(sig) = signature {
            headers.push(("x-hub-signature-256", sig));
        }
        let req = apigw::request("POST", "/webhooks/whatsapp", "", &headers, body);
        let res = carteiro_webhook_intake::handler(&self.intake, req)
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = serde_json::from_slice(res.body().as_ref()).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Does what the SQS event source mapping does: receive a batch, invoke the inbound-events
    /// handler, delete what it did not report as failed. Returns how many messages it handled.
    pub async fn drain_inbound(&self) -> usize {
        let mut handled = 0;
        loop {
            let batch = self
                .queue
                .receive(10, Duration::from_secs(30))
                .await
                .unwrap();
            if batch.is_empty() {
                return handled;
            }
            handled += batch.len();
            let event = carteiro_e2e::apigw::sqs_event(&batch);
            let response = carteiro_inbound_events::handler(
                &self.inbound,
                LambdaEvent::new(event, Context::default()),
            )
            .await
            .unwrap();
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            assert!(
                failed.is_empty(),
                "unexpected batch item failures: {failed:?}"
            );
            for m in batch {
                self.queue.ack(&m.receipt_handle).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn aws_signed_status_webhook_flows_through_sqs_into_dynamodb() {
    let stack = aws_stack().await;
    let wamid = new_wamid();
    let record = sent_record(&wamid);
    stack.store.create(&record).await.unwrap();

    let body = status_payload(&wamid, "delivered", 1_700_000_100, Some(record.id.as_str()));
    let (status, ack) = stack
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack, serde_json::json!({"status": "ok", "queued": 1}));
    assert_eq!(stack.drain_inbound().await, 1);

    let stored = stack.store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, DeliveryStatus::Delivered);
    assert_eq!(stored.events.len(), 1);
}

#[tokio::test]
async fn aws_inbound_message_and_account_events_are_stored() {
    let stack = aws_stack().await;
    let body = fixture("webhook_msg_image.json");
    let (status, _) = stack
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(status, 200);
    let body2 = fixture("webhook_template_status_update_approved.json");
    let (status, _) = stack
        .post_webhook(&body2, Some(&sign(APP_SECRET, &body2)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.drain_inbound().await, 2);

    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let wamid = parsed["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap();
    let stored = stack
        .store
        .list_kept(KeptKind::Message, wamid)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload["message"]["type"], "image");
}

#[tokio::test]
async fn aws_handshake_through_api_gateway_event() {
    let stack = aws_stack().await;
    let query =
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=987654321");
    let req = apigw::request("GET", "/webhooks/whatsapp", &query, &[], b"");
    let res = carteiro_webhook_intake::handler(&stack.intake, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body().as_ref(), b"987654321");

    let req = apigw::request(
        "GET",
        "/webhooks/whatsapp",
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        &[],
        b"",
    );
    let res = carteiro_webhook_intake::handler(&stack.intake, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
