//! Records as plugins see them: views that borrow from the batch buffer
//! the host sent (no copy per record), and the builders for the other way.

use serde::Serialize;

use crate::bindings::transforming::{Emitted, Transformed};
use crate::bindings::types::{
    Batch, Fields as WitFields, PluginError, RecordHeader, RecordInfo, Rejection, Span,
};
use crate::json::{self, Fields};
use crate::plugin_error;

/// One input record, borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The Kafka key, if the record has one.
    pub key: Option<&'a [u8]>,
    /// The value; the plugin decides how to parse it.
    pub value: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The Kafka partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    headers: &'a [RecordHeader],
    /// The spans of the fields the plugin reads; `None` when the value is
    /// not a JSON object.
    fields: Option<&'a [Span]>,
}

impl<'a> Record<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.headers
            .iter()
            .map(|header| (header.key.as_str(), header.value.as_slice()))
    }

    /// The values of the fields the plugin reads (its `reads` list), as the
    /// host found them; an error (code `malformed-json`) when the value is
    /// not a JSON object.
    pub fn fields(&self) -> Result<Fields<'a>, PluginError> {
        match self.fields {
            Some(spans) => Ok(Fields::new(self.value, spans)),
            None => Err(json::not_an_object(self.value)),
        }
    }

    /// Parses the value as JSON into `T` (which may borrow from it); the
    /// error has code `malformed-json`.
    pub fn json<T: serde::Deserialize<'a>>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(self.value).map_err(|error| {
            plugin_error(
                "malformed-json",
                format!("value is not the expected JSON: {error}"),
            )
        })
    }
}

fn slice(data: &[u8], span: Span) -> &[u8] {
    &data[span.start as usize..(span.start + span.len) as usize]
}

/// Runs `with` on `value` as the one record of a batch, its fields (`reads`)
/// found as the host finds them: how a plugin's own tests fold one JSON
/// event natively.
pub fn with_record<R>(value: &[u8], reads: &[String], with: impl FnOnce(Record<'_>) -> R) -> R {
    let mut builder = BatchBuilder::default();
    builder.push(None, value, 0);
    let (batch, fields) = builder.build_with_fields(reads);
    let record = records(&batch, &fields, reads.len())
        .next()
        .expect("a batch of one record");
    with(record)
}

/// The records of `batch`, in order, with the `fields` the host found
/// (`width` per JSON-object record: the length of the plugin's `reads`).
pub fn records<'a>(
    batch: &'a Batch,
    fields: &'a WitFields,
    width: usize,
) -> impl Iterator<Item = Record<'a>> {
    let mut headers = batch.headers.as_slice();
    batch.records.iter().enumerate().map(move |(index, info)| {
        let spans = match fields.first.get(index) {
            Some(Some(first)) => fields.spans.get(*first as usize..*first as usize + width),
            Some(None) => None,
            // A plugin reading no fields gets none; every value counts as an object.
            None => Some(&[][..]),
        };
        // Headers come ordered by record: this record's are a prefix.
        let index = index as u32;
        let count = headers.iter().take_while(|h| h.record == index).count();
        let (own, rest) = headers.split_at(count);
        headers = rest;
        Record {
            key: info.key.map(|span| slice(&batch.data, span)),
            value: slice(&batch.data, info.value),
            timestamp: info.timestamp,
            partition: info.partition,
            offset: info.offset,
            headers: own,
            fields: spans,
        }
    })
}

fn append(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len();
    data.extend_from_slice(bytes);
    span(start, data.len())
}

fn span(start: usize, end: usize) -> Span {
    let start = u32::try_from(start).expect("a batch buffer stays below 4 GiB");
    let end = u32::try_from(end).expect("a batch buffer stays below 4 GiB");
    Span {
        start,
        len: end - start,
    }
}

/// Builds a [`Batch`] (for tests and benchmarks run natively).
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self {
            batch: Batch {
                data: Vec::new(),
                records: Vec::new(),
                headers: Vec::new(),
            },
        }
    }
}

impl BatchBuilder {
    /// Appends a record on partition 0 with timestamp 0.
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], offset: i64) -> &mut Self {
        let key = key.map(|key| append(&mut self.batch.data, key));
        let value = append(&mut self.batch.data, value);
        self.batch.records.push(RecordInfo {
            key,
            value,
            timestamp: 0,
            partition: 0,
            offset,
        });
        self
    }

    /// The batch.
    pub fn build(self) -> Batch {
        self.batch
    }

    /// The batch, with the fields a plugin reading `reads` gets with it.
    pub fn build_with_fields(self, reads: &[String]) -> (Batch, WitFields) {
        let mut fields = WitFields {
            first: Vec::new(),
            spans: Vec::new(),
        };
        if !reads.is_empty() {
            for info in &self.batch.records {
                let value = slice(&self.batch.data, info.value);
                match json::find(value, reads) {
                    Some(spans) => {
                        fields.first.push(Some(fields.spans.len() as u32));
                        fields.spans.extend(spans);
                    }
                    None => fields.first.push(None),
                }
            }
        }
        (self.batch, fields)
    }
}

/// Where a transform writes the records it emits for the current input
/// record: straight into the one output buffer.
pub struct Emitter {
    out: Transformed,
    source: u32,
    /// Lengths to roll back to if the current record is rejected.
    mark: (usize, usize, usize),
}

impl Default for Emitter {
    fn default() -> Self {
        Self {
            out: Transformed {
                data: Vec::new(),
                records: Vec::new(),
                headers: Vec::new(),
                rejected: Vec::new(),
            },
            source: 0,
            mark: (0, 0, 0),
        }
    }
}

impl Emitter {
    /// Emits a record with `key` and `value`.
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8]) {
        let key = key.map(|key| append(&mut self.out.data, key));
        let value = append(&mut self.out.data, value);
        self.push(key, value);
    }

    /// Emits a record whose value `write` appends to the output buffer it is
    /// given, with no copy in between; `write`'s error is returned (the
    /// transform then rejects the input, which discards what it emitted).
    pub fn emit_with<T, E>(
        &mut self,
        key: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<T, E>,
    ) -> Result<T, E> {
        let key = key.map(|key| append(&mut self.out.data, key));
        let start = self.out.data.len();
        let written = write(&mut self.out.data)?;
        let value = span(start, self.out.data.len());
        self.push(key, value);
        Ok(written)
    }

    /// Emits a record whose value is `value` serialised as JSON, written
    /// straight into the output buffer.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        key: Option<&[u8]>,
        value: &T,
    ) -> Result<(), PluginError> {
        let key = key.map(|key| append(&mut self.out.data, key));
        let start = self.out.data.len();
        serde_json::to_writer(&mut self.out.data, value)
            .map_err(|error| plugin_error("serialize", error.to_string()))?;
        let value = span(start, self.out.data.len());
        self.push(key, value);
        Ok(())
    }

    /// Adds a header to the record emitted last.
    pub fn header(&mut self, key: &str, value: &[u8]) {
        let record = self
            .out
            .records
            .len()
            .checked_sub(1)
            .expect("a header belongs to an emitted record");
        self.out.headers.push(RecordHeader {
            record: record as u32,
            key: key.to_owned(),
            value: value.to_vec(),
        });
    }

    fn push(&mut self, key: Option<Span>, value: Span) {
        self.out.records.push(Emitted {
            source: self.source,
            key,
            value,
        });
    }

    /// Starts the output of input record `source`.
    pub(crate) fn begin(&mut self, source: u32) {
        self.source = source;
        self.mark = (
            self.out.data.len(),
            self.out.records.len(),
            self.out.headers.len(),
        );
    }

    /// Discards what the current input record emitted and records why.
    pub(crate) fn reject(&mut self, error: PluginError) {
        let (data, records, headers) = self.mark;
        self.out.data.truncate(data);
        self.out.records.truncate(records);
        self.out.headers.truncate(headers);
        self.out.rejected.push(Rejection {
            index: self.source,
            error,
        });
    }

    /// What was emitted: records and their bytes.
    pub fn finish(self) -> Transformed {
        self.out
    }
}
