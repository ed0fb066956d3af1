//! The webhook-intake fuzz property, as a plain function so the fuzz target
//! (`fuzz/fuzz_targets/webhook_intake.rs`) and the test suite run the same code.
//!
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
