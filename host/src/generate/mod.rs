//! `weir generate`: the e-commerce event generator of the reference system
//! (semantics.md §1-2), writing JSON events keyed by `session_id` to Kafka
//! or to a JSON Lines file.
//!
//! - [`catalog`]: users with fixed segments, products, devices, places.
//! - [`session`]: the session state machine and the interleaving of live
//!   sessions, with the reference generator's flaws fixed.
//! - [`event`]: the events' JSON shape.
//! - [`output`]: where events go (Kafka, a file).

pub mod catalog;
pub mod event;
pub mod output;
pub mod reference;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use output::OutputError;
pub use session::{Counts, Generator};

/// Options of `weir generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Events per second; 0 writes as fast as possible.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Stop after this many events.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Stop after this long (for example `90s`, `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Sessions live at once, their events interleaved.
    #[arg(long, default_value_t = 5)]
    pub sessions: usize,
    /// Seed of the whole output, IDs and timestamps included (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The simulated clock's start (RFC 3339). Default: 2026-01-01T00:00:00Z
    /// with `--seed`, else now.
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Kafka topic.
    #[arg(long, default_value = "ecommerce.events")]
    pub topic: String,
    /// Write JSON Lines to this file instead of Kafka.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write the users and products events refer to into PostgreSQL
    /// (tables `users` and `products`, upserted), for enrichment stages.
    #[arg(long)]
    pub write_catalog: bool,
    /// Where Kafka and PostgreSQL (for `--write-catalog`) are, and weir's credentials.
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    pub progress_every: u64,
}

/// Why generation stopped early.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Writing the catalog failed.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// The connection settings cannot be used.
    #[error(transparent)]
    Settings(#[from] crate::connect::SettingsError),
    /// Kafka refused weir's credentials or certificate.
    #[error(transparent)]
    Access(#[from] crate::connect::AccessError),
}

/// Runs the generator until `--count`, `--duration` or `stop` is set.
pub fn run(args: &GenerateArgs, stop: &Arc<AtomicBool>) -> Result<Counts, GenerateError> {
    args.validate()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let generator = Generator::new(
        StdRng::seed_from_u64(seed),
        args.sessions,
        args.clock_start(),
        args.clock_step(),
    );
    let services = args.connect.services()?;
    if args.write_catalog {
        reference::write(generator.catalog(), &services.database)?;
    }
    let output = match &args.output {
        Some(path) => output::Output::file(path)?,
        None => {
            crate::connect::check::check_kafka(&services.kafka)?;
            output::Output::kafka(&services.kafka, &args.topic)?
        }
    };
    tracing::info!(
        seed,
        rate = args.rate,
        sessions = args.sessions,
        target = %output.describe(),
        "Generating events."
    );

    let mut generating = Generating::new(args, generator, output);
    generating.until(stop)?;
    generating.finish()
}

impl GenerateArgs {
    /// Checks the options that the command line's types let through.
    fn validate(&self) -> Result<(), GenerateError> {
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(GenerateError::Invalid(format!(
                "--rate {} is not a rate: give events per second, or 0 for as fast as possible",
                self.rate
            )));
        }
        if self.sessions == 0 {
            return Err(GenerateError::Invalid(
                "--sessions must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// When the simulated clock starts.
    fn clock_start(&self) -> DateTime<Utc> {
        self.start.unwrap_or_else(|| match self.seed {
            Some(_) => Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            None => Utc::now(),
        })
    }

    /// How far the simulated clock advances per event, in microseconds.
    fn clock_step(&self) -> i64 {
        // The simulated clock runs at the requested rate; flat out it advances
        // 10 ms per event (100 events/s of simulated shopping).
        if self.rate > 0.0 {
            (1e6 / self.rate) as i64
        } else {
            10_000
        }
    }
}

/// Events on their way out: the generator, its output, and the pace and
/// progress lines of the run.
struct Generating<'a> {
    args: &'a GenerateArgs,
    generator: Generator,
    output: output::Output,
    began: Instant,
    /// When the last progress line was logged, and the events by then.
    last_report: (Instant, u64),
}

impl<'a> Generating<'a> {
    fn new(args: &'a GenerateArgs, generator: Generator, output: output::Output) -> Self {
        Self {
            args,
            generator,
            output,
            began: Instant::now(),
            last_report: (Instant::now(), 0u64),
        }
    }

    /// Writes events until `--count`, `--duration` or `stop` is set.
    fn until(&mut self, stop: &AtomicBool) -> Result<(), GenerateError> {
        loop {
            let produced = self.generator.counts().events;
            if stop.load(Ordering::Relaxed)
                || self.args.count.is_some_and(|count| produced >= count)
                || self
                    .args
                    .duration
                    .is_some_and(|limit| self.began.elapsed() >= limit)
            {
                return Ok(());
            }
            let event = self.generator.next_event();
            self.output.write(&event)?;
            self.pace(produced + 1);
            self.report();
        }
    }

    /// Waits until `written` events are due at `--rate`.
    fn pace(&self, written: u64) {
        if self.args.rate > 0.0 {
            // Pace against the start, so the rate holds over the whole run.
            let due = Duration::from_secs_f64(written as f64 / self.args.rate);
            if let Some(ahead) = due.checked_sub(self.began.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }

    /// Logs a progress line every `--progress-every` seconds.
    fn report(&mut self) {
        let last_report = self.last_report;
        if last_report.0.elapsed() >= Duration::from_secs(self.args.progress_every.max(1)) {
            let counts = self.generator.counts();
            let rate =
                (counts.events - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            tracing::info!(
                events = counts.events,
                rate = rate.round(),
                sessions = counts.sessions,
                live = self.generator.live_sessions(),
                purchases = counts.purchases,
                "Generating."
            );
            self.last_report = (Instant::now(), counts.events);
        }
    }

    /// Flushes the output and logs the run's totals.
    fn finish(self) -> Result<Counts, GenerateError> {
        self.output.finish()?;
        let counts = self.generator.counts();
        let elapsed = self.began.elapsed().as_secs_f64();
        tracing::info!(
            events = counts.events,
            sessions = counts.sessions,
            purchases = counts.purchases,
            seconds = format!("{elapsed:.1}"),
            rate = (counts.events as f64 / elapsed.max(1e-9)).round(),
            "Done."
        );
        Ok(counts)
    }
}
