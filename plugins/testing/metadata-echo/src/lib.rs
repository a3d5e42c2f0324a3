//! Writes back, as JSON, everything it received of each record: the key and
//! value bytes, timestamp, partition, offset, headers, and the text of the
//! fields `a` and `b` as the host found them. The runtime's tests compare
//! it with the batch they sent, so every byte the host lowers is checked.

use serde_json::{Value, json};
use weir_plugin_sdk::{Config, Emitter, PluginError, Record, Transform, export_transform};

struct MetadataEcho;

fn bytes(bytes: &[u8]) -> Value {
    Value::from(bytes.to_vec())
}

impl Transform for MetadataEcho {
    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn reads(&self) -> Vec<String> {
        vec!["a".to_owned(), "b".to_owned()]
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let fields = record.fields().ok().map(|fields| {
            (0..2)
                .map(|index| fields.get(index).map(|field| bytes(field.text())))
                .collect::<Vec<_>>()
        });
        let headers: Vec<Value> = record
            .headers()
            .map(|(key, value)| json!([key, bytes(value)]))
            .collect();
        let echo = json!({
            "key": record.key.map(bytes),
            "value": bytes(record.value),
            "timestamp": record.timestamp,
            "partition": record.partition,
            "offset": record.offset,
            "headers": headers,
            "fields": fields,
        });
        out.emit(None, echo.to_string().as_bytes());
        Ok(())
    }
}

export_transform!(MetadataEcho);
