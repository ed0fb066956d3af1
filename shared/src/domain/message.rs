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

#[derive(Debug, Clone, PartialEq)]
pub struct WhatsAppMessage {
    pub to: PhoneNumber,
    pub content: WhatsAppContent,
    /// Reply to this wamid.
    pub reply_to: Option<String>,
}

/// What a WhatsApp message carries: exactly one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum WhatsAppContent {
    Text {
        body: String,
        preview_url: bool,
    },
    Template {
        name: String,
        language: String,
        components: Vec<Value>,
    },
    Media {
        kind: MediaKind,
        source: MediaSource,
        caption: Option<String>,
        filename: Option<String>,
    },
    /// Passed to Meta as given, after the limits below were checked.
    Interactive(Value),
    /// A reaction to a message; an empty emoji removes it.
    Reaction {
        message_id: String,
        emoji: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// Contact cards, passed to Meta as given once each has a formatted name.
    Contacts(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
    Sticker,
}

impl MediaKind {
    pub const ALL: [Self; 5] = [
        Self::Image,
        Self::Document,
        Self::Audio,
        Self::Video,
        Self::Sticker,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Document => "document",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Sticker => "sticker",
        }
    }

    const fn takes_caption(self) -> bool {
        matches!(self, Self::Image | Self::Document | Self::Video)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A public https URL Meta fetches.
    Link(String),
    /// A media id from Meta's upload endpoint.
    Id(String),
}

/// An email. Addresses are kept as given once checked; the SMTP provider parses them again
/// into mailboxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailMessage {
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body: EmailBody,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmailBody {
    Content {
        text: Option<String>,
        html: Option<String>,
    },
    Template {
        name: String,
        variables: Map<String, Value>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    #[serde(with = "crate::domain::payload::base64_bytes")]
    pub content: Vec<u8>,
}

/// The kinds of WhatsApp content; a message carries exactly one.
const CONTENT_KEYS: [&str; 11] = [
    "text",
    "template",
    "image",
    "document",
    "audio",
    "video",
    "sticker",
    "interactive",
    "reaction",
    "location",
    "contacts",
];

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
        Ok(Self {
            message,
            fallback,
            metadata,
            retry,
        })
    }
}

/// Most attempts a message may ask for.
pub const MAX_RETRY_ATTEMPTS: u64 = 100;

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

impl WhatsAppMessage {
    fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<Self> {
        let to_path = format!("{prefix}to");
        let to =
            string_field(obj, "to", &to_path)?.ok_or_else(|| ValidationError::missing(&to_path))?;
        let to =
            PhoneNumber::parse(&to).map_err(|e| ValidationError::invalid(&to_path, e.reason))?;

        let present: Vec<&str> = CONTENT_KEYS
            .iter()
            .copied()
            .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        let kind = match present.as_slice() {
            [one] => *one,
            [] => {
                return Err(ValidationError::new(
                    "missing_content",
                    format!("{prefix}text"),
                    "one of text, template, image, document, audio, video, sticker, interactive, reaction, location or contacts is required",
                ));
            }
            [_, second, ..] => {
                return Err(ValidationError::invalid(
                    format!("{prefix}{second}"),
                    "a message carries exactly one kind of content",
                ));
            }
        };
        let path = format!("{prefix}{kind}");
        let value = obj.get(kind).unwrap_or(&Value::Null);
        let content = match kind {
            "text" => {
                let o = object(value, &path)?;
                let body = required_string(o, "body", &format!("{path}.body"), limits::TEXT_BODY)?;
                let preview_url = match o.get("preview_url") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(ValidationError::invalid(
                            format!("{path}.preview_url"),
                            "must be true or false",
                        ));
                    }
                };
                WhatsAppContent::Text { body, preview_url }
            }
            "template" => parse_template(object(value, &path)?, &path)?,
            "interactive" => {
                validate_interactive(object(value, &path)?, &path)?;
                WhatsAppContent::Interactive(value.clone())
            }
            "reaction" => {
                let o = object(value, &path)?;
                let message_id =
                    required_string(o, "message_id", &format!("{path}.message_id"), 512)?;
                let emoji = string_field(o, "emoji", &format!("{path}.emoji"))?.unwrap_or_default();
                // One emoji, possibly several code points (skin tones, ZWJ sequences).
                check_len(&emoji, &format!("{path}.emoji"), 16)?;
                WhatsAppContent::Reaction { message_id, emoji }
            }
            "location" => parse_location(object(value, &path)?, &path)?,
            "contacts" => {
                let cards = array(Some(value), &path)?;
                if cards.is_empty() {
                    return Err(ValidationError::missing(format!("{path}[0]")));
                }
                if cards.len() > limits::CONTACT_CARDS {
                    return Err(ValidationError::too_many(&path, limits::CONTACT_CARDS));
                }
                for (i, card) in cards.iter().enumerate() {
                    let cpath = format!("{path}[{i}]");
                    let c = object(card, &cpath)?;
                    let npath = format!("{cpath}.name");
                    let name = object(
                        c.get("name")
                            .ok_or_else(|| ValidationError::missing(&npath))?,
                        &npath,
                    )?;
                    required_string(
                        name,
                        "formatted_name",
                        &format!("{npath}.formatted_name"),
                        256,
                    )?;
                }
                WhatsAppContent::Contacts(cards.to_vec())
            }
            media => {
                let kind = MediaKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == media)
                    .ok_or_else(|| ValidationError::invalid(&path, "unknown content"))?;
                parse_media(kind, object(value, &path)?, &path)?
            }
        };
        let reply_to = match obj.get("context") {
            None | Some(Value::Null) => None,
            Some(c) => {
                let cpath = format!("{prefix}context");
                let o = object(c, &cpath)?;
                Some(required_string(
                    o,
                    "message_id",
                    &format!("{cpath}.message_id"),
                    512,
                )?)
            }
        };
        Ok(Self {
            to,
            content,
            reply_to,
        })
    }

    /// The body of `POST /{phone-number-id}/messages`, exactly as Meta documents it.
    /// `callback_data` goes in `biz_opaque_callback_data` so status webhooks name our id.
    pub fn graph_body(&self, callback_data: &str) -> Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self.to.digits(),
            "biz_opaque_callback_data": callback_data,
        });
        let (kind, payload) = match &self.content {
            WhatsAppContent::Text { body, preview_url } => {
                ("text", json!({"preview_url": preview_url, "body": body}))
            }
            WhatsAppContent::Template {
                name,
                language,
                components,
            } => {
                let mut t = json!({"name": name, "language": {"code": language}});
                if !components.is_empty() {
                    t["components"] = Value::Array(components.clone());
                }
                ("template", t)
            }
            WhatsAppContent::Media {
                kind,
                source,
                caption,
                filename,
            } => {
                let mut m = match source {
                    MediaSource::Link(link) => json!({"link": link}),
                    MediaSource::Id(id) => json!({"id": id}),
                };
                if let Some(c) = caption {
                    m["caption"] = json!(c);
                }
                if let Some(f) = filename {
                    m["filename"] = json!(f);
                }
                (kind.as_str(), m)
            }
            WhatsAppContent::Interactive(v) => ("interactive", v.clone()),
            WhatsAppContent::Reaction { message_id, emoji } => (
                "reaction",
                json!({"message_id": message_id, "emoji": emoji}),
            ),
            WhatsAppContent::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let mut l = json!({"latitude": latitude, "longitude": longitude});
                if let Some(n) = name {
                    l["name"] = json!(n);
                }
                if let Some(a) = address {
                    l["address"] = json!(a);
                }
                ("location", l)
            }
            WhatsAppContent::Contacts(cards) => ("contacts", Value::Array(cards.clone())),
        };
        body["type"] = json!(kind);
        body[kind] = payload;
        if let Some(wamid) = &self.reply_to {
            body["context"] = json!({"message_id": wamid});
        }
        body
    }
}

const PARAMETER_TYPES: [&str; 8] = [
    "text",
    "currency",
    "date_time",
    "image",
    "document",
    "video",
    "payload",
    "location",
];

fn parse_template(o: &Map<String, Value>, path: &str) -> Result<WhatsAppContent> {
    let name = required_string(o, "name", &format!("{path}.name"), limits::TEMPLATE_NAME)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ValidationError::invalid(
            format!("{path}.name"),
            "template names are lowercase letters, digits and underscores",
        ));
    }
    // The contract takes `"language":"pt_BR"`; Meta's own `{"code":"pt_BR"}` is accepted too.
    let lpath = format!("{path}.language");
    let language = match o.get("language") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(l)) => required_string(l, "code", &format!("{lpath}.code"), 16)?,
        None | Some(Value::Null) => return Err(ValidationError::missing(&lpath)),
        Some(_) => {
            return Err(ValidationError::invalid(
                &lpath,
                "must be a language code such as pt_BR",
            ));
        }
    };
    let valid_code = (2..=16).contains(&language.len())
        && language
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_');
    if !valid_code {
        return Err(ValidationError::invalid(
            &lpath,
            "must be a language code such as pt_BR",
        ));
    }
    let mut components = match o.get("components") {
        None | Some(Value::Null) => Vec::new(),
        v => array(v, &format!("{path}.components"))?.to_vec(),
    };
    for component in &mut components {
        // Meta documents the button index as a string ("0"); accept a number and send that.
        if let Some(index) = component.get_mut("index")
            && let Some(n) = index.as_u64()
        {
            *index = Value::String(n.to_string());
        }
    }
    for (i, component) in components.iter().enumerate() {
        let cpath = format!("{path}.components[{i}]");
        let c = object(component, &cpath)?;
        let ctype = required_string(c, "type", &format!("{cpath}.type"), 32)?;
        if ![
            "header",
            "body",
            "button",
            "footer",
            "carousel",
            "limited_time_offer",
        ]
        .contains(&ctype.as_str())
        {
            return Err(ValidationError::invalid(
                format!("{cpath}.type"),
                "unknown component type",
            ));
        }
        if ctype == "button" {
            required_string(c, "sub_type", &format!("{cpath}.sub_type"), 32)?;
            let index = c.get("index");
            let index_ok = match index {
                Some(Value::String(s)) => s.parse::<u8>().is_ok(),
                Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n < 10),
                _ => false,
            };
            if !index_ok {
                return Err(ValidationError::invalid(
                    format!("{cpath}.index"),
                    "a button component needs its index, 0 to 9",
                ));
            }
        }
        let Some(parameters) = c.get("parameters") else {
            continue;
        };
        let ppath = format!("{cpath}.parameters");
        for (j, parameter) in array(Some(parameters), &ppath)?.iter().enumerate() {
            let pp = format!("{ppath}[{j}]");
            let p = object(parameter, &pp)?;
            let ptype = required_string(p, "type", &format!("{pp}.type"), 32)?;
            if !PARAMETER_TYPES.contains(&ptype.as_str()) {
                return Err(ValidationError::invalid(
                    format!("{pp}.type"),
                    "unknown parameter type",
                ));
            }
            // Each parameter carries its value under the key named by its type.
            match p.get(&ptype) {
                None | Some(Value::Null) => {
                    return Err(ValidationError::missing(format!("{pp}.{ptype}")));
                }
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return Err(ValidationError::missing(format!("{pp}.{ptype}")));
                }
                Some(_) => {}
            }
        }
    }
    Ok(WhatsAppContent::Template {
        name,
        language,
        components,
    })
}

fn parse_location(o: &Map<String, Value>, path: &str) -> Result<WhatsAppContent> {
    let coordinate = |key: &str, max: f64| -> Result<f64> {
        let p = format!("{path}.{key}");
        let v = o.get(key).ok_or_else(|| ValidationError::missing(&p))?;
        v.as_f64().filter(|x| x.abs() <= max).ok_or_else(|| {
            ValidationError::invalid(&p, format!("must be a number from -{max} to {max}"))
        })
    };
    let latitude = coordinate("latitude", 90.0)?;
    let longitude = coordinate("longitude", 180.0)?;
    let name = string_field(o, "name", &format!("{path}.name"))?;
    let address = string_field(o, "address", &format!("{path}.address"))?;
    for (text, key) in [(&name, "name"), (&address, "address")] {
        if let Some(t) = text {
            check_len(t, &format!("{path}.{key}"), 1000)?;
        }
    }
    Ok(WhatsAppContent::Location {
        latitude,
        longitude,
        name,
        address,
    })
}

fn parse_media(kind: MediaKind, o: &Map<String, Value>, path: &str) -> Result<WhatsAppContent> {
    let link = string_field(o, "link", &format!("{path}.link"))?;
    let id = string_field(o, "id", &format!("{path}.id"))?;
    let source = match (link, id) {
        (Some(link), None) => {
            let ok = link.starts_with("https://") || link.starts_with("http://");
            if !ok || link.len() > 2048 || link.chars().any(char::is_whitespace) {
                return Err(ValidationError::invalid(
                    format!("{path}.link"),
                    "must be an http(s) URL",
                ));
            }
            MediaSource::Link(link)
        }
        (None, Some(id)) if !id.trim().is_empty() && id.len() <= 256 => MediaSource::Id(id),
        (None, Some(_)) => {
            return Err(ValidationError::invalid(
                format!("{path}.id"),
                "must be a media id",
            ));
        }
        (None, None) => return Err(ValidationError::missing(format!("{path}.link"))),
        (Some(_), Some(_)) => {
            return Err(ValidationError::invalid(
                format!("{path}.id"),
                "give either link or id, not both",
            ));
        }
    };
    let caption = string_field(o, "caption", &format!("{path}.caption"))?;
    if let Some(c) = &caption {
        if !kind.takes_caption() {
            return Err(ValidationError::invalid(
                format!("{path}.caption"),
                format!("{} messages take no caption", kind.as_str()),
            ));
        }
        check_len(c, &format!("{path}.caption"), limits::CAPTION)?;
    }
    let filename = string_field(o, "filename", &format!("{path}.filename"))?;
    if let Some(f) = &filename {
        if kind != MediaKind::Document {
            return Err(ValidationError::invalid(
                format!("{path}.filename"),
                "only documents take a filename",
            ));
        }
        check_len(f, &format!("{path}.filename"), limits::FILENAME)?;
    }
    Ok(WhatsAppContent::Media {
        kind,
        source,
        caption,
        filename,
    })
}

fn validate_interactive(o: &Map<String, Value>, path: &str) -> Result<()> {
    let itype = required_string(o, "type", &format!("{path}.type"), 32)?;
    let known = [
        "button",
        "list",
        "cta_url",
        "flow",
        "product",
        "product_list",
        "location_request_message",
    ];
    if !known.contains(&itype.as_str()) {
        return Err(ValidationError::invalid(
            format!("{path}.type"),
            format!("one of {}", known.join(", ")),
        ));
    }
    let needs_body = itype != "product";
    match o.get("body") {
        Some(b) => {
            let bo = object(b, &format!("{path}.body"))?;
            required_string(
                bo,
                "text",
                &format!("{path}.body.text"),
                limits::INTERACTIVE_BODY,
            )?;
        }
        None if needs_body => return Err(ValidationError::missing(format!("{path}.body.text"))),
        None => {}
    }
    if let Some(footer) = o.get("footer") {
        let fo = object(footer, &format!("{path}.footer"))?;
        required_string(
            fo,
            "text",
            &format!("{path}.footer.text"),
            limits::INTERACTIVE_FOOTER,
        )?;
    }
    if let Some(header) = o.get("header") {
        let ho = object(header, &format!("{path}.header"))?;
        if ho.get("type").and_then(Value::as_str) == Some("text") {
            required_string(
                ho,
                "text",
                &format!("{path}.header.text"),
                limits::INTERACTIVE_HEADER_TEXT,
            )?;
        }
    }
    let apath = format!("{path}.action");
    let action = object(
        o.get("action")
            .ok_or_else(|| ValidationError::missing(&apath))?,
        &apath,
    )?;
    match itype.as_str() {
        "button" => {
            let bpath = format!("{apath}.buttons");
            let buttons = array(action.get("buttons"), &bpath)?;
            if buttons.is_empty() {
                return Err(ValidationError::missing(&bpath));
            }
            if buttons.len() > limits::REPLY_BUTTONS {
                return Err(ValidationError::too_many(&bpath, limits::REPLY_BUTTONS));
            }
            for (i, b) in buttons.iter().enumerate() {
                let p = format!("{bpath}[{i}]");
                let bo = object(b, &p)?;
                if bo.get("type").and_then(Value::as_str) != Some("reply") {
                    return Err(ValidationError::invalid(
                        format!("{p}.type"),
                        "must be reply",
                    ));
                }
                let rp = format!("{p}.reply");
                let r = object(
                    bo.get("reply")
                        .ok_or_else(|| ValidationError::missing(&rp))?,
                    &rp,
                )?;
                required_string(r, "id", &format!("{rp}.id"), limits::BUTTON_ID)?;
                required_string(r, "title", &format!("{rp}.title"), limits::BUTTON_TITLE)?;
            }
        }
        "list" => {
            required_string(
                action,
                "button",
                &format!("{apath}.button"),
                limits::LIST_BUTTON,
            )?;
            let spath = format!("{apath}.sections");
            let sections = array(action.get("sections"), &spath)?;
            if sections.is_empty() {
                return Err(ValidationError::missing(&spath));
            }
            if sections.len() > limits::LIST_SECTIONS {
                return Err(ValidationError::too_many(&spath, limits::LIST_SECTIONS));
            }
            let mut total_rows = 0;
            for (i, s) in sections.iter().enumerate() {
                let sp = format!("{spath}[{i}]");
                let so = object(s, &sp)?;
                if sections.len() > 1 {
                    required_string(so, "title", &format!("{sp}.title"), limits::ROW_TITLE)?;
                }
                let rpath = format!("{sp}.rows");
                let rows = array(so.get("rows"), &rpath)?;
                total_rows += rows.len();
                if total_rows > limits::LIST_ROWS {
                    return Err(ValidationError::too_many(&rpath, limits::LIST_ROWS));
                }
                for (j, row) in rows.iter().enumerate() {
                    let rp = format!("{rpath}[{j}]");
                    let ro = object(row, &rp)?;
                    required_string(ro, "id", &format!("{rp}.id"), limits::ROW_ID)?;
                    required_string(ro, "title", &format!("{rp}.title"), limits::ROW_TITLE)?;
                    if let Some(d) = string_field(ro, "description", &format!("{rp}.description"))?
                    {
                        check_len(&d, &format!("{rp}.description"), limits::ROW_DESCRIPTION)?;
                    }
                }
            }
            if total_rows == 0 {
                return Err(ValidationError::missing(format!("{spath}[0].rows")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A header value may not break the header: no CR, LF or other control characters.
fn check_header_safe(s: &str, path: &str) -> Result<()> {
    if s.chars().any(char::is_control) {
        Err(ValidationError::invalid(
            path,
            "must not contain line breaks or control characters",
        ))
    } else {
        Ok(())
    }
}

/// A light RFC 5322 check (`local@domain`, optionally `Name <local@domain>`); the SMTP
/// provider parses addresses fully with lettre before sending.
pub fn check_email_address(s: &str, path: &str) -> Result<()> {
    check_header_safe(s, path)?;
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(start), true) => &s[start + 1..s.len() - 1],
        _ => s,
    };
    let valid = addr.len() <= 254
        && addr.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains(char::is_whitespace)
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        });
    if valid {
        Ok(())
    } else {
        Err(ValidationError::invalid(
            path,
            "must be an email address such as ana@example.com",
        ))
    }
}

fn address_list(obj: &Map<String, Value>, key: &str, prefix: &str) -> Result<Vec<String>> {
    let path = format!("{prefix}{key}");
    let items: Vec<String> = match obj.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ValidationError::invalid(format!("{path}[{i}]"), "must be a string")
                })
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(ValidationError::invalid(
                &path,
                "must be an array of addresses",
            ));
        }
    };
    if items.len() > limits::EMAIL_RECIPIENTS {
        return Err(ValidationError::too_many(&path, limits::EMAIL_RECIPIENTS));
    }
    for (i, a) in items.iter().enumerate() {
        check_email_address(a, &format!("{path}[{i}]"))?;
    }
    Ok(items)
}

impl EmailMessage {
    fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<Self> {
        let to = address_list(obj, "to", prefix)?;
        if to.is_empty() {
            return Err(ValidationError::missing(format!("{prefix}to")));
        }
        let cc = address_list(obj, "cc", prefix)?;
        let bcc = address_list(obj, "bcc", prefix)?;
        let single = |key: &str| -> Result<Option<String>> {
            let path = format!("{prefix}{key}");
            let v = string_field(obj, key, &path)?;
            if let Some(a) = &v {
                check_email_address(a, &path)?;
            }
            Ok(v)
        };
        let from = single("from")?;
        let reply_to = single("reply_to")?;
        let spath = format!("{prefix}subject");
        // A template may bring its own subject; the send API checks one exists after rendering.
        let has_template = obj.get("template").is_some_and(|t| !t.is_null());
        let subject = match string_field(obj, "subject", &spath)? {
            None if has_template => String::new(),
            _ => required_string(obj, "subject", &spath, limits::EMAIL_SUBJECT)?,
        };
        check_header_safe(&subject, &spath)?;

        let text = string_field(obj, "text", &format!("{prefix}text"))?;
        let html = string_field(obj, "html", &format!("{prefix}html"))?;
        let body = match obj.get("template") {
            None | Some(Value::Null) => {
                if text.is_none() && html.is_none() {
                    return Err(ValidationError::new(
                        "missing_content",
                        format!("{prefix}text"),
                        "text, html or template is required",
                    ));
                }
                EmailBody::Content { text, html }
            }
            Some(t) => {
                let tpath = format!("{prefix}template");
                if text.is_some() || html.is_some() {
                    return Err(ValidationError::invalid(
                        &tpath,
                        "give a template or text/html, not both",
                    ));
                }
                let to = object(t, &tpath)?;
                let name = required_string(to, "name", &format!("{tpath}.name"), 128)?;
                let variables = match to.get("variables") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(_) => {
                        return Err(ValidationError::invalid(
                            format!("{tpath}.variables"),
                            "must be an object",
                        ));
                    }
                };
                EmailBody::Template { name, variables }
            }
        };
        let attachments =
            parse_attachments(obj.get("attachments"), &format!("{prefix}attachments"))?;
        Ok(Self {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            body,
            attachments,
        })
    }
}

fn parse_attachments(v: Option<&Value>, path: &str) -> Result<Vec<Attachment>> {
    use base64::Engine;
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        v => array(v, path)?,
    };
    if items.len() > limits::ATTACHMENTS {
        return Err(ValidationError::too_many(path, limits::ATTACHMENTS));
    }
    let mut total = 0;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let o = object(item, &p)?;
            let filename =
                required_string(o, "filename", &format!("{p}.filename"), limits::FILENAME)?;
            check_header_safe(&filename, &format!("{p}.filename"))?;
            let content_type = string_field(o, "content_type", &format!("{p}.content_type"))?
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let ct_ok = content_type
                .split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && !content_type
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace());
            if !ct_ok {
                return Err(ValidationError::invalid(
                    format!("{p}.content_type"),
                    "must be a MIME type such as application/pdf",
                ));
            }
            let encoded = required_string(
                o,
                "content_base64",
                &format!("{p}.content_base64"),
                usize::MAX,
            )?;
            let content = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|_| {
                    ValidationError::invalid(format!("{p}.content_base64"), "must be base64")
                })?;
            total += content.len();
            if total > limits::ATTACHMENT_BYTES {
                return Err(ValidationError::new(
                    "too_large",
                    &p,
                    format!(
                        "attachments may total at most {} bytes",
                        limits::ATTACHMENT_BYTES
                    ),
                ));
            }
            Ok(Attachment {
                filename,
                content_type,
                content,
            })
        })
        .collect()
}
