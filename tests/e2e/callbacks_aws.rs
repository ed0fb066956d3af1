//! Callbacks on the AWS adapters against moto: an inbound message and a status through the
//! intake and inbound-events Lambda handlers, the callback deliveries through SQS and the
//! dispatch Lambda handler, to a receiver that checks the signature with the published
//! `standardwebhooks` crate; the event read back through the send-api handler.
//!
//! The receiver listens on 127.0.0.1, so the sender here is built with the development
//! allowlist (loopback allowed) that the Lambda's own context never sets.

use crate::send_aws::{SendStack, accepted, post_message, send_stack, sqs_event};
use carteiro_e2e::apigw;
use carteiro_e2e::moto::moto;
use carteiro_e2e::webhooks::{
    API_KEY, APP_SECRET, inbound_text_payload, new_wamid, sign, status_payload, whsec,
};
use carteiro_shared::adapters::aws::{SecretIds, SecretsManagerSource};
use carteiro_shared::callbacks::EventPublisher;
use carteiro_shared::config::CallbackSettings;
use carteiro_shared::domain::delivery::Channel;
use carteiro_shared::ports::{Queue, SystemClock};
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::secrets::Secrets;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn with_callbacks(stack: &mut SendStack, receiver: &MockServer, secret: &str) {
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let doc = json!({"endpoints": [{"id": "app", "url": format!("{}/hook", receiver.uri()), "secret": secret}]});
    let ids = SecretIds {
        callbacks: Some(moto.create_secret("callbacks", &doc.to_string()).await),
        ..SecretIds::default()
    };
    let secrets = Secrets::new(Arc::new(
        SecretsManagerSource::new(&sdk, ids, Duration::from_secs(300))
            .await
            .unwrap(),
    ));
    let settings = CallbackSettings {
        allow_loopback_http: true,
        ..CallbackSettings::default()
    };
    let publisher = EventPublisher {
        store: Arc::new(stack.store.clone()),
        outbound: Arc::new(stack.outbound.clone()),
        secrets: secrets.clone(),
        settings: settings.clone(),
    };
    let sender = CallbackSender::new(
        secrets,
        Arc::new(stack.store.clone()),
        Arc::new(SystemClock),
        settings,
    )
    .unwrap();
    stack.dispatch.providers = stack
        .dispatch
        .providers
        .clone()
        .with(Channel::Webhook, Arc::new(sender));
    stack.dispatch.events = Some(publisher.clone());
    stack.webhooks.inbound.events = Some(publisher);
}

/// Runs the dispatch handler over the outbound queue until it is empty.
async fn drain_outbound(stack: &SendStack) {
    loop {
        let jobs = stack
            .outbound
            .receive(10, Duration::from_secs(30))
            .await
            .unwrap();
        if jobs.is_empty() {
            return;
        }
        let response = carteiro_dispatch::handler(&stack.dispatch, sqs_event(&jobs))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        for j in jobs {
            stack.outbound.ack(&j.receipt_handle).await.unwrap();
        }
    }
}

#[tokio::test]
async fn aws_inbound_message_and_status_reach_the_app_signed() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted("wamid.AWSCB1"))
        .mount(&graph)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let secret = whsec("aws");
    let mut stack = send_stack(&graph).await;
    with_callbacks(&mut stack, &receiver, &secret).await;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let inbound = inbound_text_payload("5511999990041", &new_wamid(), now, "olá da AWS");
    let (status, _) = stack
        .webhooks
        .post_webhook(&inbound, Some(&sign(APP_SECRET, &inbound)))
        .await;
    assert_eq!(status, 200);
    stack.webhooks.drain_inbound().await;
    drain_outbound(&stack).await;

    let (status, body) = post_message(
        &stack,
        &json!({"channel": "whatsapp", "to": "+5511999990041", "text": {"body": "Olá"}}),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    drain_outbound(&stack).await;
    let delivered = status_payload("wamid.AWSCB1", "delivered", 1_700_000_300, Some(&id));
    let (status, _) = stack
        .webhooks
        .post_webhook(&delivered, Some(&sign(APP_SECRET, &delivered)))
        .await;
    assert_eq!(status, 200);
    // Meta's retry of the same webhook publishes nothing new.
    stack
        .webhooks
        .post_webhook(&delivered, Some(&sign(APP_SECRET, &delivered)))
        .await;
    stack.webhooks.drain_inbound().await;
    drain_outbound(&stack).await;

    let got = receiver.received_requests().await.unwrap();
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let wh = standardwebhooks::Webhook::new(&secret).unwrap();
    for r in &got {
        wh.verify(&r.body, &r.headers).unwrap();
    }
    let received: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["type"] == "message.received")
        .collect();
    assert_eq!(received.len(), 1, "{bodies:?}");
    assert_eq!(received[0]["data"]["text"], "olá da AWS");
    let statuses: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["type"] == "message.status")
        .collect();
    assert_eq!(statuses.len(), 1, "{bodies:?}");
    assert_eq!(statuses[0]["data"]["message_id"], id.as_str());
    assert_eq!(statuses[0]["data"]["status"], "delivered");

    // The event, its delivery and attempts through the send-api handler.
    let event_id = got[0]
        .headers
        .get("webhook-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {API_KEY}");
    let req = apigw::request(
        "GET",
        &format!("/v1/events/{event_id}"),
        "",
        &[("authorization", auth.as_str())],
        b"",
    );
    let res = carteiro_send_api::handler(&stack.send_api, req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let view: Value = serde_json::from_slice(res.body().as_ref()).unwrap();
    assert_eq!(view["deliveries"][0]["status"], "sent", "{view}");
    assert_eq!(
        view["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1
    );
}
