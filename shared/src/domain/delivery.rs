//! The delivery record and its state machine.
//!
//! A record is created `queued` by the send API and moved by dispatch (`sending`, `sent`,
//! `retry_scheduled`, `failed`, `dead`) and by Meta's status webhooks (`sent`, `delivered`,
//! `read`, `failed`). Webhooks arrive late, duplicated and out of order, so the statuses they
//! report are merged with a *maximum* over a fixed rank rather than applied in arrival order:
//! the result is the same whatever order and however often they arrive.
//!
//! Every change bumps `version`; stores write a record only if the stored version is the one
//! it was read at, which makes each transition a conditional write.

use crate::domain::ids::{MessageId, Wamid};
use crate::domain::payload::DeliveryPayload;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// How long after a record's failure was written the sweeper takes its fallback step if the
/// worker that wrote it did not (it died in between): the worker takes it within
/// milliseconds, so this is only ever the crash case.
pub const FALLBACK_STEP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Which provider a delivery goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Whatsapp,
    Email,
    /// A signed callback to the app (Standard Webhooks).
    Webhook,
}

impl Channel {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }
}

/// Where a delivery stands. The wire names are part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sending,
    RetryScheduled,
    Sent,
    Delivered,
    Read,
    Failed,
    Dead,
    Cancelled,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::RetryScheduled => "retry_scheduled",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// How far the message has provably got. Evidence of delivery outranks a failure report
    /// (a `delivered` after a `failed` means it was delivered after all), and a failure
    /// outranks a bare `sent`.
    const fn rank(self) -> u8 {
        match self {
            Self::Queued | Self::Sending | Self::RetryScheduled => 0,
            Self::Sent => 1,
            Self::Failed | Self::Dead | Self::Cancelled => 2,
            Self::Delivered => 3,
            Self::Read => 4,
        }
    }

    /// No more provider work is due for this record.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Sending | Self::RetryScheduled)
    }
}

/// A status Meta reported for a sent message (`statuses[].status`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Sent,
    Delivered,
    Read,
    /// A voice message played for the first time; implies `read`.
    Played,
    Failed,
    /// A status this version of Carteiro does not know; recorded, never acted on.
    #[serde(untagged)]
    Other(String),
}

impl ProviderStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
            Self::Other(s) => s,
        }
    }

    /// The delivery status this report proves, if any.
    const fn implies(&self) -> Option<DeliveryStatus> {
        match self {
            Self::Sent => Some(DeliveryStatus::Sent),
            Self::Delivered => Some(DeliveryStatus::Delivered),
            Self::Read | Self::Played => Some(DeliveryStatus::Read),
            Self::Failed => Some(DeliveryStatus::Failed),
            Self::Other(_) => None,
        }
    }
}

/// A provider's reason for a failure, kept as the provider said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryError {
    /// `whatsapp`, `smtp`, `carteiro`, ...
    pub source: String,
    /// The provider's code (`131049`, `550`, ...), as a string so every provider fits.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl DeliveryError {
    /// An error Carteiro itself reports (`source` `carteiro`), not a provider's.
    pub fn carteiro(code: &str, message: impl Into<String>) -> Self {
        Self {
            source: "carteiro".to_owned(),
            code: code.to_owned(),
            message: message.into(),
            details: None,
        }
    }
}

/// One provider call and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Timestamp,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<String>,
    /// What the provider said of an accepted message (Meta's `message_status`:
    /// `accepted`, `held_for_quality_assessment`, `paused`; `sandbox` locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    pub latency_ms: u64,
    /// What the provider answered beyond its code, truncated: a callback endpoint's response
    /// body, Meta's `error_data.details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// For an `unknown` attempt: how its fate was settled — `status_webhook` (the provider
    /// reported the message, so it was sent and not tried again) or `retried` (no status came
    /// within the reconciliation window; the next attempt may have duplicated it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<String>,
}

/// One path of a fallback chain, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackStep {
    pub recipient: String,
    pub payload: DeliveryPayload,
}

/// When a fallback is taken before its path fails on its own: the send body's
/// `fallback_after` (a message still held back by an open circuit breaker that long after
/// acceptance) and `if_not_delivered_within` (a WhatsApp message not `delivered` that long
/// after acceptance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FallbackRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_within_ms: Option<u64>,
}

/// Why a fallback was taken while its path had not failed: its WhatsApp message was not
/// delivered in time.
pub const NOT_DELIVERED_IN_TIME: &str = "not_delivered_in_time";

/// The id of the delivery that takes over when `id` fails for good: derived, so the step is
/// taken once however often the failure is seen.
pub fn fallback_id(id: &MessageId) -> MessageId {
    MessageId::derived(&["fallback", id.as_str()])
}

/// A due attempt put off by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    pub at: Timestamp,
    /// The limit reached: `whatsapp_throughput`, `whatsapp_pair`.
    pub limit: String,
    /// When the job comes back.
    pub until: Timestamp,
}

/// The outcome name of an attempt whose result nobody knows.
pub const UNKNOWN_OUTCOME: &str = "unknown";

/// A message's own retry limits, from the send body's `"retry"` (bounded by the global ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetryLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Milliseconds after creation past which no attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
}

/// Why a record cannot be claimed for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefused {
    /// Nothing left to send.
    Terminal,
    /// Another worker holds the lease.
    InFlight { lease_expires_at: Timestamp },
    /// A retry is scheduled for later.
    NotDue { next_attempt_at: Timestamp },
    /// Cancelled by an operator.
    Cancelled,
}

/// Why an operator action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRefused {
    /// Cancel: the message is being sent or is finished.
    NotCancellable,
    /// Retry: the message is neither `failed` nor `dead`.
    NotRetryable,
}

/// How an attempt ended, as dispatch decided from the provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Accepted {
        provider_message_id: String,
        provider_status: Option<String>,
    },
    Retry {
        at: Timestamp,
        error: DeliveryError,
    },
    Failed {
        error: DeliveryError,
    },
    Dead {
        error: DeliveryError,
    },
}

/// A status report received from the provider, one per distinct status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEvent {
    pub status: ProviderStatus,
    /// When the provider says it happened.
    pub at: Timestamp,
    /// When Carteiro learnt of it.
    pub received_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeliveryError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<serde_json::Value>,
}

/// A status update for one message, taken from a webhook and ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub wamid: Wamid,
    pub status: ProviderStatus,
    pub at: Timestamp,
    pub error: Option<DeliveryError>,
    pub pricing: Option<serde_json::Value>,
    pub conversation: Option<serde_json::Value>,
    /// Echo of what the send put in `biz_opaque_callback_data`: Carteiro's message id.
    pub callback_data: Option<String>,
}

/// What applying a status did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// The record changed (a new history entry, perhaps a new status); write it.
    Applied,
    /// This status was already recorded; nothing to write.
    Duplicate,
}

/// Everything Carteiro knows about one message it was asked to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: MessageId,
    /// Bumped on every change; stores write only over the version a record was read at.
    pub version: u64,
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// E.164 number or email address. Returned to the owner; masked in logs.
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// The wamid or SMTP Message-ID once the provider accepted the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// While `sending`: until when the claiming worker owns the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<Timestamp>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub events: Vec<ProviderEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<DeliveryError>,
    /// The message as accepted by the send API (its `metadata` is shown back to the app).
    #[serde(default)]
    pub request: serde_json::Value,
    /// What the provider is handed, built once at acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<DeliveryPayload>,
    /// The message's own retry limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryLimits>,
    /// Attempts before this one don't count against the budget: set when an operator retries a
    /// `dead` or `failed` message.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub budget_start: u32,
    /// When the current attempt budget started (creation, or an operator's retry); the
    /// maximum age counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_started_at: Option<Timestamp>,
    /// Carried from the accepting request into the consumers' logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The send API could not queue this record's job (it answered 503): a retry with the same
    /// Idempotency-Key queues it, and so does the sweeper.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job_not_queued: bool,
    /// The paths still to try, in order, should this one fail for good: each a ready payload
    /// for the delivery [`fallback_id`] names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<FallbackStep>,
    /// For a fallback: the delivery whose failure it stands in for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_of: Option<MessageId>,
    /// When to take the fallback early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_rules: Option<FallbackRules>,
    /// Set when the fallback was taken although this path had not failed
    /// ([`NOT_DELIVERED_IN_TIME`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Set once this record's next fallback step exists and is queued. Until then a record
    /// whose fallback is due stays in the sweeper's view ([`Self::sweep_due_at`]), so a crash
    /// between writing the failure and taking the step leaves nothing behind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback_taken: bool,
    /// Times a due attempt was put off because a rate limit was reached (not attempts: they
    /// spend nothing of the retry budget).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deferral: Option<Deferral>,
    /// Not to be attempted before this delivery has finished (sent, failed or given up): the
    /// previous event of the same contact to an `ordered` callback endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<MessageId>,
}

pub(crate) const fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryRecord {
    /// A new record, `queued`, at version 1.
    pub fn new_queued(
        id: MessageId,
        channel: Channel,
        recipient: impl Into<String>,
        request: serde_json::Value,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            version: 1,
            channel,
            status: DeliveryStatus::Queued,
            recipient: recipient.into(),
            api_key_id: None,
            provider_message_id: None,
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            lease_expires_at: None,
            attempts: Vec::new(),
            events: Vec::new(),
            last_error: None,
            request,
            payload: None,
            retry: None,
            budget_start: 0,
            budget_started_at: None,
            correlation_id: None,
            job_not_queued: false,
            fallbacks: Vec::new(),
            fallback_of: None,
            fallback_rules: None,
            fallback_reason: None,
            fallback_taken: false,
            deferrals: 0,
            last_deferral: None,
            after: None,
        }
    }

    /// The fallback delivery this record's failure starts, if it has a path left: created
    /// `queued`, owned like this one, with the remaining paths after it.
    pub fn fallback_delivery(&self, now: Timestamp) -> Option<Self> {
        let (step, rest) = self.fallbacks.split_first()?;
        let mut next = Self::new_queued(
            fallback_id(&self.id),
            step.payload.channel(),
            step.recipient.clone(),
            self.request.clone(),
            now,
        );
        next.api_key_id.clone_from(&self.api_key_id);
        next.payload = Some(step.payload.clone());
        next.retry = self.retry;
        next.correlation_id.clone_from(&self.correlation_id);
        next.fallbacks = rest.to_vec();
        next.fallback_of = Some(self.id.clone());
        next.fallback_rules = self.fallback_rules;
        Some(next)
    }

    /// The WhatsApp contact (wa_id, digits) whose conversation lists this record, if any.
    pub fn conversation_contact(&self) -> Option<String> {
        (self.channel == Channel::Whatsapp)
            .then(|| self.recipient.trim_start_matches('+').to_owned())
    }

    /// The next attempt's number.
    pub fn next_attempt_number(&self) -> u32 {
        u32::try_from(self.attempts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Attempts made in the current budget.
    pub fn attempts_in_budget(&self) -> u32 {
        u32::try_from(self.attempts.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(self.budget_start)
    }

    /// When the current attempt budget started.
    pub fn budget_started(&self) -> Timestamp {
        self.budget_started_at.unwrap_or(self.created_at)
    }

    /// When the sweeper should look at this record, if ever: a `queued` record from its
    /// creation (the sweeper leaves it a grace period for its job), a scheduled retry when it
    /// is due, a `sending` record when its lease runs out, a `sent` one at its delivery
    /// deadline, and one whose fallback is due but not taken [`FALLBACK_STEP_GRACE`] after it
    /// was written.
    pub fn sweep_due_at(&self) -> Option<Timestamp> {
        if self.fallback_pending() {
            return Some(self.updated_at.plus(FALLBACK_STEP_GRACE));
        }
        match self.status {
            DeliveryStatus::Queued => Some(self.next_attempt_at.unwrap_or(self.created_at)),
            DeliveryStatus::RetryScheduled => Some(self.next_attempt_at.unwrap_or(self.updated_at)),
            DeliveryStatus::Sending => Some(self.lease_expires_at.unwrap_or(self.updated_at)),
            DeliveryStatus::Sent => self.delivery_deadline(),
            _ => None,
        }
    }

    /// A `sending` record whose lease ran out: its worker died mid-call, so the provider may
    /// or may not have the message. Logs an `unknown` attempt and schedules the next one after
    /// the reconciliation window `wait` from the lease's end, so a status webhook can settle
    /// it first. Returns false when the record is not such a record.
    pub fn recover_expired_lease(&mut self, now: Timestamp, wait: std::time::Duration) -> bool {
        let Some(until) = self.lease_expires_at else {
            return false;
        };
        if self.status != DeliveryStatus::Sending || until > now {
            return false;
        }
        self.attempts.push(Attempt {
            number: self.next_attempt_number(),
            started_at: self.updated_at,
            outcome: UNKNOWN_OUTCOME.to_owned(),
            provider_code: Some("lease_expired".to_owned()),
            provider_status: None,
            latency_ms: 0,
            details: None,
            settled: None,
        });
        self.status = DeliveryStatus::RetryScheduled;
        self.lease_expires_at = None;
        self.next_attempt_at = Some(until.plus(wait));
        self.updated_at = now;
        true
    }

    /// How many of the latest attempts in a row Meta refused for the pair rate (131056).
    pub fn pair_refusals_in_a_row(&self) -> u32 {
        let n = self
            .attempts
            .iter()
            .rev()
            .take_while(|a| a.outcome == crate::domain::outcome::FailureClass::PairLimited.as_str())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether the next fallback step is due: this path failed for good, or was overtaken
    /// ([`Self::fallback_reason`]).
    pub fn fallback_due(&self) -> bool {
        matches!(self.status, DeliveryStatus::Failed | DeliveryStatus::Dead)
            || self.fallback_reason.is_some()
    }

    /// A fallback step is due and has not been taken yet.
    pub fn fallback_pending(&self) -> bool {
        self.fallback_due() && !self.fallbacks.is_empty() && !self.fallback_taken
    }

    /// When a `sent` WhatsApp message must be `delivered` by, or its fallback is taken
    /// (`if_not_delivered_within`); `None` once taken, or without a rule or a fallback.
    pub fn delivery_deadline(&self) -> Option<Timestamp> {
        if self.channel != Channel::Whatsapp
            || self.fallbacks.is_empty()
            || self.fallback_reason.is_some()
        {
            return None;
        }
        let within = self.fallback_rules?.delivered_within_ms?;
        Some(
            self.created_at
                .plus(std::time::Duration::from_millis(within)),
        )
    }

    /// When a message held back by an open circuit takes its fallback (`fallback_after` after
    /// acceptance); `None` without the rule or a fallback.
    pub fn circuit_fallback_at(&self) -> Option<Timestamp> {
        let after = self.fallback_rules?.after_ms?;
        (!self.fallbacks.is_empty()).then(|| {
            self.created_at
                .plus(std::time::Duration::from_millis(after))
        })
    }

    /// Whether a message held back by an open circuit has waited past its `fallback_after`.
    pub fn circuit_fallback_due(&self, now: Timestamp) -> bool {
        self.circuit_fallback_at().is_some_and(|at| at <= now)
    }

    /// Refuses a message that is waiting (`queued` or `retry_scheduled`) without an attempt:
    /// `failed` with `error` (a suppressed recipient, a circuit open past `fallback_after`).
    pub fn refuse(&mut self, error: DeliveryError, now: Timestamp) -> bool {
        if !matches!(
            self.status,
            DeliveryStatus::Queued | DeliveryStatus::RetryScheduled
        ) {
            return false;
        }
        self.status = DeliveryStatus::Failed;
        self.next_attempt_at = None;
        self.last_error = Some(error);
        self.updated_at = now;
        true
    }

    /// Gives the message up (`dead`) with `error`, if it is not finished already.
    pub fn give_up(&mut self, error: DeliveryError, now: Timestamp) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.status = DeliveryStatus::Dead;
        self.next_attempt_at = None;
        self.lease_expires_at = None;
        self.last_error = Some(error);
        self.updated_at = now;
        true
    }

    /// `POST /v1/messages/{id}/cancel`: a `queued` or `retry_scheduled` message is cancelled.
    pub fn cancel(&mut self, now: Timestamp) -> Result<(), ActionRefused> {
        match self.status {
            DeliveryStatus::Queued | DeliveryStatus::RetryScheduled => {
                self.status = DeliveryStatus::Cancelled;
                self.next_attempt_at = None;
                self.updated_at = now;
                Ok(())
            }
            _ => Err(ActionRefused::NotCancellable),
        }
    }

    /// `POST /v1/messages/{id}/retry`: a `dead` or `failed` message gets a fresh attempt
    /// budget and is `queued` again.
    pub fn retry_fresh(&mut self, now: Timestamp) -> Result<(), ActionRefused> {
        match self.status {
            DeliveryStatus::Dead | DeliveryStatus::Failed => {
                self.status = DeliveryStatus::Queued;
                self.next_attempt_at = None;
                self.lease_expires_at = None;
                self.budget_start = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
                self.budget_started_at = Some(now);
                self.updated_at = now;
                Ok(())
            }
            _ => Err(ActionRefused::NotRetryable),
        }
    }

    /// `POST /v1/events/{id}/replay`: a finished delivery (sent included) is `queued` again
    /// with a fresh attempt budget; its payload, and so a callback's `webhook-id`, is the same.
    pub fn replay(&mut self, now: Timestamp) -> Result<(), ActionRefused> {
        if !self.status.is_terminal() {
            return Err(ActionRefused::NotRetryable);
        }
        self.status = DeliveryStatus::Queued;
        self.next_attempt_at = None;
        self.lease_expires_at = None;
        self.after = None;
        self.budget_start = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
        self.budget_started_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// Claims the record for one provider attempt: `queued|retry_scheduled → sending`, when
    /// due. A `sending` record is never claimed: while its lease runs another worker holds it,
    /// and after that [`Self::recover_expired_lease`] turns it into a scheduled retry first.
    /// Returns the attempt number. The caller writes the record with a version check, so only
    /// one claim wins.
    pub fn claim(
        &mut self,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<u32, ClaimRefused> {
        match self.status {
            DeliveryStatus::Queued | DeliveryStatus::RetryScheduled => {
                if let Some(at) = self.next_attempt_at
                    && at > now
                {
                    return Err(ClaimRefused::NotDue {
                        next_attempt_at: at,
                    });
                }
            }
            DeliveryStatus::Sending => {
                return Err(ClaimRefused::InFlight {
                    lease_expires_at: self.lease_expires_at.unwrap_or(now),
                });
            }
            DeliveryStatus::Cancelled => return Err(ClaimRefused::Cancelled),
            _ => return Err(ClaimRefused::Terminal),
        }
        // No status settled an earlier unknown attempt within its window: this one may send
        // the message a second time, and the log says so.
        for a in &mut self.attempts {
            if a.outcome == UNKNOWN_OUTCOME && a.settled.is_none() {
                a.settled = Some("retried".to_owned());
            }
        }
        self.status = DeliveryStatus::Sending;
        self.job_not_queued = false;
        self.lease_expires_at = Some(now.plus(lease));
        self.next_attempt_at = None;
        self.version += 1;
        self.updated_at = now;
        Ok(self.next_attempt_number())
    }

    /// Hands back a claim no call was made for (a breaker or a rate limit said wait): the
    /// record is as it was before the claim (`before`), plus the deferral. False when it is no
    /// longer `sending` (a status webhook settled it meanwhile).
    pub fn release_claim(&mut self, before: &DeliveryRecord, deferral: Deferral) -> bool {
        if self.status != DeliveryStatus::Sending {
            return false;
        }
        self.status = before.status;
        self.next_attempt_at = before.next_attempt_at;
        self.lease_expires_at = None;
        self.job_not_queued = before.job_not_queued;
        // The claim marked unsettled unknown attempts `retried`; no retry was made.
        for (a, b) in self.attempts.iter_mut().zip(&before.attempts) {
            if b.settled.is_none() && a.settled.as_deref() == Some("retried") {
                a.settled = None;
            }
        }
        self.deferrals = self.deferrals.saturating_add(1);
        self.updated_at = deferral.at;
        self.last_deferral = Some(deferral);
        true
    }

    /// Records how an attempt ended. Safe to re-apply to a fresher copy of the record after a
    /// write conflict: a status webhook that got there first (the provider's `sent` can beat
    /// our own write) keeps its higher rank, and the attempt is recorded once.
    pub fn finish_attempt(&mut self, attempt: Attempt, result: AttemptResult, now: Timestamp) {
        match self
            .attempts
            .iter_mut()
            .find(|a| a.number == attempt.number)
        {
            // The sweeper logged this attempt as unknown when its lease ran out; this is what
            // actually happened.
            Some(known) if known.provider_code.as_deref() == Some("lease_expired") => {
                *known = attempt;
            }
            Some(_) => {}
            None => {
                self.attempts.push(attempt);
                self.attempts.sort_by_key(|a| a.number);
            }
        }
        self.lease_expires_at = None;
        let in_flight = self.status.rank() == 0;
        // A status webhook beat this finish: the provider has the message, so an attempt whose
        // outcome was unknown (this one, say: a timeout after Meta took it) reached it.
        if !in_flight && self.events.iter().any(|e| e.status.implies().is_some()) {
            self.settle_unknown_attempts();
        }
        match result {
            AttemptResult::Accepted {
                provider_message_id,
                ..
            } => {
                if self.provider_message_id.is_none() {
                    self.provider_message_id = Some(provider_message_id);
                }
                if in_flight {
                    self.status = DeliveryStatus::Sent;
                    self.next_attempt_at = None;
                }
            }
            AttemptResult::Retry { at, error } => {
                if in_flight {
                    self.status = DeliveryStatus::RetryScheduled;
                    self.next_attempt_at = Some(at);
                    self.last_error = Some(error);
                }
            }
            AttemptResult::Failed { error } => self.end(in_flight, DeliveryStatus::Failed, error),
            AttemptResult::Dead { error } => self.end(in_flight, DeliveryStatus::Dead, error),
        }
        self.version += 1;
        self.updated_at = now;
    }

    fn end(&mut self, in_flight: bool, status: DeliveryStatus, error: DeliveryError) {
        if in_flight {
            self.status = status;
            self.next_attempt_at = None;
            self.last_error = Some(error);
        }
    }

    fn settle_unknown_attempts(&mut self) {
        for a in &mut self.attempts {
            if a.outcome == UNKNOWN_OUTCOME && a.settled.is_none() {
                a.settled = Some("status_webhook".to_owned());
            }
        }
    }

    /// Merges a provider status report into the record.
    ///
    /// The history keeps one entry per distinct status (the first one seen); the status is the
    /// highest-ranked one ever reported. Both are independent of arrival order and of
    /// repetition, so redelivered and reordered webhooks converge to the same record.
    pub fn apply_status(&mut self, update: &StatusUpdate, received_at: Timestamp) -> StatusChange {
        if self.events.iter().any(|e| e.status == update.status) {
            return StatusChange::Duplicate;
        }
        self.events.push(ProviderEvent {
            status: update.status.clone(),
            at: update.at,
            received_at,
            error: update.error.clone(),
            pricing: update.pricing.clone(),
            conversation: update.conversation.clone(),
        });
        // Keep the history in the order things happened, not the order we heard of them.
        self.events.sort_by_key(|e| e.at);

        if let Some(implied) = update.status.implies()
            && implied.rank() > self.status.rank()
        {
            self.status = implied;
            self.next_attempt_at = None;
            self.lease_expires_at = None;
            if implied == DeliveryStatus::Failed {
                self.last_error = update.error.clone();
            }
        }
        if self.provider_message_id.is_none() {
            self.provider_message_id = Some(update.wamid.as_str().to_owned());
        }
        // The provider has the message: an attempt whose outcome was unknown did reach it.
        if update.status.implies().is_some() {
            self.settle_unknown_attempts();
        }
        self.version += 1;
        self.updated_at = received_at;
        StatusChange::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeliveryRecord {
        DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990001",
            serde_json::Value::Null,
            Timestamp::from_secs(1_000),
        )
    }

    fn update(status: &str, at: i64) -> StatusUpdate {
        StatusUpdate {
            wamid: Wamid::parse("wamid.TEST").unwrap_or_else(|_| unreachable!()),
            status: ProviderStatus::parse(status),
            at: Timestamp::from_secs(at),
            error: (status == "failed").then(|| DeliveryError {
                source: "whatsapp".into(),
                code: "131049".into(),
                message: "not delivered".into(),
                details: Some("ecosystem engagement".into()),
            }),
            pricing: None,
            conversation: None,
            callback_data: None,
        }
    }

    fn apply_all(order: &[&str]) -> DeliveryRecord {
        let mut r = record();
        for (i, s) in order.iter().enumerate() {
            let at = match *s {
                "sent" => 10,
                "delivered" => 20,
                "failed" => 15,
                _ => 30,
            };
            r.apply_status(&update(s, at), Timestamp::from_secs(100 + i as i64));
        }
        r
    }

    #[test]
    fn every_order_of_sent_delivered_read_ends_read_with_three_entries() {
        let perms: [[&str; 3]; 6] = [
            ["sent", "delivered", "read"],
            ["sent", "read", "delivered"],
            ["delivered", "sent", "read"],
            ["delivered", "read", "sent"],
            ["read", "sent", "delivered"],
            ["read", "delivered", "sent"],
        ];
        for p in perms {
            let r = apply_all(&p);
            assert_eq!(r.status, DeliveryStatus::Read, "{p:?}");
            let order: Vec<_> = r.events.iter().map(|e| e.status.as_str()).collect();
            assert_eq!(order, ["sent", "delivered", "read"], "{p:?}");
        }
    }

    #[test]
    fn duplicates_change_nothing_and_do_not_bump_the_version() {
        let mut r = record();
        assert_eq!(
            r.apply_status(&update("delivered", 20), Timestamp::from_secs(50)),
            StatusChange::Applied
        );
        let after_first = r.clone();
        for _ in 0..4 {
            assert_eq!(
                r.apply_status(&update("delivered", 20), Timestamp::from_secs(60)),
                StatusChange::Duplicate
            );
        }
        assert_eq!(r, after_first);
    }

    #[test]
    fn failed_keeps_metas_error_and_outranks_a_late_sent() {
        let r = apply_all(&["failed", "sent"]);
        assert_eq!(r.status, DeliveryStatus::Failed);
        assert_eq!(
            r.last_error.as_ref().map(|e| e.code.as_str()),
            Some("131049")
        );
        assert_eq!(r.events.len(), 2);
    }

    #[test]
    fn delivery_evidence_outranks_a_failure_report() {
        assert_eq!(
            apply_all(&["delivered", "failed"]).status,
            DeliveryStatus::Delivered
        );
        assert_eq!(apply_all(&["failed", "read"]).status, DeliveryStatus::Read);
    }

    #[test]
    fn a_status_on_a_retry_scheduled_record_reconciles_it_as_sent() {
        let mut r = record();
        r.status = DeliveryStatus::RetryScheduled;
        r.next_attempt_at = Some(Timestamp::from_secs(5_000));
        r.apply_status(&update("sent", 10), Timestamp::from_secs(11));
        assert_eq!(r.status, DeliveryStatus::Sent);
        assert_eq!(r.next_attempt_at, None);
        assert_eq!(r.provider_message_id.as_deref(), Some("wamid.TEST"));
    }

    #[test]
    fn played_implies_read_and_unknown_statuses_are_kept_without_effect() {
        let r = apply_all(&["sent", "played"]);
        assert_eq!(r.status, DeliveryStatus::Read);
        let r = apply_all(&["sent", "deleted"]);
        assert_eq!(r.status, DeliveryStatus::Sent);
        assert_eq!(r.events.len(), 2);
    }

    fn attempt(n: u32) -> Attempt {
        Attempt {
            number: n,
            started_at: Timestamp::from_secs(1_000),
            outcome: "accepted".into(),
            provider_code: None,
            provider_status: Some("accepted".into()),
            latency_ms: 40,
            details: None,
            settled: None,
        }
    }

    const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn a_claim_is_exclusive_until_its_lease_expires() {
        let mut r = record();
        let now = Timestamp::from_secs(2_000);
        assert_eq!(r.claim(now, LEASE), Ok(1));
        assert_eq!(r.status, DeliveryStatus::Sending);
        assert!(matches!(
            r.clone().claim(now, LEASE),
            Err(ClaimRefused::InFlight { .. })
        ));
        // The worker died. Even after its lease, no claim: the outcome is unknown, so the
        // record first waits the reconciliation window for a status webhook.
        let expired = now.plus(LEASE).plus(std::time::Duration::from_secs(1));
        assert!(matches!(
            r.clone().claim(expired, LEASE),
            Err(ClaimRefused::InFlight { .. })
        ));
        let wait = std::time::Duration::from_secs(60);
        assert!(r.recover_expired_lease(expired, wait));
        assert_eq!(r.status, DeliveryStatus::RetryScheduled);
        assert_eq!(r.attempts[0].outcome, UNKNOWN_OUTCOME);
        assert_eq!(r.next_attempt_at, Some(now.plus(LEASE).plus(wait)));
        assert!(matches!(
            r.clone().claim(expired, LEASE),
            Err(ClaimRefused::NotDue { .. })
        ));
        // No status came: attempt 2 may duplicate, and the log says so.
        assert_eq!(r.claim(now.plus(LEASE).plus(wait), LEASE), Ok(2));
        assert_eq!(r.attempts[0].settled.as_deref(), Some("retried"));
    }

    #[test]
    fn a_status_in_the_window_settles_an_unknown_attempt_as_sent() {
        let mut r = record();
        let now = Timestamp::from_secs(2_000);
        r.claim(now, LEASE).ok();
        let expired = now.plus(LEASE).plus(std::time::Duration::from_secs(1));
        r.recover_expired_lease(expired, std::time::Duration::from_secs(60));
        r.apply_status(&update("sent", 2_010), expired);
        assert_eq!(r.status, DeliveryStatus::Sent);
        assert_eq!(r.attempts[0].settled.as_deref(), Some("status_webhook"));
        assert_eq!(r.next_attempt_at, None);
        assert_eq!(
            r.claim(expired, LEASE),
            Err(ClaimRefused::Terminal),
            "nothing is sent again"
        );
    }

    #[test]
    fn a_status_that_beats_an_unknown_finish_settles_it_and_keeps_it_sent() {
        let mut r = record();
        let now = Timestamp::from_secs(2_000);
        r.claim(now, LEASE).ok();
        // Meta took the message and its `sent` webhook arrived while our call was timing out.
        r.apply_status(&update("sent", 2_001), now);
        let mut timed_out = attempt(1);
        timed_out.outcome = UNKNOWN_OUTCOME.to_owned();
        let retry = AttemptResult::Retry {
            at: now.plus(std::time::Duration::from_secs(60)),
            error: DeliveryError::carteiro("timeout", "no answer"),
        };
        r.finish_attempt(timed_out, retry, now);
        assert_eq!(r.status, DeliveryStatus::Sent);
        assert_eq!(r.attempts[0].settled.as_deref(), Some("status_webhook"));
        assert_eq!(r.next_attempt_at, None);
    }

    #[test]
    fn cancel_and_retry_follow_the_operator_rules() {
        let mut r = record();
        let now = Timestamp::from_secs(3_000);
        assert_eq!(r.retry_fresh(now), Err(ActionRefused::NotRetryable));
        assert_eq!(r.cancel(now), Ok(()));
        assert_eq!(r.status, DeliveryStatus::Cancelled);
        assert_eq!(r.cancel(now), Err(ActionRefused::NotCancellable));
        assert_eq!(r.claim(now, LEASE), Err(ClaimRefused::Cancelled));
        let mut dead = record();
        dead.attempts = vec![attempt(1), attempt(2)];
        dead.status = DeliveryStatus::Dead;
        assert_eq!(dead.retry_fresh(now), Ok(()));
        assert_eq!(
            (dead.status, dead.attempts_in_budget()),
            (DeliveryStatus::Queued, 0)
        );
        assert_eq!(dead.budget_started(), now);
        assert_eq!(dead.claim(now, LEASE), Ok(3));
    }

    #[test]
    fn a_scheduled_retry_is_not_claimed_before_it_is_due() {
        let mut r = record();
        let now = Timestamp::from_secs(2_000);
        r.claim(now, LEASE).ok();
        let error = DeliveryError {
            source: "whatsapp".into(),
            code: "131000".into(),
            message: "x".into(),
            details: None,
        };
        r.finish_attempt(
            attempt(1),
            AttemptResult::Retry {
                at: Timestamp::from_secs(2_030),
                error,
            },
            now,
        );
        assert_eq!(r.status, DeliveryStatus::RetryScheduled);
        assert_eq!(
            r.clone().claim(Timestamp::from_secs(2_010), LEASE),
            Err(ClaimRefused::NotDue {
                next_attempt_at: Timestamp::from_secs(2_030)
            })
        );
        assert_eq!(r.claim(Timestamp::from_secs(2_030), LEASE), Ok(2));
    }

    #[test]
    fn terminal_records_cannot_be_claimed() {
        let mut r = record();
        r.status = DeliveryStatus::Sent;
        assert_eq!(
            r.claim(Timestamp::from_secs(1), LEASE),
            Err(ClaimRefused::Terminal)
        );
    }

    #[test]
    fn an_acceptance_recorded_after_a_faster_webhook_keeps_the_webhooks_state() {
        let mut r = record();
        r.claim(Timestamp::from_secs(2_000), LEASE).ok();
        // Meta's `delivered` webhook landed before dispatch wrote `sent`.
        r.apply_status(&update("delivered", 2_001), Timestamp::from_secs(2_001));
        let accepted = AttemptResult::Accepted {
            provider_message_id: "wamid.TEST".into(),
            provider_status: None,
        };
        r.finish_attempt(attempt(1), accepted.clone(), Timestamp::from_secs(2_002));
        r.finish_attempt(attempt(1), accepted, Timestamp::from_secs(2_002));
        assert_eq!(r.status, DeliveryStatus::Delivered);
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.lease_expires_at, None);
    }
}
