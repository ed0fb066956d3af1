//! Suppression at work: which recipients of a payload are suppressed, and what a failure or a
//! preference webhook teaches. The rules live in [`crate::domain::suppression`]; this module
//! reads and writes them through the [`SuppressionStore`] port for the send API (refuse at
//! acceptance), dispatch (refuse before an attempt, learn from a refusal) and inbound
//! processing (`user_preferences`).

use crate::domain::delivery::{DeliveryError, DeliveryRecord};
use crate::domain::payload::DeliveryPayload;
use crate::domain::suppression::{
    SuppressedChannel, Suppression, SuppressionScope, smtp_unknown_address,
};
use crate::domain::time::Timestamp;
use crate::ports::store::StoreError;
use crate::ports::suppressions::SuppressionStore;
use std::time::Duration;

/// The error code of a message refused because a recipient is suppressed.
pub const CODE: &str = "recipient_suppressed";

/// Meta's code for a user who stopped marketing messages.
const META_STOPPED_MARKETING: &str = "131050";

/// The first suppression that holds back `payload`, if any: the WhatsApp recipient of a
/// marketing template (or of anything, for a suppression of all messages), any email address.
pub async fn check(
    store: &dyn SuppressionStore,
    payload: &DeliveryPayload,
) -> Result<Option<Suppression>, StoreError> {
    let (channel, addresses, marketing): (_, Vec<&str>, _) = match payload {
        // Only marketing is ever suppressed on WhatsApp: nothing to look up for the rest.
        DeliveryPayload::WhatsappGraphV1 {
            marketing: false, ..
        } => return Ok(None),
        DeliveryPayload::WhatsappGraphV1 { .. } => (
            SuppressedChannel::Whatsapp,
            payload.whatsapp_recipient().into_iter().collect(),
            true,
        ),
        DeliveryPayload::EmailV1 { email } => (
            SuppressedChannel::Email,
            email
                .to
                .iter()
                .chain(&email.cc)
                .chain(&email.bcc)
                .map(String::as_str)
                .collect(),
            false,
        ),
        DeliveryPayload::WebhookV1 { .. } => return Ok(None),
    };
    for address in addresses {
        let address = channel.normalise(address);
        if let Some(s) = store.get_suppression(channel, &address).await?
            && s.covers(marketing)
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// The error a message held back by `s` ends with.
pub fn refusal(s: &Suppression) -> DeliveryError {
    DeliveryError::carteiro(
        CODE,
        format!(
            "{} {} is suppressed ({}); see GET /v1/suppressions",
            s.channel.as_str(),
            s.address,
            s.reason
        ),
    )
}

/// What a permanent refusal of `record` teaches: Meta's 131050 suppresses the user's
/// marketing; an SMTP `5.1.x` suppresses the unknown address for `email_for`.
pub fn learned(
    record: &DeliveryRecord,
    error: &DeliveryError,
    now: Timestamp,
    email_for: Duration,
) -> Option<Suppression> {
    let payload = record.payload.as_ref()?;
    match payload {
        DeliveryPayload::WhatsappGraphV1 { .. } if error.code == META_STOPPED_MARKETING => {
            Some(Suppression {
                channel: SuppressedChannel::Whatsapp,
                address: SuppressedChannel::Whatsapp.normalise(payload.whatsapp_recipient()?),
                scope: SuppressionScope::Marketing,
                reason: META_STOPPED_MARKETING.to_owned(),
                since: now,
                until: None,
                message_id: Some(record.id.clone()),
            })
        }
        DeliveryPayload::EmailV1 { email } => {
            let details = error.details.as_deref().unwrap_or("");
            let reason =
                smtp_unknown_address(&error.code, &format!("{details} {}", error.message))?;
            let refused = details
                .split_whitespace()
                .find_map(|w| w.strip_prefix(crate::domain::suppression::RCPT_PREFIX));
            let all: Vec<&String> = email.to.iter().chain(&email.cc).chain(&email.bcc).collect();
            // Without the refused address, only a message to one address says which it was.
            let address = match (refused, all.as_slice()) {
                (Some(a), _) => a.to_owned(),
                (None, [only]) => (*only).clone(),
                _ => return None,
            };
            Some(Suppression {
                channel: SuppressedChannel::Email,
                address: SuppressedChannel::Email.normalise(&address),
                scope: SuppressionScope::All,
                reason,
                since: now,
                until: Some(now.plus(email_for)),
                message_id: Some(record.id.clone()),
            })
        }
        _ => None,
    }
}

/// Applies a `user_preferences` entry: `stop` on `marketing_messages` suppresses the user's
/// marketing templates; `resume` lifts it, unless it was set after `at` (webhooks may come out
/// of order).
pub async fn apply_preference(
    store: &dyn SuppressionStore,
    wa_id: &str,
    category: &str,
    value: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    if category != "marketing_messages" {
        return Ok(());
    }
    let channel = SuppressedChannel::Whatsapp;
    let address = channel.normalise(wa_id);
    let current = store.get_suppression(channel, &address).await?;
    match value {
        "stop" => {
            if current.as_ref().is_some_and(|c| c.since > at) {
                return Ok(());
            }
            store
                .put_suppression(&Suppression {
                    channel,
                    address,
                    scope: SuppressionScope::Marketing,
                    reason: "user_preferences".to_owned(),
                    since: at,
                    until: None,
                    message_id: None,
                })
                .await?;
            tracing::info!("a user stopped marketing messages; suppressed");
        }
        "resume" => {
            if let Some(c) = current
                && c.since <= at
            {
                store.delete_suppression(channel, &address).await?;
                tracing::info!("a user resumed marketing messages; suppression lifted");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Writes what a failure taught, logging (not failing) when the store is down: the refusal is
/// already recorded on the message, and the next refusal teaches it again.
pub async fn learn(
    store: Option<&dyn SuppressionStore>,
    record: &DeliveryRecord,
    error: &DeliveryError,
    now: Timestamp,
    email_for: Duration,
) {
    let (Some(store), Some(s)) = (store, learned(record, error, now, email_for)) else {
        return;
    };
    match store.put_suppression(&s).await {
        Ok(()) => {
            tracing::info!(channel = s.channel.as_str(), reason = %s.reason, "recipient suppressed")
        }
        Err(e) => tracing::warn!(error = %e, "suppression not written: the store is unavailable"),
    }
}
