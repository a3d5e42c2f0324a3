//! A stream of e-commerce events shaped like the reference generator's
//! (semantics.md §1): interleaved live sessions, every field of every event
//! type, realistic sizes (about 500 bytes each).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// One event: its session (the record key) and its JSON value.
pub struct Event {
    pub key: String,
    pub value: String,
}

const PRODUCTS: [(&str, &str, f64); 6] = [
    ("prod_0001", "Noise-cancelling headphones", 249.0),
    ("prod_0002", "Trail running shoes", 129.5),
    ("prod_0003", "Espresso machine", 489.99),
    ("prod_0004", "Yoga mat", 35.0),
    ("prod_0005", "4K monitor", 699.0),
    ("prod_0006", "Linen shirt", 59.9),
];

/// `count` events from `live` interleaved sessions, reproducible from `seed`.
pub fn generate(count: usize, live: usize, seed: u64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sessions: Vec<(String, String, usize)> = Vec::new();
    let mut next = 0u64;
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        while sessions.len() < live {
            sessions.push((
                format!("sess_{:012x}", next),
                format!("user_{:05}", rng.random_range(0..5000)),
                0,
            ));
            next += 1;
        }
        let index = rng.random_range(0..sessions.len());
        let (session, user, step) = sessions[index].clone();
        let event_type = match step {
            0 => "session_start",
            _ => match rng.random_range(0..100) {
                0..40 => "product_viewed",
                40..55 => "page_view",
                55..62 => "search",
                62..75 => "add_to_cart",
                75..85 => "cart_viewed",
                85..88 => "purchase",
                _ => "session_end",
            },
        };
        let mut event = json!({
            "event_id": format!("evt_{:012x}", events.len()),
            "event_type": event_type,
            "timestamp": format!("2026-11-25T10:{:02}:{:02}.{:06}+00:00", events.len() / 60 % 60, events.len() % 60, events.len() % 1_000_000),
            "session_id": session,
            "user_id": user,
            "session_state": if step == 0 { "browsing" } else { "shopping" },
            "device": {"type": "mobile", "os": "Android", "browser": "Chrome"},
            "geo": {"country": "DE", "city": "Berlin", "timezone": "Europe/Berlin", "lat": 52.52, "lon": 13.405},
        });
        let (product, name, price) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
        match event_type {
            "session_start" => {
                event["user_segment"] =
                    json!(["new", "returning", "vip", "churned"][rng.random_range(0..4)]);
                event["will_purchase"] = json!(rng.random_bool(0.2));
            }
            "page_view" => {
                event["page_type"] = json!("category");
                event["pages_in_session"] = json!(step);
            }
            "search" => {
                event["search_query"] = json!("running shoes");
                event["results_count"] = json!(rng.random_range(0..200));
            }
            "product_viewed" => {
                event["product_id"] = json!(product);
                event["product_name"] = json!(name);
                event["product_category"] = json!("sports");
                event["price"] = json!(price);
                event["in_stock"] = json!(true);
                event["products_viewed_in_session"] = json!(step);
            }
            "add_to_cart" | "cart_viewed" => {
                event["product_id"] = json!(product);
                event["price"] = json!(price);
                event["quantity"] = json!(1);
                event["cart_total"] = json!(price * f64::from(rng.random_range(1..4)));
                event["cart_item_count"] = json!(rng.random_range(1..4));
            }
            "purchase" => {
                event["order_id"] = json!(format!("ord_{:08x}", events.len()));
                event["subtotal"] = json!(price);
                event["total"] = json!(price * 1.08);
                event["payment_method"] = json!("credit_card");
            }
            _ => {
                event["duration_seconds"] = json!(rng.random_range(30..900));
                event["pages_viewed"] = json!(step);
            }
        }
        if event_type == "session_end" {
            sessions.swap_remove(index);
        } else {
            sessions[index].2 += 1;
        }
        events.push(Event {
            key: session,
            value: event.to_string(),
        });
    }
    events
}
