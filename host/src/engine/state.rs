//! Host-owned keyed state of an aggregator stage, per input partition: each
//! key's state bytes, the offset of the last record folded into it (its
//! *applied offset*), the row it last produced that the sinks have not seen
//! yet, and when its last event happened, for the idle timeout.
//!
//! Every change is also written to the stage's changelog topic
//! ([`super::changelog`]) at the next flush, with the applied offset; a
//! restarted or new owner of the partition restores the state from there
//! and skips the records each key has already applied. That makes replaying
//! records after a crash harmless: nothing is counted twice.
//!
//! Time here is *stream time*: the newest record timestamp seen in the
//! partition. Eviction by stream time gives the same result when a topic is
//! replayed as when it was read live, which wall-clock time would not.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::changelog::{ChangelogRecord, Stored};
use super::origin::Origins;
use crate::plugin::Value;

/// The generation of a row no aggregator of this process made (state
/// restored from another version); generations count up from 0.
const NO_GENERATION: u64 = u64::MAX;

/// One key's state.
#[derive(Debug)]
struct Entry {
    state: Vec<u8>,
    /// The state version of the plugin that wrote `state`.
    version: u32,
    /// The aggregator generation (one per swap) that made the key's newest row.
    generation: u64,
    /// Offset of the newest record folded into `state`.
    applied: i64,
    /// Behind a repartition topic: the newest source record folded in, per
    /// source partition (empty otherwise).
    origins: Origins,
    /// The newest row not yet handed to the sinks.
    row: Option<Vec<Value>>,
    /// The aggregator generation that made `row` (its shape).
    row_generation: u64,
    /// Timestamp (ms) of the key's newest event.
    last_event: i64,
    /// Changed since the last flush (its changelog record is due).
    changed: bool,
}

/// The state of one input partition.
#[derive(Debug, Default)]
struct PartitionState {
    entries: foldhash::HashMap<Vec<u8>, Entry>,
    /// Keys changed since the last flush, in the order they changed.
    dirty: Vec<Vec<u8>>,
    /// Keys evicted since the last flush: their changelog tombstones are due.
    evicted: Vec<Vec<u8>>,
    /// The newest record timestamp seen (ms), at most the state's
    /// `trusted_until`.
    stream_time: i64,
    /// Bytes of the keys and their state.
    bytes: usize,
}

/// Bytes a key and its state take.
fn footprint(key: &[u8], state: &[u8]) -> usize {
    key.len() + state.len()
}

/// Gives `entry` its new `state`, keeping its partition's `bytes` right.
fn replace_state(bytes: &mut usize, entry: &mut Entry, state: Vec<u8>) {
    *bytes = *bytes + state.len() - entry.state.len();
    entry.state = state;
}

/// What folding some of a key's events produced.
#[derive(Debug)]
pub struct Folded {
    /// The key's new state.
    pub state: Vec<u8>,
    /// Its new row, if the row changed.
    pub row: Option<Vec<Value>>,
    /// The offset of the newest event folded in.
    pub applied: i64,
    /// Behind a repartition topic: the newest source record among them, per
    /// source partition.
    pub origins: Origins,
    /// The newest event time (ms) among them.
    pub last_event: i64,
}

/// A changed row for the sinks.
pub use crate::sink::Row;

/// What changed since the last flush.
#[derive(Debug, Default)]
pub struct Changes {
    /// Each key whose row changed, once, with its newest row, the
    /// aggregator generation that made it and the key's partition.
    pub rows: Vec<(u64, i32, Row)>,
    /// The changelog records that bring the changelog up to date.
    pub changelog: Vec<ChangelogRecord>,
}

/// Keyed state of the partitions one shard owns.
#[derive(Debug)]
pub struct KeyedState {
    partitions: HashMap<i32, PartitionState>,
    /// The running aggregator's state version, given to the state it writes.
    state_version: u32,
    /// The running aggregator's generation: it changes with every swap.
    generation: u64,
    /// The newest time stream time may reach (ms): the wall clock plus the
    /// skew allowed, so one record dated far ahead cannot age every key.
    trusted_until: i64,
    /// The keys every shard of the pipeline holds, and the most they may.
    keys: Arc<KeyBudget>,
}

/// How many keys a pipeline's shards hold state for together, and the most
/// they may (`max_keys`). Restored keys always count; new keys are refused
/// once the most is reached, until evictions make room.
#[derive(Debug)]
pub struct KeyBudget {
    max: u64,
    held: AtomicU64,
}

impl KeyBudget {
    /// A budget of `max` keys, none held.
    pub fn new(max: u64) -> Self {
        Self {
            max,
            held: AtomicU64::new(0),
        }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    /// The most keys.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// How many more keys may be added now.
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.held.load(Ordering::Relaxed))
    }

    fn add(&self, keys: usize) {
        self.held.fetch_add(keys as u64, Ordering::Relaxed);
    }

    fn remove(&self, keys: usize) {
        self.held.fetch_sub(keys as u64, Ordering::Relaxed);
    }
}

impl Drop for KeyedState {
    /// Its keys leave the pipeline's count.
    fn drop(&mut self) {
        self.keys.remove(self.len());
    }
}

/// A key's state as the aggregator gets it.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The state bytes.
    pub state: &'a [u8],
    /// Their state version.
    pub version: u32,
    /// The newest input offset folded in.
    pub applied: i64,
    /// Behind a repartition topic: the newest source record folded in, per
    /// source partition.
    pub origins: &'a Origins,
}

impl KeyedState {
    /// Empty state of an aggregator whose state format is `state_version`.
    pub fn new(state_version: u32) -> Self {
        Self {
            partitions: HashMap::new(),
            state_version,
            generation: 0,
            trusted_until: i64::MAX,
            keys: Arc::new(KeyBudget::unlimited()),
        }
    }

    /// Empty state whose keys count toward `keys`, shared with the
    /// pipeline's other shards.
    pub fn with_budget(state_version: u32, keys: Arc<KeyBudget>) -> Self {
        let mut state = Self::new(state_version);
        state.keys = keys;
        state
    }

    /// How many more keys may be added now (the pipeline's `max_keys`,
    /// less the keys every shard holds).
    pub fn room(&self) -> u64 {
        self.keys.room()
    }

    /// The pipeline's `max_keys`.
    pub fn max_keys(&self) -> u64 {
        self.keys.max()
    }

    /// Stream time may reach `time` (ms since the epoch) and no further,
    /// from now on: records dated later count as dated `time`, for stream
    /// time and their key's last event (the plugins still see their own
    /// timestamps). The shard sets it to its wall clock plus the source's
    /// `max_clock_skew` before every batch.
    pub fn trust_until(&mut self, time: i64) {
        self.trusted_until = time;
    }

    /// The newest time stream time may reach now ([`Self::trust_until`]).
    pub fn trusted_until(&self) -> i64 {
        self.trusted_until
    }

    /// A new aggregator version takes over: the state it writes has
    /// `state_version`; keys whose row an older generation made are listed
    /// by [`Self::stale_keys`].
    pub fn new_generation(&mut self, state_version: u32) -> u64 {
        self.state_version = state_version;
        self.generation += 1;
        self.generation
    }

    /// Every key whose newest row an older aggregator generation made.
    pub fn stale_keys(&self) -> Vec<(i32, Vec<u8>)> {
        let generation = self.generation;
        self.partitions
            .iter()
            .flat_map(|(&partition, state)| {
                state
                    .entries
                    .iter()
                    .filter(move |(_, entry)| entry.generation != generation)
                    .map(move |(key, _)| (partition, key.clone()))
            })
            .collect()
    }

    /// True when `key`'s newest row is the running generation's.
    pub fn is_current(&self, partition: i32, key: &[u8]) -> bool {
        self.partitions
            .get(&partition)
            .and_then(|p| p.entries.get(key))
            .is_none_or(|entry| entry.generation == self.generation)
    }

    /// Replaces a key's state and row as the running generation computed
    /// them without new events (after a swap); its offsets and times stay.
    pub fn refresh(&mut self, partition: i32, key: &[u8], state: Vec<u8>, row: Option<Vec<Value>>) {
        let (version, generation) = (self.state_version, self.generation);
        let Some(partition) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(entry) = partition.entries.get_mut(key) else {
            return;
        };
        replace_state(&mut partition.bytes, entry, state);
        entry.version = version;
        entry.generation = generation;
        if row.is_some() {
            entry.row = row;
            entry.row_generation = generation;
        }
        if !entry.changed {
            entry.changed = true;
            partition.dirty.push(key.to_vec());
        }
    }

    /// The state of `key` in `partition`, if it has any.
    pub fn get(&self, partition: i32, key: &[u8]) -> Option<Held<'_>> {
        self.partitions
            .get(&partition)?
            .entries
            .get(key)
            .map(|entry| Held {
                state: entry.state.as_slice(),
                version: entry.version,
                applied: entry.applied,
                origins: &entry.origins,
            })
    }

    /// Every key's state: partition, key, state.
    pub fn entries(&self) -> impl Iterator<Item = (i32, &[u8], Held<'_>)> {
        self.partitions.iter().flat_map(|(&number, partition)| {
            partition.entries.iter().map(move |(key, entry)| {
                let held = Held {
                    state: entry.state.as_slice(),
                    version: entry.version,
                    applied: entry.applied,
                    origins: &entry.origins,
                };
                (number, key.as_slice(), held)
            })
        })
    }

    /// Records the result of a key's events.
    pub fn update(&mut self, partition: i32, key: &[u8], folded: Folded) {
        let Folded {
            state,
            row,
            applied,
            origins,
            last_event,
        } = folded;
        let (version, generation) = (self.state_version, self.generation);
        let last_event = last_event.min(self.trusted_until);
        let partition = self.partitions.entry(partition).or_default();
        partition.stream_time = partition.stream_time.max(last_event);
        let entry = match partition.entries.get_mut(key) {
            Some(entry) => entry,
            None => partition.entries.entry(key.to_vec()).or_insert_with(|| {
                self.keys.add(1);
                partition.bytes += key.len();
                Entry {
                    state: Vec::new(),
                    version,
                    generation,
                    row_generation: generation,
                    applied,
                    origins: Origins::default(),
                    row: None,
                    last_event,
                    changed: false,
                }
            }),
        };
        replace_state(&mut partition.bytes, entry, state);
        entry.version = version;
        entry.applied = entry.applied.max(applied);
        entry.origins.merge(&origins);
        entry.last_event = entry.last_event.max(last_event);
        if !entry.changed {
            entry.changed = true;
            partition.dirty.push(key.to_vec());
        }
        if row.is_some() {
            entry.row = row;
            entry.row_generation = generation;
            entry.generation = generation;
        }
    }

    /// Advances a partition's stream time (records that reached no state
    /// still move time on); true when `timestamp` is later than stream
    /// time may go ([`Self::trust_until`]), so it moved time only that far.
    pub fn observe(&mut self, partition: i32, timestamp: i64) -> bool {
        let ahead = timestamp > self.trusted_until;
        let partition = self.partitions.entry(partition).or_default();
        partition.stream_time = partition.stream_time.max(timestamp.min(self.trusted_until));
        ahead
    }

    /// Takes every change since the last call: each changed key's newest
    /// row, once, and the changelog records of changed and evicted keys.
    /// Keys must be UTF-8 (checked when their events came in).
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for (&number, partition) in &mut self.partitions {
            for key in partition.dirty.drain(..) {
                let Some(entry) = partition.entries.get_mut(&key) else {
                    continue;
                };
                entry.changed = false;
                changes.changelog.push(ChangelogRecord {
                    partition: number,
                    value: Some(
                        Stored {
                            state_version: entry.version,
                            applied: entry.applied,
                            origins: entry.origins.clone(),
                            last_event: entry.last_event,
                            state: entry.state.clone(),
                        }
                        .encode(),
                    ),
                    key: key.clone(),
                });
                if let Some(row) = entry.row.take() {
                    let key = String::from_utf8(key).expect("keys are checked to be UTF-8");
                    changes
                        .rows
                        .push((entry.row_generation, number, (key, row)));
                }
            }
            changes
                .changelog
                .extend(partition.evicted.drain(..).map(|key| ChangelogRecord {
                    partition: number,
                    key,
                    value: None,
                }));
        }
        changes
    }

    /// Forgets keys whose newest event is more than `idle` older than their
    /// partition's stream time, once everything they applied is committed
    /// (`committed(partition)`: the partition's committed offset), so no
    /// replay can bring their events back. Their last row must have been
    /// taken ([`Self::take_changes`]); it stays in the sinks. Returns how
    /// many keys were evicted.
    pub fn evict_idle(&mut self, idle: Duration, committed: impl Fn(i32) -> Option<i64>) -> usize {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let mut evicted = 0;
        for (&number, partition) in &mut self.partitions {
            let Some(committed) = committed(number) else {
                continue;
            };
            let horizon = partition.stream_time.saturating_sub(idle_ms);
            let gone = &mut partition.evicted;
            let bytes = &mut partition.bytes;
            let before = gone.len();
            partition.entries.retain(|key, entry| {
                let keep = entry.changed
                    || entry.row.is_some()
                    || entry.last_event >= horizon
                    || entry.applied >= committed;
                if !keep {
                    *bytes -= footprint(key, &entry.state);
                    gone.push(key.clone());
                }
                keep
            });
            evicted += gone.len() - before;
        }
        self.keys.remove(evicted);
        evicted
    }

    /// Takes over `partition`'s state restored from the changelog.
    pub fn restore(&mut self, partition: i32, entries: HashMap<Vec<u8>, Stored>) {
        let mut restored = PartitionState::default();
        restored.entries.reserve(entries.len());
        for (key, stored) in entries {
            // Written before a limit, or by a machine whose clock ran ahead.
            let last_event = stored.last_event.min(self.trusted_until);
            restored.stream_time = restored.stream_time.max(last_event);
            restored.bytes += footprint(&key, &stored.state);
            // State another version wrote made a row of that version's
            // shape: not the running generation's, so it is refreshed.
            let generation = if stored.state_version == self.state_version {
                self.generation
            } else {
                NO_GENERATION
            };
            restored.entries.insert(
                key,
                Entry {
                    state: stored.state,
                    version: stored.state_version,
                    generation,
                    row_generation: self.generation,
                    applied: stored.applied,
                    origins: stored.origins,
                    row: None,
                    last_event,
                    changed: false,
                },
            );
        }
        self.keys.add(restored.entries.len());
        if let Some(replaced) = self.partitions.insert(partition, restored) {
            self.keys.remove(replaced.entries.len());
        }
    }

    /// Forgets `partition` (it moved to another owner).
    pub fn remove(&mut self, partition: i32) {
        if let Some(removed) = self.partitions.remove(&partition) {
            self.keys.remove(removed.entries.len());
        }
    }

    /// Bytes the keys held and their state take.
    pub fn bytes(&self) -> usize {
        self.partitions.values().map(|p| p.bytes).sum()
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

    fn folded(state: Vec<u8>, row: Option<Vec<Value>>, applied: i64, last_event: i64) -> Folded {
        Folded {
            state,
            row,
            applied,
            origins: Origins::default(),
            last_event,
        }
    }

    fn row(n: i64) -> Option<Vec<Value>> {
        Some(vec![Value::Long(n)])
    }

    fn stored(record: &ChangelogRecord) -> Option<Stored> {
        record
            .value
            .as_deref()
            .map(|value| Stored::decode(value).expect("decodes"))
    }

    /// The bytes of every key and state, counted afresh.
    fn recount(state: &KeyedState) -> usize {
        state
            .entries()
            .map(|(_, key, held)| key.len() + held.state.len())
            .sum()
    }

    #[test]
    fn the_byte_count_follows_every_change() {
        let mut state = KeyedState::new(1);
        state.update(0, b"key-a", folded(vec![1; 10], row(1), 1, 10));
        state.update(0, b"key-a", folded(vec![1; 30], row(2), 2, 11));
        state.update(1, b"b", folded(vec![2; 5], None, 3, 1_000_000));
        assert_eq!(state.bytes(), 5 + 30 + 1 + 5);
        state.refresh(0, b"key-a", vec![3; 7], None);
        assert_eq!(state.bytes(), recount(&state));
        state.take_changes();
        // Time moves on in partition 0: key-a is idle and applied, so
        // evicted; b is recent: kept.
        state.observe(0, 1_000_000);
        assert_eq!(state.evict_idle(Duration::from_secs(1), |_| Some(100)), 1);
        assert_eq!((state.bytes(), recount(&state)), (6, 6));
        let mut restored = HashMap::new();
        restored.insert(
            b"cc".to_vec(),
            Stored {
                state_version: 1,
                applied: 5,
                origins: Origins::default(),
                last_event: 5,
                state: vec![4; 9],
            },
        );
        state.restore(2, restored);
        assert_eq!((state.bytes(), recount(&state)), (17, 17));
        state.remove(1);
        assert_eq!((state.bytes(), recount(&state)), (11, 11));
    }

    #[test]
    fn changes_come_out_once_each_with_the_newest_row_and_state() {
        let mut state = KeyedState::new(3);
        state.update(0, b"a", folded(b"1".to_vec(), row(1), 100, 10));
        state.update(0, b"a", folded(b"2".to_vec(), row(2), 101, 11));
        state.update(1, b"b", folded(b"1".to_vec(), None, 7, 12));
        let mut changes = state.take_changes();
        assert_eq!(
            changes.rows,
            vec![(0, 0, ("a".into(), vec![Value::Long(2)]))]
        );
        changes.changelog.sort_by_key(|r| r.partition);
        assert_eq!(
            changes.changelog.len(),
            2,
            "a key's state once, with or without a row"
        );
        let a = stored(&changes.changelog[0]).expect("a value");
        assert_eq!(
            (a.state_version, a.applied, a.last_event, a.state.as_slice()),
            (3, 101, 11, &b"2"[..])
        );
        assert_eq!(changes.changelog[1].key, b"b");
        let next = state.take_changes();
        assert!(
            next.rows.is_empty() && next.changelog.is_empty(),
            "nothing changed since"
        );
        let held = |state: &KeyedState, p, k: &[u8]| {
            state.get(p, k).map(|h| (h.state.to_vec(), h.applied))
        };
        assert_eq!(held(&state, 0, b"a"), Some((b"2".to_vec(), 101)));
        assert_eq!(held(&state, 1, b"b"), Some((b"1".to_vec(), 7)));
    }

    #[test]
    fn idle_keys_are_evicted_by_stream_time_once_committed_and_leave_a_tombstone() {
        let mut state = KeyedState::new(1);
        let minute = 60_000;
        let idle = Duration::from_secs(300);
        state.update(0, b"old", folded(vec![], row(1), 5, 0));
        state.update(0, b"new", folded(vec![], row(2), 6, 10 * minute));
        assert_eq!(state.evict_idle(idle, |_| Some(100)), 0, "changes pending");
        state.take_changes();
        assert_eq!(
            state.evict_idle(idle, |_| Some(5)),
            0,
            "offset 5 is not committed yet"
        );
        assert_eq!(state.evict_idle(idle, |_| None), 0, "nothing committed");
        assert_eq!(state.evict_idle(idle, |_| Some(6)), 1);
        assert!(state.get(0, b"old").is_none());
        assert!(state.get(0, b"new").is_some());
        let changes = state.take_changes();
        assert_eq!(changes.changelog.len(), 1);
        assert_eq!(changes.changelog[0].key, b"old");
        assert_eq!(changes.changelog[0].value, None, "a tombstone");
        // Another partition's clock does not age this one's keys.
        state.update(1, b"other", folded(vec![], None, 1, 100 * minute));
        state.take_changes();
        assert_eq!(state.evict_idle(idle, |_| Some(100)), 0);
        assert_eq!(state.len(), 2);
    }

    /// One record dated far ahead (year 3000) among keys of today: without
    /// a limit it moves the partition's stream time there, every other
    /// key looks idle and is evicted at the next sweep, and a later event
    /// of theirs starts a fresh aggregate whose row overwrites the
    /// complete one in the sinks. After a restart the restored stream time
    /// is the changelog's newest `last_event`: year 3000 again.
    #[test]
    fn a_record_dated_far_ahead_evicts_no_key_and_survives_no_restart() {
        let minute = 60_000;
        let now = 1_800_000_000_000; // 2027
        let year_3000 = 32_503_680_000_000;
        let idle = Duration::from_secs(30 * 60);
        let run = |trusted_until: Option<i64>| {
            let mut state = KeyedState::new(1);
            if let Some(until) = trusted_until {
                state.trust_until(until);
            }
            state.update(0, b"today", folded(vec![], row(1), 1, now - minute));
            assert_eq!(
                state.observe(0, year_3000),
                trusted_until.is_some(),
                "the record is counted as ahead when there is a limit"
            );
            state.update(0, b"ahead", folded(vec![], row(2), 2, year_3000));
            let changes = state.take_changes();
            let evicted = state.evict_idle(idle, |_| Some(3));
            // A restart: the state as the changelog holds it.
            let mut restarted = KeyedState::new(1);
            if let Some(until) = trusted_until {
                restarted.trust_until(until);
            }
            let entries = changes
                .changelog
                .iter()
                .map(|record| (record.key.clone(), stored(record).expect("a value")))
                .collect();
            restarted.restore(0, entries);
            let evicted_after_restart = restarted.evict_idle(idle, |_| Some(3));
            (evicted, evicted_after_restart)
        };
        assert_eq!(
            run(None),
            (1, 1),
            "no limit: the key of today is evicted, before and after a restart"
        );
        let skew = minute;
        assert_eq!(
            run(Some(now + skew)),
            (0, 0),
            "stream time trusted only up to now + skew: nothing is idle"
        );
    }

    #[test]
    fn restored_state_carries_applied_offsets_and_stream_time() {
        let mut state = KeyedState::new(1);
        let entries = HashMap::from([(
            b"k".to_vec(),
            Stored {
                state_version: 1,
                applied: 41,
                origins: Origins::default(),
                last_event: 9,
                state: b"s".to_vec(),
            },
        )]);
        state.restore(2, entries);
        let held = state.get(2, b"k").expect("restored");
        assert_eq!((held.state, held.version, held.applied), (&b"s"[..], 1, 41));
        assert!(state.is_current(2, b"k"), "the running version's state");
        let other = HashMap::from([(
            b"v2".to_vec(),
            Stored {
                state_version: 2,
                applied: 7,
                origins: Origins::default(),
                last_event: 9,
                state: b"t".to_vec(),
            },
        )]);
        state.restore(3, other);
        assert!(!state.is_current(3, b"v2"), "another version's state");
        assert_eq!(state.stale_keys(), vec![(3, b"v2".to_vec())]);
        assert!(
            state.take_changes().changelog.is_empty(),
            "restoring is no change"
        );
        state.remove(2);
        state.remove(3);
        assert!(state.is_empty());
    }
}
