//! The engine's store paths on the embedded store (SQLite in memory):
//!
//! - `sweep/sweep_10000_due`: one sweep over 10,000 overdue retries — the index scan, a
//!   versioned read and write of each record (noting the requeue) and a job queued for each.
//!   Beside it, the floor: the same 10,000 records only read back by id, as any sweep must.
//! - `claim/claim_one`: the dispatch claim of one `queued` record through the versioned-update
//!   helper (read, `claim`, conditional write). Beside it, the floor: the bare read and
//!   conditional write the claim needs, with no helper and no state logic.
//!
//! Run with `cargo bench -p carteiro-shared --features embedded --bench sweep`;
//! docs/benchmarks.md records the figures.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::config::{DispatchSettings, SweepSettings};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord, DeliveryStatus};
use carteiro_shared::domain::{MessageId, Timestamp};
use carteiro_shared::ports::store::ReplaceOutcome;
use carteiro_shared::ports::{Change, DeliveryStore, SystemClock, update_record};
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
        // No wait between requeues, so every iteration queues every record again.
        settings: SweepSettings {
            interval: Duration::ZERO,
            ..SweepSettings::default()
        },
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

    let mut group = c.benchmark_group("claim");
    group.throughput(Throughput::Elements(1));
    let lease = Duration::from_secs(60);
    group.bench_function("claim_one", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = ctx.store.clone();
            async move {
                let ids = queued(store.as_ref(), iters).await;
                let start = Instant::now();
                for id in &ids {
                    let now = Timestamp::now();
                    let claimed =
                        update_record(store.as_ref(), id, |r| match r.claim(now, lease) {
                            Ok(n) => Change::Write(Some(n)),
                            Err(_) => Change::Keep(None),
                        })
                        .await;
                    let claimed = claimed.ok().flatten().and_then(|u| u.value);
                    assert_eq!(claimed, Some(1), "every claim must win attempt 1");
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("floor_read_and_write", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = ctx.store.clone();
            async move {
                let ids = queued(store.as_ref(), iters).await;
                let start = Instant::now();
                for id in &ids {
                    let record = store.get(id).await.ok().flatten();
                    assert!(record.is_some(), "seeded record missing");
                    let Some(mut record) = record else { continue };
                    let read = record.version;
                    record.version += 1;
                    let written = store.replace(&record, read).await;
                    assert!(matches!(written, Ok(ReplaceOutcome::Replaced)));
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

/// `n` fresh `queued` records, for iterations that change them.
async fn queued(store: &dyn DeliveryStore, n: u64) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990001",
            serde_json::Value::Null,
            Timestamp::now(),
        );
        if store.create(&r).await.is_ok() {
            ids.push(r.id);
        }
    }
    ids
}

criterion_group!(benches, bench);
criterion_main!(benches);
