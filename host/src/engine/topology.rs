//! One pipeline, from its plan to a clean stop, in named steps: load the
//! plugins, load the lookup tables, ask the aggregator what its rows look
//! like, build the sinks, spawn the shards, start the source, start the
//! swapper; then wait, and take it all down in one place ([`Running::wait`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::task::JoinHandle as TaskHandle;
use tracing::Instrument;

use super::chain::{Chain, Stage};
use super::changelog::{self, ChangelogWriter};
use super::config::RunConfig;
use super::dead_letter::DeadLetterWriter;
use super::deliver::{self, Committed, Output, Sinks};
use super::error::TopologyError;
use super::monitor;
use super::shard::{self, Flush, Input, ShardSettings};
use super::source::{self, SourceContext, SourceSettings};
use super::stats::Stats;
use super::swap::{self, Swapper};
use super::{lookups, reachable::until_reachable};
use crate::admin::Admin;
use crate::kafka::{ensure_topics, partition_count};
use crate::pipeline::{PipelinePlan, check_shape};
use crate::plugin::{LookupTables, NativeStages, Plugin, Runtime, StageContext, Worker};
use crate::sink::{KafkaSink, PostgresSink, RegistryClient, RowSchema};

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
struct Stages {
    plugins: Vec<Arc<Plugin>>,
    contexts: Vec<Arc<StageContext>>,
}

/// The aggregator's rows: their shape, and the state version behind them.
struct Aggregator {
    schema: Arc<RowSchema>,
    state_version: u32,
}

/// A started pipeline's parts, each of which [`Running::wait`] takes down.
struct Running {
    name: String,
    stats: Arc<Stats>,
    shards: Vec<JoinHandle<Result<(), shard::ShardError>>>,
    source: JoinHandle<()>,
    tasks: Vec<TaskHandle<()>>,
    admin: Arc<Admin>,
}

/// Builds the pipeline of `plan`, runs it until `shared.stop` is raised and
/// everything in flight is written, and stops it.
pub async fn run(plan: PipelinePlan, shared: Shared<'_>) -> Result<(), TopologyError> {
    let started = Instant::now();
    let stages = Stages {
        plugins: load_plugins(&plan, &shared.runtime).await?,
        contexts: stage_contexts(&plan, &shared).await?,
    };
    let aggregator = probe_aggregator(&stages).await?;
    let partitions = {
        let (kafka, topic) = (shared.config.kafka.clone(), plan.source.topic.to_string());
        tokio::task::spawn_blocking(move || partition_count(&kafka, &topic)).await??
    };
    let changelog_topic = changelog::topic(&plan.source.group, plan.last_stage().name.as_str());
    let sinks = until_reachable(&shared.stop, "connecting the sinks", || {
        build_sinks(
            &plan,
            shared.config,
            &aggregator.schema,
            partitions,
            &changelog_topic,
        )
    })
    .await?;
    sinks.start_counters(&plan.stage_names().collect::<Vec<_>>());
    let sinks = Arc::new(sinks);
    let output = Arc::new(Output {
        schema: Arc::clone(&aggregator.schema),
        kafka_schema_id: sinks.kafka.as_ref().map(KafkaSink::schema_id),
        statement: sinks
            .postgres
            .as_ref()
            .map(|sink| sink.statement(&aggregator.schema)),
    });
    let shard_count = shared.config.shards_for(partitions);
    let stats = Arc::new(Stats::new(&plan.name, shard_count));
    let committed = Arc::new(Committed::default());
    let shards = spawn_shards(
        &plan,
        &shared,
        ShardParts {
            stages: &stages,
            aggregator: &aggregator,
            output: &output,
            stats: &stats,
            committed: &committed,
            count: shard_count,
        },
    )?;
    let consumer = start_source(&plan, &shared, shards.inputs, &changelog_topic)?;
    let swapper = start_swapper(
        &plan,
        &shared,
        &stages,
        &sinks,
        &consumer,
        AggregatorParts {
            output: &output,
            state_version: aggregator.state_version,
            shards: shard_count,
        },
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
        state_version = aggregator.state_version,
        changelog = %changelog_topic,
        dead_letters = %plan.dead_letter_topic,
        ready_in = ?started.elapsed(),
        "Pipeline running."
    );
    tasks.push(tokio::spawn(
        monitor::run(
            plan.name.to_string(),
            plan.source.topic.to_string(),
            Arc::clone(&consumer.0),
            Arc::clone(&stats),
            live,
            shared.config.status_every,
        )
        .in_current_span(),
    ));
    // Delivery runs on this task: one future per shard, polled together.
    let delivered = futures::future::join_all(shards.flushes.into_iter().map(|flushes| {
        deliver::run(
            Arc::clone(&sinks),
            flushes,
            Arc::clone(&consumer.0),
            Arc::clone(&stats),
            Arc::clone(&committed),
            Arc::clone(&shared.stop),
        )
    }));
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

/// Loads each stage's plugin (compiled, or from the cache) and checks the
/// stage order against their worlds.
async fn load_plugins(
    plan: &PipelinePlan,
    runtime: &Arc<Runtime>,
) -> Result<Vec<Arc<Plugin>>, TopologyError> {
    let mut plugins = Vec::with_capacity(plan.stages.len());
    for stage in &plan.stages {
        let (runtime, name, path) = (
            Arc::clone(runtime),
            stage.name.to_string(),
            stage.plugin.clone(),
        );
        // Compiling takes seconds for a large plugin: off the async threads.
        let plugin = tokio::task::spawn_blocking(move || runtime.load_file(&name, &path))
            .await?
            .map_err(|source| TopologyError::Load {
                stage: stage.name.to_string(),
                source,
            })?;
        plugins.push(plugin);
    }
    check_shape(plan, &plugins)?;
    Ok(plugins)
}

/// Each stage's context: its configuration, limits and lookup tables
/// (loaded now, retried while PostgreSQL does not answer).
async fn stage_contexts(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
) -> Result<Vec<Arc<StageContext>>, TopologyError> {
    let tables = until_reachable(&shared.stop, "loading the lookup tables", || async {
        Ok(lookups::load(&plan.lookups, &shared.config.database_url).await?)
    })
    .await?;
    Ok(plan
        .stages
        .iter()
        .map(|stage| {
            let mut lookups = LookupTables::default();
            for table in &stage.lookups {
                let rows = tables.get(table.as_str()).cloned().unwrap_or_default();
                lookups.insert(table.to_string(), rows);
            }
            Arc::new(StageContext {
                pipeline: plan.name.to_string(),
                stage: stage.name.to_string(),
                config_json: stage.config_json.clone(),
                lookups: Arc::new(lookups),
                limits: stage.limits.clone(),
            })
        })
        .collect())
}

/// The aggregator (the last stage) says what its rows look like; the sinks
/// follow. Plugin calls block (and may write to stdio): off the async threads.
async fn probe_aggregator(stages: &Stages) -> Result<Aggregator, TopologyError> {
    let plugin = Arc::clone(stages.plugins.last().expect("a checked plan has stages"));
    let context = Arc::clone(stages.contexts.last().expect("one context per stage"));
    let (schema, state_version) =
        tokio::task::spawn_blocking(move || aggregator_schema(&plugin, &context)).await??;
    Ok(Aggregator {
        schema,
        state_version,
    })
}

/// The output schema and state version an aggregator declares (asked of a
/// probe instance made for the purpose).
pub fn aggregator_schema(
    aggregator: &Arc<Plugin>,
    context: &Arc<StageContext>,
) -> Result<(Arc<RowSchema>, u32), TopologyError> {
    let plugin = || aggregator.name.clone();
    let mut probe = Worker::new(Arc::clone(aggregator), Arc::clone(context)).map_err(|source| {
        TopologyError::Load {
            stage: context.stage.clone(),
            source,
        }
    })?;
    let text = probe
        .output_schema()
        .map_err(|failure| TopologyError::Probe {
            plugin: plugin(),
            call: "output-schema",
            failure,
        })?;
    let version = probe
        .state_version()
        .map_err(|failure| TopologyError::Probe {
            plugin: plugin(),
            call: "state-version",
            failure,
        })?;
    let schema = RowSchema::parse(&text).map_err(|source| TopologyError::Schema {
        plugin: plugin(),
        source,
    })?;
    Ok((Arc::new(schema), version))
}

/// Creates the topics weir writes to, registers the schema, migrates the
/// table: the sinks, ready to write.
async fn build_sinks(
    plan: &PipelinePlan,
    config: &RunConfig,
    schema: &RowSchema,
    partitions: usize,
    changelog_topic: &str,
) -> Result<Sinks, TopologyError> {
    let kafka = &config.kafka;
    let mut topics = vec![plan.dead_letter_topic.to_string()];
    topics.extend(plan.sinks.kafka.iter().map(|sink| sink.topic.to_string()));
    ensure_topics(kafka, &topics, partitions, &[]).await?;
    ensure_topics(
        kafka,
        &[changelog_topic.to_owned()],
        partitions,
        &changelog::topic_config(),
    )
    .await?;
    let kafka_sink = match &plan.sinks.kafka {
        Some(sink) => Some(
            KafkaSink::connect(
                kafka,
                &RegistryClient::new(&config.registry_url),
                &sink.topic,
                Some(&sink.subject),
                schema.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let postgres = match &plan.sinks.postgres {
        Some(sink) => {
            let postgres = PostgresSink::connect(
                &config.database_url,
                &sink.table,
                &sink.key_column,
                schema.clone(),
            )
            .await?;
            postgres.migrate().await?;
            Some(postgres)
        }
        None => None,
    };
    let client = |what: String| move |source| TopologyError::Client { what, source };
    Ok(Sinks {
        pipeline: plan.name.to_string(),
        topic: plan.source.topic.to_string(),
        kafka: kafka_sink,
        postgres,
        dead_letters: DeadLetterWriter::new(
            kafka,
            &plan.name,
            &plan.source.topic,
            &plan.dead_letter_topic,
        )
        .map_err(client(format!(
            "dead-letter topic `{}`",
            plan.dead_letter_topic
        )))?,
        changelog: ChangelogWriter::new(kafka, changelog_topic)
            .map_err(client(format!("changelog `{changelog_topic}`")))?,
    })
}

/// What the shards are made of.
struct ShardParts<'a> {
    stages: &'a Stages,
    aggregator: &'a Aggregator,
    output: &'a Arc<Output>,
    stats: &'a Arc<Stats>,
    committed: &'a Arc<Committed>,
    count: usize,
}

/// The shards' ends: where the source sends, where delivery reads.
struct Shards {
    inputs: Vec<std::sync::mpsc::SyncSender<Input>>,
    flushes: Vec<tokio::sync::mpsc::Receiver<Flush>>,
    threads: Vec<JoinHandle<Result<(), shard::ShardError>>>,
}

/// Starts the shards, each a thread with its own plugin instances and its
/// own delivery: its flushes stay in order, and one shard's writes never
/// wait behind another's.
fn spawn_shards(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    parts: ShardParts<'_>,
) -> Result<Shards, TopologyError> {
    let mut shards = Shards {
        inputs: Vec::with_capacity(parts.count),
        flushes: Vec::with_capacity(parts.count),
        threads: Vec::with_capacity(parts.count),
    };
    for id in 0..parts.count {
        let chain = chain(plan, shared.natives, &parts)?;
        let (input, inputs) = std::sync::mpsc::sync_channel(2);
        let (flushes, delivery) = tokio::sync::mpsc::channel(2);
        let settings = ShardSettings {
            id,
            shards: parts.count,
            flush_interval: plan.batch.flush_interval,
            max_wait: plan.batch.max_wait,
            idle_timeout: plan.last_stage().idle_timeout,
            state_version: parts.aggregator.state_version,
            output: Arc::clone(parts.output),
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

/// One shard's chain: an instance of every stage's plugin (or its native
/// code, in benchmarks).
fn chain(
    plan: &PipelinePlan,
    natives: &NativeStages,
    parts: &ShardParts<'_>,
) -> Result<Chain, TopologyError> {
    let loaded = parts.stages;
    let mut stages = Vec::with_capacity(loaded.plugins.len());
    for (plugin, context) in loaded.plugins.iter().zip(&loaded.contexts) {
        let stage = match natives.get(&context.stage) {
            Some(native) => {
                let code = native(context).map_err(|error| TopologyError::Native {
                    stage: context.stage.clone(),
                    message: format!("{error:#}"),
                })?;
                Stage::running(plugin, context, code)
            }
            // A plugin's `init` may write to stdio, which blocks: not on an async thread.
            None => tokio::task::block_in_place(|| Stage::new(plugin, Arc::clone(context)))
                .map_err(|source| TopologyError::Load {
                    stage: context.stage.clone(),
                    source,
                })?,
        };
        stages.push(stage);
    }
    let aggregator = stages.pop().expect("a checked plan has stages");
    Ok(Chain::new(
        stages,
        aggregator,
        plan.last_stage().key_field.clone(),
        Arc::clone(&parts.aggregator.schema),
        parts.aggregator.state_version,
        plan.source.format,
    ))
}

/// The source's consumer, shared with delivery (commits) and the monitor
/// (lag), and its thread.
type Source = (Arc<BaseConsumer<SourceContext>>, JoinHandle<()>);

/// Subscribes the pipeline's consumer and starts the thread that polls it.
fn start_source(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    inputs: Vec<std::sync::mpsc::SyncSender<Input>>,
    changelog_topic: &str,
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
        changelog: changelog_topic.to_owned(),
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

/// The aggregator as the swapper first knows it.
struct AggregatorParts<'a> {
    output: &'a Arc<Output>,
    state_version: u32,
    shards: usize,
}

/// The swapper: replaces stages' plugins on request, reaching the shards
/// through the source's router.
fn start_swapper(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
    loaded: &Stages,
    sinks: &Arc<Sinks>,
    consumer: &Source,
    aggregator: AggregatorParts<'_>,
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
        aggregator: swap::AggregatorVersion {
            output: Arc::clone(aggregator.output),
            state_version: aggregator.state_version,
        },
        sinks: Arc::clone(sinks),
        registry: sinks
            .kafka
            .as_ref()
            .map(|_| RegistryClient::new(&shared.config.registry_url)),
        router,
        shards: aggregator.shards,
    }))
}

/// The swapper's own task, and with `--watch` the task that swaps a stage
/// when its plugin file changes.
fn watch_plugins(
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
