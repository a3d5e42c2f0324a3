//! `session-stats`: the reference system's `session_stats` aggregation, one
//! row per session (the record key), exactly as ksqlDB computed it:
//!
//! | column | rule |
//! |---|---|
//! | USER_ID, USER_SEGMENT, SESSION_STATE | newest non-null value, by offset |
//! | EVENTS_COUNT | every event |
//! | PAGES_VIEWED, PRODUCTS_VIEWED, PURCHASE_COUNT | events of that type |
//! | ITEMS_IN_CART, CART_VALUE | largest `cart_item_count` / `cart_total`, NULL if none |
//!
//! A value that is not a JSON object of the expected field types is rejected
//! (ksqlDB skipped such records too; weir sends them to the dead-letter topic).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::{
    Aggregator, Config, PluginError, Record, Value, export_aggregator, plugin_error,
};

/// The Avro schema of the output row. Record name and namespace are the ones
/// ksqlDB gave `session_stats_avro`, so existing readers resolve it unchanged.
pub const OUTPUT_SCHEMA: &str = r#"{
  "type": "record",
  "name": "KsqlDataSourceSchema",
  "namespace": "io.confluent.ksql.avro_schemas",
  "fields": [
    {"name": "USER_ID", "type": ["null", "string"], "default": null},
    {"name": "USER_SEGMENT", "type": ["null", "string"], "default": null},
    {"name": "SESSION_STATE", "type": ["null", "string"], "default": null},
    {"name": "EVENTS_COUNT", "type": ["null", "long"], "default": null},
    {"name": "PAGES_VIEWED", "type": ["null", "long"], "default": null},
    {"name": "PRODUCTS_VIEWED", "type": ["null", "long"], "default": null},
    {"name": "ITEMS_IN_CART", "type": ["null", "long"], "default": null},
    {"name": "CART_VALUE", "type": ["null", "double"], "default": null},
    {"name": "PURCHASE_COUNT", "type": ["null", "long"], "default": null}
  ]
}"#;

/// One session's running aggregate (state version 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionState {
    pub user_id: Option<String>,
    pub user_segment: Option<String>,
    pub session_state: Option<String>,
    pub events_count: i64,
    pub pages_viewed: i64,
    pub products_viewed: i64,
    pub items_in_cart: Option<i64>,
    pub cart_value: Option<f64>,
    pub purchase_count: i64,
}

/// The fields of an event the aggregate reads; everything else is skipped
/// unparsed. Strings borrow from the record unless they contain escapes.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_segment: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_state: Option<Cow<'a, str>>,
    #[serde(default)]
    cart_item_count: Option<i64>,
    #[serde(default)]
    cart_total: Option<f64>,
}

impl SessionState {
    /// Folds one event in (the pure rule, shared by the plugin and the native benchmark).
    pub fn fold(&mut self, event: &[u8]) -> Result<(), serde_json::Error> {
        let event: Event = serde_json::from_slice(event)?;
        latest_non_null(&mut self.user_id, event.user_id);
        latest_non_null(&mut self.user_segment, event.user_segment);
        latest_non_null(&mut self.session_state, event.session_state);
        self.events_count += 1;
        match event.event_type.as_deref() {
            Some("page_view") => self.pages_viewed += 1,
            Some("product_viewed") => self.products_viewed += 1,
            Some("purchase") => self.purchase_count += 1,
            _ => {}
        }
        if let Some(count) = event.cart_item_count {
            self.items_in_cart = Some(self.items_in_cart.map_or(count, |max| max.max(count)));
        }
        if let Some(total) = event.cart_total {
            self.cart_value = Some(self.cart_value.map_or(total, |max| max.max(total)));
        }
        Ok(())
    }

    /// The nine value columns, in the output schema's order.
    pub fn row(&self) -> Vec<Value> {
        let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::Text);
        vec![
            text(&self.user_id),
            text(&self.user_segment),
            text(&self.session_state),
            Value::Long(self.events_count),
            Value::Long(self.pages_viewed),
            Value::Long(self.products_viewed),
            self.items_in_cart.map_or(Value::Null, Value::Long),
            self.cart_value.map_or(Value::Null, Value::Double),
            Value::Long(self.purchase_count),
        ]
    }
}

fn latest_non_null(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if let Some(value) = value {
        match slot {
            Some(current) if current == value.as_ref() => {}
            _ => *slot = Some(value.into_owned()),
        }
    }
}

/// The plugin; it needs no configuration.
pub struct SessionStats;

impl Aggregator for SessionStats {
    type State = SessionState;
    const STATE_VERSION: u32 = 1;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn apply(&self, state: &mut SessionState, event: &Record<'_>) -> Result<(), PluginError> {
        // `fold` parses the whole event before it touches the state, so a
        // rejected event leaves the state as it was.
        state.fold(event.value).map_err(|error| {
            plugin_error(
                "malformed-json",
                format!("value is not a session event: {error}"),
            )
        })
    }

    fn row(&self, _key: &[u8], state: &SessionState) -> Vec<Value> {
        state.row()
    }
}

export_aggregator!(SessionStats);
