//! `{{name}}`: a weir filter. Keeps the events whose `event_type` is one of
//! the configured ones (`keep = ["purchase"]` by default), drops the others,
//! and rejects events whose `event_type` is not a string.

use serde::Deserialize;
use weir_plugin_sdk::{Config, Decision, Filter, PluginError, Record, export_filter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "purchases")]
    keep: Vec<String>,
}

fn purchases() -> Vec<String> {
    vec!["purchase".to_owned()]
}

/// The plugin, with its configuration.
pub struct Plugin {
    keep: Vec<String>,
}

impl Filter for Plugin {
    fn new(config: &Config) -> Result<Self, PluginError> {
        let settings: Settings = config.parse()?;
        Ok(Self {
            keep: settings.keep,
        })
    }

    /// The fields read; the host parses each event once and hands them over.
    fn reads(&self) -> Vec<String> {
        vec!["event_type".to_owned()]
    }

    fn filter(&self, record: &Record<'_>) -> Decision {
        let event_type = record.fields().and_then(|fields| {
            fields
                .get(0)
                .and_then(|field| field.non_null())
                .map(|field| field.parse::<String>())
                .transpose()
        });
        match event_type {
            Ok(Some(event_type)) if self.keep.contains(&event_type) => Decision::Keep,
            Ok(_) => Decision::Drop,
            Err(error) => Decision::Reject(error),
        }
    }
}

export_filter!(Plugin);
