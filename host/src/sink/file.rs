//! The file sink: rows as JSON Lines appended to a file, for debugging and
//! for running without Kafka or PostgreSQL. Each flush appends one line per
//! changed key, `{"key": ..., "row": {column: value, ...}}` with the columns
//! in the schema's order, and syncs the file before the flush counts as
//! written; the newest line of a key is its row. Bytes columns are arrays
//! of numbers; a double that JSON cannot hold (NaN, infinity) is `null`.
//!
//! A pipeline without an aggregator appends one line per record its last
//! stage passed on, `{"key": ..., "value": ...}`: the value as the JSON it
//! is, or as a string when it is not JSON; a key or value that is not
//! UTF-8 is written with its bad bytes replaced (`U+FFFD`).

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde::ser::{Serialize, SerializeMap, Serializer};
use tokio::io::AsyncWriteExt;

use super::error::SinkError;
use super::output::{Records, Row, Rows, Sink};
use super::schema::RowSchema;
use crate::plugin::{Batch, BatchExt, Value};

/// Appends rows to one file.
pub struct FileSink {
    path: PathBuf,
    file: tokio::sync::Mutex<tokio::fs::File>,
}

impl FileSink {
    /// Opens `path` for appending (created, with its folder, when missing).
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(folder).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self {
            path: path.to_owned(),
            file: tokio::sync::Mutex::new(file),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, error: std::io::Error) -> SinkError {
        SinkError::External {
            sink: self.name().to_owned(),
            source: format!("{}: {error}", self.path.display()).into(),
        }
    }
}

/// `rows` of `schema` as JSON Lines.
pub fn lines(rows: &[Row], schema: &RowSchema, out: &mut Vec<u8>) -> serde_json::Result<()> {
    for (key, row) in rows {
        serde_json::to_writer(
            &mut *out,
            &Line {
                key,
                row: Columns { schema, row },
            },
        )?;
        out.push(b'\n');
    }
    Ok(())
}

/// The records of `batch` as JSON Lines, `{"key": ..., "value": ...}`.
pub fn record_lines(batch: &Batch, out: &mut Vec<u8>) -> serde_json::Result<()> {
    for index in 0..batch.records.len() {
        let record = batch.record(index);
        out.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut *out, &record.key.map(String::from_utf8_lossy))?;
        out.extend_from_slice(b",\"value\":");
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(record.value).is_ok();
        if json && !record.value.contains(&b'\n') && !record.value.contains(&b'\r') {
            // Valid JSON on one line: as it is, every number exact.
            out.extend_from_slice(record.value);
        } else if json {
            // Valid JSON over several lines: written again on one.
            let value: serde_json::Value = serde_json::from_slice(record.value)?;
            serde_json::to_writer(&mut *out, &value)?;
        } else {
            serde_json::to_writer(&mut *out, &String::from_utf8_lossy(record.value))?;
        }
        out.extend_from_slice(b"}\n");
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Line<'a> {
    key: &'a str,
    row: Columns<'a>,
}

/// A row as a JSON object, its columns in the schema's order.
struct Columns<'a> {
    schema: &'a RowSchema,
    row: &'a [Value],
}

impl Serialize for Columns<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.row.len()))?;
        for (column, value) in self.schema.columns.iter().zip(self.row) {
            match value {
                Value::Null => map.serialize_entry(&column.name, &())?,
                Value::Boolean(b) => map.serialize_entry(&column.name, b)?,
                Value::Long(n) => map.serialize_entry(&column.name, n)?,
                Value::Double(x) if x.is_finite() => map.serialize_entry(&column.name, x)?,
                Value::Double(_) => map.serialize_entry(&column.name, &())?,
                Value::Text(text) => map.serialize_entry(&column.name, text)?,
                Value::Bytes(bytes) => map.serialize_entry(&column.name, bytes)?,
            }
        }
        map.end()
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn count(&self, records: &Records) -> usize {
        records.row_count() + records.emitted_count()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(records.row_count() * 256);
            let internal = |error: serde_json::Error| SinkError::Internal {
                sink: self.name().to_owned(),
                source: error.into(),
            };
            for Rows { shape, rows, .. } in &records.rows {
                lines(rows, &shape.schema, &mut out).map_err(internal)?;
            }
            for batch in &records.emitted {
                record_lines(batch, &mut out).map_err(internal)?;
            }
            let mut file = self.file.lock().await;
            file.write_all(&out).await.map_err(|e| self.failed(e))?;
            file.flush().await.map_err(|e| self.failed(e))?;
            file.sync_data().await.map_err(|e| self.failed(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sink::Shape;

    const SCHEMA: &str = r#"{"type": "record", "name": "r", "fields": [
        {"name": "N", "type": ["null", "long"]},
        {"name": "X", "type": ["null", "double"]},
        {"name": "T", "type": ["null", "string"]},
        {"name": "B", "type": ["null", "boolean"]}
    ]}"#;

    #[tokio::test]
    async fn rows_are_appended_as_json_lines_in_column_order() {
        let dir = std::env::temp_dir().join(format!("weir-file-sink-{}", std::process::id()));
        let path = dir.join("nested/rows.jsonl");
        let sink = FileSink::open(&path).await.unwrap();
        let shape = Arc::new(Shape::new(Arc::new(RowSchema::parse(SCHEMA).unwrap())));
        let flush = |rows: Vec<Row>| {
            let mut batch = Rows::new(Arc::clone(&shape));
            for row in rows {
                batch.push(0, row);
            }
            Records {
                rows: vec![batch],
                ..Records::default()
            }
        };
        let first = flush(vec![(
            "k\"1".to_owned(),
            vec![
                Value::Long(3),
                Value::Double(f64::NAN),
                Value::Text("é\n".to_owned()),
                Value::Null,
            ],
        )]);
        sink.write(&first).await.unwrap();
        // A second sink on the same file appends (a restart keeps what was written).
        let again = FileSink::open(&path).await.unwrap();
        let second = flush(vec![(
            "k2".to_owned(),
            vec![
                Value::Long(-1),
                Value::Double(0.5),
                Value::Null,
                Value::Boolean(true),
            ],
        )]);
        again.write(&second).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"key\":\"k\\\"1\",\"row\":{\"N\":3,\"X\":null,\"T\":\"é\\n\",\"B\":null}}\n\
             {\"key\":\"k2\",\"row\":{\"N\":-1,\"X\":0.5,\"T\":null,\"B\":true}}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
