//! The messaging-limit quota: Meta caps the unique users a business reaches in
//! business-initiated conversations (a template to someone outside their 24 h customer-service
//! window) over a moving 24 h, by tier — 250, 2,000, 10,000, 100,000 or unlimited. Carteiro
//! does not refuse past it (Meta documents no error for it); it counts, so the monitoring can
//! warn before the tier is reached.
//!
//! Counting lives behind the limits port, shared by every instance: a user opens a new
//! conversation when no `quota:user:<wa_id>` document (kept 24 h) exists; each new one adds to
//! an hourly counter in one of [`SHARDS`] documents (picked by the user, so a campaign's writes
//! spread out). The rolling count is the sum of the last 24 hourly counters: exact to the hour.
//! The tier comes from `phone_number_quality_update` / `business_capability_update` webhooks,
//! else from `CARTEIRO_WHATSAPP_MESSAGING_LIMIT`.

use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitDoc, LimitStore, update_limit};
use crate::ports::store::ReplaceOutcome;
use crate::ports::update::{Change, UpdateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Counter documents the count is spread over.
pub const SHARDS: u32 = 4;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const HOUR_MS: i64 = 3_600_000;
const TIER_KEY: &str = "quota:tier";

/// A messaging-limit tier: users a day, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagingLimit {
    Users(u64),
    Unlimited,
}

impl MessagingLimit {
    /// Meta's spelling (`TIER_250`, `TIER_2K`, `TIER_100K`, `TIER_UNLIMITED`) or a number.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_uppercase();
        let t = t.strip_prefix("TIER_").unwrap_or(&t);
        if t == "UNLIMITED" {
            return Some(Self::Unlimited);
        }
        let (digits, times) = match t.strip_suffix('K') {
            Some(d) => (d, 1_000),
            None => match t.strip_suffix('M') {
                Some(d) => (d, 1_000_000),
                None => (t, 1),
            },
        };
        let n: u64 = digits.parse().ok()?;
        (n > 0).then(|| Self::Users(n * times))
    }

    /// The tier a webhook's value states: `max_daily_conversations_per_business` (or its
    /// older `current_limit`, or `business_capability_update`'s
    /// `max_daily_conversation_per_phone`), as a tier name or a number.
    pub fn from_webhook(value: &serde_json::Value) -> Option<Self> {
        [
            "max_daily_conversations_per_business",
            "max_daily_conversation_per_phone",
            "current_limit",
        ]
        .iter()
        .find_map(|k| match value.get(*k)? {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => n.as_u64().filter(|n| *n > 0).map(Self::Users),
            _ => None,
        })
    }
}

/// The tier as last learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownTier {
    pub limit: MessagingLimit,
    pub at: Timestamp,
}

/// The quota as the monitoring reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaReport {
    /// Users reached in business-initiated conversations over the last 24 h (to the hour).
    pub used: u64,
    /// The tier, if known.
    pub limit: Option<MessagingLimit>,
    /// Where the tier came from: `webhook`, `configured`, or `unknown`.
    pub source: &'static str,
}

impl QuotaReport {
    /// `used` as a share of the tier, when the tier is a number.
    pub fn share(&self) -> Option<f64> {
        match self.limit? {
            MessagingLimit::Users(n) => Some(self.used as f64 / n as f64),
            MessagingLimit::Unlimited => None,
        }
    }
}

/// Hour (since the epoch) → conversations opened in it.
type Hours = BTreeMap<i64, u64>;

fn shard_of(wa_id: &str) -> u32 {
    use sha2::{Digest, Sha256};
    u32::from(Sha256::digest(wa_id.as_bytes())[0]) % SHARDS
}

/// Notes a business-initiated message to `wa_id` taken at `now`: true when it opened a new
/// conversation (none with that user in the last 24 h), which is then counted.
pub async fn note_business_initiated(
    store: &dyn LimitStore,
    wa_id: &str,
    now: Timestamp,
) -> Result<bool, UpdateError> {
    let marker = LimitDoc {
        key: format!("quota:user:{wa_id}"),
        version: 1,
        body: serde_json::json!({"opened_at": now.as_millis()}),
        expires_at: now.plus(DAY),
    };
    if store.put_limit(&marker, 0).await? == ReplaceOutcome::Conflict {
        return Ok(false);
    }
    let hour = now.as_millis().div_euclid(HOUR_MS);
    let key = format!("quota:conversations#{}", shard_of(wa_id));
    update_limit(store, &key, now, |hours: &mut Hours| {
        hours.retain(|h, _| *h > hour - 24);
        *hours.entry(hour).or_default() += 1;
        (
            Change::Write(()),
            now.plus(DAY + Duration::from_secs(3_600)),
        )
    })
    .await?;
    Ok(true)
}

/// Records the tier a webhook stated.
pub async fn set_tier(
    store: &dyn LimitStore,
    limit: MessagingLimit,
    now: Timestamp,
) -> Result<(), UpdateError> {
    update_limit(store, TIER_KEY, now, |tier: &mut Option<KnownTier>| {
        *tier = Some(KnownTier { limit, at: now });
        // Kept for a year: a tier changes by webhook, not by forgetting.
        (Change::Write(()), now.plus(DAY * 365))
    })
    .await
}

/// The rolling count and the tier (a webhook's, else `configured`).
pub async fn report(
    store: &dyn LimitStore,
    configured: Option<MessagingLimit>,
    now: Timestamp,
) -> Result<QuotaReport, crate::ports::store::StoreError> {
    let hour = now.as_millis().div_euclid(HOUR_MS);
    let mut used = 0;
    for shard in 0..SHARDS {
        if let Some(doc) = store
            .get_limit(&format!("quota:conversations#{shard}"))
            .await?
        {
            let hours: Hours = serde_json::from_value(doc.body).unwrap_or_default();
            used += hours.range(hour - 23..=hour).map(|(_, n)| n).sum::<u64>();
        }
    }
    let learnt = match store.get_limit(TIER_KEY).await? {
        Some(doc) => serde_json::from_value::<Option<KnownTier>>(doc.body)
            .ok()
            .flatten(),
        None => None,
    };
    let (limit, source) = match (learnt, configured) {
        (Some(t), _) => (Some(t.limit), "webhook"),
        (None, Some(c)) => (Some(c), "configured"),
        (None, None) => (None, "unknown"),
    };
    Ok(QuotaReport {
        used,
        limit,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_read_as_meta_writes_them() {
        assert_eq!(
            MessagingLimit::parse("TIER_250"),
            Some(MessagingLimit::Users(250))
        );
        assert_eq!(
            MessagingLimit::parse("TIER_1K"),
            Some(MessagingLimit::Users(1_000))
        );
        assert_eq!(
            MessagingLimit::parse("TIER_2K"),
            Some(MessagingLimit::Users(2_000))
        );
        assert_eq!(
            MessagingLimit::parse("TIER_100K"),
            Some(MessagingLimit::Users(100_000))
        );
        assert_eq!(
            MessagingLimit::parse("TIER_UNLIMITED"),
            Some(MessagingLimit::Unlimited)
        );
        assert_eq!(
            MessagingLimit::parse("10000"),
            Some(MessagingLimit::Users(10_000))
        );
        assert_eq!(MessagingLimit::parse("TIER_X"), None);
        assert_eq!(MessagingLimit::parse("0"), None);
        let v = serde_json::json!({"event": "UPGRADE", "max_daily_conversations_per_business": "TIER_10K"});
        assert_eq!(
            MessagingLimit::from_webhook(&v),
            Some(MessagingLimit::Users(10_000))
        );
        let v = serde_json::json!({"max_daily_conversation_per_phone": 1000});
        assert_eq!(
            MessagingLimit::from_webhook(&v),
            Some(MessagingLimit::Users(1_000))
        );
        let v =
            serde_json::json!({"event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"});
        assert_eq!(
            MessagingLimit::from_webhook(&v),
            Some(MessagingLimit::Unlimited)
        );
        assert_eq!(
            MessagingLimit::from_webhook(&serde_json::json!({"event": "FLAGGED"})),
            None
        );
    }
}
