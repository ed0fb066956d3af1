//! The rate limiter, measured.
//!
//! - `limits/throughput_<mps>`: a backlog of WhatsApp messages through `dispatch` (claim, breaker,
//!   pair and throughput tokens, call, record) over the embedded store (SQLite, in memory), with
//!   `CARTEIRO_WHATSAPP_MPS` = 80 and then 1,000, into the WhatsApp sandbox, which stamps each
//!   call as it takes it. Reported: the rate achieved over 30 s of saturation (target: within
//!   3 % of the limit) and the busiest sliding second of calls (target: never over it).
//! - `limits/cost`: what the limiter adds per message — the pair token and the number's token
//!   (two versioned read-modify-writes of limit documents) — beside its floor, one versioned
//!   read-modify-write of one document, on the same in-memory store.
//!
//! `cargo bench -p carteiro-shared --features embedded --bench limits` runs it all (about 75 s);
//! `cargo test` runs a 2-second smoke of the 80/s case. docs/benchmarks.md records the figures.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::dispatch::{self, DispatchContext, DispatchSettings};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord};
use carteiro_shared::domain::message::SendRequest;
use carteiro_shared::domain::payload::DeliveryPayload;
use carteiro_shared::domain::{MessageId, Timestamp};
use carteiro_shared::ports::limits::{LimitDoc, LimitStore};
use carteiro_shared::ports::{OutgoingMessage, Queue, SystemClock};
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::email_sandbox::EmailOutbox;
use carteiro_shared::providers::whatsapp::SandboxOutbox;
use carteiro_shared::resilience::rate;
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::DispatchJob;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Debug)]
struct RateRun {
    mps: usize,
    window: Duration,
    achieved: f64,
    busiest_second: usize,
    calls: usize,
}

/// Sends a backlog at `mps` and measures `window` of saturation (after a second of warm-up).
async fn rate_run(mps: usize, window: Duration, workers: usize, limited: bool) -> Result<RateRun> {
    let db = EmbeddedDb::in_memory()?;
    let secrets = Secrets::new(Arc::new(FileSecretSource::from_json(json!({
        "whatsapp": {"app_secret": "a", "verify_token": "v"}
    }))));
    let sandbox = Arc::new(SandboxOutbox::new());
    let email = Arc::new(EmailOutbox::new(MailerOptions::default())?);
    let outbound = Arc::new(db.queue("outbound"));
    let ctx = DispatchContext {
        store: Arc::new(db.store()),
        outbound: outbound.clone(),
        providers: providers::standard(&secrets, sandbox.clone(), email),
        clock: Arc::new(SystemClock),
        settings: DispatchSettings {
            whatsapp_mps: mps as f64,
            concurrency: 10,
            ..DispatchSettings::default()
        },
        events: None,
        limits: limited.then(|| Arc::new(db.limits()) as Arc<dyn LimitStore>),
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: Some(Arc::new(db.suppressions())),
    };
    // The backlog: more than the window can take, each to its own recipient.
    let total = mps * (window.as_secs() as usize + 3);
    let mut jobs = Vec::with_capacity(total);
    for n in 0..total {
        let id = MessageId::generate();
        let to = format!("+55119{:08}", n);
        let body = json!({"channel": "whatsapp", "to": to, "text": {"body": "Olá"}});
        let mut record = DeliveryRecord::new_queued(
            id.clone(),
            Channel::Whatsapp,
            &to,
            body.clone(),
            Timestamp::now(),
        );
        let request = SendRequest::parse(&body)?;
        record.payload = Some(DeliveryPayload::build(&id, &request.message));
        ctx.store.create(&record).await?;
        jobs.push(OutgoingMessage::new(serde_json::to_string(
            &DispatchJob::new(id, None),
        )?));
    }
    outbound.send_batch(&jobs).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (ctx, queue, stop) = (ctx.clone(), outbound.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(batch) = queue.receive(10, Duration::from_secs(60)).await else {
                    continue;
                };
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let events: Vec<QueuedEvent> = batch
                    .iter()
                    .map(|m| QueuedEvent {
                        message_id: m.message_id.clone(),
                        body: m.body.clone(),
                        correlation_id: None,
                    })
                    .collect();
                let failed = dispatch::process_batch(&ctx, &events).await;
                for m in &batch {
                    if !failed.contains(&m.message_id) {
                        let _ = queue.ack(&m.receipt_handle).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    let mut at: Vec<i64> = sandbox
        .messages()
        .iter()
        .map(|m| m.accepted_at.as_millis())
        .collect();
    at.sort_unstable();
    let first = at.first().copied().unwrap_or(0);
    let from = first + 1_000;
    let to = from + i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let in_window = at.iter().filter(|t| **t >= from && **t < to).count();
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..at.len() {
        while at[end] - at[start] >= 1_000 {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    Ok(RateRun {
        mps,
        window,
        achieved: in_window as f64 / window.as_secs_f64(),
        busiest_second: busiest,
        calls: at.len(),
    })
}

/// Nanoseconds per message of the limiter, and of its floor, each the median of 5 rounds.
async fn cost(per_round: usize) -> Result<(f64, f64)> {
    let db = EmbeddedDb::in_memory()?;
    let limits = db.limits();
    let pair = carteiro_shared::config::PAIR_RATE;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut limiter = Vec::new();
    let mut floor = Vec::new();
    for round in 0..5 {
        let start = Instant::now();
        for n in 0..per_round {
            // A fresh recipient each time, as a campaign has; a limit far above the pace.
            let key = format!("whatsapp:pair:{round}:{n}");
            let _ = rate::take(&limits, &key, pair, 1.0, Timestamp::now()).await;
            let _ =
                rate::take_shard(&limits, "whatsapp:sender", 1_000_000.0, 0, Timestamp::now).await;
        }
        limiter.push(start.elapsed().as_nanos() as f64 / per_round as f64);
        let start = Instant::now();
        for n in 0..per_round {
            let key = format!("floor:{round}:{n}");
            let found = limits.get_limit(&key).await.ok().flatten();
            let doc = LimitDoc {
                key,
                version: found.as_ref().map_or(1, |d| d.version + 1),
                body: json!({"tokens": 1.0, "at_ms": 0}),
                expires_at: Timestamp::now().plus(Duration::from_secs(60)),
            };
            let _ = limits.put_limit(&doc, found.map_or(0, |d| d.version)).await;
        }
        floor.push(start.elapsed().as_nanos() as f64 / per_round as f64);
    }
    Ok((median(limiter), median(floor)))
}

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // (limit, seconds measured, consumers of ten messages each)
        let runs: &[(usize, u64, usize)] = if full {
            &[(80, 30, 2), (1_000, 30, 6)]
        } else {
            &[(80, 2, 4)]
        };
        for &(mps, secs, workers) in runs {
            let r = rate_run(mps, Duration::from_secs(secs), workers, true).await?;
            println!(
                "limits/throughput_{}: achieved {:.2}/s over {:?} ({:.1} % of the limit), busiest sliding second {} calls, {} calls in all",
                r.mps,
                r.achieved,
                r.window,
                100.0 * r.achieved / r.mps as f64,
                r.busiest_second,
                r.calls
            );
            assert!(
                r.busiest_second <= r.mps,
                "a second carried {} calls over {}",
                r.busiest_second,
                r.mps
            );
            if full {
                let met = r.achieved >= 0.97 * r.mps as f64;
                println!(
                    "  target (within 3 % of {}/s, no second over): {}",
                    r.mps,
                    if met { "met" } else { "missed" }
                );
            }
        }
        if full {
            // The same pipeline with no limiter at all, as fast as it goes: its own ceiling on
            // this machine, the peer of the 1,000/s run.
            let r = rate_run(5_000, Duration::from_secs(3), 6, false).await?;
            println!(
                "limits/unlimited: {:.0} messages/s over {:?} with no limiter (a backlog of {} messages)",
                r.achieved, r.window, r.calls
            );
        }
        let (limiter, floor) = cost(if full { 20_000 } else { 200 }).await?;
        println!(
            "limits/cost: {:.1} µs per message for the limiter (pair + throughput tokens), floor {:.1} µs (one versioned write), {:.2}×",
            limiter / 1_000.0,
            floor / 1_000.0,
            limiter / floor
        );
        Ok(())
    })
}
