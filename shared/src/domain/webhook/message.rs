//! `messages[]` items (inbound messages) and `contacts[]` cards (REFERENCE §1.3).
//!
//! Meta puts a message's body under the key its `type` names
//! (`{"type": "image", "image": {…}}`), so [`Message`] has hand-written serde impls: `type`
//! and that key become one [`MessageContent`]; the common members (`from`, `id`, `timestamp`,
//! `context`, `referral`, `errors`) are typed; everything else stays in `extra`.
//!
//! Tolerance rules, all of which keep the JSON round trip exact:
//! - a type we do not model, or a known type whose body does not fit its struct, becomes
//!   [`MessageContent::Other`] with the raw body;
//! - an optional common member that does not fit (`context: 5`) stays raw in `extra`;
//! - only a message without string `type`, `from` and `id`, or without a string or integer
//!   `timestamp`, is refused (the router then parks it whole).

use crate::domain::webhook::MetaError;
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One inbound message a user sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The sender's WhatsApp id (phone number digits).
    pub from: String,
    /// The wamid.
    pub id: String,
    /// Unix seconds, as Meta sends it: a string.
    pub timestamp: String,
    /// Set on replies, button taps and forwards.
    pub context: Option<Context>,
    /// Set when the user came from a Click-to-WhatsApp ad.
    pub referral: Option<Referral>,
    /// Set on `unsupported` messages (131051) and media Meta could not fetch.
    pub errors: Vec<MetaError>,
    pub content: MessageContent,
    /// Members this version does not model (`identity` on `customer_identity_changed`...).
    pub extra: Map<String, Value>,
}

impl Message {
    /// The message `type`, as Meta sent it (`text`, `image`, …, or an unknown name).
    pub fn kind(&self) -> &str {
        self.content.kind()
    }

    fn from_map<E: serde::de::Error>(mut map: Map<String, Value>) -> Result<Self, E> {
        let Some(Value::String(kind)) = map.remove("type") else {
            return Err(E::missing_field("type"));
        };
        let from = take_string(&mut map, "from")?;
        let id = take_string(&mut map, "id")?;
        let timestamp = match map.remove("timestamp") {
            Some(Value::String(s)) => s,
            // Documented as a string; an integer means the same and is accepted.
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(E::missing_field("timestamp")),
        };
        let context = take_optional::<Context>(&mut map, "context");
        let referral = take_optional::<Referral>(&mut map, "referral");
        let errors = take_optional::<Vec<MetaError>>(&mut map, "errors").unwrap_or_default();
        // Taken after the common members, so a `type` that names one of them (never seen,
        // but possible) leaves that member typed and the content bodiless — on every parse.
        let body = map.remove(&kind);
        Ok(Self {
            from,
            id,
            timestamp,
            context,
            referral,
            errors,
            content: MessageContent::from_parts(kind, body),
            extra: map,
        })
    }

    fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let mut map = self.extra.clone();
        map.insert("from".to_owned(), Value::String(self.from.clone()));
        map.insert("id".to_owned(), Value::String(self.id.clone()));
        map.insert(
            "timestamp".to_owned(),
            Value::String(self.timestamp.clone()),
        );
        map.insert("type".to_owned(), Value::String(self.kind().to_owned()));
        if let Some(context) = &self.context {
            map.insert("context".to_owned(), serde_json::to_value(context)?);
        }
        if let Some(referral) = &self.referral {
            map.insert("referral".to_owned(), serde_json::to_value(referral)?);
        }
        if !self.errors.is_empty() {
            map.insert("errors".to_owned(), serde_json::to_value(&self.errors)?);
        }
        if let Some(body) = self.content.body()? {
            map.insert(self.kind().to_owned(), body);
        }
        Ok(map)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map()
            .map_err(S::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_map(Map::deserialize(deserializer)?)
    }
}

fn take_string<E: serde::de::Error>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<String, E> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(E::missing_field(key)),
    }
}

/// Takes `key` out of `map` if it parses as `T` (`null` counts as absent); leaves it in place
/// otherwise, so it ends up in `extra`.
fn take_optional<T: DeserializeOwned>(map: &mut Map<String, Value>, key: &str) -> Option<T> {
    let parsed = Option::<T>::deserialize(map.get(key)?).ok()?;
    map.remove(key);
    parsed
}

/// What a message carries, by `type` (REFERENCE §1.3 table).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(Text),
    Image(Media),
    Video(Media),
    Document(Media),
    /// `voice: true` marks a voice note.
    Audio(Media),
    Sticker(Media),
    Location(Location),
    Contacts(Vec<SharedContact>),
    Interactive(Interactive),
    /// A quick-reply tap on a template button.
    Button(Button),
    Reaction(Reaction),
    Order(Order),
    System(System),
    /// A type WhatsApp could not deliver to the API (131051 in `errors`); newer payloads name
    /// the original type in `unsupported.type`.
    Unsupported(Option<Unsupported>),
    /// The older name of `unsupported`; the body, if any, is kept raw.
    Unknown(Option<Value>),
    /// A type this version does not model, or a known type whose body did not fit.
    Other {
        kind: String,
        /// The member named by `kind`, when present (`None` when absent).
        body: Option<Value>,
    },
}

impl MessageContent {
    /// The `type` name.
    pub fn kind(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Image(_) => "image",
            Self::Video(_) => "video",
            Self::Document(_) => "document",
            Self::Audio(_) => "audio",
            Self::Sticker(_) => "sticker",
            Self::Location(_) => "location",
            Self::Contacts(_) => "contacts",
            Self::Interactive(_) => "interactive",
            Self::Button(_) => "button",
            Self::Reaction(_) => "reaction",
            Self::Order(_) => "order",
            Self::System(_) => "system",
            Self::Unsupported(_) => "unsupported",
            Self::Unknown(_) => "unknown",
            Self::Other { kind, .. } => kind,
        }
    }

    /// Whether WhatsApp reported the message as unsupported, under either name.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unsupported(_) | Self::Unknown(_))
    }

    /// Types `kind` + its body; falls back to [`Self::Other`] when the body does not fit.
    pub fn from_parts(kind: String, body: Option<Value>) -> Self {
        fn typed<T: DeserializeOwned>(body: Option<&Value>) -> Option<T> {
            T::deserialize(body?).ok()
        }
        let b = body.as_ref();
        let typed = match kind.as_str() {
            "text" => typed(b).map(Self::Text),
            "image" => typed(b).map(Self::Image),
            "video" => typed(b).map(Self::Video),
            "document" => typed(b).map(Self::Document),
            "audio" => typed(b).map(Self::Audio),
            "sticker" => typed(b).map(Self::Sticker),
            "location" => typed(b).map(Self::Location),
            "contacts" => typed(b).map(Self::Contacts),
            "interactive" => typed(b).map(Self::Interactive),
            "button" => typed(b).map(Self::Button),
            "reaction" => typed(b).map(Self::Reaction),
            "order" => typed(b).map(Self::Order),
            "system" => typed(b).map(Self::System),
            // The body is optional here; `null` reads as absent.
            "unsupported" => match b {
                None | Some(Value::Null) => Some(Self::Unsupported(None)),
                Some(v) => typed(Some(v)).map(|u| Self::Unsupported(Some(u))),
            },
            "unknown" => Some(Self::Unknown(body.clone().filter(|v| !v.is_null()))),
            _ => None,
        };
        typed.unwrap_or(Self::Other { kind, body })
    }

    /// The member stored under `kind`, if any.
    fn body(&self) -> Result<Option<Value>, serde_json::Error> {
        let value = match self {
            Self::Text(t) => serde_json::to_value(t)?,
            Self::Image(m)
            | Self::Video(m)
            | Self::Document(m)
            | Self::Audio(m)
            | Self::Sticker(m) => serde_json::to_value(m)?,
            Self::Location(l) => serde_json::to_value(l)?,
            Self::Contacts(c) => serde_json::to_value(c)?,
            Self::Interactive(i) => serde_json::to_value(i)?,
            Self::Button(b) => serde_json::to_value(b)?,
            Self::Reaction(r) => serde_json::to_value(r)?,
            Self::Order(o) => serde_json::to_value(o)?,
            Self::System(s) => serde_json::to_value(s)?,
            Self::Unsupported(u) => return u.as_ref().map(serde_json::to_value).transpose(),
            Self::Unknown(v) | Self::Other { body: v, .. } => return Ok(v.clone()),
        };
        Ok(Some(value))
    }
}

/// `text{body}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub body: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `image`, `video`, `document`, `audio` and `sticker`; members that only some
/// types carry are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The media id, for `GET /<MEDIA_ID>` and download.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A direct download URL, on newer payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// `document` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// `audio` only: a voice note (ogg/opus) rather than an audio file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
    /// `sticker` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `location{latitude, longitude[, name, address, url]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One card of a `contacts` message (a contact the user shared). `emails`, `org`, `urls`,
/// `addresses` and `birthday` stay in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ContactName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<ContactPhone>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `contacts[].name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `contacts[].phones[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPhone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// `CELL`, `HOME`, `WORK`...
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `interactive{type, <type>{…}}`: the user's answer to an interactive message.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactive {
    pub reply: InteractiveReply,
    /// Members besides `type` and the reply body.
    pub extra: Map<String, Value>,
}

/// The answer, by `interactive.type`.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractiveReply {
    ButtonReply(ReplyButton),
    ListReply(ListReply),
    /// A completed WhatsApp Flow.
    NfmReply(NfmReply),
    /// A type this version does not model, or a known one whose body did not fit.
    Other {
        kind: String,
        body: Option<Value>,
    },
}

impl InteractiveReply {
    pub fn kind(&self) -> &str {
        match self {
            Self::ButtonReply(_) => "button_reply",
            Self::ListReply(_) => "list_reply",
            Self::NfmReply(_) => "nfm_reply",
            Self::Other { kind, .. } => kind,
        }
    }
}

impl Interactive {
    fn from_map<E: serde::de::Error>(mut map: Map<String, Value>) -> Result<Self, E> {
        let Some(Value::String(kind)) = map.remove("type") else {
            return Err(E::missing_field("type"));
        };
        let body = map.remove(&kind);
        let typed = body.as_ref().and_then(|b| match kind.as_str() {
            "button_reply" => ReplyButton::deserialize(b)
                .ok()
                .map(InteractiveReply::ButtonReply),
            "list_reply" => ListReply::deserialize(b)
                .ok()
                .map(InteractiveReply::ListReply),
            "nfm_reply" => NfmReply::deserialize(b)
                .ok()
                .map(InteractiveReply::NfmReply),
            _ => None,
        });
        let reply = typed.unwrap_or(InteractiveReply::Other { kind, body });
        Ok(Self { reply, extra: map })
    }

    fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let mut map = self.extra.clone();
        let kind = self.reply.kind();
        let body = match &self.reply {
            InteractiveReply::ButtonReply(b) => Some(serde_json::to_value(b)?),
            InteractiveReply::ListReply(l) => Some(serde_json::to_value(l)?),
            InteractiveReply::NfmReply(n) => Some(serde_json::to_value(n)?),
            InteractiveReply::Other { body, .. } => body.clone(),
        };
        map.insert("type".to_owned(), Value::String(kind.to_owned()));
        if let Some(body) = body {
            map.insert(kind.to_owned(), body);
        }
        Ok(map)
    }
}

impl Serialize for Interactive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map()
            .map_err(S::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Interactive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_map(Map::deserialize(deserializer)?)
    }
}

/// `interactive.button_reply{id, title}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyButton {
    /// The id the business gave the button.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `interactive.list_reply{id, title, description}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListReply {
    /// The id the business gave the row.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `interactive.nfm_reply{response_json, body, name}`: a Flow's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NfmReply {
    /// The Flow's answers as a JSON *string*, kept verbatim (parse it where it is used).
    pub response_json: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `flow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `button{payload, text}`: a quick-reply tap on a template button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `reaction{message_id, emoji}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// The wamid reacted to.
    pub message_id: String,
    /// `""` or absent when the user removed the reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Reaction {
    /// Whether this removes an earlier reaction rather than adding one.
    pub fn is_removal(&self) -> bool {
        self.emoji.as_deref().is_none_or(str::is_empty)
    }
}

/// `order{catalog_id, text, product_items[]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub product_items: Vec<ProductItem>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `order.product_items[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_retailer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `system{type, body, wa_id}`. On `customer_identity_changed` the `identity` object is a
/// sibling of `system`, so it is in [`Message::extra`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    /// `user_changed_number`, `customer_identity_changed`, or a newer name.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// On `user_changed_number`: the user's new WhatsApp id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl System {
    pub const USER_CHANGED_NUMBER: &'static str = "user_changed_number";
    pub const CUSTOMER_IDENTITY_CHANGED: &'static str = "customer_identity_changed";
}

/// `unsupported{type}` on newer payloads: the type WhatsApp could not pass on (`poll`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsupported {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `context`: what a message answers or that it was forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The business number the replied-to message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The replied-to wamid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequently_forwarded: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Context {
    pub fn is_forwarded(&self) -> bool {
        self.forwarded == Some(true) || self.frequently_forwarded == Some(true)
    }
}

/// `referral`: the Click-to-WhatsApp ad or post the user came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The Click-to-WhatsApp click id, for conversion reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctwa_clid: Option<String>,
    /// `image_url`, `video_url`, `thumbnail_url`...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `contacts[]` card: who sent the messages of a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The user's WhatsApp id. Optional: Meta's business-scoped user ids (`user_id`) may
    /// stand alone for users with a username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Business-scoped user id (`US.…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `contacts[].profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
