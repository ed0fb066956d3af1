//! Events for the app: what Carteiro tells an application through its callbacks. Each is sent
//! as a Standard Webhooks envelope `{"type", "timestamp", "data"}`; the types, their `data`
//! and JSON Schemas are documented in docs/events.md and docs/schemas/ (version 1).
//!
//! An event's id is derived from what it reports (the inbound wamid, the record and status,
//! ...), never drawn at random: the same fact seen twice — a redelivered queue message, a
//! webhook Meta retries — is the same event, and is delivered once.

use crate::domain::delivery::{
    Channel, DeliveryRecord, DeliveryStatus, ProviderEvent, ProviderStatus,
};
use crate::domain::ids::ParseError;
use crate::domain::time::Timestamp;
use crate::domain::webhook::{Contact, FieldChange, Message, MessageContent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::fmt;

/// The version of the event `data` shapes in docs/schemas/.
pub const SCHEMA_VERSION: u32 = 1;

/// What an event reports. The wire names are the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A WhatsApp user wrote to the business (any message type).
    #[serde(rename = "message.received")]
    MessageReceived,
    /// Meta reported `sent`, `delivered`, `read` or `failed` for a message sent through
    /// Carteiro.
    #[serde(rename = "message.status")]
    MessageStatus,
    /// Carteiro's own outcome: the provider refused the message for good.
    #[serde(rename = "message.failed")]
    MessageFailed,
    /// Carteiro's own outcome: retries ran out or the message outlived its maximum age.
    #[serde(rename = "message.dead")]
    MessageDead,
    #[serde(rename = "whatsapp.template_status")]
    WhatsappTemplateStatus,
    #[serde(rename = "whatsapp.quality")]
    WhatsappQuality,
    #[serde(rename = "whatsapp.account")]
    WhatsappAccount,
}

impl EventType {
    pub const ALL: [Self; 7] = [
        Self::MessageReceived,
        Self::MessageStatus,
        Self::MessageFailed,
        Self::MessageDead,
        Self::WhatsappTemplateStatus,
        Self::WhatsappQuality,
        Self::WhatsappAccount,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MessageReceived => "message.received",
            Self::MessageStatus => "message.status",
            Self::MessageFailed => "message.failed",
            Self::MessageDead => "message.dead",
            Self::WhatsappTemplateStatus => "whatsapp.template_status",
            Self::WhatsappQuality => "whatsapp.quality",
            Self::WhatsappAccount => "whatsapp.account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's id (`evt_` and 32 hex digits): the `webhook-id` of every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    const PREFIX: &'static str = "evt_";

    /// The id of the event that reports `parts` (a digest, so the same fact gets the same id).
    pub fn derive(parts: &[&str]) -> Self {
        Self(format!("{}{}", Self::PREFIX, digest32(parts)))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let rest = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| ParseError::new("id", "must start with evt_"))?;
        if rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new("id", "not a Carteiro event id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 32 lowercase hex digits of SHA-256 over `parts`, each ended by a NUL so that no two lists
/// share a digest input.
pub fn digest32(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// One event for the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the reported thing happened (or Carteiro learnt of it).
    pub timestamp: Timestamp,
    pub data: Value,
    /// The contact (wa_id) the event concerns: endpoints with `ordered: true` get the events
    /// of one contact in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
}

impl AppEvent {
    /// The callback body: the Standard Webhooks envelope, minified. Signed and sent byte for
    /// byte as returned.
    pub fn envelope(&self) -> String {
        json!({
            "type": self.event_type.as_str(),
            "timestamp": self.timestamp.to_rfc3339(),
            "data": self.data,
        })
        .to_string()
    }

    /// `message.received` for a message a user sent.
    pub fn received(
        phone_number_id: Option<&str>,
        contact: Option<&Contact>,
        message: &Message,
        received_at: Timestamp,
    ) -> Self {
        let at = Timestamp::parse_unix_secs(&message.timestamp).unwrap_or(received_at);
        let mut data = Map::new();
        data.insert("message_id".into(), json!(message.id));
        data.insert("wa_id".into(), json!(message.from));
        data.insert(
            "profile_name".into(),
            json!(
                contact
                    .and_then(|c| c.profile.as_ref())
                    .and_then(|p| p.name.clone())
            ),
        );
        data.insert("phone_number_id".into(), json!(phone_number_id));
        data.insert("type".into(), json!(message.kind()));
        data.insert("timestamp".into(), json!(at.to_rfc3339()));
        if let MessageContent::Text(text) = &message.content {
            data.insert("text".into(), json!(text.body));
        }
        if let Some(media) = media_of(&message.content) {
            data.insert(
                "media".into(),
                json!({
                    "id": media.id, "mime_type": media.mime_type, "caption": media.caption,
                    "filename": media.filename,
                }),
            );
        }
        data.insert(
            "context".into(),
            message
                .context
                .as_ref()
                .map_or(Value::Null, |c| json!({"message_id": c.id, "from": c.from})),
        );
        data.insert(
            "message".into(),
            serde_json::to_value(message).unwrap_or(Value::Null),
        );
        Self {
            id: EventId::derive(&["message.received", &message.id]),
            event_type: EventType::MessageReceived,
            timestamp: at,
            data: Value::Object(data),
            conversation: Some(message.from.clone()),
        }
    }

    /// `message.status` for one status Meta reported for `record`, if it is one the app is
    /// told of (`sent`, `delivered`, `read`, `failed`).
    pub fn status(record: &DeliveryRecord, event: &ProviderEvent) -> Option<Self> {
        let status = match &event.status {
            ProviderStatus::Sent => "sent",
            ProviderStatus::Delivered => "delivered",
            ProviderStatus::Read => "read",
            ProviderStatus::Failed => "failed",
            ProviderStatus::Played | ProviderStatus::Other(_) => return None,
        };
        if record.channel != Channel::Whatsapp {
            return None;
        }
        let data = json!({
            "message_id": record.id.as_str(),
            "provider_message_id": record.provider_message_id,
            "channel": record.channel,
            "recipient": record.recipient,
            "status": status,
            "at": event.at.to_rfc3339(),
            "error": event.error,
            "pricing": event.pricing,
            "conversation": event.conversation,
            "metadata": metadata(record),
        });
        Some(Self {
            id: EventId::derive(&["message.status", record.id.as_str(), status]),
            event_type: EventType::MessageStatus,
            timestamp: event.at,
            data,
            conversation: record.conversation_contact(),
        })
    }

    /// `message.failed` or `message.dead` when `record` just ended that way in Carteiro's own
    /// hands (not a callback: the app is not told of its own callbacks' fate this way).
    pub fn outcome(record: &DeliveryRecord, now: Timestamp) -> Option<Self> {
        let event_type = match record.status {
            DeliveryStatus::Failed => EventType::MessageFailed,
            DeliveryStatus::Dead => EventType::MessageDead,
            _ => return None,
        };
        if record.channel == Channel::Webhook {
            return None;
        }
        let attempts = record.attempts.len().to_string();
        let data = json!({
            "message_id": record.id.as_str(),
            "channel": record.channel,
            "recipient": record.recipient,
            "status": record.status,
            "error": record.last_error,
            "attempts": record.attempts.len(),
            "metadata": metadata(record),
        });
        Some(Self {
            id: EventId::derive(&[event_type.as_str(), record.id.as_str(), &attempts]),
            event_type,
            timestamp: now,
            data,
            conversation: record.conversation_contact(),
        })
    }

    /// `whatsapp.template_status`, `whatsapp.quality` or `whatsapp.account` for a changed
    /// field of the WhatsApp Business Account, if it is one of those.
    pub fn account(
        waba_id: &str,
        time: Option<i64>,
        change: &FieldChange,
        received_at: Timestamp,
    ) -> Option<Self> {
        let event_type = match change {
            FieldChange::TemplateStatusUpdate { .. } => EventType::WhatsappTemplateStatus,
            FieldChange::PhoneNumberQualityUpdate { .. } => EventType::WhatsappQuality,
            FieldChange::AccountUpdate { .. } => EventType::WhatsappAccount,
            FieldChange::Other { field, .. } => match field.as_str() {
                "message_template_quality_update" | "template_category_update" => {
                    EventType::WhatsappTemplateStatus
                }
                "account_review_update"
                | "business_capability_update"
                | "account_alerts"
                | "phone_number_name_update" => EventType::WhatsappAccount,
                _ => return None,
            },
            FieldChange::UserPreferences { .. } | FieldChange::Unrecognised { .. } => return None,
        };
        let field = change.field_name().to_owned();
        let change = serde_json::to_value(change).unwrap_or(Value::Null);
        let update = change.get("data").cloned().unwrap_or(Value::Null);
        let timestamp = time.map_or(received_at, Timestamp::from_secs);
        let digest = digest32(&[waba_id, &update.to_string()]);
        Some(Self {
            id: EventId::derive(&[event_type.as_str(), &digest]),
            event_type,
            timestamp,
            data: json!({"waba_id": waba_id, "field": field, "update": update}),
            conversation: None,
        })
    }
}

fn media_of(content: &MessageContent) -> Option<&crate::domain::webhook::message::Media> {
    match content {
        MessageContent::Image(m)
        | MessageContent::Video(m)
        | MessageContent::Document(m)
        | MessageContent::Audio(m)
        | MessageContent::Sticker(m) => Some(m),
        _ => None,
    }
}

fn metadata(record: &DeliveryRecord) -> Value {
    record
        .request
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Null)
}
