//! What the swapper keeps of each stage (the version running now and those
//! a rollback goes back to), and how the admin API shows stages, versions
//! and swaps.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::order::AggregatorVersion;
use crate::plugin::{Plugin, PluginKind, StageContext};

/// One version of a stage's plugin.
#[derive(Debug, Clone)]
pub(super) struct Version {
    pub(super) plugin: Arc<Plugin>,
    /// Where it came from (a file, an upload).
    pub(super) origin: String,
    pub(super) loaded_at: DateTime<Utc>,
    /// Its output and state version (the aggregator's versions).
    pub(super) aggregator: Option<AggregatorVersion>,
}

impl Version {
    /// The version as the admin API shows it.
    pub(super) fn describe(&self) -> VersionInfo {
        VersionInfo {
            name: self.plugin.name.clone(),
            sha256: self.plugin.sha256.clone(),
            world: self.plugin.kind.world().to_owned(),
            contract_version: self.plugin.contract_version.to_string(),
            state_version: self.aggregator.as_ref().map(|a| a.state_version),
            origin: self.origin.clone(),
            loaded_at: self.loaded_at,
        }
    }
}

/// A plugin version as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The plugin's name.
    pub name: String,
    /// SHA-256 of its component.
    pub sha256: String,
    /// The world it exports.
    pub world: String,
    /// The contract version it was built against.
    pub contract_version: String,
    /// Its state version (aggregators).
    pub state_version: Option<u32>,
    /// Where it came from (a file, an upload).
    pub origin: String,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
}

/// A stage as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StageInfo {
    /// The stage's name.
    pub name: String,
    /// The plugin running now.
    pub plugin: VersionInfo,
    /// Versions a rollback would go back to, newest first.
    pub previous: Vec<VersionInfo>,
}

/// One swap or rollback, as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct SwapRecord {
    /// The swap's number.
    pub id: u64,
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// The stage.
    pub stage: String,
    /// `swap`, `rollback` or `automatic-rollback`.
    pub action: &'static str,
    /// The version replaced (SHA-256).
    pub from: String,
    /// The version now running (SHA-256).
    pub to: String,
    /// Request to the last shard's cut-over (ms).
    pub cut_over_ms: f64,
    /// Request to the first batch the new version processed, slowest shard
    /// (ms; none when no batch came within a few seconds).
    pub first_batch_ms: Option<f64>,
    /// The longest time a shard processed nothing because of the swap (ms).
    pub stall_ms: Option<f64>,
    /// Why, for an automatic rollback.
    pub reason: Option<String>,
}

/// One stage as the swapper keeps it.
pub(super) struct StageSlot {
    pub(super) name: String,
    pub(super) kind: PluginKind,
    pub(super) context: Arc<StageContext>,
    /// The version running now.
    pub(super) current: Version,
    /// Earlier versions, the newest last.
    pub(super) previous: Vec<Version>,
    /// The order that put `current` in place, while it may be on probation.
    pub(super) probation: Option<u64>,
}
