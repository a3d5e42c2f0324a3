//! `field-filter`: keeps the JSON records that satisfy every predicate of its
//! configuration, drops (or rejects) the others.
//!
//! ```toml
//! [[stages.config.keep_if]]
//! field = "session_id"
//! present = true
//!
//! [[stages.config.keep_if]]
//! field = "event_type"
//! in = ["session_start", "page_view", "search", "product_viewed",
//!       "add_to_cart", "cart_viewed", "purchase", "session_end"]
//! otherwise = "reject"   # send to the dead-letter topic instead of dropping
//! ```
//!
//! A predicate names a `field` (dots reach into objects: `device.type`) and
//! exactly one test: `present` (true: the field exists and is not null;
//! false: it does not), `equals` (a JSON value), or `in` (a list of JSON
//! values). A value that is not a JSON object is always rejected.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_json::value::RawValue;
use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter, plugin_error};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Every predicate must hold for a record to be kept.
    #[serde(default)]
    keep_if: Vec<PredicateConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredicateConfig {
    field: String,
    present: Option<bool>,
    equals: Option<Json>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Json>>,
    #[serde(default)]
    otherwise: Otherwise,
}

/// What happens to a record that fails a predicate.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Otherwise {
    #[default]
    Drop,
    Reject,
}

#[derive(Debug)]
enum Test {
    Present(bool),
    Equals(Json),
    OneOf(Vec<Json>),
}

#[derive(Debug)]
struct Predicate {
    path: Vec<String>,
    test: Test,
    otherwise: Otherwise,
}

impl Predicate {
    fn from_config(config: PredicateConfig) -> Result<Self, PluginError> {
        let field = config.field;
        let test = match (config.present, config.equals, config.one_of) {
            (Some(present), None, None) => Test::Present(present),
            (None, Some(value), None) => Test::Equals(value),
            (None, None, Some(values)) => Test::OneOf(values),
            _ => {
                return Err(plugin_error(
                    "bad-config",
                    format!(
                        "predicate on `{field}` needs exactly one of `present`, `equals` or `in`"
                    ),
                ));
            }
        };
        if field.is_empty() {
            return Err(plugin_error(
                "bad-config",
                "a predicate has an empty `field`",
            ));
        }
        Ok(Self {
            path: field.split('.').map(str::to_owned).collect(),
            test,
            otherwise: config.otherwise,
        })
    }

    /// `Ok(true)` when the record passes; an error when the JSON is malformed.
    fn holds(&self, top: &Top<'_>) -> Result<bool, serde_json::Error> {
        let value = lookup(top, &self.path)?;
        Ok(match &self.test {
            Test::Present(wanted) => value.as_ref().is_some_and(|v| !v.is_null()) == *wanted,
            Test::Equals(expected) => value.as_ref() == Some(expected),
            Test::OneOf(allowed) => value.is_some_and(|value| allowed.contains(&value)),
        })
    }
}

impl Predicate {
    /// Why a record fails this predicate, in words (the failure path only).
    fn failure(&self, top: &Top<'_>) -> String {
        let field = self.path.join(".");
        let value = lookup(top, &self.path)
            .ok()
            .flatten()
            .filter(|v| !v.is_null());
        let shown = |value: &Json| {
            let text = value.to_string();
            if text.len() > 60 {
                format!("{}…", text.chars().take(60).collect::<String>())
            } else {
                text
            }
        };
        match (&self.test, &value) {
            (Test::Present(true), _) => format!("field `{field}` is missing; it must be present"),
            (Test::Present(false), Some(value)) => {
                format!("field `{field}` is {}; it must be absent", shown(value))
            }
            (_, None) => format!("field `{field}` is missing"),
            (Test::Equals(expected), Some(value)) => format!(
                "field `{field}` is {}; it must equal {}",
                shown(value),
                shown(expected)
            ),
            (Test::OneOf(allowed), Some(value)) => format!(
                "field `{field}` is {}, which is not one of the {} allowed values",
                shown(value),
                allowed.len()
            ),
        }
    }
}

/// The top-level fields the predicates read, values unparsed; every other
/// field is skipped without being kept.
struct Top<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl Top<'_> {
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }
}

/// Reads a [`Top`] keeping only the fields named.
struct Wanted<'w>(&'w [String]);

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Top<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Top<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut found = Vec::with_capacity(self.0.len());
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.0.iter().any(|wanted| *wanted == key) {
                found.push((key, map.next_value::<&'de RawValue>()?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Top(found))
    }
}

/// The value at `path`, parsed only along the way (siblings stay raw).
fn lookup(top: &Top<'_>, path: &[String]) -> Result<Option<Json>, serde_json::Error> {
    let Some(raw) = top.get(&path[0]) else {
        return Ok(None);
    };
    let mut raw: &RawValue = raw;
    for segment in &path[1..] {
        let Ok(object) = serde_json::from_str::<HashMap<Cow<'_, str>, &RawValue>>(raw.get()) else {
            return Ok(None);
        };
        match object.get(segment.as_str()) {
            Some(inner) => raw = inner,
            None => return Ok(None),
        }
    }
    serde_json::from_str(raw.get()).map(Some)
}

pub struct FieldFilter {
    predicates: Vec<Predicate>,
    /// The top-level fields the predicates start from.
    top_names: Vec<String>,
}

impl FieldFilter {
    /// The rule itself, without the host (shared by the plugin and its tests).
    pub fn from_json(config: &str) -> Result<Self, PluginError> {
        Self::new(&Config::from_json(config)?)
    }
}

impl Filter for FieldFilter {
    fn new(config: &Config) -> Result<Self, PluginError> {
        let settings: Settings = config.parse()?;
        let predicates = settings
            .keep_if
            .into_iter()
            .map(Predicate::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let mut top_names: Vec<String> = predicates.iter().map(|p| p.path[0].clone()).collect();
        top_names.sort();
        top_names.dedup();
        Ok(Self {
            predicates,
            top_names,
        })
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        let mut parser = serde_json::Deserializer::from_slice(record.value);
        let parsed = Wanted(&self.top_names)
            .deserialize(&mut parser)
            .and_then(|top| parser.end().map(|()| top));
        let top = match parsed {
            Ok(top) => top,
            Err(error) => {
                return Decision::Reject(plugin_error(
                    "malformed-json",
                    format!("value is not a JSON object: {error}"),
                ));
            }
        };
        for predicate in &self.predicates {
            match predicate.holds(&top) {
                Ok(true) => {}
                Ok(false) if predicate.otherwise == Otherwise::Drop => return Decision::Drop,
                Ok(false) => {
                    return Decision::Reject(plugin_error(
                        "predicate-failed",
                        predicate.failure(&top),
                    ));
                }
                Err(error) => {
                    return Decision::Reject(plugin_error("malformed-json", error.to_string()));
                }
            }
        }
        Decision::Keep
    }
}

export_filter!(FieldFilter);
