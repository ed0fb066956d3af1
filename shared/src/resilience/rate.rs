//! Token buckets over the limits port: `rate` tokens a second, up to `burst` banked. Every
//! instance takes from the same bucket through a version-checked write, so the limit holds for
//! the whole deployment, not per process.
//!
//! One mechanism serves every limit: an API key's requests, a phone number's messages per
//! second, and Meta's pair rule (one message every 6 s to a user, bursts of 45 borrowing
//! ahead: rate 1/6, burst 45).

use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitStore, update_limit};
use crate::ports::update::{Change, UpdateError};
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

/// Takes `n` tokens from the bucket `key` of shape `rate`, if it holds them.
pub async fn take(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    n: f64,
    now: Timestamp,
) -> Result<Decision, UpdateError> {
    update_limit(store, key, now, |bucket: &mut Option<Bucket>| {
        let current = bucket
            .unwrap_or_else(|| Bucket::full(rate, now))
            .refilled(rate, now);
        let reset_after = |b: &Bucket| rate.time_for(rate.burst - b.tokens);
        if current.tokens + 1e-9 < n {
            let decision = Decision::Limited {
                retry_after: rate.time_for(n - current.tokens),
                reset: reset_after(&current),
            };
            return (Change::Keep(decision), now);
        }
        let left = Bucket {
            tokens: current.tokens - n,
            ..current
        };
        *bucket = Some(left);
        let decision = Decision::Allowed {
            remaining: left.tokens.floor().max(0.0) as u64,
            reset: reset_after(&left),
        };
        // Forgotten once it would be full again anyway.
        (
            Change::Write(decision),
            now.plus(reset_after(&left) + Duration::from_secs(1)),
        )
    })
    .await
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
    update_limit(store, key, now, |bucket: &mut Option<Bucket>| {
        let debt = Bucket {
            tokens: -(pause.as_secs_f64() * rate.per_second),
            at_ms: now.as_millis(),
        };
        *bucket = Some(debt);
        let keep = now.plus(rate.time_for(rate.burst - debt.tokens) + Duration::from_secs(1));
        (Change::Write(()), keep)
    })
    .await
}

/// How late after the moment a token was counted at the call may start and still be inside
/// the sliding second [`per_second_ceiling`] guarantees. Dispatch does not spend a token
/// whose take came back later than this.
pub const MAX_TOKEN_LAG: Duration = Duration::from_millis(12);

/// The bucket that holds a sender to `per_second` in every sliding second, counted at the call.
/// A bucket of rate r and burst b lets b + r·t through in any t; calls start up to
/// [`MAX_TOKEN_LAG`] after their token was counted, so a second of calls spans
/// 1 s + the lag of counting: b + r·(1 + lag) ≤ the limit, with a burst of one. At 80/s:
/// rate 78.06, 97.6 % of the limit; at 1,000/s in four shards, 981.
pub fn per_second_ceiling(per_second: f64) -> Rate {
    let burst = 1.0;
    let lag = MAX_TOKEN_LAG.as_secs_f64();
    Rate::new(
        ((per_second - burst) / (1.0 + lag)).max(per_second * 0.5),
        burst,
    )
}

/// The most messages a second one bucket document is asked to count. Every take is a
/// conditional write to one DynamoDB item, and one partition takes 1,000 writes a second, so
/// a faster limit (a number upgraded to 1,000/s) is split into shards, each a ceiling bucket of
/// an equal share: any one second lets at most the sum of the shares through, the limit.
pub const SHARD_LIMIT: f64 = 250.0;

/// How many shards a limit of `per_second` is split into.
pub fn shards_for(per_second: f64) -> u32 {
    ((per_second / SHARD_LIMIT).ceil() as u32).max(1)
}

/// The key of shard `i` of the limit `key` (the key itself for a limit of one shard).
fn shard_key(key: &str, shards: u32, i: u32) -> String {
    if shards == 1 {
        key.to_owned()
    } else {
        format!("{key}#{i}")
    }
}

/// Takes one token from the sharded ceiling of `per_second` under `key`: from shard
/// `start % shards` (callers spread their starts), or failing that from the next one; limited
/// only when both are empty, with the sooner of their waits.
pub async fn take_sharded(
    store: &dyn LimitStore,
    key: &str,
    per_second: f64,
    start: u32,
    now: Timestamp,
) -> Result<Decision, UpdateError> {
    let shards = shards_for(per_second);
    let shape = per_second_ceiling(per_second / f64::from(shards));
    let first = start % shards;
    let mut limited: Option<Decision> = None;
    for i in [first, (first + 1) % shards]
        .into_iter()
        .take(shards.min(2) as usize)
    {
        match take(store, &shard_key(key, shards, i), shape, 1.0, now).await? {
            allowed @ Decision::Allowed { .. } => return Ok(allowed),
            Decision::Limited { retry_after, reset } => {
                let sooner = match limited {
                    Some(Decision::Limited { retry_after: r, .. }) => retry_after.min(r),
                    _ => retry_after,
                };
                limited = Some(Decision::Limited {
                    retry_after: sooner,
                    reset,
                });
            }
        }
    }
    Ok(limited.unwrap_or(Decision::Limited {
        retry_after: shape.time_for(1.0),
        reset: shape.time_for(shape.burst),
    }))
}

/// [`pause`] for every shard of a sharded limit.
pub async fn pause_sharded(
    store: &dyn LimitStore,
    key: &str,
    per_second: f64,
    how_long: Duration,
    now: Timestamp,
) -> Result<(), UpdateError> {
    let shards = shards_for(per_second);
    let shape = per_second_ceiling(per_second / f64::from(shards));
    for i in 0..shards {
        pause(store, &shard_key(key, shards, i), shape, how_long, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_limit_is_split_into_shards_whose_shares_add_up_to_no_more_than_it() {
        assert_eq!(shards_for(80.0), 1);
        assert_eq!(shards_for(250.0), 1);
        assert_eq!(shards_for(251.0), 2);
        assert_eq!(shards_for(1_000.0), 4);
        for limit in [80.0, 300.0, 1_000.0] {
            let n = shards_for(limit);
            let share = per_second_ceiling(limit / f64::from(n));
            let most = f64::from(n) * (share.burst + share.per_second).floor();
            assert!(most <= limit, "{limit}: {n} × {share:?}");
            // And close to it: within 3 % of the limit on average.
            assert!(
                f64::from(n) * share.per_second >= limit * 0.97,
                "{limit}: {share:?}"
            );
        }
        assert_eq!(shard_key("whatsapp:sender", 1, 0), "whatsapp:sender");
        assert_eq!(shard_key("whatsapp:sender", 4, 3), "whatsapp:sender#3");
    }

    #[test]
    fn a_ceiling_bucket_never_lets_more_than_the_limit_through_in_a_second() {
        // At most floor(burst + rate·(1 s + lag)) calls fit in any one-second window of calls.
        let lag = MAX_TOKEN_LAG.as_secs_f64();
        for limit in [2.0, 5.0, 50.0, 80.0, 250.0, 1_000.0] {
            let r = per_second_ceiling(limit);
            assert!(
                (r.burst + r.per_second * (1.0 + lag)).floor() <= limit,
                "{limit}: {r:?}"
            );
        }
        // And within 3 % of it.
        for limit in [80.0, 250.0, 1_000.0] {
            assert!(
                per_second_ceiling(limit).per_second >= 0.97 * limit,
                "{limit}"
            );
        }
        let r = per_second_ceiling(80.0);
        assert_eq!(r.burst, 1.0);
        assert!((r.per_second - 79.0 / 1.012).abs() < 1e-9);
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
