//! `category-sales`: what was sold per product category, from the item
//! records `purchase-items` makes, keyed by their `product_category` (the
//! stage's `key_field`: weir re-keys the records through Kafka, whatever
//! the source topic is keyed by).
//!
//! | column | rule |
//! |---|---|
//! | UNITS_SOLD | the sum of the items' `quantity` |
//! | REVENUE | the sum of `price` × `quantity`, exact to the cent |
//! | ORDER_LINES | items counted |
//!
//! An item without a numeric `price` and an integer `quantity`, or one
//! that would take a sum past what a double holds exactly, is rejected.

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::{
    Aggregator, Config, PluginError, Record, Value, export_aggregator, plugin_error,
};

/// The output row's Avro schema.
pub const OUTPUT_SCHEMA: &str = r#"{
  "type": "record",
  "name": "CategorySales",
  "fields": [
    {"name": "UNITS_SOLD", "type": "long"},
    {"name": "REVENUE", "type": "double"},
    {"name": "ORDER_LINES", "type": "long"}
  ]
}"#;

/// Sums stay below 2^53 cents: every whole number up to there is a
/// double, so REVENUE is the double nearest the exact decimal sum.
const MAX_CENTS: i64 = 1 << 53;

/// One category's running sums (state version 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sales {
    /// Units sold.
    pub units: i64,
    /// Revenue in whole cents.
    pub revenue_cents: i64,
    /// Items counted.
    pub lines: i64,
}

impl Sales {
    /// Folds one item in, or says why it cannot be (the sums unchanged).
    pub fn fold(&mut self, price: f64, quantity: i64) -> Result<(), PluginError> {
        let bad = |why: &str| plugin_error("malformed-item", why.to_owned());
        if !(price.is_finite() && price >= 0.0) {
            return Err(bad("`price` must be a number, at least 0"));
        }
        if quantity < 0 {
            return Err(bad("`quantity` must be at least 0"));
        }
        let cents = (price * 100.0).round();
        let line = (cents < MAX_CENTS as f64)
            .then_some(cents as i64)
            .and_then(|cents| cents.checked_mul(quantity));
        let revenue = line.and_then(|line| self.revenue_cents.checked_add(line));
        let units = self.units.checked_add(quantity);
        match (revenue, units) {
            (Some(revenue), Some(units)) if revenue < MAX_CENTS => {
                self.revenue_cents = revenue;
                self.units = units;
                self.lines += 1;
                Ok(())
            }
            _ => Err(plugin_error(
                "out-of-range",
                "the category's sums would pass what REVENUE holds exactly",
            )),
        }
    }

    /// The output row.
    pub fn row(&self) -> Vec<Value> {
        vec![
            Value::Long(self.units),
            Value::Double(self.revenue_cents as f64 / 100.0),
            Value::Long(self.lines),
        ]
    }
}

/// The plugin; it needs no configuration.
pub struct CategorySales;

impl Aggregator for CategorySales {
    type State = Sales;
    const STATE_VERSION: u32 = 1;
    const OUTPUT_SCHEMA: &'static str = OUTPUT_SCHEMA;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        vec!["price".to_owned(), "quantity".to_owned()]
    }

    fn apply(&self, state: &mut Sales, event: &Record<'_>) -> Result<(), PluginError> {
        let fields = event.fields()?;
        let price: f64 = fields
            .get(0)
            .and_then(|field| field.non_null())
            .ok_or_else(|| plugin_error("malformed-item", "an item without a `price`"))?
            .parse()?;
        let quantity: i64 = fields
            .get(1)
            .and_then(|field| field.non_null())
            .ok_or_else(|| plugin_error("malformed-item", "an item without a `quantity`"))?
            .parse()?;
        state.fold(price, quantity)
    }

    fn row(&self, _key: &[u8], state: &Sales) -> Vec<Value> {
        state.row()
    }
}

export_aggregator!(CategorySales);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_to_the_cent() {
        let mut sales = Sales::default();
        for _ in 0..10 {
            sales.fold(0.1, 3).unwrap();
        }
        sales.fold(129.99, 1).unwrap();
        assert_eq!(
            sales,
            Sales {
                units: 31,
                revenue_cents: 300 + 12_999,
                lines: 11
            }
        );
        assert_eq!(
            format!("{:?}", sales.row()[1]),
            format!("{:?}", Value::Double(132.99))
        );
    }

    #[test]
    fn an_item_that_cannot_count_leaves_the_sums_as_they_were() {
        let mut sales = Sales::default();
        sales.fold(2.5, 2).unwrap();
        let before = sales.clone();
        assert_eq!(sales.fold(f64::NAN, 1).unwrap_err().code, "malformed-item");
        assert_eq!(sales.fold(1.0, -1).unwrap_err().code, "malformed-item");
        assert_eq!(sales.fold(1e14, 1_000).unwrap_err().code, "out-of-range");
        assert_eq!(sales, before);
    }
}
