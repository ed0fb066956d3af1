//! The retry schedule: how long to wait after each failed attempt, as data.

use crate::providers::FailureClass;
use rand::Rng;
use std::time::Duration;

/// Waits after the 1st, 2nd, ... failed attempt, before jitter. After the last one the
/// message is given up (`dead`). Nine attempts over about ten hours.
pub const DEFAULT_DELAYS: [Duration; 8] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
];

/// Meta's pair limit: retry after 4^X seconds (REFERENCE §1.7), capped here.
const PAIR_LIMIT_CAP: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    /// Each wait is scaled by a factor drawn from [1 - jitter, 1 + jitter], so retries of a
    /// burst do not arrive together.
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::new(DEFAULT_DELAYS.to_vec(), 0.2)
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Self {
        Self {
            delays,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// Attempts allowed in all: one more than the waits between them.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait after `failed_attempts` failures of class `class`, or `None` when the message
    /// should be given up. `retry_after` is a wait the provider asked for; it is honoured as a
    /// minimum.
    pub fn next_delay(
        &self,
        failed_attempts: u32,
        class: FailureClass,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let index = usize::try_from(failed_attempts.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        let base = match class {
            FailureClass::PairLimited => {
                let exp = u32::try_from(index).unwrap_or(u32::MAX).min(8);
                Duration::from_secs(4u64.pow(exp)).min(PAIR_LIMIT_CAP)
            }
            FailureClass::Permanent => return None,
            _ => base,
        };
        let factor = if self.jitter > 0.0 {
            rng.random_range((1.0 - self.jitter)..=(1.0 + self.jitter))
        } else {
            1.0
        };
        let jittered = base.mul_f64(factor);
        Some(retry_after.map_or(jittered, |min| jittered.max(min)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn waits_follow_the_schedule_within_the_jitter_band() {
        let schedule = RetrySchedule::default();
        let mut rng = StdRng::seed_from_u64(7);
        for (i, base) in DEFAULT_DELAYS.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(0);
            let d = schedule.next_delay(n, FailureClass::Retryable, None, &mut rng);
            let d = d.unwrap_or_default();
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "attempt {n}: {d:?}"
            );
        }
        assert_eq!(
            schedule.next_delay(9, FailureClass::Retryable, None, &mut rng),
            None
        );
        assert_eq!(schedule.max_attempts(), 9);
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        let mut rng = StdRng::seed_from_u64(1);
        let d = RetrySchedule::default().next_delay(1, FailureClass::Permanent, None, &mut rng);
        assert_eq!(d, None);
    }

    #[test]
    fn pair_limits_back_off_by_powers_of_four_and_retry_after_is_a_floor() {
        let schedule = RetrySchedule::new(DEFAULT_DELAYS.to_vec(), 0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<_> = (1..=4)
            .filter_map(|n| schedule.next_delay(n, FailureClass::PairLimited, None, &mut rng))
            .collect();
        assert_eq!(waits, [1, 4, 16, 64].map(Duration::from_secs));
        let d = schedule.next_delay(
            1,
            FailureClass::Throttled,
            Some(Duration::from_secs(60)),
            &mut rng,
        );
        assert_eq!(d, Some(Duration::from_secs(60)));
    }
}
