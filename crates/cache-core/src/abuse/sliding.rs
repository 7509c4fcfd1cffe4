//! [`SlidingLog`]: the reference sliding-window algorithm of one key (the memory tier
//! runs it; the Redis tier runs the same steps in one Lua script).

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::limit::{Decision, EventId, Limit};

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn duration_from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The reference sliding-window log of one key, all times in microseconds since the
/// epoch. The memory tier keeps one per key; the Redis script performs the same steps.
#[derive(Debug, Clone, Default)]
pub struct SlidingLog {
    /// Recorded events: (time, id).
    pub(super) events: VecDeque<(i64, EventId)>,
    /// Refuse everything before this instant.
    locked_until: i64,
    /// Lockouts so far, remembered until `strikes_until`.
    strikes: u32,
    strikes_until: i64,
}

impl SlidingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`RateLimitStore::acquire`] on this log.
    pub fn acquire(&mut self, limit: &Limit, event: &EventId, now: DateTime<Utc>) -> Decision {
        let now = now.timestamp_micros();
        let window = micros(limit.window);
        if now < self.locked_until {
            return Decision::limited(limit.limit, duration_from_micros(self.locked_until - now));
        }
        if now >= self.strikes_until {
            self.strikes = 0;
        }
        // The window is (now - window, now]: an event exactly one window old is out.
        let horizon = now.saturating_sub(window);
        self.events.retain(|(at, _)| *at > horizon);
        let known = self.events.iter().position(|(_, id)| id == event);
        let count = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
        if known.is_some() || count < limit.limit {
            if let Some(i) = known {
                self.events.remove(i);
            }
            self.events.push_back((now, event.clone()));
            let used = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
            let oldest = self.events.iter().map(|(at, _)| *at).min().unwrap_or(now);
            return Decision::allowed(
                limit.limit,
                limit.limit.saturating_sub(used),
                duration_from_micros(oldest.saturating_add(window) - now),
            );
        }
        self.strikes = self.strikes.saturating_add(1);
        let oldest = self.events.iter().map(|(at, _)| *at).min().unwrap_or(now);
        self.locked_until = now
            .saturating_add(micros(limit.lockout(self.strikes)))
            .max(oldest.saturating_add(window));
        self.strikes_until = self.locked_until.saturating_add(micros(limit.strike_memory()));
        Decision::limited(limit.limit, duration_from_micros(self.locked_until - now))
    }

    /// [`RateLimitStore::release`] on this log.
    pub fn release(&mut self, event: &EventId) {
        self.events.retain(|(_, id)| id != event);
    }

    /// Whether the log holds nothing that matters at `now` (no event in a window of
    /// `max_window`, no lockout, no remembered strike), so that it can be dropped.
    pub fn is_idle(&self, now: DateTime<Utc>, max_window: Duration) -> bool {
        let now = now.timestamp_micros();
        let horizon = now.saturating_sub(micros(max_window));
        now >= self.locked_until
            && now >= self.strikes_until
            && self.events.iter().all(|(at, _)| *at <= horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abuse::testing::{secs, t0};

    #[test]
    fn the_log_admits_exactly_the_limit_then_locks_out() {
        let limit = Limit::new(3, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        let now = t0();
        for remaining in [2, 1, 0] {
            let d = log.acquire(&limit, &EventId::random().unwrap(), now);
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            assert_eq!(d.reset_after, Duration::from_secs(60));
        }
        let d = log.acquire(&limit, &EventId::random().unwrap(), now + secs(10));
        assert!(!d.allowed);
        // Locked for one window from the refusal (longer than the oldest event's exit).
        assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
        assert!(!log.acquire(&limit, &EventId::random().unwrap(), now + secs(69)).allowed);
        let d = log.acquire(&limit, &EventId::random().unwrap(), now + secs(70));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn the_window_slides_and_released_events_do_not_count() {
        let limit = Limit::new(2, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        let (a, b, c) = (EventId::of("a"), EventId::of("b"), EventId::of("c"));
        assert!(log.acquire(&limit, &a, t0()).allowed);
        assert!(log.acquire(&limit, &b, t0() + secs(30)).allowed);
        log.release(&b);
        assert!(log.acquire(&limit, &c, t0() + secs(31)).allowed);
        // `a` leaves the window at exactly t0 + 60.
        let d = log.acquire(&limit, &b, t0() + secs(60));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after, Duration::from_secs(31));
    }

    #[test]
    fn known_events_refresh_instead_of_counting() {
        let limit = Limit::new(2, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        for _ in 0..10 {
            assert!(log.acquire(&limit, &EventId::of("same"), t0()).allowed);
        }
        assert!(log.acquire(&limit, &EventId::of("other"), t0()).allowed);
        // Still admitted: both are already in the window.
        assert!(log.acquire(&limit, &EventId::of("same"), t0()).allowed);
        assert!(!log.acquire(&limit, &EventId::of("third"), t0()).allowed);
    }

    #[test]
    fn repeated_lockouts_escalate_and_are_forgotten() {
        let limit =
            Limit::new(1, Duration::from_secs(10)).with_max_lockout(Duration::from_secs(40));
        let mut log = SlidingLog::new();
        let mut now = t0();
        let mut lockouts = Vec::new();
        for _ in 0..4 {
            assert!(log.acquire(&limit, &EventId::random().unwrap(), now).allowed);
            let d = log.acquire(&limit, &EventId::random().unwrap(), now);
            let wait = d.retry_after.unwrap();
            lockouts.push(wait.as_secs());
            now += chrono::Duration::from_std(wait).unwrap();
        }
        assert_eq!(lockouts, [10, 20, 40, 40]);
        assert!(!log.is_idle(now, limit.window));
        // Remembered for `max_lockout` after the last lockout ends.
        now += secs(41);
        assert!(log.is_idle(now, limit.window));
        assert!(log.acquire(&limit, &EventId::random().unwrap(), now).allowed);
        let d = log.acquire(&limit, &EventId::random().unwrap(), now);
        assert_eq!(d.retry_after, Some(Duration::from_secs(10)));
    }

    #[test]
    fn zero_limit_admits_nothing() {
        let mut log = SlidingLog::new();
        assert!(
            !log.acquire(&Limit::new(0, Duration::from_secs(1)), &EventId::of("x"), t0()).allowed
        );
    }
}
