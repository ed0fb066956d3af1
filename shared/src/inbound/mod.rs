//! The inbound-event consumer: applies queued webhook events to the store.
//!
//! - A status advances the delivery record it belongs to (found by the Carteiro id echoed in
//!   `biz_opaque_callback_data`, else by wamid) through [`DeliveryRecord::apply_status`], with
//!   an optimistic, version-checked write retried on conflict.
//! - A status whose record cannot be found is kept as an orphan for
//!   [`reconcile_orphans`] to apply once the record knows its wamid.
//! - Messages and other field changes are stored once, with a TTL; a message also moves its
//!   contact's last-inbound time (the customer-service window).
//! - Each becomes an event for the app ([`AppEvent`]): `message.received`, `message.status`,
//!   `whatsapp.*`, published to the callback endpoints. Publishing is idempotent and happens
//!   even for a duplicate, so an event whose publishing failed is published on the retry.
//!
//! Every step is idempotent, so SQS's at-least-once delivery and Meta's duplicate webhooks
//! change nothing twice.

pub use crate::batch::QueuedEvent;
use crate::batch::process_concurrently;
use crate::callbacks::{EventPublisher, PublishError};
use crate::config::InboundSettings;
use crate::domain::app_event::AppEvent;
use crate::domain::contact::{ContactState, wa_id_key};
use crate::domain::delivery::{DeliveryRecord, StatusChange, StatusUpdate};
use crate::domain::events::InboundEvent;
use crate::domain::ids::{MessageId, Wamid};
use crate::domain::time::Timestamp;
use crate::domain::webhook::fields::FieldChange;
use crate::ports::clock::Clock;
use crate::ports::store::{
    DeliveryStore, InsertOutcome, KeptKind, KeptRecord, StateKind, StoreError,
};
use crate::ports::update::{Change, UpdateError, update_from, update_state};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tracing::Instrument;

/// How many events of one batch are processed at once.
const CONCURRENCY: usize = 10;

/// What the consumer needs. Built once per process.
#[derive(Debug, Clone)]
pub struct InboundContext {
    pub store: Arc<dyn DeliveryStore>,
    pub clock: Arc<dyn Clock>,
    pub settings: InboundSettings,
    /// Where events for the app go; `None` publishes nothing (tests of other concerns).
    pub events: Option<EventPublisher>,
    /// The outbound queue, for the fallback a `failed` status starts; `None` starts none.
    pub outbound: Option<Arc<dyn crate::ports::queue::Queue>>,
    /// Where the messaging-limit tier a webhook states is kept; `None` keeps none.
    pub limits: Option<Arc<dyn crate::ports::limits::LimitStore>>,
    /// Where `user_preferences` stop/resume marketing; `None` keeps no suppressions.
    pub suppressions: Option<Arc<dyn crate::ports::suppressions::SuppressionStore>>,
}

/// What processing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A delivery record moved or gained a history entry.
    StatusApplied,
    /// Nothing new: the status, message or event was already known.
    Duplicate,
    /// A status for a record not found (yet); kept for reconciliation.
    OrphanKept,
    /// A message or account event stored for the app.
    Stored,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The body is not an inbound event: a bug or a version mismatch between functions.
    /// Retrying will not help; the queue's redrive policy moves it to the dead-letter queue.
    #[error("the queue message is not an inbound event: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Fallback(#[from] crate::fallback::FallbackError),
}

/// Processes a batch concurrently and returns the message ids that failed.
pub async fn process_batch(ctx: &InboundContext, events: &[QueuedEvent]) -> Vec<String> {
    process_concurrently(events, CONCURRENCY, |event| {
        let span = tracing::info_span!(
            "inbound",
            queue_message_id = %event.message_id,
            correlation_id = event.correlation_id.as_deref().unwrap_or(""),
            wamid = tracing::field::Empty,
            message_id = tracing::field::Empty,
        );
        process(ctx, &event.body).instrument(span)
    })
    .await
}

/// Applies one queued event.
pub async fn process(ctx: &InboundContext, body: &str) -> Result<Outcome, ProcessError> {
    let event: InboundEvent =
        serde_json::from_str(body).map_err(|e| ProcessError::Malformed(e.to_string()))?;
    let now = ctx.clock.now();
    match &event {
        InboundEvent::Status { status, .. } => match status.to_update() {
            Ok(update) => apply_status(ctx, &event, &update, now).await,
            // No usable wamid: nothing to attach it to, but keep it.
            Err(_) => store_account_event(ctx, &event, now).await,
        },
        InboundEvent::Message {
            message,
            contact,
            phone_number_id,
        } => {
            let record = KeptRecord {
                kind: KeptKind::Message,
                key: message.id.clone(),
                sub_key: String::new(),
                received_at: now,
                expires_at: now.plus(ctx.settings.message_ttl),
                payload: to_value(&event)?,
                contact: wa_id_key(&message.from),
            };
            let outcome = stored(ctx.store.put_kept(&record).await?)?;
            let app_event =
                AppEvent::received(phone_number_id.as_deref(), contact.as_ref(), message, now);
            note_contact(ctx, &message.from, &app_event).await?;
            publish(ctx, &app_event, now).await?;
            Ok(outcome)
        }
        InboundEvent::Errors { .. } => store_account_event(ctx, &event, now).await,
        InboundEvent::Field {
            waba_id,
            time,
            change,
        } => {
            let outcome = store_account_event(ctx, &event, now).await?;
            if let (
                FieldChange::UserPreferences {
                    user_preferences, ..
                },
                Some(store),
            ) = (change, &ctx.suppressions)
            {
                for p in user_preferences {
                    let (Some(wa_id), Some(category), Some(value)) =
                        (&p.wa_id, &p.category, &p.value)
                    else {
                        continue;
                    };
                    let at = p.timestamp.map_or(now, Timestamp::from_secs);
                    crate::suppression::apply_preference(
                        store.as_ref(),
                        wa_id,
                        category,
                        value,
                        at,
                    )
                    .await?;
                }
            }
            note_tier(ctx, change, now).await;
            if let Some(app_event) = AppEvent::account(waba_id, *time, change, now) {
                publish(ctx, &app_event, now).await?;
            }
            Ok(outcome)
        }
    }
}

/// Keeps the messaging-limit tier a `phone_number_quality_update` or
/// `business_capability_update` states, for the quota count (best effort, logged).
async fn note_tier(ctx: &InboundContext, change: &FieldChange, now: Timestamp) {
    let Some(limits) = &ctx.limits else {
        return;
    };
    let value = match change {
        FieldChange::PhoneNumberQualityUpdate { .. } => serde_json::to_value(change)
            .ok()
            .and_then(|v| v.get("data").cloned()),
        FieldChange::Other { field, value } if field == "business_capability_update" => {
            Some(value.clone())
        }
        _ => None,
    };
    let Some(limit) = value
        .as_ref()
        .and_then(crate::resilience::quota::MessagingLimit::from_webhook)
    else {
        return;
    };
    match crate::resilience::quota::set_tier(limits.as_ref(), limit, now).await {
        Ok(()) => tracing::info!(?limit, "messaging-limit tier noted"),
        Err(e) => tracing::warn!(error = %e, "messaging-limit tier not kept"),
    }
}

async fn publish(
    ctx: &InboundContext,
    event: &AppEvent,
    now: Timestamp,
) -> Result<(), ProcessError> {
    if let Some(events) = &ctx.events {
        events.publish(event, None, now).await?;
    }
    Ok(())
}

/// Moves the contact's last-inbound time (and profile name) forward.
async fn note_contact(
    ctx: &InboundContext,
    wa_id: &str,
    event: &AppEvent,
) -> Result<(), ProcessError> {
    let Some(key) = wa_id_key(wa_id) else {
        return Ok(());
    };
    let name = event.data["profile_name"].as_str().map(str::to_owned);
    update_state(
        ctx.store.as_ref(),
        StateKind::Contact,
        &key,
        |c: &mut ContactState| {
            if c.note_inbound(event.timestamp, name.as_deref()) {
                Change::Write(())
            } else {
                Change::Keep(())
            }
        },
    )
    .await?;
    Ok(())
}

async fn store_account_event(
    ctx: &InboundContext,
    event: &InboundEvent,
    now: Timestamp,
) -> Result<Outcome, ProcessError> {
    let payload = to_value(event)?;
    // Identical events (Meta's retries) share a key, so they are stored once.
    let key = hex::encode(Sha256::digest(payload.to_string().as_bytes()));
    let record = KeptRecord {
        kind: KeptKind::AccountEvent,
        key,
        sub_key: String::new(),
        received_at: now,
        expires_at: now.plus(ctx.settings.message_ttl),
        payload,
        contact: None,
    };
    stored(ctx.store.put_kept(&record).await?)
}

fn stored(outcome: InsertOutcome) -> Result<Outcome, ProcessError> {
    Ok(match outcome {
        InsertOutcome::Inserted => Outcome::Stored,
        InsertOutcome::Duplicate => Outcome::Duplicate,
    })
}

fn to_value(event: &InboundEvent) -> Result<serde_json::Value, ProcessError> {
    serde_json::to_value(event).map_err(|e| ProcessError::Malformed(e.to_string()))
}

async fn apply_status(
    ctx: &InboundContext,
    event: &InboundEvent,
    update: &StatusUpdate,
    now: Timestamp,
) -> Result<Outcome, ProcessError> {
    tracing::Span::current().record("wamid", update.wamid.as_str());
    let Some(record) = find_record(ctx.store.as_ref(), update).await? else {
        let orphan = KeptRecord {
            kind: KeptKind::OrphanStatus,
            key: update.wamid.as_str().to_owned(),
            sub_key: update.status.as_str().to_owned(),
            received_at: now,
            expires_at: now.plus(ctx.settings.orphan_status_ttl),
            payload: to_value(event)?,
            contact: None,
        };
        tracing::info!(wamid = %update.wamid, status = update.status.as_str(), "status for an unknown message kept for reconciliation");
        return Ok(match ctx.store.put_kept(&orphan).await? {
            InsertOutcome::Inserted => Outcome::OrphanKept,
            InsertOutcome::Duplicate => Outcome::Duplicate,
        });
    };
    tracing::Span::current().record("message_id", record.id.as_str());
    let (record, change) = apply_updates(
        ctx.store.as_ref(),
        record,
        std::slice::from_ref(update),
        now,
    )
    .await?;
    publish_statuses(
        ctx.events.as_ref(),
        &record,
        std::slice::from_ref(update),
        now,
    )
    .await?;
    // Meta's `failed` ended the message: its fallback, if any, takes over (idempotent, so a
    // repeated webhook takes the step once).
    if let Some(outbound) = &ctx.outbound {
        crate::fallback::take_step(ctx.store.as_ref(), outbound.as_ref(), &record, now).await?;
    }
    Ok(match change {
        StatusChange::Applied => Outcome::StatusApplied,
        StatusChange::Duplicate => Outcome::Duplicate,
    })
}

/// The record a status belongs to: by the Carteiro id echoed back by Meta when present (a
/// strongly consistent read), else by wamid.
async fn find_record(
    store: &dyn DeliveryStore,
    update: &StatusUpdate,
) -> Result<Option<DeliveryRecord>, StoreError> {
    if let Some(id) = update
        .callback_data
        .as_deref()
        .and_then(|d| MessageId::parse(d).ok())
        && let Some(record) = store.get(&id).await?
    {
        let same_message = record
            .provider_message_id
            .as_deref()
            .is_none_or(|known| known == update.wamid.as_str());
        if same_message {
            return Ok(Some(record));
        }
    }
    store.find_by_wamid(&update.wamid).await
}

/// Publishes `message.status` for each of `updates` the record holds (again, for a
/// duplicate: publishing is idempotent, and the first try may have failed).
pub async fn publish_statuses(
    events: Option<&EventPublisher>,
    record: &DeliveryRecord,
    updates: &[StatusUpdate],
    now: Timestamp,
) -> Result<(), PublishError> {
    let Some(events) = events else {
        return Ok(());
    };
    for update in updates {
        if let Some(held) = record.events.iter().find(|e| e.status == update.status)
            && let Some(event) = AppEvent::status(record, held)
        {
            events
                .publish(&event, record.correlation_id.as_deref(), now)
                .await?;
        }
    }
    Ok(())
}

/// Applies updates to a record through the versioned-update helper.
async fn apply_updates(
    store: &dyn DeliveryStore,
    record: DeliveryRecord,
    updates: &[StatusUpdate],
    now: Timestamp,
) -> Result<(DeliveryRecord, StatusChange), ProcessError> {
    let updated = update_from(store, record, |r| {
        let mut change = StatusChange::Duplicate;
        for update in updates {
            if r.apply_status(update, now) == StatusChange::Applied {
                change = StatusChange::Applied;
            }
        }
        match change {
            StatusChange::Applied => Change::Write(change),
            StatusChange::Duplicate => Change::Keep(change),
        }
    })
    .await?;
    Ok((updated.record, updated.value))
}

/// Applies the statuses kept for `wamid` before its record knew it (the send's state write
/// lost the race with Meta's first webhook). Dispatch calls this after recording a wamid.
pub async fn reconcile_orphans(
    store: &dyn DeliveryStore,
    events: Option<&EventPublisher>,
    outbound: Option<&dyn crate::ports::queue::Queue>,
    id: &MessageId,
    wamid: &Wamid,
    now: Timestamp,
) -> Result<StatusChange, ProcessError> {
    let orphans = store
        .list_kept(KeptKind::OrphanStatus, wamid.as_str())
        .await?;
    let updates: Vec<StatusUpdate> = orphans
        .iter()
        .filter_map(
            |o| match serde_json::from_value::<InboundEvent>(o.payload.clone()) {
                Ok(InboundEvent::Status { status, .. }) => status.to_update().ok(),
                _ => None,
            },
        )
        .collect();
    if updates.is_empty() {
        return Ok(StatusChange::Duplicate);
    }
    let Some(record) = store.get(id).await? else {
        return Ok(StatusChange::Duplicate);
    };
    let (record, change) = apply_updates(store, record, &updates, now).await?;
    publish_statuses(events, &record, &updates, now).await?;
    // A `failed` that beat the send's own write ends the message all the same.
    if let Some(outbound) = outbound {
        crate::fallback::take_step(store, outbound, &record, now).await?;
    }
    Ok(change)
}
