//! What a pipeline makes before anything runs: its plugins, lookup
//! tables and sinks, and the shape of its aggregator's rows.

use std::sync::Arc;

use super::pipeline::{Shared, Stages};
use crate::engine::config::RunConfig;
use crate::engine::error::TopologyError;
use crate::engine::swap::AggregatorVersion;
use crate::engine::{changelog, repartition};
use crate::engine::{lookups, reachable::until_reachable};
use crate::kafka::{ensure_partitions, ensure_topics};
use crate::pipeline::{Hop, PipelinePlan, StageLoadError, check_shape};
use crate::plugin::{LookupTables, MetricNames, Plugin, PluginKind, Runtime, StageContext, Worker};
use crate::sink::{
    ChangelogWriter, DeadLetterWriter, FileSink, KafkaRecordSink, KafkaSink, KafkaSinkError,
    PostgresSink, RegistryClient, RowSchema, Shape, Sink, Sinks,
};

/// Loads each stage's plugin (compiled, or from the cache) and checks the
/// stage order against their worlds.
pub(super) async fn load_plugins(
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
            .map_err(|source| StageLoadError::new(stage.name.to_string(), source))?;
        plugins.push(plugin);
    }
    check_shape(plan, &plugins)?;
    Ok(plugins)
}

/// Each stage's context: its configuration, limits and lookup tables
/// (loaded now, retried while PostgreSQL does not answer); and the tables,
/// which [`lookups::keep_fresh`] keeps fresh.
pub(super) async fn stage_contexts(
    plan: &PipelinePlan,
    shared: &Shared<'_>,
) -> Result<(Vec<Arc<StageContext>>, lookups::Loaded), TopologyError> {
    let loaded = until_reachable(&shared.stop, "loading the lookup tables", || async {
        let config = shared.config;
        Ok(lookups::load(&plan.lookups, &config.database, &config.kafka).await?)
    })
    .await?;
    let tables = &loaded.tables;
    let contexts = plan
        .stages
        .iter()
        .map(|stage| {
            let mut lookups = LookupTables::default();
            for table in &stage.lookups {
                let rows = tables.get(table.as_str()).cloned().unwrap_or_default();
                lookups.share(table.to_string(), rows);
            }
            Arc::new(StageContext {
                pipeline: plan.name.to_string(),
                stage: stage.name.to_string(),
                config_json: stage.config_json.clone(),
                lookups: Arc::new(lookups),
                limits: stage.limits.clone(),
                metric_names: MetricNames::default(),
                capabilities: stage.capabilities,
            })
        })
        .collect();
    Ok((contexts, loaded))
}

/// The aggregator, when the last stage is one, says what its rows look
/// like; the sinks follow. `None`: the pipeline ends in a filter or a
/// transform, whose records the sinks write as they are. Plugin calls
/// block (and may write to stdio): off the async threads.
pub(super) async fn probe_aggregator(
    stages: &Stages,
) -> Result<Option<AggregatorVersion>, TopologyError> {
    let Some(plugin) = stages.plugins.last().map(Arc::clone) else {
        // The first hop of a re-keyed pipeline may have no stage.
        return Ok(None);
    };
    if plugin.kind != PluginKind::Aggregator {
        return Ok(None);
    }
    let context = Arc::clone(stages.contexts.last().expect("one context per stage"));
    let (schema, state_version) =
        tokio::task::spawn_blocking(move || aggregator_schema(&plugin, &context)).await??;
    Ok(Some(AggregatorVersion {
        output: Arc::new(Shape::new(schema)),
        state_version,
    }))
}

/// The output schema and state version an aggregator declares (asked of a
/// probe instance made for the purpose).
pub fn aggregator_schema(
    aggregator: &Arc<Plugin>,
    context: &Arc<StageContext>,
) -> Result<(Arc<RowSchema>, u32), TopologyError> {
    let plugin = || aggregator.name.clone();
    let mut probe = Worker::new(Arc::clone(aggregator), Arc::clone(context))
        .map_err(|source| StageLoadError::new(context.stage.clone(), source))?;
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

/// Creates the topics weir writes to and connects every sink, each ready
/// for rows of `shape` (the schema registered, the table migrated). A
/// pipeline without an aggregator (`shape` and `changelog_topic` `None`)
/// writes its records as they are, and has no changelog.
pub(super) async fn build_sinks(
    plan: &PipelinePlan,
    config: &RunConfig,
    shape: Option<&Shape>,
    partitions: usize,
    changelog_topic: Option<&str>,
) -> Result<Sinks, TopologyError> {
    let kafka = &config.kafka;
    let mut topics = vec![plan.dead_letter_topic.to_string()];
    match (&plan.hop, &plan.sinks.kafka) {
        // The first hop writes the repartition topic, made as the second hop makes it.
        (Hop::First { .. }, Some(sink)) => {
            repartition::ensure(kafka, sink.topic.as_str(), partitions).await?;
        }
        (_, sink) => topics.extend(sink.iter().map(|sink| sink.topic.to_string())),
    }
    ensure_topics(kafka, &topics, partitions, &[]).await?;
    if let Some(changelog_topic) = changelog_topic {
        let existing = ensure_topics(
            kafka,
            &[changelog_topic.to_owned()],
            partitions,
            &changelog::topic_config(),
        )
        .await?;
        // A changelog made before the source was given more partitions gets
        // theirs (one just made has them all).
        if !existing.is_empty() {
            let (connection, topic) = (kafka.clone(), changelog_topic.to_owned());
            tokio::task::spawn_blocking(move || ensure_partitions(&connection, &topic, partitions))
                .await??;
        }
    }
    let client = |what: String| move |source| TopologyError::Client { what, source };
    // PostgreSQL first: its statements run on the server while the Kafka
    // sink encodes its rows.
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(sink) = &plan.sinks.postgres {
        let shape = shape.expect("check_shape refuses a PostgreSQL sink without an aggregator");
        sinks.push(Box::new(
            PostgresSink::connect(
                &config.database,
                &sink.table,
                &sink.key_column,
                (*shape.schema).clone(),
            )
            .await?,
        ));
    }
    if let Some(sink) = &plan.sinks.kafka {
        match shape {
            Some(shape) => {
                let registry =
                    RegistryClient::new(&config.registry).map_err(KafkaSinkError::Registry)?;
                let schema = (*shape.schema).clone();
                sinks.push(Box::new(
                    KafkaSink::connect(kafka, registry, &sink.topic, Some(&sink.subject), schema)
                        .await?,
                ));
            }
            None => {
                let sink = match plan.hop {
                    Hop::First { .. } => KafkaRecordSink::repartition(kafka, &sink.topic),
                    Hop::Whole | Hop::Second { .. } => KafkaRecordSink::new(kafka, &sink.topic),
                }
                .map_err(client(format!("the Kafka sink to `{}`", sink.topic)))?;
                sinks.push(Box::new(sink));
            }
        }
    }
    if let Some(sink) = &plan.sinks.file {
        let file = FileSink::open(&sink.path)
            .await
            .map_err(|source| TopologyError::File {
                path: sink.path.clone(),
                source,
            })?;
        sinks.push(Box::new(file));
    }
    sinks.push(Box::new(
        DeadLetterWriter::new(
            kafka,
            &plan.name,
            &plan.source.topic,
            &plan.dead_letter_topic,
        )
        .map_err(client(format!(
            "dead-letter topic `{}`",
            plan.dead_letter_topic
        )))?,
    ));
    if let Some(changelog_topic) = changelog_topic {
        sinks.push(Box::new(
            ChangelogWriter::new(kafka, changelog_topic)
                .map_err(client(format!("changelog `{changelog_topic}`")))?,
        ));
    }
    let sinks = Sinks::new(&plan.name, sinks);
    if let Some(shape) = shape {
        // A table or a subject that cannot take these rows stops the start
        // with the reason, rather than every flush.
        if let Some(reason) = sinks.check(&shape.schema).await? {
            return Err(TopologyError::Refused(reason));
        }
        sinks.prepare(shape).await?;
    }
    Ok(sinks)
}
