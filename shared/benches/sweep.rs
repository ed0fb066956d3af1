//! One sweep over 10,000 due records on the embedded store (SQLite in memory): the index scan,
//! a versioned read of each record and a job queued for each. Beside it, the floor: the same
//! 10,000 records only read back by id, as any sweep must at least do.
//!
//! Run with `cargo bench -p carteiro-shared --features embedded --bench sweep`;
//! docs/benchmarks.md records the figures.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::config::{DispatchSettings, SweepSettings};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord, DeliveryStatus};
use carteiro_shared::domain::{MessageId, Timestamp};
use carteiro_shared::ports::{DeliveryStore, SystemClock};
use carteiro_shared::sweeper::{SweepContext, sweep};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RECORDS: usize = 10_000;

async fn seeded() -> Option<(SweepContext, Vec<MessageId>)> {
    let db = EmbeddedDb::in_memory().ok()?;
    let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
    let due = Timestamp::from_millis(Timestamp::now().as_millis() - 600_000);
    let mut ids = Vec::with_capacity(RECORDS);
    for _ in 0..RECORDS {
        let mut r = DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990001",
            serde_json::Value::Null,
            due,
        );
        r.status = DeliveryStatus::RetryScheduled;
        r.next_attempt_at = Some(due);
        store.create(&r).await.ok()?;
        ids.push(r.id);
    }
    let ctx = SweepContext {
        store,
        outbound: Arc::new(db.queue("outbound")),
        clock: Arc::new(SystemClock),
        dispatch: DispatchSettings::default(),
        settings: SweepSettings::default(),
    };
    Some((ctx, ids))
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Some((ctx, ids)) = rt.block_on(seeded()) else {
        eprintln!("bench fixture could not be built");
        return;
    };
    let mut group = c.benchmark_group("sweep");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    // A sweep only queues jobs for these records (it leaves them as they are), so every
    // iteration sees the same 10,000 due records.
    group.bench_function("sweep_10000_due", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let ctx = ctx.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let report = sweep(&ctx, Instant::now() + Duration::from_secs(600)).await;
                    let report = report.ok().unwrap_or_default();
                    assert_eq!(report.examined, RECORDS, "the sweep must see every record");
                    assert_eq!(report.requeued, RECORDS, "and queue each one");
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("floor_read_10000_by_id", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, ids) = (ctx.store.clone(), ids.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut found = 0;
                    for id in &ids {
                        found += usize::from(matches!(store.get(id).await, Ok(Some(_))));
                    }
                    assert_eq!(found, RECORDS);
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
