//! Keeps every record, but panics on one containing `POISON`.

use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter};

struct PanickingFilter;

impl Filter for PanickingFilter {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        if record.value.windows(6).any(|window| window == b"POISON") {
            panic!("poison record at offset {}", record.offset);
        }
        Decision::Keep
    }
}

export_filter!(PanickingFilter);
