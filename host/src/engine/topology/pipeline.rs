//! The steps of one pipeline in order, and its teardown.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::task::JoinHandle as TaskHandle;

use super::build::{build_sinks, load_plugins, probe_aggregator, stage_contexts};
use super::start::{
    ShardParts, spawn_shards, start_monitor, start_source, start_swapper, watch_plugins,
};
use crate::admin::Admin;
use crate::engine::changelog;
use crate::engine::config::RunConfig;
use crate::engine::deliver::{self, Committed, Ownership};
use crate::engine::error::TopologyError;
use crate::engine::lookups;
use crate::engine::monitor;
use crate::engine::reachable::until_reachable;
use crate::engine::repartition;
use crate::engine::shard;
use crate::engine::stats::Stats;
use crate::kafka::partition_count;
use crate::pipeline::{Hop, PipelinePlan};
use crate::plugin::{NativeStages, Plugin, Runtime, StageContext};

/// What every pipeline of one process shares.
pub struct Shared<'a> {
    /// Compiles and caches plugins.
    pub runtime: Arc<Runtime>,
    /// The process's settings.
    pub config: &'a RunConfig,
    /// Raised to stop (Ctrl-C, or another pipeline failed).
    pub stop: Arc<AtomicBool>,
    /// The admin API, where the pipeline registers its swapper.
    pub admin: Arc<Admin>,
    /// Stages run natively instead of by their plugins (benchmarks only).
    pub natives: &'a NativeStages,
}

/// Each stage's plugin and context, in order.
pub(super) struct Stages {
    pub(super) plugins: Vec<Arc<Plugin>>,
    pub(super) contexts: Vec<Arc<StageContext>>,
}

/// A started pipeline's parts, each of which [`Running::wait`] takes down.
pub(super) struct Running {
    pub(super) name: String,
    pub(super) stats: Arc<Stats>,
    pub(super) shards: Vec<JoinHandle<Result<(), shard::ShardError>>>,
    pub(super) source: JoinHandle<()>,
    pub(super) tasks: Vec<TaskHandle<()>>,
    pub(super) admin: Arc<Admin>,
}

/// Builds the pipeline of `plan`, runs it until `shared.stop` is raised and
/// everything in flight is written, and stops it.
pub async fn run(plan: PipelinePlan, shared: Shared<'_>) -> Result<(), TopologyError> {
    let started = Instant::now();
    let (contexts, loaded) = stage_contexts(&plan, &shared).await?;
    let stages = Stages {
        plugins: load_plugins(&plan, &shared.runtime).await?,
        contexts,
    };
    let aggregator = probe_aggregator(&stages).await?;
    if let Hop::Second { source_topic, .. } = &plan.hop {
        // The second hop reads what the first writes: the repartition
        // topic exists before either reads or writes it.
        let source_topic = source_topic.to_string();
        let source = shared.config.kafka.clone();
        let partitions =
            tokio::task::spawn_blocking(move || partition_count(&source, &source_topic)).await??;
        repartition::ensure(&shared.config.kafka, plan.source.topic.as_str(), partitions).await?;
    }
    let partitions = {
        let (kafka, topic) = (shared.config.kafka.clone(), plan.source.topic.to_string());
        tokio::task::spawn_blocking(move || partition_count(&kafka, &topic)).await??
    };
    let changelog_topic = (aggregator.as_ref())
        .and(plan.last_stage())
        .map(|stage| changelog::topic(plan.state_group(), stage.name.as_str()));
    let sinks = until_reachable(&shared.stop, "connecting the sinks", || {
        build_sinks(
            &plan,
            shared.config,
            aggregator.as_ref().map(|a| &*a.output),
            partitions,
            changelog_topic.as_deref(),
        )
    })
    .await?;
    sinks.start_counters(&plan.stage_names().collect::<Vec<_>>());
    let sinks = Arc::new(sinks);
    let shard_count = shared.config.shards_for(partitions);
    let stats = Arc::new(Stats::new(&plan.name, shard_count));
    let committed = Arc::new(Committed::default());
    let ownership = Arc::new(Ownership::default());
    let shards = spawn_shards(
        &plan,
        &shared,
        ShardParts {
            stages: &stages,
            aggregator: aggregator.as_ref(),
            stats: &stats,
            committed: &committed,
            ownership: &ownership,
            count: shard_count,
        },
    )?;
    let consumer = start_source(&plan, &shared, shards.inputs, changelog_topic.as_deref())?;
    let swapper = start_swapper(
        &plan,
        &shared,
        &stages,
        &sinks,
        &consumer,
        (aggregator.clone(), shard_count),
    );
    let mut tasks = watch_plugins(&plan, shared.config, &swapper);
    let live = Arc::new(monitor::Live::default());
    shared
        .admin
        .register(Arc::clone(&swapper), Arc::clone(&live));
    tracing::info!(
        topic = %plan.source.topic,
        group = %plan.source.group,
        partitions,
        shards = shard_count,
        stages = %plan.stage_names().collect::<Vec<_>>().join(" -> "),
        state_version = aggregator.as_ref().map(|a| a.state_version),
        changelog = changelog_topic.as_deref(),
        dead_letters = %plan.dead_letter_topic,
        ready_in = ?started.elapsed(),
        "Pipeline running."
    );
    tasks.push(start_monitor(&plan, shared.config, &consumer, &stats, live));
    tasks.push(tokio::spawn(lookups::keep_fresh(
        plan.lookups.clone(),
        loaded,
        (shared.config.database.clone(), shared.config.kafka.clone()),
        Arc::clone(&shared.stop),
    )));
    if let Hop::Second { .. } = plan.hop {
        tasks.push(tokio::spawn(repartition::purge(
            shared.config.kafka.clone(),
            plan.source.topic.to_string(),
            Arc::clone(&committed),
        )));
    }
    // Delivery runs on this task: one future per shard, polled together.
    let delivery = Arc::new(deliver::Delivery {
        sinks,
        offsets: Arc::new(deliver::GroupOffsets {
            consumer: Arc::clone(&consumer.0),
            topic: plan.source.topic.to_string(),
        }),
        stats: Arc::clone(&stats),
        committed,
        ownership,
        stop: Arc::clone(&shared.stop),
    });
    let delivered = futures::future::join_all(
        (shards.flushes.into_iter()).map(|flushes| deliver::run(Arc::clone(&delivery), flushes)),
    );
    Running {
        name: plan.name.to_string(),
        stats,
        shards: shards.threads,
        source: consumer.1,
        tasks,
        admin: Arc::clone(&shared.admin),
    }
    .wait(delivered)
    .await
}

impl Running {
    /// Waits for `delivered` (delivery finishes once every shard has, and
    /// the shards once the source has stopped), then stops the rest and
    /// joins the threads: the pipeline's result.
    async fn wait(
        self,
        delivered: impl Future<Output = Vec<Result<(), deliver::DeliveryError>>>,
    ) -> Result<(), TopologyError> {
        let delivered: Result<Vec<()>, _> = delivered.await.into_iter().collect();
        self.admin.unregister(&self.name);
        for task in self.tasks {
            task.abort();
        }
        // Delivery ends when every shard has; the threads are finishing.
        let (source, shards) = (self.source, self.shards);
        let (panicked, failed) = tokio::task::spawn_blocking(move || {
            let mut panicked = usize::from(source.join().is_err());
            let mut failed = None;
            for thread in shards {
                match thread.join() {
                    Err(_) => panicked += 1,
                    Ok(Err(error)) => failed = Some(error),
                    Ok(Ok(())) => {}
                }
            }
            (panicked, failed)
        })
        .await?;
        let totals = self.stats.snapshot();
        tracing::info!(
            received = totals.received,
            aggregated = totals.aggregated,
            replayed = totals.replayed,
            dropped = totals.dropped,
            dead_letters = totals.dead,
            rows_written = totals.rows_written,
            keys = totals.keys,
            evicted = totals.evicted,
            "Pipeline stopped."
        );
        if let Some(error) = failed {
            return Err(error.into());
        }
        if panicked > 0 {
            return Err(TopologyError::Panicked(panicked));
        }
        delivered.map(drop).map_err(TopologyError::from)
    }
}
