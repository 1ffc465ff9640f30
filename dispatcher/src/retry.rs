//! How long to wait before retrying a transient provider error: exponential backoff with full
//! jitter, never less than the provider's Retry-After. Whether an error is transient is the
//! provider's call ([`common::provider::SendOutcome::Transient`]); whether the wait still fits
//! the message's validity is the engine's.

use std::time::Duration;

use common::config::RetrySettings;
use rand::Rng;

/// The backoff schedule.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
}

impl RetryPolicy {
    /// The policy the settings describe.
    pub(crate) fn new(settings: &RetrySettings) -> Self {
        Self {
            base: Duration::from_millis(settings.base_ms.max(1)),
            cap: Duration::from_millis(settings.cap_ms.max(settings.base_ms.max(1))),
            max_attempts: settings.max_attempts.max(1),
        }
    }

    /// The wait before the next send after `attempts` sends failed transiently, or `None` when
    /// no attempt is left.
    pub(crate) fn delay(&self, attempts: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos() as u64));
        Some(jittered.max(retry_after.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&RetrySettings {
            base_ms: 100,
            cap_ms: 1_000,
            max_attempts: 5,
        })
    }

    #[test]
    fn waits_grow_within_their_ceiling_and_stop_after_the_last_attempt() {
        let mut rng = StdRng::seed_from_u64(7);
        for (attempts, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
            for _ in 0..200 {
                let delay = policy().delay(attempts, None, &mut rng).unwrap();
                assert!(delay <= Duration::from_millis(ceiling), "attempt {attempts}: {delay:?}");
            }
        }
        assert_eq!(policy().delay(5, None, &mut rng), None);
    }

    #[test]
    fn the_ceiling_is_capped_and_jitter_spreads_waits() {
        let mut rng = StdRng::seed_from_u64(1);
        let long = RetryPolicy::new(&RetrySettings {
            base_ms: 100,
            cap_ms: 1_000,
            max_attempts: 40,
        });
        let delays: Vec<Duration> = (0..100).map(|_| long.delay(30, None, &mut rng).unwrap()).collect();
        assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(1)));
        assert!(
            delays.iter().any(|delay| *delay < Duration::from_millis(500)),
            "full jitter reaches low"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let delay = policy().delay(1, Some(Duration::from_secs(2)), &mut rng).unwrap();
            assert!(delay >= Duration::from_secs(2));
        }
    }
}
