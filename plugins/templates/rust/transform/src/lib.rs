//! `{{name}}`: a weir transform. Each event comes out as it came in, with
//! `funnel_step` added: 1 for browsing (page views, searches, product
//! views), 2 for the cart, 3 for a purchase, 0 for anything else. Events
//! whose `event_type` is not a string are rejected.

use weir_plugin_sdk::{Config, Emitter, PluginError, Record, Transform, export_transform};

/// The plugin; it needs no configuration.
pub struct Plugin;

fn funnel_step(event_type: Option<&str>) -> u8 {
    match event_type {
        Some("page_view" | "search" | "product_viewed") => 1,
        Some("add_to_cart" | "cart_viewed") => 2,
        Some("purchase") => 3,
        _ => 0,
    }
}

impl Transform for Plugin {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    /// The fields read; the host parses each event once and hands them over.
    fn reads(&self) -> Vec<String> {
        vec!["event_type".to_owned()]
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let fields = record.fields()?;
        let event_type: Option<String> = fields
            .get(0)
            .and_then(|field| field.non_null())
            .map(|field| field.parse())
            .transpose()?;
        let step = funnel_step(event_type.as_deref());
        // The event's own bytes, with the member added before its closing brace.
        let text = String::from_utf8_lossy(record.value);
        let body = text.trim_end().strip_suffix('}').unwrap_or(&text).trim_end();
        let comma = if body.ends_with('{') { "" } else { "," };
        out.emit(record.key, format!("{body}{comma}\"funnel_step\":{step}}}").as_bytes());
        Ok(())
    }
}

export_transform!(Plugin);
