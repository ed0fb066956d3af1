//! WhatsApp messages of the send API: every content kind Meta's `/messages` takes, checked
//! as Meta documents it, and the exact Graph API body built from them.

use super::*;

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
        /// `"category"`: `marketing`, `utility` or `authentication`, as approved by Meta. Not sent
        /// to Meta; a marketing template is held back from users who stopped marketing.
        category: Option<String>,
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

impl WhatsAppMessage {
    /// A template its sender marked `"category": "marketing"`.
    pub fn is_marketing(&self) -> bool {
        matches!(&self.content, WhatsAppContent::Template { category: Some(c), .. } if c == "marketing")
    }

    pub(super) fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<Self> {
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
                ..
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
    let category = match o.get("category") {
        None | Some(Value::Null) => None,
        Some(Value::String(c))
            if ["marketing", "utility", "authentication"].contains(&c.as_str()) =>
        {
            Some(c.clone())
        }
        Some(_) => {
            return Err(ValidationError::invalid(
                format!("{path}.category"),
                "must be marketing, utility or authentication",
            ));
        }
    };
    Ok(WhatsAppContent::Template {
        name,
        language,
        components,
        category,
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
