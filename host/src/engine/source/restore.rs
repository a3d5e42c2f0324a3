//! The source thread's side of a rebalance: it drops what it read of
//! revoked partitions, restores the state of assigned ones in the
//! background, and lets their records flow once it is there. (`rebalance.rs`
//! is the consumer's callbacks, which leave it this work.)

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;

use super::rebalance::{Done, RESTORE_TIMEOUT, Request};
use super::{Source, shard_of};
use crate::engine::changelog;
use crate::engine::shard::Input;

impl Source<'_> {
    /// Takes what the rebalance callbacks left: revoked partitions' records
    /// are dropped, new assignments' restores started.
    pub(super) fn after_rebalance(&mut self) {
        let (revoked, requests) = {
            let mut router = self.consumer.context().router();
            if router.changed {
                router.changed = false;
                self.restoring.clone_from(&router.restoring);
                self.flowing = router
                    .epochs
                    .keys()
                    .filter(|p| !router.restoring.contains(p))
                    .copied()
                    .collect();
            }
            (
                std::mem::take(&mut router.revoked),
                std::mem::take(&mut router.requests),
            )
        };
        if !revoked.is_empty() {
            for open in &mut self.open {
                open.drop_partitions(&revoked);
            }
            for pending in &mut self.pending {
                for chunk in std::mem::take(pending) {
                    pending.push_back(chunk.retain(|partition| !revoked.contains(&partition)));
                }
            }
            for partition in &revoked {
                self.held.remove(partition);
            }
        }
        self.waiting.extend(requests);
        if self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|request| request.not_before <= now);
        self.waiting = later;
        for request in ready {
            let done = self.restores.0.clone();
            let kafka = self.settings.kafka.clone();
            let topic = self.settings.changelog.clone();
            let span = tracing::error_span!("restore");
            let spawned = std::thread::Builder::new()
                .name("weir-restore".into())
                .spawn(move || {
                    let _span = span.entered();
                    let started = Instant::now();
                    let numbers: Vec<i32> = request.partitions.iter().map(|(p, _)| *p).collect();
                    let result = match &topic {
                        Some(topic) => changelog::restore(&kafka, topic, &numbers, RESTORE_TIMEOUT),
                        None => Ok(changelog::Restored::default()),
                    };
                    drop(done.send(Done {
                        request,
                        result,
                        took: started.elapsed(),
                    }));
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "Cannot start a restore thread.");
            }
        }
    }

    /// Hands finished restores to their shards and resumes their partitions;
    /// false when a shard has stopped.
    pub(super) fn finish_restores(&mut self) -> bool {
        while let Ok(done) = self.restores.1.try_recv() {
            let mut restored = match done.result {
                Ok(restored) => restored,
                Err(error) => {
                    tracing::warn!(%error, "Restoring state failed; trying again in 1 s (the partitions stay paused).");
                    self.waiting.push(Request {
                        not_before: Instant::now() + Duration::from_secs(1),
                        ..done.request
                    });
                    continue;
                }
            };
            let keys = restored.keys();
            let mut resume = TopicPartitionList::new();
            let mut ready = Vec::new();
            for (partition, epoch) in done.request.partitions {
                let sender = {
                    let mut router = self.consumer.context().router();
                    if router.epochs.get(&partition) != Some(&epoch) || router.shards.is_empty() {
                        continue; // revoked meanwhile
                    }
                    router.restoring.remove(&partition);
                    router.shards[shard_of(partition, self.shards)].clone()
                };
                self.restoring.remove(&partition);
                self.flowing.insert(partition);
                let entries = restored.partitions.remove(&partition).unwrap_or_default();
                if sender.send(Input::Restore { partition, entries }).is_err() {
                    return false;
                }
                resume.add_partition(&self.settings.topic, partition);
                ready.push(partition);
            }
            tracing::info!(
                partitions = ?ready,
                keys,
                changelog_records = restored.records,
                took = ?done.took,
                keys_per_s = (keys as f64 / done.took.as_secs_f64().max(1e-9)).round(),
                "State restored; the partitions flow."
            );
            for partition in ready {
                for held in self.held.remove(&partition).unwrap_or_default() {
                    self.accept(&held.incoming());
                }
            }
            if resume.count() > 0
                && let Err(error) = self.consumer.resume(&resume)
            {
                tracing::error!(%error, "Could not resume restored partitions.");
            }
        }
        true
    }
}
