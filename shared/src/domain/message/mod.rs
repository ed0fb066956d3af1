//! The send API's message model: what an app may ask Carteiro to send, parsed from JSON into
//! values that are valid by construction, with a precise field path for every refusal.
//!
//! Parsing walks the JSON by hand rather than through derived `Deserialize`, because the
//! contract promises errors like `{"code":"too_long","field":"text.body"}` — serde's messages
//! name neither the field path nor the rule.

use crate::domain::delivery::RetryLimits;
use crate::domain::ids::PhoneNumber;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// WhatsApp limits (Meta's Cloud API reference).
pub mod limits {
    pub const TEXT_BODY: usize = 4096;
    pub const CAPTION: usize = 1024;
    pub const INTERACTIVE_BODY: usize = 1024;
    pub const INTERACTIVE_HEADER_TEXT: usize = 60;
    pub const INTERACTIVE_FOOTER: usize = 60;
    pub const REPLY_BUTTONS: usize = 3;
    pub const BUTTON_TITLE: usize = 20;
    pub const BUTTON_ID: usize = 256;
    pub const LIST_BUTTON: usize = 20;
    pub const LIST_SECTIONS: usize = 10;
    pub const LIST_ROWS: usize = 10;
    pub const ROW_TITLE: usize = 24;
    pub const ROW_DESCRIPTION: usize = 72;
    pub const ROW_ID: usize = 200;
    pub const TEMPLATE_NAME: usize = 512;
    pub const FILENAME: usize = 240;
    pub const EMAIL_SUBJECT: usize = 998;
    pub const EMAIL_RECIPIENTS: usize = 50;
    pub const ATTACHMENTS: usize = 10;
    /// Decoded bytes of all attachments together: the record must fit a DynamoDB item.
    pub const ATTACHMENT_BYTES: usize = 150 * 1024;
    pub const METADATA_BYTES: usize = 4096;
    pub const FALLBACKS: usize = 3;
    pub const CONTACT_CARDS: usize = 20;
}

/// A refusal, naming the offending field by its JSON path (`template.components[0]...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// `missing_field`, `invalid_field`, `too_long`, `too_many`, `unknown_channel`, ...
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field} is required");
        Self::new("missing_field", field, message)
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new("invalid_field", field, message)
    }

    fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new("too_long", field, format!("at most {max} characters"))
    }

    fn too_many(field: impl Into<String>, max: usize) -> Self {
        Self::new("too_many", field, format!("at most {max} items"))
    }
}

type Result<T> = std::result::Result<T, ValidationError>;

mod email;
mod whatsapp;

pub use email::*;
pub use whatsapp::*;

/// A whole send request: the message, what to try if it fails for good, and the app's
/// metadata (echoed back, never interpreted).
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    pub message: OutboundMessage,
    pub fallback: Vec<OutboundMessage>,
    pub metadata: Option<Value>,
    /// `"retry": {"max_attempts": N, "max_age": "2h"}`: the message's own limits, which the
    /// global ones bound.
    pub retry: Option<RetryLimits>,
    /// `"fallback_after"` and `"if_not_delivered_within"`: when to take the fallback early.
    pub fallback_rules: Option<crate::domain::delivery::FallbackRules>,
}

/// One message on one channel.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundMessage {
    Whatsapp(WhatsAppMessage),
    Email(EmailMessage),
}

impl OutboundMessage {
    pub fn channel(&self) -> crate::domain::delivery::Channel {
        match self {
            Self::Whatsapp(_) => crate::domain::delivery::Channel::Whatsapp,
            Self::Email(_) => crate::domain::delivery::Channel::Email,
        }
    }

    /// Who receives it, as shown to the message's owner.
    pub fn recipient(&self) -> String {
        match self {
            Self::Whatsapp(m) => m.to.as_str().to_owned(),
            Self::Email(m) => m.to.join(", "),
        }
    }
}

impl SendRequest {
    /// Parses and validates a send request body.
    pub fn parse(body: &Value) -> Result<Self> {
        let obj = body
            .as_object()
            .ok_or_else(|| ValidationError::invalid("", "the body must be a JSON object"))?;
        let message = OutboundMessage::parse(obj, "")?;
        let fallback = match obj.get("fallback") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > limits::FALLBACKS {
                    return Err(ValidationError::too_many("fallback", limits::FALLBACKS));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let path = format!("fallback[{i}]");
                        let o = item
                            .as_object()
                            .ok_or_else(|| ValidationError::invalid(&path, "must be an object"))?;
                        if o.contains_key("fallback") {
                            return Err(ValidationError::invalid(
                                format!("{path}.fallback"),
                                "fallbacks cannot have fallbacks",
                            ));
                        }
                        OutboundMessage::parse(o, &format!("{path}."))
                    })
                    .collect::<Result<_>>()?
            }
            Some(_) => return Err(ValidationError::invalid("fallback", "must be an array")),
        };
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => {
                if m.to_string().len() > limits::METADATA_BYTES {
                    return Err(ValidationError::new(
                        "too_long",
                        "metadata",
                        format!("at most {} bytes of JSON", limits::METADATA_BYTES),
                    ));
                }
                Some(m.clone())
            }
            Some(_) => return Err(ValidationError::invalid("metadata", "must be an object")),
        };
        let retry = parse_retry(obj.get("retry"))?;
        let after_ms = fallback_wait(obj, "fallback_after", !fallback.is_empty())?;
        let delivered_within_ms =
            fallback_wait(obj, "if_not_delivered_within", !fallback.is_empty())?;
        if delivered_within_ms.is_some() && !matches!(message, OutboundMessage::Whatsapp(_)) {
            return Err(ValidationError::invalid(
                "if_not_delivered_within",
                "only a WhatsApp message reports delivery",
            ));
        }
        let fallback_rules = (after_ms.is_some() || delivered_within_ms.is_some()).then_some(
            crate::domain::delivery::FallbackRules {
                after_ms,
                delivered_within_ms,
            },
        );
        Ok(Self {
            message,
            fallback,
            metadata,
            retry,
            fallback_rules,
        })
    }
}

/// Most attempts a message may ask for.
pub const MAX_RETRY_ATTEMPTS: u64 = 100;

/// Longest `fallback_after` / `if_not_delivered_within`.
const MAX_FALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// A fallback rule's wait (`"10m"`), in milliseconds: more than 0, at most a week, and only
/// beside a `fallback`.
fn fallback_wait(obj: &Map<String, Value>, key: &str, has_fallback: bool) -> Result<Option<u64>> {
    let text = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ValidationError::invalid(
                key,
                "must be a duration such as 30s, 10m or 2h",
            ));
        }
    };
    if !has_fallback {
        return Err(ValidationError::invalid(key, "needs a fallback to take"));
    }
    let d =
        crate::domain::time::parse_duration(text).map_err(|e| ValidationError::invalid(key, e))?;
    if d.is_zero() || d > MAX_FALLBACK_WAIT {
        return Err(ValidationError::invalid(
            key,
            "must be more than 0s and at most 7d",
        ));
    }
    Ok(Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

fn parse_retry(v: Option<&Value>) -> Result<Option<RetryLimits>> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ValidationError::invalid("retry", "must be an object")),
    };
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "max_attempts" | "max_age"))
    {
        return Err(ValidationError::invalid(
            format!("retry.{key}"),
            "unknown field (use max_attempts and max_age)",
        ));
    }
    let max_attempts = match obj.get("max_attempts") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RETRY_ATTEMPTS).contains(&n) => u32::try_from(n).ok(),
            _ => {
                return Err(ValidationError::invalid(
                    "retry.max_attempts",
                    format!("must be a whole number from 1 to {MAX_RETRY_ATTEMPTS}"),
                ));
            }
        },
    };
    let max_age_ms = match obj.get("max_age") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let d = crate::domain::time::parse_duration(s)
                .map_err(|e| ValidationError::invalid("retry.max_age", e))?;
            if d.is_zero() {
                return Err(ValidationError::invalid(
                    "retry.max_age",
                    "must be more than 0s",
                ));
            }
            Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        Some(_) => {
            return Err(ValidationError::invalid(
                "retry.max_age",
                "must be a duration such as \"90s\", \"5m\" or \"2h\"",
            ));
        }
    };
    Ok(Some(RetryLimits {
        max_attempts,
        max_age_ms,
    }))
}

impl OutboundMessage {
    fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<Self> {
        let channel = obj
            .get("channel")
            .ok_or_else(|| ValidationError::missing(format!("{prefix}channel")))?;
        match channel.as_str() {
            Some("whatsapp") => WhatsAppMessage::parse(obj, prefix).map(Self::Whatsapp),
            Some("email") => EmailMessage::parse(obj, prefix).map(Self::Email),
            _ => Err(ValidationError::new(
                "unknown_channel",
                format!("{prefix}channel"),
                "channel must be whatsapp or email",
            )),
        }
    }
}

fn string_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ValidationError::invalid(path, "must be a string")),
    }
}

fn required_string(obj: &Map<String, Value>, key: &str, path: &str, max: usize) -> Result<String> {
    let s = string_field(obj, key, path)?.ok_or_else(|| ValidationError::missing(path))?;
    if s.trim().is_empty() {
        return Err(ValidationError::missing(path));
    }
    check_len(&s, path, max)?;
    Ok(s)
}

fn check_len(s: &str, path: &str, max: usize) -> Result<()> {
    if s.chars().count() > max {
        Err(ValidationError::too_long(path, max))
    } else {
        Ok(())
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| ValidationError::invalid(path, "must be an object"))
}

fn array<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a [Value]> {
    match v {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Err(ValidationError::missing(path)),
        Some(_) => Err(ValidationError::invalid(path, "must be an array")),
    }
}
