//! What a pipeline runs: its shards, its source and its swapper.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::task::JoinHandle as TaskHandle;
use tracing::Instrument;

use super::pipeline::{Shared, Stages};
use crate::engine::chain::{Aggregating, AvroValues, Chain, End, Rekey, Stage, Values};
use crate::engine::clock::SystemClock;
use crate::engine::config::RunConfig;
use crate::engine::deliver::{Committed, Ownership};
use crate::engine::error::TopologyError;
use crate::engine::monitor;
use crate::engine::shard::{self, Flush, Input, ShardSettings};
use crate::engine::source::{self, SourceContext, SourceSettings};
use crate::engine::state::KeyBudget;
use crate::engine::stats::Stats;
use crate::engine::swap::{self, AggregatorVersion, Swapper};
use crate::pipeline::{DEFAULT_MAX_KEYS, Format, Hop, PipelinePlan, StageLoadError};
use crate::plugin::NativeStages;
use crate::sink::Sinks;
use crate::sink::registry::RegistryClient;

/// What the shards are made of.
pub(super) struct ShardParts<'a> {
    pub(super) stages: &'a Stages,
    /// `None`: the pipeline ends in a filter or a transform.
    pub(super) aggregator: Option<&'a AggregatorVersion>,
    pub(super) stats: &'a Arc<Stats>,
    pub(super) committed: &'a Arc<Committed>,
    pub(super) ownership: &'a Arc<Ownership>,
    pub(super) count: usize,
}

/// The shards' ends: where the source sends, where delivery reads.
pub(super) struct Shards {
    pub(super) inputs: Vec<std::sync::mpsc::SyncSender<Input>>,
    pub(super) flushes: Vec<tokio::sync::mpsc::Receiver<Flush>>,
    pub(super) threads: Vec<JoinHandle<Result<(), shard::ShardError>>>,
}

/// Starts the shards, each a thread with its own plugin instances and its
/// own delivery: its flushes stay in order, and one shard's writes never
/// wait behind another's.
pub(super) fn spawn_shards(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    parts: ShardParts<'_>,
) -> Result<Shards, TopologyError> {
    let mut shards = Shards {
        inputs: Vec::with_capacity(parts.count),
        flushes: Vec::with_capacity(parts.count),
        threads: Vec::with_capacity(parts.count),
    };
    let aggregator = plan.last_stage().filter(|_| parts.aggregator.is_some());
    let max_keys = (aggregator.and_then(|stage| stage.max_keys)).unwrap_or(DEFAULT_MAX_KEYS);
    let keys = Arc::new(KeyBudget::new(max_keys));
    let values = values(plan, shared.config)?;
    for id in 0..parts.count {
        let chain = chain(plan, shared.natives, &parts, values())?;
        let (input, inputs) = std::sync::mpsc::sync_channel(2);
        let (flushes, delivery) = tokio::sync::mpsc::channel(2);
        let settings = ShardSettings {
            id,
            shards: parts.count,
            flush_interval: plan.batch.flush_interval,
            max_wait: plan.batch.max_wait,
            idle_timeout: aggregator.and_then(|stage| stage.idle_timeout),
            max_clock_skew: plan.source.max_clock_skew,
            keys: Arc::clone(&keys),
            aggregator: parts.aggregator.cloned(),
            clock: Arc::new(SystemClock),
            ownership: Arc::clone(parts.ownership),
        };
        let (stats, committed, stop) = (
            Arc::clone(parts.stats),
            Arc::clone(parts.committed),
            Arc::clone(&shared.stop),
        );
        let span = tracing::error_span!("shard", shard = id);
        let thread = std::thread::Builder::new()
            .name(format!("weir-{}-shard-{id}", plan.name))
            .spawn(move || {
                let _span = span.entered();
                let result = shard::run(chain, inputs, flushes, settings, stats, committed);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(TopologyError::Thread)?;
        shards.inputs.push(input);
        shards.flushes.push(delivery);
        shards.threads.push(thread);
    }
    Ok(shards)
}

/// How each shard reads the source's values: a maker of one shard's
/// [`Values`]. An Avro source's shards share one registry client, each
/// keeping its own cache of schemas (no lock on the per-record path).
fn values(
    plan: &PipelinePlan,
    config: &RunConfig,
) -> Result<Box<dyn Fn() -> Values>, TopologyError> {
    Ok(match plan.source.format {
        Format::Json => Box::new(|| Values::Json),
        Format::Bytes => Box::new(|| Values::Bytes),
        Format::Avro => {
            let registry =
                RegistryClient::new(&config.registry).map_err(TopologyError::Registry)?;
            let (registry, tokio) = (Arc::new(registry), tokio::runtime::Handle::current());
            Box::new(move || {
                let avro = AvroValues::new(Arc::clone(&registry), tokio.clone());
                Values::Avro(Box::new(avro))
            })
        }
    })
}

/// One shard's chain: an instance of every stage's plugin (or its native
/// code, in benchmarks).
pub(super) fn chain(
    plan: &PipelinePlan,
    natives: &NativeStages,
    parts: &ShardParts<'_>,
    values: Values,
) -> Result<Chain, TopologyError> {
    let loaded = parts.stages;
    let mut stages = Vec::with_capacity(loaded.plugins.len());
    for (plugin, context) in loaded.plugins.iter().zip(&loaded.contexts) {
        let stage = match natives.get(&context.stage) {
            Some(native) => {
                let code = native(context).map_err(|error| TopologyError::Native {
                    stage: context.stage.clone(),
                    message: error.to_string(),
                })?;
                Stage::running(plugin, context, code)
            }
            // A plugin's `init` may write to stdio, which blocks: not on an async thread.
            None => tokio::task::block_in_place(|| Stage::new(plugin, Arc::clone(context)))
                .map_err(|source| StageLoadError::new(context.stage.clone(), source))?,
        };
        stages.push(stage);
    }
    let end = match (parts.aggregator, &plan.hop) {
        (Some(version), hop) => {
            let aggregating = Aggregating::new(
                stages.pop().expect("an aggregator's plan has its stage"),
                plan.last_stage().and_then(|stage| stage.key_field.clone()),
                Arc::clone(&version.output.schema),
                version.state_version,
            );
            End::Aggregate(Box::new(match hop {
                Hop::Second { .. } => aggregating.behind_repartition(),
                Hop::Whole | Hop::First { .. } => aggregating,
            }))
        }
        (None, Hop::First { field, stage }) => End::Repartition(Rekey {
            field: field.clone(),
            stage: stage.to_string(),
        }),
        (None, Hop::Whole | Hop::Second { .. }) => End::Emit,
    };
    Ok(Chain::new(stages, end, values))
}

/// The source's consumer, shared with delivery (commits) and the monitor
/// (lag), and its thread.
pub(super) type Source = (Arc<BaseConsumer<SourceContext>>, JoinHandle<()>);

/// Subscribes the pipeline's consumer and starts the thread that polls it.
pub(super) fn start_source(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    inputs: Vec<std::sync::mpsc::SyncSender<Input>>,
    changelog_topic: Option<&str>,
) -> Result<Source, TopologyError> {
    let kafka = &shared.config.kafka;
    let topic = plan.source.topic.to_string();
    let consumer: BaseConsumer<SourceContext> = kafka
        .source_consumer(&plan.source.group, &format!("weir-{}", plan.name))
        .create_with_context(SourceContext::new(inputs))
        .map_err(|source| TopologyError::Client {
            what: "the source's Kafka consumer".to_owned(),
            source,
        })?;
    let consumer = Arc::new(consumer);
    consumer
        .subscribe(&[&topic])
        .map_err(|source| TopologyError::Client {
            what: format!("subscribing to `{topic}`"),
            source,
        })?;
    let settings = SourceSettings {
        max_records: plan.batch.max_records,
        max_wait: plan.batch.max_wait,
        max_record_bytes: plan.source.max_record_bytes,
        kafka: kafka.clone(),
        topic: topic.clone(),
        changelog: changelog_topic.map(str::to_owned),
    };
    let thread = {
        let (consumer, stop) = (Arc::clone(&consumer), Arc::clone(&shared.stop));
        let span = tracing::error_span!("source", topic = %topic);
        std::thread::Builder::new()
            .name(format!("weir-{}-source", plan.name))
            .spawn(move || {
                let _span = span.entered();
                source::run(&consumer, &settings, &stop);
            })
            .map_err(TopologyError::Thread)?
    };
    Ok((consumer, thread))
}

/// The swapper: replaces stages' plugins on request, reaching the shards
/// through the source's router.
pub(super) fn start_swapper(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    loaded: &Stages,
    sinks: &Arc<Sinks>,
    consumer: &Source,
    (aggregator, shards): (Option<AggregatorVersion>, usize),
) -> Arc<Swapper> {
    let stages = plan
        .stages
        .iter()
        .zip(&loaded.contexts)
        .zip(&loaded.plugins)
        .map(|((stage, context), plugin)| {
            (
                stage.name.to_string(),
                Arc::clone(context),
                Arc::clone(plugin),
            )
        })
        .collect();
    let router: swap::swapper::Router = {
        let consumer = Arc::clone(&consumer.0);
        Arc::new(move |order: &Arc<swap::Order>, wait: Duration| {
            consumer.context().broadcast(order, wait)
        })
    };
    Arc::new(Swapper::new(swap::SwapperParts {
        pipeline: plan.name.to_string(),
        runtime: Arc::clone(&shared.runtime),
        stages,
        origins: plan
            .stages
            .iter()
            .map(|stage| stage.plugin.display().to_string())
            .collect(),
        aggregator,
        sinks: Arc::clone(sinks),
        router,
        shards,
    }))
}

/// The swapper's own task, and with `--watch` the task that swaps a stage
/// when its plugin file changes.
pub(super) fn watch_plugins(
    plan: &PipelinePlan,
    config: &RunConfig,
    swapper: &Arc<Swapper>,
) -> Vec<TaskHandle<()>> {
    let mut tasks = vec![tokio::spawn(Arc::clone(swapper).watch().in_current_span())];
    if config.watch {
        let files = plan
            .stages
            .iter()
            .map(|stage| {
                let path =
                    std::fs::canonicalize(&stage.plugin).unwrap_or_else(|_| stage.plugin.clone());
                (stage.name.to_string(), path)
            })
            .collect();
        tasks.push(tokio::spawn(
            swap::watch::run(Arc::clone(swapper), files).in_current_span(),
        ));
    }
    tasks
}

/// The status line and the status page's figures, every `status_every`.
pub(super) fn start_monitor(
    plan: &PipelinePlan,
    config: &RunConfig,
    consumer: &Source,
    stats: &Arc<Stats>,
    live: Arc<monitor::Live>,
) -> TaskHandle<()> {
    tokio::spawn(
        monitor::run(
            plan.name.to_string(),
            plan.source.topic.to_string(),
            Arc::clone(&consumer.0),
            Arc::clone(stats),
            live,
            config.status_every,
        )
        .in_current_span(),
    )
}
