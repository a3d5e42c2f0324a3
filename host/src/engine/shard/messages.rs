//! What flows through a shard: [`Input`] from the source, a [`Chunk`] of
//! records, and the [`Flush`] it hands to delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::super::changelog::Stored;
use super::super::swap::Order;
use crate::plugin::{Batch, BatchBuilder};
use crate::sink::{DeadLetter, Records};

/// What the source sends a shard.
#[derive(Debug)]
pub enum Input {
    /// Records to process.
    Chunk(Chunk),
    /// A stage's plugin is replaced, from the next batch on.
    Swap(Arc<Order>),
    /// A partition is now the shard's, with its state as the changelog holds it.
    Restore {
        /// The partition.
        partition: i32,
        /// Its keys' state.
        entries: HashMap<Vec<u8>, Stored>,
    },
    /// Partitions are leaving: write what they hold now (unless `lost`: then
    /// another owner has them already), and forget them.
    Revoke {
        /// The partitions.
        partitions: Vec<i32>,
        /// The group took them without asking; writing is too late.
        lost: bool,
        /// Set when the source stopped waiting for this revocation: the
        /// partitions may have a new owner by now, so nothing is written.
        abandoned: Arc<std::sync::atomic::AtomicBool>,
        /// Told once their last flush is committed (or forgotten, if lost).
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Records read from the source for one shard.
#[derive(Debug)]
pub struct Chunk {
    /// The records that passed the source's checks.
    pub batch: Batch,
    /// The records that did not.
    pub dead: Vec<DeadLetter>,
    /// For each partition in the chunk, the offset after its last record.
    pub offsets: Vec<(i32, i64)>,
}

impl Chunk {
    /// The bytes of keys and values it holds (the memory it stands for).
    pub fn bytes(&self) -> usize {
        self.batch.data.len()
            + self
                .dead
                .iter()
                .map(|letter| letter.value.len())
                .sum::<usize>()
    }
}

/// What one flush hands to delivery; once the sinks have its records,
/// `offsets` may be committed.
#[derive(Debug)]
pub struct Flush {
    /// Rows, dead letters and state changes since the last flush.
    pub records: Records,
    /// Per partition, the offset to commit (the next one to read).
    pub offsets: Vec<(i32, i64)>,
    /// The epoch under which the shard owned each partition it holds
    /// records of ([`Ownership`]).
    pub epochs: Vec<(i32, u64)>,
    /// When the shard made it (delivery reports how long it waited).
    pub made: Instant,
    /// Told once the flush is written and its offsets committed.
    pub done: Option<std::sync::mpsc::Sender<()>>,
}

impl Chunk {
    /// The chunk with only the records of partitions `keep` accepts.
    pub fn retain(self, keep: impl Fn(i32) -> bool) -> Self {
        if self.offsets.iter().all(|(p, _)| keep(*p)) {
            return self;
        }
        let mut builder = BatchBuilder::default();
        for (index, record) in self.batch.records.iter().enumerate() {
            if keep(record.partition) {
                builder.push_from(&self.batch, index);
            }
        }
        Self {
            batch: builder.build(),
            dead: self
                .dead
                .into_iter()
                .filter(|letter| keep(letter.partition))
                .collect(),
            offsets: self.offsets.into_iter().filter(|(p, _)| keep(*p)).collect(),
        }
    }
}
