//! Checking a pipeline file without side effects: parse it, then check what
//! it means — names, references between tables, files it points at, limits
//! — and report every problem with its line and column and how to fix it.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::config::PipelineConfig;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line and column of the offending value (0 when unknown).
    pub line: usize,
    /// Column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineErrors(pub Vec<PipelineError>);

impl fmt::Display for PipelineErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PipelineErrors {}

/// A pipeline file that passed every check, with its paths resolved.
#[derive(Debug)]
pub struct Pipeline {
    /// What the file says.
    pub config: PipelineConfig,
    /// The folder relative paths are resolved against.
    pub base_dir: PathBuf,
}

impl Pipeline {
    /// The consumer group: as configured, or `weir-<name>`.
    pub fn group(&self) -> String {
        match &self.config.source.group {
            Some(group) => group.get_ref().clone(),
            None => format!("weir-{}", self.config.name.get_ref()),
        }
    }

    /// The dead-letter topic: as configured, or `<name>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        match &self.config.dead_letter.topic {
            Some(topic) => topic.get_ref().clone(),
            None => format!("{}.dlq", self.config.name.get_ref()),
        }
    }
}

/// Reads and checks the pipeline file at `path`.
pub fn load(path: &Path) -> Result<Pipeline, PipelineErrors> {
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

/// Checks pipeline text named `file`, resolving relative paths against `base_dir`.
pub fn check(file: &str, text: &str, base_dir: &Path) -> Result<Pipeline, PipelineErrors> {
    let report = Reporter { file, text };
    let config: PipelineConfig = toml::from_str(text).map_err(|error| {
        let message = error.message().trim().to_owned();
        let help = parse_help(&message);
        PipelineErrors(vec![report.at(error.span(), message, help)])
    })?;
    let mut errors = Vec::new();
    Checker {
        report: &report,
        base_dir,
        errors: &mut errors,
    }
    .check(&config);
    if errors.is_empty() {
        Ok(Pipeline {
            config,
            base_dir: base_dir.to_owned(),
        })
    } else {
        Err(PipelineErrors(errors))
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

struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
}

impl Reporter<'_> {
    fn at(
        &self,
        span: Option<Range<usize>>,
        message: String,
        help: Option<String>,
    ) -> PipelineError {
        let (line, column) = match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        PipelineError {
            file: self.file.to_owned(),
            line,
            column,
            message,
            help,
        }
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

    fn check(&mut self, config: &PipelineConfig) {
        self.name(&config.name, "pipeline");
        self.topic(&config.source.topic, "source topic");
        if let Some(group) = &config.source.group
            && group.get_ref().trim().is_empty()
        {
            self.error(
                group,
                "the consumer group is empty".into(),
                "name a group, or leave `group` out to use `weir-<pipeline name>`",
            );
        }
        if let Some(bytes) = &config.source.max_record_bytes
            && *bytes.get_ref() == 0
        {
            self.error(
                bytes,
                "`max_record_bytes` is 0: every record would be refused".into(),
                "leave it out for 1 000 000, or give the largest value size you accept",
            );
        }
        if config.batch.flush_interval.is_zero() {
            self.errors.push(self.report.at(
                None,
                "`[batch] flush_interval` is zero: aggregators would flush without pause".into(),
                Some("give a duration such as `1s`, or leave it out for 1 s".into()),
            ));
        }
        let max_records = *config.batch.max_records.get_ref();
        if !(1..=65_536).contains(&max_records) {
            self.error(
                &config.batch.max_records,
                format!("`max_records` is {max_records}; a batch holds 1 to 65536 records"),
                "512 is a good start",
            );
        }

        let mut tables = HashSet::new();
        for lookup in &config.lookups {
            self.name(&lookup.name, "lookup table");
            if !tables.insert(lookup.name.get_ref().as_str()) {
                self.error(
                    &lookup.name,
                    format!("lookup table `{}` is defined twice", lookup.name.get_ref()),
                    "give each table its own name",
                );
            }
            match (&lookup.query, &lookup.file) {
                (Some(_), Some(file)) => self.error(
                    file,
                    format!(
                        "lookup table `{}` has both `query` and `file`",
                        lookup.name.get_ref()
                    ),
                    "keep one: `query` reads PostgreSQL, `file` reads JSON Lines",
                ),
                (None, None) => self.error(
                    &lookup.name,
                    format!(
                        "lookup table `{}` has neither `query` nor `file`",
                        lookup.name.get_ref()
                    ),
                    "add `query = \"SELECT ...\"` (PostgreSQL) or `file = \"rows.jsonl\"`",
                ),
                (Some(query), None) if query.get_ref().trim().is_empty() => {
                    self.error(
                        query,
                        "the query is empty".into(),
                        "write the SELECT that returns the table's rows",
                    );
                }
                (None, Some(file)) => {
                    let path = self.base_dir.join(file.get_ref());
                    if !path.is_file() {
                        self.error(
                            file,
                            format!("lookup file `{}` does not exist", file.get_ref().display()),
                            "paths are relative to the pipeline file's folder",
                        );
                    }
                }
                _ => {}
            }
            if lookup.key.get_ref().trim().is_empty() {
                self.error(
                    &lookup.key,
                    "the key column is empty".into(),
                    "name the column rows are looked up by",
                );
            }
        }

        if config.stages.is_empty() {
            self.errors.push(self.report.at(
                None,
                "the pipeline has no stages".into(),
                Some("add at least one `[[stages]]` table".into()),
            ));
        }
        let mut stages = HashSet::new();
        for stage in &config.stages {
            let name = stage.name.get_ref();
            self.name(&stage.name, "stage");
            if !stages.insert(name.as_str()) {
                self.error(
                    &stage.name,
                    format!("stage `{name}` is defined twice"),
                    "give each stage its own name",
                );
            }
            let path = self.base_dir.join(stage.plugin.get_ref());
            if !path.is_file() {
                self.error(
                    &stage.plugin,
                    format!("stage `{name}`: plugin `{}` does not exist", stage.plugin.get_ref().display()),
                    "build the plugins (`cargo build --release` in plugins/), or fix the path; it is relative to the pipeline file's folder",
                );
            }
            for table in &stage.lookups {
                if !tables.contains(table.get_ref().as_str()) {
                    self.error(
                        table,
                        format!(
                            "stage `{name}` reads lookup table `{}`, which is not defined",
                            table.get_ref()
                        ),
                        "define it in a `[[lookups]]` table, or remove it from the stage",
                    );
                }
            }
            let limits = &stage.limits;
            if limits.memory_mib == 0 || limits.call_timeout_ms == 0 || limits.fuel == Some(0) {
                self.error(
                    &stage.name,
                    format!("stage `{name}`: limits must be above zero"),
                    "leave a limit out to take its default (memory_mib 256, call_timeout_ms 5000, no fuel)",
                );
            }
            if stage.idle_timeout.is_some_and(|timeout| timeout.is_zero()) {
                self.error(
                    &stage.name,
                    format!("stage `{name}`: `idle_timeout` is zero"),
                    "give a duration such as `30m`, or leave it out to keep state forever",
                );
            }
            if let Some(field) = &stage.key_field
                && field.get_ref().trim().is_empty()
            {
                self.error(field, format!("stage `{name}`: `key_field` is empty"), "name the JSON field that keys the state, or leave it out to key by the record key");
            }
            if let Err(error) = serde_json::to_value(&stage.config) {
                self.error(&stage.name, format!("stage `{name}`: its `config` cannot be given to the plugin as JSON: {error}"), "use strings for dates and times");
            }
        }

        let sinks = &config.sinks;
        if sinks.kafka.is_none() && sinks.postgres.is_none() {
            self.errors.push(self.report.at(
                None,
                "the pipeline has no sink".into(),
                Some("add `[sinks.kafka]` (Avro to a topic) or `[sinks.postgres]` (upserts to a table)".into()),
            ));
        }
        if let Some(kafka) = &sinks.kafka {
            self.topic(&kafka.topic, "sink topic");
            if kafka.topic.get_ref() == config.source.topic.get_ref() {
                self.error(
                    &kafka.topic,
                    "the sink topic is the source topic: the pipeline would read its own output"
                        .into(),
                    "write results to another topic",
                );
            }
        }
        if let Some(postgres) = &sinks.postgres {
            let table = postgres.table.get_ref();
            let valid = !table.is_empty()
                && table.len() <= 63
                && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !table.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                self.error(
                    &postgres.table,
                    format!("`{table}` is not a table name weir accepts"),
                    "use letters, digits and `_`, at most 63, not starting with a digit",
                );
            }
        }
        if let Some(topic) = &config.dead_letter.topic {
            self.topic(topic, "dead-letter topic");
            if topic.get_ref() == config.source.topic.get_ref() {
                self.error(
                    topic,
                    "the dead-letter topic is the source topic".into(),
                    "dead letters need a topic of their own, such as `<pipeline>.dlq`",
                );
            }
        }
    }

    fn name(&mut self, name: &Spanned<String>, what: &str) {
        let value = name.get_ref();
        let valid = !value.is_empty()
            && value.len() <= 64
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            self.error(
                name,
                format!("`{value}` is not a valid {what} name"),
                "start with a lowercase letter; use lowercase letters, digits, `-` and `_`; at most 64",
            );
        }
    }

    fn topic(&mut self, topic: &Spanned<String>, what: &str) {
        let value = topic.get_ref();
        let valid = !value.is_empty()
            && value.len() <= 249
            && value != "."
            && value != ".."
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            self.error(
                topic,
                format!("`{value}` is not a valid Kafka topic name ({what})"),
                "Kafka topics use letters, digits, `.`, `_` and `-`, at most 249",
            );
        }
    }
}
