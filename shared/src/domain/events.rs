//! Inbound events: one webhook POST splits into many of these, one per status, message or
//! changed field. They are the bodies of the inbound queue's messages.

use crate::domain::webhook::{Contact, FieldChange, Message, MetaError, Status};
use serde::{Deserialize, Serialize};

/// One thing Meta told us, self-contained so it can be processed alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboundEvent {
    /// A status update for a message we sent (`field: messages`, `value.statuses[]`).
    Status {
        phone_number_id: Option<String>,
        status: Status,
    },
    /// A message a user sent (`field: messages`, `value.messages[]`), with the sender's
    /// contact card when Meta included one.
    Message {
        phone_number_id: Option<String>,
        contact: Option<Contact>,
        /// Boxed: a message is several times larger than the other variants.
        message: Box<Message>,
    },
    /// Errors reported for the whole change (`value.errors[]` with no messages or statuses).
    Errors {
        phone_number_id: Option<String>,
        errors: Vec<MetaError>,
    },
    /// Any other subscribed field: template status, quality, account updates, preferences...
    Field {
        /// `entry[].id`: the WhatsApp Business Account id.
        waba_id: String,
        /// `entry[].time`, unix seconds, when present.
        time: Option<i64>,
        change: FieldChange,
    },
}

impl InboundEvent {
    /// A short name for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Message { .. } => "message",
            Self::Errors { .. } => "errors",
            Self::Field { .. } => "field",
        }
    }
}
