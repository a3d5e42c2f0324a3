//! The pure rule of the `session_stats` aggregate: one session's state and
//! how an event folds into it. Shared by the plugin, the native benchmark and
//! `session-stats-v2`, which compiles this very file into its own component
//! (see that crate for why it is not linked as a library).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::batch::with_record;
use weir_plugin_sdk::{Field, Fields, PluginError, Value, plugin_error};

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

/// The fields of an event the aggregate reads (the plugin's `reads`); the
/// host finds them, so nothing else of the event is parsed.
pub const READS: [&str; 6] = [
    "event_type",
    "user_id",
    "user_segment",
    "session_state",
    "cart_item_count",
    "cart_total",
];

/// [`READS`] as the plugin declares them.
pub fn reads() -> Vec<String> {
    READS.iter().map(|name| (*name).to_owned()).collect()
}

/// One event's fields, read (and type-checked) before the state changes.
struct Event<'a> {
    event_type: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    user_segment: Option<Cow<'a, str>>,
    session_state: Option<Cow<'a, str>>,
    cart_item_count: Option<i64>,
    cart_total: Option<f64>,
}

impl<'a> Event<'a> {
    fn read(fields: &Fields<'a>) -> Result<Self, PluginError> {
        fn field<'a, T: Deserialize<'a>>(
            fields: &Fields<'a>,
            index: usize,
        ) -> Result<Option<T>, PluginError> {
            let Some(value) = fields.get(index).and_then(Field::non_null) else {
                return Ok(None);
            };
            value.parse().map(Some).map_err(|error| {
                plugin_error(
                    "malformed-json",
                    format!("field `{}`: {}", READS[index], error.message),
                )
            })
        }
        Ok(Self {
            event_type: field(fields, 0)?,
            user_id: field(fields, 1)?,
            user_segment: field(fields, 2)?,
            session_state: field(fields, 3)?,
            cart_item_count: field(fields, 4)?,
            cart_total: field(fields, 5)?,
        })
    }
}

impl SessionState {
    /// Folds one event in (the pure rule, shared by the plugin and the
    /// native benchmark). Every field is read first: an event with a field
    /// of the wrong type is rejected and leaves the state as it was.
    pub fn fold(&mut self, fields: &Fields<'_>) -> Result<(), PluginError> {
        let event = Event::read(fields)?;
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

    /// Folds one event given as JSON text, its fields found as the host
    /// would find them (tests, natively).
    pub fn fold_json(&mut self, event: &[u8]) -> Result<(), PluginError> {
        with_record(event, &reads(), |record| self.fold(&record.fields()?))
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
