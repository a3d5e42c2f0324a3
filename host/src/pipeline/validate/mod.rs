//! Checking a pipeline file without side effects: parse it, then check what
//! it means — names, references between tables, files it points at, limits
//! — and report every problem with its line and column and how to fix it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

mod sinks;

use super::config::{BatchConfig, LookupConfig, PipelineConfig, SourceConfig, StageConfig};
use super::error::{PipelineError, PipelineErrors, Reporter};
use super::hops::Hop;
use super::names::{Name, NameError, TopicName};
use super::plan::{BatchPlan, LookupFrom, LookupPlan, PipelinePlan, SourcePlan, StagePlan};

/// Reads and checks the pipeline file at `path`.
pub fn load(path: &Path) -> Result<PipelinePlan, PipelineErrors> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        PipelineErrors(vec![PipelineError {
            file: display.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {error}"),
            help: None,
        }])
    })?;
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    check(&display, &text, &base_dir)
}

/// Checks pipeline text named `file`, resolving relative paths against
/// `base_dir`: the plan it means, or every problem found.
pub fn check(file: &str, text: &str, base_dir: &Path) -> Result<PipelinePlan, PipelineErrors> {
    let report = Reporter { file, text };
    let config: PipelineConfig = toml::from_str(text).map_err(|error| {
        let message = error.message().trim().to_owned();
        let help = parse_help(&message);
        PipelineErrors(vec![report.at(error.span(), message, help)])
    })?;
    let mut errors = Vec::new();
    let plan = Checker {
        report: &report,
        base_dir,
        errors: &mut errors,
    }
    .plan(&config);
    match plan {
        Some(plan) if errors.is_empty() => Ok(plan),
        _ => {
            debug_assert!(!errors.is_empty(), "a part left out of the plan says why");
            Err(PipelineErrors(errors))
        }
    }
}

/// A hint for the errors the TOML parser reports.
fn parse_help(message: &str) -> Option<String> {
    if message.contains("expected a duration") {
        Some("write durations with a unit, such as `50ms`, `1s` or `30m`".to_owned())
    } else if message.starts_with("unknown field") {
        Some("check the spelling; docs/pipelines.md lists every field".to_owned())
    } else if message.starts_with("missing field") {
        Some("add the field; docs/pipelines.md says what it takes".to_owned())
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        Some("docs/pipelines.md gives each field's type".to_owned())
    } else {
        None
    }
}

struct Checker<'a> {
    report: &'a Reporter<'a>,
    base_dir: &'a Path,
    errors: &'a mut Vec<PipelineError>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: String, help: &str) {
        let error = self
            .report
            .at(Some(at.span()), message, Some(help.to_owned()));
        self.errors.push(error);
    }

    /// An error about the file as a whole (no place to point at).
    fn error_in_file(&mut self, message: &str, help: &str) {
        let error = self
            .report
            .at(None, message.to_owned(), Some(help.to_owned()));
        self.errors.push(error);
    }

    /// `parsed`, or its error reported at `at`.
    fn named<T, N>(&mut self, at: &Spanned<T>, parsed: Result<N, NameError>) -> Option<N> {
        parsed
            .map_err(|error| self.error(at, error.message, error.help))
            .ok()
    }

    /// Every check of `config`, every problem reported; the plan when the
    /// whole file is sound (`None` only after an error).
    fn plan(&mut self, config: &PipelineConfig) -> Option<PipelinePlan> {
        let name = self.name(&config.name, "pipeline");
        let source = self.source(&config.source, config.name.get_ref());
        let batch = self.batch(&config.batch);
        let lookups = self.lookups(&config.lookups);
        // Stages may read every table the file defines (a table with an
        // error of its own is reported once, there).
        let defined = config
            .lookups
            .iter()
            .map(|t| t.name.get_ref().as_str())
            .collect();
        let stages = self.stages(&config.stages, &defined);
        let sinks = self.sinks(&config.sinks, config.source.topic.get_ref());
        let dead_letter_topic = self.dead_letter_topic(config);
        Some(PipelinePlan {
            name: name?,
            source: source?,
            batch: batch?,
            lookups: lookups?,
            stages: stages?,
            sinks: sinks?,
            dead_letter_topic: dead_letter_topic?,
            hop: Hop::Whole,
        })
    }

    fn source(&mut self, source: &SourceConfig, pipeline: &str) -> Option<SourcePlan> {
        let topic = self.topic(&source.topic, "source topic");
        let group = match &source.group {
            None => Some(format!("weir-{pipeline}")),
            Some(group) if group.get_ref().trim().is_empty() => {
                self.error(
                    group,
                    "the consumer group is empty".into(),
                    "name a group, or leave `group` out to use `weir-<pipeline name>`",
                );
                None
            }
            Some(group) => Some(group.get_ref().clone()),
        };
        let max_record_bytes = match &source.max_record_bytes {
            None => Some(1_000_000),
            Some(bytes) if *bytes.get_ref() == 0 => {
                self.error(
                    bytes,
                    "`max_record_bytes` is 0: every record would be refused".into(),
                    "leave it out for 1 000 000, or give the largest value size you accept",
                );
                None
            }
            Some(bytes) => Some(usize::try_from(*bytes.get_ref()).unwrap_or(usize::MAX)),
        };
        Some(SourcePlan {
            topic: topic?,
            group: group?,
            format: source.format,
            max_record_bytes: max_record_bytes?,
            max_clock_skew: source.max_clock_skew.unwrap_or(Duration::from_secs(60)),
        })
    }

    fn batch(&mut self, batch: &BatchConfig) -> Option<BatchPlan> {
        let mut sound = true;
        if batch.flush_interval.is_zero() {
            self.error_in_file(
                "`[batch] flush_interval` is zero: aggregators would flush without pause",
                "give a duration such as `1s`, or leave it out for 1 s",
            );
            sound = false;
        }
        let max_records = *batch.max_records.get_ref();
        if !(1..=65_536).contains(&max_records) {
            self.error(
                &batch.max_records,
                format!("`max_records` is {max_records}; a batch holds 1 to 65536 records"),
                "512 is a good start",
            );
            sound = false;
        }
        sound.then(|| BatchPlan {
            max_records: usize::try_from(max_records).unwrap_or(usize::MAX),
            max_wait: batch.max_wait,
            flush_interval: batch.flush_interval,
        })
    }

    fn lookups(&mut self, lookups: &[LookupConfig]) -> Option<Vec<LookupPlan>> {
        let mut names = HashSet::new();
        let mut plans = Some(Vec::with_capacity(lookups.len()));
        for lookup in lookups {
            let plan = self.lookup(lookup, &mut names);
            plans = plans.zip(plan).map(|(mut plans, plan)| {
                plans.push(plan);
                plans
            });
        }
        plans
    }

    fn lookup<'c>(
        &mut self,
        lookup: &'c LookupConfig,
        names: &mut HashSet<&'c str>,
    ) -> Option<LookupPlan> {
        let table = lookup.name.get_ref();
        let mut name = self.name(&lookup.name, "lookup table");
        if !names.insert(table.as_str()) {
            self.error(
                &lookup.name,
                format!("lookup table `{table}` is defined twice"),
                "give each table its own name",
            );
            name = None;
        }
        let key = self.lookup_key(lookup, table);
        let from = match (&lookup.query, &lookup.file, &lookup.topic) {
            (Some(query), None, None) if query.get_ref().trim().is_empty() => {
                self.error(
                    query,
                    "the query is empty".into(),
                    "write the SELECT that returns the table's rows",
                );
                None
            }
            (Some(query), None, None) => key.map(|key| LookupFrom::Query {
                sql: query.get_ref().clone(),
                key,
            }),
            (None, Some(file), None) => {
                let path = self.base_dir.join(file.get_ref());
                if !path.is_file() {
                    self.error(
                        file,
                        format!("lookup file `{}` does not exist", file.get_ref().display()),
                        "paths are relative to the pipeline file's folder",
                    );
                }
                key.filter(|_| path.is_file())
                    .map(|key| LookupFrom::File { path, key })
            }
            (None, None, Some(topic)) => self.topic(topic, "lookup topic").map(LookupFrom::Topic),
            (None, None, None) => {
                self.error(
                    &lookup.name,
                    format!("lookup table `{table}` has no `query`, `file` or `topic`"),
                    "add `query = \"SELECT ...\"` (PostgreSQL), `file = \"rows.jsonl\"` or `topic = \"...\"` (Kafka)",
                );
                None
            }
            (query, file, topic) => {
                let given: Vec<&str> = [
                    ("`query`", query.is_some()),
                    ("`file`", file.is_some()),
                    ("`topic`", topic.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, given)| given.then_some(name))
                .collect();
                // Pointed at the second source named.
                let at = file
                    .as_ref()
                    .filter(|_| query.is_some())
                    .map(Spanned::span)
                    .or(topic.as_ref().map(Spanned::span));
                let error = self.report.at(
                    at,
                    format!("lookup table `{table}` has {}", given.join(" and ")),
                    Some("keep one: `query` reads PostgreSQL, `file` reads JSON Lines, `topic` reads Kafka".to_owned()),
                );
                self.errors.push(error);
                None
            }
        };
        let refresh = match (lookup.refresh, &from) {
            (Some(every), _) if every.is_zero() => {
                self.error(
                    &lookup.name,
                    format!("lookup table `{table}` has a `refresh` of zero"),
                    "give how often to read it again, such as `30s`, or leave `refresh` out to read it once",
                );
                None
            }
            (Some(_), Some(LookupFrom::File { .. } | LookupFrom::Topic(_))) => {
                self.error(
                    &lookup.name,
                    format!("lookup table `{table}` is a file or a topic: `refresh` is for `query` tables"),
                    "leave `refresh` out: a file is read once, a topic followed as it is written",
                );
                None
            }
            (refresh, _) => Some(refresh),
        };
        Some(LookupPlan {
            name: name?,
            from: from?,
            refresh: refresh?,
        })
    }

    /// The key column of a `query` or `file` table; a `topic` table is
    /// keyed by its records' Kafka keys and names none.
    fn lookup_key(&mut self, lookup: &LookupConfig, table: &str) -> Option<String> {
        match (&lookup.key, &lookup.topic) {
            (Some(key), Some(_)) => {
                self.error(
                    key,
                    format!("lookup table `{table}` reads a topic: its rows are keyed by their Kafka keys"),
                    "leave `key` out",
                );
                None
            }
            (None, Some(_)) => None,
            (None, None) => {
                self.error(
                    &lookup.name,
                    format!("lookup table `{table}` has no `key`"),
                    "name the column rows are looked up by: `key = \"...\"`",
                );
                None
            }
            (Some(key), None) if key.get_ref().trim().is_empty() => {
                self.error(
                    key,
                    "the key column is empty".into(),
                    "name the column rows are looked up by",
                );
                None
            }
            (Some(key), None) => Some(key.get_ref().clone()),
        }
    }

    fn stages(&mut self, stages: &[StageConfig], tables: &HashSet<&str>) -> Option<Vec<StagePlan>> {
        if stages.is_empty() {
            self.error_in_file(
                "the pipeline has no stages",
                "add at least one `[[stages]]` table",
            );
            return None;
        }
        let mut names = HashSet::new();
        let mut plans = Some(Vec::with_capacity(stages.len()));
        for stage in stages {
            let plan = self.stage(stage, &mut names, tables);
            plans = plans.zip(plan).map(|(mut plans, plan)| {
                plans.push(plan);
                plans
            });
        }
        plans
    }

    fn stage<'c>(
        &mut self,
        stage: &'c StageConfig,
        names: &mut HashSet<&'c str>,
        tables: &HashSet<&str>,
    ) -> Option<StagePlan> {
        let name = stage.name.get_ref();
        let mut sound = true;
        let parsed = self.name(&stage.name, "stage");
        if !names.insert(name.as_str()) {
            self.error(
                &stage.name,
                format!("stage `{name}` is defined twice"),
                "give each stage its own name",
            );
            sound = false;
        }
        let plugin = self.base_dir.join(stage.plugin.get_ref());
        if !plugin.is_file() {
            self.error(
                &stage.plugin,
                format!("stage `{name}`: plugin `{}` does not exist", stage.plugin.get_ref().display()),
                "build the plugins (`cargo build --release` in plugins/), or fix the path; it is relative to the pipeline file's folder",
            );
            sound = false;
        }
        let mut lookups = Vec::with_capacity(stage.lookups.len());
        for table in &stage.lookups {
            if tables.contains(table.get_ref().as_str()) {
                lookups.extend(Name::parse(table.get_ref(), "lookup table").ok());
            } else {
                self.error(
                    table,
                    format!(
                        "stage `{name}` reads lookup table `{}`, which is not defined",
                        table.get_ref()
                    ),
                    "define it in a `[[lookups]]` table, or remove it from the stage",
                );
                sound = false;
            }
        }
        sound &= self.stage_settings(stage);
        let config_json = serde_json::to_string(&stage.config).map_err(|error| {
            self.error(
                &stage.name,
                format!(
                    "stage `{name}`: its `config` cannot be given to the plugin as JSON: {error}"
                ),
                "use strings for dates and times",
            );
        });
        sound.then_some(())?;
        Some(StagePlan {
            name: parsed?,
            plugin,
            config_json: config_json.ok()?,
            limits: stage.limits.clone(),
            lookups,
            capabilities: stage.capabilities.iter().copied().collect(),
            key_field: stage
                .key_field
                .as_ref()
                .map(|field| field.get_ref().clone()),
            idle_timeout: stage.idle_timeout,
            max_keys: stage.max_keys.as_ref().map(|keys| *keys.get_ref()),
        })
    }

    /// A stage's limits and aggregator settings; whether they are sound.
    fn stage_settings(&mut self, stage: &StageConfig) -> bool {
        let name = stage.name.get_ref();
        let errors = self.errors.len();
        let limits = &stage.limits;
        if limits.memory_mib == 0 || limits.call_timeout_ms == 0 || limits.fuel == Some(0) {
            self.error(
                &stage.name,
                format!("stage `{name}`: limits must be above zero"),
                "leave a limit out to take its default (memory_mib 256, call_timeout_ms 1000, no fuel)",
            );
        }
        if stage.idle_timeout.is_some_and(|timeout| timeout.is_zero()) {
            self.error(
                &stage.name,
                format!("stage `{name}`: `idle_timeout` is zero"),
                "give a duration such as `30m`, or leave it out to keep state forever",
            );
        }
        if let Some(keys) = &stage.max_keys
            && *keys.get_ref() == 0
        {
            self.error(
                keys,
                format!("stage `{name}`: `max_keys` is 0: every event would be refused"),
                "leave it out for 10 000 000, or give the most keys the state may hold",
            );
        }
        if let Some(field) = &stage.key_field
            && field.get_ref().trim().is_empty()
        {
            self.error(
                field,
                format!("stage `{name}`: `key_field` is empty"),
                "name the JSON field that keys the state, or leave it out to key by the record key",
            );
        }
        self.errors.len() == errors
    }

    fn name(&mut self, name: &Spanned<String>, what: &str) -> Option<Name> {
        self.named(name, Name::parse(name.get_ref(), what))
    }

    fn topic(&mut self, topic: &Spanned<String>, what: &str) -> Option<TopicName> {
        self.named(topic, TopicName::parse(topic.get_ref(), what))
    }
}
