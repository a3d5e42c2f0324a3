//! A broken "version 3" of `session-stats`: it loads, declares state version
//! 3 and `session-stats-v2`'s output schema, takes over version 1 and 2
//! state, then panics (traps) on every event it is given. Hot-swap tests
//! swap it into a running pipeline to check that the host rolls back to the
//! previous version by itself, with every key's state intact.

use weir_plugin_sdk::{
    Aggregator, Config, PluginError, Record, Value, decode_state, export_aggregator,
};

/// `session-stats-v2`'s output schema, word for word (a test checks it).
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
    {"name": "PURCHASE_COUNT", "type": ["null", "long"], "default": null},
    {"name": "VIEWS_COUNT", "type": ["null", "long"], "default": null},
    {"name": "CONVERTED", "type": ["null", "boolean"], "default": null},
    {"name": "CART_ABANDONED", "type": ["null", "boolean"], "default": null},
    {"name": "AVERAGE_ITEM_VALUE", "type": ["null", "double"], "default": null}
  ]
}"#;

/// The plugin; it needs no configuration.
pub struct TrappingAggregatorV3;

impl Aggregator for TrappingAggregatorV3 {
    /// The JSON state of the earlier versions, never folded into.
    // An object, so the versions before it read its fresh state (as defaults).
    type State = serde_json::Map<String, serde_json::Value>;
    const STATE_VERSION: u32 = 3;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn apply(&self, _state: &mut Self::State, event: &Record<'_>) -> Result<(), PluginError> {
        panic!(
            "trapping-aggregator-v3 is broken on purpose (event at offset {})",
            event.offset
        );
    }

    fn row(&self, _key: &[u8], _state: &Self::State) -> Vec<Value> {
        // Only a key without events gets here (the host's checks ask for one).
        vec![Value::Null; 13]
    }

    /// Earlier versions' state is taken over (version 1's with
    /// `views_count` backfilled, as `session-stats-v2` does), so that a swap
    /// gets as far as the first batch, where it traps, and whatever state it
    /// hands back stays readable by version 2.
    fn migrate(from_version: u32, state: &[u8]) -> Result<Self::State, PluginError> {
        let mut state: Self::State = decode_state(state)?;
        if from_version == 1 {
            let fields = &mut state;
            let count = |name: &str| fields.get(name).and_then(|v| v.as_i64()).unwrap_or(0);
            let views_count = count("pages_viewed") + count("products_viewed");
            fields.insert("views_count".to_owned(), views_count.into());
        }
        Ok(state)
    }
}

export_aggregator!(TrappingAggregatorV3);

#[cfg(test)]
mod tests {
    use weir_plugin_sdk::bindings::aggregating::Group;
    use weir_plugin_sdk::{BatchBuilder, glue};

    use super::*;

    #[test]
    fn output_schema_is_session_stats_v2s() {
        assert_eq!(OUTPUT_SCHEMA, session_stats_v2::OUTPUT_SCHEMA);
    }

    #[test]
    fn takes_over_earlier_state() {
        let v2 = br#"{"events_count":3,"pages_viewed":1,"products_viewed":1,"views_count":2}"#;
        let migrated = glue::migrate::<TrappingAggregatorV3>(2, v2.to_vec()).unwrap();
        assert_eq!(migrated, v2);
        let v1 = br#"{"events_count":3,"pages_viewed":1,"products_viewed":1}"#;
        let migrated = glue::migrate::<TrappingAggregatorV3>(1, v1.to_vec()).unwrap();
        assert_eq!(migrated, v2);
    }

    #[test]
    #[should_panic(expected = "broken on purpose")]
    fn panics_on_every_event() {
        let mut batch = BatchBuilder::default();
        batch.push(Some(b"s1"), br#"{"event_type":"page_view"}"#, 0);
        let group = Group {
            key: b"s1".to_vec(),
            state: None,
            first: 0,
            count: 1,
        };
        let (batch, fields) = batch.build_with_fields(&[]);
        glue::aggregate(&TrappingAggregatorV3, &batch, &fields, vec![group]);
    }
}
