//! Circuit breakers: stop calling what is down. One breaker per provider endpoint — the Graph
//! API of the WhatsApp number, the SMTP relay, each callback endpoint — with its state behind
//! the limits port, so every instance sees it open at once.
//!
//! - **Closed**: calls go through; the outcome of each is counted in a window
//!   (`window`, default 5 min). It opens when at least `min_calls` calls of the window failed in
//!   a ratio of `failure_ratio` or more (Convoy's defaults: 70 %, 10 calls), or after
//!   `consecutive` failures in a row.
//! - **Open**: no call is made for `cool_down`; the work waits (deferred, not failed).
//! - **Half-open**: after the cool-down one worker — the first to ask — probes; the others wait.
//!   A success closes the breaker, a failure opens it again for another cool-down.
//!
//! Only transient and unknown outcomes count as failures; a recipient's permanent error says
//! nothing about the endpoint's health (dispatch decides which is which).

use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitStore, update_limit};
use crate::ports::update::{Change, UpdateError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failure_ratio: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub consecutive: u32,
    pub cool_down: Duration,
    /// How long the half-open probe may take before another worker may probe.
    pub probe_lease: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_ratio: 0.7,
            min_calls: 10,
            window: Duration::from_secs(300),
            consecutive: 10,
            cool_down: Duration::from_secs(30),
            probe_lease: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

/// A breaker as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakerState {
    pub phase: Phase,
    /// Start of the current counting window (closed).
    pub window_start_ms: i64,
    pub calls: u32,
    pub failures: u32,
    pub consecutive_failures: u32,
    /// When it last opened.
    pub opened_at_ms: i64,
    /// While half-open: until when the probing worker holds the probe.
    pub probe_until_ms: i64,
}

/// May a call be made now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Half-open and this caller holds the probe: call, and report the outcome.
    Probe,
    /// Open (or another worker is probing): wait this long.
    Wait(Duration),
}

/// A change of phase, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl BreakerState {
    /// Decides whether a call may be made at `now`; half-opens an open breaker whose cool-down
    /// is over (the caller becomes the probe).
    pub fn admit(
        &mut self,
        policy: &BreakerPolicy,
        now: Timestamp,
    ) -> (Admission, Option<Transition>) {
        let now = now.as_millis();
        match self.phase {
            Phase::Closed => (Admission::Call, None),
            Phase::Open => {
                let reopen_at = self.opened_at_ms + ms(policy.cool_down);
                if now < reopen_at {
                    return (
                        Admission::Wait(Duration::from_millis((reopen_at - now) as u64)),
                        None,
                    );
                }
                self.phase = Phase::HalfOpen;
                self.probe_until_ms = now + ms(policy.probe_lease);
                (
                    Admission::Probe,
                    Some(Transition {
                        from: Phase::Open,
                        to: Phase::HalfOpen,
                    }),
                )
            }
            Phase::HalfOpen => {
                if now < self.probe_until_ms {
                    return (
                        Admission::Wait(Duration::from_millis(
                            (self.probe_until_ms - now).min(1_000) as u64,
                        )),
                        None,
                    );
                }
                // The probe's worker died: this caller probes instead.
                self.probe_until_ms = now + ms(policy.probe_lease);
                (Admission::Probe, None)
            }
        }
    }

    /// Gives up a half-open breaker's probe without a call, so the next caller probes; false
    /// when there was no probe to give up.
    pub fn release_probe(&mut self) -> bool {
        if self.phase != Phase::HalfOpen || self.probe_until_ms == 0 {
            return false;
        }
        self.probe_until_ms = 0;
        true
    }

    /// Counts one call's outcome (`true` = success) and moves the phase.
    pub fn record(
        &mut self,
        policy: &BreakerPolicy,
        success: bool,
        now: Timestamp,
    ) -> Option<Transition> {
        let now_ms = now.as_millis();
        let from = self.phase;
        match self.phase {
            Phase::HalfOpen | Phase::Open if success => {
                *self = Self {
                    window_start_ms: now_ms,
                    ..Self::default()
                };
            }
            Phase::HalfOpen | Phase::Open => {
                self.phase = Phase::Open;
                self.opened_at_ms = now_ms;
                self.probe_until_ms = 0;
            }
            Phase::Closed => {
                if now_ms - self.window_start_ms >= ms(policy.window) {
                    self.window_start_ms = now_ms;
                    self.calls = 0;
                    self.failures = 0;
                }
                self.calls += 1;
                if success {
                    self.consecutive_failures = 0;
                } else {
                    self.failures += 1;
                    self.consecutive_failures += 1;
                }
                let ratio_trips = self.calls >= policy.min_calls
                    && f64::from(self.failures) >= policy.failure_ratio * f64::from(self.calls);
                if ratio_trips || self.consecutive_failures >= policy.consecutive {
                    self.phase = Phase::Open;
                    self.opened_at_ms = now_ms;
                }
            }
        }
        (from != self.phase).then_some(Transition {
            from,
            to: self.phase,
        })
    }
}

fn keep_until(policy: &BreakerPolicy, now: Timestamp) -> Timestamp {
    now.plus(policy.window.max(policy.cool_down + policy.probe_lease) * 2)
}

fn log(key: &str, t: Option<Transition>) {
    if let Some(t) = &t {
        let to = match t.to {
            Phase::Closed => "closed",
            Phase::Open => "opened",
            Phase::HalfOpen => "half_open",
        };
        crate::observability::metrics::circuit(key.trim_start_matches("breaker:"), to);
    }
    match t {
        Some(Transition {
            to: Phase::Open,
            from,
        }) => {
            tracing::warn!(
                breaker = key,
                ?from,
                "circuit breaker opened: calls stop for the cool-down"
            );
        }
        Some(Transition { from, to }) => {
            tracing::info!(breaker = key, ?from, ?to, "circuit breaker transition")
        }
        None => {}
    }
}

/// Asks the breaker `key` whether a call may be made now.
pub async fn admit(
    store: &dyn LimitStore,
    key: &str,
    policy: &BreakerPolicy,
    now: Timestamp,
) -> Result<Admission, UpdateError> {
    let (admission, t) = update_limit(store, key, now, |b: &mut BreakerState| {
        let before = b.clone();
        let (admission, t) = b.admit(policy, now);
        let change = if *b == before {
            Change::Keep((admission, t))
        } else {
            Change::Write((admission, t))
        };
        (change, keep_until(policy, now))
    })
    .await?;
    log(key, t);
    Ok(admission)
}

/// Gives up the probe this caller was admitted for without calling (its message had to wait
/// for a rate limit), so the next caller probes now rather than after the probe lease.
pub async fn release_probe(
    store: &dyn LimitStore,
    key: &str,
    policy: &BreakerPolicy,
    now: Timestamp,
) -> Result<(), UpdateError> {
    update_limit(store, key, now, |b: &mut BreakerState| {
        if b.release_probe() {
            (Change::Write(()), keep_until(policy, now))
        } else {
            (Change::Keep(()), now)
        }
    })
    .await
}

/// Counts a call's outcome on the breaker `key`.
pub async fn record(
    store: &dyn LimitStore,
    key: &str,
    policy: &BreakerPolicy,
    success: bool,
    now: Timestamp,
) -> Result<(), UpdateError> {
    let t = update_limit(store, key, now, |b: &mut BreakerState| {
        // A success on a quiet closed breaker changes nothing worth a write.
        if success && b.phase == Phase::Closed && b.failures == 0 && b.consecutive_failures == 0 {
            return (Change::Keep(None), now);
        }
        let t = b.record(policy, success, now);
        (Change::Write(t), keep_until(policy, now))
    })
    .await?;
    log(key, t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn a_failure_ratio_over_the_minimum_calls_opens_it() {
        let p = BreakerPolicy::default();
        let mut b = BreakerState {
            window_start_ms: at(0).as_millis(),
            ..BreakerState::default()
        };
        for i in 0..3 {
            assert_eq!(b.record(&p, true, at(i)), None);
        }
        // 7 failures of 10 calls: 70 %.
        for i in 0..6 {
            assert_eq!(b.record(&p, false, at(10 + i)), None);
        }
        assert_eq!(
            b.record(&p, false, at(20)),
            Some(Transition {
                from: Phase::Closed,
                to: Phase::Open
            })
        );
    }

    #[test]
    fn fewer_calls_than_the_minimum_never_open_it_by_ratio_and_windows_reset() {
        let p = BreakerPolicy {
            consecutive: 100,
            ..BreakerPolicy::default()
        };
        let mut b = BreakerState {
            window_start_ms: at(0).as_millis(),
            ..BreakerState::default()
        };
        for i in 0..9 {
            assert_eq!(b.record(&p, false, at(i)), None);
        }
        // The window ended: its failures are forgotten.
        assert_eq!(b.record(&p, false, at(400)), None);
        assert_eq!((b.calls, b.failures), (1, 1));
    }

    #[test]
    fn consecutive_failures_open_it() {
        let p = BreakerPolicy {
            consecutive: 3,
            min_calls: 1_000,
            ..BreakerPolicy::default()
        };
        let mut b = BreakerState::default();
        b.record(&p, false, at(0));
        b.record(&p, true, at(1));
        b.record(&p, false, at(2));
        b.record(&p, false, at(3));
        assert_eq!(b.phase, Phase::Closed);
        assert_eq!(b.record(&p, false, at(4)).map(|t| t.to), Some(Phase::Open));
    }

    #[test]
    fn open_waits_then_one_probe_then_success_closes_and_failure_reopens() {
        let p = BreakerPolicy {
            consecutive: 1,
            ..BreakerPolicy::default()
        };
        let mut b = BreakerState::default();
        b.record(&p, false, at(0));
        assert_eq!(
            b.admit(&p, at(10)).0,
            Admission::Wait(Duration::from_secs(20))
        );
        // Cool-down over: the first caller probes, the next waits.
        assert_eq!(
            b.admit(&p, at(30)),
            (
                Admission::Probe,
                Some(Transition {
                    from: Phase::Open,
                    to: Phase::HalfOpen
                })
            )
        );
        assert!(matches!(b.admit(&p, at(31)).0, Admission::Wait(_)));
        // The probe fails: open again, for another cool-down.
        assert_eq!(
            b.record(&p, false, at(32)),
            Some(Transition {
                from: Phase::HalfOpen,
                to: Phase::Open
            })
        );
        assert!(matches!(b.admit(&p, at(40)).0, Admission::Wait(_)));
        assert_eq!(b.admit(&p, at(62)).0, Admission::Probe);
        // The probe succeeds: closed, counts cleared.
        assert_eq!(
            b.record(&p, true, at(63)),
            Some(Transition {
                from: Phase::HalfOpen,
                to: Phase::Closed
            })
        );
        assert_eq!(b.admit(&p, at(64)), (Admission::Call, None));
        assert_eq!((b.calls, b.failures, b.consecutive_failures), (0, 0, 0));
    }

    #[test]
    fn a_probe_handed_back_lets_the_next_caller_probe_at_once() {
        let p = BreakerPolicy {
            consecutive: 1,
            ..BreakerPolicy::default()
        };
        let mut b = BreakerState::default();
        b.record(&p, false, at(0));
        assert_eq!(b.phase, Phase::Open);
        let later = at(0).plus(p.cool_down);
        assert_eq!(b.admit(&p, later).0, Admission::Probe);
        // Another caller waits for the probe...
        assert!(matches!(b.admit(&p, later).0, Admission::Wait(_)));
        // ...until the prober, put off by a rate limit, hands it back.
        assert!(b.release_probe());
        assert!(!b.release_probe(), "nothing left to hand back");
        assert_eq!(b.admit(&p, later).0, Admission::Probe);
        assert_eq!(b.phase, Phase::HalfOpen);
    }

    #[test]
    fn a_probe_whose_worker_died_is_taken_over_after_its_lease() {
        let p = BreakerPolicy {
            consecutive: 1,
            ..BreakerPolicy::default()
        };
        let mut b = BreakerState::default();
        b.record(&p, false, at(0));
        assert_eq!(b.admit(&p, at(30)).0, Admission::Probe);
        assert!(matches!(b.admit(&p, at(59)).0, Admission::Wait(_)));
        assert_eq!(b.admit(&p, at(61)).0, Admission::Probe);
    }
}
