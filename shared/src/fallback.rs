//! Fallbacks: when a delivery fails for good (a permanent refusal, retries spent, Meta's
//! `failed` status, a suppressed recipient, a circuit open past `fallback_after`) or a WhatsApp
//! message is not delivered within `if_not_delivered_within`, and its send body gave a
//! `fallback` chain, the next path is created as a
//! delivery of its own — another channel, another template — linked to the one it stands in
//! for, and queued. Its id is derived from the failed one's, so the step is taken once however
//! often the failure is seen (a redelivered job, a repeated webhook); a crash between creating
//! and queueing it leaves a `queued` record the sweeper queues, and a crash before the step
//! leaves the failed record in the sweeper's view until it is marked `fallback_taken`.

use crate::dispatch::enqueue;
use crate::domain::delivery::DeliveryRecord;
use crate::domain::job::DispatchJob;
use crate::domain::time::Timestamp;
use crate::ports::queue::{Queue, QueueError};
use crate::ports::store::{CreateOutcome, DeliveryStore, StoreError};
use crate::ports::update::{Change, UpdateError, update_record};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Update(#[from] UpdateError),
}

/// Takes `record`'s next fallback step if it failed for good and has one. Returns the new
/// delivery when this call created it.
pub async fn take_step(
    store: &dyn DeliveryStore,
    outbound: &dyn Queue,
    record: &DeliveryRecord,
    now: Timestamp,
) -> Result<Option<DeliveryRecord>, FallbackError> {
    if !record.fallback_due() {
        return Ok(None);
    }
    let Some(next) = record.fallback_delivery(now) else {
        return Ok(None);
    };
    let created = store.create(&next).await? == CreateOutcome::Created;
    if created {
        enqueue(
            outbound,
            &DispatchJob::new(next.id.clone(), next.correlation_id.clone()),
            Duration::ZERO,
        )
        .await?;
        tracing::info!(failed = %record.id, fallback = %next.id, channel = ?next.channel, "fallback step taken");
    }
    if !record.fallback_taken {
        // Out of the sweeper's view from now on (a step created but not queued is a `queued`
        // record, which the sweeper queues).
        update_record(store, &record.id, |r| {
            if r.fallback_taken {
                Change::Keep(())
            } else {
                r.fallback_taken = true;
                Change::Write(())
            }
        })
        .await?;
    }
    Ok(created.then_some(next))
}

/// The chain that starts at `record`: it and every fallback after it, in order.
pub async fn chain(
    store: &dyn DeliveryStore,
    record: &DeliveryRecord,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut out = vec![record.clone()];
    let mut id = crate::domain::delivery::fallback_id(&record.id);
    // A chain is at most as long as the send body allowed, plus the first path.
    for _ in 0..crate::domain::message::limits::FALLBACKS {
        let Some(next) = store.get(&id).await? else {
            break;
        };
        id = crate::domain::delivery::fallback_id(&next.id);
        out.push(next);
    }
    Ok(out)
}
