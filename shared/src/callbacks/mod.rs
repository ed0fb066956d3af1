//! Callbacks to the app: every event ([`AppEvent`]) becomes one delivery per subscribed
//! endpoint, on the channel `webhook`, through the same engine as WhatsApp and email — claim,
//! retry schedule, sweeper, dead letter, attempt log. The sender itself (Standard Webhooks
//! signing, SSRF checks, what each answer means) is the webhook provider.
//!
//! [`EventPublisher::publish`] keeps the event (for `GET /v1/events/{id}` and replay) and
//! creates its deliveries with ids derived from the event and endpoint ids, so publishing the
//! same event twice creates nothing new and queues nothing twice.

pub mod endpoints;
pub mod signing;

use crate::config::CallbackSettings;
use crate::dispatch::enqueue;
use crate::domain::app_event::{AppEvent, EventId};
use crate::domain::delivery::{Channel, DeliveryRecord};
use crate::domain::ids::MessageId;
use crate::domain::job::DispatchJob;
use crate::domain::payload::DeliveryPayload;
use crate::domain::time::Timestamp;
use crate::ports::queue::{Queue, QueueError};
use crate::ports::secrets::SecretError;
use crate::ports::store::{
    CreateOutcome, DeliveryStore, KeptKind, KeptRecord, StateKind, StoreError,
};
use crate::ports::update::{Change, UpdateError, update_state};
use crate::secrets::Secrets;
use endpoints::CallbackEndpoint;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Publishes events to the app's endpoints. Built once per process.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    pub store: Arc<dyn DeliveryStore>,
    pub outbound: Arc<dyn Queue>,
    pub secrets: Secrets,
    pub settings: CallbackSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the callbacks secret cannot be read: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// An event as kept: the event and the delivery made for each endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEvent {
    pub event: AppEvent,
    pub deliveries: Vec<EventDelivery>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDelivery {
    pub endpoint_id: String,
    pub delivery_id: MessageId,
}

/// The last two deliveries queued for one (endpoint, contact) of an ordered endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderingHead {
    last: Option<MessageId>,
    before_last: Option<MessageId>,
}

/// The delivery of `event` to `endpoint_id`.
pub fn delivery_id(event: &EventId, endpoint_id: &str) -> MessageId {
    MessageId::derived(&["callback", event.as_str(), endpoint_id])
}

impl EventPublisher {
    /// The endpoints of the `callbacks` secret; none when it is not configured.
    pub async fn endpoints(&self) -> Result<Vec<CallbackEndpoint>, SecretError> {
        endpoints::configured(&self.secrets).await
    }

    /// Keeps `event` and queues a callback to every endpoint that takes its type. Returns
    /// how many deliveries this call created (0 when all existed already).
    pub async fn publish(
        &self,
        event: &AppEvent,
        correlation_id: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, PublishError> {
        let subscribed: Vec<CallbackEndpoint> = self
            .endpoints()
            .await?
            .into_iter()
            .filter(|e| e.wants(event.event_type))
            .collect();
        if subscribed.is_empty() {
            return Ok(0);
        }
        let kept = KeptEvent {
            event: event.clone(),
            deliveries: subscribed
                .iter()
                .map(|e| EventDelivery {
                    endpoint_id: e.id.clone(),
                    delivery_id: delivery_id(&event.id, &e.id),
                })
                .collect(),
        };
        let record = KeptRecord {
            kind: KeptKind::Event,
            key: event.id.as_str().to_owned(),
            sub_key: String::new(),
            received_at: now,
            expires_at: now.plus(self.settings.event_ttl),
            payload: serde_json::to_value(&kept)
                .map_err(|e| StoreError::Unavailable(format!("event: {e}")))?,
            contact: None,
        };
        self.store.put_kept(&record).await?;
        let body = event.envelope();
        let mut created = 0;
        for endpoint in &subscribed {
            let id = delivery_id(&event.id, &endpoint.id);
            let mut delivery = DeliveryRecord::new_queued(
                id.clone(),
                Channel::Webhook,
                endpoint.id.clone(),
                serde_json::Value::Null,
                now,
            );
            delivery.payload = Some(DeliveryPayload::WebhookV1 {
                endpoint_id: endpoint.id.clone(),
                event_id: event.id.clone(),
                event_type: event.event_type,
                body: body.clone(),
            });
            delivery.correlation_id = correlation_id.map(str::to_owned);
            if endpoint.ordered
                && let Some(contact) = &event.conversation
            {
                delivery.after = self.chain(&endpoint.id, contact, &id).await?;
            }
            if self.store.create(&delivery).await? == CreateOutcome::Created {
                created += 1;
                let job = DispatchJob::new(id, delivery.correlation_id.clone());
                enqueue(self.outbound.as_ref(), &job, Duration::ZERO).await?;
            }
        }
        tracing::debug!(event = %event.id, r#type = event.event_type.as_str(), created, "event published");
        Ok(created)
    }

    /// Puts `id` at the end of the ordered chain of (`endpoint`, `contact`); returns the
    /// delivery it must wait for. Publishing the same delivery again returns the same answer.
    async fn chain(
        &self,
        endpoint: &str,
        contact: &str,
        id: &MessageId,
    ) -> Result<Option<MessageId>, UpdateError> {
        let key = format!("{endpoint}:{contact}");
        let (_, after) = update_state(
            self.store.as_ref(),
            StateKind::Ordering,
            &key,
            |head: &mut OrderingHead| {
                if head.last.as_ref() == Some(id) {
                    return Change::Keep(head.before_last.clone());
                }
                head.before_last = head.last.replace(id.clone());
                Change::Write(head.before_last.clone())
            },
        )
        .await?;
        Ok(after)
    }

    /// Publishes, logging instead of failing: for callers whose own work is done and written
    /// (a status applied, a message stored) and must not be redone because a callback could
    /// not be queued. The sweeper queues a delivery whose job was lost.
    pub async fn publish_logged(
        &self,
        event: &AppEvent,
        correlation_id: Option<&str>,
        now: Timestamp,
    ) {
        if let Err(e) = self.publish(event, correlation_id, now).await {
            tracing::error!(error = %e, event = %event.id, r#type = event.event_type.as_str(), "event not published");
        }
    }
}

/// Reads a kept event.
pub async fn kept_event(
    store: &dyn DeliveryStore,
    id: &EventId,
) -> Result<Option<KeptEvent>, StoreError> {
    let kept = store.list_kept(KeptKind::Event, id.as_str()).await?;
    kept.into_iter()
        .next()
        .map(|r| {
            serde_json::from_value(r.payload)
                .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))
        })
        .transpose()
}

/// One delivery of a replayed event: the record as it is now (`None`: it is gone), and
/// whether this replay queued it again (a delivery still in progress is left alone).
#[derive(Debug, Clone)]
pub struct Replayed {
    pub delivery: EventDelivery,
    pub record: Option<DeliveryRecord>,
    pub queued: bool,
}

/// Sends a kept event again to each of its endpoints: every finished delivery is queued anew
/// with a fresh attempt budget (the same `webhook-id`). `None` when there is no such event.
pub async fn replay(
    store: &dyn DeliveryStore,
    outbound: &dyn Queue,
    id: &EventId,
    now: Timestamp,
) -> Result<Option<(KeptEvent, Vec<Replayed>)>, PublishError> {
    let Some(kept) = kept_event(store, id).await? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(kept.deliveries.len());
    for d in &kept.deliveries {
        let updated =
            crate::ports::update::update_record(store, &d.delivery_id, |r| match r.replay(now) {
                Ok(()) => Change::Write(true),
                Err(_) => Change::Keep(false),
            })
            .await?;
        let Some(updated) = updated else {
            out.push(Replayed {
                delivery: d.clone(),
                record: None,
                queued: false,
            });
            continue;
        };
        if updated.value {
            let job = DispatchJob::new(
                updated.record.id.clone(),
                updated.record.correlation_id.clone(),
            );
            enqueue(outbound, &job, Duration::ZERO).await?;
        }
        out.push(Replayed {
            delivery: d.clone(),
            record: Some(updated.record),
            queued: updated.value,
        });
    }
    tracing::info!(event = %id, "event replayed");
    Ok(Some((kept, out)))
}
