//! Replay equality: the same input run twice through every stock and example
//! plugin (`weir plugin test`, the code a pipeline runs) gives byte-identical
//! output, dead letters and state. A plugin that reads every WASI clock and
//! random interface repeats itself too, reading times taken from the records,
//! unless its stage grants the real clocks and random source — then it does
//! not, which shows the test can fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{RUNTIME, manifest_dir, plugin_path};
use weir::authoring::local::{FIRST_TIMESTAMP, TestArgs, run_in};
use weir::plugin::Capability;

/// The demo's events (the shared test vectors of `session-stats`).
fn events() -> PathBuf {
    manifest_dir().join("../plugins/vectors/session-stats/events.jsonl")
}

/// How many records the events file holds (its non-blank lines).
fn event_count() -> usize {
    std::fs::read_to_string(events())
        .expect("the events")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count()
}

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// Each file a run writes, by name.
const OUTPUTS: [&str; 3] = ["output.jsonl", "dead-letters.jsonl", "state.jsonl"];

/// Runs `args` writing into `dir`; returns what it wrote, file by file.
fn run_into(args: &TestArgs, dir: &Path, aggregator: bool) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(dir).expect("a run folder");
    let mut args = args.clone();
    args.output = Some(dir.join(OUTPUTS[0]));
    args.dead_letters = Some(dir.join(OUTPUTS[1]));
    if aggregator {
        args.state = Some(dir.join(OUTPUTS[2]));
    }
    let summary = run_in(&RUNTIME, &args).unwrap_or_else(|error| {
        panic!("{}: {error:#}", args.plugin.display());
    });
    assert_eq!(summary.records, event_count(), "the whole input was read");
    OUTPUTS
        .iter()
        .filter(|file| aggregator || **file != OUTPUTS[2])
        .map(|file| {
            let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
            ((*file).to_owned(), bytes)
        })
        .collect()
}

/// Lookup tables for `catalog-enrich` covering the input's users and
/// products (JSON Lines), as `--lookup` arguments.
fn lookups(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(events()).expect("the events");
    let (mut users, mut products) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        // The vectors hold malformed events too.
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(user) = event["user_id"].as_str() {
            users.insert(user.to_owned());
        }
        if let Some(product) = event["product_id"].as_str() {
            products.insert(product.to_owned());
        }
    }
    let write = |name: &str, rows: Vec<serde_json::Value>| {
        let path = dir.join(format!("{name}.jsonl"));
        let lines: Vec<String> = rows.iter().map(ToString::to_string).collect();
        std::fs::write(&path, lines.join("\n")).expect("a lookup file");
        path
    };
    let users = write(
        "users",
        users
            .iter()
            .enumerate()
            .map(|(n, user)| {
                let segment = ["new", "vip"][n % 2];
                serde_json::json!({"user_id": user, "segment": segment})
            })
            .collect(),
    );
    let products = write(
        "products",
        products
            .iter()
            .enumerate()
            .map(|(n, product)| {
                serde_json::json!({"product_id": product, "category": format!("c{}", n % 7), "brand": format!("b{}", n % 5)})
            })
            .collect(),
    );
    vec![
        format!("users={}:user_id", users.display()),
        format!("products={}:product_id", products.display()),
    ]
}

/// The demo pipeline's configuration of `field-filter`.
const FIELD_FILTER: &str = r#"{"keep_if": [
    {"field": "session_id", "present": true, "otherwise": "reject"},
    {"field": "event_type", "in": ["session_start", "page_view", "search", "product_viewed",
        "add_to_cart", "cart_viewed", "purchase", "session_end"], "otherwise": "reject"}]}"#;

/// The demo pipeline's configuration of `catalog-enrich`.
const CATALOG_ENRICH: &str = r#"{"enrich": [
    {"table": "users", "key_field": "user_id", "fields": {"user_segment": "segment"}},
    {"table": "products", "key_field": "product_id",
     "fields": {"product_category": "category", "product_brand": "brand"}}]}"#;

/// Aggregators: the stock ones and the examples in every language.
const AGGREGATORS: [&str; 8] = [
    "session_stats",
    "session_stats_v2",
    "session_activity",
    "session_stats_js",
    "session_stats_py",
    "session_stats_c",
    "category_interest",
    "funnel_timing",
];

#[test]
fn every_stock_and_example_plugin_gives_the_same_bytes_twice() {
    let dir = scratch("plugins");
    let input = events();
    let mut cases: Vec<(&str, TestArgs, bool)> = Vec::new();
    let mut filter = TestArgs::new(plugin_path("field_filter"), &input);
    filter.config = Some(FIELD_FILTER.to_owned());
    cases.push(("field_filter", filter, false));
    let mut enrich = TestArgs::new(plugin_path("catalog_enrich"), &input);
    enrich.config = Some(CATALOG_ENRICH.to_owned());
    enrich.lookups = lookups(&dir);
    cases.push(("catalog_enrich", enrich, false));
    for name in AGGREGATORS.into_iter().chain(["checkout_summary"]) {
        let mut args = TestArgs::new(plugin_path(name), &input);
        args.key_field = Some("session_id".to_owned());
        cases.push((name, args, true));
    }
    for (name, args, aggregator) in &cases {
        let first = run_into(args, &dir.join(name).join("first"), *aggregator);
        let second = run_into(args, &dir.join(name).join("second"), *aggregator);
        let output = &first[0].1;
        assert!(
            output.len() > 1000,
            "{name}: an output to compare ({} bytes)",
            output.len()
        );
        for ((file, a), (_, b)) in first.iter().zip(&second) {
            assert!(a == b, "{name}: {file} differs between two runs");
        }
        println!(
            "{name}: {} output bytes, {} dead-letter bytes, identical twice",
            output.len(),
            first[1].1.len()
        );
    }
}

/// What `clock-reader` wrote for each record.
fn reads(run: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&run[0].1)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON output"))
        .collect()
}

#[test]
fn clocks_and_random_repeat_unless_granted() {
    let dir = scratch("clocks");
    let args = TestArgs::new(plugin_path("clock_reader"), events());
    let first = run_into(&args, &dir.join("first"), false);
    let second = run_into(&args, &dir.join("second"), false);
    assert!(
        first[0].1 == second[0].1,
        "not granted: the same bytes twice"
    );
    let lines = i64::try_from(event_count()).unwrap();
    for read in reads(&first) {
        // Both clocks read the newest record time of the batch, never now.
        let wall = &read["wall_clock"];
        let ms = wall[0].as_i64().unwrap() * 1000 + wall[1].as_i64().unwrap() / 1_000_000;
        let offset = read["offset"].as_i64().unwrap();
        assert!(
            (FIRST_TIMESTAMP + offset..FIRST_TIMESTAMP + lines).contains(&ms),
            "the wall clock reads a record time: {read}"
        );
        let monotonic = read["monotonic_clock"].as_u64().unwrap();
        assert_eq!(monotonic, ms as u64 * 1_000_000, "{read}");
    }
    let randoms: BTreeSet<String> = reads(&first)
        .iter()
        .map(|read| read["random"].to_string())
        .collect();
    assert!(randoms.len() > 1, "each batch gets its own random bytes");

    let mut granted = args.clone();
    granted.capabilities = vec![Capability::Clock, Capability::Random];
    let third = run_into(&granted, &dir.join("third"), false);
    let fourth = run_into(&granted, &dir.join("fourth"), false);
    let (third, fourth) = (reads(&third), reads(&fourth));
    for field in ["wall_clock", "random", "insecure_random", "insecure_seed"] {
        assert_ne!(
            third[0][field], fourth[0][field],
            "granted: {field} is the host's own"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let seconds = third[0]["wall_clock"][0].as_i64().unwrap();
    assert!(
        (now - seconds).abs() < 600,
        "granted: the wall clock is the real one"
    );
}
