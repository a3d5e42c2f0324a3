//! Keeps every record without reading it: what remains is the cost of the
//! boundary itself (the benchmark's baseline).

use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter};

struct NoopFilter;

impl Filter for NoopFilter {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn filter(&self, _record: &Record<'_>) -> Decision {
        Decision::Keep
    }
}

export_filter!(NoopFilter);
