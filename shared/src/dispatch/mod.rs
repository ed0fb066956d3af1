//! Dispatch: takes jobs off the outbound queue and delivers each message once.
//!
//! For every job: claim the record with a version-checked `queued|retry_scheduled → sending`
//! (so a duplicated or redelivered queue message cannot call a provider twice), call the
//! provider, and write the outcome — `sent`, `retry_scheduled` with a next attempt time from
//! the [`RetrySchedule`], `failed`, or `dead`. Provider failures become state; only
//! infrastructure faults (store or queue unreachable) fail the queue message.

pub mod email;

use crate::batch::{QueuedEvent, process_concurrently};
use crate::config::{ConfigError, Env};
use crate::domain::delivery::{
    Attempt, AttemptResult, ClaimRefused, DeliveryError, DeliveryRecord,
};
use crate::domain::message::{OutboundMessage, SendRequest};
use crate::domain::time::Timestamp;
use crate::inbound::reconcile_orphans;
use crate::ports::clock::Clock;
use crate::ports::queue::{MAX_DELAY, OutgoingMessage, Queue, QueueError};
use crate::ports::store::{DeliveryStore, ReplaceOutcome, StoreError};
use crate::providers::email::EmailSender;
use crate::providers::whatsapp::{WhatsAppSender, send_with_token_refresh};
use crate::providers::{FailureClass, SendFailure, SendOutcome};
use crate::resilience::RetrySchedule;
use crate::secrets::Secrets;
use crate::send_api::DispatchJob;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Optimistic writes that lose this many races in a row give up; the queue retries later.
const MAX_WRITE_RACES: usize = 8;

/// Dispatch settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchSettings {
    /// How long a claim is exclusive (`CARTEIRO_DISPATCH_LEASE_SECS`, default 60): longer than
    /// any provider call, shorter than the queue's visibility timeout.
    pub lease: Duration,
    /// Messages of one batch sent at once (`CARTEIRO_DISPATCH_CONCURRENCY`, default 10).
    pub concurrency: usize,
    pub schedule: RetrySchedule,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            concurrency: 10,
            schedule: RetrySchedule::default(),
        }
    }
}

impl DispatchSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            lease: Duration::from_secs(env.number_or("CARTEIRO_DISPATCH_LEASE_SECS", 60)?),
            concurrency: usize::try_from(env.number_or("CARTEIRO_DISPATCH_CONCURRENCY", 10)?)
                .unwrap_or(10),
            schedule: RetrySchedule::default(),
        })
    }
}

/// What dispatch needs. Built once per process.
#[derive(Debug, Clone)]
pub struct DispatchContext {
    pub store: Arc<dyn DeliveryStore>,
    pub outbound: Arc<dyn Queue>,
    pub secrets: Secrets,
    pub whatsapp: Arc<dyn WhatsAppSender>,
    pub email: Arc<dyn EmailSender>,
    pub clock: Arc<dyn Clock>,
    pub settings: DispatchSettings,
}

/// What one job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The provider was called; the record now says how it went.
    Attempted(AttemptResult),
    /// Nothing to do: the record is gone, finished, or another worker holds it.
    Skipped(&'static str),
    /// A retry is not due yet; the job went back on the queue with the remaining delay.
    Deferred,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the queue message is not a dispatch job: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("lost {MAX_WRITE_RACES} write races in a row on {0}")]
    Contended(String),
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
    let Some((record, attempt_number)) = claim(ctx, &job).await? else {
        return Ok(Dispatched::Skipped("not claimable"));
    };
    let started_at = ctx.clock.now();
    let started = Instant::now();
    let outcome = send(ctx, &record).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (attempt, result) = judge(
        ctx,
        &record,
        attempt_number,
        started_at,
        latency_ms,
        outcome,
    );
    let record = finish(ctx, record, attempt, result.clone()).await?;
    match &result {
        AttemptResult::Retry { at, .. } => {
            let wait = Duration::from_millis(
                u64::try_from(at.as_millis() - ctx.clock.now().as_millis()).unwrap_or(0),
            );
            // Longer waits stay in the store with their `next_attempt_at` for the sweeper.
            if wait <= MAX_DELAY {
                requeue(ctx, &job, wait).await?;
            }
        }
        AttemptResult::Accepted {
            provider_message_id,
            ..
        } => {
            if let Ok(wamid) = crate::domain::ids::Wamid::parse(provider_message_id) {
                // Statuses that beat this write were kept as orphans; apply them now.
                if let Err(e) =
                    reconcile_orphans(ctx.store.as_ref(), &record.id, &wamid, ctx.clock.now()).await
                {
                    tracing::warn!(id = %record.id, error = %e, "orphan statuses not reconciled yet");
                }
            }
        }
        AttemptResult::Failed { .. } | AttemptResult::Dead { .. } => {}
    }
    tracing::info!(id = %record.id, status = record.status.as_str(), attempt = attempt_number, latency_ms, "dispatch attempt finished");
    Ok(Dispatched::Attempted(result))
}

/// Claims the record for one attempt; `None` when there is nothing to send now.
async fn claim(
    ctx: &DispatchContext,
    job: &DispatchJob,
) -> Result<Option<(DeliveryRecord, u32)>, DispatchError> {
    for _ in 0..MAX_WRITE_RACES {
        let Some(mut record) = ctx.store.get(&job.id).await? else {
            tracing::warn!(id = %job.id, "dispatch job for an unknown record dropped");
            return Ok(None);
        };
        let read_version = record.version;
        let now = ctx.clock.now();
        match record.claim(now, ctx.settings.lease) {
            Ok(attempt) => match ctx.store.replace(&record, read_version).await? {
                ReplaceOutcome::Replaced => return Ok(Some((record, attempt))),
                ReplaceOutcome::Conflict => continue,
            },
            Err(ClaimRefused::NotDue { next_attempt_at }) => {
                let wait = Duration::from_millis(
                    u64::try_from(next_attempt_at.as_millis() - now.as_millis()).unwrap_or(0),
                );
                if wait <= MAX_DELAY {
                    requeue(ctx, job, wait).await?;
                }
                return Ok(None);
            }
            Err(refused) => {
                tracing::debug!(id = %job.id, ?refused, "record not claimable; job dropped");
                return Ok(None);
            }
        }
    }
    Err(DispatchError::Contended(job.id.to_string()))
}

async fn requeue(
    ctx: &DispatchContext,
    job: &DispatchJob,
    wait: Duration,
) -> Result<(), QueueError> {
    // SQS delays are whole seconds; rounding down would deliver the job before it is due.
    let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
    let body = serde_json::to_string(job).map_err(|e| QueueError::Unavailable(e.to_string()))?;
    ctx.outbound
        .send_batch(&[OutgoingMessage::new(body).with_delay(wait)])
        .await
}

/// Calls the provider for the record's message.
async fn send(ctx: &DispatchContext, record: &DeliveryRecord) -> SendOutcome {
    let request = match SendRequest::parse(&record.request) {
        Ok(r) => r,
        Err(e) => {
            // Validated at accept time; only a record written by hand gets here.
            return SendOutcome::Failed(SendFailure {
                class: FailureClass::Permanent,
                error: carteiro_error("invalid_request", e.to_string()),
                retry_after: None,
            });
        }
    };
    match &request.message {
        OutboundMessage::Whatsapp(message) => {
            let body = message.graph_body(record.id.as_str());
            send_with_token_refresh(ctx.whatsapp.as_ref(), &ctx.secrets, &body).await
        }
        OutboundMessage::Email(message) => ctx.email.send(message).await,
    }
}

fn carteiro_error(code: &str, message: impl Into<String>) -> DeliveryError {
    DeliveryError {
        source: "carteiro".to_owned(),
        code: code.to_owned(),
        message: message.into(),
        details: None,
    }
}

/// Turns a provider outcome into the attempt log entry and the record's next state.
fn judge(
    ctx: &DispatchContext,
    record: &DeliveryRecord,
    number: u32,
    started_at: Timestamp,
    latency_ms: u64,
    outcome: SendOutcome,
) -> (Attempt, AttemptResult) {
    match outcome {
        SendOutcome::Accepted {
            provider_message_id,
            message_status,
        } => (
            Attempt {
                number,
                started_at,
                outcome: "accepted".to_owned(),
                provider_code: None,
                provider_status: message_status.clone(),
                latency_ms,
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
            };
            let delay = ctx.settings.schedule.next_delay(
                number,
                failure.class,
                failure.retry_after,
                &mut rand::rng(),
            );
            let result = match (failure.class, delay) {
                (FailureClass::Permanent, _) => AttemptResult::Failed {
                    error: failure.error,
                },
                (_, Some(wait)) => AttemptResult::Retry {
                    at: ctx.clock.now().plus(wait),
                    error: failure.error,
                },
                (_, None) => {
                    tracing::warn!(id = %record.id, attempts = number, "retries exhausted; message given up");
                    AttemptResult::Dead {
                        error: failure.error,
                    }
                }
            };
            (attempt, result)
        }
    }
}

/// Writes the attempt's outcome, re-applying it to a fresher record if a status webhook wrote
/// in between.
async fn finish(
    ctx: &DispatchContext,
    mut record: DeliveryRecord,
    attempt: Attempt,
    result: AttemptResult,
) -> Result<DeliveryRecord, DispatchError> {
    for _ in 0..MAX_WRITE_RACES {
        let read_version = record.version;
        record.finish_attempt(attempt.clone(), result.clone(), ctx.clock.now());
        match ctx.store.replace(&record, read_version).await? {
            ReplaceOutcome::Replaced => return Ok(record),
            ReplaceOutcome::Conflict => match ctx.store.get(&record.id).await? {
                Some(fresh) => record = fresh,
                None => return Err(DispatchError::Contended(record.id.to_string())),
            },
        }
    }
    Err(DispatchError::Contended(record.id.to_string()))
}
