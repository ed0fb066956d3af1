//! Instants as milliseconds since the Unix epoch: cheap to compare, store and serialise, and
//! the same representation in DynamoDB, SQLite and JSON.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Parses `500ms`, `90s`, `5m`, `2h`, `7d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write 500ms, 90s, 5m, 2h or 7d)"))?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// `d` in whole seconds, rounded up: queue delays and `Retry-After` headers are whole seconds,
/// and rounding down would come back before the wait is over.
pub fn whole_secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Parses Meta's unix-seconds string (`"1730231903"`).
    pub fn parse_unix_secs(s: &str) -> Option<Self> {
        s.trim().parse::<i64>().ok().map(Self::from_secs)
    }

    /// RFC 3339 in UTC with milliseconds (`2026-12-01T14:05:09.123Z`), as the API and the
    /// callbacks show times. Instants before 1970 show as the epoch.
    pub fn to_rfc3339(self) -> String {
        let ms = u64::try_from(self.0).unwrap_or(0);
        let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
        humantime::format_rfc3339_millis(at).to_string()
    }

    /// Parses an RFC 3339 instant (`2026-12-01T14:05:09Z`, fractions allowed; UTC only).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let at = humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z')).ok()?;
        let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        i64::try_from(ms).ok().map(Self)
    }
}
