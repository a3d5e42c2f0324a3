//! Writes, for each record, what it reads of every WASI clock and random
//! interface: the wall clock, the monotonic clock, 16 secure random bytes,
//! an insecure random number and the insecure seed. A stage not granted
//! `clock` and `random` must give the same output for the same input; a
//! stage granted them must not.

use serde_json::json;
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::random::{insecure, insecure_seed, random};
use weir_plugin_sdk::{Config, Emitter, PluginError, Record, Transform, export_transform};

struct ClockReader;

impl Transform for ClockReader {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        Vec::new()
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let wall = wall_clock::now();
        let seed = insecure_seed::insecure_seed();
        let read = json!({
            "offset": record.offset,
            "wall_clock": [wall.seconds, wall.nanoseconds],
            "monotonic_clock": monotonic_clock::now(),
            "random": random::get_random_bytes(16),
            "insecure_random": insecure::get_insecure_random_u64(),
            "insecure_seed": [seed.0, seed.1],
        });
        out.emit(None, read.to_string().as_bytes());
        Ok(())
    }
}

export_transform!(ClockReader);
