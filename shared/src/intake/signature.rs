//! `X-Hub-Signature-256` verification (REFERENCE §1.2).
//!
//! Meta signs every webhook POST with HMAC-SHA256, keyed with the **App Secret**, over the
//! body bytes exactly as sent, and puts `sha256=<64 lowercase hex>` in the header. Verify
//! before parsing, over the raw bytes: a re-serialised body does not match, because Meta
//! escapes non-ASCII, `/`, `<`, `%` and `@` in ways serde does not reproduce.
//!
//! After an App Secret reset Meta may still retry deliveries signed with the old one, so a
//! previous secret can be tried second; the caller logs which one matched.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header, in the lowercase form `http::HeaderMap` lookups use.
pub const HEADER: &str = "x-hub-signature-256";

/// The only prefix Meta sends on this header.
const PREFIX: &str = "sha256=";

/// Hex digits in a SHA-256 MAC.
const HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Which secret the signature matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUsed {
    Current,
    /// The secret before the last reset: expected only for a while after it.
    Previous,
}

/// Why a signature was refused. The messages are safe for a JSON error body: they never echo
/// the header, the body or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("X-Hub-Signature-256 header is malformed: expected sha256= and 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the request body")]
    Mismatch,
}

/// The header value Meta would send for `body` signed with `secret`: `sha256=<64 lowercase
/// hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let digest = mac(secret, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{PREFIX}{digest}")
}

/// Checks `header` (the `X-Hub-Signature-256` value, `None` when absent) against `body`,
/// with the `current` secret first and then `previous`, if any.
///
/// The comparison is over the raw MAC bytes, in constant time. Hex digits may be either case.
/// An empty secret never matches: HMAC accepts an empty key, and a misconfigured empty secret
/// must not let anyone who knows that sign webhooks. A header value that is not valid UTF-8
/// should be passed as `Some("")` (it is then [`SignatureError::Malformed`]).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    current: &[u8],
    previous: Option<&[u8]>,
) -> Result<SecretUsed, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header
        .strip_prefix(PREFIX)
        .filter(|hex| hex.len() == HEX_LEN)
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; HEX_LEN / 2];
    hex::decode_to_slice(hex, &mut expected).map_err(|_| SignatureError::Malformed)?;

    let matches = |secret: &[u8]| {
        !secret.is_empty()
            && mac(secret, body).is_some_and(|mac| mac.verify_slice(&expected).is_ok())
    };
    if matches(current) {
        Ok(SecretUsed::Current)
    } else if previous.is_some_and(matches) {
        Ok(SecretUsed::Previous)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// HMAC-SHA256 of `body`. HMAC takes a key of any length, so this is always `Some`; the
/// `Option` keeps the code panic-free and fails closed (no match, a malformed `sign`) if the
/// crate ever refused a key.
fn mac(secret: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac)
}
