//! The consumer's side of the group: rebalances. Assigned partitions are
//! paused while their state is restored from the changelog, then handed to
//! their shard and resumed; revoked partitions are written and committed by
//! their shards before the group may give them to another instance.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

use super::shard_of;
use crate::engine::changelog::{RestoreError, Restored};
use crate::engine::shard::Input;
use crate::engine::swap::{Order, RouteError};

/// How long a revocation waits for the shards to write and commit what
/// they hold of the partitions leaving.
const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// A restore that makes no progress for this long is tried again.
pub(super) const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer's context: it hears the group's rebalances, which
/// librdkafka reports during `poll`, on the source thread.
///
/// - Partitions assigned are paused until their state is restored from the
///   changelog (in the background: other partitions keep flowing), then
///   handed to their shard and resumed.
/// - Partitions revoked are flushed and committed by their shards before
///   the group may give them to another instance.
pub struct SourceContext {
    router: Mutex<Router>,
}

/// What the source thread and the rebalance callbacks share.
pub(super) struct Router {
    pub(super) shards: Vec<SyncSender<Input>>,
    /// Per assigned partition, the number of its assignment: a restore that
    /// finishes after its partition has left (and maybe come back) is dropped.
    pub(super) epochs: HashMap<i32, u64>,
    pub(super) next_epoch: u64,
    /// Assigned partitions whose state is being restored (paused meanwhile).
    pub(super) restoring: HashSet<i32>,
    /// Restores to start.
    pub(super) requests: Vec<Request>,
    /// Partitions revoked since the source last looked.
    pub(super) revoked: Vec<i32>,
    /// Set when the assignment changed since the source last looked.
    pub(super) changed: bool,
}

/// Partitions to restore, with their assignment numbers.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) partitions: Vec<(i32, u64)>,
    pub(super) not_before: Instant,
}

/// A restore's outcome.
pub(super) struct Done {
    pub(super) request: Request,
    pub(super) result: Result<Restored, RestoreError>,
    pub(super) took: Duration,
}

impl SourceContext {
    /// A context routing records to `shards`.
    pub fn new(shards: Vec<SyncSender<Input>>) -> Self {
        Self {
            router: Mutex::new(Router {
                shards,
                epochs: HashMap::new(),
                next_epoch: 1,
                restoring: HashSet::new(),
                requests: Vec::new(),
                revoked: Vec::new(),
                changed: false,
            }),
        }
    }

    pub(super) fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().expect("not poisoned")
    }

    fn assigned(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let mut router = self.router();
        let mut request = Vec::new();
        for element in partitions.elements() {
            let partition = element.partition();
            let epoch = router.next_epoch;
            router.next_epoch += 1;
            router.epochs.insert(partition, epoch);
            router.restoring.insert(partition);
            request.push((partition, epoch));
        }
        router.changed = true;
        if request.is_empty() {
            return;
        }
        // No record of theirs goes to a shard before their state is there.
        if let Err(error) = consumer.pause(partitions) {
            tracing::error!(%error, "Could not pause newly assigned partitions.");
        }
        tracing::info!(
            partitions = ?request.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "Partitions assigned; restoring their state."
        );
        router.requests.push(Request {
            partitions: request,
            not_before: Instant::now(),
        });
    }

    fn revoked(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let lost = consumer.assignment_lost();
        let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let numbers: Vec<i32> = partitions
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        // One deadline for handing the revocation over and for the answers.
        let started = Instant::now();
        let deadline = started + REVOKE_WAIT;
        let (acks, sent) = {
            let mut router = self.router();
            router.changed = true;
            let mut per_shard: HashMap<usize, Vec<i32>> = HashMap::new();
            for &partition in &numbers {
                router.epochs.remove(&partition);
                router.restoring.remove(&partition);
                router.revoked.push(partition);
                if !router.shards.is_empty() {
                    per_shard
                        .entry(shard_of(partition, router.shards.len()))
                        .or_default()
                        .push(partition);
                }
            }
            let (ack, acks) = std::sync::mpsc::channel();
            let mut sent = 0;
            for (shard, partitions) in per_shard {
                let input = Input::Revoke {
                    partitions,
                    lost,
                    abandoned: std::sync::Arc::clone(&abandoned),
                    done: ack.clone(),
                };
                if send_until(&router.shards[shard], input, deadline) {
                    sent += 1;
                }
            }
            (acks, sent)
        };
        let mut confirmed = 0;
        while confirmed < sent {
            match acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) => confirmed += 1,
                Err(_) => break,
            }
        }
        if confirmed < sent {
            // Too late now: the partitions may go to another instance, so
            // the shards must not write them any more.
            abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                partitions = ?numbers,
                waited = ?REVOKE_WAIT,
                "Partitions revoked before their last results were committed; their new owner reads those records again (the changelog's applied offsets keep it from counting them twice)."
            );
        } else {
            tracing::info!(
                partitions = ?numbers,
                lost,
                took = ?started.elapsed(),
                "Partitions revoked{}.",
                if lost { " (lost: left to their new owner)" } else { "; their results are written and committed" }
            );
        }
    }

    /// Queues `order` on every shard, after what each has queued already
    /// (so it takes effect at a batch boundary). Fails once the pipeline
    /// stops, or when a shard's queue stays full for `wait`; returns how
    /// many shards have it.
    pub fn broadcast(
        &self,
        order: &std::sync::Arc<Order>,
        wait: Duration,
    ) -> Result<usize, RouteError> {
        let shards = self.router().shards.clone();
        if shards.is_empty() {
            return Err(RouteError::Stopping);
        }
        let deadline = Instant::now() + wait;
        for (index, shard) in shards.iter().enumerate() {
            if !send_until(shard, Input::Swap(std::sync::Arc::clone(order)), deadline) {
                return Err(RouteError::Full { shard: index, wait });
            }
        }
        Ok(shards.len())
    }

    /// Drops the shards' senders: they finish once their queues are empty.
    pub(super) fn close(&self) {
        self.router().shards.clear();
    }
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revoked(consumer, partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => self.assigned(consumer, partitions),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Rebalance failed; the group retries.")
            }
        }
    }
}

/// Sends `input` to a shard, waiting while its queue is full, but not past
/// `deadline`; false when it could not.
fn send_until(shard: &SyncSender<Input>, mut input: Input, deadline: Instant) -> bool {
    loop {
        match shard.try_send(input) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => input = back,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
