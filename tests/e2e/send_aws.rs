//! The send path on the AWS adapters against moto: an API Gateway event through the send-api
//! Lambda handler, the job through SQS, the dispatch Lambda handler against the Graph API on
//! wiremock, the state in DynamoDB, and Meta's status webhook back through intake.

use crate::intake_aws::{AwsStack, aws_stack};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use carteiro_e2e::apigw;
use carteiro_e2e::moto::moto;
use carteiro_e2e::webhooks::{
    ACCESS_TOKEN, API_KEY, API_KEY_ID, APP_SECRET, PHONE_NUMBER_ID, sign, status_payload,
    whatsapp_secret_json,
};
use carteiro_shared::adapters::aws::{DynamoStore, SecretIds, SecretsManagerSource, SqsQueue};
use carteiro_shared::config::{GraphSettings, SmtpSettings};
use carteiro_shared::dispatch::{DispatchContext, DispatchSettings};
use carteiro_shared::domain::{DeliveryStatus, MessageId};
use carteiro_shared::ports::{DeliveryStore, Queue, ReceivedMessage, SystemClock};
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::templates::EmailTemplates;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::{SendApiContext, SendApiSettings};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub struct SendStack {
    pub send_api: SendApiContext,
    pub dispatch: DispatchContext,
    pub outbound: SqsQueue,
    pub store: DynamoStore,
    /// Intake and inbound-events over the same table, for the status webhooks.
    pub webhooks: AwsStack,
}

pub async fn send_stack(graph: &MockServer) -> SendStack {
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let webhooks = aws_stack().await;
    let outbound_url = moto.create_queue("outbound").await;
    let mut whatsapp = whatsapp_secret_json();
    whatsapp["access_token"] = json!(ACCESS_TOKEN);
    whatsapp["phone_number_id"] = json!(PHONE_NUMBER_ID);
    whatsapp["graph_base_url"] = json!(graph.uri());
    let ids = SecretIds {
        whatsapp: Some(moto.create_secret("whatsapp", &whatsapp.to_string()).await),
        api_keys: Some(
            moto.create_secret(
                "api-keys",
                &json!({"keys": [{"id": API_KEY_ID, "key": API_KEY}]}).to_string(),
            )
            .await,
        ),
        ..SecretIds::default()
    };
    let secrets = Secrets::new(Arc::new(
        SecretsManagerSource::new(&sdk, ids, Duration::from_secs(300))
            .await
            .unwrap(),
    ));
    // The same table the webhook stack uses, so statuses find the records.
    let store = webhooks.store.clone();
    let outbound = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), outbound_url);
    SendStack {
        send_api: SendApiContext {
            store: Arc::new(store.clone()),
            outbound: Arc::new(outbound.clone()),
            secrets: secrets.clone(),
            clock: Arc::new(SystemClock),
            templates: Arc::new(EmailTemplates::embedded()),
            settings: SendApiSettings::default(),
            limits: None,
            suppressions: None,
            status: None,
        },
        dispatch: DispatchContext {
            store: Arc::new(store.clone()),
            outbound: Arc::new(outbound.clone()),
            providers: providers::live(
                &secrets,
                &GraphSettings::default(),
                &SmtpSettings::default(),
                MailerOptions::default(),
            )
            .unwrap(),
            clock: Arc::new(SystemClock),
            settings: DispatchSettings::default(),
            events: None,
            limits: None,
            sender_gate: Default::default(),
            calls: Default::default(),
            suppressions: None,
        },
        outbound,
        store,
        webhooks,
    }
}

pub fn sqs_event(messages: &[ReceivedMessage]) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = Some(m.message_id.clone());
        record.receipt_handle = Some(m.receipt_handle.clone());
        record.body = Some(m.body.clone());
        event.records.push(record);
    }
    LambdaEvent::new(event, Context::default())
}

pub async fn post_message(stack: &SendStack, body: &Value, key: Option<&str>) -> (u16, Value) {
    let auth = format!("Bearer {API_KEY}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    let req = apigw::request(
        "POST",
        "/v1/messages",
        "",
        &headers,
        &serde_json::to_vec(body).unwrap(),
    );
    let res = carteiro_send_api::handler(&stack.send_api, req)
        .await
        .unwrap();
    (
        res.status().as_u16(),
        serde_json::from_slice(res.body().as_ref()).unwrap(),
    )
}

pub fn accepted(wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
        "messages": [{"id": wamid, "message_status": "accepted"}]
    }))
}

#[tokio::test]
async fn aws_send_dispatch_and_status_round_trip() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .and(body_partial_json(
            json!({"to": "5511999990001", "type": "text", "text": {"body": "Olá"}}),
        ))
        .respond_with(accepted("wamid.AWS1"))
        .expect(1)
        .mount(&graph)
        .await;
    let stack = send_stack(&graph).await;
    let (status, body) = post_message(
        &stack,
        &json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}}),
        Some("aws-round-trip"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    let queued = stack.store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        queued.status,
        DeliveryStatus::Queued,
        "written queued before it is queued"
    );

    let jobs = stack
        .outbound
        .receive(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let response = carteiro_dispatch::handler(&stack.dispatch, sqs_event(&jobs))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let sent = stack.store.get(&id).await.unwrap().unwrap();
    assert_eq!(sent.status, DeliveryStatus::Sent);
    assert_eq!(sent.provider_message_id.as_deref(), Some("wamid.AWS1"));

    let webhook = status_payload("wamid.AWS1", "read", 1_700_000_300, Some(id.as_str()));
    let (status, _) = stack
        .webhooks
        .post_webhook(&webhook, Some(&sign(APP_SECRET, &webhook)))
        .await;
    assert_eq!(status, 200);
    stack.webhooks.drain_inbound().await;
    assert_eq!(
        stack.store.get(&id).await.unwrap().unwrap().status,
        DeliveryStatus::Read
    );

    // GET through the Lambda handler shows the whole story.
    let auth = format!("Bearer {API_KEY}");
    let req = apigw::request(
        "GET",
        &format!("/v1/messages/{id}"),
        "",
        &[("authorization", auth.as_str())],
        b"",
    );
    let res = carteiro_send_api::handler(&stack.send_api, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let view: Value = serde_json::from_slice(res.body().as_ref()).unwrap();
    assert_eq!(view["status"], "read");
    assert_eq!(view["attempts"][0]["outcome"], "accepted");
    assert_eq!(view["events"][0]["status"], "read");
}

#[tokio::test]
async fn the_same_sqs_job_delivered_twice_concurrently_calls_the_provider_once() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted("wamid.TWICE").set_delay(Duration::from_millis(100)))
        .expect(1)
        .mount(&graph)
        .await;
    let stack = send_stack(&graph).await;
    let (status, body) = post_message(
        &stack,
        &json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}}),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let id = MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    let job = stack
        .outbound
        .receive(10, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    let twin = ReceivedMessage {
        message_id: format!("{}-dup", job.message_id),
        ..job.clone()
    };

    // One batch holding both copies, and two invocations racing on another copy.
    let (a, b) = tokio::join!(
        carteiro_dispatch::handler(&stack.dispatch, sqs_event(&[job.clone(), twin.clone()])),
        carteiro_dispatch::handler(&stack.dispatch, sqs_event(&[job])),
    );
    assert!(a.unwrap().batch_item_failures.is_empty());
    assert!(b.unwrap().batch_item_failures.is_empty());
    let record = stack.store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, DeliveryStatus::Sent);
    assert_eq!(record.attempts.len(), 1);
}

#[tokio::test]
async fn aws_fifty_concurrent_posts_with_one_key_create_one_record() {
    let graph = MockServer::start().await;
    let stack = send_stack(&graph).await;
    let body = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}});
    let posts = (0..50).map(|_| post_message(&stack, &body, Some("aws-once")));
    let answers = futures::future::join_all(posts).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    // Exactly one job reached the queue.
    let mut jobs = Vec::new();
    loop {
        let batch = stack
            .outbound
            .receive(10, Duration::from_secs(30))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        jobs.extend(batch);
    }
    assert_eq!(jobs.len(), 1);
}
