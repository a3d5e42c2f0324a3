//! Running pipelines (`weir run`).
//!
//! One pipeline is, from input to output:
//!
//! - [`source`]: one Kafka consumer in the pipeline's group, polled by one
//!   thread that checks records and batches them per shard;
//! - [`shard`]: threads that each own some partitions, their plugin
//!   instances ([`chain`]) and those partitions' keyed [`state`], and that
//!   hand changed rows to delivery every flush interval;
//! - [`deliver`]: per shard, the task that writes its rows to the sinks and
//!   dead letters ([`dead_letter`]) to their topic, then the state changes
//!   to the [`changelog`], then commits the offsets they cover;
//! - [`lookups`]: reference data loaded at start; [`stats`]: counters and
//!   the status line.
//!
//! Back-pressure runs the other way: a slow sink blocks delivery, which
//! blocks the shards' next flush, which blocks the source's hand-over.

pub mod chain;
pub mod changelog;
pub mod dead_letter;
pub mod deliver;
pub mod lookups;
pub mod monitor;
pub mod shard;
pub mod source;
pub mod state;
pub mod stats;
pub mod swap;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use tracing::Instrument;

use self::chain::{Chain, Stage};
use self::stats::Stats;
use crate::pipeline::Pipeline;
use crate::pipeline::config::StageConfig;
use crate::plugin::{
    LookupTables, NativeStages, Plugin, PluginKind, Runtime, RuntimeOptions, StageContext, Worker,
};
use crate::sink::{KafkaSink, PostgresSink, RegistryClient, RowSchema};

/// `weir run`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pipeline files; each runs as its own pipeline in this process.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The schema registry's Confluent-compatible API.
    #[arg(
        long,
        env = "WEIR_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub registry_url: String,
    /// PostgreSQL: the sink's database, and where lookup queries run.
    #[arg(
        long,
        env = "WEIR_DATABASE_URL",
        default_value = "postgres://weir:weir@127.0.0.1:5432/weir"
    )]
    pub database_url: String,
    /// Shards (threads running plugins) per pipeline; default: one per core.
    #[arg(long, env = "WEIR_SHARDS")]
    pub shards: Option<usize>,
    /// Time between status lines (0 for none).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub status_every: Duration,
    /// Where the admin API listens (port 0: any free port; the log says which).
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "127.0.0.1:7878")]
    pub admin_addr: std::net::SocketAddr,
    /// Swap a stage's plugin when its file changes on disk (after the same
    /// checks as the admin API).
    #[arg(long)]
    pub watch: bool,
    /// The bearer token the admin API's changes need (none: changes are refused).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Runs every pipeline of `args` until `stop` is raised, then shuts them
/// down cleanly: in-flight records are processed, written and committed.
pub fn run(args: &RunArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    run_with(args, stop, &NativeStages::new())
}

/// [`run`], with the stages named in `natives` running native code instead
/// of their plugins (the benchmark's native baseline; weir itself passes none).
pub fn run_with(
    args: &RunArgs,
    stop: &Arc<AtomicBool>,
    natives: &NativeStages,
) -> anyhow::Result<()> {
    let mut pipelines = Vec::new();
    for file in &args.files {
        pipelines.push(crate::pipeline::load(file).map_err(|errors| anyhow::anyhow!("{errors}"))?);
    }
    let mut options = RuntimeOptions::from_env().map_err(anyhow::Error::msg)?;
    if options.cache_dir.is_none() {
        options.cache_dir = crate::dirs::cache().map(|dir| dir.join("compiled"));
    }
    let runtime = Arc::new(
        Runtime::with_options(options)
            .map_err(|error| anyhow::anyhow!("cannot start the Wasm engine: {error:#}"))?,
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let admin = Arc::new(crate::admin::Admin::new(
            args.admin_token.clone(),
            crate::telemetry::metrics::install(),
        ));
        let listener = tokio::net::TcpListener::bind(args.admin_addr)
            .await
            .with_context(|| {
                format!(
                    "the admin API cannot listen on {} (another weir?); give another --admin-addr, \
                     for example 127.0.0.1:0 for any free port",
                    args.admin_addr
                )
            })?;
        tracing::info!(
            addr = %listener.local_addr()?,
            changes = if args.admin_token.is_some() { "need the token" } else { "off (no WEIR_ADMIN_TOKEN)" },
            "Admin API listening."
        );
        let server = {
            let admin = Arc::clone(&admin);
            let stop = Arc::clone(stop);
            tokio::spawn(crate::admin::serve(listener, admin, async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }))
        };
        // A pipeline that fails stops the others: the process exits with its error.
        let runs = pipelines.into_iter().map(|pipeline| async {
            // Everything a pipeline logs, on any of its threads, carries its
            // name. Its spans are at ERROR level so that every filter that
            // lets a line through keeps them (a disabled span names nothing).
            let span = tracing::error_span!("pipeline", pipeline = %pipeline.config.name.get_ref());
            let result = run_pipeline(
                pipeline,
                Arc::clone(&runtime),
                args,
                Arc::clone(stop),
                Arc::clone(&admin),
                natives,
            )
            .instrument(span)
            .await;
            if result.is_err() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result
        });
        let results = futures::future::join_all(runs).await;
        server.abort();
        results
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()
            .map(drop)
    })
}

/// One pipeline, from start to clean stop.
async fn run_pipeline(
    pipeline: Pipeline,
    runtime: Arc<Runtime>,
    args: &RunArgs,
    stop: Arc<AtomicBool>,
    admin: Arc<crate::admin::Admin>,
    natives: &NativeStages,
) -> anyhow::Result<()> {
    let config = &pipeline.config;
    let name = config.name.get_ref().clone();
    let topic = config.source.topic.get_ref().clone();
    let started = Instant::now();

    let plugins = load_plugins(&pipeline, &runtime).await?;

    let tables = until_reachable(&stop, "loading the lookup tables", || async {
        lookups::load(&pipeline, &args.database_url)
            .await
            .with_context(|| format!("pipeline `{name}`"))
    })
    .await?;
    let contexts: Vec<Arc<StageContext>> = config
        .stages
        .iter()
        .map(|stage| stage_context(&name, stage, &tables))
        .collect::<anyhow::Result<_>>()?;

    // The aggregator says what its rows look like; the sinks follow.
    // Plugin calls block (and may write to stdio): off the async threads.
    let (schema, state_version) = {
        let (plugins, contexts) = (plugins.clone(), contexts.clone());
        tokio::task::spawn_blocking(move || {
            let aggregator = plugins.last().expect("a checked pipeline has stages");
            aggregator_schema(aggregator, contexts.last().expect("one context per stage"))
        })
        .await??
    };

    let partitions = source_partitions(&args.bootstrap, &topic).await?;
    let dead_letter_topic = pipeline.dead_letter_topic();
    let aggregator_config = config.stages.last().expect("stages");
    let changelog_topic = changelog::topic(&pipeline.group(), aggregator_config.name.get_ref());
    let sinks = until_reachable(&stop, "connecting the sinks", || {
        connect_sinks(&pipeline, args, &schema, partitions, &changelog_topic)
    })
    .await?;
    sinks.start_counters(
        &config
            .stages
            .iter()
            .map(|stage| stage.name.get_ref().as_str())
            .collect::<Vec<_>>(),
    );
    let sinks = Arc::new(sinks);
    let output = Arc::new(deliver::Output {
        schema: Arc::clone(&schema),
        kafka_schema_id: sinks.kafka.as_ref().map(KafkaSink::schema_id),
        statement: sinks.postgres.as_ref().map(|sink| sink.statement(&schema)),
    });
    let committed = Arc::new(deliver::Committed::default());

    // Shards, each with its own plugin instances.
    let shards = args
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .clamp(1, partitions.max(1));
    let stats = Arc::new(Stats::new(&name, shards));
    let mut deliveries = Vec::with_capacity(shards);
    let mut shard_inputs = Vec::with_capacity(shards);
    let mut shard_threads = Vec::with_capacity(shards);
    for id in 0..shards {
        let mut stages = Vec::with_capacity(plugins.len());
        for (plugin, context) in plugins.iter().zip(&contexts) {
            stages.push(match natives.get(&context.stage) {
                Some(native) => Stage::running(plugin, context, native(context)?),
                // A plugin's `init` may write to stdio, which blocks: not on an async thread.
                None => tokio::task::block_in_place(|| Stage::new(plugin, Arc::clone(context)))?,
            });
        }
        let aggregator = stages.pop().expect("stages");
        let chain = Chain::new(
            stages,
            aggregator,
            aggregator_config
                .key_field
                .as_ref()
                .map(|f| f.get_ref().clone()),
            Arc::clone(&schema),
            state_version,
            config.source.format,
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        shard_inputs.push(tx);
        let settings = shard::ShardSettings {
            id,
            shards,
            flush_interval: config.batch.flush_interval,
            max_wait: config.batch.max_wait,
            idle_timeout: aggregator_config.idle_timeout,
            state_version,
            output: Arc::clone(&output),
        };
        // Each shard has its own delivery: its flushes stay in order, and one
        // shard's writes never wait behind another's.
        let (output, flushes) = tokio::sync::mpsc::channel(2);
        deliveries.push(flushes);
        let stats = Arc::clone(&stats);
        let committed = Arc::clone(&committed);
        let stop = Arc::clone(&stop);
        let span = tracing::error_span!("shard", shard = id);
        shard_threads.push(
            std::thread::Builder::new()
                .name(format!("weir-{name}-shard-{id}"))
                .spawn(move || {
                    let _span = span.entered();
                    let result = shard::run(chain, rx, output, settings, stats, committed);
                    if result.is_err() {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    result
                })?,
        );
    }

    let consumer = Arc::new(consumer(
        &args.bootstrap,
        &pipeline,
        source::SourceContext::new(shard_inputs),
    )?);
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("cannot subscribe to `{topic}`"))?;
    let source_settings = source::SourceSettings {
        max_records: usize::try_from(*config.batch.max_records.get_ref()).unwrap_or(usize::MAX),
        max_wait: config.batch.max_wait,
        max_record_bytes: usize::try_from(config.source.max_record_bytes()).unwrap_or(usize::MAX),
        bootstrap: args.bootstrap.clone(),
        topic: topic.clone(),
        changelog: changelog_topic.clone(),
    };
    let source_thread = {
        let consumer = Arc::clone(&consumer);
        let stop = Arc::clone(&stop);
        let span = tracing::error_span!("source", topic = %topic);
        std::thread::Builder::new()
            .name(format!("weir-{name}-source"))
            .spawn(move || {
                let _span = span.entered();
                source::run(&consumer, &source_settings, &stop)
            })?
    };
    let swapper = Arc::new(swap::Swapper::new(swap::SwapperParts {
        pipeline: name.clone(),
        runtime: Arc::clone(&runtime),
        stages: config
            .stages
            .iter()
            .zip(&contexts)
            .zip(&plugins)
            .map(|((stage, context), plugin)| {
                (
                    stage.name.get_ref().clone(),
                    Arc::clone(context),
                    Arc::clone(plugin),
                )
            })
            .collect(),
        origins: config
            .stages
            .iter()
            .map(|stage| {
                pipeline
                    .base_dir
                    .join(stage.plugin.get_ref())
                    .display()
                    .to_string()
            })
            .collect(),
        aggregator: swap::AggregatorVersion {
            output: Arc::clone(&output),
            state_version,
        },
        sinks: Arc::clone(&sinks),
        registry: sinks
            .kafka
            .as_ref()
            .map(|_| RegistryClient::new(&args.registry_url)),
        router: {
            let consumer = Arc::clone(&consumer);
            Arc::new(move |order: &Arc<swap::Order>, wait: Duration| {
                consumer.context().broadcast(order, wait)
            })
        },
        shards,
    }));
    let watcher = tokio::spawn(Arc::clone(&swapper).watch().in_current_span());
    let file_watcher = args.watch.then(|| {
        let files = config
            .stages
            .iter()
            .map(|stage| {
                let path = pipeline.base_dir.join(stage.plugin.get_ref());
                let path = std::fs::canonicalize(&path).unwrap_or(path);
                (stage.name.get_ref().clone(), path)
            })
            .collect();
        tokio::spawn(swap::watch::run(Arc::clone(&swapper), files).in_current_span())
    });
    let live = Arc::new(monitor::Live::default());
    admin.register(Arc::clone(&swapper), Arc::clone(&live));
    tracing::info!(
        topic = %topic,
        group = %pipeline.group(),
        partitions,
        shards,
        stages = %config.stages.iter().map(|s| s.name.get_ref().as_str()).collect::<Vec<_>>().join(" -> "),
        state_version,
        changelog = %changelog_topic,
        dead_letters = %dead_letter_topic,
        ready_in = ?started.elapsed(),
        "Pipeline running."
    );

    let monitor = tokio::spawn(
        monitor::run(
            name.clone(),
            topic.clone(),
            Arc::clone(&consumer),
            Arc::clone(&stats),
            Arc::clone(&live),
            args.status_every,
        )
        .in_current_span(),
    );
    let delivered = futures::future::join_all(deliveries.into_iter().map(|flushes| {
        deliver::run(
            Arc::clone(&sinks),
            flushes,
            Arc::clone(&consumer),
            Arc::clone(&stats),
            Arc::clone(&committed),
            Arc::clone(&stop),
        )
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<()>, String>>();
    monitor.abort();
    admin.unregister(&name);
    watcher.abort();
    if let Some(file_watcher) = file_watcher {
        file_watcher.abort();
    }
    // Delivery ends when every shard has; the threads are finishing.
    let (panicked, failed) = tokio::task::spawn_blocking(move || {
        let mut panicked = usize::from(source_thread.join().is_err());
        let mut failed = None;
        for thread in shard_threads {
            match thread.join() {
                Err(_) => panicked += 1,
                Ok(Err(error)) => failed = Some(error),
                Ok(Ok(())) => {}
            }
        }
        (panicked, failed)
    })
    .await?;
    let totals = stats.snapshot();
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
        bail!("pipeline `{name}`: {error}");
    }
    if panicked > 0 {
        bail!(
            "pipeline `{name}`: {panicked} of its threads panicked (a bug in weir; the log above says where); uncommitted records will be read again on restart"
        );
    }
    delivered
        .map(drop)
        .map_err(|error| anyhow::anyhow!("pipeline `{name}`: {error}"))
}

/// Runs `attempt` until it succeeds, retrying with backoff while it fails
/// because a service (the registry, PostgreSQL) is unreachable; other
/// errors, or a stop, end it.
async fn until_reachable<T, F, Fut>(
    stop: &AtomicBool,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error)
                if is_unreachable(&error) && !stop.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "{what} failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}

/// True when `error` comes from a service that did not answer (worth a retry).
fn is_unreachable(error: &anyhow::Error) -> bool {
    use crate::sink::{KafkaSinkError, PostgresError, RegistryError};
    let sql = |error: &sqlx::Error| {
        matches!(
            error,
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
        )
    };
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<RegistryError>(),
            Some(RegistryError::Unreachable { .. })
        ) || matches!(
            cause.downcast_ref::<KafkaSinkError>(),
            Some(KafkaSinkError::Registry(RegistryError::Unreachable { .. }))
        ) || cause
            .downcast_ref::<PostgresError>()
            .is_some_and(|PostgresError::Database { source, .. }| sql(source))
            || cause.downcast_ref::<sqlx::Error>().is_some_and(sql)
    })
}

/// Loads each stage's plugin (compiled, or from the cache) and checks the
/// stage order.
async fn load_plugins(
    pipeline: &Pipeline,
    runtime: &Arc<Runtime>,
) -> anyhow::Result<Vec<Arc<Plugin>>> {
    let config = &pipeline.config;
    let name = config.name.get_ref();
    let mut plugins = Vec::with_capacity(config.stages.len());
    for stage in &config.stages {
        let path = pipeline.base_dir.join(stage.plugin.get_ref());
        let runtime = Arc::clone(runtime);
        let stage_name = stage.name.get_ref().clone();
        // Compiling takes seconds for a large plugin: off the async threads.
        let plugin = tokio::task::spawn_blocking(move || runtime.load_file(&stage_name, &path))
            .await?
            .with_context(|| format!("pipeline `{name}`, stage `{}`", stage.name.get_ref()))?;
        plugins.push(plugin);
    }
    check_shape(name, &config.stages, &plugins)?;
    Ok(plugins)
}

/// The aggregator's (the last stage's) output schema and state version.
/// The output schema and state version an aggregator declares (asked of a
/// probe instance made for the purpose).
pub fn aggregator_schema(
    aggregator: &Arc<Plugin>,
    context: &Arc<StageContext>,
) -> anyhow::Result<(Arc<RowSchema>, u32)> {
    let mut probe = Worker::new(Arc::clone(aggregator), Arc::clone(context))?;
    let text = probe.output_schema().map_err(|failure| {
        anyhow::anyhow!("plugin `{}`: output-schema {failure}", aggregator.name)
    })?;
    let version = probe.state_version().map_err(|failure| {
        anyhow::anyhow!("plugin `{}`: state-version {failure}", aggregator.name)
    })?;
    let schema = RowSchema::parse(&text).with_context(|| {
        format!(
            "plugin `{}` declares an output schema weir cannot use",
            aggregator.name
        )
    })?;
    Ok((Arc::new(schema), version))
}

/// Creates the topics weir writes to, registers the schema, migrates the
/// table: the sinks, ready to write.
async fn connect_sinks(
    pipeline: &Pipeline,
    args: &RunArgs,
    schema: &RowSchema,
    partitions: usize,
    changelog_topic: &str,
) -> anyhow::Result<deliver::Sinks> {
    let config = &pipeline.config;
    let name = config.name.get_ref();
    let topic = config.source.topic.get_ref();
    let dead_letter_topic = pipeline.dead_letter_topic();
    let mut topics = vec![dead_letter_topic.clone()];
    if let Some(kafka) = &config.sinks.kafka {
        topics.push(kafka.topic.get_ref().clone());
    }
    ensure_topics(&args.bootstrap, &topics, partitions, &[]).await?;
    ensure_topics(
        &args.bootstrap,
        &[changelog_topic.to_owned()],
        partitions,
        &changelog::topic_config(),
    )
    .await?;

    let kafka = match &config.sinks.kafka {
        Some(sink) => Some(
            KafkaSink::connect(
                &args.bootstrap,
                &RegistryClient::new(&args.registry_url),
                sink.topic.get_ref(),
                sink.subject.as_deref(),
                schema.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let postgres = match &config.sinks.postgres {
        Some(sink) => {
            let postgres = PostgresSink::connect(
                &args.database_url,
                sink.table.get_ref(),
                &sink.key_column,
                schema.clone(),
            )
            .await?;
            postgres.migrate().await?;
            Some(postgres)
        }
        None => None,
    };
    Ok(deliver::Sinks {
        pipeline: name.clone(),
        topic: topic.clone(),
        kafka,
        postgres,
        dead_letters: dead_letter::DeadLetterWriter::new(
            &args.bootstrap,
            name,
            topic,
            &dead_letter_topic,
        )
        .map_err(anyhow::Error::msg)?,
        changelog: changelog::ChangelogWriter::new(&args.bootstrap, changelog_topic)
            .map_err(anyhow::Error::msg)?,
    })
}

/// What `weir validate` checks beyond the file: each stage's plugin loads
/// (compiled in memory, nothing cached or written), and the stages are in
/// an order weir can run. Returns each stage's world.
pub fn check_plugins(pipeline: &Pipeline) -> anyhow::Result<Vec<PluginKind>> {
    let runtime = Runtime::new()
        .map_err(|error| anyhow::anyhow!("cannot start the Wasm engine: {error:#}"))?;
    let config = &pipeline.config;
    let plugins = config
        .stages
        .iter()
        .map(|stage| {
            let path = pipeline.base_dir.join(stage.plugin.get_ref());
            runtime
                .load_file(stage.name.get_ref(), &path)
                .with_context(|| format!("stage `{}`", stage.name.get_ref()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_shape(config.name.get_ref(), &config.stages, &plugins)?;
    Ok(plugins.iter().map(|plugin| plugin.kind).collect())
}

/// Filters and transforms first, one aggregator last: weir's sinks write an
/// aggregator's rows.
fn check_shape(
    pipeline: &str,
    stages: &[StageConfig],
    plugins: &[Arc<Plugin>],
) -> anyhow::Result<()> {
    let last = plugins.len() - 1;
    for (index, (stage, plugin)) in stages.iter().zip(plugins).enumerate() {
        let name = stage.name.get_ref();
        if index < last && plugin.kind == PluginKind::Aggregator {
            bail!(
                "pipeline `{pipeline}`: stage `{name}` is an aggregator but not the last stage; \
                 an aggregator's rows go to the sinks, so it must come last"
            );
        }
        if index == last && plugin.kind != PluginKind::Aggregator {
            bail!(
                "pipeline `{pipeline}`: the last stage `{name}` is a {} plugin; \
                 the sinks write an aggregator's rows, so a pipeline ends with an aggregator",
                plugin.kind.world()
            );
        }
        if plugin.kind != PluginKind::Aggregator
            && (stage.key_field.is_some() || stage.idle_timeout.is_some())
        {
            bail!(
                "pipeline `{pipeline}`: stage `{name}` sets `key_field` or `idle_timeout`, \
                 which only aggregators use; its plugin is a {}",
                plugin.kind.world()
            );
        }
    }
    Ok(())
}

fn stage_context(
    pipeline: &str,
    stage: &StageConfig,
    tables: &lookups::Tables,
) -> anyhow::Result<Arc<StageContext>> {
    let mut lookups = LookupTables::default();
    for table in &stage.lookups {
        let name = table.get_ref();
        let rows = tables.get(name).cloned().unwrap_or_default();
        lookups.insert(name.clone(), rows);
    }
    Ok(Arc::new(StageContext {
        pipeline: pipeline.to_owned(),
        stage: stage.name.get_ref().clone(),
        config_json: serde_json::to_string(&stage.config)
            .with_context(|| format!("stage `{}`: its configuration", stage.name.get_ref()))?,
        lookups: Arc::new(lookups),
        limits: stage.limits.clone(),
    }))
}

fn consumer(
    bootstrap: &str,
    pipeline: &Pipeline,
    context: source::SourceContext,
) -> anyhow::Result<BaseConsumer<source::SourceContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", pipeline.group())
        .set(
            "client.id",
            format!("weir-{}", pipeline.config.name.get_ref()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Prefetch at most 64 MiB: the bound on what waits in the client.
        .set("queued.max.messages.kbytes", "65536")
        // When that bound is reached, fetch again 10 ms later, not the
        // default 1 s: at full speed the queue drains in about that second,
        // and the shards then waited for the next fetch (measured: 117 000
        // -> 160 000 events/s with `weir-bench pipeline`).
        .set("fetch.queue.backoff.ms", "10")
        // Rebalances move only the partitions that change owner; the others keep flowing.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // An instance that dies without leaving (kill -9, a lost machine)
        // holds its partitions this long before the group moves them.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        .create_with_context(context)
        .context("cannot create the Kafka consumer")
}

/// The source topic's partition count; a missing topic is an error.
async fn source_partitions(bootstrap: &str, topic: &str) -> anyhow::Result<usize> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("allow.auto.create.topics", "false")
            .create()
            .context("cannot create a Kafka client")?;
        let metadata = probe
            .fetch_metadata(Some(&topic), Duration::from_secs(15))
            .with_context(|| format!("cannot reach Kafka at {bootstrap}"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len())
            }
            _ => bail!(
                "the source topic `{topic}` does not exist on {bootstrap}; create it \
                 (or start the producer) first"
            ),
        }
    })
    .await?
}

/// Creates the topics weir writes to when they are missing, with the
/// source's partition count and `config`.
async fn ensure_topics(
    bootstrap: &str,
    topics: &[String],
    partitions: usize,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot create a Kafka admin client")?;
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            config.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .context("cannot create the output topics")?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic = %topic, partitions, "Created topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic `{topic}`: {code}"),
        }
    }
    Ok(())
}

/// Where a consumer group stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The group's committed offset (`None`: nothing committed yet).
    pub committed: Option<i64>,
    /// The partition's first offset still held.
    pub low: i64,
    /// The partition's end offset (the next one to be written).
    pub high: i64,
}

impl PartitionProgress {
    /// Records the group has not committed yet (a new group starts at `low`).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// Where a consumer group stands on each partition of `topic`.
/// `consumer` must be configured with the group's `group.id`; it need not
/// subscribe.
pub fn group_progress<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<PartitionProgress>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata.topics().first().map_or(0, |t| {
        i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)
    });
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            let committed = match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(rdkafka::Offset::Offset(offset)) => Some(offset),
                _ => None,
            };
            Ok(PartitionProgress {
                committed,
                low,
                high,
            })
        })
        .collect()
}
