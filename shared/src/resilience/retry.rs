//! The retry policy as data: the wait before each attempt, jitter, the maximum age, how long an
//! unknown outcome waits for a status before it may be tried again, and how Retry-After and
//! Meta's pair limits bend the schedule.

use crate::domain::delivery::RetryLimits;
use crate::domain::outcome::FailureClass;
use crate::domain::time::Timestamp;
use rand::Rng;
use std::time::Duration;

/// The default `CARTEIRO_RETRY_SCHEDULE`: nine attempts over about ten hours.
pub const DEFAULT_SCHEDULE: &str = "0s,5s,30s,2m,10m,30m,1h,3h,6h";

/// Meta's pair limit: retry after 4^X seconds, capped here.
const PAIR_LIMIT_CAP: Duration = Duration::from_secs(15 * 60);

/// The longest Retry-After honoured; a larger one is clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// ±20 %: retries of a burst do not arrive together.
pub const DEFAULT_JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before each attempt; the first entry is the first attempt's (normally `0s`),
    /// so the length is the number of attempts (`CARTEIRO_RETRY_SCHEDULE`).
    schedule: Vec<Duration>,
    /// Each wait is scaled by a factor drawn from [1 - jitter, 1 + jitter].
    jitter: f64,
    /// No attempt starts later than this after the message was accepted
    /// (`CARTEIRO_RETRY_MAX_AGE`).
    pub max_age: Duration,
    /// How long an unknown outcome waits for a status webhook before another attempt
    /// (`CARTEIRO_UNKNOWN_OUTCOME_WAIT`).
    pub unknown_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: parse_default(),
            jitter: DEFAULT_JITTER,
            max_age: Duration::from_secs(24 * 60 * 60),
            unknown_wait: Duration::from_secs(60),
        }
    }
}

fn parse_default() -> Vec<Duration> {
    crate::config::parse_schedule(DEFAULT_SCHEDULE).unwrap_or_default()
}

impl RetryPolicy {
    /// `schedule` must not be empty (the configuration refuses an empty one).
    pub fn new(
        schedule: Vec<Duration>,
        jitter: f64,
        max_age: Duration,
        unknown_wait: Duration,
    ) -> Self {
        Self {
            schedule,
            jitter: jitter.clamp(0.0, 1.0),
            max_age,
            unknown_wait,
        }
    }

    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// Attempts allowed for a message with `limits`: the schedule's length, or fewer if the
    /// message asked for fewer.
    pub fn max_attempts(&self, limits: Option<&RetryLimits>) -> u32 {
        let global = u32::try_from(self.schedule.len()).unwrap_or(u32::MAX);
        limits
            .and_then(|l| l.max_attempts)
            .map_or(global, |own| own.min(global))
    }

    /// The maximum age for a message with `limits`, bounded by the global one.
    pub fn max_age(&self, limits: Option<&RetryLimits>) -> Duration {
        limits
            .and_then(|l| l.max_age_ms)
            .map_or(self.max_age, |ms| {
                Duration::from_millis(ms).min(self.max_age)
            })
    }

    /// The wait after the `failed`-th failed attempt of the budget, or `None` when the class is
    /// permanent or the schedule has no entry left ([`Self::next_attempt_at`] also applies the
    /// message's own limits and the maximum age).
    /// Meta's wait after a pair-rate refusal (131056): 4^X s for the X-th refusal in a row of
    /// one message (1, 4, 16, 64 s ...), capped. Dispatch passes it as the provider's
    /// `retry_after`, so the longer of it and the schedule's wait is taken.
    pub fn pair_wait(streak: u32) -> Duration {
        let exp = streak.saturating_sub(1).min(8);
        Duration::from_secs(4u64.pow(exp)).min(PAIR_LIMIT_CAP)
    }

    pub fn next_delay(
        &self,
        failed: u32,
        class: FailureClass,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if class == FailureClass::Permanent || failed == 0 {
            return None;
        }
        let index = usize::try_from(failed).ok()?;
        let base = *self.schedule.get(index)?;
        let factor = if self.jitter > 0.0 {
            rng.random_range((1.0 - self.jitter)..=(1.0 + self.jitter))
        } else {
            1.0
        };
        let mut wait = base.mul_f64(factor);
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(MAX_RETRY_AFTER));
        }
        if class == FailureClass::Unknown {
            wait = wait.max(self.unknown_wait);
        }
        Some(wait)
    }

    /// When the next attempt of a message may start, or `None` to give it up: `failed` failed
    /// attempts in its budget, budget started at `started`, `limits` its own.
    #[allow(clippy::too_many_arguments)]
    pub fn next_attempt_at(
        &self,
        failed: u32,
        class: FailureClass,
        retry_after: Option<Duration>,
        limits: Option<&RetryLimits>,
        started: Timestamp,
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> Option<Timestamp> {
        if failed >= self.max_attempts(limits) {
            return None;
        }
        let at = now.plus(self.next_delay(failed, class, retry_after, rng)?);
        (at <= started.plus(self.max_age(limits))).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(schedule: &str, jitter: f64) -> RetryPolicy {
        let schedule = crate::config::parse_schedule(schedule).unwrap_or_default();
        RetryPolicy::new(
            schedule,
            jitter,
            Duration::from_secs(24 * 3600),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn waits_follow_the_schedule_within_the_jitter_band() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            for (i, base) in p.schedule().iter().enumerate().skip(1) {
                let n = u32::try_from(i).unwrap_or(0);
                let d = p.next_delay(n, FailureClass::Retryable, None, &mut rng);
                let d = d.unwrap_or_default();
                assert!(
                    d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                    "after failure {n}: {d:?}"
                );
            }
        }
        assert_eq!(
            p.next_delay(9, FailureClass::Retryable, None, &mut rng),
            None
        );
        assert_eq!(p.max_attempts(None), 9);
    }

    #[test]
    fn the_schedule_length_is_the_number_of_attempts() {
        let p = policy("0s,2s,2s", 0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let now = Timestamp::from_secs(1_000);
        let next = |failed| {
            p.next_attempt_at(
                failed,
                FailureClass::Retryable,
                None,
                None,
                now,
                now,
                &mut StdRng::seed_from_u64(1),
            )
        };
        assert_eq!(next(1), Some(now.plus(Duration::from_secs(2))));
        assert_eq!(next(2), Some(now.plus(Duration::from_secs(2))));
        assert_eq!(next(3), None, "three attempts, then dead");
        assert_eq!(
            p.next_delay(3, FailureClass::Retryable, None, &mut rng),
            None
        );
    }

    #[test]
    fn a_message_may_ask_for_fewer_attempts_and_a_shorter_age_never_more() {
        let p = policy("0s,1s,1s,1s,1s", 0.0);
        let few = RetryLimits {
            max_attempts: Some(2),
            max_age_ms: Some(1_000),
        };
        let many = RetryLimits {
            max_attempts: Some(50),
            max_age_ms: Some(u64::MAX),
        };
        assert_eq!(p.max_attempts(Some(&few)), 2);
        assert_eq!(p.max_attempts(Some(&many)), 5);
        assert_eq!(p.max_age(Some(&few)), Duration::from_secs(1));
        assert_eq!(p.max_age(Some(&many)), p.max_age);
        let now = Timestamp::from_secs(1_000);
        let mut rng = StdRng::seed_from_u64(1);
        // The retry would start 1 s after creation: just inside a 1 s age.
        assert!(
            p.next_attempt_at(
                1,
                FailureClass::Retryable,
                None,
                Some(&few),
                now,
                now,
                &mut rng
            )
            .is_some()
        );
        let later = now.plus(Duration::from_millis(1));
        assert_eq!(
            p.next_attempt_at(
                1,
                FailureClass::Retryable,
                None,
                Some(&few),
                now,
                later,
                &mut rng
            ),
            None
        );
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        let mut rng = StdRng::seed_from_u64(1);
        let d = RetryPolicy::default().next_delay(1, FailureClass::Permanent, None, &mut rng);
        assert_eq!(d, None);
    }

    #[test]
    fn pair_limits_back_off_by_powers_of_four_and_retry_after_is_a_clamped_floor() {
        let p = policy(DEFAULT_SCHEDULE, 0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<_> = (1..=4).map(RetryPolicy::pair_wait).collect();
        assert_eq!(waits, [1, 4, 16, 64].map(Duration::from_secs));
        assert_eq!(RetryPolicy::pair_wait(20), PAIR_LIMIT_CAP);
        // As a retry-after it is a floor under the schedule's wait.
        let d = p.next_delay(
            1,
            FailureClass::PairLimited,
            Some(RetryPolicy::pair_wait(3)),
            &mut rng,
        );
        assert_eq!(d, Some(Duration::from_secs(16)));
        let d = p.next_delay(
            1,
            FailureClass::Throttled,
            Some(Duration::from_secs(60)),
            &mut rng,
        );
        assert_eq!(d, Some(Duration::from_secs(60)));
        let d = p.next_delay(
            1,
            FailureClass::Throttled,
            Some(Duration::from_secs(86_400)),
            &mut rng,
        );
        assert_eq!(
            d,
            Some(MAX_RETRY_AFTER),
            "a day-long Retry-After is clamped"
        );
    }

    #[test]
    fn an_unknown_outcome_waits_at_least_the_reconciliation_window() {
        let p = policy("0s,1s,1s", 0.0);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            p.next_delay(1, FailureClass::Unknown, None, &mut rng),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.next_delay(1, FailureClass::Retryable, None, &mut rng),
            Some(Duration::from_secs(1))
        );
    }
}
