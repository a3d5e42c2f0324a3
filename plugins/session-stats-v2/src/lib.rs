//! `session-stats-v2`: the second version of `session-stats`, and the example
//! of evolving an aggregation that a running pipeline can swap in and back
//! out (v1 -> v2 -> v1 ...) while keeping every session's state. One row per
//! session (the record key):
//!
//! | column | rule |
//! |---|---|
//! | USER_ID ... PURCHASE_COUNT | the nine columns of `session-stats`, same names, order and rules |
//! | VIEWS_COUNT | `page_view` and `product_viewed` events (PAGES_VIEWED + PRODUCTS_VIEWED) |
//! | CONVERTED | PURCHASE_COUNT > 0 |
//! | CART_ABANDONED | ITEMS_IN_CART > 0 and PURCHASE_COUNT = 0 (false while ITEMS_IN_CART is NULL) |
//! | AVERAGE_ITEM_VALUE | CART_VALUE / ITEMS_IN_CART; NULL when either is NULL or ITEMS_IN_CART is 0 |
//!
//! Every new column is a function of version 1's fields, so a row is the same
//! whichever version folded which of the session's events. The new columns
//! are nullable with a `null` default, so a schema registry accepts the
//! output schema as a compatible evolution of version 1's.
//!
//! # State, version 2
//!
//! Version 1's state with its fields under the same JSON names (the v1 struct
//! is `#[serde(flatten)]`ed), plus `views_count`, counted event by event:
//!
//! ```json
//! {"user_id":"u1", ..., "purchase_count":0, "views_count":3}
//! ```
//!
//! - **Upgrade** (v1 state reaches this plugin): [`SessionStatsV2::migrate`]
//!   reads it and backfills `views_count = pages_viewed + products_viewed`.
//! - **Rollback** (this state reaches `session-stats`): the JSON is a superset
//!   of version 1's, so version 1 reads it as it is, ignoring `views_count`
//!   (the SDK's forward-compatibility rule); what it writes back is version 1
//!   state, which the next upgrade backfills again.
//!
//! `#[serde(flatten)]` decodes through serde's buffered map, a little slower
//! than a struct that repeats version 1's fields (about 0.7 µs more per key
//! and batch in WebAssembly); this example keeps the form that cannot drift
//! from version 1.
//!
//! # Sharing version 1's rule
//!
//! The state and fold rule are `session-stats`' own `src/session.rs`,
//! compiled into this crate rather than linked from the `session-stats`
//! library: a plugin library carries its component exports (the
//! `weir:plugin/aggregating` functions), so linking it into another component
//! defines them twice, and a Cargo feature to leave them out would be unified
//! with `session-stats`' own build in the workspace.

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::{
    Aggregator, Config, Fields, PluginError, Record, Value, decode_state, default_migrate,
    export_aggregator,
};

#[path = "../../session-stats/src/session.rs"]
mod v1;

pub use v1::SessionState;

/// The Avro schema of the output row: version 1's nine fields (same names,
/// order, record name and namespace), then the new ones, each nullable with
/// a `null` default.
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

/// One session's running aggregate (state version 2): version 1's state,
/// flattened so that its fields keep their JSON names, and `views_count`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionStateV2 {
    /// Version 1's state, folded by version 1's rule.
    #[serde(flatten)]
    pub v1: SessionState,
    /// `page_view` and `product_viewed` events; always equal to
    /// `pages_viewed + products_viewed`.
    pub views_count: i64,
}

impl SessionStateV2 {
    /// Version 1's state with `views_count` backfilled from its counters.
    pub fn from_v1(v1: SessionState) -> Self {
        let views_count = v1.pages_viewed + v1.products_viewed;
        Self { v1, views_count }
    }

    /// Folds one event in: version 1's rule, then the views it counted.
    pub fn fold(&mut self, fields: &Fields<'_>) -> Result<(), PluginError> {
        let views_before = self.v1.pages_viewed + self.v1.products_viewed;
        self.v1.fold(fields)?;
        self.views_count += self.v1.pages_viewed + self.v1.products_viewed - views_before;
        Ok(())
    }

    /// Folds one event given as JSON text (tests, natively).
    pub fn fold_json(&mut self, event: &[u8]) -> Result<(), PluginError> {
        let views_before = self.v1.pages_viewed + self.v1.products_viewed;
        self.v1.fold_json(event)?;
        self.views_count += self.v1.pages_viewed + self.v1.products_viewed - views_before;
        Ok(())
    }

    /// The thirteen value columns, in the output schema's order.
    pub fn row(&self) -> Vec<Value> {
        let v1 = &self.v1;
        let average_item_value = match (v1.cart_value, v1.items_in_cart) {
            (Some(value), Some(items)) if items != 0 => Value::Double(value / items as f64),
            _ => Value::Null,
        };
        let mut row = v1.row();
        row.extend([
            Value::Long(self.views_count),
            Value::Boolean(v1.purchase_count > 0),
            Value::Boolean(
                v1.items_in_cart.is_some_and(|items| items > 0) && v1.purchase_count == 0,
            ),
            average_item_value,
        ]);
        row
    }
}

/// The plugin; it needs no configuration.
pub struct SessionStatsV2;

impl Aggregator for SessionStatsV2 {
    type State = SessionStateV2;
    const STATE_VERSION: u32 = 2;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        v1::reads()
    }

    fn apply(&self, state: &mut SessionStateV2, event: &Record<'_>) -> Result<(), PluginError> {
        // `fold` reads every field before it touches the state, so a
        // rejected event leaves the state as it was.
        state.fold(&event.fields()?)
    }

    fn row(&self, _key: &[u8], state: &SessionStateV2) -> Vec<Value> {
        state.row()
    }

    /// Version 1 state gets its `views_count` backfilled; a newer version's
    /// state is read as it is (the SDK's default).
    fn migrate(from_version: u32, state: &[u8]) -> Result<SessionStateV2, PluginError> {
        match from_version {
            1 => Ok(SessionStateV2::from_v1(decode_state(state)?)),
            _ => default_migrate::<Self>(from_version, state),
        }
    }
}

export_aggregator!(SessionStatsV2);

#[cfg(test)]
mod tests {
    use weir_plugin_sdk::bindings::aggregating::Group;
    use weir_plugin_sdk::{BatchBuilder, glue};

    use super::*;

    const EVENTS: [&str; 7] = [
        r#"{"event_type":"page_view","user_id":"u1","user_segment":"new","session_state":"active"}"#,
        r#"{"event_type":"product_viewed","cart_item_count":null}"#,
        r#"{"event_type":"add_to_cart","cart_item_count":2,"cart_total":30.0}"#,
        r#"{"event_type":"product_viewed","user_segment":"returning"}"#,
        r#"{"event_type":"add_to_cart","cart_item_count":3,"cart_total":45.0}"#,
        r#"{"event_type":"page_view","session_state":"checkout"}"#,
        r#"{"event_type":"purchase","cart_item_count":3,"cart_total":45.0}"#,
    ];

    fn folded(events: &[&str]) -> SessionStateV2 {
        let mut state = SessionStateV2::default();
        for event in events {
            state.fold_json(event.as_bytes()).unwrap();
        }
        state
    }

    fn text(row: &[Value]) -> String {
        format!("{row:?}")
    }

    #[test]
    fn folds_events_into_the_thirteen_columns() {
        let state = folded(&EVENTS[..5]);
        let expected = [
            Value::Text("u1".into()),
            Value::Text("returning".into()),
            Value::Text("active".into()),
            Value::Long(5),
            Value::Long(1),
            Value::Long(2),
            Value::Long(3),
            Value::Double(45.0),
            Value::Long(0),
            Value::Long(3),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::Double(15.0),
        ];
        assert_eq!(text(&state.row()), text(&expected));

        let row = folded(&EVENTS).row();
        assert_eq!(
            text(&row[8..]),
            text(&[
                Value::Long(1),
                Value::Long(4),
                Value::Boolean(true),
                Value::Boolean(false),
                Value::Double(15.0),
            ])
        );
    }

    #[test]
    fn views_count_is_the_sum_of_page_and_product_views_after_every_event() {
        let mut state = SessionStateV2::default();
        for event in EVENTS {
            state.fold_json(event.as_bytes()).unwrap();
            assert_eq!(
                state.views_count,
                state.v1.pages_viewed + state.v1.products_viewed
            );
        }
        // A rejected event changes nothing.
        let before = state.clone();
        assert!(
            state
                .fold_json(br#"{"event_type":"page_view","cart_total":"x"}"#)
                .is_err()
        );
        assert!(state.fold_json(b"[1, 2]").is_err());
        assert_eq!(state, before);
    }

    #[test]
    fn new_columns_without_a_cart() {
        let row = folded(&[EVENTS[0]]).row();
        assert_eq!(
            text(&row[9..]),
            text(&[
                Value::Long(1),
                Value::Boolean(false),
                Value::Boolean(false),
                Value::Null,
            ])
        );
        // An empty cart has no average item value and is not abandoned.
        let row = folded(&[r#"{"cart_item_count":0,"cart_total":0.0}"#]).row();
        assert_eq!(
            text(&row[11..]),
            text(&[Value::Boolean(false), Value::Null])
        );
        // Items without a total: no average either.
        let row = folded(&[r#"{"cart_item_count":2}"#]).row();
        assert_eq!(text(&row[11..]), text(&[Value::Boolean(true), Value::Null]));
    }

    #[test]
    fn migrating_version_1_state_backfills_views_count() {
        let mut v1 = session_stats::SessionState::default();
        for event in EVENTS {
            v1.fold_json(event.as_bytes()).unwrap();
        }
        let v1_json = serde_json::to_vec(&v1).unwrap();

        let migrated = SessionStatsV2::migrate(1, &v1_json).unwrap();
        assert_eq!(migrated.views_count, 4);
        assert_eq!(migrated, folded(&EVENTS));

        // Through the component's export: the bytes are version 1's plus the backfill.
        let bytes = glue::migrate::<SessionStatsV2>(1, v1_json.clone()).unwrap();
        let mut expected: serde_json::Value = serde_json::from_slice(&v1_json).unwrap();
        expected["views_count"] = 4.into();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            expected
        );

        let error = SessionStatsV2::migrate(1, b"{\"pages_viewed\":\"many\"}").unwrap_err();
        assert_eq!(error.code, "bad-state");
        let error = SessionStatsV2::migrate(0, b"{}").unwrap_err();
        assert_eq!(error.code, "unsupported-state-version");
    }

    #[test]
    fn version_1_reads_version_2_state() {
        let v2 = folded(&EVENTS);
        let v2_json = serde_json::to_vec(&v2).unwrap();
        // What the host does on a rollback: v1's `migrate` export, the SDK's default.
        let bytes = glue::migrate::<session_stats::SessionStats>(2, v2_json).unwrap();
        let read: session_stats::SessionState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            serde_json::to_vec(&read).unwrap(),
            serde_json::to_vec(&v2.v1).unwrap()
        );
        assert!(!String::from_utf8(bytes).unwrap().contains("views_count"));
    }

    #[test]
    fn state_json_is_version_1_json_plus_views_count() {
        let state = folded(&EVENTS);
        let json: serde_json::Value = serde_json::to_value(&state).unwrap();
        let v1_json: serde_json::Value = serde_json::to_value(&state.v1).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut v1_keys: Vec<&str> = v1_json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        v1_keys.push("views_count");
        assert_eq!(keys, v1_keys);
        for (key, value) in v1_json.as_object().unwrap() {
            assert_eq!(&json[key], value, "{key}");
        }

        // Round trips: value -> bytes -> value, and bytes -> value -> the same bytes
        // (the SDK sends a row only when the bytes change).
        let bytes = serde_json::to_vec(&state).unwrap();
        let decoded: SessionStateV2 = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(serde_json::to_vec(&decoded).unwrap(), bytes);
        let fresh = SessionStateV2::default();
        let bytes = serde_json::to_vec(&fresh).unwrap();
        assert_eq!(
            serde_json::from_slice::<SessionStateV2>(&bytes).unwrap(),
            fresh
        );
    }

    /// One key's state as the host keeps it: bytes and the version that wrote them.
    #[derive(Default)]
    struct Stored {
        version: u32,
        bytes: Option<Vec<u8>>,
    }

    /// What the host does for one batch of a key's events: migrate the state
    /// if another version wrote it, then aggregate. Returns the row.
    fn aggregate<P: Aggregator>(plugin: &P, stored: &mut Stored, events: &[&str]) -> Vec<Value> {
        if let Some(bytes) = stored.bytes.take() {
            stored.bytes = Some(if stored.version == P::STATE_VERSION {
                bytes
            } else {
                glue::migrate::<P>(stored.version, bytes).unwrap()
            });
        }
        let mut batch = BatchBuilder::default();
        for (offset, event) in events.iter().enumerate() {
            batch.push(Some(b"s1"), event.as_bytes(), offset as i64);
        }
        let group = Group {
            key: b"s1".to_vec(),
            state: stored.bytes.take(),
            first: 0,
            count: events.len() as u32,
        };
        let (batch, fields) = batch.build_with_fields(&plugin.reads());
        let outcome = glue::aggregate(plugin, &batch, &fields, vec![group])
            .pop()
            .unwrap()
            .unwrap();
        assert!(outcome.rejected.is_empty());
        stored.version = P::STATE_VERSION;
        stored.bytes = Some(outcome.state);
        outcome.row.unwrap()
    }

    #[test]
    fn rows_are_exact_across_swaps_both_ways() {
        let only_v1 = aggregate(
            &session_stats::SessionStats,
            &mut Stored::default(),
            &EVENTS,
        );
        let only_v2 = aggregate(&SessionStatsV2, &mut Stored::default(), &EVENTS);
        assert_eq!(text(&only_v2[..9]), text(&only_v1));

        // v2, v1, v2, v1, v2: each version folds some of the events.
        let mut stored = Stored::default();
        aggregate(&SessionStatsV2, &mut stored, &EVENTS[..2]);
        aggregate(&session_stats::SessionStats, &mut stored, &EVENTS[2..3]);
        aggregate(&SessionStatsV2, &mut stored, &EVENTS[3..4]);
        let row = aggregate(&session_stats::SessionStats, &mut stored, &EVENTS[4..6]);
        assert_eq!(
            text(&row),
            text(
                &aggregate(
                    &session_stats::SessionStats,
                    &mut Stored::default(),
                    &EVENTS[..6]
                )[..9]
            )
        );
        let row = aggregate(&SessionStatsV2, &mut stored, &EVENTS[6..]);
        assert_eq!(text(&row), text(&only_v2));
    }

    #[test]
    fn output_schema_extends_version_1_with_nullable_fields() {
        let v1: serde_json::Value = serde_json::from_str(session_stats::OUTPUT_SCHEMA).unwrap();
        let v2: serde_json::Value = serde_json::from_str(OUTPUT_SCHEMA).unwrap();
        assert_eq!(v2["name"], v1["name"]);
        assert_eq!(v2["namespace"], v1["namespace"]);
        let v1_fields = v1["fields"].as_array().unwrap();
        let v2_fields = v2["fields"].as_array().unwrap();
        assert_eq!(v2_fields[..v1_fields.len()], v1_fields[..]);
        let added: Vec<&str> = v2_fields[v1_fields.len()..]
            .iter()
            .map(|field| {
                assert_eq!(field["type"][0], "null", "{field}");
                assert_eq!(field["default"], serde_json::Value::Null, "{field}");
                assert!(
                    field.as_object().unwrap().contains_key("default"),
                    "{field}"
                );
                field["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            added,
            [
                "VIEWS_COUNT",
                "CONVERTED",
                "CART_ABANDONED",
                "AVERAGE_ITEM_VALUE"
            ]
        );
        assert_eq!(folded(&EVENTS).row().len(), v2_fields.len());
    }
}
