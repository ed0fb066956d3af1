//! Callbacks: signing cost beside its floor, and fan-out of 1,000 events to a local receiver.
//!
//! - `callbacks/sign_envelope` signs a 1 KiB envelope as every attempt does (header string
//!   included); `callbacks/bare_hmac_sha256` is one HMAC-SHA256 over the same bytes, the floor.
//! - `callbacks/fanout_1000` publishes 1,000 events to one endpoint (a wiremock receiver on
//!   loopback answering 200) and dispatches every callback: publish (event kept, delivery
//!   created, job queued) + claim + sign + POST + record, over the embedded store, dispatch
//!   concurrency 100. Criterion reports events/s.
//!
//! Run with `cargo bench -p carteiro-shared --features embedded --bench callbacks`;
//! docs/benchmarks.md records the figures.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::callbacks::signing::{secret_key, sign};
use carteiro_shared::callbacks::{EventPublisher, delivery_id};
use carteiro_shared::config::{CallbackSettings, DispatchSettings};
use carteiro_shared::dispatch::{self, DispatchContext};
use carteiro_shared::domain::app_event::{AppEvent, EventId, EventType};
use carteiro_shared::domain::delivery::Channel;
use carteiro_shared::domain::{DeliveryStatus, Timestamp};
use carteiro_shared::ports::{Provider, Providers, Queue, SystemClock};
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::DispatchJob;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const EVENTS: usize = 1_000;

fn envelope() -> String {
    json!({"type": "message.received", "timestamp": "2026-12-01T14:00:00.000Z",
           "data": {"message_id": "wamid.HBgLNTUxMTk5OTk5MDAwMRUCABIYFDNBQzY", "wa_id": "5511999990001",
                    "text": "x".repeat(820)}})
    .to_string()
}

fn signing(c: &mut Criterion) {
    let body = envelope();
    let key = secret_key(SECRET).unwrap_or_default();
    let keys = vec![key.clone()];
    let mut group = c.benchmark_group("callbacks");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sign_envelope", |b| {
        b.iter(|| {
            sign(
                black_box(&keys),
                "evt_0123456789abcdef0123456789abcdef",
                1_764_597_600,
                black_box(body.as_bytes()),
            )
        })
    });
    group.bench_function("bare_hmac_sha256", |b| {
        b.iter(|| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(black_box(&key)) else {
                return Vec::new();
            };
            mac.update(black_box(body.as_bytes()));
            mac.finalize().into_bytes().to_vec()
        })
    });
    group.finish();
}

struct Fixture {
    ctx: DispatchContext,
    publisher: EventPublisher,
    _receiver: MockServer,
}

async fn fixture() -> Option<Fixture> {
    let receiver = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let db = EmbeddedDb::in_memory().ok()?;
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(json!({
        "callbacks": {"endpoints": [{"id": "app", "url": format!("{}/hook", receiver.uri()), "secret": SECRET}]}
    }))));
    let store: Arc<dyn carteiro_shared::ports::DeliveryStore> = Arc::new(db.store());
    let outbound: Arc<dyn Queue> = Arc::new(db.queue("outbound"));
    let settings = CallbackSettings {
        allow_loopback_http: true,
        ..CallbackSettings::default()
    };
    let sender: Arc<dyn Provider> = Arc::new(
        CallbackSender::new(
            secrets.clone(),
            store.clone(),
            Arc::new(SystemClock),
            settings.clone(),
        )
        .ok()?,
    );
    let publisher = EventPublisher {
        store: store.clone(),
        outbound: outbound.clone(),
        secrets,
        settings,
    };
    let ctx = DispatchContext {
        store,
        outbound,
        providers: Providers::new().with(Channel::Webhook, sender),
        clock: Arc::new(SystemClock),
        settings: DispatchSettings {
            concurrency: 100,
            ..DispatchSettings::default()
        },
        events: None,
        limits: None,
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: None,
    };
    Some(Fixture {
        ctx,
        publisher,
        _receiver: receiver,
    })
}

/// Publishes `EVENTS` fresh events and dispatches their callbacks; the time of both.
async fn fan_out(fx: &Fixture, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let run = uuid::Uuid::now_v7().simple().to_string();
        let events: Vec<AppEvent> = (0..EVENTS)
            .map(|i| AppEvent {
                id: EventId::derive(&[&run, &i.to_string()]),
                event_type: EventType::MessageReceived,
                timestamp: Timestamp::now(),
                data: json!({"text": "oi", "n": i}),
                conversation: None,
            })
            .collect();
        let start = Instant::now();
        for e in &events {
            if fx
                .publisher
                .publish(e, None, Timestamp::now())
                .await
                .is_err()
            {
                return Duration::MAX;
            }
        }
        let jobs: Vec<QueuedEvent> = events
            .iter()
            .enumerate()
            .map(|(i, e)| QueuedEvent {
                message_id: format!("bench-{i}"),
                body: serde_json::to_string(&DispatchJob::new(delivery_id(&e.id, "app"), None))
                    .unwrap_or_default(),
                correlation_id: None,
            })
            .collect();
        let failed = dispatch::process_batch(&fx.ctx, &jobs).await;
        total += start.elapsed();
        assert!(failed.is_empty(), "{} callbacks failed", failed.len());
        // Every callback reached the receiver: a fast failure is not a speed-up.
        for e in events.iter().step_by(97) {
            let status = fx
                .ctx
                .store
                .get(&delivery_id(&e.id, "app"))
                .await
                .ok()
                .flatten()
                .map(|r| r.status);
            assert_eq!(status, Some(DeliveryStatus::Sent), "callback not delivered");
        }
        // The jobs publish put on the queue are the ones just dispatched: drop them.
        while let Ok(batch) = fx.ctx.outbound.receive(10, Duration::from_secs(60)).await {
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let _ = fx.ctx.outbound.ack(&m.receipt_handle).await;
            }
        }
    }
    total
}

fn fanout(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Some(fx) = rt.block_on(fixture()) else {
        eprintln!("bench fixture could not be built");
        return;
    };
    let mut group = c.benchmark_group("callbacks");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("fanout_1000", |b| {
        b.to_async(&rt).iter_custom(|iters| fan_out(&fx, iters))
    });
    group.finish();
}

criterion_group!(benches, signing, fanout);
criterion_main!(benches);
