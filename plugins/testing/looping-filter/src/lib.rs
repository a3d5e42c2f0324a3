//! Keeps every record, but never returns from one containing `LOOP`.

use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter};

struct LoopingFilter;

impl Filter for LoopingFilter {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        if record.value.windows(4).any(|window| window == b"LOOP") {
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        Decision::Keep
    }
}

export_filter!(LoopingFilter);
