//! Handing chunks to the shards: a busy shard's chunks wait in the source,
//! a few of them, while the others keep getting theirs; past that the
//! source waits for the shard, pausing the consumer's partitions if it
//! takes long.

use std::collections::VecDeque;
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;

use super::Source;
use super::batch::Incoming;
use crate::engine::shard::{Chunk, Input};

/// Chunks that may wait in the source for a busy shard (each up to the
/// pipeline's `max_records`) before the source waits for that shard.
const PENDING_CHUNKS: usize = 16;

/// Bytes of keys and values that may wait in the source for a busy shard
/// before the source waits for it: with large records, fewer chunks wait.
const PENDING_BYTES: usize = 64 * 1024 * 1024;

/// How long a hand-over waits on a busy shard before pausing the consumer.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

impl Source<'_> {
    /// Queues shard `shard`'s open chunk and sends what its queue takes;
    /// false when the shard has stopped.
    ///
    /// A shard whose queue is full does not hold up the others: its chunks
    /// wait here, up to [`PENDING_CHUNKS`], while the source keeps reading
    /// (librdkafka hands out runs of one partition's records, so waiting on
    /// one shard would starve the rest). Past that bound the source waits
    /// for the shard ([`Self::hand_over_all`]).
    pub(super) fn hand_over(&mut self, shard: usize) -> bool {
        let chunk = self.open[shard].take();
        self.pending[shard].push_back(chunk);
        let pending = &self.pending[shard];
        if pending.len() <= PENDING_CHUNKS
            && pending.iter().map(Chunk::bytes).sum::<usize>() <= PENDING_BYTES
        {
            return self.send_pending();
        }
        self.hand_over_all(shard)
    }

    /// Sends the chunks waiting for each shard, as many as its queue takes;
    /// false when a shard has stopped.
    pub(super) fn send_pending(&mut self) -> bool {
        // Called after every record: nothing waiting is the common case.
        if self.pending.iter().all(VecDeque::is_empty) {
            return true;
        }
        let router = self.consumer.context().router();
        for (shard, pending) in self.pending.iter_mut().enumerate() {
            let Some(sender) = router.shards.get(shard) else {
                return pending.is_empty();
            };
            while let Some(chunk) = pending.pop_front() {
                match sender.try_send(Input::Chunk(chunk)) {
                    Ok(()) => {}
                    Err(TrySendError::Disconnected(_)) => return false,
                    Err(TrySendError::Full(Input::Chunk(back))) => {
                        pending.push_front(back);
                        break;
                    }
                    Err(TrySendError::Full(_)) => unreachable!("a chunk was sent"),
                }
            }
        }
        true
    }

    /// Sends shard `shard`'s open chunk and every chunk waiting for it,
    /// waiting as long as its queue is full; false when the shard has stopped.
    ///
    /// While the shard is busy the consumer's partitions are paused and it
    /// keeps being polled: it stays in its group however long a sink stalls
    /// (a consumer that stops polling for `max.poll.interval.ms` is put out
    /// of the group). Pausing drops what librdkafka prefetched; fetching
    /// resumes from the next offset.
    pub(super) fn hand_over_all(&mut self, shard: usize) -> bool {
        if self.open[shard].records() > 0 {
            let chunk = self.open[shard].take();
            self.pending[shard].push_back(chunk);
        }
        let mut paused = false;
        let since = Instant::now();
        let delivered = loop {
            if !self.send_pending() {
                break false;
            }
            if self.pending[shard].is_empty() {
                break true;
            }
            // A busy shard is the normal pace at full speed: wait a little
            // first, since pausing throws away what was prefetched.
            if since.elapsed() < PAUSE_AFTER {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if !paused && let Ok(assignment) = self.consumer.assignment() {
                if let Err(error) = self.consumer.pause(&assignment) {
                    tracing::warn!(%error, "Could not pause the consumer's partitions.");
                }
                paused = true;
            }
            // Serves the group's events; paused partitions yield no records,
            // but one that arrives anyway is kept, not lost.
            let consumer = self.consumer;
            let polled = consumer.poll(Duration::from_millis(50));
            self.after_rebalance();
            if let Some(Ok(message)) = polled {
                self.accept(&Incoming::polled(&message));
            }
        };
        if paused {
            self.resume_all();
        }
        delivered
    }

    /// Resumes every assigned partition but those still restoring.
    fn resume_all(&self) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for element in assignment.elements() {
            if !self.restoring.contains(&element.partition()) {
                list.add_partition(element.topic(), element.partition());
            }
        }
        if let Err(error) = self.consumer.resume(&list) {
            tracing::error!(%error, "Could not resume the consumer's partitions.");
        }
    }
}
