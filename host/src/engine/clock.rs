//! Time as the core reads it: the system's clock in weir, a simulated one
//! in the simulation tests, so that flush cadence, early flushes and
//! probation windows run the same code under both.

use std::time::Instant;

/// Where the shard loop and the swap cut-over read the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;

    /// Now on the wall clock, in milliseconds since the Unix epoch (what
    /// record timestamps are compared with).
    fn wall_ms(&self) -> i64;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}
