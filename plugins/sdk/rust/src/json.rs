//! The fields a plugin reads, as the host found them: each record's value is
//! parsed once by the host (natively, for the whole pipeline), and a plugin
//! gets the JSON text of each field it named in `reads`, with no parsing of
//! its own beyond those small values.
//!
//! ```text
//! // reads() returned ["event_type", "cart_total"]
//! let fields = record.fields()?;              // malformed-json if not an object
//! let kind: Option<&str> = fields.get(0).map(|f| f.parse()).transpose()?;
//! let total: Option<f64> = fields.get(1).and_then(|f| f.non_null()).map(|f| f.parse()).transpose()?;
//! ```

use std::borrow::Cow;

use serde::Deserialize;

use crate::bindings::types::{PluginError, Span};
use crate::plugin_error;

/// The values of the fields a plugin reads, for one record whose value is a
/// JSON object.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    value: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(value: &'a [u8], spans: &'a [Span]) -> Self {
        Self { value, spans }
    }

    /// Field `index` of the plugin's `reads` list; `None` when the object
    /// does not have it (a JSON `null` is a field: see [`Field::non_null`]).
    pub fn get(&self, index: usize) -> Option<Field<'a>> {
        let span = self.spans.get(index)?;
        (span.len > 0).then(|| Field {
            text: &self.value[span.start as usize..(span.start + span.len) as usize],
        })
    }
}

/// One field's value, as JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    text: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value as JSON text (`"page_view"`, `12.5`, `{"type":"mobile"}`).
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// True when the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.text == b"null"
    }

    /// The field, unless its value is `null`.
    pub fn non_null(self) -> Option<Self> {
        (!self.is_null()).then_some(self)
    }

    /// The value as `T` (strings may borrow: `&str` fails on escapes,
    /// `Cow<str>` does not). The error (code `malformed-json`) names the
    /// type expected and what was found.
    pub fn parse<T: Deserialize<'a>>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(self.text).map_err(|error| {
            plugin_error(
                "malformed-json",
                format!(
                    "{error}, found {}",
                    String::from_utf8_lossy(&self.text[..self.text.len().min(60)])
                ),
            )
        })
    }

    /// The value as a string (borrowed unless it has escapes).
    pub fn str(&self) -> Result<Cow<'a, str>, PluginError> {
        self.parse()
    }
}

/// Why a value has no fields: it is not JSON, or JSON but not an object.
pub(crate) fn not_an_object(value: &[u8]) -> PluginError {
    let message = match serde_json::from_slice::<serde::de::IgnoredAny>(value) {
        Err(error) => format!("value is not a JSON object: {error}"),
        Ok(_) => "value is JSON but not an object".to_owned(),
    };
    plugin_error("malformed-json", message)
}

/// The spans of `reads` in `value`, as the host would find them (`None`
/// when `value` is not a JSON object), read with `serde_json`: how native
/// builds (tests, benchmarks) hand a plugin its fields.
pub(crate) fn find(value: &[u8], reads: &[String]) -> Option<Vec<Span>> {
    use std::collections::HashMap;

    use serde_json::value::RawValue;
    // A repeated field: the last one counts, as in the host.
    let object: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_slice(value).ok()?;
    Some(
        reads
            .iter()
            .map(|name| match object.get(name.as_str()) {
                Some(raw) => Span {
                    start: (raw.get().as_ptr() as usize - value.as_ptr() as usize) as u32,
                    len: raw.get().len() as u32,
                },
                None => Span { start: 0, len: 0 },
            })
            .collect(),
    )
}
