//! The injected clock. No store or tier reads the system time directly: they all take a
//! [`SharedClock`], so expiry and renewal are tested by moving a [`ManualClock`] instead
//! of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// A source of the current time. Every timestamp it returns is truncated to whole
/// microseconds, the precision every backend (Postgres, SQLite, Redis) round-trips.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, truncated to microseconds.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by every component of a process.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] reading the wall clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock frozen at `start` (truncated to microseconds).
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self { micros: AtomicI64::new(start.timestamp_micros()) })
    }

    /// A clock frozen at the current wall-clock time. Tests use this rather than a fixed
    /// date so that the TTLs a real Redis derives from it stay sensible.
    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::seconds(10));
        assert_eq!(clock.now(), t0 + Duration::seconds(10));
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1000, 0);
    }
}
