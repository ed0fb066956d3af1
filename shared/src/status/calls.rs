//! Provider calls as the status read model counts them: per integration and minute, the calls
//! that got through and those that failed, a latency histogram, and the last success and
//! failure. Dispatch notes each call in a [`CallLedger`] in memory; [`flush`] adds what was
//! noted to the store now and then (every second locally; on Lambda after an invocation, at
//! most every [`LAMBDA_FLUSH_EVERY`]), so the status costs no write per message.
//!
//! The documents sit behind the limits port (`status:calls:<hour>#<shard>`, kept two hours):
//! one per hour per shard, each flush picking a shard at random so instances flushing at once
//! rarely meet on one item; [`window`] reads the two hours' shards, never scans.

use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitStore, update_limit};
use crate::ports::update::{Change, UpdateError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (ms) of the latency histogram's buckets; one more bucket takes the rest.
pub const LATENCY_BOUNDS_MS: [u64; 11] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// Documents an hour's counts are spread over.
pub const SHARDS: u32 = 4;

/// A Lambda instance flushes at most this often (and after the invocation that passes it).
pub const LAMBDA_FLUSH_EVERY: Duration = Duration::from_secs(10);

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// One integration's calls in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub failed: u64,
    /// Calls per latency bucket ([`LATENCY_BOUNDS_MS`], then the overflow).
    #[serde(default)]
    pub latency: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed: Option<Timestamp>,
    /// The provider's code of the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Tally {
    fn note(&mut self, ok: bool, latency: Duration, error: Option<&str>, at: Timestamp) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        self.latency[bucket] += 1;
        if ok {
            self.ok += 1;
            self.last_ok = self.last_ok.max(Some(at));
        } else {
            self.failed += 1;
            if self.last_failed.is_none_or(|t| t <= at) {
                self.last_failed = Some(at);
                self.last_error = error.map(str::to_owned);
            }
        }
    }

    /// Adds `other` into this one.
    pub fn absorb(&mut self, other: &Self) {
        self.ok += other.ok;
        self.failed += other.failed;
        let n = self.latency.len().max(other.latency.len());
        self.latency.resize(n, 0);
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
        self.last_ok = self.last_ok.max(other.last_ok);
        if other.last_failed > self.last_failed {
            self.last_failed = other.last_failed;
            self.last_error.clone_from(&other.last_error);
        }
    }

    pub fn calls(&self) -> u64 {
        self.ok + self.failed
    }

    /// The latency under which `q` of the calls fell (0 < q ≤ 1), as the upper bound of its
    /// bucket; `None` with no calls.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    LATENCY_BOUNDS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] * 2),
                );
            }
        }
        None
    }
}

/// integration → minute (since the epoch) → tally.
pub type Minutes = BTreeMap<String, BTreeMap<i64, Tally>>;

/// Calls noted in this process and not yet flushed. Share one per process.
#[derive(Debug, Default)]
pub struct CallLedger {
    pending: Mutex<Minutes>,
    last_flush: Mutex<Option<std::time::Instant>>,
}

impl CallLedger {
    /// Notes one provider call of `integration` (named as its breaker is).
    pub fn note(
        &self,
        integration: &str,
        ok: bool,
        latency: Duration,
        error: Option<&str>,
        at: Timestamp,
    ) {
        let minute = at.as_millis().div_euclid(MINUTE_MS);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .entry(integration.to_owned())
            .or_default()
            .entry(minute)
            .or_default()
            .note(ok, latency, error, at);
    }

    fn take(&self) -> Minutes {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn give_back(&self, minutes: Minutes) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (integration, by_minute) in minutes {
            let mine = pending.entry(integration).or_default();
            for (minute, tally) in by_minute {
                mine.entry(minute).or_default().absorb(&tally);
            }
        }
    }

    /// Whether `every` has passed since the last flush (true the first time).
    pub fn due(&self, every: Duration) -> bool {
        let last = self
            .last_flush
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_none_or(|t| t.elapsed() >= every)
    }
}

fn hour_key(hour: i64, shard: u32) -> String {
    format!("status:calls:{hour}#{shard}")
}

/// Adds what the ledger noted to the store, one write per hour touched. What cannot be
/// written stays in the ledger for the next flush.
pub async fn flush(
    ledger: &CallLedger,
    store: &dyn LimitStore,
    now: Timestamp,
) -> Result<(), UpdateError> {
    *ledger
        .last_flush
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
    let pending = ledger.take();
    if pending.is_empty() {
        return Ok(());
    }
    let mut by_hour: BTreeMap<i64, Minutes> = BTreeMap::new();
    for (integration, minutes) in pending {
        for (minute, tally) in minutes {
            by_hour
                .entry(minute.div_euclid(60))
                .or_default()
                .entry(integration.clone())
                .or_default()
                .insert(minute, tally);
        }
    }
    let shard = rand::random::<u32>() % SHARDS;
    let mut hours = by_hour.into_iter();
    while let Some((hour, minutes)) = hours.next() {
        let keep_until = Timestamp::from_millis((hour + 2) * HOUR_MS);
        let written = update_limit(store, &hour_key(hour, shard), now, |doc: &mut Minutes| {
            for (integration, by_minute) in &minutes {
                let stored = doc.entry(integration.clone()).or_default();
                for (minute, tally) in by_minute {
                    stored.entry(*minute).or_default().absorb(tally);
                }
            }
            (Change::Write(()), keep_until)
        })
        .await;
        if let Err(e) = written {
            ledger.give_back(minutes);
            for (_, rest) in hours {
                ledger.give_back(rest);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// One integration's calls over a span of minutes, added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub last_5m: Tally,
    pub last_1h: Tally,
    /// Calls a minute over the last hour, oldest first (60 entries), for the charts.
    pub per_minute: Vec<(i64, Tally)>,
}

/// Every integration's calls over the last hour, as flushed.
pub async fn window(
    store: &dyn LimitStore,
    now: Timestamp,
) -> Result<BTreeMap<String, Window>, crate::ports::store::StoreError> {
    let minute_now = now.as_millis().div_euclid(MINUTE_MS);
    let hour_now = minute_now.div_euclid(60);
    let mut merged: Minutes = BTreeMap::new();
    for hour in [hour_now - 1, hour_now] {
        for shard in 0..SHARDS {
            let Some(doc) = store.get_limit(&hour_key(hour, shard)).await? else {
                continue;
            };
            let minutes: Minutes = serde_json::from_value(doc.body).unwrap_or_default();
            for (integration, by_minute) in minutes {
                let mine = merged.entry(integration).or_default();
                for (minute, tally) in by_minute {
                    mine.entry(minute).or_default().absorb(&tally);
                }
            }
        }
    }
    let mut windows = BTreeMap::new();
    for (integration, by_minute) in merged {
        let mut w = Window::default();
        for m in (minute_now - 59)..=minute_now {
            let tally = by_minute.get(&m).cloned().unwrap_or_default();
            if m > minute_now - 5 {
                w.last_5m.absorb(&tally);
            }
            w.last_1h.absorb(&tally);
            w.per_minute.push((m, tally));
        }
        // Last success and failure even if older than the hour shown.
        let mut kept = Tally::default();
        for tally in by_minute.values() {
            kept.absorb(tally);
        }
        w.last_1h.last_ok = kept.last_ok;
        w.last_1h.last_failed = kept.last_failed;
        w.last_1h.last_error = kept.last_error;
        windows.insert(integration, w);
    }
    Ok(windows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut t = Tally::default();
        let at = Timestamp::from_secs(1_800_000_000);
        for _ in 0..90 {
            t.note(true, Duration::from_millis(40), None, at);
        }
        for _ in 0..10 {
            t.note(false, Duration::from_millis(900), Some("131000"), at);
        }
        assert_eq!(t.latency_quantile_ms(0.5), Some(50));
        assert_eq!(t.latency_quantile_ms(0.95), Some(1_000));
        assert_eq!((t.ok, t.failed), (90, 10));
        assert_eq!(t.last_error.as_deref(), Some("131000"));
        assert_eq!(Tally::default().latency_quantile_ms(0.5), None);
    }
}
