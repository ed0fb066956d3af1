//! The provider-ready payload of a delivery: built once when the send API accepts a message
//! and kept in the record, so dispatch never parses the public request again. Each variant is
//! versioned (`kind` names channel and version), so a record written by an older build stays
//! readable after the shape of a newer one changes.

use crate::domain::app_event::{EventId, EventType};
use crate::domain::delivery::Channel;
use crate::domain::ids::MessageId;
use crate::domain::message::{EmailMessage, OutboundMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a provider is handed for one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DeliveryPayload {
    /// The exact Graph API `/messages` body (with Carteiro's id in `biz_opaque_callback_data`).
    #[serde(rename = "whatsapp.graph.v1")]
    WhatsappGraphV1 {
        body: Value,
        /// A marketing template (the send body said `"category": "marketing"`): held back from
        /// a user who stopped marketing messages.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        marketing: bool,
    },
    /// A checked email; the SMTP provider renders its template and builds the MIME message.
    #[serde(rename = "email.v1")]
    EmailV1 { email: EmailMessage },
    /// A signed callback: `body` is the exact envelope to sign and send to the endpoint.
    #[serde(rename = "webhook.v1")]
    WebhookV1 {
        endpoint_id: String,
        event_id: EventId,
        event_type: EventType,
        body: String,
    },
}

impl DeliveryPayload {
    /// The payload for a validated message.
    pub fn build(id: &MessageId, message: &OutboundMessage) -> Self {
        match message {
            OutboundMessage::Whatsapp(m) => Self::WhatsappGraphV1 {
                body: m.graph_body(id.as_str()),
                marketing: m.is_marketing(),
            },
            OutboundMessage::Email(m) => Self::EmailV1 { email: m.clone() },
        }
    }

    /// The WhatsApp recipient (`to`, digits) of a Graph payload.
    pub fn whatsapp_recipient(&self) -> Option<&str> {
        match self {
            Self::WhatsappGraphV1 { body, .. } => body.get("to").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The provider endpoint it goes through, naming its circuit breaker and rate bucket:
    /// `whatsapp` (the number's Graph API), `smtp:<relay>` (`primary`: the `smtp` secret's own
    /// server), `webhook:<endpoint id>`.
    pub fn endpoint(&self) -> String {
        match self {
            Self::WhatsappGraphV1 { .. } => "whatsapp".to_owned(),
            Self::EmailV1 { email } => format!(
                "smtp:{}",
                email
                    .relay
                    .as_deref()
                    .unwrap_or(crate::domain::message::PRIMARY_RELAY)
            ),
            Self::WebhookV1 { endpoint_id, .. } => format!("webhook:{endpoint_id}"),
        }
    }

    pub const fn channel(&self) -> Channel {
        match self {
            Self::WhatsappGraphV1 { .. } => Channel::Whatsapp,
            Self::EmailV1 { .. } => Channel::Email,
            Self::WebhookV1 { .. } => Channel::Webhook,
        }
    }
}

/// Attachment bytes as standard base64 in JSON, as the send API takes them.
pub mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
