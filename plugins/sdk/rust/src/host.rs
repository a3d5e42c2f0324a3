//! The host's imports as plain functions: logging, lookup tables, metrics.

use crate::bindings::filter_world::weir::plugin::{logging, lookup, metrics};

pub use logging::Level;

/// Logs `message` with key-value `fields` through the host's logger.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    logging::log(level, message, &fields);
}

/// The row of lookup table `table` with key `key`, as JSON text.
pub fn lookup_raw(table: &str, key: &str) -> Option<String> {
    lookup::get(table, key)
}

/// The row of lookup table `table` with key `key`, parsed into `T`; `None`
/// when there is no such row or it does not fit `T`.
pub fn lookup<T: serde::de::DeserializeOwned>(table: &str, key: &str) -> Option<T> {
    serde_json::from_str(&lookup::get(table, key)?).ok()
}

/// Adds `delta` to the plugin counter `name`.
pub fn counter_add(name: &str, delta: u64) {
    metrics::counter_add(name, delta);
}

/// Sets the plugin gauge `name`.
pub fn gauge_set(name: &str, value: f64) {
    metrics::gauge_set(name, value);
}
