//! Keeps every record, but allocates without bound on one containing `HUNGRY`.

use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter};

struct HungryFilter;

impl Filter for HungryFilter {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        if record.value.windows(6).any(|window| window == b"HUNGRY") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Decision::Keep
    }
}

export_filter!(HungryFilter);
