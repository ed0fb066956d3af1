//! The fuzz properties, as plain functions so the fuzz targets (`fuzz/fuzz_targets/`) and the
//! test suite run the same code: [`intake_input`] for webhook intake, [`send_input`] for the
//! send API's body parser and the provider payload it builds.
//!
//! **Webhook intake.**
//! One input is split into an App Secret, an `X-Hub-Signature-256` header and a body
//! ([`split_input`]), then [`intake_input`] checks that:
//! - `verify` accepts a header only if it is exactly the body's MAC under the secret (hex case
//!   aside), and never with an empty secret;
//! - `sign` then `verify` succeeds with the secret as current and as previous, and fails once
//!   a body byte is flipped;
//! - a body that [`WebhookPayload::from_slice`] accepts splits into events that each survive a
//!   JSON round trip unchanged (the inbound queue carries them as JSON);
//! - nothing panics on the way.

use crate::domain::events::InboundEvent;
use crate::domain::webhook::WebhookPayload;
use crate::intake::signature::{self, SecretUsed, SignatureError};
use std::borrow::Cow;

/// First byte of a structured input; any other first byte makes a plain input.
pub const STRUCTURED: u8 = 0x00;
/// Header length byte meaning "no header".
pub const NO_HEADER: u8 = 0xFF;
/// The secret plain inputs are signed with.
pub const PLAIN_SECRET: &[u8] = b"carteiro-fuzz-app-secret";

/// A property the intake code broke, described for the fuzzer's crash report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// One fuzz input, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzInput<'a> {
    pub secret: &'a [u8],
    pub header: Option<Cow<'a, str>>,
    pub body: &'a [u8],
}

/// Splits fuzz bytes:
/// - **structured** (`data[0] == 0x00`): `0x00, secret_len, secret, header_len, header, body`,
///   where `header_len == 0xFF` means no header and a non-UTF-8 header reads as `""`
///   (lengths are clamped to the bytes available);
/// - **plain** (anything else, e.g. a fixture file as is): the whole input is the body,
///   signed correctly with [`PLAIN_SECRET`], so JSON seeds reach the parser.
pub fn split_input(data: &[u8]) -> FuzzInput<'_> {
    let Some((&STRUCTURED, rest)) = data.split_first() else {
        return FuzzInput {
            secret: PLAIN_SECRET,
            header: Some(Cow::Owned(signature::sign(PLAIN_SECRET, data))),
            body: data,
        };
    };
    let (secret, rest) = take_prefixed(rest);
    let (header, body) = match rest.split_first() {
        Some((&NO_HEADER, body)) => (None, body),
        _ => {
            let (header, body) = take_prefixed(rest);
            (
                Some(Cow::Borrowed(std::str::from_utf8(header).unwrap_or(""))),
                body,
            )
        }
    };
    FuzzInput {
        secret,
        header,
        body,
    }
}

/// Builds the structured input [`split_input`] reads back (for seeds and tests). Parts longer
/// than 254 bytes are cut.
pub fn structured_input(secret: &[u8], header: Option<&str>, body: &[u8]) -> Vec<u8> {
    fn prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
        let bytes = &bytes[..bytes.len().min(usize::from(NO_HEADER) - 1)];
        out.push(u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(bytes);
    }
    let mut out = vec![STRUCTURED];
    prefixed(&mut out, secret);
    match header {
        Some(h) => prefixed(&mut out, h.as_bytes()),
        None => out.push(NO_HEADER),
    }
    out.extend_from_slice(body);
    out
}

/// A length byte, then that many bytes (fewer if the input ends first).
fn take_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&len, rest)) => rest.split_at(usize::from(len).min(rest.len())),
        None => (&[], &[]),
    }
}

/// Runs the intake properties over one fuzz input. `Err` names the broken property.
pub fn intake_input(data: &[u8]) -> Result<(), Violation> {
    let input = split_input(data);
    check_signature(&input)?;
    check_parse(input.body)
}

fn check_signature(input: &FuzzInput<'_>) -> Result<(), Violation> {
    let FuzzInput {
        secret,
        header,
        body,
    } = input;
    let header = header.as_deref();
    let expected = signature::sign(secret, body);
    let result = signature::verify(header, body, secret, None);
    // The prefix must be exact; the hex digits may be either case.
    let is_exact_mac = header.is_some_and(|h| {
        h.strip_prefix("sha256=")
            .zip(expected.strip_prefix("sha256="))
            .is_some_and(|(got, want)| got.eq_ignore_ascii_case(want))
    });
    match result {
        Ok(_) if secret.is_empty() => return violation("verify accepted an empty secret"),
        Ok(_) if !is_exact_mac => return violation("verify accepted a header that is not the MAC"),
        Err(e) if is_exact_mac && !secret.is_empty() => {
            return violation(format!("verify refused the exact MAC: {e}"));
        }
        Ok(SecretUsed::Previous) => {
            return violation("verify matched a previous secret it was not given");
        }
        Err(SignatureError::Missing) if header.is_some() => {
            return violation("verify called a present header missing");
        }
        _ => {}
    }
    if secret.is_empty() {
        return Ok(());
    }
    if signature::verify(Some(&expected), body, secret, None) != Ok(SecretUsed::Current) {
        return violation("sign then verify failed with the current secret");
    }
    // A longer secret is certainly a different one.
    let other = [secret, b"-rotated".as_slice()].concat();
    if signature::verify(Some(&expected), body, &other, Some(secret)) != Ok(SecretUsed::Previous) {
        return violation("sign then verify failed with the previous secret");
    }
    if let Some((first, rest)) = body.split_first() {
        let tampered = [&[first ^ 0x01][..], rest].concat();
        if signature::verify(Some(&expected), &tampered, secret, None)
            != Err(SignatureError::Mismatch)
        {
            return violation("verify accepted a body with a flipped bit");
        }
    }
    Ok(())
}

fn check_parse(body: &[u8]) -> Result<(), Violation> {
    // Refusing a body is fine; panicking or mangling an accepted one is not.
    let Ok(payload) = WebhookPayload::from_slice(body) else {
        return Ok(());
    };
    for event in payload.into_events() {
        let json = serde_json::to_string(&event)
            .map_err(|e| Violation(format!("event does not serialise: {e}")))?;
        let back: InboundEvent = serde_json::from_str(&json)
            .map_err(|e| Violation(format!("event does not deserialise: {e}: {json}")))?;
        if back != event {
            return violation(format!("event changed in a JSON round trip: {json}"));
        }
    }
    Ok(())
}

fn violation(message: impl Into<String>) -> Result<(), Violation> {
    Err(Violation(message.into()))
}

/// Runs the send-body properties over one fuzz input (the raw body bytes). `Err` names the
/// broken property. A body the parser accepts must
/// - build a provider payload (for the message and each fallback) of the message's channel
///   that survives the JSON round trip the record's storage puts it through;
/// - for WhatsApp, carry Carteiro's id in `biz_opaque_callback_data` and a string `to`;
/// - for email, build a MIME message (or be refused with a reason) whose header section holds
///   only the headers Carteiro writes — no header injected through a field — and no `Bcc`
///   header, while every Bcc address is in the envelope.
///
/// Refusing a body is always fine; panicking never is.
pub fn send_input(data: &[u8]) -> Result<(), Violation> {
    use crate::domain::message::{OutboundMessage, SendRequest};
    use crate::domain::payload::DeliveryPayload;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Ok(());
    };
    let Ok(request) = SendRequest::parse(&value) else {
        return Ok(());
    };
    let id = crate::domain::ids::MessageId::generate();
    for message in std::iter::once(&request.message).chain(&request.fallback) {
        let payload = DeliveryPayload::build(&id, message);
        if payload.channel() != message.channel() {
            return violation("the payload's channel is not the message's");
        }
        let json = serde_json::to_string(&payload)
            .map_err(|e| Violation(format!("payload does not serialise: {e}")))?;
        let back: DeliveryPayload = serde_json::from_str(&json)
            .map_err(|e| Violation(format!("payload does not deserialise: {e}: {json}")))?;
        if back != payload {
            return violation(format!("payload changed in a JSON round trip: {json}"));
        }
        match (&payload, message) {
            (DeliveryPayload::WhatsappGraphV1 { body, .. }, _) => {
                if body["biz_opaque_callback_data"] != id.as_str() {
                    return violation(format!("the Graph body lost Carteiro's id: {body}"));
                }
                if !body["to"].is_string() || body["messaging_product"] != "whatsapp" {
                    return violation(format!("the Graph body is malformed: {body}"));
                }
            }
            (DeliveryPayload::EmailV1 { email }, OutboundMessage::Email(_)) => {
                check_mime(email)?;
            }
            (DeliveryPayload::EmailV1 { .. }, _) => {
                return violation("an email payload for a WhatsApp message");
            }
            (DeliveryPayload::WebhookV1 { .. }, _) => {
                return violation("a callback payload for an app's message");
            }
        }
    }
    Ok(())
}

/// The headers the MIME builder writes; anything else in a header section was injected.
const EMAIL_HEADERS: [&str; 10] = [
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

fn check_mime(email: &crate::domain::message::EmailMessage) -> Result<(), Violation> {
    use crate::config::SmtpSettings;
    use crate::providers::email::{MailerOptions, SmtpMailer};
    let secret = || crate::secrets::SmtpSecret {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: 2525,
        smtp_user: None,
        smtp_password: None,
        from_email: "Loja <loja@example.com>".to_owned(),
        use_ssl: false,
        rate_limit: None,
        relays: Vec::new(),
    };
    static MAILER: std::sync::OnceLock<Option<SmtpMailer>> = std::sync::OnceLock::new();
    let mailer = MAILER.get_or_init(|| {
        SmtpMailer::new(
            &secret(),
            &SmtpSettings::default(),
            MailerOptions::default(),
        )
        .ok()
    });
    let Some(mailer) = mailer else {
        return violation("the fuzz mailer does not build");
    };
    let Ok(built) = mailer.build_message(email) else {
        return Ok(());
    };
    let raw = built.message.formatted();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    for line in head.split("\r\n") {
        // Folded continuation lines start with white space.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !EMAIL_HEADERS.contains(&name.as_str()) {
            return violation(format!("header {line:?} in the MIME message: {head}"));
        }
    }
    let envelope = built.message.envelope().to();
    for bcc in &email.bcc {
        if !envelope
            .iter()
            .any(|a| a.to_string().eq_ignore_ascii_case(bcc.trim()))
        {
            return violation(format!("Bcc {bcc} is not in the envelope"));
        }
    }
    Ok(())
}
