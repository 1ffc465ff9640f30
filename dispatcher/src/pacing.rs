//! Per-sender pacing: every sender number has a rate in cells per second (a cell is one SMS
//! segment, or one message elsewhere), enforced with `governor`'s GCRA, one keyed limiter per
//! distinct rate, burst 1 so that no sender exceeds its rate in any one-second window.
//!
//! A message of `n` segments takes `n` cells one after the other and goes out when it holds
//! the last (the cost is paid before sending, so consecutive sends of a sender are at least
//! `n / rate` apart). Limiter state is kept only for senders seen lately: [`Pacer::cleanup`]
//! drops the rest, so it cannot grow without bound.
//!
//! A provider sees a call when its send task starts, a few milliseconds after the release when
//! thousands of senders fire at once, and that delay varies: a late call followed by a prompt
//! one would land closer than the rate allows. So a sender's next message takes its first cell
//! no sooner than one period after its previous call actually started ([`CallStarts`], written
//! by the send tasks), and not while that call has not started yet. Senders faster than one
//! cell a millisecond (no real number) skip this: the runtime's timers, which fire on whole
//! milliseconds, could not space their calls anyway, and the wait would cap them near one
//! message a millisecond.
//!
//! Beside the limiters, the pacer keeps each sender's cells of the last second and counts a
//! cell taken when the window already held `ceil(rate)` (the rule the provider simulator and
//! the carriers apply) in `dispatcher_pacing_violations_total`: an independent check that
//! should stay at zero, watched by an alert.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
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

    /// The time one cell takes, rounded up to whole nanoseconds (at least 1 ns): rounded down,
    /// `ceil(rate)` periods could end a nanosecond inside one second and let one cell too many
    /// into it (at 3/s, three periods of 333,333,333 ns).
    pub fn period(self) -> Duration {
        Duration::from_nanos(((1e9 / self.0).ceil() as u64).max(1))
    }

    /// The most cells a half-open one-second window may hold: the rate rounded up, at least 1.
    pub fn per_window(self) -> usize {
        (self.0.ceil() as usize).max(1)
    }
}

/// A one-second window.
const WINDOW: Duration = Duration::from_secs(1);

/// How often a sender whose previous call has not started yet is looked at again.
const CALL_POLL: Duration = Duration::from_millis(1);

/// How long a released call may take to start before the pacer stops waiting for it (a send
/// task always starts; this only bounds the wait if one never reports).
const CALL_START_LIMIT: Duration = Duration::from_secs(1);

/// How long a call's start is remembered: past it, the limiter alone spaces the next cell.
const CALL_MEMORY: Duration = Duration::from_secs(10);

/// The shortest period whose calls are spaced from their actual starts.
const CALL_SPACED_FROM: Duration = Duration::from_millis(1);

/// Where a sender's last provider call stands.
#[derive(Debug, Clone, Copy)]
enum CallMark {
    /// Released by pacing at this instant; its send task has not started the call yet.
    Released(Instant),
    /// The call started at this instant.
    Started(Instant),
}

/// When each paced sender's last provider call started, as its send task reports it; shared
/// between the engine's pacer and the send tasks.
#[derive(Debug, Default)]
pub struct CallStarts(DashMap<SenderKey, CallMark>);

impl CallStarts {
    /// Notes that `sender`'s call starts now (called by the send task, just before the call).
    pub fn started(&self, sender: &SenderKey) {
        self.0.insert(Arc::clone(sender), CallMark::Started(Instant::now()));
    }
}

/// The rate limiters of every sender, by rate.
pub struct Pacer {
    limiters: HashMap<Duration, KeyedLimiter>,
    /// Each sender's last call, released or started.
    calls: Arc<CallStarts>,
    /// Each sender's cells of the last second, oldest first.
    windows: HashMap<SenderKey, VecDeque<Instant>>,
    /// Cells taken over a full window since the start.
    violations: u64,
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
            calls: Arc::default(),
            windows: HashMap::new(),
            violations: 0,
        }
    }

    /// Where send tasks report their calls' starts.
    pub fn call_starts(&self) -> Arc<CallStarts> {
        Arc::clone(&self.calls)
    }

    /// Whether `sender`'s next message may take its first cell now: not until one period after
    /// its previous call started, nor while that call has not started; else when to look again.
    pub fn after_previous_call(&self, sender: &SenderKey, rate: Rate) -> Result<(), Instant> {
        if rate.period() < CALL_SPACED_FROM {
            return Ok(());
        }
        let now = Instant::now();
        match self.calls.0.get(sender).map(|mark| *mark) {
            Some(CallMark::Started(at)) if now < at + rate.period() => Err(at + rate.period()),
            Some(CallMark::Released(at)) if now.duration_since(at) < CALL_START_LIMIT => Err(now + CALL_POLL),
            _ => Ok(()),
        }
    }

    /// Notes that `sender`'s message was released now; its send task reports the call's start.
    pub fn released(&self, sender: &SenderKey, rate: Rate) {
        if rate.period() >= CALL_SPACED_FROM {
            self.calls
                .0
                .insert(Arc::clone(sender), CallMark::Released(Instant::now()));
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
            .map_err(|not_until| Instant::from_std(not_until.earliest_possible()))?;
        self.check_window(sender, rate);
        Ok(())
    }

    /// Notes a cell taken now and counts it as a violation if the last second already held
    /// all the cells the rate allows.
    fn check_window(&mut self, sender: &SenderKey, rate: Rate) {
        let now = Instant::now();
        let allowed = rate.per_window();
        let window = self.windows.entry(Arc::clone(sender)).or_default();
        while window.front().is_some_and(|taken| now.duration_since(*taken) >= WINDOW) {
            window.pop_front();
        }
        if window.len() >= allowed {
            self.violations += 1;
            metrics::counter!("dispatcher_pacing_violations_total").increment(1);
            tracing::error!(sender = %sender, allowed, "a sender took more cells in one second than its rate allows");
            window.pop_front();
        }
        window.push_back(now);
    }

    /// Cells taken over a full one-second window since the start (zero unless pacing is broken).
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// Forgets senders whose limiter state has fully recovered (idle for at least one period)
    /// and whose last cell is more than a second old.
    pub fn cleanup(&mut self) {
        self.limiters.retain(|_, limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            !limiter.is_empty()
        });
        let now = Instant::now();
        self.windows
            .retain(|_, window| window.back().is_some_and(|last| now.duration_since(*last) < WINDOW));
        self.windows.shrink_to_fit();
        self.calls.0.retain(|_, mark| {
            let (CallMark::Released(at) | CallMark::Started(at)) = *mark;
            now.duration_since(at) < CALL_MEMORY
        });
        self.calls.0.shrink_to_fit();
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
        assert!(pacer.windows.is_empty(), "the window check forgets them too");
    }

    #[test]
    fn periods_round_up_so_that_a_second_never_holds_one_cell_too_many() {
        for per_second in [3.0, 7.0, 30.0, 75.0, 0.3] {
            let rate = Rate::per_second(per_second).unwrap();
            let cells = u32::try_from(rate.per_window()).unwrap();
            assert!(rate.period() * cells >= WINDOW, "{per_second}/s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_next_message_waits_for_one_period_after_the_previous_call_started() {
        let pacer = Pacer::new();
        let sender: SenderKey = Arc::from("+14155550100");
        let rate = Rate::per_second(1.0).unwrap();
        assert!(pacer.after_previous_call(&sender, rate).is_ok(), "no call yet");
        pacer.released(&sender, rate);
        let released = Instant::now();
        // The call has not started: look again in a moment.
        assert_eq!(pacer.after_previous_call(&sender, rate), Err(released + CALL_POLL));
        // It starts 5 ms after its release (a busy runtime): the next one is due a period later.
        tokio::time::advance(Duration::from_millis(5)).await;
        pacer.call_starts().started(&sender);
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(995)).await;
        assert_eq!(
            pacer.after_previous_call(&sender, rate),
            Err(started + Duration::from_secs(1)),
            "one period after the release is not enough"
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(pacer.after_previous_call(&sender, rate).is_ok());
        // A call that never reports stops holding the sender after a while.
        pacer.released(&sender, rate);
        tokio::time::advance(CALL_START_LIMIT).await;
        assert!(pacer.after_previous_call(&sender, rate).is_ok());
        // Faster than a cell a millisecond: the limiter alone.
        let fast = Rate::per_second(5_000.0).unwrap();
        pacer.released(&sender, fast);
        assert!(pacer.after_previous_call(&sender, fast).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_check_counts_cells_over_the_rate_and_nothing_else() {
        let mut pacer = Pacer::new();
        let sender: SenderKey = Arc::from("+14155550100");
        let rate = Rate::per_second(3.0).unwrap();
        // Through the limiter: a cell every 333 ms, never three in a second plus one.
        for _ in 0..30 {
            while let Err(until) = pacer.try_take(&sender, rate) {
                tokio::time::sleep_until(until).await;
            }
        }
        assert_eq!(pacer.violations(), 0);
        // Past the limiter (as a broken limiter would): a fourth cell inside one second.
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..3 {
            pacer.check_window(&sender, rate);
        }
        assert_eq!(pacer.violations(), 0, "three cells at once are what 3/s allows");
        pacer.check_window(&sender, rate);
        assert_eq!(pacer.violations(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        pacer.check_window(&sender, rate);
        assert_eq!(pacer.violations(), 1, "a second later the window is clear");
    }

    #[test]
    fn rates_must_be_positive() {
        assert!(Rate::per_second(0.0).is_none());
        assert!(Rate::per_second(-1.0).is_none());
        assert!(Rate::per_second(f64::NAN).is_none());
        assert_eq!(
            Rate::per_second(3.0).unwrap().period(),
            Duration::from_nanos(333_333_334)
        );
    }
}
