//! `weir-bench plugins`: each stock plugin through the Wasm runtime against
//! the same Rust code compiled natively, on batches of several sizes, side by
//! side in one run, plus the cost of the boundary alone (a filter that does
//! nothing).

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json, json};
use weir::plugin::{self as host, LookupTables, Runtime, StageContext, Worker};
use weir_plugin_sdk::{self as sdk, Filter};

use crate::events::{self, Event};

/// Options of `weir-bench plugins`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64,512,4096")]
    batches: Vec<usize>,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Live sessions interleaved in the stream (keys per batch for session-stats).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Only these plugins (default: all of them).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the compiled plugins are (default: the plugins workspace's release folder).
    #[arg(long, env = "WEIR_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
}

/// The field-filter configuration of the demo pipeline.
fn filter_config() -> Json {
    json!({"keep_if": [
        {"field": "session_id", "present": true},
        {"field": "event_type", "in": ["session_start", "page_view", "search", "product_viewed",
                                       "add_to_cart", "cart_viewed", "purchase", "session_end"]},
    ]})
}

fn enrich_config() -> Json {
    json!({"enrich": [
        {"table": "users", "key_field": "user_id", "fields": {"user_segment": "segment"}},
        {"table": "products", "key_field": "product_id",
         "fields": {"product_category": "category", "product_brand": "brand"}},
    ]})
}

fn lookup_tables() -> LookupTables {
    let mut tables = LookupTables::default();
    tables.insert(
        "users",
        (0..5000)
            .map(|i| (format!("user_{i:05}"), json!({"segment": "returning"}).to_string()))
            .collect(),
    );
    tables.insert(
        "products",
        (1..=6)
            .map(|i| (format!("prod_{i:04}"), json!({"category": "sports", "brand": "Stride"}).to_string()))
            .collect(),
    );
    tables
}

/// The same tables for the native run, answering as the host import does
/// (JSON text parsed by the plugin).
struct NativeLookup(LookupTables);

impl catalog_enrich::Lookup for NativeLookup {
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>> {
        serde_json::from_str(self.0.get(table, key)?).ok()
    }
}

pub fn run(args: &Args) -> Result<()> {
    let events = events::generate(args.events, args.sessions, 42);
    let bytes: usize = events.iter().map(|e| e.value.len()).sum();
    let host_records: Vec<host::Record> = events.iter().enumerate().map(|(i, e)| host_record(i, e)).collect();
    let guest_records: Vec<sdk::Record> = events.iter().enumerate().map(|(i, e)| guest_record(i, e)).collect();
    let plugin_dir = args.plugin_dir.clone().unwrap_or_else(default_plugin_dir);
    let runtime = Runtime::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let load = |name: &str| -> Result<Arc<host::Plugin>> {
        let path = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
        Ok(runtime.load_file(name, &path).with_context(|| "build the plugins first: `cargo build --release` in plugins/")?)
    };

    println!(
        "{} events ({} bytes on average), {} live sessions, median of {} runs, one thread",
        events.len(),
        bytes / events.len(),
        args.sessions,
        args.runs
    );
    println!(
        "{:<15} {:>6} {:>14} {:>14} {:>12} {:>13}",
        "plugin", "batch", "wasm ev/s", "native ev/s", "wasm/native", "wasm ns/ev"
    );

    let noop = load("noop-filter")?;
    let field_filter = load("field-filter")?;
    let enrich = load("catalog-enrich")?;
    let stats = load("session-stats")?;
    let native_filter = field_filter::FieldFilter::from_json(&filter_config().to_string()).map_err(plugin_error)?;
    let native_enrich = catalog_enrich::CatalogEnrich::from_json(&enrich_config().to_string()).map_err(plugin_error)?;
    let native_lookup = NativeLookup(lookup_tables());

    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|only| only == name);
    for &batch in args.batches.iter().filter(|_| wanted("noop-filter")) {
        let mut worker = worker(&noop, json!({}), LookupTables::default())?;
        let wasm = median(args.runs, || {
            timed(|| {
                for chunk in host_records.chunks(batch) {
                    black_box(worker.filter(chunk));
                }
            })
        });
        report("noop-filter", batch, events.len(), wasm, None);
    }
    for &batch in args.batches.iter().filter(|_| wanted("field-filter")) {
        let mut worker = worker(&field_filter, filter_config(), LookupTables::default())?;
        let wasm = median(args.runs, || {
            timed(|| {
                for chunk in host_records.chunks(batch) {
                    black_box(worker.filter(chunk));
                }
            })
        });
        let native = median(args.runs, || {
            timed(|| {
                for chunk in guest_records.chunks(batch) {
                    black_box(chunk.iter().map(|r| native_filter.filter(r)).collect::<Vec<_>>());
                }
            })
        });
        report("field-filter", batch, events.len(), wasm, Some(native));
    }
    for &batch in args.batches.iter().filter(|_| wanted("catalog-enrich")) {
        let mut worker = worker(&enrich, enrich_config(), lookup_tables())?;
        let wasm = median(args.runs, || {
            timed(|| {
                for chunk in host_records.chunks(batch) {
                    black_box(worker.transform(chunk));
                }
            })
        });
        let native = median(args.runs, || {
            timed(|| {
                for chunk in guest_records.chunks(batch) {
                    black_box(
                        chunk
                            .iter()
                            .map(|r| native_enrich.enrich(&r.value, &native_lookup))
                            .collect::<Vec<_>>(),
                    );
                }
            })
        });
        report("catalog-enrich", batch, events.len(), wasm, Some(native));
    }
    for &batch in args.batches.iter().filter(|_| wanted("session-stats")) {
        let mut worker = worker(&stats, json!({}), LookupTables::default())?;
        let host_batches = grouped(&host_records, batch, |r| r.key.clone().unwrap_or_default());
        let guest_batches = grouped(&guest_records, batch, |r| r.key.clone().unwrap_or_default());
        let wasm = median(args.runs, || {
            let mut batches = host_batches.clone();
            let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            timed(|| {
                for batch in &mut batches {
                    let groups: Vec<host::Group> = batch
                        .drain(..)
                        .map(|(key, events)| host::Group { state: states.remove(&key), key, events })
                        .collect();
                    let results = worker.aggregate(&groups);
                    for (group, result) in groups.into_iter().zip(results) {
                        if let Some(state) = result.state {
                            states.insert(group.key, state);
                        }
                        black_box(result.row);
                    }
                }
            })
        });
        let native = median(args.runs, || {
            let mut batches = guest_batches.clone();
            let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            timed(|| {
                for batch in &mut batches {
                    let groups: Vec<sdk::bindings::aggregating::Group> = batch
                        .drain(..)
                        .map(|(key, events)| sdk::bindings::aggregating::Group {
                            state: states.remove(&key),
                            key,
                            events,
                        })
                        .collect();
                    let keys: Vec<Vec<u8>> = groups.iter().map(|g| g.key.clone()).collect();
                    let outcomes = sdk::glue::aggregate(&session_stats::SessionStats, groups);
                    for (key, outcome) in keys.into_iter().zip(outcomes) {
                        let outcome = outcome.expect("no rejections in the benchmark stream");
                        states.insert(key, outcome.state);
                        black_box(outcome.row);
                    }
                }
            })
        });
        report("session-stats", batch, events.len(), wasm, Some(native));
    }
    Ok(())
}

fn host_record(offset: usize, event: &Event) -> host::Record {
    host::Record {
        key: Some(event.key.as_bytes().to_vec()),
        value: event.value.as_bytes().to_vec(),
        timestamp: 1_764_000_000_000,
        headers: Vec::new(),
        partition: 0,
        offset: offset as i64,
    }
}

fn guest_record(offset: usize, event: &Event) -> sdk::Record {
    sdk::Record {
        key: Some(event.key.as_bytes().to_vec()),
        value: event.value.as_bytes().to_vec(),
        timestamp: 1_764_000_000_000,
        headers: Vec::new(),
        partition: 0,
        offset: offset as i64,
    }
}

/// Each batch's records grouped by key, offset order kept within a key.
fn grouped<R: Clone>(records: &[R], batch: usize, key: impl Fn(&R) -> Vec<u8>) -> Vec<Vec<(Vec<u8>, Vec<R>)>> {
    records
        .chunks(batch)
        .map(|chunk| {
            let mut groups: BTreeMap<Vec<u8>, Vec<R>> = BTreeMap::new();
            for record in chunk {
                groups.entry(key(record)).or_default().push(record.clone());
            }
            groups.into_iter().collect()
        })
        .collect()
}

fn worker(plugin: &Arc<host::Plugin>, config: Json, lookups: LookupTables) -> Result<Worker> {
    let mut context = StageContext::new("bench", plugin.name.clone());
    context.config_json = config.to_string();
    context.lookups = Arc::new(lookups);
    Ok(Worker::new(Arc::clone(plugin), Arc::new(context))?)
}

fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn median(runs: usize, mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1)).map(|_| run()).collect();
    times.sort();
    times[times.len() / 2]
}

fn report(plugin: &str, batch: usize, events: usize, wasm: Duration, native: Option<Duration>) {
    let rate = |time: Duration| events as f64 / time.as_secs_f64();
    let (native_rate, ratio) = match native {
        Some(native) => (
            format!("{:.0}", rate(native)),
            format!("{:.2}", wasm.as_secs_f64() / native.as_secs_f64()),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    println!(
        "{plugin:<15} {batch:>6} {:>14.0} {native_rate:>14} {ratio:>12} {:>13.0}",
        rate(wasm),
        wasm.as_nanos() as f64 / events as f64
    );
}

fn plugin_error(error: sdk::PluginError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.code, error.message)
}

fn default_plugin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/target")));
    target.join("wasm32-wasip2/release")
}
