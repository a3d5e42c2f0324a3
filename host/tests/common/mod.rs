//! Shared by the runtime tests: where the compiled plugins are, and records.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use weir::plugin::{Batch, BatchBuilder, Plugin, RecordRef, Runtime, RuntimeOptions};

/// One runtime for a test binary, caching compiled plugins beside them, so
/// the large JavaScript and Python plugins compile once per build.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Runtime::with_options(RuntimeOptions {
        cache_dir: Some(plugin_dir().join("compiled")),
        ..RuntimeOptions::default()
    })
    .expect("the plugin runtime starts")
});

/// The folder the plugins workspace builds components into.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../plugins/target"));
    target.join("wasm32-wasip2/release")
}

/// The host crate's folder, read at run time (cargo sets it), so a test
/// binary built from another checkout sharing the target folder finds this one.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

/// The compiled component of plugin crate `name`.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first (`cargo xtask test` does, or \
         `cargo build --release` in plugins/)",
        path.display()
    );
    path
}

/// Loads plugin crate `name` into the shared runtime.
pub fn load(name: &str) -> Arc<Plugin> {
    RUNTIME
        .load_file(name, &plugin_path(name))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A batch of `(key, value)` records on partition 0, offsets counting from 0.
pub fn batch(records: &[(&str, &str)]) -> Batch {
    let mut builder = BatchBuilder::default();
    for (offset, (key, value)) in records.iter().enumerate() {
        builder.push(record(offset as i64, key, value));
    }
    builder.build()
}

/// One record on partition 0.
pub fn record<'a>(offset: i64, key: &'a str, value: &'a str) -> RecordRef<'a> {
    RecordRef {
        key: Some(key.as_bytes()),
        value: value.as_bytes(),
        timestamp: 1_700_000_000_000 + offset,
        partition: 0,
        offset,
    }
}
