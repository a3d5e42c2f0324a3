//! The pure rule of the `session_stats` aggregate: one session's state and
//! how an event folds into it. Shared by the plugin, the native benchmark and
//! `session-stats-v2`, which compiles this very file into its own component
//! (see that crate for why it is not linked as a library).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::Value;

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
