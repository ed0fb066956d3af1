//! `statuses[]` items and Meta's error objects.

use crate::domain::delivery::{DeliveryError, ProviderStatus, StatusUpdate};
use crate::domain::ids::{ParseError, Wamid};
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One entry of `value.statuses[]`. Everything after `recipient_id` is optional: Meta drops
/// fields between Graph versions (v24 omits `conversation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub id: String,
    pub status: String,
    pub timestamp: String,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
    /// Fields this version does not model (`recipient_type`, `recipient_identity_key_hash`...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Status {
    /// The update this status asks for, or why it cannot be applied (no usable wamid).
    pub fn to_update(&self) -> Result<StatusUpdate, ParseError> {
        let wamid = Wamid::parse(&self.id)?;
        Ok(StatusUpdate {
            wamid,
            status: ProviderStatus::parse(&self.status),
            at: Timestamp::parse_unix_secs(&self.timestamp).unwrap_or(Timestamp::from_millis(0)),
            error: self.errors.first().map(MetaError::to_delivery_error),
            pricing: self.pricing.clone(),
            conversation: self.conversation.clone(),
            callback_data: self.biz_opaque_callback_data.clone(),
        })
    }
}

/// `error_data` of a Meta error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Meta's error object, as found under `error` in API responses and in `errors[]` of webhooks.
/// Classification uses `code` and `error_data.details`, never the HTTP status or the title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<MetaErrorData>,
    /// Deprecated since v16 but still sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MetaError {
    pub fn details(&self) -> Option<&str> {
        self.error_data.as_ref()?.details.as_deref()
    }

    pub fn to_delivery_error(&self) -> DeliveryError {
        DeliveryError {
            source: "whatsapp".to_owned(),
            code: self.code.to_string(),
            message: self
                .message
                .clone()
                .or_else(|| self.title.clone())
                .unwrap_or_default(),
            details: self.details().map(str::to_owned),
        }
    }
}
