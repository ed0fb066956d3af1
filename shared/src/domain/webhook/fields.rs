//! Changes to subscribed fields other than `messages` (REFERENCE §1.3 "Other fields").
//!
//! The fields worth acting on are typed; any other subscribed field is kept as
//! [`FieldChange::Other`], and a modelled field whose value does not fit (or a `messages`
//! item that could not be routed) as [`FieldChange::Unrecognised`]. Nothing is dropped.
//!
//! On the queue a change is `{"type": "<variant>", "data": {…}}`: adjacently tagged, so the
//! tag can never collide with a key Meta puts in the value (those stay in `extra`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum FieldChange {
    /// `message_template_status_update`: a template was approved, rejected, paused...
    TemplateStatusUpdate {
        /// `APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`...
        event: String,
        /// Sent as a number; kept as its decimal string.
        #[serde(
            default,
            deserialize_with = "opt_string_or_integer",
            skip_serializing_if = "Option::is_none"
        )]
        message_template_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_template_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_template_language: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// `message_template_category`, `rejection_info`...
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// `phone_number_quality_update`: messaging-limit tier or throughput changes.
    PhoneNumberQualityUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_phone_number: Option<String>,
        /// `THROUGHPUT_UPGRADE`, `UPGRADE`, `DOWNGRADE`, `FLAGGED`...
        event: String,
        /// `TIER_250` … `TIER_UNLIMITED`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_daily_conversations_per_business: Option<String>,
        /// Slated for removal in Feb 2026, like `old_limit` (kept in `extra`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_limit: Option<String>,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// `account_update`: `ACCOUNT_VIOLATION`, `ACCOUNT_RESTRICTION`, bans...
    AccountUpdate {
        event: String,
        /// `violation_info`, `restriction_info`, `ban_info`, `phone_number`...
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// `user_preferences`: users stopping or resuming marketing messages.
    UserPreferences {
        user_preferences: Vec<UserPreference>,
        /// `messaging_product`, `metadata`, `contacts`...
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// A subscribed field this version does not model, kept raw.
    Other { field: String, value: Value },
    /// A modelled field whose value did not fit the model, a `messages` item that could not be
    /// routed, or a change with no field name: kept raw for an operator.
    Unrecognised { field: String, value: Value },
}

/// One `user_preferences[]` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// `marketing_messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `stop` or `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unix seconds; sent as a number, a numeric string is accepted too.
    #[serde(
        default,
        deserialize_with = "opt_integer_or_numeric_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FieldChange {
    pub const TEMPLATE_STATUS_UPDATE: &'static str = "message_template_status_update";
    pub const PHONE_NUMBER_QUALITY_UPDATE: &'static str = "phone_number_quality_update";
    pub const ACCOUNT_UPDATE: &'static str = "account_update";
    pub const USER_PREFERENCES: &'static str = "user_preferences";

    /// Types one change's `value` by its `field` name. Never fails.
    pub fn from_change(field: String, value: Value) -> Self {
        let variant = match field.as_str() {
            Self::TEMPLATE_STATUS_UPDATE => "template_status_update",
            Self::PHONE_NUMBER_QUALITY_UPDATE => "phone_number_quality_update",
            Self::ACCOUNT_UPDATE => "account_update",
            Self::USER_PREFERENCES => "user_preferences",
            // `messages` items are events of their own; one that reaches here did not fit.
            "" | "messages" => return Self::Unrecognised { field, value },
            _ => return Self::Other { field, value },
        };
        // Reuse the derived, adjacently tagged impl to type the value: one set of field
        // attributes serves both Meta's shape and the queue's.
        let tagged = serde_json::json!({ "type": variant, "data": value });
        match Self::deserialize(&tagged) {
            Ok(change) => change,
            Err(_) => Self::Unrecognised {
                field,
                value: match tagged {
                    Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
                    other => other,
                },
            },
        }
    }

    /// The Meta field name this change came from.
    pub fn field_name(&self) -> &str {
        match self {
            Self::TemplateStatusUpdate { .. } => Self::TEMPLATE_STATUS_UPDATE,
            Self::PhoneNumberQualityUpdate { .. } => Self::PHONE_NUMBER_QUALITY_UPDATE,
            Self::AccountUpdate { .. } => Self::ACCOUNT_UPDATE,
            Self::UserPreferences { .. } => Self::USER_PREFERENCES,
            Self::Other { field, .. } | Self::Unrecognised { field, .. } => field,
        }
    }
}

/// An optional id Meta sends as a number (or sometimes a string), kept as a string.
fn opt_string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a string or an integer")),
    }
}

/// An optional integer that may arrive as a numeric string.
fn opt_integer_or_numeric_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected an integer")),
        Some(_) => Err(serde::de::Error::custom("expected an integer")),
    }
}
