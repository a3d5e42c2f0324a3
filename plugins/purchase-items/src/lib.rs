//! `purchase-items`: one record per item of each `purchase` event, with the
//! item's product category from a lookup table, so that an aggregator keyed
//! by `product_category` sees what was sold per category. Other events
//! become nothing.
//!
//! ```toml
//! [[stages]]
//! name = "purchase-items"
//! plugin = ".../purchase_items.wasm"
//! lookups = ["products"]
//! config = { table = "products", unknown = "uncategorised" }
//! ```
//!
//! Each item record is a JSON object: `order_id`, `session_id`,
//! `timestamp` (the purchase's, when it has them), the item's `product_id`,
//! `price` and `quantity`, and `product_category`: the `category` column of
//! the table's row for the product, or `unknown` when the table has no row
//! (so a product missing from the catalog still counts, under a name of its
//! own). A purchase whose `items` is not a list of objects with a numeric
//! `price` and an integer `quantity` is rejected (`malformed-purchase`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_plugin_sdk::{
    Config, Emitter, PluginError, Record, Transform, export_transform, host, plugin_error,
};

/// The fields of an event this transform reads.
pub const READS: [&str; 5] = ["event_type", "order_id", "session_id", "timestamp", "items"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The lookup table of products, keyed by product id.
    table: String,
    /// The category of a product the table has no row for.
    #[serde(default = "uncategorised")]
    unknown: String,
}

fn uncategorised() -> String {
    "uncategorised".to_owned()
}

/// An item of a purchase, as the generator writes it.
#[derive(Debug, Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    price: f64,
    quantity: i64,
}

/// What a product's row gives.
#[derive(Debug, Deserialize)]
struct Product {
    category: Option<String>,
}

/// The record an item becomes.
#[derive(Debug, Serialize)]
pub struct ItemRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a RawValue>,
    product_id: Cow<'a, str>,
    price: f64,
    quantity: i64,
    product_category: Cow<'a, str>,
}

/// The plugin.
pub struct PurchaseItems {
    settings: Settings,
}

impl PurchaseItems {
    /// The records of one purchase's `items` (JSON text), each item's
    /// category from `category` (`None`: no row).
    pub fn items<'a>(
        &'a self,
        items: &'a str,
        purchase: [Option<&'a RawValue>; 3],
        category: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ItemRecord<'a>>, PluginError> {
        let items: Vec<Item<'a>> = serde_json::from_str(items).map_err(|error| {
            plugin_error(
                "malformed-purchase",
                format!("`items` is not a list of items with a price and a quantity: {error}"),
            )
        })?;
        let [order_id, session_id, timestamp] = purchase;
        Ok(items
            .into_iter()
            .map(|item| {
                let found = category(&item.product_id);
                ItemRecord {
                    order_id,
                    session_id,
                    timestamp,
                    product_id: item.product_id,
                    price: item.price,
                    quantity: item.quantity,
                    product_category: found
                        .map_or(Cow::Borrowed(self.settings.unknown.as_str()), Cow::Owned),
                }
            })
            .collect())
    }
}

impl Transform for PurchaseItems {
    fn new(config: &Config) -> Result<Self, PluginError> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn reads(&self) -> Vec<String> {
        READS.iter().map(|name| (*name).to_owned()).collect()
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let fields = record.fields()?;
        let field = |index: usize| fields.get(index).and_then(|field| field.non_null());
        let is_purchase = field(0).is_some_and(|kind| kind.text() == b"\"purchase\"");
        if !is_purchase {
            return Ok(());
        }
        let Some(items) = field(4) else {
            return Err(plugin_error(
                "malformed-purchase",
                "a purchase without `items`",
            ));
        };
        let items = std::str::from_utf8(items.text())
            .map_err(|_| plugin_error("malformed-purchase", "`items` is not UTF-8"))?;
        let raw = |index: usize| -> Option<&RawValue> {
            let text = std::str::from_utf8(field(index)?.text()).ok()?;
            serde_json::from_str(text).ok()
        };
        let table = &self.settings.table;
        let category = |product: &str| host::lookup::<Product>(table, product)?.category;
        let records = self.items(items, [raw(1), raw(2), raw(3)], category)?;
        for item in &records {
            out.emit_json(record.key, item)?;
        }
        Ok(())
    }
}

export_transform!(PurchaseItems);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> PurchaseItems {
        PurchaseItems {
            settings: Settings {
                table: "products".to_owned(),
                unknown: uncategorised(),
            },
        }
    }

    #[test]
    fn a_purchase_becomes_one_record_per_item_with_its_category() {
        let plugin = plugin();
        let order: &RawValue = serde_json::from_str(r#""ord_0000beef""#).unwrap();
        let items = r#"[{"product_id":"prod_0007","product_name":"Lamp","price":129.99,"quantity":1},
                        {"product_id":"prod_0099","price":0.1,"quantity":3}]"#;
        let records = plugin
            .items(items, [Some(order), None, None], |product| {
                (product == "prod_0007").then(|| "home".to_owned())
            })
            .unwrap();
        let text: Vec<String> = records
            .iter()
            .map(|record| serde_json::to_string(record).unwrap())
            .collect();
        assert_eq!(
            text,
            [
                r#"{"order_id":"ord_0000beef","product_id":"prod_0007","price":129.99,"quantity":1,"product_category":"home"}"#,
                r#"{"order_id":"ord_0000beef","product_id":"prod_0099","price":0.1,"quantity":3,"product_category":"uncategorised"}"#,
            ]
        );
    }

    #[test]
    fn items_that_are_not_a_list_of_priced_items_are_refused() {
        let plugin = plugin();
        for items in [
            r#"{"a": 1}"#,
            r#"[{"product_id": "p", "quantity": 1}]"#,
            r#"[{"product_id": "p", "price": 1, "quantity": 1.5}]"#,
        ] {
            let error = plugin
                .items(items, [None, None, None], |_| None)
                .unwrap_err();
            assert_eq!(error.code, "malformed-purchase", "{items}");
        }
    }
}
