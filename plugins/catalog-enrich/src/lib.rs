//! `catalog-enrich`: copies fields from the host's lookup tables onto JSON
//! events — the user's segment onto every event of that user (the reference
//! only has it on `session_start`), the product's category and brand onto
//! product events.
//!
//! ```toml
//! [[stages.config.enrich]]
//! table = "users"              # a lookup table of the pipeline
//! key_field = "user_id"        # the event field holding the row's key
//! fields = { user_segment = "segment" }   # event field = table column
//!
//! [[stages.config.enrich]]
//! table = "products"
//! key_field = "product_id"
//! fields = { product_category = "category", product_brand = "brand" }
//! ```
//!
//! Fields the event already has are kept (`overwrite = true` replaces them).
//! Events without the key field, or whose key has no row, pass unchanged and
//! count in the `lookup_misses` metric. A value that is not a JSON object is
//! rejected.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use weir_plugin_sdk::{
    Config, Emitter, PluginError, Record, Transform, export_transform, host, plugin_error,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    enrich: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// The lookup table.
    table: String,
    /// The event field whose value is the row's key.
    key_field: String,
    /// Event field to write -> table column to read.
    fields: BTreeMap<String, String>,
    /// Replace fields the event already has.
    #[serde(default)]
    overwrite: bool,
}

/// Where rows come from: the host's lookup tables in the plugin, a map in tests.
pub trait Lookup {
    /// The row of `table` with key `key` as a JSON object.
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>>;
}

struct HostLookup;

impl Lookup for HostLookup {
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>> {
        host::lookup(table, key)
    }
}

pub struct CatalogEnrich {
    rules: Vec<Rule>,
}

impl CatalogEnrich {
    /// Enriches one JSON event: returns it with the looked-up fields, and how
    /// many lookups missed.
    pub fn enrich(
        &self,
        value: &[u8],
        lookup: &impl Lookup,
    ) -> Result<(Map<String, Json>, u64), PluginError> {
        let mut event: Map<String, Json> = serde_json::from_slice(value).map_err(|error| {
            plugin_error(
                "malformed-json",
                format!("value is not a JSON object: {error}"),
            )
        })?;
        let mut misses = 0;
        for rule in &self.rules {
            let key = match event.get(&rule.key_field) {
                Some(Json::String(key)) => key.clone(),
                Some(Json::Number(key)) => key.to_string(),
                _ => continue,
            };
            let Some(row) = lookup.row(&rule.table, &key) else {
                misses += 1;
                continue;
            };
            for (target, column) in &rule.fields {
                let Some(value) = row.get(column) else {
                    continue;
                };
                let present = event.get(target).is_some_and(|v| !v.is_null());
                if rule.overwrite || !present {
                    event.insert(target.clone(), value.clone());
                }
            }
        }
        Ok((event, misses))
    }

    /// Builds the plugin from JSON configuration text (tests use this).
    pub fn from_json(config: &str) -> Result<Self, PluginError> {
        Self::new(&Config::from_json(config)?)
    }
}

impl Transform for CatalogEnrich {
    fn new(config: &Config) -> Result<Self, PluginError> {
        let settings: Settings = config.parse()?;
        for rule in &settings.enrich {
            if rule.fields.is_empty() {
                return Err(plugin_error(
                    "bad-config",
                    format!("the rule for table `{}` copies no `fields`", rule.table),
                ));
            }
        }
        Ok(Self {
            rules: settings.enrich,
        })
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let (event, misses) = self.enrich(record.value, &HostLookup)?;
        if misses > 0 {
            host::counter_add("lookup_misses", misses);
        }
        out.emit_json(record.key, &event)?;
        for (key, value) in record.headers() {
            out.header(key, value);
        }
        Ok(())
    }
}

export_transform!(CatalogEnrich);
