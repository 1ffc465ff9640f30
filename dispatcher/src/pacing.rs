//! Per-sender pacing: every sender number has a rate in cells per second (a cell is one SMS
//! segment, or one message elsewhere), enforced with `governor`'s GCRA, one keyed limiter per
//! distinct rate, burst 1 so that no sender exceeds its rate in any one-second window.
//!
//! A message of `n` segments takes `n` cells one after the other and goes out when it holds
//! the last (the cost is paid before sending, so consecutive sends of a sender are at least
//! `n / rate` apart). Limiter state is kept only for senders seen lately: [`Pacer::cleanup`]
//! drops the rest, so it cannot grow without bound.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// A sender's pacing identity: its number or address (unique across tenants), or a virtual
/// sender of a demo tenant.
pub type SenderKey = Arc<str>;

/// `governor`'s clock on tokio's time, so pacing follows paused time in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

type KeyedLimiter = RateLimiter<SenderKey, DashMapStateStore<SenderKey>, TokioClock>;

/// A sending rate, in cells per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// A rate of `per_second` cells per second; `None` unless it is positive and finite.
    pub fn per_second(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then_some(Self(per_second))
    }

    /// Cells per second.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The time one cell takes, rounded to whole nanoseconds (at least 1 ns).
    pub fn period(self) -> Duration {
        Duration::from_nanos(((1e9 / self.0).round() as u64).max(1))
    }
}

/// The rate limiters of every sender, by rate.
pub struct Pacer {
    limiters: HashMap<Duration, KeyedLimiter>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// An empty pacer.
    pub fn new() -> Self {
        Self {
            limiters: HashMap::new(),
        }
    }

    /// Takes one cell of `sender` at `rate` now, or says when the next one is free.
    pub fn try_take(&mut self, sender: &SenderKey, rate: Rate) -> Result<(), Instant> {
        let period = rate.period();
        let limiter = self.limiters.entry(period).or_insert_with(|| {
            let quota = Quota::with_period(period)
                .expect("a period is never zero")
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::new(quota, DashMapStateStore::default(), TokioClock)
        });
        limiter
            .check_key(sender)
            .map_err(|not_until| Instant::from_std(not_until.earliest_possible()))
    }

    /// Forgets senders whose limiter state has fully recovered (idle for at least one period).
    pub fn cleanup(&mut self) {
        self.limiters.retain(|_, limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            !limiter.is_empty()
        });
    }

    /// How many senders have limiter state.
    pub fn tracked(&self) -> usize {
        self.limiters.values().map(KeyedLimiter::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cells_are_spaced_by_the_period() {
        let mut pacer = Pacer::new();
        let sender: SenderKey = Arc::from("+14155550100");
        let rate = Rate::per_second(4.0).unwrap();
        let start = Instant::now();
        assert!(pacer.try_take(&sender, rate).is_ok());
        let next = pacer.try_take(&sender, rate).unwrap_err();
        assert_eq!(next - start, Duration::from_millis(250));
        tokio::time::advance(Duration::from_millis(249)).await;
        assert!(pacer.try_take(&sender, rate).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pacer.try_take(&sender, rate).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn senders_do_not_share_cells_and_idle_ones_are_forgotten() {
        let mut pacer = Pacer::new();
        let rate = Rate::per_second(1.0).unwrap();
        let first: SenderKey = Arc::from("a");
        let second: SenderKey = Arc::from("b");
        assert!(pacer.try_take(&first, rate).is_ok());
        assert!(pacer.try_take(&second, rate).is_ok());
        assert!(pacer.try_take(&first, rate).is_err());
        assert_eq!(pacer.tracked(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        pacer.cleanup();
        assert_eq!(pacer.tracked(), 0);
    }

    #[test]
    fn rates_must_be_positive() {
        assert!(Rate::per_second(0.0).is_none());
        assert!(Rate::per_second(-1.0).is_none());
        assert!(Rate::per_second(f64::NAN).is_none());
        assert_eq!(
            Rate::per_second(3.0).unwrap().period(),
            Duration::from_nanos(333_333_333)
        );
    }
}
