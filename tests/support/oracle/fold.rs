//! `session_stats` as a plain fold over JSON values, the simplest way
//! there is: each key's events in offset order, "newest" meaning the latest
//! non-null value.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value as Json;
use weir::plugin::Value;

/// One event where the source put it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The record key (the session).
    pub key: String,
    /// The value as written (not always JSON).
    pub value: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

/// The reference's columns of one session (all but `SESSION_ID`, the key).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SessionRow {
    /// `USER_ID`: the newest non-null `user_id`.
    pub user_id: Option<String>,
    /// `USER_SEGMENT`: the newest non-null `user_segment`.
    pub user_segment: Option<String>,
    /// `SESSION_STATE`: the newest non-null `session_state`.
    pub session_state: Option<String>,
    /// `EVENTS_COUNT`.
    pub events: i64,
    /// `PAGES_VIEWED`: `page_view` events.
    pub pages: i64,
    /// `PRODUCTS_VIEWED`: `product_viewed` events.
    pub products: i64,
    /// `ITEMS_IN_CART`: the largest `cart_item_count`.
    pub items_in_cart: Option<i64>,
    /// `CART_VALUE`: the largest `cart_total`.
    pub cart_value: Option<f64>,
    /// `PURCHASE_COUNT`: `purchase` events.
    pub purchases: i64,
}

impl SessionRow {
    /// The row as the aggregator writes it (its columns after the key).
    pub fn as_values(&self) -> Vec<Value> {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        vec![
            text(&self.user_id),
            text(&self.user_segment),
            text(&self.session_state),
            Value::Long(self.events),
            Value::Long(self.pages),
            Value::Long(self.products),
            self.items_in_cart.map_or(Value::Null, Value::Long),
            self.cart_value.map_or(Value::Null, Value::Double),
            Value::Long(self.purchases),
        ]
    }
}

/// What the fold makes of a stream.
#[derive(Debug, Default)]
pub struct Folded {
    /// One row per session with at least one good event.
    pub rows: HashMap<String, SessionRow>,
    /// (key, offset) of every event a correct aggregator must reject: not a
    /// JSON object, or a field of the wrong type.
    pub bad: BTreeSet<(String, i64)>,
}

/// Folds `events`, each key's in offset order.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Folded {
    let mut folded = Folded::default();
    for Event {
        key, value, offset, ..
    } in events
    {
        let Ok(Json::Object(event)) = serde_json::from_str::<Json>(value) else {
            folded.bad.insert((key.clone(), *offset));
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
            folded.bad.insert((key.clone(), *offset));
            continue;
        };
        let row = folded.rows.entry(key.clone()).or_default();
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
    folded
}
