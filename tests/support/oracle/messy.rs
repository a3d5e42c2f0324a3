//! A messy stream of e-commerce events for the oracle tests: interleaved
//! sessions, nulls, missing fields, carts that shrink, and about 1 % bad
//! values (not JSON, or a field of the wrong type). Drawn from a seed, so a
//! failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use super::fold::Event;

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

/// `count` events of the stream of `seed`, as (session, value).
pub fn generate(seed: u64, count: usize) -> Vec<(String, String)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<String> = Vec::new();
    let mut next_session = 0;
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
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
            event(&mut rng, &session, events.len())
        };
        events.push((session, value));
    }
    events
}

/// One good event of `session`.
fn event(rng: &mut StdRng, session: &str, number: usize) -> String {
    let event_type = TYPES[rng.random_range(0..TYPES.len())];
    let mut event = json!({"event_id": format!("evt_{number}"), "event_type": event_type,
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
}

/// `events` spread over `partitions` by a stable hash of the key, offsets
/// counting per partition (a session's events stay in order).
pub fn partitioned(events: &[(String, String)], partitions: i32) -> Vec<Vec<Event>> {
    let mut spread: Vec<Vec<Event>> = vec![Vec::new(); partitions as usize];
    for (key, value) in events {
        let hash = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let partition = (hash % partitions as u32) as i32;
        let list = &mut spread[partition as usize];
        list.push(Event {
            key: key.clone(),
            value: value.clone(),
            partition,
            offset: list.len() as i64,
        });
    }
    spread
}
