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
//! It reads six fields (`session::READS`), which the host finds in each event.
//! A value that is not a JSON object of the expected field types is rejected
//! (ksqlDB skipped such records too; weir sends them to the dead-letter topic).

mod session;

pub use session::SessionState;
use weir_plugin_sdk::{Aggregator, Config, PluginError, Record, Value, export_aggregator};

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

/// The plugin; it needs no configuration.
pub struct SessionStats;

impl Aggregator for SessionStats {
    type State = SessionState;
    const STATE_VERSION: u32 = 1;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        session::reads()
    }

    fn apply(&self, state: &mut SessionState, event: &Record<'_>) -> Result<(), PluginError> {
        // `fold` reads every field before it touches the state, so a
        // rejected event leaves the state as it was.
        state.fold(&event.fields()?)
    }

    fn row(&self, _key: &[u8], state: &SessionState) -> Vec<Value> {
        state.row()
    }
}

export_aggregator!(SessionStats);
