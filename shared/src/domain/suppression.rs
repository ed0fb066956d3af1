//! Suppressions: recipients Carteiro will not send to for now. A WhatsApp user who stopped
//! marketing messages (the `user_preferences` webhook, or Meta's 131050) gets no marketing
//! template until they resume; an email address a server refused as unknown (5.1.x) gets
//! nothing until the suppression runs out. Both are refused at acceptance and again at
//! dispatch (a suppression may arrive while a message waits), and either path falls back.

use crate::domain::ids::MessageId;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The channel a suppression is on, as it appears in `/v1/suppressions/{channel}/{address}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedChannel {
    Whatsapp,
    Email,
}

impl SuppressedChannel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "whatsapp" => Some(Self::Whatsapp),
            "email" => Some(Self::Email),
            _ => None,
        }
    }

    /// The address as suppressions are keyed: a WhatsApp number's digits, an email address
    /// lower-cased (with any display name dropped).
    pub fn normalise(self, address: &str) -> String {
        match self {
            Self::Whatsapp => address.chars().filter(char::is_ascii_digit).collect(),
            Self::Email => {
                let a = address.trim();
                let a = match (a.rfind('<'), a.rfind('>')) {
                    (Some(open), Some(close)) if open < close => &a[open + 1..close],
                    _ => a,
                };
                a.trim().to_ascii_lowercase()
            }
        }
    }
}

/// What a suppression holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionScope {
    /// Marketing templates only (the user's marketing preference).
    Marketing,
    /// Every message.
    All,
}

/// One suppressed recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub channel: SuppressedChannel,
    /// Normalised ([`SuppressedChannel::normalise`]).
    pub address: String,
    pub scope: SuppressionScope,
    /// Why: `user_preferences` (the user said stop), `131050` (Meta refused a marketing
    /// template), `smtp_5.1.1` and kin (the server does not know the address).
    pub reason: String,
    pub since: Timestamp,
    /// When it lapses by itself; `None`: until removed (or the user resumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// The message whose failure suppressed the address, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
}

impl Suppression {
    /// Whether it still holds at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// Whether it holds back a message that is (or is not) a marketing template.
    pub fn covers(&self, marketing: bool) -> bool {
        self.scope == SuppressionScope::All || marketing
    }

    /// The key listings are ordered by: `<channel>/<address>`.
    pub fn key(&self) -> String {
        key(self.channel, &self.address)
    }
}

/// A suppression's listing key.
pub fn key(channel: SuppressedChannel, address: &str) -> String {
    format!("{}/{address}", channel.as_str())
}

/// How an SMTP recipient refusal names the address in the attempt's `details`
/// (`5.1.1 rcpt=ana@example.com`).
pub const RCPT_PREFIX: &str = "rcpt=";

/// Whether an SMTP failure says the address does not exist (RFC 3463 `5.1.x`: bad mailbox,
/// bad system, bad syntax, moved…), so that sending again is pointless.
pub fn smtp_unknown_address(code: &str, message: &str) -> Option<String> {
    if !code.starts_with('5') {
        return None;
    }
    let enhanced = message
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .find(|w| w.starts_with("5.1.") && w.len() >= 5)?;
    Some(format!("smtp_{enhanced}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_alike_however_written() {
        let w = SuppressedChannel::Whatsapp;
        assert_eq!(w.normalise("+55 11 99999-0001"), "5511999990001");
        let e = SuppressedChannel::Email;
        assert_eq!(e.normalise("Ana <Ana@Example.COM>"), "ana@example.com");
        assert_eq!(e.normalise(" ana@example.com "), "ana@example.com");
    }

    #[test]
    fn a_marketing_suppression_holds_back_only_marketing() {
        let s = Suppression {
            channel: SuppressedChannel::Whatsapp,
            address: "5511999990001".into(),
            scope: SuppressionScope::Marketing,
            reason: "user_preferences".into(),
            since: Timestamp::from_millis(0),
            until: None,
            message_id: None,
        };
        assert!(s.covers(true));
        assert!(!s.covers(false));
        assert!(s.active(Timestamp::from_millis(i64::MAX / 2)));
        let email = Suppression {
            scope: SuppressionScope::All,
            until: Some(Timestamp::from_millis(1_000)),
            ..s
        };
        assert!(email.covers(false));
        assert!(email.active(Timestamp::from_millis(999)));
        assert!(!email.active(Timestamp::from_millis(1_000)));
    }

    #[test]
    fn only_unknown_address_refusals_suppress() {
        assert_eq!(
            smtp_unknown_address("550", "5.1.1 <ana@example.com>: user unknown").as_deref(),
            Some("smtp_5.1.1")
        );
        assert_eq!(
            smtp_unknown_address(
                "550",
                "Requested action not taken: 5.1.10 recipient not found"
            )
            .as_deref(),
            Some("smtp_5.1.10")
        );
        assert_eq!(smtp_unknown_address("550", "5.7.1 relaying denied"), None);
        assert_eq!(smtp_unknown_address("450", "4.1.1 try later"), None);
    }
}
