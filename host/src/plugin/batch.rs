//! Batches as the contract carries them: all keys and values in one buffer
//! plus per-record metadata, so a batch crosses into a plugin with one copy.

use super::bindings::types::{Batch, RecordHeader, RecordInfo, Span};

/// Builds a [`Batch`] record by record.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    data: Vec<u8>,
    records: Vec<RecordInfo>,
    headers: Vec<RecordHeader>,
}

/// One record to add to a batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// The Kafka key.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The partition it came from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

impl BatchBuilder {
    /// A builder with room for `records` records of `bytes` key and value
    /// bytes in all (grown as needed past that).
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
            headers: Vec::new(),
        }
    }

    /// Appends a record; returns its index in the batch.
    pub fn push(&mut self, record: RecordRef<'_>) -> usize {
        let key = record.key.map(|key| append(&mut self.data, key));
        let value = append(&mut self.data, record.value);
        self.records.push(RecordInfo {
            key,
            value,
            timestamp: record.timestamp,
            partition: record.partition,
            offset: record.offset,
        });
        self.records.len() - 1
    }

    /// Adds a header to the record pushed last.
    pub fn header(&mut self, key: &str, value: &[u8]) {
        let record = self
            .records
            .len()
            .checked_sub(1)
            .expect("a header needs a record");
        self.headers.push(RecordHeader {
            record: index_u32(record),
            key: key.to_owned(),
            value: value.to_vec(),
        });
    }

    /// Appends record `index` of `batch` with its headers; returns its index here.
    pub fn push_from(&mut self, batch: &Batch, index: usize) -> usize {
        let at = self.push(batch.record(index));
        for header in batch.headers_of(index) {
            self.header(&header.key, &header.value);
        }
        at
    }

    /// Records so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Key and value bytes so far.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// True when no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch.
    pub fn build(self) -> Batch {
        Batch {
            data: self.data,
            records: self.records,
            headers: self.headers,
        }
    }
}

impl From<Batch> for BatchBuilder {
    /// A builder that goes on from `batch`'s records.
    fn from(batch: Batch) -> Self {
        Self {
            data: batch.data,
            records: batch.records,
            headers: batch.headers,
        }
    }
}

/// Read access to a batch's records.
pub trait BatchExt {
    /// Record `index` as a [`RecordRef`].
    fn record(&self, index: usize) -> RecordRef<'_>;
    /// A batch holding only record `index` (with its headers).
    fn single(&self, index: usize) -> Batch;
    /// A batch of records `indexes` of this one, in that order, with their
    /// headers. The bytes are copied as one block, spans unchanged: the
    /// new batch's buffer may hold bytes none of its records refer to.
    fn select(&self, indexes: &[u32]) -> Batch;
    /// A batch of the records `keep` accepts (by index), in order, as
    /// [`BatchExt::select`] makes it.
    fn select_where(&self, keep: impl FnMut(usize) -> bool) -> Batch;
    /// The headers of record `index`.
    fn headers_of(&self, index: usize) -> &[RecordHeader];
}

impl BatchExt for Batch {
    fn record(&self, index: usize) -> RecordRef<'_> {
        let info = &self.records[index];
        RecordRef {
            key: info.key.map(|span| slice(&self.data, span)),
            value: slice(&self.data, info.value),
            timestamp: info.timestamp,
            partition: info.partition,
            offset: info.offset,
        }
    }

    fn single(&self, index: usize) -> Batch {
        let mut builder = BatchBuilder::default();
        builder.push_from(self, index);
        builder.build()
    }

    fn select(&self, indexes: &[u32]) -> Batch {
        let mut headers = Vec::new();
        if !self.headers.is_empty() {
            for (at, &index) in indexes.iter().enumerate() {
                headers.extend(
                    self.headers_of(index as usize)
                        .iter()
                        .map(|header| RecordHeader {
                            record: index_u32(at),
                            ..header.clone()
                        }),
                );
            }
        }
        Batch {
            data: self.data.clone(),
            records: indexes
                .iter()
                .map(|&index| self.records[index as usize])
                .collect(),
            headers,
        }
    }

    fn select_where(&self, mut keep: impl FnMut(usize) -> bool) -> Batch {
        let kept: Vec<u32> = (0..self.records.len())
            .filter(|&index| keep(index))
            .map(index_u32)
            .collect();
        self.select(&kept)
    }

    fn headers_of(&self, index: usize) -> &[RecordHeader] {
        // Headers are in record order: the builder only appends them to
        // the record pushed last.
        let start = self
            .headers
            .partition_point(|h| (h.record as usize) < index);
        let end = self
            .headers
            .partition_point(|h| (h.record as usize) <= index);
        &self.headers[start..end]
    }
}

/// Bytes of `data` under `span`.
pub fn slice(data: &[u8], span: Span) -> &[u8] {
    &data[span.start as usize..span.start as usize + span.len as usize]
}

fn append(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len();
    data.extend_from_slice(bytes);
    Span {
        start: index_u32(start),
        len: index_u32(bytes.len()),
    }
}

fn index_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a batch stays below 4 GiB and 2^32 records")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &'static str, value: &'static str, offset: i64) -> RecordRef<'static> {
        RecordRef {
            key: Some(key.as_bytes()),
            value: value.as_bytes(),
            timestamp: 10 + offset,
            partition: 1,
            offset,
        }
    }

    #[test]
    fn a_selection_keeps_each_records_bytes_metadata_and_headers() {
        let mut builder = BatchBuilder::default();
        builder.push(record("a", "first", 0));
        builder.header("h", b"of-first");
        builder.push(record("b", "second", 1));
        builder.push(record("c", "third", 2));
        builder.header("h", b"of-third");
        builder.header("i", b"also-third");
        let batch = builder.build();

        let selected = batch.select(&[2, 0, 2]);
        let seen: Vec<(&[u8], &[u8], i64, i64)> = (0..3)
            .map(|index| {
                let record = selected.record(index);
                (
                    record.key.unwrap(),
                    record.value,
                    record.offset,
                    record.timestamp,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (&b"c"[..], &b"third"[..], 2, 12),
                (b"a", b"first", 0, 10),
                (b"c", b"third", 2, 12)
            ]
        );
        let headers = |index: usize| -> Vec<(&str, &[u8])> {
            selected
                .headers_of(index)
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_slice()))
                .collect()
        };
        assert_eq!(headers(0), [("h", &b"of-third"[..]), ("i", b"also-third")]);
        assert_eq!(headers(1), [("h", &b"of-first"[..])]);
        assert_eq!(headers(2), headers(0));
        assert!(batch.select(&[]).records.is_empty());
    }
}
