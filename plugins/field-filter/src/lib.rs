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
use serde_json::Value as Json;
use serde_json::value::RawValue;
use weir_plugin_sdk::{
    Config, Decision, Fields, Filter, PluginError, Record, export_filter, plugin_error,
};

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
    /// Where `path[0]` is in the plugin's `reads`.
    column: usize,
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
            column: 0,
            test,
            otherwise: config.otherwise,
        })
    }

    /// `Ok(true)` when the record passes; an error when the JSON is malformed.
    fn holds(&self, top: &Fields<'_>) -> Result<bool, PluginError> {
        let value = self.lookup(top)?;
        Ok(match &self.test {
            Test::Present(wanted) => value.as_ref().is_some_and(|v| !v.is_null()) == *wanted,
            Test::Equals(expected) => value.as_ref() == Some(expected),
            Test::OneOf(allowed) => value.is_some_and(|value| allowed.contains(&value)),
        })
    }
}

impl Predicate {
    /// Why a record fails this predicate, in words (the failure path only).
    fn failure(&self, top: &Fields<'_>) -> String {
        let field = self.path.join(".");
        let value = self.lookup(top).ok().flatten().filter(|v| !v.is_null());
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

impl Predicate {
    /// The value at the predicate's path: the top-level field as the host
    /// found it, and only along a dotted path parsed further (siblings stay raw).
    fn lookup(&self, top: &Fields<'_>) -> Result<Option<Json>, PluginError> {
        let Some(field) = top.get(self.column) else {
            return Ok(None);
        };
        if self.path.len() == 1 {
            return field.parse().map(Some);
        }
        let mut raw: &RawValue = field.parse()?;
        for segment in &self.path[1..] {
            let Ok(object) = serde_json::from_str::<HashMap<Cow<'_, str>, &RawValue>>(raw.get())
            else {
                return Ok(None);
            };
            match object.get(segment.as_str()) {
                Some(inner) => raw = inner,
                None => return Ok(None),
            }
        }
        serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|error| plugin_error("malformed-json", error.to_string()))
    }
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
        let mut predicates = predicates;
        let mut top_names: Vec<String> = Vec::new();
        for predicate in &mut predicates {
            let name = &predicate.path[0];
            predicate.column = match top_names.iter().position(|known| known == name) {
                Some(column) => column,
                None => {
                    top_names.push(name.clone());
                    top_names.len() - 1
                }
            };
        }
        Ok(Self {
            predicates,
            top_names,
        })
    }

    fn reads(&self) -> Vec<String> {
        self.top_names.clone()
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        let top = match record.fields() {
            Ok(top) => top,
            Err(error) => return Decision::Reject(error),
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
                Err(error) => return Decision::Reject(error),
            }
        }
        Decision::Keep
    }
}

export_filter!(FieldFilter);
