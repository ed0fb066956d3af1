//! Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`,
//! keyed with the secret's bytes (the base64 after `whsec_`). Several secrets (a rotation) give
//! several space-separated signatures; a receiver accepts any match.
//!
//! Signing is one HMAC, done here with the `hmac` crate every function already links rather
//! than the `standardwebhooks` crate, whose signer takes one secret and would add a second
//! base64 and the `time` crate to every Lambda; the tests verify what this writes with that
//! crate (docs/callbacks.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a secret cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a callback signing secret must be whsec_ followed by base64")]
pub struct InvalidSecret;

/// The key bytes of a `whsec_<base64>` secret (a secret without the prefix is taken as
/// base64 too, as the Standard Webhooks libraries do).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    match STANDARD.decode(b64) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(InvalidSecret),
    }
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let prefix = format!("{id}.{timestamp}.");
    keys.iter()
        .filter_map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
            mac.update(prefix.as_bytes());
            mac.update(body);
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and Svix's documentation).
    #[test]
    fn the_specification_example_signs_as_published() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_default();
        let signature = sign(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures_and_bad_secrets_are_refused() {
        let a = secret_key("whsec_c2VjcmV0LWE=").unwrap_or_default();
        let b = secret_key("whsec_c2VjcmV0LWI=").unwrap_or_default();
        let both = sign(&[a.clone(), b], "evt_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&[a], "evt_1", 1, b"{}"));
        assert_ne!(parts[0], parts[1]);
        assert_eq!(secret_key("whsec_!!!"), Err(InvalidSecret));
        assert_eq!(secret_key("whsec_"), Err(InvalidSecret));
    }
}
