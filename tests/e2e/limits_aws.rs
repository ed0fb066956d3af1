//! The limits on the AWS adapters against moto, with two dispatch workers in parallel: each its
//! own SDK clients, dispatch context and provider clients (two Lambda instances), sharing the
//! DynamoDB table (delivery records, limits, breakers) and the SQS queue. The Graph API
//! (wiremock) fails a share of calls, refuses a set of recipients for good (their messages
//! carry an email fallback, through aiosmtpd) and is down for a few seconds. The run proves the
//! invariants of the local fault-injection test on the shared limit: every message terminal,
//! one acceptance per message, no sliding second over the number's throughput, no recipient
//! faster than the pair rule, the breaker open during the outage with only probes let through
//! and closed after, and the fallbacks delivered.

use crate::send_aws::sqs_event;
use carteiro_e2e::moto::moto;
use carteiro_e2e::smtp::SmtpServer;
use carteiro_e2e::webhooks::{ACCESS_TOKEN, API_KEY, API_KEY_ID, PHONE_NUMBER_ID};
use carteiro_e2e::{apigw, webhooks::whatsapp_secret_json};
use carteiro_shared::adapters::aws::{
    DynamoLimits, DynamoStore, DynamoSuppressions, SecretIds, SecretsManagerSource, SqsQueue,
};
use carteiro_shared::config::{GraphSettings, SmtpSettings, SweepSettings, parse_schedule};
use carteiro_shared::dispatch::{DispatchContext, DispatchSettings};
use carteiro_shared::domain::{DeliveryStatus, MessageId};
use carteiro_shared::ports::limits::LimitStore;
use carteiro_shared::ports::{DeliveryStore, Queue, SystemClock};
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::templates::EmailTemplates;
use carteiro_shared::resilience::RetryPolicy;
use carteiro_shared::resilience::breaker::BreakerPolicy;
use carteiro_shared::resilience::rate::Rate;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::{SendApiContext, SendApiSettings};
use carteiro_shared::sweeper::SweepContext;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const WHATSAPP: usize = 60;
const EMAIL: usize = 10;
/// Messages 0..HOT go to one recipient; HOT..DOOMED to recipients refused for good.
const HOT: usize = 10;
const DOOMED: usize = HOT + 10;
const HOT_RECIPIENT: &str = "+5511977770000";
const MPS: usize = 5;
const PAIR_INTERVAL: Duration = Duration::from_millis(500);
const PAIR_BURST: usize = 3;
const CONCURRENCY: usize = 5;
const WORKERS: usize = 2;
const COOL_DOWN: Duration = Duration::from_secs(2);
/// The outage starts at the Graph API's `OUTAGE_AFTER`-th call and lasts `OUTAGE` (moto is slow:
/// a window set by the clock alone might see too few calls to open the breaker).
const OUTAGE_AFTER: usize = 10;
const OUTAGE: Duration = Duration::from_secs(12);
const DEADLINE: Duration = Duration::from_secs(240);

#[derive(Debug, Default)]
struct GraphState {
    first: Option<Instant>,
    /// When the outage started (since the first call).
    outage_from: Option<Duration>,
    /// (since the first call, recipient digits).
    calls: Vec<(Duration, String)>,
    /// Carteiro id → acceptances.
    accepted: HashMap<String, u32>,
    fates: HashMap<&'static str, u32>,
    seed: u64,
}

#[derive(Clone)]
struct FakeGraph(Arc<Mutex<GraphState>>);

impl Respond for FakeGraph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let id = body["biz_opaque_callback_data"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut s = self.0.lock().unwrap();
        let first = *s.first.get_or_insert_with(Instant::now);
        let at = first.elapsed();
        s.calls.push((at, to.clone()));
        // A small LCG: the same sequence every run.
        s.seed = s
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let roll = (s.seed >> 33) % 100;
        let error = |code: i64, status: u16| {
            ResponseTemplate::new(status).set_body_json(json!({"error": {
                "message": "injected", "type": "OAuthException", "code": code, "fbtrace_id": "Amoto"}}))
        };
        if s.calls.len() == OUTAGE_AFTER {
            s.outage_from = Some(at);
        }
        let in_outage = s
            .outage_from
            .is_some_and(|from| at >= from && at < from + OUTAGE);
        let (fate, answer) = if in_outage {
            ("503 (outage)", ResponseTemplate::new(503))
        } else if to.starts_with("5511988") {
            ("131026 (doomed)", error(131_026, 400))
        } else if roll < 12 {
            ("503", ResponseTemplate::new(503))
        } else if roll < 22 {
            ("131000", error(131_000, 500))
        } else if roll < 28 {
            ("131056", error(131_056, 400))
        } else {
            *s.accepted.entry(id).or_default() += 1;
            let wamid = format!("wamid.MOTO{}", s.calls.len());
            (
                "accept",
                ResponseTemplate::new(200).set_body_json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid, "message_status": "accepted"}]
                })),
            )
        };
        *s.fates.entry(fate).or_default() += 1;
        answer
    }
}

fn settings() -> DispatchSettings {
    DispatchSettings {
        concurrency: CONCURRENCY,
        lease: Duration::from_secs(30),
        whatsapp_mps: MPS as f64,
        pair_rate: Rate::new(1.0 / PAIR_INTERVAL.as_secs_f64(), PAIR_BURST as f64),
        breaker: BreakerPolicy {
            cool_down: COOL_DOWN,
            ..BreakerPolicy::default()
        },
        retry: RetryPolicy::new(
            parse_schedule("0s,300ms,600ms,1s,1s,1s,1s,1s,1s,1s").unwrap(),
            0.0,
            Duration::from_secs(600),
            Duration::from_secs(1),
        ),
        ..DispatchSettings::default()
    }
}

fn send_body(n: usize) -> Value {
    if n >= WHATSAPP {
        return json!({"channel": "email", "to": ["ana@example.com"], "subject": format!("email {n}"), "text": "Olá"});
    }
    let to = match n {
        0..HOT => HOT_RECIPIENT.to_owned(),
        HOT..DOOMED => format!("+5511988{n:06}"),
        _ => format!("+55119{:08}", 70_000_000 + n),
    };
    let mut body = json!({"channel": "whatsapp", "to": to, "text": {"body": format!("moto {n}")}});
    if (HOT..DOOMED).contains(&n) {
        body["fallback"] = json!([{"channel": "email", "to": ["ana@example.com"], "subject": format!("fallback {n}"), "text": "Olá"}]);
    }
    body
}

fn most_in_window(at: &[Duration], width: Duration) -> usize {
    let (mut most, mut start) = (0, 0);
    for end in 0..at.len() {
        while at[end] - at[start] >= width {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_dispatch_workers_share_one_limit_through_faults_and_an_outage() {
    let started = Instant::now();
    let m = moto();
    let sdk = m.sdk_config().await;
    let table = m.create_table().await;
    let queue_url = m.create_queue("limits").await;
    let graph_state = Arc::new(Mutex::new(GraphState {
        seed: 7,
        ..GraphState::default()
    }));
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(FakeGraph(graph_state.clone()))
        .mount(&graph)
        .await;
    let smtp = SmtpServer::start();
    let mut whatsapp = whatsapp_secret_json();
    whatsapp["access_token"] = json!(ACCESS_TOKEN);
    whatsapp["phone_number_id"] = json!(PHONE_NUMBER_ID);
    whatsapp["graph_base_url"] = json!(graph.uri());
    let ids = SecretIds {
        whatsapp: Some(m.create_secret("whatsapp", &whatsapp.to_string()).await),
        smtp: Some(
            m.create_secret(
                "smtp",
                &json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "from_email": "loja@example.com"}).to_string(),
            )
            .await,
        ),
        api_keys: Some(
            m.create_secret("api-keys", &json!({"keys": [{"id": API_KEY_ID, "key": API_KEY}]}).to_string())
                .await,
        ),
        ..SecretIds::default()
    };

    // One instance's worth of clients and contexts.
    let instance = async || {
        let sdk = m.sdk_config().await;
        let secrets = Secrets::new(Arc::new(
            SecretsManagerSource::new(&sdk, ids.clone(), Duration::from_secs(300))
                .await
                .unwrap(),
        ));
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), table.clone()));
        let outbound = Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url.clone(),
        ));
        let limits: Arc<dyn LimitStore> =
            Arc::new(DynamoLimits::new(dynamodb.clone(), table.clone()));
        let dispatch = DispatchContext {
            store: store.clone(),
            outbound: outbound.clone(),
            providers: providers::live(
                &secrets,
                &GraphSettings::default(),
                &SmtpSettings::default(),
                MailerOptions::default(),
            )
            .unwrap(),
            clock: Arc::new(SystemClock),
            settings: settings(),
            events: None,
            limits: Some(limits.clone()),
            sender_gate: Default::default(),
            calls: Default::default(),
            suppressions: Some(Arc::new(DynamoSuppressions::new(
                dynamodb.clone(),
                table.clone(),
            ))),
        };
        (secrets, store, outbound, limits, dispatch)
    };
    let (secrets, store, outbound, limits, _) = instance().await;
    let send_api = SendApiContext {
        store: store.clone(),
        outbound: outbound.clone(),
        secrets,
        clock: Arc::new(SystemClock),
        templates: Arc::new(EmailTemplates::embedded()),
        settings: SendApiSettings::default(),
        limits: None,
        suppressions: None,
        status: None,
    };
    let _ = sdk;

    // Accept everything through the send-api handler.
    let mut message_ids = Vec::new();
    for n in 0..WHATSAPP + EMAIL {
        let auth = format!("Bearer {API_KEY}");
        let key = format!("moto-limits-{n}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("idempotency-key", key.as_str()),
        ];
        let req = apigw::request(
            "POST",
            "/v1/messages",
            "",
            &headers,
            &serde_json::to_vec(&send_body(n)).unwrap(),
        );
        let res = carteiro_send_api::handler(&send_api, req).await.unwrap();
        assert_eq!(res.status().as_u16(), 202);
        let body: Value = serde_json::from_slice(res.body().as_ref()).unwrap();
        message_ids.push(body["id"].as_str().unwrap().to_owned());
    }

    // Two dispatch workers, a sweeper, and a watcher of the shared breaker.
    let stop = Arc::new(AtomicBool::new(false));
    let handler_failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (_, _, queue, _, ctx) = instance().await;
        let stop = stop.clone();
        let handler_failures = handler_failures.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let res = carteiro_dispatch::handler(&ctx, sqs_event(&batch))
                    .await
                    .unwrap();
                let failed: Vec<String> = res
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                handler_failures.fetch_add(failed.len(), Ordering::Relaxed);
                for msg in &batch {
                    if !failed.contains(&msg.message_id) {
                        queue.ack(&msg.receipt_handle).await.unwrap();
                    }
                }
            }
        }));
    }
    {
        let (_, store, outbound, _, ctx) = instance().await;
        let stop = stop.clone();
        let sweep = SweepContext {
            store,
            outbound,
            clock: Arc::new(SystemClock),
            dispatch: ctx.settings.clone(),
            settings: SweepSettings {
                interval: Duration::from_millis(500),
                ..SweepSettings::default()
            },
        };
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = carteiro_shared::sweeper::sweep(
                    &sweep,
                    Instant::now() + Duration::from_secs(5),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    let phases = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let (limits, phases, stop) = (limits.clone(), phases.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Some(doc)) = limits.get_limit("breaker:whatsapp").await {
                    let phase = doc.body["phase"].as_str().unwrap_or("closed").to_owned();
                    let mut seen = phases.lock().unwrap();
                    if seen.last() != Some(&phase) {
                        seen.push(phase);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    // Until every message (and every fallback) is terminal.
    let records = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut all = Vec::new();
        for id in &message_ids {
            all.push(
                store
                    .get(&MessageId::parse(id).unwrap())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        if started.elapsed() > DEADLINE {
            let mut by: HashMap<&str, usize> = HashMap::new();
            for r in &all {
                *by.entry(r.status.as_str()).or_default() += 1;
            }
            let stuck = all.iter().find(|r| !r.status.is_terminal());
            let g = graph_state.lock().unwrap();
            panic!(
                "messages still pending after {DEADLINE:?}: {by:?}; {} Graph calls {:?}; e.g. {stuck:?}",
                g.calls.len(),
                g.fates
            );
        }
        let mut children = Vec::new();
        for r in &all {
            if let Some(child) = store
                .get(&carteiro_shared::domain::delivery::fallback_id(&r.id))
                .await
                .unwrap()
            {
                children.push(child);
            }
        }
        if all.iter().chain(&children).all(|r| r.status.is_terminal()) {
            break (all, children);
        }
    };
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (all, children) = records;

    let g = graph_state.lock().unwrap();
    // One acceptance per message (no ambiguous outcome is injected here).
    for (n, r) in all.iter().enumerate().take(WHATSAPP) {
        let taken = g.accepted.get(r.id.as_str()).copied().unwrap_or(0);
        if (HOT..DOOMED).contains(&n) {
            assert_eq!(r.status, DeliveryStatus::Failed, "{r:?}");
        } else {
            assert_eq!(taken, 1, "message {n} taken {taken} times: {r:?}");
            assert_eq!(r.status, DeliveryStatus::Sent, "{r:?}");
        }
    }
    // The fallbacks of the doomed ones went by email.
    assert_eq!(children.len(), DOOMED - HOT);
    assert!(
        children.iter().all(|c| c.status == DeliveryStatus::Sent),
        "{children:?}"
    );
    let subjects: Vec<String> =
        smtp.received(EMAIL + DOOMED - HOT)
            .iter()
            .filter_map(|m| {
                m["headers"].as_array()?.iter().find_map(|h| {
                    (h[0] == "Subject").then(|| h[1].as_str().unwrap_or("").to_owned())
                })
            })
            .collect();
    for n in HOT..DOOMED {
        assert!(
            subjects.contains(&format!("fallback {n}")),
            "no fallback email for {n}"
        );
    }

    // The shared limits held across both workers.
    let mut arrivals: Vec<Duration> = g.calls.iter().map(|(at, _)| *at).collect();
    arrivals.sort();
    let busiest = most_in_window(&arrivals, Duration::from_secs(1));
    assert!(
        busiest <= MPS,
        "{busiest} calls in one second across both workers; the limit is {MPS}"
    );
    let mut hot: Vec<Duration> = g
        .calls
        .iter()
        .filter(|(_, to)| to == HOT_RECIPIENT.trim_start_matches('+'))
        .map(|(at, _)| *at)
        .collect();
    hot.sort();
    assert!(hot.len() >= HOT);
    for i in 0..hot.len() {
        for j in i..hot.len() {
            // The pair token is counted up to twice the store's write lag (60 ms) before the call.
            let span = (hot[j] - hot[i] + Duration::from_millis(130)).as_secs_f64();
            let allowed = PAIR_BURST as f64 + span / PAIR_INTERVAL.as_secs_f64();
            assert!(
                (j - i + 1) as f64 <= allowed.floor() + 1e-9,
                "{} calls to one recipient in {span:.3} s",
                j - i + 1
            );
        }
    }
    // The breaker: open during the outage, only probes while open, closed after.
    let from = g.outage_from.expect("the outage came");
    let in_outage = arrivals
        .iter()
        .filter(|t| **t >= from && **t < from + OUTAGE)
        .count();
    let probes = (OUTAGE.as_secs_f64() / COOL_DOWN.as_secs_f64()).ceil() as usize + 1;
    let allowed = 10 + WORKERS * CONCURRENCY + probes;
    assert!(
        in_outage <= allowed,
        "{in_outage} calls in the outage (≤ {allowed})"
    );
    let seen = phases.lock().unwrap().clone();
    let opened = seen.iter().position(|p| p == "open");
    assert!(
        opened.is_some_and(|o| seen[o..].iter().any(|p| p == "closed")),
        "the shared breaker must open and close again: {seen:?}"
    );
    let deferred = all.iter().filter(|r| r.deferrals > 0).count();
    eprintln!(
        "moto, {WORKERS} workers: {} messages terminal in {:.1?}; {} Graph calls {:?}; busiest second {busiest} (limit {MPS}); hot recipient {} calls; {in_outage} calls in the outage (≤ {allowed}); breaker phases {seen:?}; {deferred} messages deferred; {} jobs failed by the handler (redelivered); {} expired leases",
        WHATSAPP + EMAIL,
        started.elapsed(),
        g.calls.len(),
        g.fates,
        hot.len(),
        handler_failures.load(Ordering::Relaxed),
        all.iter()
            .flat_map(|r| &r.attempts)
            .filter(|a| a.provider_code.as_deref() == Some("lease_expired"))
            .count(),
    );
}
