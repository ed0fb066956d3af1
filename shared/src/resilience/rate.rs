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

/// Takes `n` tokens from the bucket `key` of shape `rate`, if it holds them, counted at `now`.
pub async fn take(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    n: f64,
    now: Timestamp,
) -> Result<Decision, UpdateError> {
    take_counted(store, key, rate, n, || now)
        .await
        .map(|(decision, _)| decision)
}

/// [`take`], counted at the time `clock` gives once the bucket has been read — just before the
/// write that takes the tokens — rather than before the read: the moment the decision is made,
/// and the one a call right after it should be measured from. Returns that moment too.
pub async fn take_counted(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    n: f64,
    clock: impl Fn() -> Timestamp,
) -> Result<(Decision, Timestamp), UpdateError> {
    update_limit(store, key, clock(), |bucket: &mut Option<Bucket>| {
        let now = clock();
        let current = bucket
            .unwrap_or_else(|| Bucket::full(rate, now))
            .refilled(rate, now);
        let reset_after = |b: &Bucket| rate.time_for(rate.burst - b.tokens);
        if current.tokens + 1e-9 < n {
            let decision = Decision::Limited {
                retry_after: rate.time_for(n - current.tokens),
                reset: reset_after(&current),
            };
            return (Change::Keep((decision, now)), now);
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
            Change::Write((decision, now)),
            now.plus(reset_after(&left) + Duration::from_secs(1)),
        )
    })
    .await
}

/// Puts back `n` tokens taken for a call that was not made (another limit said wait), up to
/// a full bucket.
pub async fn give_back(
    store: &dyn LimitStore,
    key: &str,
    rate: Rate,
    n: f64,
    now: Timestamp,
) -> Result<(), UpdateError> {
    update_limit(store, key, now, |bucket: &mut Option<Bucket>| {
        let Some(b) = bucket.map(|b| b.refilled(rate, now)) else {
            // Forgotten: as good as full.
            return (Change::Keep(()), now);
        };
        let back = Bucket {
            tokens: (b.tokens + n).min(rate.burst),
            ..b
        };
        *bucket = Some(back);
        let keep = now.plus(rate.time_for(rate.burst - back.tokens) + Duration::from_secs(1));
        (Change::Write(()), keep)
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

/// The bucket that holds a sender to `per_second` in every sliding second, counted at the call.
/// A bucket of rate r and burst b lets b + r·t through in any t; a call starts up to `lag`
/// (the limits store's [`LimitStore::write_lag`]) after its token was counted, so a second of
/// calls spans 1 s + `lag` of counting: b + r·(1 + lag) ≤ the limit. The burst is 1 % of the
/// limit, at least one and a half tokens: a bucket of one banks nothing once full, so a taker
/// woken a millisecond late by its timer would lose that time on every token; the half token
/// over one (6 ms at 80/s, 6 ms at a shard's 250/s) banks it. At 80/s on the embedded store
/// (5 ms): rate 78.11, 97.6 % of the limit; on DynamoDB (60 ms): 74.06, 92.6 %.
pub fn per_second_ceiling(per_second: f64, lag: Duration) -> Rate {
    let burst = (per_second * 0.01).max(1.5).min(per_second);
    Rate::new(
        ((per_second - burst) / (1.0 + lag.as_secs_f64())).max(per_second * 0.5),
        burst.max(1.0),
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

/// Takes one token from shard `shard` (of [`shards_for`]) of the sharded ceiling of
/// `per_second` under `key`, counted as [`take_counted`] counts.
pub async fn take_shard(
    store: &dyn LimitStore,
    key: &str,
    per_second: f64,
    shard: u32,
    clock: impl Fn() -> Timestamp,
) -> Result<Taken, UpdateError> {
    let shards = shards_for(per_second);
    let shard = shard_key(key, shards, shard % shards);
    let (decision, at) =
        take_counted(store, &shard, shard_shape(store, per_second), 1.0, clock).await?;
    Ok(Taken {
        decision,
        at,
        shard,
    })
}

/// What [`take_shard`] came to: the decision, when it was counted, and the shard's key.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub decision: Decision,
    pub at: Timestamp,
    pub shard: String,
}

/// The shape of each shard of a limit of `per_second` on `store`.
pub fn shard_shape(store: &dyn LimitStore, per_second: f64) -> Rate {
    per_second_ceiling(
        per_second / f64::from(shards_for(per_second)),
        store.write_lag(),
    )
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
    let shape = shard_shape(store, per_second);
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
            let share = per_second_ceiling(
                limit / f64::from(n),
                crate::ports::limits::DEFAULT_WRITE_LAG,
            );
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
        for lag in [5, 12, 60].map(Duration::from_millis) {
            for limit in [2.0, 5.0, 50.0, 80.0, 250.0, 1_000.0] {
                let r = per_second_ceiling(limit, lag);
                assert!(
                    (r.burst + r.per_second * (1.0 + lag.as_secs_f64())).floor() <= limit,
                    "{limit}: {r:?}"
                );
            }
        }
        // And, on a store on the same machine, within 3 % of it.
        let local = crate::ports::limits::DEFAULT_WRITE_LAG;
        for limit in [80.0, 250.0, 1_000.0] {
            assert!(
                per_second_ceiling(limit, local).per_second >= 0.97 * limit,
                "{limit}"
            );
        }
        let r = per_second_ceiling(80.0, local);
        assert_eq!(r.burst, 1.5);
        assert!((r.per_second - 78.5 / 1.005).abs() < 1e-9);
    }

    #[test]
    fn the_pair_rule_lets_a_burst_of_45_then_one_every_6_s() {
        let rule = crate::config::PAIR_RATE;
        assert_eq!(rule.burst, 45.0);
        let full = Bucket::full(rule, Timestamp::from_millis(0));
        let spent = Bucket {
            tokens: full.tokens - 45.0,
            ..full
        };
        // Empty after the burst; the next message may go 6 s later, not before.
        assert!(spent.refilled(rule, Timestamp::from_millis(5_900)).tokens < 1.0);
        assert!(spent.refilled(rule, Timestamp::from_millis(6_000)).tokens >= 1.0 - 1e-9);
        // A burst of 20 "requires a ~2-minute wait" to be whole again (Meta's words).
        let after_20 = Bucket {
            tokens: 25.0,
            ..full
        };
        assert_eq!(
            rule.time_for(rule.burst - after_20.tokens),
            Duration::from_secs(120)
        );
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
