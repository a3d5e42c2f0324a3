//! A running pipeline seen from outside: its live rates and consumer lag,
//! sampled every second for the status page and the lag metrics, and the
//! status line logged every `--status-every`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use serde::Serialize;

use super::stats::{Failing, Snapshot, Stats};
use crate::kafka::{PartitionProgress, group_progress};

/// How often the monitor samples.
const EVERY: Duration = Duration::from_secs(1);

/// Rates are averaged over this window: rows reach the sinks once per
/// flush interval, so a one-second rate would jump between zero and twice
/// the truth.
const WINDOW: Duration = Duration::from_secs(5);

/// What a pipeline is doing now, as the status page shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveStatus {
    /// The counters since the pipeline started.
    pub totals: Snapshot,
    /// Records read per second, over the last few seconds.
    pub in_per_second: f64,
    /// Rows the sinks confirmed per second.
    pub rows_per_second: f64,
    /// Dead letters per second.
    pub dead_per_second: f64,
    /// Records not yet committed, per source partition (`None`: the broker
    /// did not answer).
    pub lag: Option<Vec<PartitionLag>>,
    /// Seconds since the pipeline started.
    pub uptime_seconds: f64,
    /// A sink failure delivery is retrying now (the pipeline waits).
    pub failing: Option<Failing>,
}

impl LiveStatus {
    /// Records not yet committed, over every partition.
    pub fn total_lag(&self) -> Option<i64> {
        self.lag
            .as_ref()
            .map(|partitions| partitions.iter().map(|p| p.records).sum())
    }
}

/// The lag of one source partition.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// Its records not yet committed.
    pub records: i64,
}

/// The latest [`LiveStatus`] of a pipeline, shared with the admin server.
#[derive(Debug, Default)]
pub struct Live(Mutex<LiveStatus>);

impl Live {
    /// The status now.
    pub fn get(&self) -> LiveStatus {
        self.0.lock().expect("not poisoned").clone()
    }

    fn set(&self, status: LiveStatus) {
        *self.0.lock().expect("not poisoned") = status;
    }
}

/// Samples `stats` and the group's lag on `topic` into `live` until
/// aborted; logs a status line every `status_every` (never when zero).
pub async fn run<C: ConsumerContext + 'static>(
    pipeline: String,
    topic: String,
    consumer: Arc<BaseConsumer<C>>,
    stats: Arc<Stats>,
    live: Arc<Live>,
    status_every: Duration,
) {
    let mut monitor = Monitor {
        started: Instant::now(),
        samples: VecDeque::new(),
        logged: Instant::now(),
        // Sampled here, from every shard's count at one moment (shards setting
        // a total each could finish out of order).
        keys: metrics::gauge!("weir_state_keys", "pipeline" => pipeline.clone()),
        state_bytes: metrics::gauge!("weir_state_bytes", "pipeline" => pipeline.clone()),
        lag_known: Vec::new(),
        pipeline,
        topic,
        consumer,
        stats,
        status_every,
    };
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let status = monitor.sample().await;
        monitor.log(&status);
        live.set(status);
    }
}

/// The monitor's working set, kept from one sample to the next.
struct Monitor<C: ConsumerContext + 'static> {
    pipeline: String,
    topic: String,
    consumer: Arc<BaseConsumer<C>>,
    stats: Arc<Stats>,
    status_every: Duration,
    started: Instant,
    /// The samples of the last [`WINDOW`], oldest first.
    samples: VecDeque<(Instant, Snapshot)>,
    /// When the last status line was logged.
    logged: Instant,
    /// The keys held in state, over every shard.
    keys: metrics::Gauge,
    /// Bytes of those keys and their state.
    state_bytes: metrics::Gauge,
    /// Partitions whose lag is exported: NaN while the broker does not answer.
    lag_known: Vec<i32>,
}

impl<C: ConsumerContext + 'static> Monitor<C> {
    /// Samples the counters and the group's lag, exports the gauges and
    /// returns the status now.
    async fn sample(&mut self) -> LiveStatus {
        let now = (Instant::now(), self.stats.snapshot());
        let window = self.window(now);
        let lag = self.lag().await;
        self.export_lag(lag.as_deref());
        self.keys.set(now.1.keys as f64);
        self.state_bytes.set(now.1.state_bytes as f64);
        LiveStatus {
            totals: now.1,
            in_per_second: window.rate(|s| s.received),
            rows_per_second: window.rate(|s| s.rows_written),
            dead_per_second: window.rate(|s| s.dead),
            lag,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            failing: self.stats.failing(),
        }
    }

    /// Adds `now` to the samples and drops those older than [`WINDOW`].
    fn window(&mut self, now: (Instant, Snapshot)) -> Window {
        self.samples.push_back(now);
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.0.duration_since(*at) > WINDOW)
        {
            self.samples.pop_front();
        }
        let (since, first) = *self.samples.front().expect("just pushed");
        Window {
            seconds: now.0.duration_since(since).as_secs_f64(),
            first,
            last: now.1,
        }
    }

    /// The group's lag per partition; `None` when the broker does not answer.
    async fn lag(&self) -> Option<Vec<PartitionLag>> {
        let lag = {
            let (consumer, topic) = (Arc::clone(&self.consumer), self.topic.clone());
            tokio::task::spawn_blocking(move || {
                group_progress(&consumer, &topic, Duration::from_secs(5)).ok()
            })
            .await
            .ok()
            .flatten()
        };
        lag.map(|progress| {
            progress
                .iter()
                .zip(0..)
                .map(|(progress, partition)| PartitionLag {
                    partition,
                    records: PartitionProgress::lag(progress),
                })
                .collect::<Vec<_>>()
        })
    }

    /// Sets the lag gauges: to `lag`, or to NaN for the partitions last
    /// known when the broker did not answer.
    fn export_lag(&mut self, lag: Option<&[PartitionLag]>) {
        match lag {
            Some(partitions) => {
                self.lag_known.clear();
                for partition in partitions {
                    self.lag_gauge(partition.partition)
                        .set(partition.records as f64);
                    self.lag_known.push(partition.partition);
                }
            }
            None => {
                for partition in &self.lag_known {
                    self.lag_gauge(*partition).set(f64::NAN);
                }
            }
        }
    }

    /// The lag gauge of `partition`.
    fn lag_gauge(&self, partition: i32) -> metrics::Gauge {
        metrics::gauge!(
            "weir_consumer_lag_records",
            "pipeline" => self.pipeline.clone(),
            "partition" => partition.to_string(),
        )
    }

    /// Logs `status` if `--status-every` has passed since the last line.
    fn log(&mut self, status: &LiveStatus) {
        if !self.status_every.is_zero() && self.logged.elapsed() >= self.status_every {
            self.logged = Instant::now();
            tracing::info!(
                in_per_s = status.in_per_second.round(),
                rows_per_s = status.rows_per_second.round(),
                received = status.totals.received,
                dead_letters = status.totals.dead,
                keys = status.totals.keys,
                evicted = status.totals.evicted,
                lag = status
                    .total_lag()
                    .map_or_else(|| "unknown".to_owned(), |lag| lag.to_string()),
                "Running."
            );
        }
    }
}

/// The counters at both ends of the samples kept.
struct Window {
    seconds: f64,
    first: Snapshot,
    last: Snapshot,
}

impl Window {
    /// The per-second rate of the counter `count` over the window.
    fn rate(&self, count: fn(&Snapshot) -> u64) -> f64 {
        if self.seconds > 0.0 {
            count(&self.last).saturating_sub(count(&self.first)) as f64 / self.seconds
        } else {
            0.0
        }
    }
}
