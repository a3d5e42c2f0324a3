//! `session-stats` over a generated stream of 60 000 events, compared row by
//! row with an independent oracle: a plain fold over `serde_json::Value`
//! written from the reference's definition (semantics.md §3), sharing no code
//! with the plugin.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use common::load;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use weir::plugin::{
    Batch, BatchBuilder, Failure, Group, GroupResult, RecordRef, StageContext, Value, Worker,
};

const EVENTS: usize = 60_000;
const PARTITIONS: i32 = 4;
const BATCH: usize = 512;

const TYPES: [&str; 8] = [
    "session_start",
    "page_view",
    "search",
    "product_viewed",
    "add_to_cart",
    "cart_viewed",
    "purchase",
    "session_end",
];
const STATES: [&str; 4] = ["browsing", "shopping", "checkout", "completed"];
const SEGMENTS: [&str; 4] = ["new", "returning", "vip", "churned"];

/// A messy stream: interleaved sessions, nulls, missing fields, carts that
/// shrink, and about 1 % bad values (not JSON, or a field of the wrong type).
fn generate(seed: u64) -> Vec<(String, String)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<String> = Vec::new();
    let mut next_session = 0;
    let mut events = Vec::with_capacity(EVENTS);
    while events.len() < EVENTS {
        if live.len() < 40 || rng.random_bool(0.05) {
            live.push(format!("sess_{next_session:012x}"));
            next_session += 1;
        }
        let index = rng.random_range(0..live.len());
        let session = live[index].clone();
        if rng.random_bool(0.04) {
            live.swap_remove(index);
        }
        let roll: f64 = rng.random();
        let value = if roll < 0.005 {
            "{\"event_type\": \"page_view\", truncated".to_owned()
        } else if roll < 0.01 {
            json!({"event_type": "add_to_cart", "cart_total": "12.50", "session_id": session})
                .to_string()
        } else {
            let event_type = TYPES[rng.random_range(0..TYPES.len())];
            let mut event = json!({"event_id": format!("evt_{}", events.len()), "event_type": event_type,
                                   "session_id": session});
            if !rng.random_bool(0.05) {
                event["user_id"] = json!(format!("user_{:05}", rng.random_range(0..500)));
            } else if rng.random_bool(0.5) {
                event["user_id"] = Json::Null;
            }
            if event_type == "session_start" || rng.random_bool(0.02) {
                event["user_segment"] = json!(SEGMENTS[rng.random_range(0..4)]);
            }
            if !rng.random_bool(0.03) {
                event["session_state"] = json!(STATES[rng.random_range(0..4)]);
            }
            if matches!(event_type, "add_to_cart" | "cart_viewed") {
                event["cart_item_count"] = json!(rng.random_range(0..9));
                event["cart_total"] = json!(f64::from(rng.random_range(0..300_000)) / 100.0);
            }
            event.to_string()
        };
        events.push((session, value));
    }
    events
}

/// The reference's columns, computed the simplest way there is.
#[derive(Debug, Default, Clone, PartialEq)]
struct OracleRow {
    user_id: Option<String>,
    user_segment: Option<String>,
    session_state: Option<String>,
    events: i64,
    pages: i64,
    products: i64,
    items_in_cart: Option<i64>,
    cart_value: Option<f64>,
    purchases: i64,
}

impl OracleRow {
    fn as_values(&self) -> Vec<Value> {
        let text = |v: &Option<String>| v.clone().map(Value::Text).unwrap_or(Value::Null);
        vec![
            text(&self.user_id),
            text(&self.user_segment),
            text(&self.session_state),
            Value::Long(self.events),
            Value::Long(self.pages),
            Value::Long(self.products),
            self.items_in_cart.map(Value::Long).unwrap_or(Value::Null),
            self.cart_value.map(Value::Double).unwrap_or(Value::Null),
            Value::Long(self.purchases),
        ]
    }
}

/// Folds the events of each key in offset order. Returns the rows and the
/// (key, offset) of every event a correct plugin must reject.
fn oracle(stream: &[Event]) -> (HashMap<String, OracleRow>, BTreeSet<(String, i64)>) {
    let mut rows: HashMap<String, OracleRow> = HashMap::new();
    let mut bad = BTreeSet::new();
    for Event {
        key, value, offset, ..
    } in stream
    {
        let Ok(Json::Object(event)) = serde_json::from_str::<Json>(value) else {
            bad.insert((key.clone(), *offset));
            continue;
        };
        let text = |name: &str| match event.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        };
        let integer = |name: &str| match event.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or(()),
        };
        let number = |name: &str| match event.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or(()),
        };
        let (Ok(event_type), Ok(user), Ok(segment), Ok(state), Ok(items), Ok(total)) = (
            text("event_type"),
            text("user_id"),
            text("user_segment"),
            text("session_state"),
            integer("cart_item_count"),
            number("cart_total"),
        ) else {
            bad.insert((key.clone(), *offset));
            continue;
        };
        let row = rows.entry(key.clone()).or_default();
        row.user_id = user.or(row.user_id.take());
        row.user_segment = segment.or(row.user_segment.take());
        row.session_state = state.or(row.session_state.take());
        row.events += 1;
        row.pages += i64::from(event_type.as_deref() == Some("page_view"));
        row.products += i64::from(event_type.as_deref() == Some("product_viewed"));
        row.purchases += i64::from(event_type.as_deref() == Some("purchase"));
        row.items_in_cart = match (row.items_in_cart, items) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        row.cart_value = match (row.cart_value, total) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    (rows, bad)
}

/// One generated event where the source put it.
#[derive(Debug, Clone)]
struct Event {
    key: String,
    value: String,
    partition: i32,
    offset: i64,
}

/// Keys go to partitions by a stable hash; offsets count per partition.
fn partitioned(events: &[(String, String)]) -> Vec<Vec<Event>> {
    let mut partitions: Vec<Vec<Event>> = vec![Vec::new(); PARTITIONS as usize];
    for (key, value) in events {
        let hash = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let partition = (hash % PARTITIONS as u32) as i32;
        let list = &mut partitions[partition as usize];
        list.push(Event {
            key: key.clone(),
            value: value.clone(),
            partition,
            offset: list.len() as i64,
        });
    }
    partitions
}

#[test]
fn session_stats_matches_the_oracle_on_60k_events() {
    let events = generate(0x5e55_1015);
    let partitions = partitioned(&events);
    let mut worker = Worker::new(
        load("session-stats"),
        Arc::new(StageContext::new("oracle", "session-stats")),
    )
    .expect("starts");

    // The host's side of the contract: state per key, last row per key.
    let mut states: HashMap<String, Vec<u8>> = HashMap::new();
    let mut rows: HashMap<String, Vec<Value>> = HashMap::new();
    let mut rejected: BTreeSet<(String, i64)> = BTreeSet::new();
    for partition in &partitions {
        for chunk in partition.chunks(BATCH) {
            // The host's batching: records of one key together, offset order
            // kept within a key, one group per key.
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
            let batch = builder.build();
            for (group, result) in groups.iter().zip(aggregate(&mut worker, &batch, &groups)) {
                let key = String::from_utf8(group.key.clone()).expect("UTF-8 key");
                for (index, failure) in &result.failures {
                    assert!(
                        matches!(failure, Failure::Rejected(e) if e.code == "malformed-json"),
                        "{failure}"
                    );
                    rejected.insert((key.clone(), batch.records[*index].offset));
                }
                if let Some(state) = result.state {
                    states.insert(key.clone(), state);
                }
                if let Some(row) = result.row {
                    rows.insert(key, row);
                }
            }
        }
    }

    let (expected, expected_bad) = oracle(&partitions.concat());
    assert!(expected.len() > 1_000, "{} sessions", expected.len());
    assert!(
        expected_bad.len() > 300,
        "{} bad events",
        expected_bad.len()
    );
    assert_eq!(
        rejected, expected_bad,
        "exactly the bad events are rejected"
    );
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per session with a good event"
    );
    let mut mismatches = 0;
    for (key, oracle_row) in &expected {
        if rows.get(key) != Some(&oracle_row.as_values()) {
            mismatches += 1;
            if mismatches <= 5 {
                eprintln!(
                    "{key}: plugin {:?}\n      oracle {:?}",
                    rows.get(key),
                    oracle_row
                );
            }
        }
    }
    assert_eq!(mismatches, 0, "rows that differ from the oracle");
    println!(
        "session-stats: {} events, {} sessions, {} rejected; every row equals the oracle's",
        events.len(),
        expected.len(),
        rejected.len()
    );
}

// The stage alone, its fields found as a chain would find them.

fn aggregate(worker: &mut Worker, batch: &Batch, groups: &[Group]) -> Vec<GroupResult> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.aggregate(batch, &fields, groups)
}
