//! A batch being filled for one shard, and the source's own check of each
//! record on its way in: a value too big to pass on is dead-lettered here.

use std::time::Instant;

use rdkafka::Message;
use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};

use super::SourceSettings;
use crate::engine::shard::Chunk;
use crate::plugin::{BatchBuilder, RecordRef};
use crate::sink::DeadLetter;

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

/// A copy of `message` that outlives the poll.
pub(super) fn owned(message: &impl Message) -> OwnedMessage {
    OwnedMessage::new(
        message.payload().map(<[u8]>::to_vec),
        message.key().map(<[u8]>::to_vec),
        message.topic().to_owned(),
        message.timestamp(),
        message.partition(),
        message.offset(),
        message.headers().map(|headers| {
            headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.count()),
                |owned, header| owned.insert(header),
            )
        }),
    )
}

/// Checks one record and adds it to the batch, or to the dead letters.
pub(super) fn add(slot: &mut Open, message: &impl Message, settings: &SourceSettings) {
    let partition = message.partition();
    let offset = message.offset();
    let record = RecordRef {
        key: message.key(),
        value: message.payload().unwrap_or_default(),
        timestamp: message.timestamp().to_millis().unwrap_or_default(),
        partition,
        offset,
    };
    slot.since.get_or_insert_with(Instant::now);
    match slot.offsets.iter_mut().find(|(p, _)| *p == partition) {
        Some(next) => next.1 = offset + 1,
        None => slot.offsets.push((partition, offset + 1)),
    }
    if let Some(letter) = refuse(record, settings) {
        slot.dead.push(letter);
        return;
    }
    slot.builder.push(record);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            slot.builder
                .header(header.key, header.value.unwrap_or_default());
        }
    }
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

    #[test]
    fn the_source_refuses_what_is_too_big() {
        let settings = SourceSettings {
            max_records: 10,
            max_wait: Duration::from_millis(10),
            max_record_bytes: 64,
            kafka: crate::kafka::Connection::new(""),
            topic: String::new(),
            changelog: String::new(),
        };
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
