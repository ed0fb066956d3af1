//! A WhatsApp contact as Carteiro knows it: when they last wrote, which opens Meta's 24-hour
//! customer-service window. Inside it any message may be sent; outside it only templates
//! (Meta answers a free-form message with 131047 otherwise).

use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Meta's customer-service window: 24 hours from the user's last message.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Kept as a state document keyed by the wa_id (digits only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactState {
    /// When the contact's newest message was sent (Meta's timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inbound_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
}

impl ContactState {
    /// Notes a message sent at `at`; true when that changed anything (older messages arriving
    /// late change nothing).
    pub fn note_inbound(&mut self, at: Timestamp, profile_name: Option<&str>) -> bool {
        let newer = self.last_inbound_at.is_none_or(|t| at > t);
        if newer {
            self.last_inbound_at = Some(at);
            if let Some(name) = profile_name {
                self.profile_name = Some(name.to_owned());
            }
        }
        newer
    }

    /// Until when the service window is open, if it ever opened.
    pub fn window_closes_at(&self) -> Option<Timestamp> {
        self.last_inbound_at.map(|t| t.plus(SERVICE_WINDOW))
    }

    pub fn window_open(&self, now: Timestamp) -> bool {
        self.window_closes_at().is_some_and(|until| now < until)
    }
}

/// The key of a contact: the wa_id as Meta writes it, digits only (a leading `+` is dropped).
/// `None` when it is not 5 to 20 digits.
pub fn wa_id_key(s: &str) -> Option<String> {
    let digits = s.trim().strip_prefix('+').unwrap_or(s.trim());
    (5..=20)
        .contains(&digits.len())
        .then_some(())
        .filter(|()| digits.bytes().all(|b| b.is_ascii_digit()))
        .map(|()| digits.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_24_hours_from_the_newest_message() {
        let mut c = ContactState::default();
        assert!(!c.window_open(Timestamp::from_secs(0)));
        assert!(c.note_inbound(Timestamp::from_secs(1_000), Some("Ana")));
        assert!(!c.note_inbound(Timestamp::from_secs(500), Some("Old")));
        assert_eq!(c.profile_name.as_deref(), Some("Ana"));
        let hour = 3_600;
        assert!(c.window_open(Timestamp::from_secs(1_000 + 23 * hour)));
        assert!(!c.window_open(Timestamp::from_secs(1_000 + 24 * hour)));
        assert_eq!(
            c.window_closes_at(),
            Some(Timestamp::from_secs(1_000 + 24 * hour))
        );
    }

    #[test]
    fn wa_ids_are_digits_with_an_optional_plus() {
        assert_eq!(
            wa_id_key("+5511999990001").as_deref(),
            Some("5511999990001")
        );
        assert_eq!(wa_id_key("5511999990001").as_deref(), Some("5511999990001"));
        assert_eq!(wa_id_key("55-11"), None);
        assert_eq!(wa_id_key("abc"), None);
    }
}
