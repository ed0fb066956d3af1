//! Typed configuration from environment variables: the one place a `CARTEIRO_*` setting is
//! read and parsed. Every Lambda and the local runtime load the same variables; a malformed
//! value stops start-up with an error naming the variable, and nothing is silently clamped.
//! Every setting has a documented default (README, "Configuration") except the AWS resource
//! names, which template.yaml always sets.

use crate::resilience::RetryPolicy;
use std::time::Duration;

/// Meta sends webhook payloads of up to 3 MB (REFERENCE §1.2).
pub const DEFAULT_WEBHOOK_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Reads settings from a key lookup, so tests need not touch the process environment.
#[derive(Clone, Copy)]
pub struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self(lookup)
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var).ok_or(ConfigError::Missing(var))
    }

    pub fn number_or(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                var,
                reason: format!("{v:?} is not a whole number"),
            }),
        }
    }

    /// A switch written `1`/`true`/`on` or `0`/`false`/`off`.
    pub fn flag_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                var,
                reason: format!("{v:?} is not 1 or 0"),
            }),
        }
    }

    /// A whole number in `min..=max`.
    pub fn number_in(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let n = self.number_or(var, default)?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(ConfigError::Invalid {
                var,
                reason: format!("{n} is outside {min}..={max}"),
            })
        }
    }

    /// A duration written `500ms`, `90s`, `5m`, `2h`, `7d` (a bare number is seconds).
    pub fn duration_or(
        &self,
        var: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|reason| ConfigError::Invalid { var, reason }),
        }
    }
}

pub use crate::domain::time::parse_duration;

/// Parses a comma-separated list of durations; at least one.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let waits = text
        .split(',')
        .enumerate()
        .map(|(i, part)| parse_duration(part).map_err(|e| format!("entry {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() {
        return Err("the schedule needs at least one entry".to_owned());
    }
    Ok(waits)
}

/// Retry policy settings, read by every function that decides or applies a retry.
pub fn retry_policy_from_env(env: Env<'_>) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    let schedule = match env.optional("CARTEIRO_RETRY_SCHEDULE") {
        None => d.schedule().to_vec(),
        Some(v) => parse_schedule(&v).map_err(|reason| ConfigError::Invalid {
            var: "CARTEIRO_RETRY_SCHEDULE",
            reason,
        })?,
    };
    Ok(RetryPolicy::new(
        schedule,
        crate::resilience::retry::DEFAULT_JITTER,
        env.duration_or("CARTEIRO_RETRY_MAX_AGE", d.max_age)?,
        env.duration_or("CARTEIRO_UNKNOWN_OUTCOME_WAIT", d.unknown_wait)?,
    ))
}

/// Dispatch and sweeper settings: how work moves between the queue and the store.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchSettings {
    /// How long a claim is exclusive (`CARTEIRO_DISPATCH_LEASE_SECS`, default 60): longer than
    /// any provider call, shorter than the queue's visibility timeout.
    pub lease: Duration,
    /// Messages of one batch sent at once (`CARTEIRO_DISPATCH_CONCURRENCY`, default 10).
    pub concurrency: usize,
    /// Retries due within this ride the queue's delay; later ones wait in the store for the
    /// sweeper (`CARTEIRO_QUEUE_MAX_DELAY`, default 900 s, SQS's limit).
    pub queue_max_delay: Duration,
    pub retry: RetryPolicy,
    /// The retry policy of callbacks to the app (`CARTEIRO_CALLBACK_RETRY_SCHEDULE`, default
    /// Standard Webhooks' ten attempts over about three days; `CARTEIRO_CALLBACK_MAX_AGE`).
    pub callback_retry: RetryPolicy,
    /// Messages a second the WhatsApp number may send, shared by every instance
    /// (`CARTEIRO_WHATSAPP_MPS`, default 80, Meta's default; up to 1,000 after an upgrade).
    pub whatsapp_mps: f64,
    /// Meta's pair rule: one message every 6 s to one user, bursts of 45 borrowing ahead.
    pub pair_rate: crate::resilience::rate::Rate,
    /// How long a 130429 (the number went too fast) stops the number's bucket (fixed: 1 s).
    pub throttle_pause: Duration,
    /// The circuit breakers of the Graph API, the SMTP relay and each callback endpoint.
    pub breaker: crate::resilience::breaker::BreakerPolicy,
    /// How long an email address a server refused as unknown (`5.1.x`) stays suppressed
    /// (`CARTEIRO_EMAIL_SUPPRESSION`, default 30 days).
    pub email_suppression: Duration,
    /// The messaging-limit tier until a webhook states one
    /// (`CARTEIRO_WHATSAPP_MESSAGING_LIMIT`: `TIER_250`, `2000`, `unlimited`...; default unknown).
    pub messaging_limit: Option<crate::resilience::quota::MessagingLimit>,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            concurrency: 10,
            queue_max_delay: crate::ports::queue::MAX_DELAY,
            retry: RetryPolicy::default(),
            callback_retry: default_callback_retry(),
            whatsapp_mps: 80.0,
            pair_rate: PAIR_RATE,
            throttle_pause: Duration::from_secs(1),
            breaker: crate::resilience::breaker::BreakerPolicy::default(),
            email_suppression: Duration::from_secs(30 * 86_400),
            messaging_limit: None,
        }
    }
}

/// The pair rule from `CARTEIRO_WHATSAPP_PAIR_INTERVAL` (default 6 s) and
/// `CARTEIRO_WHATSAPP_PAIR_BURST` (default 45): Meta's, unless Meta changes it.
fn pair_rate_from_env(env: Env<'_>) -> Result<crate::resilience::rate::Rate, ConfigError> {
    let interval = env.duration_or("CARTEIRO_WHATSAPP_PAIR_INTERVAL", Duration::from_secs(6))?;
    if interval.is_zero() {
        return Err(ConfigError::Invalid {
            var: "CARTEIRO_WHATSAPP_PAIR_INTERVAL",
            reason: "must be more than 0s".to_owned(),
        });
    }
    let burst = env.number_in("CARTEIRO_WHATSAPP_PAIR_BURST", 45, 1, 1_000)?;
    Ok(crate::resilience::rate::Rate::new(
        1.0 / interval.as_secs_f64(),
        burst as f64,
    ))
}

/// Meta's pair rule as a bucket: rate 1/6 a second, burst 45.
pub const PAIR_RATE: crate::resilience::rate::Rate = crate::resilience::rate::Rate {
    per_second: 1.0 / 6.0,
    burst: 45.0,
};

/// The default `CARTEIRO_CALLBACK_RETRY_SCHEDULE`: the Standard Webhooks example schedule.
pub const DEFAULT_CALLBACK_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h";

const DEFAULT_CALLBACK_MAX_AGE: Duration = Duration::from_secs(4 * 24 * 60 * 60);

fn default_callback_retry() -> RetryPolicy {
    RetryPolicy::new(
        parse_schedule(DEFAULT_CALLBACK_SCHEDULE).unwrap_or_default(),
        crate::resilience::retry::DEFAULT_JITTER,
        DEFAULT_CALLBACK_MAX_AGE,
        Duration::ZERO,
    )
}

fn callback_retry_from_env(env: Env<'_>) -> Result<RetryPolicy, ConfigError> {
    let schedule = match env.optional("CARTEIRO_CALLBACK_RETRY_SCHEDULE") {
        None => parse_schedule(DEFAULT_CALLBACK_SCHEDULE).unwrap_or_default(),
        Some(v) => parse_schedule(&v).map_err(|reason| ConfigError::Invalid {
            var: "CARTEIRO_CALLBACK_RETRY_SCHEDULE",
            reason,
        })?,
    };
    Ok(RetryPolicy::new(
        schedule,
        crate::resilience::retry::DEFAULT_JITTER,
        env.duration_or("CARTEIRO_CALLBACK_MAX_AGE", DEFAULT_CALLBACK_MAX_AGE)?,
        Duration::ZERO,
    ))
}

impl DispatchSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let queue_max_delay =
            env.duration_or("CARTEIRO_QUEUE_MAX_DELAY", crate::ports::queue::MAX_DELAY)?;
        if queue_max_delay > crate::ports::queue::MAX_DELAY {
            return Err(ConfigError::Invalid {
                var: "CARTEIRO_QUEUE_MAX_DELAY",
                reason: format!(
                    "{} s is more than the queue allows (900 s)",
                    queue_max_delay.as_secs()
                ),
            });
        }
        Ok(Self {
            lease: Duration::from_secs(env.number_in(
                "CARTEIRO_DISPATCH_LEASE_SECS",
                60,
                1,
                12 * 60 * 60,
            )?),
            concurrency: usize::try_from(env.number_in(
                "CARTEIRO_DISPATCH_CONCURRENCY",
                10,
                1,
                1_000,
            )?)
            .unwrap_or(10),
            queue_max_delay,
            retry: retry_policy_from_env(env)?,
            callback_retry: callback_retry_from_env(env)?,
            whatsapp_mps: env.number_in("CARTEIRO_WHATSAPP_MPS", 80, 1, 1_000)? as f64,
            email_suppression: env.duration_or(
                "CARTEIRO_EMAIL_SUPPRESSION",
                Duration::from_secs(30 * 86_400),
            )?,
            pair_rate: pair_rate_from_env(env)?,
            breaker: crate::resilience::breaker::BreakerPolicy {
                cool_down: env
                    .duration_or("CARTEIRO_BREAKER_COOL_DOWN", Duration::from_secs(30))?,
                ..crate::resilience::breaker::BreakerPolicy::default()
            },
            messaging_limit: match env.optional("CARTEIRO_WHATSAPP_MESSAGING_LIMIT") {
                None => None,
                Some(v) => Some(
                    crate::resilience::quota::MessagingLimit::parse(&v).ok_or_else(|| {
                        ConfigError::Invalid {
                            var: "CARTEIRO_WHATSAPP_MESSAGING_LIMIT",
                            reason: format!(
                                "{v:?} is not a tier (TIER_250, TIER_2K, 10000, unlimited...)"
                            ),
                        }
                    })?,
                ),
            },
            ..Self::default()
        })
    }

    /// The retry policy of a channel's deliveries.
    pub fn retry_for(&self, channel: crate::domain::delivery::Channel) -> &RetryPolicy {
        match channel {
            crate::domain::delivery::Channel::Webhook => &self.callback_retry,
            _ => &self.retry,
        }
    }
}

/// What a free-form WhatsApp message to a contact whose customer-service window is closed
/// gets at acceptance (`CARTEIRO_SERVICE_WINDOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceWindowRule {
    /// 202 with `"warnings": ["outside_service_window"]` (the default: the installation may
    /// learn of inbound messages elsewhere).
    #[default]
    Warn,
    /// 422 `outside_service_window` (or the message's fallback).
    Enforce,
    Off,
}

/// Callbacks to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSettings {
    /// One callback request's timeout (`CARTEIRO_CALLBACK_TIMEOUT`, default 15 s).
    pub timeout: Duration,
    /// An endpoint failing for this long without a success is disabled
    /// (`CARTEIRO_CALLBACK_DISABLE_AFTER`, default 5 days, as Svix).
    pub disable_after: Duration,
    /// How long events are kept for `GET /v1/events/{id}` and replay
    /// (`CARTEIRO_EVENT_TTL_DAYS`, default 30).
    pub event_ttl: Duration,
    /// How much of an endpoint's answer an attempt keeps (fixed: 1 KiB).
    pub response_max_bytes: usize,
    /// Plain `http://` to loopback addresses is allowed (the local runtime's development
    /// allowlist; Lambda never sets it). Not an environment variable.
    pub allow_loopback_http: bool,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            disable_after: Duration::from_secs(5 * 24 * 60 * 60),
            event_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            response_max_bytes: 1024,
            allow_loopback_http: false,
        }
    }
}

impl CallbackSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let timeout = env.duration_or("CARTEIRO_CALLBACK_TIMEOUT", d.timeout)?;
        if timeout.is_zero() || timeout > Duration::from_secs(120) {
            return Err(ConfigError::Invalid {
                var: "CARTEIRO_CALLBACK_TIMEOUT",
                reason: "must be more than 0 and at most 120s".to_owned(),
            });
        }
        Ok(Self {
            timeout,
            disable_after: env.duration_or("CARTEIRO_CALLBACK_DISABLE_AFTER", d.disable_after)?,
            event_ttl: Duration::from_secs(
                env.number_in("CARTEIRO_EVENT_TTL_DAYS", 30, 1, 365)? * DAY,
            ),
            ..d
        })
    }
}

/// Send API settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendApiSettings {
    /// `CARTEIRO_SEND_MAX_BODY_BYTES`, default 256 KiB (attachments included).
    pub max_body_bytes: usize,
    /// `CARTEIRO_IDEMPOTENCY_WINDOW_HOURS`, default 168 (7 days).
    pub idempotency_window: Duration,
    /// `CARTEIRO_SERVICE_WINDOW`: `warn` (default), `enforce` or `off`.
    pub service_window: ServiceWindowRule,
}

impl Default for SendApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            idempotency_window: Duration::from_secs(7 * 24 * 60 * 60),
            service_window: ServiceWindowRule::Warn,
        }
    }
}

impl SendApiSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            max_body_bytes: usize::try_from(
                env.number_or("CARTEIRO_SEND_MAX_BODY_BYTES", d.max_body_bytes as u64)?,
            )
            .unwrap_or(d.max_body_bytes),
            idempotency_window: Duration::from_secs(
                env.number_or("CARTEIRO_IDEMPOTENCY_WINDOW_HOURS", 168)? * 60 * 60,
            ),
            service_window: match env
                .optional("CARTEIRO_SERVICE_WINDOW")
                .as_deref()
                .map(str::trim)
            {
                None | Some("warn") => ServiceWindowRule::Warn,
                Some("enforce") => ServiceWindowRule::Enforce,
                Some("off") => ServiceWindowRule::Off,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "CARTEIRO_SERVICE_WINDOW",
                        reason: format!("{other:?} is not warn, enforce or off"),
                    });
                }
            },
        })
    }
}

/// Every setting of every function, loaded at once (the local runtime runs them all).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub intake: IntakeSettings,
    pub inbound: InboundSettings,
    pub send_api: SendApiSettings,
    pub dispatch: DispatchSettings,
    pub sweep: SweepSettings,
    pub graph: GraphSettings,
    pub smtp: SmtpSettings,
    pub callbacks: CallbackSettings,
    pub metrics: MetricsSettings,
    pub status: StatusSettings,
}

/// Health probes and alert thresholds (docs/observability.md, "Status and alerts").
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSettings {
    /// How often the sweeper probes each integration (`CARTEIRO_PROBE_INTERVAL`, default 5m;
    /// `0s` turns the probes off).
    pub probe_interval: Duration,
    /// The share of calls over 5 minutes that may fail before the integration is degraded and
    /// the `error_rate` alert is raised (`CARTEIRO_ALERT_ERROR_RATE_PERCENT`, default 5).
    pub error_rate: f64,
    /// Calls over 5 minutes below which no error rate is judged (fixed: 5).
    pub error_rate_min_calls: u64,
    /// The oldest outbound message older than this raises `oldest_pending`
    /// (`CARTEIRO_ALERT_OLDEST_PENDING`, default 15m).
    pub oldest_pending: Duration,
    /// The messaging-limit quota's alert levels (fixed: 80 % and 95 % of the tier).
    pub quota_levels: (f64, f64),
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(300),
            error_rate: 0.05,
            error_rate_min_calls: 5,
            oldest_pending: Duration::from_secs(900),
            quota_levels: (0.80, 0.95),
        }
    }
}

impl StatusSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            probe_interval: env.duration_or("CARTEIRO_PROBE_INTERVAL", d.probe_interval)?,
            error_rate: env.number_in("CARTEIRO_ALERT_ERROR_RATE_PERCENT", 5, 1, 100)? as f64
                / 100.0,
            oldest_pending: env.duration_or("CARTEIRO_ALERT_OLDEST_PENDING", d.oldest_pending)?,
            ..d
        })
    }
}

/// Where metrics go (docs/observability.md). Lambda always writes EMF lines; these settings
/// are the local runtime's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSettings {
    /// `CARTEIRO_METRICS_EMF=1`: the local runtime also prints, every second, the CloudWatch
    /// EMF lines Lambda would (default off; `GET /metrics` serves Prometheus text either way).
    pub emf: bool,
}

impl MetricsSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            emf: env.flag_or("CARTEIRO_METRICS_EMF", false)?,
        })
    }
}

impl Settings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            intake: IntakeSettings::from_env(env)?,
            inbound: InboundSettings::from_env(env)?,
            send_api: SendApiSettings::from_env(env)?,
            dispatch: DispatchSettings::from_env(env)?,
            sweep: SweepSettings::from_env(env)?,
            graph: GraphSettings::from_env(env)?,
            smtp: SmtpSettings::from_env(env)?,
            callbacks: CallbackSettings::from_env(env)?,
            metrics: MetricsSettings::from_env(env)?,
            status: StatusSettings::from_env(env)?,
        })
    }
}

/// Retry sweeper settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// How often the sweeper runs (`CARTEIRO_SWEEP_INTERVAL`, default 60 s): the local
    /// runtime's timer, and template.yaml's schedule.
    pub interval: Duration,
    /// A `queued` record older than this whose job never reached the queue is queued again
    /// (fixed at 2 minutes: longer than the send API takes between writing and queueing).
    pub queued_grace: Duration,
    /// Records looked at per sweep, at most.
    pub batch_limit: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            queued_grace: Duration::from_secs(120),
            batch_limit: 10_000,
        }
    }
}

impl SweepSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let interval = env.duration_or("CARTEIRO_SWEEP_INTERVAL", d.interval)?;
        if interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                var: "CARTEIRO_SWEEP_INTERVAL",
                reason: "must be at least 100ms".to_owned(),
            });
        }
        Ok(Self {
            interval,
            // A shorter sweep interval (tests, demos) shortens the grace with it.
            queued_grace: d.queued_grace.min(interval.saturating_mul(2)),
            ..d
        })
    }
}

/// Reads the process environment.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Webhook intake settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeSettings {
    /// `CARTEIRO_WEBHOOK_MAX_BODY_BYTES`, default 3 MiB.
    pub max_body_bytes: usize,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_WEBHOOK_MAX_BODY_BYTES,
        }
    }
}

impl IntakeSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let max = env.number_in(
            "CARTEIRO_WEBHOOK_MAX_BODY_BYTES",
            DEFAULT_WEBHOOK_MAX_BODY_BYTES as u64,
            1,
            64 * 1024 * 1024,
        )?;
        Ok(Self {
            max_body_bytes: usize::try_from(max).unwrap_or(DEFAULT_WEBHOOK_MAX_BODY_BYTES),
        })
    }
}

/// Inbound-event processing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSettings {
    /// How long inbound messages and account events are kept for the app to collect
    /// (`CARTEIRO_INBOUND_MESSAGE_TTL_DAYS`, default 30).
    pub message_ttl: Duration,
    /// How long a status for an unknown wamid waits for its record
    /// (`CARTEIRO_ORPHAN_STATUS_TTL_DAYS`, default 14: longer than Meta's 7 days of retries).
    pub orphan_status_ttl: Duration,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for InboundSettings {
    fn default() -> Self {
        Self {
            message_ttl: Duration::from_secs(30 * DAY),
            orphan_status_ttl: Duration::from_secs(14 * DAY),
        }
    }
}

impl InboundSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            message_ttl: Duration::from_secs(
                env.number_or("CARTEIRO_INBOUND_MESSAGE_TTL_DAYS", 30)? * DAY,
            ),
            orphan_status_ttl: Duration::from_secs(
                env.number_or("CARTEIRO_ORPHAN_STATUS_TTL_DAYS", 14)? * DAY,
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn smtp_settings_defaults_and_env() {
        let none = env_of(&[]);
        assert_eq!(
            SmtpSettings::from_env(Env::new(&none)),
            Ok(SmtpSettings::default())
        );
        let set = env_of(&[
            ("CARTEIRO_SMTP_TIMEOUT_MS", "2500"),
            ("CARTEIRO_SMTP_POOL_SIZE", "2"),
        ]);
        let s = SmtpSettings::from_env(Env::new(&set));
        assert_eq!(
            s.as_ref().map(|s| s.timeout),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(s.map(|s| s.pool_max_size), Ok(2));
        for bad in [
            &[("CARTEIRO_SMTP_TIMEOUT_MS", "0")][..],
            &[("CARTEIRO_SMTP_POOL_SIZE", "0")][..],
            &[("CARTEIRO_SMTP_POOL_SIZE", "x")][..],
        ] {
            let e = env_of(bad);
            assert!(SmtpSettings::from_env(Env::new(&e)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "5x", "-5s", "1.5s", "5 m m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_retry_schedule_is_parsed_and_its_errors_name_the_variable() {
        let lookup = env_of(&[("CARTEIRO_RETRY_SCHEDULE", "0s,2s,2s")]);
        let p = retry_policy_from_env(Env::new(&lookup));
        assert_eq!(
            p.map(|p| p.schedule().to_vec()),
            Ok(vec![
                Duration::ZERO,
                Duration::from_secs(2),
                Duration::from_secs(2)
            ])
        );
        let lookup = env_of(&[("CARTEIRO_RETRY_SCHEDULE", "0s,soon,2s")]);
        match retry_policy_from_env(Env::new(&lookup)) {
            Err(ConfigError::Invalid { var, reason }) => {
                assert_eq!(var, "CARTEIRO_RETRY_SCHEDULE");
                assert!(reason.contains("entry 2"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let lookup = env_of(&[("CARTEIRO_UNKNOWN_OUTCOME_WAIT", "a minute")]);
        let err = DispatchSettings::from_env(Env::new(&lookup))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("CARTEIRO_UNKNOWN_OUTCOME_WAIT")));
    }

    #[test]
    fn out_of_range_settings_are_refused_not_clamped() {
        for (var, value) in [
            ("CARTEIRO_QUEUE_MAX_DELAY", "16m"),
            ("CARTEIRO_DISPATCH_CONCURRENCY", "0"),
            ("CARTEIRO_SWEEP_INTERVAL", "10ms"),
        ] {
            let lookup = move |k: &str| (k == var).then(|| value.to_owned());
            let d = DispatchSettings::from_env(Env::new(&lookup)).err();
            let s = SweepSettings::from_env(Env::new(&lookup)).err();
            let err = d.or(s).map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn defaults_apply_when_variables_are_unset_or_blank() {
        let lookup = |k: &str| (k == "CARTEIRO_ORPHAN_STATUS_TTL_DAYS").then(|| " ".to_owned());
        let s = InboundSettings::from_env(Env::new(&lookup));
        assert_eq!(s, Ok(InboundSettings::default()));
    }

    #[test]
    fn a_non_numeric_setting_names_the_variable() {
        let lookup = |_: &str| Some("seven".to_owned());
        let err = InboundSettings::from_env(Env::new(&lookup));
        assert!(matches!(
            err,
            Err(ConfigError::Invalid {
                var: "CARTEIRO_INBOUND_MESSAGE_TTL_DAYS",
                ..
            })
        ));
    }
}

// ---- Provider clients ----------------------------------------------------------------------

/// HTTP client settings for the Graph API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphSettings {
    /// TCP + TLS connect timeout (`CARTEIRO_GRAPH_CONNECT_TIMEOUT_MS`, default 3000).
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included (`CARTEIRO_GRAPH_TIMEOUT_MS`, default 10000).
    pub request_timeout: Duration,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl GraphSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let millis = |var: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            match env.number_or(var, default_ms)? {
                0 => Err(ConfigError::Invalid {
                    var,
                    reason: "must be at least 1 millisecond".to_owned(),
                }),
                ms => Ok(Duration::from_millis(ms)),
            }
        };
        Ok(Self {
            connect_timeout: millis(
                "CARTEIRO_GRAPH_CONNECT_TIMEOUT_MS",
                defaults.connect_timeout,
            )?,
            request_timeout: millis("CARTEIRO_GRAPH_TIMEOUT_MS", defaults.request_timeout)?,
        })
    }
}

/// SMTP command timeout by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle SMTP connections kept by default.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// An idle pooled SMTP connection is closed after this.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// SMTP client settings, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Bounds connecting (TCP, TLS, EHLO, STARTTLS, AUTH), then each SMTP command, the
    /// message content with its final reply included (`CARTEIRO_SMTP_TIMEOUT_MS`, default
    /// 10 000).
    pub timeout: Duration,
    /// Idle connections kept per mailer (`CARTEIRO_SMTP_POOL_SIZE`, default 4). Sends are not
    /// limited by it: a send that finds no idle connection opens one.
    pub pool_max_size: u32,
    /// An idle pooled connection is closed after this long (60 s).
    pub pool_idle_timeout: Duration,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            pool_max_size: DEFAULT_POOL_SIZE,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
        }
    }
}

impl SmtpSettings {
    pub fn from_env(env: Env<'_>) -> Result<Self, ConfigError> {
        let timeout_ms = env.number_or("CARTEIRO_SMTP_TIMEOUT_MS", 10_000)?;
        if timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                var: "CARTEIRO_SMTP_TIMEOUT_MS",
                reason: "must be at least 1".to_owned(),
            });
        }
        let pool = env.number_or("CARTEIRO_SMTP_POOL_SIZE", u64::from(DEFAULT_POOL_SIZE))?;
        let pool_max_size = u32::try_from(pool)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                var: "CARTEIRO_SMTP_POOL_SIZE",
                reason: format!("{pool} is not between 1 and 100"),
            })?;
        Ok(Self {
            timeout: Duration::from_millis(timeout_ms),
            pool_max_size,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
        })
    }
}
