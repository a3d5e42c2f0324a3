//! Per-stage resource limits for plugin instances.

use std::time::Duration;

use serde::Deserialize;

/// What one plugin instance may use. Every field has a default fit for the
/// stock plugins; a pipeline file can set each per stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageLimits {
    /// Linear memory the instance may grow to, in MiB.
    pub memory_mib: u64,
    /// Wall-clock budget of one call (one batch), in milliseconds. A call
    /// past it is interrupted and counts as a trap.
    pub call_timeout_ms: u64,
    /// Fuel (roughly, WebAssembly instructions) per call; `None` disables
    /// fuel metering, which costs some speed.
    pub fuel: Option<u64>,
}

impl Default for StageLimits {
    fn default() -> Self {
        Self {
            memory_mib: 256,
            call_timeout_ms: 1_000,
            fuel: None,
        }
    }
}

impl StageLimits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }

    /// The call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}
