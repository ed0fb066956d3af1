//! Dispatch: takes jobs off the outbound queue and delivers each message once, whatever its
//! channel.
//!
//! For every job: claim the record with a version-checked `queued|retry_scheduled → sending`
//! (so a duplicated or redelivered queue message cannot call a provider twice), hand the
//! payload built at acceptance to the channel's [`Provider`](crate::ports::Provider), and
//! write the outcome — `sent`, `retry_scheduled` with a next attempt time from the
//! [`RetryPolicy`], `failed`, or `dead`. Provider failures become state; only infrastructure
//! faults (store or queue unreachable) fail the queue message. Every write goes through
//! [`update_from`], the one versioned-update helper. The retry sweeper reuses
//! [`recover_or_give_up`] and [`enqueue`], so both paths make the same decisions.

use crate::batch::{ATTR_CORRELATION_ID, QueuedEvent, process_concurrently};
use crate::callbacks::{EventPublisher, PublishError};
pub use crate::config::DispatchSettings;
use crate::domain::app_event::AppEvent;
use crate::domain::delivery::{
    Attempt, AttemptResult, ClaimRefused, DeliveryError, DeliveryRecord, DeliveryStatus,
};
use crate::domain::ids::Wamid;
use crate::domain::job::DispatchJob;
use crate::domain::outcome::{FailureClass, SendFailure, SendOutcome};
use crate::domain::time::Timestamp;
use crate::inbound::reconcile_orphans;
use crate::ports::clock::Clock;
use crate::ports::limits::LimitStore;
use crate::ports::provider::Providers;
use crate::ports::queue::{OutgoingMessage, Queue, QueueError};
use crate::ports::store::{DeliveryStore, StoreError};
use crate::ports::update::{Change, UpdateError, update_from};
use crate::resilience::RetryPolicy;
use crate::resilience::breaker::{self, Admission};
use crate::resilience::rate::{self as rate, Decision};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What dispatch needs. Built once per process.
#[derive(Debug, Clone)]
pub struct DispatchContext {
    pub store: Arc<dyn DeliveryStore>,
    pub outbound: Arc<dyn Queue>,
    pub providers: Providers,
    pub clock: Arc<dyn Clock>,
    pub settings: DispatchSettings,
    /// Where `message.failed` / `message.dead` and reconciled statuses are published; `None`
    /// publishes nothing.
    pub events: Option<EventPublisher>,
    /// Where the send rate limits are counted; `None` sends as fast as the queue allows.
    pub limits: Option<Arc<dyn LimitStore>>,
    /// One claimer of this process at a time asks each shard of the number's bucket (and
    /// sleeps for its next token); the others queue here instead of at the store. Share one
    /// per process.
    pub sender_gate: Arc<SenderGates>,
    /// Who is not to be sent to (checked before each attempt, taught by refusals); `None`
    /// checks nobody.
    pub suppressions: Option<Arc<dyn crate::ports::suppressions::SuppressionStore>>,
    /// Provider calls noted for the status read model; the process flushes it
    /// ([`crate::status::calls::flush`]). Share one per process.
    pub calls: Arc<crate::status::calls::CallLedger>,
}

/// A gate per shard of the number's bucket ([`DispatchContext::sender_gate`]), and how many
/// claimers of this process are at each; shard `i` uses slot `i % 8`.
#[derive(Debug, Default)]
pub struct SenderGates {
    gates: [tokio::sync::Mutex<()>; 8],
    waiting: [AtomicUsize; 8],
}

impl SenderGates {
    /// Joins the gate of the shard of `shards` with the fewest claimers of this process at it
    /// (ties broken at random). Picked at random instead, each shard gets exactly its share of
    /// claimers on average, so its queue keeps running dry and its tokens overflow the burst
    /// while claimers wait at the others: 7 % of 1,000/s lost that way on two cores.
    async fn join(&self, shards: u32, wait: Duration) -> Option<(u32, AtGate<'_>)> {
        let slot = |i: u32| i as usize % self.gates.len();
        let from = rand::random::<u32>() % shards;
        let shard = (0..shards)
            .map(|i| (from + i) % shards)
            .min_by_key(|i| self.waiting[slot(*i)].load(Ordering::Relaxed))
            .unwrap_or(from);
        let counted = &self.waiting[slot(shard)];
        counted.fetch_add(1, Ordering::Relaxed);
        let mut at_gate = AtGate {
            counted,
            _held: None,
        };
        let held = tokio::time::timeout(wait, self.gates[slot(shard)].lock()).await;
        at_gate._held = Some(held.ok()?);
        Some((shard, at_gate))
    }
}

/// A claimer at a shard's gate (and, once it holds it, the gate): counted until dropped.
struct AtGate<'a> {
    counted: &'a AtomicUsize,
    /// Held for as long as the claimer asks the shard (and sleeps for its token).
    _held: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Drop for AtGate<'_> {
    fn drop(&mut self) {
        self.counted.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a delivery waiting for the one before it (an ordered callback) waits between looks.
const ORDER_WAIT: Duration = Duration::from_secs(1);

/// What one job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The provider was called; the record now says how it went.
    Attempted(AttemptResult),
    /// Nothing to do: the record is gone, finished, or another worker holds it.
    Skipped(&'static str),
    /// A retry is not due yet; the job went back on the queue with the remaining delay, or
    /// waits in the store for the sweeper.
    Deferred,
    /// Ended `failed` without an attempt: its recipient is suppressed, or its circuit stayed
    /// open past its `fallback_after` (its fallback, if any, is on its way).
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the queue message is not a dispatch job: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Fallback(#[from] crate::fallback::FallbackError),
}

/// Dispatches a batch concurrently and returns the message ids that failed.
pub async fn process_batch(ctx: &DispatchContext, events: &[QueuedEvent]) -> Vec<String> {
    process_concurrently(events, ctx.settings.concurrency, |event| {
        dispatch(ctx, &event.body)
    })
    .await
}

/// Dispatches one job.
pub async fn dispatch(ctx: &DispatchContext, body: &str) -> Result<Dispatched, DispatchError> {
    let job: DispatchJob =
        serde_json::from_str(body).map_err(|e| DispatchError::Malformed(e.to_string()))?;
    let span = tracing::info_span!(
        "dispatch",
        message_id = %job.id,
        correlation_id = job.correlation_id.as_deref().unwrap_or(""),
        attempt = tracing::field::Empty,
        wamid = tracing::field::Empty,
    );
    dispatch_job(ctx, job).instrument(span).await
}

/// What the claim's change function found.
enum Claim {
    Claimed(u32),
    /// Not due yet; the job goes back with the remaining wait.
    NotDue(Timestamp),
    /// An expired lease was turned into a scheduled retry, or the message given up.
    Recovered,
    Refused(ClaimRefused),
}

async fn dispatch_job(
    ctx: &DispatchContext,
    job: DispatchJob,
) -> Result<Dispatched, DispatchError> {
    let now = ctx.clock.now();
    let lease = ctx.settings.lease;
    let Some(current) = ctx.store.get(&job.id).await? else {
        tracing::warn!("dispatch job for an unknown record dropped");
        return Ok(Dispatched::Skipped("unknown record"));
    };
    if let Some(wait) = waits_for_previous(ctx, &current, now).await? {
        enqueue(ctx.outbound.as_ref(), &job, wait).await?;
        return Ok(Dispatched::Deferred);
    }
    if let Some(s) = suppressed(ctx, &current, &job, now).await {
        return refuse(ctx, current, crate::suppression::refusal(&s)).await;
    }
    let before = current.clone();
    let claimed = update_from(ctx.store.as_ref(), current, |record| {
        let policy = ctx.settings.retry_for(record.channel);
        if recover_or_give_up(record, now, policy) {
            return Change::Write(Claim::Recovered);
        }
        match record.claim(now, lease) {
            Ok(n) => Change::Write(Claim::Claimed(n)),
            Err(ClaimRefused::NotDue { next_attempt_at }) => {
                Change::Keep(Claim::NotDue(next_attempt_at))
            }
            Err(refused) => Change::Keep(Claim::Refused(refused)),
        }
    })
    .await?;
    let (record, number) = match claimed.value {
        Claim::Claimed(n) => (claimed.record, n),
        Claim::NotDue(at) => {
            // Only the job queued for this schedule carries it on; any other is a duplicate.
            if job.due_at != Some(at) {
                return Ok(Dispatched::Skipped("superseded job"));
            }
            enqueue_when_due(ctx, &job, at).await?;
            return Ok(Dispatched::Deferred);
        }
        Claim::Recovered => {
            let r = &claimed.record;
            if r.status == DeliveryStatus::RetryScheduled
                && let Some(at) = r.next_attempt_at
            {
                enqueue_when_due(ctx, &job, at).await?;
                return Ok(Dispatched::Deferred);
            }
            publish_outcome(ctx, &claimed.record).await?;
            return Ok(Dispatched::Skipped("given up"));
        }
        Claim::Refused(refused) => {
            // A failed or dead record's event may not have been published the first time
            // (publishing is idempotent): this redelivered job publishes it.
            if refused == ClaimRefused::Terminal {
                publish_outcome(ctx, &claimed.record).await?;
            }
            tracing::debug!(?refused, "record not claimable; job dropped");
            return Ok(Dispatched::Skipped("not claimable"));
        }
    };
    // Claimed: the breaker and the limits now, as close to the call as they can be, so every
    // call (and only a call) takes a token.
    let record = match gate(ctx, &job, &before, record).await? {
        Gate::Go(record) => *record,
        Gate::Back(outcome) => return Ok(outcome),
    };
    let policy = ctx.settings.retry_for(record.channel);
    tracing::Span::current().record("attempt", number);

    let started_at = ctx.clock.now();
    let started = Instant::now();
    let outcome = match &record.payload {
        Some(payload) => ctx.providers.send(&record.id, payload).await,
        // Every record the send API writes has one; only a record written by hand gets here.
        None => SendOutcome::Failed(SendFailure::carteiro(
            FailureClass::Permanent,
            "invalid_record",
            "the record holds no provider payload",
        )),
    };
    let latency = started.elapsed();
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    let (attempt, result) = judge(
        policy,
        &record,
        number,
        started_at,
        latency_ms,
        outcome,
        ctx.clock.now(),
    );
    let failed_with = match &result {
        AttemptResult::Accepted { .. } => None,
        _ => attempt.provider_code.as_deref(),
    };
    crate::observability::metrics::provider_call(record.channel.as_str(), latency, failed_with);
    if let Some(payload) = &record.payload {
        ctx.calls.note(
            &payload.endpoint(),
            failed_with.is_none(),
            latency,
            failed_with,
            ctx.clock.now(),
        );
    }
    let finished = update_from(ctx.store.as_ref(), record, |r| {
        r.finish_attempt(attempt.clone(), result.clone(), ctx.clock.now());
        Change::Write(())
    })
    .await?;
    let record = finished.record;
    note_health(ctx, &record, &attempt).await;
    if let AttemptResult::Failed { error } = &result {
        crate::suppression::learn(
            ctx.suppressions.as_deref(),
            &record,
            error,
            ctx.clock.now(),
            ctx.settings.email_suppression,
        )
        .await;
    }
    slow_down(ctx, &record, &attempt).await;
    match &result {
        AttemptResult::Retry { at, .. } => enqueue_when_due(ctx, &job, *at).await?,
        AttemptResult::Accepted {
            provider_message_id,
            ..
        } => {
            note_conversation(ctx, &record).await;
            if let Ok(wamid) = Wamid::parse(provider_message_id) {
                tracing::Span::current().record("wamid", wamid.as_str());
                // Statuses that beat this write were kept as orphans; apply them now.
                let reconciled = reconcile_orphans(
                    ctx.store.as_ref(),
                    ctx.events.as_ref(),
                    Some(ctx.outbound.as_ref()),
                    &record.id,
                    &wamid,
                    ctx.clock.now(),
                );
                if let Err(e) = reconciled.await {
                    tracing::warn!(error = %e, "orphan statuses not reconciled yet");
                }
            }
        }
        AttemptResult::Failed { .. } | AttemptResult::Dead { .. } => {
            publish_outcome(ctx, &record).await?;
        }
    }
    tracing::info!(status = record.status.as_str(), outcome = %attempt.outcome, latency_ms, "dispatch attempt finished");
    Ok(Dispatched::Attempted(result))
}

/// A worker that waited longer than this for its token asks the breaker again.
const RECHECK_AFTER: Duration = Duration::from_millis(20);

/// How much sooner than its next token is due a worker waiting for it wakes.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The longest wait for a token a worker sleeps through rather than re-queueing the job.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(1);

/// The limit named when the number's throughput holds an attempt back.
const THROUGHPUT_LIMIT: &str = "whatsapp_throughput";

/// The bucket of the WhatsApp number's throughput (Carteiro sends from the one number of the
/// `whatsapp` secret).
const SENDER_BUCKET: &str = "whatsapp:sender";

/// Whether this job would claim its record now (a due attempt, no lease), so that limits and
/// breakers are consulted only for real attempts, not for duplicates or early jobs.
fn claimable_now(record: &DeliveryRecord, job: &DispatchJob, now: Timestamp) -> bool {
    let due = match record.status {
        DeliveryStatus::Queued => record.next_attempt_at.is_none_or(|at| at <= now),
        DeliveryStatus::RetryScheduled => {
            job.due_at == record.next_attempt_at
                && record.next_attempt_at.is_some_and(|at| at <= now)
        }
        _ => false,
    };
    due && record.lease_expires_at.is_none()
}

/// The circuit breaker of a record's provider endpoint: the Graph API, its SMTP relay, or its
/// callback endpoint.
fn breaker_key(record: &DeliveryRecord) -> Option<String> {
    Some(format!("breaker:{}", record.payload.as_ref()?.endpoint()))
}

/// How long a claimed attempt must wait because its endpoint's breaker is open (or another
/// worker is probing it), and whether this attempt is the half-open probe. A store that cannot
/// be reached lets the attempt through (logged).
async fn circuit_open(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
    now: Timestamp,
) -> (Option<Duration>, bool) {
    let (Some(limits), Some(key)) = (ctx.limits.as_ref(), breaker_key(record)) else {
        return (None, false);
    };
    match breaker::admit(limits.as_ref(), &key, &ctx.settings.breaker, now).await {
        Ok(Admission::Wait(wait)) => (Some(wait.max(ORDER_WAIT)), false),
        Ok(Admission::Call) => (None, false),
        Ok(Admission::Probe) => (None, true),
        Err(e) => {
            tracing::warn!(error = %e, breaker = key.as_str(), "breaker not consulted: the limits store is unavailable");
            (None, false)
        }
    }
}

/// What the breaker and the limits said of a claimed record.
enum Gate {
    /// Call now.
    Go(Box<DeliveryRecord>),
    /// No call: the claim was handed back and the job queued again, or the fallback taken.
    Back(Dispatched),
}

/// The breaker, then the limits, for a claimed record. An open circuit or a limit reached hands
/// the claim back with the deferral noted — never an attempt — and queues the job again for
/// when it may go (a circuit open past the message's `fallback_after` refuses it instead, so
/// its fallback goes).
async fn gate(
    ctx: &DispatchContext,
    job: &DispatchJob,
    before: &DeliveryRecord,
    record: DeliveryRecord,
) -> Result<Gate, DispatchError> {
    let (circuit, probe) = circuit_open(ctx, &record, ctx.clock.now()).await;
    if let Some(wait) = circuit {
        return circuit_wait(ctx, job, before, record, wait).await;
    }
    let admitted = Instant::now();
    if let Some((limit, wait)) = over_limit(ctx, &record).await {
        if probe {
            release_probe(ctx, &record).await;
        }
        if release(ctx, before, record, limit, wait).await?.is_none() {
            return Ok(Gate::Back(Dispatched::Skipped("changed while claimed")));
        }
        enqueue(ctx.outbound.as_ref(), job, wait).await?;
        return Ok(Gate::Back(Dispatched::Deferred));
    }
    // A worker that waited for its token asks the breaker again: it may have opened meanwhile,
    // and no call goes to an open circuit but the probe. (The token is not given back: a
    // wasted token never takes the number over its limit.)
    if !probe && admitted.elapsed() > RECHECK_AFTER {
        let (circuit, _) = circuit_open(ctx, &record, ctx.clock.now()).await;
        if let Some(wait) = circuit {
            return circuit_wait(ctx, job, before, record, wait).await;
        }
    }
    Ok(Gate::Go(Box::new(record)))
}

/// A claimed record whose circuit is open: the claim handed back and the job queued for the
/// end of the cool-down (no later than its `fallback_after`), or, past its `fallback_after`,
/// refused so that its fallback goes.
async fn circuit_wait(
    ctx: &DispatchContext,
    job: &DispatchJob,
    before: &DeliveryRecord,
    record: DeliveryRecord,
    wait: Duration,
) -> Result<Gate, DispatchError> {
    let now = ctx.clock.now();
    // Back no later than its `fallback_after`, to take the fallback then.
    let wait = match record.circuit_fallback_at() {
        Some(at) => wait.min(Duration::from_millis(
            u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0),
        )),
        None => wait,
    };
    let Some(released) = release(ctx, before, record, "circuit_open", wait).await? else {
        return Ok(Gate::Back(Dispatched::Skipped("changed while claimed")));
    };
    if released.circuit_fallback_due(ctx.clock.now()) {
        let error = DeliveryError::carteiro(
            "circuit_open",
            "the provider's circuit breaker stayed open past the message's fallback_after",
        );
        return refuse(ctx, released, error).await.map(Gate::Back);
    }
    enqueue(ctx.outbound.as_ref(), job, wait).await?;
    Ok(Gate::Back(Dispatched::Deferred))
}

/// Hands a claim back (no call was made) with the deferral noted; `None` when the record
/// changed meanwhile (a status webhook settled it).
async fn release(
    ctx: &DispatchContext,
    before: &DeliveryRecord,
    record: DeliveryRecord,
    limit: &'static str,
    wait: Duration,
) -> Result<Option<DeliveryRecord>, UpdateError> {
    let now = ctx.clock.now();
    let deferral = crate::domain::delivery::Deferral {
        at: now,
        limit: limit.to_owned(),
        until: now.plus(wait),
    };
    let released = update_from(ctx.store.as_ref(), record, |r| {
        if r.release_claim(before, deferral.clone()) {
            Change::Write(true)
        } else {
            Change::Keep(false)
        }
    })
    .await?;
    if released.value {
        crate::observability::metrics::deferred(limit);
    }
    tracing::debug!(
        limit,
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "attempt deferred"
    );
    Ok(released.value.then_some(released.record))
}

/// Hands back a probe this attempt will not make (a rate limit put it off).
async fn release_probe(ctx: &DispatchContext, record: &DeliveryRecord) {
    let (Some(limits), Some(key)) = (ctx.limits.as_ref(), breaker_key(record)) else {
        return;
    };
    let released = breaker::release_probe(
        limits.as_ref(),
        &key,
        &ctx.settings.breaker,
        ctx.clock.now(),
    );
    if let Err(e) = released.await {
        tracing::warn!(error = %e, breaker = key.as_str(), "probe not handed back; another comes after its lease");
    }
}

/// Counts an attempt on its endpoint's breaker: a transient or unknown failure is a failure;
/// anything else is the endpoint answering — accepted, or a verdict on the message (a
/// recipient's permanent error, a rate limit, a refused credential) — so a success: it says
/// the endpoint is up, and a probe that got one closes the breaker.
async fn note_health(ctx: &DispatchContext, record: &DeliveryRecord, attempt: &Attempt) {
    let (Some(limits), Some(key)) = (&ctx.limits, breaker_key(record)) else {
        return;
    };
    let o = attempt.outcome.as_str();
    let success = o != FailureClass::Retryable.as_str() && o != FailureClass::Unknown.as_str();
    let recorded = breaker::record(
        limits.as_ref(),
        &key,
        &ctx.settings.breaker,
        success,
        ctx.clock.now(),
    );
    if let Err(e) = recorded.await {
        tracing::warn!(error = %e, breaker = key.as_str(), "breaker not updated: the limits store is unavailable");
    }
}

/// Whether a claimed attempt must wait for a rate limit: the limit reached and for how long.
/// For WhatsApp, [`whatsapp_tokens`]; for email, the relay's own rate (the smtp secret's
/// `rate_limit`) when it has one. A store that cannot be reached lets the attempt through
/// (logged), as the provider's own limits still apply.
async fn over_limit(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
) -> Option<(&'static str, Duration)> {
    let limits = ctx.limits.as_ref()?;
    let payload = record.payload.as_ref()?;
    if let Some(to) = payload.whatsapp_recipient() {
        return whatsapp_tokens(ctx, limits.as_ref(), to).await;
    }
    let shape = ctx.providers.rate(payload).await?;
    let endpoint = payload.endpoint();
    let taken = rate::take(limits.as_ref(), &endpoint, shape, 1.0, ctx.clock.now());
    match taken.await {
        Ok(Decision::Allowed { .. }) => None,
        Ok(Decision::Limited { retry_after, .. }) => Some(("relay_rate", retry_after)),
        Err(e) => {
            not_counted(&e);
            None
        }
    }
}

/// A limits store that cannot be reached lets the attempt through: the provider's own limits
/// still apply.
fn not_counted(e: &UpdateError) {
    tracing::warn!(error = %e, "rate limit not counted: the limits store is unavailable");
}

/// The number's throughput token (sharded past one document's share), then the recipient's
/// pair token, for a call made right after. The number's is counted just before its write,
/// so the call follows it by no more than the store's write lag, which the bucket's
/// sliding-second ceiling leaves room for; a token that came back later is given back and
/// taken again while the wait budget lasts (past it, the call goes, logged). A short wait
/// for the number's next token is slept here, through [`DispatchContext::sender_gate`] (the queue's delays are whole seconds, far more than the
/// 12 ms between tokens at 80/s), within a quarter of the lease; a longer one, or the pair's,
/// is the caller's to defer. Tokens of a call not made go back.
async fn whatsapp_tokens(
    ctx: &DispatchContext,
    limits: &dyn LimitStore,
    to: &str,
) -> Option<(&'static str, Duration)> {
    let budget = MAX_INLINE_WAIT.min(ctx.settings.lease / 4);
    let started = Instant::now();
    let left = || budget.saturating_sub(started.elapsed());
    let mps = ctx.settings.whatsapp_mps;
    let lag = i64::try_from(limits.write_lag().as_millis()).unwrap_or(i64::MAX);
    let pair = pair_key(to);
    let pair_rate = ctx.settings.pair_rate;
    loop {
        let shards = rate::shards_for(mps);
        let Some((shard, gate)) = ctx.sender_gate.join(shards, left()).await else {
            return Some((THROUGHPUT_LIMIT, Duration::ZERO));
        };
        // Holding the gate until this claimer has its token (or gives up): the next one asks
        // after it. A timer wakes a millisecond or more late, so it wakes that much early and
        // asks again; the bucket's burst over one token (6 ms at 80/s, and at a shard's 250/s)
        // banks what lateness is left.
        let taken = loop {
            let sender = rate::take_shard(limits, SENDER_BUCKET, mps, shard, || ctx.clock.now());
            let taken = match sender.await {
                Ok(taken) => taken,
                Err(e) => {
                    not_counted(&e);
                    return None;
                }
            };
            match taken.decision {
                Decision::Limited { retry_after, .. } if retry_after <= left() => {
                    match retry_after.checked_sub(TIMER_SLACK) {
                        Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                        _ => tokio::task::yield_now().await,
                    }
                }
                Decision::Limited { retry_after, .. } => {
                    return Some((THROUGHPUT_LIMIT, retry_after));
                }
                Decision::Allowed { .. } => break taken,
            }
        };
        drop(gate);
        let give_back_sender = async || {
            let shape = rate::shard_shape(limits, mps);
            let back = rate::give_back(limits, &taken.shard, shape, 1.0, ctx.clock.now());
            if let Err(e) = back.await {
                tracing::warn!(error = %e, "a throughput token could not be given back");
            }
        };
        let pair_taken = rate::take_counted(limits, &pair, pair_rate, 1.0, || ctx.clock.now());
        let pair_at = match pair_taken.await {
            Ok((Decision::Limited { retry_after, .. }, _)) => {
                give_back_sender().await;
                return Some(("whatsapp_pair", retry_after));
            }
            Ok((Decision::Allowed { .. }, at)) => Some(at),
            Err(e) => {
                not_counted(&e);
                None
            }
        };
        let now = ctx.clock.now().as_millis();
        let late = now - taken.at.as_millis() > lag
            || pair_at.is_some_and(|at| now - at.as_millis() > lag);
        if !late {
            return None;
        }
        if left().is_zero() {
            // The store stays slower than its write lag: send rather than stop sending (as
            // when it cannot be reached); the provider's own limit still applies.
            tracing::warn!(
                "the limits store answers slower than its write lag; the call goes on a late token"
            );
            return None;
        }
        tracing::debug!("tokens came back too late to spend; taking others");
        give_back_sender().await;
        if pair_at.is_some() {
            let back = rate::give_back(limits, &pair, pair_rate, 1.0, ctx.clock.now());
            if let Err(e) = back.await {
                tracing::warn!(error = %e, "a pair token could not be given back");
            }
        }
    }
}

/// Counts a template Meta took for a user outside their customer-service window against the
/// messaging-limit quota (a new business-initiated conversation, unless one is open). Best
/// effort: a store that cannot be reached leaves the count short, logged.
async fn note_conversation(ctx: &DispatchContext, record: &DeliveryRecord) {
    let (Some(limits), Some(payload)) = (&ctx.limits, &record.payload) else {
        return;
    };
    let crate::domain::payload::DeliveryPayload::WhatsappGraphV1 { body, .. } = payload else {
        return;
    };
    let (Some("template"), Some(to)) = (
        body.get("type").and_then(serde_json::Value::as_str),
        payload.whatsapp_recipient(),
    ) else {
        return;
    };
    let Some(key) = crate::domain::contact::wa_id_key(to) else {
        return;
    };
    let now = ctx.clock.now();
    let contact = crate::ports::update::get_state::<crate::domain::contact::ContactState>(
        ctx.store.as_ref(),
        crate::ports::store::StateKind::Contact,
        &key,
    );
    match contact.await {
        Ok(c) if c.window_open(now) => {}
        Ok(_) => {
            let noted =
                crate::resilience::quota::note_business_initiated(limits.as_ref(), &key, now);
            if let Err(e) = noted.await {
                tracing::warn!(error = %e, "business-initiated conversation not counted");
            }
        }
        Err(e) => tracing::warn!(error = %e, "business-initiated conversation not counted"),
    }
}

/// Meta said Carteiro went too fast: a 130429 stops the number's bucket for a moment, a
/// 131056 the recipient's pair bucket for Meta's 4^X s — for every instance, not just this
/// message. Best effort (logged).
async fn slow_down(ctx: &DispatchContext, record: &DeliveryRecord, attempt: &Attempt) {
    let (Some(limits), Some(payload)) = (&ctx.limits, &record.payload) else {
        return;
    };
    let Some(to) = payload.whatsapp_recipient() else {
        return;
    };
    let now = ctx.clock.now();
    let paused = if attempt.outcome == FailureClass::Throttled.as_str() {
        rate::pause_sharded(
            limits.as_ref(),
            SENDER_BUCKET,
            ctx.settings.whatsapp_mps,
            ctx.settings.throttle_pause,
            now,
        )
        .await
    } else if attempt.outcome == FailureClass::PairLimited.as_str() {
        // The record holds this attempt already.
        let wait = RetryPolicy::pair_wait(record.pair_refusals_in_a_row());
        rate::pause(
            limits.as_ref(),
            &pair_key(to),
            ctx.settings.pair_rate,
            wait,
            now,
        )
        .await
    } else {
        return;
    };
    if let Err(e) = paused {
        tracing::warn!(error = %e, outcome = %attempt.outcome, "a bucket could not be paused");
    }
}

/// The pair bucket of one recipient.
fn pair_key(to: &str) -> String {
    format!("whatsapp:pair:{to}")
}

/// The suppression that holds back a due attempt's recipient, if any. A store that cannot be
/// reached lets the attempt through (logged): the provider refuses a suppressed recipient too.
async fn suppressed(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
    job: &DispatchJob,
    now: Timestamp,
) -> Option<crate::domain::suppression::Suppression> {
    let store = ctx.suppressions.as_ref()?;
    if !claimable_now(record, job, now) {
        return None;
    }
    match crate::suppression::check(store.as_ref(), record.payload.as_ref()?).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "suppressions not consulted: the store is unavailable");
            None
        }
    }
}

/// Ends a waiting record `failed` with `error` without an attempt (a suppressed recipient, a
/// circuit open past `fallback_after`), and takes its fallback.
async fn refuse(
    ctx: &DispatchContext,
    record: DeliveryRecord,
    error: DeliveryError,
) -> Result<Dispatched, DispatchError> {
    let code = error.code.clone();
    let refused = update_from(ctx.store.as_ref(), record, |r| {
        if r.refuse(error.clone(), ctx.clock.now()) {
            Change::Write(true)
        } else {
            Change::Keep(false)
        }
    })
    .await?;
    if !refused.value {
        return Ok(Dispatched::Skipped("not claimable"));
    }
    tracing::info!(code = code.as_str(), "message refused before an attempt");
    publish_outcome(ctx, &refused.record).await?;
    Ok(Dispatched::Refused)
}

/// For a record that ended `failed` or `dead`: publishes `message.failed` / `message.dead` and
/// takes its next fallback step. Both are idempotent, so a redelivered job finishes what a
/// first one could not.
async fn publish_outcome(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
) -> Result<(), DispatchError> {
    if let (Some(events), Some(event)) = (&ctx.events, AppEvent::outcome(record, ctx.clock.now())) {
        events
            .publish(&event, record.correlation_id.as_deref(), ctx.clock.now())
            .await?;
    }
    crate::fallback::take_step(
        ctx.store.as_ref(),
        ctx.outbound.as_ref(),
        record,
        ctx.clock.now(),
    )
    .await?;
    Ok(())
}

/// How long the job's record must wait for an earlier delivery that is not finished yet (an
/// ordered callback whose predecessor is still being sent): until the predecessor's next
/// attempt, at least [`ORDER_WAIT`], at most the queue's delay limit. Not an attempt: nothing
/// is written, the job comes back then.
async fn waits_for_previous(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
    now: Timestamp,
) -> Result<Option<Duration>, StoreError> {
    let Some(previous) = &record.after else {
        return Ok(None);
    };
    if record.status.is_terminal() {
        return Ok(None);
    }
    let Some(p) = ctx.store.get(previous).await? else {
        return Ok(None);
    };
    if p.status.is_terminal() {
        return Ok(None);
    }
    let until = p.next_attempt_at.unwrap_or(now);
    let wait =
        Duration::from_millis(u64::try_from(until.as_millis() - now.as_millis()).unwrap_or(0));
    Ok(Some(wait.clamp(
        ORDER_WAIT,
        ctx.settings.queue_max_delay.max(ORDER_WAIT),
    )))
}

/// For a record nobody is working on: turns an expired lease into a scheduled retry after the
/// reconciliation window (the attempt's fate is unknown), and gives up a message that has
/// spent its attempts or outlived its maximum age. True when it changed the record.
pub fn recover_or_give_up(
    record: &mut DeliveryRecord,
    now: Timestamp,
    policy: &RetryPolicy,
) -> bool {
    let mut changed = record.recover_expired_lease(now, policy.unknown_wait);
    if !matches!(
        record.status,
        DeliveryStatus::Queued | DeliveryStatus::RetryScheduled
    ) {
        return changed;
    }
    let spent = record.attempts_in_budget() >= policy.max_attempts(record.retry.as_ref());
    let too_old = now
        > record
            .budget_started()
            .plus(policy.max_age(record.retry.as_ref()));
    if spent || too_old {
        let (code, message) = if spent {
            ("attempts_exhausted", "every attempt allowed was made")
        } else {
            ("max_age_exceeded", "the message outlived its maximum age")
        };
        tracing::warn!(id = %record.id, code, "message given up");
        changed |= record.give_up(DeliveryError::carteiro(code, message), now);
    }
    changed
}

async fn enqueue_when_due(
    ctx: &DispatchContext,
    job: &DispatchJob,
    at: Timestamp,
) -> Result<(), QueueError> {
    let job = job.clone().for_retry_at(at);
    enqueue_for(
        ctx.outbound.as_ref(),
        &job,
        at,
        ctx.clock.now(),
        ctx.settings.queue_max_delay,
    )
    .await
}

/// Puts the job for an attempt due `at` on the queue, delayed until then, when that is within
/// `max_delay`; a later one waits in the store for the sweeper.
pub async fn enqueue_for(
    outbound: &dyn Queue,
    job: &DispatchJob,
    at: Timestamp,
    now: Timestamp,
    max_delay: Duration,
) -> Result<(), QueueError> {
    let wait = Duration::from_millis(u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0));
    if wait <= max_delay {
        enqueue(outbound, job, wait).await?;
    }
    Ok(())
}

/// Puts a dispatch job on the outbound queue after `wait`.
pub async fn enqueue(
    outbound: &dyn Queue,
    job: &DispatchJob,
    wait: Duration,
) -> Result<(), QueueError> {
    // Queue delays are whole seconds; rounding down would deliver the job before it is due.
    let wait = Duration::from_secs(crate::domain::time::whole_secs_up(wait));
    let body = serde_json::to_string(job).map_err(|e| QueueError::Unavailable(e.to_string()))?;
    let mut message = OutgoingMessage::new(body).with_delay(wait);
    if let Some(c) = &job.correlation_id {
        message = message.with_attribute(ATTR_CORRELATION_ID, c.clone());
    }
    outbound.send_batch(&[message]).await
}

/// Turns a provider outcome into the attempt log entry and the record's next state.
fn judge(
    policy: &RetryPolicy,
    record: &DeliveryRecord,
    number: u32,
    started_at: Timestamp,
    latency_ms: u64,
    outcome: SendOutcome,
    now: Timestamp,
) -> (Attempt, AttemptResult) {
    match outcome {
        SendOutcome::Accepted {
            provider_message_id,
            message_status,
            response,
        } => (
            Attempt {
                number,
                started_at,
                outcome: "accepted".to_owned(),
                provider_code: None,
                provider_status: message_status.clone(),
                latency_ms,
                details: response,
                settled: None,
            },
            AttemptResult::Accepted {
                provider_message_id,
                provider_status: message_status,
            },
        ),
        SendOutcome::Failed(failure) => {
            let attempt = Attempt {
                number,
                started_at,
                outcome: failure.class.as_str().to_owned(),
                provider_code: Some(failure.error.code.clone()),
                provider_status: None,
                latency_ms,
                details: failure.error.details.clone(),
                settled: None,
            };
            let failed = number.saturating_sub(record.budget_start);
            // Meta's 4^X s after the X-th pair refusal in a row of this message.
            let retry_after = if failure.class == FailureClass::PairLimited {
                // The record does not hold this attempt yet.
                let wait =
                    RetryPolicy::pair_wait(record.pair_refusals_in_a_row().saturating_add(1));
                Some(failure.retry_after.map_or(wait, |asked| asked.max(wait)))
            } else {
                failure.retry_after
            };
            let next = policy.next_attempt_at(
                failed,
                failure.class,
                retry_after,
                record.retry.as_ref(),
                record.budget_started(),
                now,
                &mut rand::rng(),
            );
            let result = match (failure.class, next) {
                (FailureClass::Permanent, _) => AttemptResult::Failed {
                    error: failure.error,
                },
                (_, Some(at)) => AttemptResult::Retry {
                    at,
                    error: failure.error,
                },
                (_, None) => {
                    tracing::warn!(attempts = number, "retries exhausted; message given up");
                    AttemptResult::Dead {
                        error: failure.error,
                    }
                }
            };
            (attempt, result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claimers_join_the_shard_gate_with_the_fewest_waiting() {
        let gates = SenderGates::default();
        let wait = Duration::from_millis(50);
        // Four shards, one claimer at each: each holds its gate.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(gates.join(4, wait).await);
        }
        let mut shards: Vec<u32> = held.iter().flatten().map(|(s, _)| *s).collect();
        shards.sort_unstable();
        assert_eq!(shards, [0, 1, 2, 3]);
        // A fifth waits behind a held gate and gives up after its wait, counted while it waits.
        assert!(gates.join(4, wait).await.is_none());
        assert_eq!(
            gates.waiting[..4]
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .sum::<usize>(),
            4
        );
        // Shard 2 let go: the next claimer goes there, not to a busy one.
        held.retain(|h| h.as_ref().is_some_and(|(s, _)| *s != 2));
        let next = gates.join(4, wait).await.map(|(s, _)| s);
        assert_eq!(next, Some(2));
        drop(held);
        assert!(gates.waiting.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }
}
