//! Typed configuration from environment variables. Every setting has a documented default
//! except the AWS resource names, which template.yaml always sets.

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
        let max = env.number_or(
            "CARTEIRO_WEBHOOK_MAX_BODY_BYTES",
            DEFAULT_WEBHOOK_MAX_BODY_BYTES as u64,
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
mod tests {
    use super::*;

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
