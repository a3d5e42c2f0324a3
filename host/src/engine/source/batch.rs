//! A batch being filled for one shard, and the source's own check of each
//! record on its way in: a value too big to pass on is dead-lettered here.

use std::time::Instant;

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use super::SourceSettings;
use crate::engine::shard::Chunk;
use crate::plugin::{BatchBuilder, RecordRef};
use crate::sink::DeadLetter;

/// The bytes of keys and values a chunk holds at most (and one record
/// more): with large records, a batch is cut by bytes before `max_records`.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// A batch being filled for one shard.
#[derive(Default)]
pub(super) struct Open {
    builder: BatchBuilder,
    dead: Vec<DeadLetter>,
    offsets: Vec<(i32, i64)>,
    pub(super) since: Option<Instant>,
}

impl Open {
    pub(super) fn records(&self) -> usize {
        self.builder.len() + self.dead.len()
    }

    /// Whether it should go to its shard now: `max_records` records, or
    /// [`MAX_CHUNK_BYTES`] of keys and values.
    pub(super) fn is_full(&self, max_records: usize) -> bool {
        self.records() >= max_records || self.builder.bytes() >= MAX_CHUNK_BYTES
    }

    pub(super) fn take(&mut self) -> Chunk {
        let open = std::mem::take(self);
        // The next batch is likely the size of this one: room for it up
        // front, not grown (and copied) record by record.
        self.builder = BatchBuilder::with_capacity(open.builder.len(), open.builder.bytes());
        Chunk {
            batch: open.builder.build(),
            dead: open.dead,
            offsets: open.offsets,
        }
    }

    /// Drops the records of `partitions` (revoked: their new owner reads them).
    pub(super) fn drop_partitions(&mut self, partitions: &[i32]) {
        if !self.offsets.iter().any(|(p, _)| partitions.contains(p)) {
            return;
        }
        let kept = self.take().retain(|p| !partitions.contains(&p));
        *self = Self {
            builder: BatchBuilder::from(kept.batch),
            dead: kept.dead,
            offsets: kept.offsets,
            since: None,
        };
        if self.records() > 0 {
            self.since = Some(Instant::now());
        }
    }
}

/// A record as the source takes it: polled, or held while its partition's
/// state is restored. Header names are bytes here: the source checks them.
pub(super) struct Incoming<'a> {
    pub(super) record: RecordRef<'a>,
    pub(super) headers: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Incoming<'a> {
    /// `message`, as polled.
    pub(super) fn polled(message: &'a BorrowedMessage<'_>) -> Self {
        Self {
            record: RecordRef {
                key: message.key(),
                value: message.payload().unwrap_or_default(),
                timestamp: message.timestamp().to_millis().unwrap_or_default(),
                partition: message.partition(),
                offset: message.offset(),
            },
            headers: crate::kafka::headers::headers(message),
        }
    }
}

/// A copy of a record that outlives the poll (its partition is restoring).
pub(super) struct Held {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
    partition: i32,
    offset: i64,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Held {
    /// A copy of `incoming`.
    pub(super) fn of(incoming: &Incoming<'_>) -> Self {
        let record = incoming.record;
        Self {
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.to_vec(),
            timestamp: record.timestamp,
            partition: record.partition,
            offset: record.offset,
            headers: incoming
                .headers
                .iter()
                .map(|(name, value)| (name.to_vec(), value.to_vec()))
                .collect(),
        }
    }

    /// The record, to take now.
    pub(super) fn incoming(&self) -> Incoming<'_> {
        Incoming {
            record: RecordRef {
                key: self.key.as_deref(),
                value: &self.value,
                timestamp: self.timestamp,
                partition: self.partition,
                offset: self.offset,
            },
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_slice(), value.as_slice()))
                .collect(),
        }
    }
}

/// Checks one record and adds it to the batch, or to the dead letters.
pub(super) fn add(slot: &mut Open, incoming: &Incoming<'_>, settings: &SourceSettings) {
    let record = incoming.record;
    let partition = record.partition;
    slot.since.get_or_insert_with(Instant::now);
    match slot.offsets.iter_mut().find(|(p, _)| *p == partition) {
        Some(next) => next.1 = record.offset + 1,
        None => slot.offsets.push((partition, record.offset + 1)),
    }
    if let Some(letter) = refuse(record, settings).or_else(|| refuse_headers(incoming)) {
        slot.dead.push(letter);
        return;
    }
    slot.builder.push(record);
    for (name, value) in &incoming.headers {
        // Checked by `refuse_headers`.
        let name = std::str::from_utf8(name).expect("a UTF-8 header name");
        slot.builder.header(name, value);
    }
}

/// The dead letter of a record with a header whose name is not UTF-8:
/// Kafka's header names are text, and so are the names plugins read.
fn refuse_headers(incoming: &Incoming<'_>) -> Option<DeadLetter> {
    let (index, name) = incoming
        .headers
        .iter()
        .enumerate()
        .find_map(|(index, (name, _))| {
            std::str::from_utf8(name).is_err().then_some((index, name))
        })?;
    let shown: String = name
        .iter()
        .take(32)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let reason = format!(
        "header {index}'s name is not UTF-8 (hex {shown}{}); Kafka header names are text, \
         and so are the names weir's plugins read",
        if name.len() > 32 { "…" } else { "" }
    );
    Some(DeadLetter::malformed(
        incoming.record,
        "source",
        "header-not-utf8",
        reason,
    ))
}

/// The source's own check: the dead letter of a value too big to pass on.
fn refuse(record: RecordRef<'_>, settings: &SourceSettings) -> Option<DeadLetter> {
    let size = record.value.len();
    if size <= settings.max_record_bytes {
        return None;
    }
    // The dead letter says where the value is instead of carrying it (the
    // dead-letter topic takes no larger messages either).
    let reason = format!(
        "the value is {size} bytes; the source takes at most {} (`max_record_bytes`); \
         it is left out of the dead letter: read it from the source topic at the \
         partition and offset in the headers",
        settings.max_record_bytes
    );
    let record = RecordRef {
        value: &[],
        ..record
    };
    Some(DeadLetter::malformed(record, "source", "oversized", reason))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plugin::BatchExt;

    fn settings() -> SourceSettings {
        SourceSettings {
            max_records: 10,
            max_wait: Duration::from_millis(10),
            max_record_bytes: 64,
            kafka: crate::kafka::Connection::new(""),
            topic: String::new(),
            changelog: None,
        }
    }

    #[test]
    fn a_header_name_that_is_not_utf8_is_dead_lettered_and_the_rest_goes_on() {
        let record = |offset: i64| RecordRef {
            key: Some(b"k"),
            value: b"{}",
            timestamp: 1,
            partition: 2,
            offset,
        };
        let hostile = Incoming {
            record: record(7),
            headers: vec![(b"fine", b"1"), (b"\xff\xfename", b"\x00\xff")],
        };
        let plain = Incoming {
            record: record(8),
            headers: vec![(b"trace", b"\x00\xff")],
        };
        let mut open = Open::default();
        // Held while its partition restores, then taken: the same record.
        add(&mut open, &Held::of(&hostile).incoming(), &settings());
        add(&mut open, &plain, &settings());
        let chunk = open.take();
        assert_eq!(chunk.offsets, [(2, 9)]);
        let [letter] = chunk.dead.as_slice() else {
            panic!("one dead letter: {:?}", chunk.dead);
        };
        assert_eq!(
            (letter.code.as_str(), letter.offset),
            ("header-not-utf8", 7)
        );
        assert!(
            letter
                .reason
                .contains("header 1's name is not UTF-8 (hex fffe6e616d65)"),
            "{}",
            letter.reason
        );
        assert_eq!(chunk.batch.records.len(), 1);
        assert_eq!(chunk.batch.record(0).offset, 8);
        let headers = chunk.batch.headers_of(0);
        assert_eq!(headers.len(), 1);
        assert_eq!(
            (headers[0].key.as_str(), headers[0].value.as_slice()),
            ("trace", &b"\x00\xff"[..])
        );
    }

    #[test]
    fn the_source_refuses_what_is_too_big() {
        let settings = settings();
        let refused = |value: &[u8]| {
            let record = RecordRef {
                key: Some(b"k"),
                value,
                timestamp: 1,
                partition: 2,
                offset: 3,
            };
            refuse(record, &settings).map(|letter| (letter.code, letter.value))
        };
        assert_eq!(refused(&[b' '; 64]), None);
        assert_eq!(
            refused(b"\xff\x00"),
            None,
            "the format is the shard's to check"
        );
        let (code, value) = refused(&[b' '; 65]).expect("refused");
        assert_eq!(code, "oversized");
        assert!(value.is_empty(), "an oversized value is left out");
    }
}
