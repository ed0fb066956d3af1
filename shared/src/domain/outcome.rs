//! What a provider call comes to, in channel-neutral terms: accepted with the provider's id,
//! or a failure of a class that decides what happens next. Every provider classifies its own
//! errors into these; dispatch, the resilience policies and the sweeper only ever see these.

use crate::domain::delivery::DeliveryError;
use std::time::Duration;

/// How a failed provider call should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Transient and provably not sent: retry with backoff and jitter (Meta 1, 2, 131000,
    /// 131016, 131057, 133004, 5xx, connect errors; SMTP 4xx).
    Retryable,
    /// The sender is over a rate limit (Meta 4, 80007, 130429; HTTP 429; SMTP 454): retry later
    /// and slow down.
    Throttled,
    /// Meta 131056: too many messages to this one recipient; retry that recipient later.
    PairLimited,
    /// The credential was refused (Meta 190, 0; SMTP 535): refresh the secret once, then retry.
    Token,
    /// The request was written but no answer came (a Graph timeout after the body was sent, an
    /// SMTP session lost after `DATA`): the provider may have taken the message. Wait for a
    /// status to settle it before trying again.
    Unknown,
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
            Self::Unknown => "unknown",
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

impl SendFailure {
    /// A failure Carteiro itself decided on (not a provider's answer).
    pub fn carteiro(class: FailureClass, code: &str, message: impl Into<String>) -> Self {
        Self {
            class,
            error: DeliveryError::carteiro(code, message),
            retry_after: None,
        }
    }
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
        /// What the provider answered beyond that, truncated (a callback endpoint's body).
        response: Option<String>,
    },
    Failed(SendFailure),
}

impl SendOutcome {
    /// The failure class, if the call failed.
    pub fn failure_class(&self) -> Option<FailureClass> {
        match self {
            Self::Accepted { .. } => None,
            Self::Failed(f) => Some(f.class),
        }
    }
}
