//! Providers: the clients that hand a message to the outside world, each with its own error
//! classification. Dispatch turns their [`SendOutcome`] into delivery state.

pub mod email;
pub mod email_sandbox;
pub mod templates;
pub mod whatsapp;

use crate::domain::delivery::DeliveryError;
use crate::ports::secrets::SecretError;
use std::time::Duration;

/// How a failed provider call should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Transient: retry with backoff and jitter (Meta 1, 2, 131000, 131016, 131057, 133004,
    /// 5xx, timeouts, connection resets; SMTP 4xx).
    Retryable,
    /// The sender is over a rate limit (Meta 4, 80007, 130429; HTTP 429; SMTP 454): retry later
    /// and slow down.
    Throttled,
    /// Meta 131056: too many messages to this one recipient; retry that recipient later.
    PairLimited,
    /// The credential was refused (Meta 190, 0; SMTP 535): refresh the secret once, then retry.
    Token,
    /// Will not succeed as it is (everything else): fail, keeping the provider's reason.
    Permanent,
}

impl FailureClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Throttled => "throttled",
            Self::PairLimited => "pair_limited",
            Self::Token => "token",
            Self::Permanent => "permanent",
        }
    }
}

/// A provider call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub class: FailureClass,
    /// The provider's code and words, kept for the record and the app.
    pub error: DeliveryError,
    /// A wait the provider asked for (Retry-After), if any.
    pub retry_after: Option<Duration>,
}

/// What a provider call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message. `provider_message_id` is the wamid or the SMTP
    /// Message-ID; `message_status` is Meta's `accepted` / `held_for_quality_assessment` /
    /// `paused`, when given.
    Accepted {
        provider_message_id: String,
        message_status: Option<String>,
    },
    Failed(SendFailure),
}

/// The failure for a provider whose credentials could not be read: a secret store that is
/// down is worth retrying; a secret that is missing or malformed needs an operator.
pub fn secret_failure(e: &SecretError, not_configured_code: &str) -> SendFailure {
    let (class, code) = match e {
        SecretError::Unavailable(_) => (FailureClass::Retryable, "secret_unavailable"),
        SecretError::Missing(_) | SecretError::Malformed { .. } => {
            (FailureClass::Permanent, not_configured_code)
        }
    };
    SendFailure {
        class,
        error: DeliveryError {
            source: "carteiro".to_owned(),
            code: code.to_owned(),
            // SecretError's messages never quote a secret value.
            message: e.to_string(),
            details: None,
        },
        retry_after: None,
    }
}
