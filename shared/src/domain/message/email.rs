//! Emails of the send API: addresses, subject, body or template, attachments, each checked
//! so nothing can break a header.

use super::*;

/// The id of the `smtp` secret's own server among its relays (what an email without
/// `"relay"` goes through).
pub const PRIMARY_RELAY: &str = "primary";

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
    /// `"relay"`: the SMTP relay of the `smtp` secret to send through (its `relays[].id`);
    /// absent: the secret's own server. A fallback names another relay to fail over to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
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
    pub(super) fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<Self> {
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
        let relay = match obj.get("relay") {
            None | Some(Value::Null) => None,
            Some(Value::String(r))
                if (1..=64).contains(&r.len())
                    && r.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(r.clone())
            }
            Some(_) => {
                return Err(ValidationError::invalid(
                    format!("{prefix}relay"),
                    "must name a relay of the smtp secret (letters, digits, - and _)",
                ));
            }
        };
        Ok(Self {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            body,
            attachments,
            relay,
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
