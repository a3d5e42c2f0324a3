//! `session-stats` against the oracle over a messy stream of 60 000 events,
//! and the oracle's two evaluations (the fold and the SQL) against each
//! other on the same stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::{Value as Json, json};
use weir::plugin::{
    Batch, BatchBuilder, Failure, Group, GroupResult, RecordRef, Runtime, RuntimeOptions,
    StageContext, Value, Worker,
};
use weir_tests::Stack;
use weir_tests::oracle::fold::{Event, SessionRow, fold};
use weir_tests::oracle::messy::{generate, partitioned};
use weir_tests::oracle::{load_checked, oracle_query};
use weir_tests::pipeline::plugin_dir;

const SEED: u64 = 0x5e55_1015;
const EVENTS: usize = 60_000;
const PARTITIONS: i32 = 4;
const BATCH: usize = 512;

/// What the host keeps of a run of the aggregator alone: each key's last
/// row, and the events it rejected.
#[derive(Default)]
struct Outcome {
    rows: HashMap<String, Vec<Value>>,
    rejected: BTreeSet<(String, i64)>,
}

/// Runs `session-stats` over `partitions` in batches as the host makes
/// them: records of one key together, offset order kept within a key, one
/// group per key, the state carried from batch to batch.
fn run_plugin(partitions: &[Vec<Event>]) -> Outcome {
    // Compiled once per build, as the host's own tests cache them.
    let runtime = Runtime::with_options(RuntimeOptions {
        cache_dir: Some(plugin_dir().join("compiled")),
        ..RuntimeOptions::default()
    })
    .expect("the plugin runtime starts");
    let plugin = runtime
        .load_file("session-stats", &plugin_dir().join("session_stats.wasm"))
        .expect("session-stats loads");
    let context = Arc::new(StageContext::new("oracle", "session-stats"));
    let mut worker = Worker::new(plugin, context).expect("starts");
    let mut states: HashMap<String, Vec<u8>> = HashMap::new();
    let mut outcome = Outcome::default();
    for partition in partitions {
        for chunk in partition.chunks(BATCH) {
            let (batch, groups) = grouped(chunk, &states);
            for (group, result) in groups.iter().zip(aggregate(&mut worker, &batch, &groups)) {
                let key = String::from_utf8(group.key.clone()).expect("UTF-8 key");
                for (index, failure) in &result.failures {
                    assert!(
                        matches!(failure, Failure::Rejected(e) if e.code == "malformed-json"),
                        "{failure}"
                    );
                    let offset = batch.records[*index].offset;
                    outcome.rejected.insert((key.clone(), offset));
                }
                if let Some(state) = result.state {
                    states.insert(key.clone(), state);
                }
                if let Some(row) = result.row {
                    outcome.rows.insert(key, row);
                }
            }
        }
    }
    outcome
}

/// `chunk` as one batch grouped by key, with each key's state.
fn grouped(chunk: &[Event], states: &HashMap<String, Vec<u8>>) -> (Batch, Vec<Group>) {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in chunk {
        by_key.entry(&event.key).or_default().push(event);
    }
    let mut builder = BatchBuilder::default();
    let mut groups = Vec::new();
    for (key, events) in by_key {
        let first = builder.len() as u32;
        for event in &events {
            builder.push(RecordRef {
                key: Some(event.key.as_bytes()),
                value: event.value.as_bytes(),
                timestamp: 0,
                partition: event.partition,
                offset: event.offset,
            });
        }
        groups.push(Group {
            key: key.as_bytes().to_vec(),
            state: states.get(key).cloned(),
            first,
            count: events.len() as u32,
        });
    }
    (builder.build(), groups)
}

/// The stage alone, its fields found as a chain would find them.
fn aggregate(worker: &mut Worker, batch: &Batch, groups: &[Group]) -> Vec<GroupResult> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.aggregate(batch, &fields, groups)
}

#[test]
fn session_stats_matches_the_oracle_on_60k_messy_events() {
    let events = generate(SEED, EVENTS);
    let partitions = partitioned(&events, PARTITIONS);
    let outcome = run_plugin(&partitions);
    let expected = fold(partitions.iter().flatten());
    assert!(
        expected.rows.len() > 1_000,
        "{} sessions",
        expected.rows.len()
    );
    assert!(
        expected.bad.len() > 300,
        "{} bad events",
        expected.bad.len()
    );
    assert_eq!(
        outcome.rejected, expected.bad,
        "exactly the bad events are rejected"
    );
    assert_eq!(
        outcome.rows.len(),
        expected.rows.len(),
        "one row per session with a good event"
    );
    let mut mismatches = 0;
    for (key, row) in &expected.rows {
        if outcome.rows.get(key) != Some(&row.as_values()) {
            mismatches += 1;
            if mismatches <= 5 {
                eprintln!(
                    "{key}: plugin {:?}\n      oracle {row:?}",
                    outcome.rows.get(key)
                );
            }
        }
    }
    assert_eq!(mismatches, 0, "rows that differ from the oracle");
    println!(
        "session-stats: {} events, {} sessions, {} rejected; every row equals the oracle's",
        events.len(),
        expected.rows.len(),
        outcome.rejected.len()
    );
}

/// A fold row as the SQL oracle's `row_to_json` writes it.
fn as_json(key: &str, row: &SessionRow) -> Json {
    json!({
        "SESSION_ID": key,
        "USER_ID": row.user_id,
        "USER_SEGMENT": row.user_segment,
        "SESSION_STATE": row.session_state,
        "EVENTS_COUNT": row.events,
        "PAGES_VIEWED": row.pages,
        "PRODUCTS_VIEWED": row.products,
        "ITEMS_IN_CART": row.items_in_cart,
        "CART_VALUE": row.cart_value,
        "PURCHASE_COUNT": row.purchases,
    })
}

#[tokio::test]
async fn the_fold_and_the_sql_oracle_agree_on_the_messy_stream() -> Result<()> {
    let stack = Stack::from_env();
    let partitions = partitioned(&generate(SEED, EVENTS), PARTITIONS);
    let folded = fold(partitions.iter().flatten());
    // Every event, in the order the end-to-end tests give the SQL (a
    // session's events sort as written); the SQL finds the bad ones itself.
    let line = |e: &Event| i64::from(e.partition) * 1_000_000_000_000 + e.offset;
    let events: Vec<(i64, String)> = partitions
        .iter()
        .flatten()
        .map(|e| (line(e), e.value.clone()))
        .collect();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url)
        .await?;
    let raw = weir_tests::unique("oracle_raw");
    let bad = load_checked(&pool, &raw, &events).await?;
    let folded_bad: Vec<i64> = partitions
        .iter()
        .flatten()
        .filter(|e| folded.bad.contains(&(e.key.clone(), e.offset)))
        .map(line)
        .collect();
    if bad != folded_bad {
        let value = |at: &i64| &events[events.binary_search_by_key(at, |e| e.0).expect("a line")].1;
        let only = |left: &[i64], right: &[i64]| -> Vec<String> {
            left.iter()
                .filter(|l| !right.contains(l))
                .take(3)
                .map(|l| value(l).clone())
                .collect()
        };
        anyhow::bail!(
            "the SQL finds {} bad events, the fold {}; bad to SQL only: {:?}; to the fold only: {:?}",
            bad.len(),
            folded_bad.len(),
            only(&bad, &folded_bad),
            only(&folded_bad, &bad),
        );
    }
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT o.\"SESSION_ID\", row_to_json(o)::text FROM ({}) o",
        oracle_query(&raw)
    ))
    .fetch_all(&pool)
    .await?;
    sqlx::query(&format!("DROP TABLE {raw}"))
        .execute(&pool)
        .await?;
    ensure!(
        rows.len() == folded.rows.len(),
        "{} sessions in SQL, {} in the fold",
        rows.len(),
        folded.rows.len()
    );
    for (key, text) in &rows {
        let sql: Json = serde_json::from_str(text)?;
        let row = folded
            .rows
            .get(key)
            .with_context(|| format!("{key} only in SQL"))?;
        let fold = as_json(key, row);
        for (column, want) in fold.as_object().context("a row")? {
            let have = &sql[column];
            let same = match (want.as_f64(), have.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => want == have,
            };
            ensure!(same, "{key}.{column}: SQL {have}, fold {want}");
        }
    }
    println!(
        "{} events: the SQL oracle and the fold agree on the {} bad ones and all {} sessions",
        events.len(),
        bad.len(),
        rows.len()
    );
    Ok(())
}
