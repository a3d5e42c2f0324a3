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
use weir::plugin::{self as host, LookupTables, Runtime, RuntimeOptions, StageContext, Worker};
use weir_plugin_sdk as sdk;

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
    /// Only these plugins (default: all of them; `host-parse` is the host's
    /// JSON parse for the three stock plugins' fields).
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
            .map(|i| {
                (
                    format!("user_{i:05}"),
                    json!({"segment": "returning"}).to_string(),
                )
            })
            .collect(),
    );
    tables.insert(
        "products",
        (1..=6)
            .map(|i| {
                (
                    format!("prod_{i:04}"),
                    json!({"category": "sports", "brand": "Stride"}).to_string(),
                )
            })
            .collect(),
    );
    tables
}

/// The same tables for the native run, answering as the host import does
/// (JSON text parsed by the plugin).
struct NativeLookup(LookupTables);

impl catalog_enrich::Lookup for NativeLookup {
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>> {
        serde_json::from_str(&self.0.get(table, key)?).ok()
    }
}

pub fn run(args: &Args) -> Result<()> {
    let events = events::generate(args.events, args.sessions, 42);
    let bytes: usize = events.iter().map(|e| e.value.len()).sum();
    let plugin_dir = args.plugin_dir.clone().unwrap_or_else(default_plugin_dir);
    let options = RuntimeOptions::from_env().map_err(anyhow::Error::msg)?;
    let runtime = Runtime::with_options(options).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let load = |name: &str| -> Result<Arc<host::Plugin>> {
        let path = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
        runtime
            .load_file(name, &path)
            .context("build the plugins first: `cargo build --release` in plugins/")
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
    let native_filter =
        field_filter::FieldFilter::from_json(&filter_config().to_string()).map_err(plugin_error)?;
    let native_enrich = catalog_enrich::CatalogEnrich::from_json(&enrich_config().to_string())
        .map_err(plugin_error)?;
    let native_lookup = NativeLookup(lookup_tables());
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|only| only == name);

    // What the host's one parse per record costs, for every field the three
    // stock plugins read (a pipeline of them parses each event once).
    let all_reads: Vec<String> = {
        let readers = [
            worker(&field_filter, filter_config(), LookupTables::default())?,
            worker(&enrich, enrich_config(), lookup_tables())?,
            worker(&stats, json!({}), LookupTables::default())?,
        ];
        readers
            .iter()
            .flat_map(|w| w.reads().iter().cloned())
            .fold(Vec::new(), |mut all, name| {
                if !all.contains(&name) {
                    all.push(name);
                }
                all
            })
    };

    for &size in &args.batches {
        // Batches are built outside the timed loops: the host builds them
        // while reading from Kafka, whatever runs the plugin.
        let host_batches: Vec<host::Batch> = events.chunks(size).map(host_batch).collect();
        let guest_batches: Vec<sdk::Batch> = events.chunks(size).map(guest_batch).collect();

        if wanted("host-parse") {
            let parse = median(args.runs, || {
                timed(|| {
                    for batch in &host_batches {
                        black_box(host::read(batch, &all_reads));
                    }
                })
            });
            println!(
                "{:<15} {size:>6} {:>14} {:>14.0} {:>12} {:>13}",
                "host-parse",
                "-",
                events.len() as f64 / parse.as_secs_f64(),
                "-",
                format!(
                    "({:.0} native)",
                    parse.as_nanos() as f64 / events.len() as f64
                ),
            );
        }
        if wanted("noop-filter") {
            let mut worker = worker(&noop, json!({}), LookupTables::default())?;
            let none = host::no_fields();
            let wasm = median(args.runs, || {
                timed(|| {
                    host_batches
                        .iter()
                        .for_each(|b| drop(black_box(worker.filter(b, &none))))
                })
            });
            report("noop-filter", size, events.len(), wasm, None);
        }
        if wanted("field-filter") {
            let mut worker = worker(&field_filter, filter_config(), LookupTables::default())?;
            let reads = worker.reads().to_vec();
            let wasm = median(args.runs, || {
                timed(|| {
                    for batch in &host_batches {
                        let fields = host::read(batch, &reads);
                        black_box(worker.filter(batch, &fields));
                    }
                })
            });
            let native = median(args.runs, || {
                timed(|| {
                    for (host_batch, batch) in host_batches.iter().zip(&guest_batches) {
                        let fields = guest_fields(host::read(host_batch, &reads));
                        black_box(sdk::glue::filter(&native_filter, batch, &fields));
                    }
                })
            });
            report("field-filter", size, events.len(), wasm, Some(native));
        }
        if wanted("catalog-enrich") {
            let mut worker = worker(&enrich, enrich_config(), lookup_tables())?;
            let reads = worker.reads().to_vec();
            let wasm = median(args.runs, || {
                timed(|| {
                    for batch in &host_batches {
                        let fields = host::read(batch, &reads);
                        black_box(worker.transform(batch, &fields));
                    }
                })
            });
            // Natively the plugin's own code runs with a map in place of the
            // host import, writing its output the way it does in Wasm.
            let native = median(args.runs, || {
                timed(|| {
                    for (host_batch, batch) in host_batches.iter().zip(&guest_batches) {
                        let fields = guest_fields(host::read(host_batch, &reads));
                        let mut out = Vec::new();
                        for record in sdk::batch::records(batch, &fields, reads.len()) {
                            let found = record.fields().expect("the benchmark stream is valid");
                            native_enrich
                                .enrich(record.value, &found, &native_lookup, &mut out)
                                .map_err(plugin_error)
                                .expect("the benchmark stream is valid");
                        }
                        black_box(out);
                    }
                })
            });
            report("catalog-enrich", size, events.len(), wasm, Some(native));
        }
        if wanted("session-stats") {
            let mut worker = worker(&stats, json!({}), LookupTables::default())?;
            let reads = worker.reads().to_vec();
            let host_grouped: Vec<(host::Batch, Vec<host::Group>)> =
                events.chunks(size).map(host_groups).collect();
            let guest_grouped: Vec<(sdk::Batch, Vec<sdk::bindings::aggregating::Group>)> =
                events.chunks(size).map(guest_groups).collect();
            let wasm = aggregate_time(&mut worker, &host_grouped, args.runs);
            let native = median(args.runs, || {
                let mut grouped = guest_grouped.clone();
                let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
                timed(|| {
                    for ((host_batch, _), (batch, groups)) in host_grouped.iter().zip(&mut grouped)
                    {
                        let fields = guest_fields(host::read(host_batch, &reads));
                        for group in groups.iter_mut() {
                            group.state = states.remove(&group.key);
                        }
                        let keys: Vec<Vec<u8>> = groups.iter().map(|g| g.key.clone()).collect();
                        let outcomes = sdk::glue::aggregate(
                            &session_stats::SessionStats,
                            batch,
                            &fields,
                            std::mem::take(groups),
                        );
                        for (key, outcome) in keys.into_iter().zip(outcomes) {
                            let outcome = outcome.expect("no rejections in the benchmark stream");
                            states.insert(key, outcome.state);
                            black_box(outcome.row);
                        }
                    }
                })
            });
            report("session-stats", size, events.len(), wasm, Some(native));
        }
    }
    Ok(())
}

/// The median time an aggregator takes over `grouped` (each key's state
/// carried from batch to batch, as the host does), the host's parse included.
pub fn aggregate_time(
    worker: &mut Worker,
    grouped: &[(host::Batch, Vec<host::Group>)],
    runs: usize,
) -> Duration {
    let reads = worker.reads().to_vec();
    median(runs, || {
        let mut grouped = grouped.to_vec();
        let mut states: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        timed(|| {
            for (batch, groups) in &mut grouped {
                for group in groups.iter_mut() {
                    group.state = states.remove(&group.key);
                }
                let fields = host::read(batch, &reads);
                let results = worker.aggregate(batch, &fields, groups);
                for (group, result) in groups.iter().zip(results) {
                    if let Some(state) = result.state {
                        states.insert(group.key.clone(), state);
                    }
                    black_box(result.row);
                }
            }
        })
    })
}

/// The fields the host found, as the guest-side type (natively the SDK's
/// bindings are a type of their own; same layout).
fn guest_fields(fields: host::Fields) -> sdk::BatchFields {
    sdk::BatchFields {
        first: fields.first,
        spans: fields
            .spans
            .into_iter()
            .map(|span| sdk::bindings::types::Span {
                start: span.start,
                len: span.len,
            })
            .collect(),
    }
}

fn host_batch(events: &[Event]) -> host::Batch {
    let mut builder = host::BatchBuilder::default();
    for (offset, event) in events.iter().enumerate() {
        builder.push(host_ref(offset, event));
    }
    builder.build()
}

fn host_ref(offset: usize, event: &Event) -> host::RecordRef<'_> {
    host::RecordRef {
        key: Some(event.key.as_bytes()),
        value: event.value.as_bytes(),
        timestamp: 1_764_000_000_000,
        partition: 0,
        offset: offset as i64,
    }
}

fn guest_batch(events: &[Event]) -> sdk::Batch {
    let mut builder = sdk::BatchBuilder::default();
    for (offset, event) in events.iter().enumerate() {
        builder.push(
            Some(event.key.as_bytes()),
            event.value.as_bytes(),
            offset as i64,
        );
    }
    builder.build()
}

/// The batch with each key's events together, and one group per key.
fn by_key(events: &[Event]) -> Vec<(&str, Vec<&Event>)> {
    let mut groups: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        groups.entry(&event.key).or_default().push(event);
    }
    groups.into_iter().collect()
}

pub fn host_groups(events: &[Event]) -> (host::Batch, Vec<host::Group>) {
    let mut builder = host::BatchBuilder::default();
    let mut groups = Vec::new();
    for (key, events) in by_key(events) {
        let first = builder.len() as u32;
        for event in &events {
            builder.push(host_ref(builder.len(), event));
        }
        groups.push(host::Group {
            key: key.as_bytes().to_vec(),
            state: None,
            first,
            count: events.len() as u32,
        });
    }
    (builder.build(), groups)
}

fn guest_groups(events: &[Event]) -> (sdk::Batch, Vec<sdk::bindings::aggregating::Group>) {
    let mut builder = sdk::BatchBuilder::default();
    let mut groups = Vec::new();
    let mut next = 0u32;
    for (key, events) in by_key(events) {
        for event in &events {
            builder.push(
                Some(event.key.as_bytes()),
                event.value.as_bytes(),
                i64::from(next),
            );
            next += 1;
        }
        groups.push(sdk::bindings::aggregating::Group {
            key: key.as_bytes().to_vec(),
            state: None,
            first: next - events.len() as u32,
            count: events.len() as u32,
        });
    }
    (builder.build(), groups)
}

pub fn worker(plugin: &Arc<host::Plugin>, config: Json, lookups: LookupTables) -> Result<Worker> {
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

pub fn default_plugin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR")
                    .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
            )
            .join("../plugins/target")
        });
    target.join("wasm32-wasip2/release")
}
