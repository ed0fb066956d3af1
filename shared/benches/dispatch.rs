//! Dispatch against a Graph API that answers after 50 ms (wiremock on loopback), over the
//! embedded store: the whole claim → send → record path of `dispatch::process_batch`.
//!
//! - `dispatch/batch_of_10`: one SQS-sized batch. Target: under 1.5 × the provider latency
//!   (75 ms), i.e. the ten sends overlap.
//! - `dispatch/throughput_200`: 200 jobs with concurrency 200; criterion reports elements/s.
//!   Target: at least 1,000 messages/s from one process.
//!
//! Run with `cargo bench -p carteiro-shared --features embedded --bench dispatch`;
//! docs/benchmarks.md records the figures.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::config::{GraphSettings, SmtpSettings};
use carteiro_shared::dispatch::{self, DispatchContext, DispatchSettings};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord};
use carteiro_shared::domain::message::SendRequest;
use carteiro_shared::domain::payload::DeliveryPayload;
use carteiro_shared::domain::{DeliveryStatus, MessageId, Timestamp};
use carteiro_shared::ports::SystemClock;
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::DispatchJob;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROVIDER_LATENCY: Duration = Duration::from_millis(50);

struct Fixture {
    ctx: DispatchContext,
    _graph: MockServer,
}

async fn fixture(concurrency: usize) -> Option<Fixture> {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": "5511999990001", "wa_id": "5511999990001"}],
                    "messages": [{"id": "wamid.BENCH", "message_status": "accepted"}]
                }))
                .set_delay(PROVIDER_LATENCY),
        )
        .mount(&graph)
        .await;
    let db = EmbeddedDb::in_memory().ok()?;
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(json!({
        "whatsapp": {"access_token": "bench", "phone_number_id": "1", "app_secret": "a",
                     "verify_token": "v", "graph_base_url": graph.uri()}
    }))));
    let ctx = DispatchContext {
        store: Arc::new(db.store()),
        outbound: Arc::new(db.queue("outbound")),
        providers: providers::live(
            &secrets,
            &GraphSettings::default(),
            &SmtpSettings::default(),
            MailerOptions::default(),
        )
        .ok()?,
        clock: Arc::new(SystemClock),
        settings: DispatchSettings {
            concurrency,
            ..DispatchSettings::default()
        },
        events: None,
        limits: None,
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: None,
    };
    Some(Fixture { ctx, _graph: graph })
}

/// Writes `n` queued records and returns their jobs.
async fn jobs(ctx: &DispatchContext, n: usize) -> Vec<QueuedEvent> {
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        let id = MessageId::generate();
        let body = json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}});
        let mut record = DeliveryRecord::new_queued(
            id.clone(),
            Channel::Whatsapp,
            "+5511999990001",
            body.clone(),
            Timestamp::now(),
        );
        let Ok(request) = SendRequest::parse(&body) else {
            continue;
        };
        record.payload = Some(DeliveryPayload::build(&id, &request.message));
        if ctx.store.create(&record).await.is_err() {
            continue;
        }
        events.push(QueuedEvent {
            message_id: format!("bench-{i}"),
            body: serde_json::to_string(&DispatchJob::new(id, None)).unwrap_or_default(),
            correlation_id: None,
        });
    }
    events
}

/// Times `iters` rounds of dispatching `n` fresh jobs.
async fn timed(fx: &Fixture, n: usize, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let events = jobs(&fx.ctx, n).await;
        let start = Instant::now();
        let failed = dispatch::process_batch(&fx.ctx, &events).await;
        total += start.elapsed();
        // A regression that fails fast must not show as a speed-up: every job must have been
        // sent by the provider.
        assert!(failed.is_empty(), "{} jobs failed", failed.len());
        for e in &events {
            let job: DispatchJob = serde_json::from_str(&e.body).unwrap_or_else(|_| unreachable!());
            let sent = fx
                .ctx
                .store
                .get(&job.id)
                .await
                .ok()
                .flatten()
                .map(|r| r.status);
            assert_eq!(sent, Some(DeliveryStatus::Sent), "bench record not sent");
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(20);
    for (name, n) in [("batch_of_10", 10), ("throughput_200", 200)] {
        let Some(fx) = rt.block_on(fixture(n)) else {
            eprintln!("bench fixture could not be built");
            return;
        };
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| timed(&fx, n, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
