//! `session-activity`: what the dashboards need beside the reference's
//! `session_stats` columns and cannot compute from them, one row per
//! session (the record key):
//!
//! | column | rule |
//! |---|---|
//! | LAST_EVENT_AT | `timestamp` of the newest event by offset that has one, as written (ISO 8601) |
//! | ORDERS | `purchase` events |
//! | REVENUE | the sum of the purchases' `total`, exact to the cent; NULL while no purchase carried one |
//! | ITEMS_PURCHASED | the sum of the `quantity` of every item of every purchase |
//!
//! The `sessions` table keeps the reference's ten columns (it reproduces the
//! reference field for field), so a dashboard that sorts sessions by recency
//! or shows the money actually paid reads this aggregate instead.
//!
//! It reads four fields (`activity::READS`), which the host finds in each
//! event. A value that is not a JSON object, or whose fields have the wrong
//! type (a `total` that is not a number, `items` that are not a list of
//! objects with integer quantities), is rejected with code `malformed-json`,
//! and a sum that could no longer be exact with `out-of-range`; the pipeline
//! sends such records to the dead-letter topic, as it does for
//! `session-stats`.

mod activity;

pub use activity::ActivityState;
use weir_plugin_sdk::{Aggregator, Config, PluginError, Record, Value, export_aggregator};

/// The Avro schema of the output row. REVENUE and LAST_EVENT_AT may be
/// missing (no purchase with a total yet, no event with a timestamp); the
/// counters always have a value.
pub const OUTPUT_SCHEMA: &str = r#"{
  "type": "record",
  "name": "SessionActivity",
  "fields": [
    {"name": "LAST_EVENT_AT", "type": ["null", "string"], "default": null},
    {"name": "ORDERS", "type": "long"},
    {"name": "REVENUE", "type": ["null", "double"], "default": null},
    {"name": "ITEMS_PURCHASED", "type": "long"}
  ]
}"#;

/// The plugin; it needs no configuration.
pub struct SessionActivity;

impl Aggregator for SessionActivity {
    type State = ActivityState;
    const STATE_VERSION: u32 = 1;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        activity::reads()
    }

    fn apply(&self, state: &mut ActivityState, event: &Record<'_>) -> Result<(), PluginError> {
        // `fold` reads every field and checks every sum before it touches
        // the state, so a rejected event leaves the state as it was.
        state.fold(&event.fields()?)
    }

    fn row(&self, _key: &[u8], state: &ActivityState) -> Vec<Value> {
        state.row()
    }
}

export_aggregator!(SessionActivity);

#[cfg(test)]
mod tests {
    use weir_plugin_sdk::bindings::aggregating::Group;
    use weir_plugin_sdk::{BatchBuilder, glue};

    use super::*;

    /// One session as the generator writes it (fields it does not read left
    /// out): two purchases, the second of two items.
    const EVENTS: [&str; 6] = [
        r#"{"event_type":"session_start","timestamp":"2026-01-01T00:00:00+00:00","user_segment":"vip"}"#,
        r#"{"event_type":"add_to_cart","timestamp":"2026-01-01T00:00:12.250000+00:00","cart_total":129.99}"#,
        r#"{"event_type":"purchase","timestamp":"2026-01-01T00:01:03+00:00","order_id":"ord_0000beef","items":[{"product_id":"prod_0007","product_name":"Lamp","price":129.99,"quantity":1}],"subtotal":129.99,"tax":10.4,"shipping":0.0,"total":140.39,"payment_method":"card"}"#,
        r#"{"event_type":"page_view","timestamp":"2026-01-01T00:02:00+00:00"}"#,
        r#"{"event_type":"purchase","timestamp":"2026-01-01T00:03:30.000500+00:00","items":[{"product_id":"prod_0001","price":0.1,"quantity":2},{"product_id":"prod_0002","price":0.2,"quantity":3}],"subtotal":0.8,"tax":0.06,"shipping":15.0,"total":15.86}"#,
        r#"{"event_type":"session_end","timestamp":"2026-01-01T00:04:00+00:00","purchase_completed":true}"#,
    ];

    fn folded(events: &[&str]) -> ActivityState {
        let mut state = ActivityState::default();
        for event in events {
            state.fold_json(event.as_bytes()).unwrap();
        }
        state
    }

    fn text(row: &[Value]) -> String {
        format!("{row:?}")
    }

    #[test]
    fn folds_a_session_into_the_four_columns() {
        // 140.39 + 15.86 = 156.25; 1 + 2 + 3 = 6 items.
        let expected = [
            Value::Text("2026-01-01T00:04:00+00:00".into()),
            Value::Long(2),
            Value::Double(156.25),
            Value::Long(6),
        ];
        assert_eq!(text(&folded(&EVENTS).row()), text(&expected));

        // Before the first purchase: no revenue at all, not a revenue of zero.
        let expected = [
            Value::Text("2026-01-01T00:00:12.250000+00:00".into()),
            Value::Long(0),
            Value::Null,
            Value::Long(0),
        ];
        assert_eq!(text(&folded(&EVENTS[..2]).row()), text(&expected));
    }

    #[test]
    fn revenue_is_the_exact_sum_in_cents() {
        // Ten orders of 0.10: 1.00 exactly, where adding the doubles gives
        // 0.9999999999999999.
        let state = folded(&[r#"{"event_type":"purchase","total":0.1}"#; 10]);
        assert_eq!(state.revenue_cents, Some(100));
        assert_eq!(state.orders, 10);
        assert_eq!(text(&state.row()[2..3]), text(&[Value::Double(1.0)]));
        // 0.10 and 0.20: 0.30, not 0.30000000000000004.
        let state = folded(&[
            r#"{"event_type":"purchase","total":0.1}"#,
            r#"{"event_type":"purchase","total":0.2}"#,
        ]);
        assert_eq!(text(&state.row()[2..3]), text(&[Value::Double(0.3)]));

        // Amounts a double holds only approximately come back to their cents.
        let state = folded(&[
            r#"{"event_type":"purchase","total":1234.57}"#,
            r#"{"event_type":"purchase","total":0.29}"#,
            r#"{"event_type":"purchase","total":1e2}"#,
        ]);
        assert_eq!(state.revenue_cents, Some(123_457 + 29 + 10_000));
        assert_eq!(text(&state.row()[2..3]), text(&[Value::Double(1334.86)]));
    }

    #[test]
    fn only_purchases_count_and_missing_fields_count_nothing() {
        let state = folded(&[
            // A total or items on another event type are not an order.
            r#"{"event_type":"cart_viewed","total":99.0,"items":[{"quantity":4}]}"#,
            // A purchase without total or items is an order of unknown value.
            r#"{"event_type":"purchase","timestamp":"2026-01-01T10:00:00+00:00"}"#,
            r#"{"event_type":"purchase","total":null,"items":null}"#,
            // Items without a quantity, or with a null one, count none.
            r#"{"event_type":"purchase","items":[{"product_id":"p"},{"quantity":null},{"quantity":5}]}"#,
            // An event without a timestamp keeps the last one.
            r#"{"event_type":"page_view","timestamp":null}"#,
            r#"{"event_type":"page_view"}"#,
        ]);
        let expected = [
            Value::Text("2026-01-01T10:00:00+00:00".into()),
            Value::Long(3),
            Value::Null,
            Value::Long(5),
        ];
        assert_eq!(text(&state.row()), text(&expected));
        assert_eq!(
            text(&ActivityState::default().row()[..2]),
            text(&[Value::Null, Value::Long(0)])
        );
    }

    #[test]
    fn bad_events_are_rejected_and_change_nothing() {
        let mut state = folded(&EVENTS);
        let before = state.clone();
        let bad: [(&str, &str, &str); 11] = [
            (
                r#"{"event_type":"page_view","timestamp":"yesterday"}"#,
                "malformed-json",
                "timestamp",
            ),
            (
                r#"{"event_type":"page_view","timestamp":"2026-01-01 10:00:00"}"#,
                "malformed-json",
                "timestamp",
            ),
            (
                r#"{"event_type":"purchase","total":"140.39"}"#,
                "malformed-json",
                "total",
            ),
            (
                r#"{"event_type":"purchase","total":1,"items":{"quantity":1}}"#,
                "malformed-json",
                "items",
            ),
            (
                r#"{"event_type":"purchase","total":1,"items":[1, 2]}"#,
                "malformed-json",
                "items",
            ),
            (
                r#"{"event_type":"purchase","total":1,"items":[{"quantity":"two"}]}"#,
                "malformed-json",
                "quantity",
            ),
            (
                r#"{"event_type":"purchase","total":1,"items":[{"quantity":1.5}]}"#,
                "malformed-json",
                "quantity",
            ),
            (
                r#"{"event_type":"purchase","timestamp":12}"#,
                "malformed-json",
                "timestamp",
            ),
            (r#"{"event_type":7}"#, "malformed-json", "event_type"),
            (
                r#"{"event_type":"purchase","total":1e300}"#,
                "out-of-range",
                "total",
            ),
            (
                r#"["event_type", "purchase"]"#,
                "malformed-json",
                "not an object",
            ),
        ];
        for (event, code, names) in bad {
            let error = state.fold_json(event.as_bytes()).unwrap_err();
            assert_eq!(error.code, code, "{event}: {}", error.message);
            assert!(error.message.contains(names), "{event}: {}", error.message);
            assert_eq!(state, before, "{event}");
        }

        // A purchase that would take the sum past exact doubles is refused
        // whole: neither its order nor its items count.
        let mut state = ActivityState {
            revenue_cents: Some((1 << 53) - 10),
            ..ActivityState::default()
        };
        let before = state.clone();
        let error = state
            .fold_json(br#"{"event_type":"purchase","total":0.11,"items":[{"quantity":1}]}"#)
            .unwrap_err();
        assert_eq!(error.code, "out-of-range");
        assert_eq!(state, before);
        state
            .fold_json(br#"{"event_type":"purchase","total":0.1}"#)
            .unwrap();
        assert_eq!(state.revenue_cents, Some(1 << 53));
    }

    #[test]
    fn the_plugin_rejects_bad_events_of_a_group_and_folds_the_others() {
        let events = [
            EVENTS[0],
            r#"{"event_type":"purchase","total":"free"}"#,
            EVENTS[2],
            "not json",
        ];
        let mut batch = BatchBuilder::default();
        for (offset, event) in events.iter().enumerate() {
            batch.push(Some(b"s1"), event.as_bytes(), offset as i64);
        }
        let plugin = SessionActivity;
        let (batch, fields) = batch.build_with_fields(&plugin.reads());
        let group = Group {
            key: b"s1".to_vec(),
            state: None,
            first: 0,
            count: events.len() as u32,
        };
        let outcome = glue::aggregate(&plugin, &batch, &fields, vec![group])
            .pop()
            .unwrap()
            .unwrap();
        let rejected: Vec<(u32, &str)> = outcome
            .rejected
            .iter()
            .map(|rejection| (rejection.index, rejection.error.code.as_str()))
            .collect();
        assert_eq!(rejected, [(1, "malformed-json"), (3, "malformed-json")]);
        let expected = [
            Value::Text("2026-01-01T00:01:03+00:00".into()),
            Value::Long(1),
            Value::Double(140.39),
            Value::Long(1),
        ];
        assert_eq!(text(&outcome.row.unwrap()), text(&expected));
        assert_eq!(
            String::from_utf8(outcome.state).unwrap(),
            r#"{"last_event_at":"2026-01-01T00:01:03+00:00","orders":1,"revenue_cents":14039,"items_purchased":1}"#
        );
    }

    #[test]
    fn state_round_trips_and_newer_state_is_read_as_it_is() {
        let state = folded(&EVENTS);
        let bytes = serde_json::to_vec(&state).unwrap();
        let decoded: ActivityState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(serde_json::to_vec(&decoded).unwrap(), bytes);

        // A later version's extra fields are ignored (the SDK's default migrate).
        let newer = br#"{"orders":2,"revenue_cents":500,"items_purchased":3,"refunds":1}"#.to_vec();
        let bytes = glue::migrate::<SessionActivity>(2, newer).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"last_event_at":null,"orders":2,"revenue_cents":500,"items_purchased":3}"#
        );
    }

    #[test]
    fn output_schema_matches_the_row() {
        let schema: serde_json::Value = serde_json::from_str(OUTPUT_SCHEMA).unwrap();
        let names: Vec<&str> = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|field| field["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["LAST_EVENT_AT", "ORDERS", "REVENUE", "ITEMS_PURCHASED"]
        );
        assert_eq!(folded(&EVENTS).row().len(), names.len());
    }
}
