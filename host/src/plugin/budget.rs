//! How much time one batch may cost a stage, and the circuit breaker that
//! stops calling a plugin that keeps running out of it.
//!
//! A batch's first call has the stage's `call_timeout_ms`. When it traps,
//! the records are retried alone to find the ones responsible; those
//! retries share one more `call_timeout_ms`, each getting at most a
//! sixteenth of it, so a plugin that loops on every record costs a batch
//! about twice its timeout, not a timeout per record (512 records at 5 s
//! each were 43 minutes). Records left when the retries' time is spent are
//! dead-lettered untried.
//!
//! A stage whose batches keep running out of time (three in a row, or one
//! that left records untried) is opened like a circuit: for a cool-down
//! its records are dead-lettered without calling the plugin, then one batch
//! tries it again. Each opening in a row doubles the cool-down (30 s up to
//! 10 minutes); a batch that runs within its time closes it. The trial
//! batch is not retried record by record when it runs out of time: it
//! costs one call timeout, not two.

use std::time::{Duration, Instant};

use super::error::Failure;
use super::runtime::EPOCH_TICK;

/// Batches in a row that ran out of time before the circuit opens.
const STRIKES: u32 = 3;

/// The first cool-down; each opening in a row doubles it.
const FIRST_COOL_DOWN: Duration = Duration::from_secs(30);

/// The longest cool-down.
const LONGEST_COOL_DOWN: Duration = Duration::from_secs(600);

/// A retried record gets at most this share of the retries' time.
const RETRY_SHARE: u32 = 16;

/// The time of one batch's calls.
#[derive(Debug)]
pub(super) struct Budget {
    /// The first call's deadline (the stage's `call_timeout_ms`).
    call: Duration,
    /// Set once retries began: when their shared time ends.
    retries_until: Option<Instant>,
    /// The deadline of the next call.
    next: Duration,
    /// A call of this batch ran out of time or fuel.
    ran_out: bool,
    /// Records of this batch were left untried.
    exhausted: bool,
}

impl Budget {
    /// The budget of a stage whose calls may take `call`.
    pub(super) fn new(call: Duration) -> Self {
        Self {
            call,
            retries_until: None,
            next: call,
            ran_out: false,
            exhausted: false,
        }
    }

    /// A new batch: its first call gets the whole call time.
    pub(super) fn start_batch(&mut self) {
        self.retries_until = None;
        self.next = self.call;
        self.ran_out = false;
        self.exhausted = false;
    }

    /// The deadline of the next call.
    pub(super) fn deadline(&self) -> Duration {
        self.next
    }

    /// A call ran out of time or fuel.
    pub(super) fn ran_out(&mut self) {
        self.ran_out = true;
    }

    /// Whether a call of this batch ran out of time or fuel.
    pub(super) fn has_run_out(&self) -> bool {
        self.ran_out
    }

    /// Before retrying one record: `None` and the call's deadline set, or
    /// why the record is not tried (the retries' time is spent).
    pub(super) fn retry(&mut self) -> Option<Failure> {
        let now = Instant::now();
        let until = *self.retries_until.get_or_insert(now + self.call);
        let left = until.saturating_duration_since(now);
        if left < EPOCH_TICK {
            self.exhausted = true;
            return Some(Failure::Skipped {
                code: "budget-spent",
                reason: format!(
                    "not tried: the batch trapped and its retries, record by record, spent \
                     their {} ms on records that ran out of time",
                    self.call.as_millis()
                ),
            });
        }
        self.next = left.min(self.call / RETRY_SHARE).max(EPOCH_TICK);
        None
    }
}

/// What the breaker did at the end of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Nothing changed.
    Same,
    /// It opened for this long.
    Opened(Duration),
    /// It closed again.
    Closed,
}

/// The circuit breaker of one plugin instance.
#[derive(Debug)]
pub(super) struct Breaker {
    /// Batches in a row that ran out of time.
    strikes: u32,
    /// While open: until when.
    open_until: Option<Instant>,
    /// The next cool-down.
    cool_down: Duration,
    /// It opened since it last closed (a failed trial reopens it at once).
    tripped: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            strikes: 0,
            open_until: None,
            cool_down: FIRST_COOL_DOWN,
            tripped: false,
        }
    }
}

impl Breaker {
    /// Whether the batch now is the circuit's trial: it opened and has not
    /// closed since. A trial batch that runs out of time is not retried
    /// record by record (that would cost the whole budget again).
    pub(super) fn on_trial(&self) -> bool {
        self.tripped
    }

    /// While open: why the plugin is not called.
    pub(super) fn refusal(&self, now: Instant) -> Option<Failure> {
        let until = self.open_until?;
        (now < until).then(|| Failure::Skipped {
            code: "circuit-open",
            reason: format!(
                "not run: the plugin kept running out of its time budget, so its records \
                 are dead-lettered without calling it for {} s more; then a batch tries it again",
                until.saturating_duration_since(now).as_secs().max(1)
            ),
        })
    }

    /// A batch ended: whether it ran out of time, and whether records were
    /// left untried.
    pub(super) fn record(&mut self, budget: &Budget, now: Instant) -> Turn {
        if !budget.ran_out {
            self.strikes = 0;
            self.open_until = None;
            self.cool_down = FIRST_COOL_DOWN;
            return if std::mem::take(&mut self.tripped) {
                Turn::Closed
            } else {
                Turn::Same
            };
        }
        self.strikes += 1;
        if !(budget.exhausted || self.strikes >= STRIKES || self.tripped) {
            return Turn::Same;
        }
        let cool_down = self.cool_down;
        self.open_until = Some(now + cool_down);
        self.cool_down = (cool_down * 2).min(LONGEST_COOL_DOWN);
        self.tripped = true;
        self.strikes = 0;
        Turn::Opened(cool_down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ran_out: bool, exhausted: bool) -> Budget {
        let mut budget = Budget::new(Duration::from_secs(5));
        budget.ran_out = ran_out;
        budget.exhausted = exhausted;
        budget
    }

    #[test]
    fn retries_share_one_call_time_and_each_gets_a_sixteenth() {
        let mut budget = Budget::new(Duration::from_millis(1600));
        assert_eq!(budget.deadline(), Duration::from_millis(1600));
        assert_eq!(budget.retry(), None);
        assert_eq!(budget.deadline(), Duration::from_millis(100));
        // The retries' time ends: what is left is not tried.
        budget.retries_until = Some(Instant::now());
        let untried = budget.retry().expect("spent");
        assert!(matches!(
            untried,
            Failure::Skipped {
                code: "budget-spent",
                ..
            }
        ));
        assert!(budget.exhausted);
        budget.start_batch();
        assert_eq!(budget.deadline(), Duration::from_millis(1600));
        assert!(!budget.exhausted && budget.retries_until.is_none());
    }

    #[test]
    fn the_breaker_opens_after_three_batches_out_of_time_or_one_left_untried() {
        let now = Instant::now();
        let mut breaker = Breaker::default();
        assert_eq!(breaker.record(&batch(true, false), now), Turn::Same);
        assert_eq!(breaker.record(&batch(false, false), now), Turn::Same);
        assert_eq!(breaker.record(&batch(true, false), now), Turn::Same);
        assert_eq!(breaker.record(&batch(true, false), now), Turn::Same);
        assert!(
            breaker.refusal(now).is_none(),
            "a good batch reset the count"
        );
        assert_eq!(
            breaker.record(&batch(true, false), now),
            Turn::Opened(Duration::from_secs(30))
        );
        let refusal = breaker
            .refusal(now + Duration::from_secs(29))
            .expect("open");
        assert!(matches!(
            refusal,
            Failure::Skipped {
                code: "circuit-open",
                ..
            }
        ));
        let trial = now + Duration::from_secs(30);
        assert!(breaker.refusal(trial).is_none(), "a batch tries it again");
        // The trial runs out too: open again at once, for twice as long.
        assert_eq!(
            breaker.record(&batch(true, false), trial),
            Turn::Opened(Duration::from_secs(60))
        );
        let later = trial + Duration::from_secs(60);
        assert_eq!(breaker.record(&batch(false, false), later), Turn::Closed);
        assert!(breaker.refusal(later).is_none());
        // Records left untried open it at once, with the first cool-down again.
        assert_eq!(
            breaker.record(&batch(true, true), later),
            Turn::Opened(Duration::from_secs(30))
        );
    }

    #[test]
    fn cool_downs_double_up_to_ten_minutes() {
        let mut now = Instant::now();
        let mut breaker = Breaker::default();
        let mut opened = Vec::new();
        for _ in 0..8 {
            if let Turn::Opened(cool_down) = breaker.record(&batch(true, true), now) {
                opened.push(cool_down.as_secs());
                now += cool_down;
            }
        }
        assert_eq!(opened, [30, 60, 120, 240, 480, 600, 600, 600]);
    }
}
