//! The cost run: messages through the five Lambda handlers exactly as deployed (each built by
//! its function crate's `context`, over the AWS SDK), against moto behind a
//! [`CountingProxy`], so every AWS request is counted by function and operation; the Graph API
//! on wiremock and aiosmtpd stand in for Meta and the relay. Each WhatsApp message is sent and
//! then gets Meta's three status webhooks (sent, delivered, read). The harness's own queue
//! reads (what Lambda's event source mapping does) go around the proxy; docs/cost.md adds
//! them by rule. A warm-up message first fills the secret caches, so the counts are the steady
//! state.

use crate::counting::CountingProxy;
use crate::moto::moto;
use crate::smtp::SmtpServer;
use crate::webhooks::{self, APP_SECRET};
use carteiro_shared::adapters::aws::{DynamoStore, SqsQueue};
use carteiro_shared::config::Env;
use carteiro_shared::domain::MessageId;
use carteiro_shared::ports::{DeliveryStore, Queue};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const API_KEY: &str = "cost-test-api-key";
const PNID: &str = "1122334455667";

/// Meta's answer with a fresh wamid each time.
struct Accepting(AtomicU64);

impl Respond for Accepting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+5511999990001", "wa_id": "5511999990001"}],
            "messages": [{"id": format!("wamid.cost{n:012}"), "message_status": "accepted"}]
        }))
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Messages counted per flow (`whatsapp`, `email`).
    pub messages: BTreeMap<&'static str, u64>,
    /// (flow, function) → operation → requests.
    pub requests: BTreeMap<(&'static str, &'static str), BTreeMap<String, u64>>,
    /// (flow, operation) → request body bytes, in all (DynamoDB JSON: a little over the item).
    pub bytes: BTreeMap<(&'static str, String), u64>,
    /// Function → each invocation's wall time.
    pub durations: BTreeMap<&'static str, Vec<Duration>>,
    /// Function → messages per invocation (1 for HTTP, the batch for SQS).
    pub per_invocation: BTreeMap<&'static str, usize>,
}

impl Measured {
    /// Requests per message of a flow, by function and operation.
    pub fn per_message(&self) -> BTreeMap<(String, String, String), f64> {
        let mut out = BTreeMap::new();
        for ((flow, function), ops) in &self.requests {
            let n = self.messages.get(flow).copied().unwrap_or(1).max(1) as f64;
            for (op, count) in ops {
                out.insert(
                    ((*flow).to_owned(), (*function).to_owned(), op.clone()),
                    *count as f64 / n,
                );
            }
        }
        out
    }

    /// The mean request body of `op` in `flow`, in bytes.
    pub fn mean_bytes(&self, flow: &str, op: &str) -> Option<u64> {
        let bytes = self.bytes.get(&(flow_key(flow)?, op.to_owned()))?;
        let count: u64 = self
            .requests
            .iter()
            .filter(|((f, _), _)| *f == flow)
            .filter_map(|(_, ops)| ops.get(op))
            .sum();
        (count > 0).then(|| bytes / count)
    }

    /// The median wall time of one invocation of `function`.
    pub fn median(&self, function: &str) -> Option<Duration> {
        self.quantile(function, 0.5)
    }

    /// The wall time under which `q` of `function`'s invocations took.
    pub fn quantile(&self, function: &str, q: f64) -> Option<Duration> {
        let mut d = self.durations.get(function)?.clone();
        d.sort();
        let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len().max(1)) - 1;
        d.get(i).copied()
    }
}

fn flow_key(flow: &str) -> Option<&'static str> {
    ["whatsapp", "email"].into_iter().find(|f| *f == flow)
}

struct Stack {
    proxy: CountingProxy,
    send_api: carteiro_shared::send_api::SendApiContext,
    dispatch: carteiro_shared::dispatch::DispatchContext,
    intake: carteiro_shared::intake::IntakeContext,
    inbound: carteiro_shared::inbound::InboundContext,
    outbound: SqsQueue,
    inbound_queue: SqsQueue,
    store: DynamoStore,
    _graph: MockServer,
    _smtp: SmtpServer,
}

async fn stack(dispatch_concurrency: usize) -> Stack {
    let moto = moto();
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let counted = moto.sdk_config_via(&proxy.endpoint).await;
    let direct = moto.sdk_config().await;
    let graph = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Accepting(AtomicU64::new(0)))
        .mount(&graph)
        .await;
    let smtp = SmtpServer::start();
    let mut whatsapp = webhooks::whatsapp_secret_json();
    whatsapp["access_token"] = json!("EAAG-cost-test-token");
    whatsapp["phone_number_id"] = json!(PNID);
    whatsapp["graph_base_url"] = json!(graph.uri());
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        // Steady state under the number's limit: a worker that waits for a token asks its
        // breaker again, a cost of the limit, not of the message.
        ("CARTEIRO_WHATSAPP_MPS", "200".to_owned()),
        // The counts use one send at a time: workers queueing for the sender's bucket re-ask
        // their breaker after 20 ms and retry versioned writes, a count that depends on the
        // machine's speed. The durations bench uses the deployed 10.
        ("CARTEIRO_DISPATCH_CONCURRENCY", dispatch_concurrency.to_string()),
        ("CARTEIRO_TABLE_NAME", moto.create_table().await),
        ("CARTEIRO_OUTBOUND_QUEUE_URL", moto.create_queue("cost-outbound").await),
        ("CARTEIRO_INBOUND_QUEUE_URL", moto.create_queue("cost-inbound").await),
        (
            "CARTEIRO_WHATSAPP_SECRET_ID",
            moto.create_secret("cost-whatsapp", &whatsapp.to_string()).await,
        ),
        (
            "CARTEIRO_SMTP_SECRET_ID",
            moto.create_secret(
                "cost-smtp",
                &json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "from_email": "noreply@example.com"})
                    .to_string(),
            )
            .await,
        ),
        (
            "CARTEIRO_API_KEYS_SECRET_ID",
            moto.create_secret(
                "cost-api-keys",
                &json!({"keys": [{"id": "app-1", "key": API_KEY}]}).to_string(),
            )
            .await,
        ),
    ]);
    let lookup = move |k: &str| vars.get(k).cloned();
    let env = Env::new(&lookup);
    let stack = Stack {
        send_api: carteiro_send_api::context(&counted, env).await.unwrap(),
        dispatch: carteiro_dispatch::context(&counted, env).await.unwrap(),
        intake: carteiro_webhook_intake::context(&counted, env)
            .await
            .unwrap(),
        inbound: carteiro_inbound_events::context(&counted, env)
            .await
            .unwrap(),
        outbound: SqsQueue::from_env(&direct, env, "CARTEIRO_OUTBOUND_QUEUE_URL").unwrap(),
        inbound_queue: SqsQueue::from_env(&direct, env, "CARTEIRO_INBOUND_QUEUE_URL").unwrap(),
        store: DynamoStore::from_env(&direct, env).unwrap(),
        proxy,
        _graph: graph,
        _smtp: smtp,
    };
    stack.proxy.take();
    stack
}

fn message(flow: &str, n: usize) -> serde_json::Value {
    match flow {
        "whatsapp" => {
            json!({"channel": "whatsapp", "to": format!("+55119876{n:05}"), "text": {"body": "Olá"}})
        }
        _ => {
            json!({"channel": "email", "to": format!("user{n}@example.com"), "subject": "Oi", "text": "Olá"})
        }
    }
}

/// Everything on `queue` now, in batches of up to 10 (what the event source mapping hands a
/// function), removed from the queue.
async fn drain(queue: &SqsQueue) -> Vec<Vec<carteiro_shared::ports::ReceivedMessage>> {
    let mut batches = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_secs(60)).await.unwrap();
        if batch.is_empty() {
            return batches;
        }
        for m in &batch {
            queue.ack(&m.receipt_handle).await.unwrap();
        }
        batches.push(batch);
    }
}

fn timed(m: &mut Measured, function: &'static str, started: Instant, messages: usize) {
    m.durations
        .entry(function)
        .or_default()
        .push(started.elapsed());
    m.per_invocation.insert(function, messages);
}

async fn round(s: &Stack, flow: &'static str, n: usize, m: &mut Measured, from: usize) {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = serde_json::to_vec(&message(flow, from + i)).unwrap();
        let key = format!("cost-{flow}-{}", from + i);
        let auth = format!("Bearer {API_KEY}");
        let req = crate::apigw::request(
            "POST",
            "/v1/messages",
            "",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("idempotency-key", &key),
            ],
            &body,
        );
        let started = Instant::now();
        let res = carteiro_send_api::handler(&s.send_api, req).await.unwrap();
        timed(m, "send-api", started, 1);
        assert_eq!(res.status(), 202);
        let v: serde_json::Value = serde_json::from_slice(res.body().as_ref()).unwrap();
        ids.push(MessageId::parse(v["id"].as_str().unwrap()).unwrap());
    }
    let counted = |m: &mut Measured, function: &'static str| {
        for (op, (count, bytes)) in s.proxy.take() {
            *m.bytes.entry((flow, op.clone())).or_default() += bytes;
            *m.requests
                .entry((flow, function))
                .or_default()
                .entry(op)
                .or_default() += count;
        }
    };
    counted(m, "send-api");
    // A job a limit deferred comes back on the queue later: drain until every message is sent.
    let started_all = Instant::now();
    loop {
        for batch in drain(&s.outbound).await {
            let event = LambdaEvent::new(crate::apigw::sqs_event(&batch), Context::default());
            let started = Instant::now();
            let answer = carteiro_dispatch::handler(&s.dispatch, event)
                .await
                .unwrap();
            timed(m, "dispatch", started, batch.len());
            assert!(answer.batch_item_failures.is_empty());
        }
        let mut pending = 0;
        for id in &ids {
            let record = s.store.get(id).await.unwrap().unwrap();
            pending += usize::from(record.provider_message_id.is_none());
        }
        if pending == 0 {
            break;
        }
        assert!(
            started_all.elapsed() < Duration::from_secs(30),
            "{pending} message(s) never sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    counted(m, "dispatch");
    if flow != "whatsapp" {
        return;
    }
    let mut wamids = Vec::new();
    for id in &ids {
        let record = s.store.get(id).await.unwrap().unwrap();
        wamids.push(record.provider_message_id.unwrap());
    }
    let now = carteiro_shared::domain::time::Timestamp::now().as_secs();
    // Meta sends them over seconds to minutes: every message's `sent`, then every `delivered`,
    // then every `read`, so a batch does not hold two statuses of one message.
    for (k, status) in ["sent", "delivered", "read"].into_iter().enumerate() {
        for wamid in &wamids {
            let body = webhooks::status_payload(wamid, status, now + k as i64, None);
            let signature = webhooks::sign(APP_SECRET, &body);
            let req = crate::apigw::request(
                "POST",
                "/webhooks/whatsapp",
                "",
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", &signature),
                ],
                &body,
            );
            let started = Instant::now();
            let res = carteiro_webhook_intake::handler(&s.intake, req)
                .await
                .unwrap();
            timed(m, "webhook-intake", started, 1);
            assert_eq!(res.status(), 200);
        }
    }
    counted(m, "webhook-intake");
    for batch in drain(&s.inbound_queue).await {
        let event = LambdaEvent::new(crate::apigw::sqs_event(&batch), Context::default());
        let started = Instant::now();
        let answer = carteiro_inbound_events::handler(&s.inbound, event)
            .await
            .unwrap();
        timed(m, "inbound-events", started, batch.len());
        assert!(answer.batch_item_failures.is_empty());
    }
    counted(m, "inbound-events");
    for id in &ids {
        let record = s.store.get(id).await.unwrap().unwrap();
        assert_eq!(record.status.as_str(), "read", "{record:?}");
    }
}

/// Runs `n` WhatsApp messages (each with its three status webhooks) and `n` emails, after one
/// uncounted warm-up of each, dispatching `dispatch_concurrency` messages of a batch at once,
/// and returns what was measured.
pub async fn run(n: usize, dispatch_concurrency: usize) -> Measured {
    crate::logs::capture();
    let s = stack(dispatch_concurrency).await;
    let mut warm = Measured::default();
    for flow in ["whatsapp", "email"] {
        round(&s, flow, 1, &mut warm, 0).await;
    }
    let mut m = Measured::default();
    for flow in ["whatsapp", "email"] {
        round(&s, flow, n, &mut m, 1).await;
        m.messages.insert(flow, n as u64);
    }
    m
}
