//! The consumer's side of the group: rebalances. Assigned partitions are
//! paused while their state is restored from the changelog, then handed to
//! their shard and resumed; revoked partitions are written and committed by
//! their shards before the group may give them to another instance.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
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

impl Router {
    /// Takes `partitions` as newly assigned: each gets a new assignment
    /// number and waits for its state; returns the restore to start (none
    /// for an empty assignment).
    pub(super) fn assign(&mut self, partitions: &[i32]) -> Option<Request> {
        self.changed = true;
        if partitions.is_empty() {
            return None;
        }
        let mut request = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let epoch = self.next_epoch;
            self.next_epoch += 1;
            self.epochs.insert(partition, epoch);
            self.restoring.insert(partition);
            request.push((partition, epoch));
        }
        Some(Request {
            partitions: request,
            not_before: Instant::now(),
        })
    }

    /// Forgets `partitions` (revoked: a restore still running for one is
    /// dropped when it ends); returns them by the shard that holds them.
    pub(super) fn revoke(&mut self, partitions: &[i32]) -> HashMap<usize, Vec<i32>> {
        self.changed = true;
        let mut per_shard: HashMap<usize, Vec<i32>> = HashMap::new();
        for &partition in partitions {
            self.epochs.remove(&partition);
            self.restoring.remove(&partition);
            self.revoked.push(partition);
            if !self.shards.is_empty() {
                per_shard
                    .entry(shard_of(partition, self.shards.len()))
                    .or_default()
                    .push(partition);
            }
        }
        per_shard
    }
}

/// A revocation handed to the shards: how many have it, and where they
/// answer once they have written and committed what they held.
struct Revocation {
    sent: usize,
    answers: Receiver<()>,
}

impl Revocation {
    /// Hands each shard of `per_shard` its partitions leaving (`lost`: to
    /// forget, not to write), waiting while a queue is full but not past
    /// `deadline`.
    fn send(
        shards: &[SyncSender<Input>],
        per_shard: HashMap<usize, Vec<i32>>,
        lost: bool,
        abandoned: &Arc<AtomicBool>,
        deadline: Instant,
    ) -> Self {
        let (answer, answers) = std::sync::mpsc::channel();
        let mut sent = 0;
        for (shard, partitions) in per_shard {
            let input = Input::Revoke {
                partitions,
                lost,
                abandoned: Arc::clone(abandoned),
                done: answer.clone(),
            };
            if send_until(&shards[shard], input, deadline) {
                sent += 1;
            }
        }
        Self { sent, answers }
    }

    /// Whether every shard that has the revocation answered by `deadline`.
    fn answered(&self, deadline: Instant) -> bool {
        (0..self.sent).all(|_| {
            self.answers
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
    }
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
        let numbers: Vec<i32> = partitions
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        let mut router = self.router();
        let Some(request) = router.assign(&numbers) else {
            return;
        };
        // No record of theirs goes to a shard before their state is there.
        if let Err(error) = consumer.pause(partitions) {
            tracing::error!(%error, "Could not pause newly assigned partitions.");
        }
        tracing::info!(
            partitions = ?numbers,
            "Partitions assigned; restoring their state."
        );
        router.requests.push(request);
    }

    fn revoked(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let lost = consumer.assignment_lost();
        let abandoned = Arc::new(AtomicBool::new(false));
        let numbers: Vec<i32> = partitions
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        // One deadline for handing the revocation over and for the answers.
        let started = Instant::now();
        let deadline = started + REVOKE_WAIT;
        let revocation = {
            let mut router = self.router();
            let per_shard = router.revoke(&numbers);
            Revocation::send(&router.shards, per_shard, lost, &abandoned, deadline)
        };
        if !revocation.answered(deadline) {
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
    pub fn broadcast(&self, order: &Arc<Order>, wait: Duration) -> Result<usize, RouteError> {
        let shards = self.router().shards.clone();
        if shards.is_empty() {
            return Err(RouteError::Stopping);
        }
        let deadline = Instant::now() + wait;
        for (index, shard) in shards.iter().enumerate() {
            if !send_until(shard, Input::Swap(Arc::clone(order)), deadline) {
                return Err(RouteError::Full { shard: index, wait });
            }
        }
        Ok(shards.len())
    }

    /// Drops the shards' senders: they finish once their queues are empty.
    /// Also after a panic that poisoned the router (then it runs while the
    /// thread unwinds, and must not panic again).
    pub(super) fn close(&self) {
        self.router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shards
            .clear();
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;
    use crate::engine::swap::{Instances, Reports};

    fn context(shards: usize, capacity: usize) -> (SourceContext, Vec<Receiver<Input>>) {
        let (senders, receivers) = (0..shards).map(|_| sync_channel(capacity)).unzip();
        (SourceContext::new(senders), receivers)
    }

    #[test]
    fn assigned_partitions_wait_for_their_state_under_a_new_number_each_time() {
        let (context, _shards) = context(2, 4);
        let mut router = context.router();
        let request = router.assign(&[3, 1]).expect("a restore");
        assert_eq!(request.partitions, [(3, 1), (1, 2)]);
        assert_eq!(router.restoring, HashSet::from([1, 3]));
        assert!(router.changed);
        // Revoked and assigned again: a restore of the first assignment,
        // ending late, no longer matches the partition's number.
        router.revoke(&[1]);
        assert_eq!(router.epochs.get(&1), None);
        let again = router.assign(&[1]).expect("a restore");
        assert_eq!(again.partitions, [(1, 3)]);
        assert_eq!(router.epochs, HashMap::from([(3, 1), (1, 3)]));
        router.changed = false;
        assert!(router.assign(&[]).is_none());
        assert!(router.changed, "an empty assignment is still a change");
    }

    #[test]
    fn revoked_partitions_go_to_the_shards_that_hold_them() {
        let (context, _shards) = context(2, 4);
        let mut router = context.router();
        router.assign(&[0, 1, 2, 3]);
        let per_shard = router.revoke(&[0, 1, 2, 3]);
        assert_eq!(per_shard, HashMap::from([(0, vec![0, 2]), (1, vec![1, 3])]));
        assert!(router.restoring.is_empty() && router.epochs.is_empty());
        assert_eq!(router.revoked, [0, 1, 2, 3]);
        // Once the shards are gone (the pipeline stopping), nothing is sent.
        router.shards.clear();
        router.assign(&[5]);
        assert!(router.revoke(&[5]).is_empty());
    }

    /// A shard thread that answers revocations (or keeps silent).
    fn shard(input: Receiver<Input>, answers: bool) -> std::thread::JoinHandle<Vec<i32>> {
        std::thread::spawn(move || {
            let mut revoked = Vec::new();
            while let Ok(input) = input.recv() {
                if let Input::Revoke {
                    partitions, done, ..
                } = input
                {
                    revoked.extend(partitions);
                    if answers {
                        done.send(()).expect("the source waits");
                    }
                }
            }
            revoked
        })
    }

    #[test]
    fn a_revocation_is_over_once_every_shard_holding_a_partition_answered() {
        let (context, inputs) = context(2, 4);
        let threads: Vec<_> = inputs.into_iter().map(|input| shard(input, true)).collect();
        let abandoned = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(10);
        let revocation = {
            let mut router = context.router();
            let per_shard = router.revoke(&[1, 3]);
            Revocation::send(&router.shards, per_shard, false, &abandoned, deadline)
        };
        assert_eq!(revocation.sent, 1, "both partitions are shard 1's");
        assert!(revocation.answered(deadline));
        context.close();
        let revoked: Vec<Vec<i32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(revoked, [vec![], vec![1, 3]]);
    }

    #[test]
    fn a_revocation_a_shard_does_not_answer_in_time_is_not_over() {
        let (context, inputs) = context(2, 4);
        let mut inputs = inputs.into_iter();
        let answering = shard(inputs.next().unwrap(), true);
        let silent = shard(inputs.next().unwrap(), false);
        let abandoned = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(100);
        let revocation = {
            let mut router = context.router();
            let per_shard = router.revoke(&[0, 1]);
            Revocation::send(&router.shards, per_shard, false, &abandoned, deadline)
        };
        assert_eq!(revocation.sent, 2);
        assert!(!revocation.answered(deadline));
        context.close();
        assert_eq!(answering.join().unwrap(), [0]);
        assert_eq!(silent.join().unwrap(), [1]);
    }

    #[test]
    fn closing_after_a_panic_that_poisoned_the_router_still_ends_the_shards() {
        let (context, inputs) = context(2, 4);
        let context = Arc::new(context);
        let panicking = Arc::clone(&context);
        let panicked = std::thread::spawn(move || {
            let _router = panicking.router();
            panic!("the source thread fails while it holds the router");
        })
        .join();
        assert!(panicked.is_err());
        context.close();
        for input in inputs {
            assert!(
                input.recv().is_err(),
                "a shard's input is closed: it finishes"
            );
        }
    }

    #[test]
    fn an_order_reaches_every_shard_or_says_which_one_it_could_not() {
        let order = Arc::new(Order {
            id: 1,
            stage: 0,
            instances: Instances::made_by(|| unreachable!("no instance is made here")),
            aggregator: None,
            requested: Instant::now(),
            probation: None,
            reports: Arc::new(Reports::default()),
        });
        let (context, inputs) = context(2, 1);
        assert_eq!(context.broadcast(&order, Duration::from_millis(50)), Ok(2));
        // Shard 0 has not taken the first order yet: its queue is full.
        inputs[1].recv().expect("shard 1 has it");
        let wait = Duration::from_millis(50);
        assert_eq!(
            context.broadcast(&order, wait),
            Err(RouteError::Full { shard: 0, wait })
        );
        context.close();
        assert_eq!(
            context.broadcast(&order, wait),
            Err(RouteError::Stopping),
            "a stopping pipeline takes no order"
        );
    }
}
