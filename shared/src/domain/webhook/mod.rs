//! The typed WhatsApp webhook model (REFERENCE §1.3–1.4) and its split into [`InboundEvent`]s.
//!
//! Meta's envelope is `{"object", "entry": [{"id", "time"?, "changes": [{"field", "value"}]}]}`.
//! [`WebhookPayload::from_slice`] reads it and [`WebhookPayload::into_events`] turns every
//! entry × change × item into one self-contained event for the inbound queue.
//!
//! **Tolerance is the design rule.** The payload is authentic (its signature was checked) but
//! Meta changes it between Graph versions, so:
//! - only invalid JSON, a top level that is not an object, or a missing `object` string is an
//!   error ([`WebhookParseError`]);
//! - unknown keys are kept in `extra` maps, unknown message types in
//!   [`MessageContent::Other`], unknown fields in [`FieldChange::Other`];
//! - anything that does not fit the typed model is never dropped: it becomes an
//!   [`InboundEvent::Field`] holding [`FieldChange::Unrecognised`] with the raw value, so the
//!   consumer can park it. For `field: messages`, each status, message, `errors[]` group or
//!   `contacts[]` group that does not fit is parked on its own, next to the metadata of its
//!   change, and the rest of the change is still routed.
//!
//! Every event survives a JSON round trip unchanged (the queue carries them as JSON).

pub mod fields;
pub mod message;
pub mod status;

pub use fields::{FieldChange, UserPreference};
pub use message::{
    Button, Contact, ContactName, ContactPhone, Context, Interactive, InteractiveReply, ListReply,
    Location, Media, Message, MessageContent, NfmReply, Order, ProductItem, Profile, Reaction,
    Referral, ReplyButton, SharedContact, System, Text, Unsupported,
};
pub use status::{MetaError, MetaErrorData, Status};

use crate::domain::events::InboundEvent;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Why a webhook body could not be read at all. Anything past these three checks is accepted
/// and routed, however odd.
#[derive(Debug, thiserror::Error)]
pub enum WebhookParseError {
    #[error("webhook body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    #[error("webhook body has no string member `object`")]
    MissingObject,
}

/// One webhook POST body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookPayload {
    /// `whatsapp_business_account` for WhatsApp; other Meta products share the endpoint shape.
    pub object: String,
    pub entry: Vec<Entry>,
    /// Top-level members this version does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `entry[]`: the changes for one WhatsApp Business Account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The WABA id. A non-string id is kept as its JSON text; a missing one is `""`.
    pub id: String,
    /// Unix seconds; only non-`messages` fields carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    pub changes: Vec<Change>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `changes[]`: one subscribed field and its value, kept raw until routed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The field name. A non-string name is kept as its JSON text; a missing one is `""`.
    pub field: String,
    pub value: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WebhookPayload {
    /// The `object` of WhatsApp Business Account webhooks.
    pub const OBJECT: &'static str = "whatsapp_business_account";

    /// Reads a body. Fails only on invalid JSON, a non-object top level or a missing `object`;
    /// every other oddity is kept and surfaces from [`Self::into_events`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, WebhookParseError> {
        let value: Value = serde_json::from_slice(bytes).map_err(WebhookParseError::InvalidJson)?;
        Self::from_value(value)
    }

    /// As [`Self::from_slice`], from an already parsed value.
    pub fn from_value(value: Value) -> Result<Self, WebhookParseError> {
        let Value::Object(mut map) = value else {
            return Err(WebhookParseError::NotAnObject);
        };
        let object = match map.remove("object") {
            Some(Value::String(s)) => s,
            _ => return Err(WebhookParseError::MissingObject),
        };
        let entry = lenient_list(map.remove("entry"))
            .into_iter()
            .map(Entry::from_value)
            .collect();
        Ok(Self {
            object,
            entry,
            extra: map,
        })
    }

    /// Whether this payload is about WhatsApp; others are acknowledged and ignored.
    pub fn is_whatsapp(&self) -> bool {
        self.object == Self::OBJECT
    }

    /// Splits the payload into one event per status, message, error group or field change,
    /// in payload order. Never fails: what does not fit becomes [`FieldChange::Unrecognised`].
    pub fn into_events(self) -> Vec<InboundEvent> {
        let mut events = Vec::new();
        for entry in self.entry {
            for change in entry.changes {
                if change.field == "messages" {
                    route_messages(&entry.id, entry.time, change.value, &mut events);
                } else {
                    events.push(InboundEvent::Field {
                        waba_id: entry.id.clone(),
                        time: entry.time,
                        change: FieldChange::from_change(change.field, change.value),
                    });
                }
            }
        }
        events
    }
}

impl<'de> Deserialize<'de> for WebhookPayload {
    /// Same leniency as [`WebhookPayload::from_slice`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Entry {
    /// Never fails: a non-object entry becomes one nameless change holding the raw value, so
    /// it is parked rather than lost.
    pub fn from_value(value: Value) -> Self {
        let Value::Object(mut map) = value else {
            return Self {
                id: String::new(),
                time: None,
                changes: vec![Change::from_value(value)],
                extra: Map::new(),
            };
        };
        let id = map.remove("id").map(text_of).unwrap_or_default();
        // `time` is informational: an unreadable one is dropped rather than failing the entry.
        let time = map.remove("time").and_then(|t| match t {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let changes = lenient_list(map.remove("changes"))
            .into_iter()
            .map(Change::from_value)
            .collect();
        Self {
            id,
            time,
            changes,
            extra: map,
        }
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

impl Change {
    /// Never fails: a non-object change becomes a nameless change holding the raw value.
    pub fn from_value(value: Value) -> Self {
        let Value::Object(mut map) = value else {
            return Self {
                field: String::new(),
                value,
                extra: Map::new(),
            };
        };
        let field = map.remove("field").map(text_of).unwrap_or_default();
        let value = map.remove("value").unwrap_or(Value::Null);
        Self {
            field,
            value,
            extra: map,
        }
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

/// A list member read leniently: absent or `null` is empty, an array is its items, and any
/// other value is a one-item list (so it is routed, and parked, rather than dropped).
fn lenient_list(value: Option<Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
    }
}

/// A string as itself, `null` as `""`, anything else as its JSON text.
fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The keys of a `messages` change value that hold routable items.
const ITEM_KEYS: [&str; 3] = ["statuses", "messages", "errors"];

/// Routes one `field: messages` change value (REFERENCE §1.3).
fn route_messages(waba_id: &str, time: Option<i64>, value: Value, events: &mut Vec<InboundEvent>) {
    let park = |events: &mut Vec<InboundEvent>, value: Value| {
        events.push(InboundEvent::Field {
            waba_id: waba_id.to_owned(),
            time,
            change: FieldChange::Unrecognised {
                field: "messages".to_owned(),
                value,
            },
        });
    };
    let Value::Object(mut map) = value else {
        park(events, value);
        return;
    };
    let items: Vec<(&str, Option<Value>)> =
        ITEM_KEYS.iter().map(|k| (*k, map.remove(*k))).collect();
    // What is left is the change's context (`messaging_product`, `metadata`, `contacts`...):
    // it travels with every parked item so a parked value still reads like Meta's.
    let base = map;
    let with_item = |key: &str, item: Value| {
        let mut value = base.clone();
        value.insert(key.to_owned(), item);
        Value::Object(value)
    };
    let phone_number_id = base
        .get("metadata")
        .and_then(|m| m.get("phone_number_id"))
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let contacts = match base.get("contacts") {
        None | Some(Value::Null) => Vec::new(),
        Some(raw) => Vec::<Contact>::deserialize(raw).unwrap_or_else(|_| {
            // Messages still route, without contact cards; the cards are parked.
            park(events, Value::Object(base.clone()));
            Vec::new()
        }),
    };

    let mut routed_any = false;
    for (key, raw) in items {
        let list = match raw {
            None | Some(Value::Null) => continue,
            Some(Value::Array(list)) => list,
            Some(other) => {
                routed_any = true;
                park(events, with_item(key, other));
                continue;
            }
        };
        routed_any = true;
        match key {
            "statuses" => {
                for item in list {
                    match Status::deserialize(&item) {
                        Ok(status) => events.push(InboundEvent::Status {
                            phone_number_id: phone_number_id.clone(),
                            status,
                        }),
                        Err(_) => park(events, with_item(key, Value::Array(vec![item]))),
                    }
                }
            }
            "messages" => {
                for item in list {
                    match Message::deserialize(&item) {
                        Ok(message) => events.push(InboundEvent::Message {
                            phone_number_id: phone_number_id.clone(),
                            contact: contact_for(&contacts, &message.from),
                            message: Box::new(message),
                        }),
                        Err(_) => park(events, with_item(key, Value::Array(vec![item]))),
                    }
                }
            }
            _ => {
                // `errors` are one group: they describe the change as a whole.
                if list.is_empty() {
                    continue;
                }
                let list = Value::Array(list);
                match Vec::<MetaError>::deserialize(&list) {
                    Ok(errors) => events.push(InboundEvent::Errors {
                        phone_number_id: phone_number_id.clone(),
                        errors,
                    }),
                    Err(_) => park(events, with_item(key, list)),
                }
            }
        }
    }
    if !routed_any {
        // Nothing we know how to route (a new kind of `messages` value): keep it whole.
        park(events, Value::Object(base));
    }
}

/// The sender's contact card: the one whose `wa_id` is the sender, else the only one.
fn contact_for(contacts: &[Contact], from: &str) -> Option<Contact> {
    contacts
        .iter()
        .find(|c| c.wa_id.as_deref() == Some(from))
        .or(match contacts {
            [only] => Some(only),
            _ => None,
        })
        .cloned()
}
