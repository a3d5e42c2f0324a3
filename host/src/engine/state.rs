//! Host-owned keyed state of an aggregator stage, per input partition: each
//! key's state bytes, the row it last produced that the sinks have not seen
//! yet, and when its last event happened, for the idle timeout.
//!
//! Time here is *stream time*: the newest record timestamp seen in the
//! partition. Eviction by stream time gives the same result when a topic is
//! replayed as when it was read live, which wall-clock time would not.

use std::collections::HashMap;
use std::time::Duration;

use crate::plugin::Value;

/// One key's state.
#[derive(Debug)]
struct Entry {
    state: Vec<u8>,
    /// The newest row not yet handed to the sinks.
    row: Option<Vec<Value>>,
    /// Timestamp (ms) of the key's newest event.
    last_event: i64,
}

/// The state of one input partition.
#[derive(Debug, Default)]
struct PartitionState {
    entries: HashMap<Vec<u8>, Entry>,
    /// Keys whose `row` is set, in the order they changed.
    dirty: Vec<Vec<u8>>,
    /// The newest record timestamp seen (ms).
    stream_time: i64,
}

/// A changed row for the sinks.
pub type Row = (String, Vec<Value>);

/// Keyed state of the partitions one shard owns.
#[derive(Debug, Default)]
pub struct KeyedState {
    partitions: HashMap<i32, PartitionState>,
}

impl KeyedState {
    /// The state of `key` in `partition`, if it has any.
    pub fn get(&self, partition: i32, key: &[u8]) -> Option<&[u8]> {
        self.partitions
            .get(&partition)?
            .entries
            .get(key)
            .map(|entry| entry.state.as_slice())
    }

    /// Records the result of a key's events: its new state, the row if it
    /// changed, and the newest event time among them.
    pub fn update(
        &mut self,
        partition: i32,
        key: &[u8],
        state: Vec<u8>,
        row: Option<Vec<Value>>,
        last_event: i64,
    ) {
        let partition = self.partitions.entry(partition).or_default();
        partition.stream_time = partition.stream_time.max(last_event);
        let entry = match partition.entries.get_mut(key) {
            Some(entry) => entry,
            None => partition
                .entries
                .entry(key.to_vec())
                .or_insert_with(|| Entry {
                    state: Vec::new(),
                    row: None,
                    last_event,
                }),
        };
        entry.state = state;
        entry.last_event = entry.last_event.max(last_event);
        if let Some(row) = row {
            if entry.row.is_none() {
                partition.dirty.push(key.to_vec());
            }
            entry.row = Some(row);
        }
    }

    /// Advances a partition's stream time (records that reached no state
    /// still move time on).
    pub fn observe(&mut self, partition: i32, timestamp: i64) {
        let partition = self.partitions.entry(partition).or_default();
        partition.stream_time = partition.stream_time.max(timestamp);
    }

    /// Takes every row changed since the last call, each key once with its
    /// newest row. Keys must be UTF-8 (checked when their events came in).
    pub fn take_changed(&mut self) -> Vec<Row> {
        let mut rows = Vec::new();
        for partition in self.partitions.values_mut() {
            for key in partition.dirty.drain(..) {
                let Some(entry) = partition.entries.get_mut(&key) else {
                    continue;
                };
                if let Some(row) = entry.row.take() {
                    let key = String::from_utf8(key).expect("keys are checked to be UTF-8");
                    rows.push((key, row));
                }
            }
        }
        rows
    }

    /// Forgets keys whose newest event is more than `idle` older than their
    /// partition's stream time. Their last row must have been taken (call
    /// [`Self::take_changed`] first); it stays in the sinks. Returns how
    /// many keys were evicted.
    pub fn evict_idle(&mut self, idle: Duration) -> usize {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let mut evicted = 0;
        for partition in self.partitions.values_mut() {
            let horizon = partition.stream_time.saturating_sub(idle_ms);
            let before = partition.entries.len();
            partition
                .entries
                .retain(|_, entry| entry.row.is_some() || entry.last_event >= horizon);
            evicted += before - partition.entries.len();
        }
        evicted
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.entries.len()).sum()
    }

    /// True when no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: i64) -> Option<Vec<Value>> {
        Some(vec![Value::Long(n)])
    }

    #[test]
    fn changed_rows_come_out_once_each_with_the_newest_row() {
        let mut state = KeyedState::default();
        state.update(0, b"a", b"1".to_vec(), row(1), 10);
        state.update(0, b"a", b"2".to_vec(), row(2), 11);
        state.update(1, b"b", b"1".to_vec(), None, 12);
        assert_eq!(
            state.take_changed(),
            vec![("a".into(), vec![Value::Long(2)])]
        );
        assert!(state.take_changed().is_empty(), "nothing changed since");
        assert_eq!(state.get(0, b"a"), Some(&b"2"[..]));
        assert_eq!(state.get(1, b"b"), Some(&b"1"[..]));
    }

    #[test]
    fn idle_keys_are_evicted_by_stream_time_but_not_before_their_row_is_taken() {
        let mut state = KeyedState::default();
        let minute = 60_000;
        state.update(0, b"old", vec![], row(1), 0);
        state.update(0, b"new", vec![], row(2), 10 * minute);
        assert_eq!(
            state.evict_idle(Duration::from_secs(300)),
            0,
            "rows pending"
        );
        state.take_changed();
        assert_eq!(state.evict_idle(Duration::from_secs(300)), 1);
        assert_eq!(state.get(0, b"old"), None);
        assert!(state.get(0, b"new").is_some());
        // Another partition's clock does not age this one's keys.
        state.update(1, b"other", vec![], None, 100 * minute);
        assert_eq!(state.evict_idle(Duration::from_secs(300)), 0);
        assert_eq!(state.len(), 2);
    }
}
