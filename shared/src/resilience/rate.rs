//! Token buckets over the limits port: `rate` tokens a second, up to `burst` banked. Every
//! instance takes from the same bucket through a version-checked write, so the limit holds for
//! the whole deployment, not per process.
//!
//! One mechanism serves every limit: an API key's requests, a phone number's messages per
//! second, and Meta's pair rule (one message every 6 s to a user, bursts of 45 borrowing
//! ahead: rate 1/6, burst 45).

use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitDoc, LimitStore};
use crate::ports::store::{ReplaceOutcome, StoreError};
use crate::ports::update::{Change, UpdateError, Versioned, VersionedStore, update_versioned};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens added a second.
    pub per_second: f64,
    /// Tokens a full bucket holds (the largest burst).
    pub burst: f64,
}

impl Rate {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
        }
    }

    /// How long until `tokens` more are banked.
    fn time_for(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((tokens / self.per_second).max(0.0))
    }
}

/// A bucket as stored: `tokens` banked at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn full(rate: Rate, now: Timestamp) -> Self {
        Self {
            tokens: rate.burst,
            at_ms: now.as_millis(),
        }
    }

    fn refilled(self, rate: Rate, now: Timestamp) -> Self {
        let elapsed = (now.as_millis() - self.at_ms).max(0) as f64 / 1000.0;
        Self {
            tokens: (self.tokens + elapsed * rate.per_second).min(rate.burst),
            at_ms: now.as_millis().max(self.at_ms),
        }
    }
}

/// What a take came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Taken. `remaining` whole tokens are left; the bucket is full again after `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Not taken: try again after `retry_after`.
    Limited {
        retry_after: Duration,
        reset: Duration,
    },
}

/// The limits port as a [`VersionedStore`], so buckets change through the one update helper.
struct Limits<'a>(&'a dyn LimitStore);

impl Versioned for LimitDoc {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn label(&self) -> String {
        format!("limit {}", self.key)
    }
}

#[async_trait]
impl VersionedStore<LimitDoc> for Limits<'_> {
    async fn reread(&self, stale: &LimitDoc) -> Result<Option<LimitDoc>, StoreError> {
        Ok(Some(self.0.get_limit(&stale.key).await?.unwrap_or(
            LimitDoc {
                version: 0,
                ..stale.clone()
            },
        )))
    }
    async fn write(&self, value: &LimitDoc, expected: u64) -> Result<ReplaceOutcome, StoreError> {
        self.0.put_limit(value, expected).await
    }
}

/// Takes `n` tokens from the bucket `key` of shape `rate`, if it holds them.
pub async fn take(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    n: f64,
    now: Timestamp,
) -> Result<Decision, UpdateError> {
    let current = store.get_limit(key).await?.unwrap_or(LimitDoc {
        key: key.to_owned(),
        version: 0,
        body: serde_json::Value::Null,
        expires_at: now,
    });
    let updated = update_versioned(&Limits(store), current, |doc| {
        let bucket = serde_json::from_value::<Bucket>(doc.body.clone())
            .unwrap_or_else(|_| Bucket::full(rate, now))
            .refilled(rate, now);
        let reset_after = |b: &Bucket| rate.time_for(rate.burst - b.tokens);
        if bucket.tokens + 1e-9 < n {
            return Change::Keep(Decision::Limited {
                retry_after: rate.time_for(n - bucket.tokens),
                reset: reset_after(&bucket),
            });
        }
        let left = Bucket {
            tokens: bucket.tokens - n,
            ..bucket
        };
        doc.body = serde_json::to_value(left).unwrap_or(serde_json::Value::Null);
        // Forgotten once it would be full again anyway.
        doc.expires_at = now.plus(reset_after(&left) + Duration::from_secs(1));
        Change::Write(Decision::Allowed {
            remaining: left.tokens.floor().max(0.0) as u64,
            reset: reset_after(&left),
        })
    })
    .await?;
    Ok(updated.value)
}

/// Empties the bucket `key` and pushes it `pause` into debt: nothing is taken from it for that
/// long (the provider said the sender went too fast, e.g. Meta's 130429).
pub async fn pause(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    pause: Duration,
    now: Timestamp,
) -> Result<(), UpdateError> {
    let current = store.get_limit(key).await?.unwrap_or(LimitDoc {
        key: key.to_owned(),
        version: 0,
        body: serde_json::Value::Null,
        expires_at: now,
    });
    update_versioned(&Limits(store), current, |doc| {
        let debt = Bucket {
            tokens: -(pause.as_secs_f64() * rate.per_second),
            at_ms: now.as_millis(),
        };
        doc.body = serde_json::to_value(debt).unwrap_or(serde_json::Value::Null);
        doc.expires_at = now.plus(rate.time_for(rate.burst - debt.tokens) + Duration::from_secs(1));
        Change::Write(())
    })
    .await?;
    Ok(())
}

/// The bucket that holds a sender to `per_second` in every sliding second: a bucket of rate r
/// and burst b lets b + r through in any one second, so both are taken from the limit (2 % of
/// it, at least one token, as the burst). At 80/s: rate 78, burst 2.
pub fn per_second_ceiling(per_second: f64) -> Rate {
    let burst = (per_second * 0.02).round().max(1.0);
    Rate::new((per_second - burst).max(per_second * 0.5), burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_bucket_never_lets_more_than_the_limit_through_in_a_second() {
        // At most floor(burst + rate) events fit in any closed one-second window.
        for limit in [1.0, 5.0, 80.0, 1_000.0] {
            let r = per_second_ceiling(limit);
            assert!((r.burst + r.per_second).floor() <= limit, "{limit}: {r:?}");
            assert!(r.per_second >= limit * 0.5);
        }
        let r = per_second_ceiling(80.0);
        assert_eq!((r.per_second, r.burst), (78.0, 2.0));
        let r = per_second_ceiling(1_000.0);
        assert_eq!((r.per_second, r.burst), (980.0, 20.0));
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let rate = Rate::new(2.0, 3.0);
        let empty = Bucket {
            tokens: 0.0,
            at_ms: 0,
        };
        assert_eq!(
            empty.refilled(rate, Timestamp::from_millis(500)).tokens,
            1.0
        );
        assert_eq!(
            empty.refilled(rate, Timestamp::from_millis(10_000)).tokens,
            3.0
        );
        assert_eq!(rate.time_for(3.0), Duration::from_millis(1_500));
    }
}
