//! The retry sweeper: what nothing else would pick up. Run every `CARTEIRO_SWEEP_INTERVAL`
//! (EventBridge Scheduler on AWS, a timer in the local runtime), it reads the records with
//! work pending from the sparse `by-due` index and, through the one versioned-update helper:
//!
//! - queues again a `retry_scheduled` record that is due and overdue by a sweep interval
//!   (its retry was too far out for the queue's delay, or its job was lost);
//! - turns a `sending` record whose lease expired (its worker died mid-call) into a scheduled
//!   retry after the reconciliation window — the attempt's outcome is unknown, and a status
//!   webhook arriving meanwhile settles it as sent;
//! - queues again a `queued` record older than a grace period (its job never reached the
//!   queue: the send API answered 503);
//! - marks `dead` a record that has spent its attempts or outlived its maximum age;
//! - takes the fallback of a `sent` WhatsApp message not `delivered` within its
//!   `if_not_delivered_within`, and of a failed record whose worker died before taking it.
//!
//! It stops before the deadline it is given and leaves the rest to the next run. Sweeps may
//! overlap: they only queue jobs, and the dispatch claim lets one attempt through per record.

use crate::config::{DispatchSettings, SweepSettings};
use crate::dispatch::{enqueue, enqueue_for, recover_or_give_up};
use crate::domain::delivery::{DeliveryRecord, DeliveryStatus, NOT_DELIVERED_IN_TIME};
use crate::domain::job::DispatchJob;
use crate::ports::clock::Clock;
use crate::ports::queue::{Queue, QueueError};
use crate::ports::store::{DeliveryStore, DueRecord, StoreError};
use crate::ports::update::{Change, UpdateError, update_record};
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handled at once.
const CONCURRENCY: usize = 16;

/// What the sweeper needs. Built once per process.
#[derive(Debug, Clone)]
pub struct SweepContext {
    pub store: Arc<dyn DeliveryStore>,
    pub outbound: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub dispatch: DispatchSettings,
    pub settings: SweepSettings,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Due records looked at.
    pub examined: usize,
    /// Jobs queued for records that were due (retries, and `queued` records past the grace).
    pub requeued: usize,
    /// Expired leases turned into scheduled retries.
    pub recovered: usize,
    /// Records given up.
    pub dead: usize,
    /// Fallbacks taken: of WhatsApp messages not delivered in time, and of failed records
    /// whose worker died before taking them.
    pub fallbacks: usize,
    /// The sweep stopped at its deadline with records left for the next run.
    pub stopped_at_deadline: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Fallback(#[from] crate::fallback::FallbackError),
}

enum Action {
    Nothing,
    Enqueue,
    Recovered,
    Dead,
    Fallback,
}

/// Sweeps once, stopping before `deadline`.
#[tracing::instrument(skip_all, name = "sweep")]
pub async fn sweep(ctx: &SweepContext, deadline: Instant) -> Result<SweepReport, SweepError> {
    let now = ctx.clock.now();
    let due = ctx.store.list_due(now, ctx.settings.batch_limit).await?;
    let mut report = SweepReport::default();
    let mut results = futures::stream::iter(due.into_iter().map(|d| async move {
        if Instant::now() >= deadline {
            return Ok(None);
        }
        sweep_one(ctx, &d).await.map(Some)
    }))
    .buffer_unordered(CONCURRENCY);
    let mut first_error = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(None) => report.stopped_at_deadline = true,
            Ok(Some(action)) => {
                report.examined += 1;
                match action {
                    Action::Nothing => {}
                    Action::Enqueue => report.requeued += 1,
                    Action::Recovered => report.recovered += 1,
                    Action::Dead => report.dead += 1,
                    Action::Fallback => report.fallbacks += 1,
                }
            }
            // One record's fault does not stop the others; the next sweep sees it again.
            Err(e) => {
                tracing::error!(error = %e, "sweeping a record failed");
                first_error.get_or_insert(e);
            }
        }
    }
    if report.examined == 0
        && let Some(e) = first_error
    {
        return Err(e);
    }
    tracing::info!(
        examined = report.examined,
        requeued = report.requeued,
        recovered = report.recovered,
        dead = report.dead,
        fallbacks = report.fallbacks,
        stopped_at_deadline = report.stopped_at_deadline,
        "sweep finished"
    );
    Ok(report)
}

async fn sweep_one(ctx: &SweepContext, due: &DueRecord) -> Result<Action, SweepError> {
    let now = ctx.clock.now();
    let grace = ctx.settings.queued_grace;
    let overdue = ctx.settings.interval;
    let Some(updated) = update_record(ctx.store.as_ref(), &due.id, |r| {
        if recover_or_give_up(r, now, ctx.dispatch.retry_for(r.channel)) {
            return Change::Write(if r.status == DeliveryStatus::Dead {
                Action::Dead
            } else {
                Action::Recovered
            });
        }
        if r.status == DeliveryStatus::Sent && r.delivery_deadline().is_some_and(|at| at <= now) {
            r.fallback_reason = Some(NOT_DELIVERED_IN_TIME.to_owned());
            r.updated_at = now;
            return Change::Write(Action::Fallback);
        }
        if r.fallback_pending() && r.sweep_due_at().is_some_and(|at| at <= now) {
            // Its worker died between writing the failure and taking the step.
            return Change::Keep(Action::Fallback);
        }
        if waiting_too_long(r, now, grace, overdue) {
            // Noted on the record, so the next sweeps wait another grace or interval before
            // queueing a job again: a record stuck behind a long backlog gets one extra job
            // per period, not one per sweep.
            r.updated_at = now;
            Change::Write(Action::Enqueue)
        } else {
            Change::Keep(Action::Nothing)
        }
    })
    .await?
    else {
        return Ok(Action::Nothing);
    };
    let record = &updated.record;
    let job = DispatchJob::new(record.id.clone(), record.correlation_id.clone());
    match updated.value {
        Action::Enqueue => match (record.status, record.next_attempt_at) {
            (DeliveryStatus::RetryScheduled, Some(at)) => {
                enqueue(ctx.outbound.as_ref(), &job.for_retry_at(at), Duration::ZERO).await?;
            }
            _ => enqueue(ctx.outbound.as_ref(), &job, Duration::ZERO).await?,
        },
        Action::Recovered => {
            if let Some(at) = record.next_attempt_at {
                let job = job.for_retry_at(at);
                enqueue_for(
                    ctx.outbound.as_ref(),
                    &job,
                    at,
                    now,
                    ctx.dispatch.queue_max_delay,
                )
                .await?;
            }
        }
        // Dispatch publishes a given-up record's `message.dead` when its job finds it so.
        Action::Dead => enqueue(ctx.outbound.as_ref(), &job, Duration::ZERO).await?,
        Action::Fallback => {
            tracing::info!(id = %record.id, reason = ?record.fallback_reason, "taking the fallback");
            crate::fallback::take_step(ctx.store.as_ref(), ctx.outbound.as_ref(), record, now)
                .await?;
        }
        Action::Nothing => {}
    }
    Ok(updated.value)
}

/// A `queued` record past the grace period, or a scheduled retry overdue by a sweep interval
/// (and not queued again by a sweep within the last interval): its job is not coming.
fn waiting_too_long(
    r: &DeliveryRecord,
    now: crate::domain::time::Timestamp,
    grace: Duration,
    overdue: Duration,
) -> bool {
    match r.status {
        DeliveryStatus::Queued => r.updated_at.plus(grace) <= now,
        DeliveryStatus::RetryScheduled => {
            r.next_attempt_at.is_some_and(|at| at.plus(overdue) <= now)
                && r.updated_at.plus(overdue) <= now
        }
        _ => false,
    }
}
