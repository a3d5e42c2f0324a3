//! The largest key, state, row and dead letter the sinks can always write.
//! The engine checks these before anything reaches a sink, so a record that
//! could never be written becomes a dead letter with the reason instead of a
//! flush retried forever (PostgreSQL refusing an index entry over 2 704
//! bytes, Kafka refusing a message over its 1 MB limit).

use crate::plugin::Value;

/// The longest state key, in bytes. A key is the primary key of the
/// PostgreSQL table (a B-tree index entry holds at most 2 704 bytes) and
/// the key of every Kafka message written for it.
pub const MAX_KEY_BYTES: usize = 1024;

/// The largest state of one key, in bytes: with its key and header it fits
/// a changelog message (Kafka takes at most 1 000 000 bytes from weir's
/// producers, `message.max.bytes`).
pub const MAX_STATE_BYTES: usize = 900_000;

/// The largest row, in bytes, as [`row_bytes`] counts it: its Avro message
/// then fits Kafka's 1 000 000 bytes with its key.
pub const MAX_ROW_BYTES: usize = 900_000;

/// The most a dead letter's key, value and headers may take together: its
/// message then fits the dead-letter producer's limit and a default topic's
/// (1 048 588 bytes) with room for Kafka's own framing.
pub const MAX_DEAD_LETTER_BYTES: usize = 1_000_000;

/// The largest record a pipeline without an aggregator writes, its key,
/// value and headers together: its message then fits Kafka's 1 000 000
/// bytes with the record's framing.
pub const MAX_EMITTED_BYTES: usize = 900_000;

/// The longest dead-letter reason, in bytes (a plugin chooses it).
pub const MAX_REASON_BYTES: usize = 2048;

/// The longest dead-letter code, in bytes (a plugin chooses it).
pub const MAX_CODE_BYTES: usize = 64;

/// An upper bound of `row`'s size in any sink's encoding that counts bytes
/// (Avro: each value's bytes plus at most 10 for its length or number).
pub fn row_bytes(row: &[Value]) -> usize {
    row.iter()
        .map(|value| match value {
            Value::Text(text) => text.len() + 10,
            Value::Bytes(bytes) => bytes.len() + 10,
            Value::Null | Value::Boolean(_) | Value::Long(_) | Value::Double(_) => 10,
        })
        .sum()
}

/// `text` cut to at most `max` bytes at a character boundary, ending in
/// `…` when it was cut.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_keeps_whole_characters_and_says_it_cut() {
        let mut short = "abc".to_owned();
        truncate(&mut short, 3);
        assert_eq!(short, "abc");
        // "é" is two bytes: cutting at 6 would split the third one.
        let mut accents = "éééééé".to_owned();
        truncate(&mut accents, 8);
        assert_eq!(accents, "éé…");
        assert!(accents.len() <= 8);
        let mut tiny = "abcdef".to_owned();
        truncate(&mut tiny, 4);
        assert_eq!(tiny, "a…");
    }

    #[test]
    fn a_row_counts_its_text_and_bytes_and_a_bound_per_value() {
        let row = [
            Value::Text("x".repeat(100)),
            Value::Bytes(vec![0; 50]),
            Value::Long(i64::MAX),
            Value::Null,
        ];
        assert_eq!(row_bytes(&row), 110 + 60 + 10 + 10);
    }
}
