//! What a stage gives its plugin instances: configuration, lookup tables,
//! limits, and the names that label its logs and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use super::limits::StageLimits;

/// Read-only reference data for enrichment: table -> key -> row (a JSON
/// object as text), loaded by the host and shared by every instance.
#[derive(Debug, Default, Clone)]
pub struct LookupTables {
    tables: HashMap<String, HashMap<String, String>>,
}

impl LookupTables {
    /// Adds (or replaces) a table.
    pub fn insert(&mut self, table: impl Into<String>, rows: HashMap<String, String>) {
        self.tables.insert(table.into(), rows);
    }

    /// The row of `table` with key `key`.
    pub fn get(&self, table: &str, key: &str) -> Option<&str> {
        self.tables.get(table)?.get(key).map(String::as_str)
    }

    /// True when the stage has a table of that name.
    pub fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }
}

/// The stage a plugin instance runs in.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The pipeline's name (a log and metric label).
    pub pipeline: String,
    /// The stage's name (a log and metric label).
    pub stage: String,
    /// The stage's configuration as a JSON object.
    pub config_json: String,
    /// The lookup tables the stage may read.
    pub lookups: Arc<LookupTables>,
    /// Resource limits per instance.
    pub limits: StageLimits,
}

impl StageContext {
    /// A context with no configuration, no tables and default limits.
    pub fn new(pipeline: impl Into<String>, stage: impl Into<String>) -> Self {
        Self {
            pipeline: pipeline.into(),
            stage: stage.into(),
            config_json: "{}".to_owned(),
            lookups: Arc::default(),
            limits: StageLimits::default(),
        }
    }
}
