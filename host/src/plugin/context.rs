//! What a stage gives its plugin instances: configuration, lookup tables,
//! limits, and the names that label its logs and metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::capabilities::Capabilities;
use super::limits::StageLimits;

/// One lookup table's rows: key -> row (a JSON object as text). The host
/// may replace them all at once while stages read (a refreshed table):
/// a reader sees the old rows or the new ones, never a mix.
#[derive(Debug, Default)]
pub struct LiveTable(ArcSwap<HashMap<String, String>>);

impl LiveTable {
    /// A table holding `rows`.
    pub fn new(rows: HashMap<String, String>) -> Self {
        Self(ArcSwap::from_pointee(rows))
    }

    /// The row with key `key`, as the table is now.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.load().get(key).cloned()
    }

    /// Replaces every row.
    pub fn replace(&self, rows: HashMap<String, String>) {
        self.0.store(Arc::new(rows));
    }

    /// Changes some rows: `change` edits a copy, which then replaces the
    /// rows at once. For one writer at a time.
    pub fn update(&self, change: impl FnOnce(&mut HashMap<String, String>)) {
        let mut rows = HashMap::clone(&self.0.load());
        change(&mut rows);
        self.0.store(Arc::new(rows));
    }

    /// How many rows it holds now.
    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    /// True when it holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reference data for enrichment: table -> key -> row, loaded by the host
/// and shared by every instance (read-only to plugins).
#[derive(Debug, Default, Clone)]
pub struct LookupTables {
    tables: HashMap<String, Arc<LiveTable>>,
}

impl LookupTables {
    /// Adds (or replaces) a table of fixed rows.
    pub fn insert(&mut self, table: impl Into<String>, rows: HashMap<String, String>) {
        self.share(table, Arc::new(LiveTable::new(rows)));
    }

    /// Adds (or replaces) a table whose rows the host may replace.
    pub fn share(&mut self, table: impl Into<String>, rows: Arc<LiveTable>) {
        self.tables.insert(table.into(), rows);
    }

    /// The row of `table` with key `key`.
    pub fn get(&self, table: &str, key: &str) -> Option<String> {
        self.tables.get(table)?.get(key)
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
    /// The metric names the stage's plugin instances have used.
    pub metric_names: MetricNames,
    /// The real clocks and random source, if granted.
    pub capabilities: Capabilities,
}

/// The metric names a stage's plugin has used, shared by its instances: at
/// most [`super::imports::MAX_METRIC_NAMES`].
#[derive(Debug, Clone, Default)]
pub struct MetricNames(Arc<std::sync::Mutex<(HashSet<String>, bool)>>);

impl MetricNames {
    /// Whether `name` is known, or may be added.
    pub fn admit(&self, name: &str) -> bool {
        let mut names = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if names.0.contains(name) {
            return true;
        }
        if names.0.len() >= super::imports::MAX_METRIC_NAMES {
            return false;
        }
        names.0.insert(name.to_owned());
        true
    }

    /// True the first time it is asked: a name was refused (logged once).
    pub fn first_refusal(&self) -> bool {
        let mut names = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !std::mem::replace(&mut names.1, true)
    }
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
            metric_names: MetricNames::default(),
            capabilities: Capabilities::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::imports::MAX_METRIC_NAMES;

    #[test]
    fn a_stage_uses_a_bounded_number_of_metric_names_and_keeps_the_ones_it_has() {
        let names = MetricNames::default();
        for n in 0..MAX_METRIC_NAMES {
            assert!(names.admit(&format!("name-{n}")));
        }
        assert!(!names.admit("one-too-many"));
        assert!(names.admit("name-7"), "a known name is still recorded");
        assert!(names.first_refusal());
        assert!(!names.first_refusal(), "logged once");
        // Instances of one stage share the names.
        assert!(!names.clone().admit("another"));
    }
}
