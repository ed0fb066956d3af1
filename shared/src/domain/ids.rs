//! Identifiers and addresses, parsed once at the edge and trusted everywhere after.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused; `field` names what the caller sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    pub field: &'static str,
    pub reason: String,
}

impl ParseError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Carteiro's id for one delivery: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    const PREFIX: &'static str = "msg_";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, uuid::Uuid::now_v7().simple()))
    }

    /// The id of the delivery that `parts` name (a digest): deliveries made for a fact seen
    /// twice (an event's callback to one endpoint) get the same id and are created once.
    pub fn derived(parts: &[&str]) -> Self {
        Self(format!(
            "{}{}",
            Self::PREFIX,
            crate::domain::app_event::digest32(parts)
        ))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let rest = s
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| ParseError::new("id", "must start with msg_"))?;
        if rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new("id", "not a Carteiro message id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> Self {
        id.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WhatsApp message id (`wamid.…`), as Meta returns it on send and echoes it in statuses.
/// Kept opaque: Meta documents no format beyond a non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Wamid(String);

impl Wamid {
    /// Longer than any id Meta issues, short enough to be a DynamoDB key with room to spare.
    const MAX_LEN: usize = 512;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(ParseError::new("wamid", "empty, too long or not printable"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Wamid {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Wamid> for String {
    fn from(id: Wamid) -> Self {
        id.0
    }
}

impl fmt::Display for Wamid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An E.164 phone number, stored with its leading `+` (`+5511999990001`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts `+` followed by 8 to 15 digits, the first not 0 (ITU-T E.164). The `+` may be
    /// omitted, as Meta omits it in `wa_id`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(format!("+{digits}")))
        } else {
            Err(ParseError::new(
                "to",
                "must be an E.164 number: + and 8 to 15 digits, not starting with 0",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits Meta's Graph API expects in `to`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// For logs: the country code and the last two digits only.
    pub fn masked(&self) -> String {
        let d = self.digits();
        let tail = &d[d.len().saturating_sub(2)..];
        format!("+{}…{}", &d[..2.min(d.len())], tail)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_reject_foreign_strings() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Ok(id.clone()));
        assert!(MessageId::parse("msg_xyz").is_err());
        assert!(MessageId::parse("wamid.ABC").is_err());
    }

    #[test]
    fn phone_numbers_accept_e164_with_or_without_plus() {
        assert_eq!(
            PhoneNumber::parse("5511999990001").map(|p| p.as_str().to_owned()),
            Ok("+5511999990001".to_owned())
        );
        for bad in [
            "+0123456789",
            "+55 11 9999",
            "+1234567",
            "+1234567890123456",
            "abc",
            "",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn phone_number_debug_is_masked() {
        let p = PhoneNumber::parse("+5511999990001").map(|p| format!("{p:?}"));
        assert_eq!(p.as_deref(), Ok("PhoneNumber(+55…01)"));
    }

    #[test]
    fn wamids_refuse_empty_and_control_characters() {
        assert!(Wamid::parse("").is_err());
        assert!(Wamid::parse("wamid.\n").is_err());
        assert!(Wamid::parse("wamid.HBgM").is_ok());
    }
}
