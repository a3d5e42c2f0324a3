//! The steps a schedule is drawn from: reads, clock advances, deliveries,
//! sink faults, rebalances, swaps and crashes, and the drain at its end.

use super::*;

impl Simulation {
    /// The source hands a shard the next records of one partition.
    pub(super) fn read(&mut self) {
        let partition = self.rng.random_range(0..PARTITIONS);
        let from = self.process.position[&partition];
        if from as usize >= self.input[partition as usize].len() {
            return;
        }
        let count = self.rng.random_range(1..9);
        self.read_from(partition, count);
    }

    /// The source hands the owner of `partition` its next `count` records
    /// (fewer at the input's end).
    pub(super) fn read_from(&mut self, partition: i32, count: usize) {
        let from = self.process.position[&partition];
        let events = &self.input[partition as usize];
        if from as usize >= events.len() {
            return;
        }
        let to = (from as usize + count).min(events.len());
        let mut batch = BatchBuilder::default();
        for (offset, event) in events.iter().enumerate().take(to).skip(from as usize) {
            batch.push(RecordRef {
                key: event.key.as_deref(),
                value: &event.value,
                timestamp: 1_000 + offset as i64,
                partition,
                offset: offset as i64,
            });
        }
        let shard = self.process.owner(partition);
        self.process.shards[shard].process(Chunk {
            batch: batch.build(),
            dead: Vec::new(),
            offsets: vec![(partition, to as i64)],
        });
        self.process.position.insert(partition, to as i64);
    }

    /// Time passes; every shard sees its tick.
    pub(super) fn advance(&mut self) {
        let by = Duration::from_millis(self.rng.random_range(5..700));
        self.advance_by(by);
    }

    /// `by` passes; every shard sees its tick.
    pub(super) fn advance_by(&mut self, by: Duration) {
        *self.clock.elapsed.lock().expect("not poisoned") += by;
        for shard in &mut self.process.shards {
            shard.refresh_some();
            shard.tick(false).expect("the queue always takes a flush");
        }
    }

    /// Delivery takes one flush of one shard.
    pub(super) fn deliver_one(&mut self) {
        let shard = self.rng.random_range(0..SHARDS);
        self.deliver_next(shard);
    }

    /// Delivers the next flush `shard` queued: false when there was none,
    /// or when a permanent failure stopped the process.
    pub(super) fn deliver_next(&mut self, shard: usize) -> bool {
        let Some(delivered) = self.try_deliver(shard) else {
            return false;
        };
        if let Err(error) = delivered {
            assert!(matches!(error, DeliveryError::Permanent(_)), "{error}");
            // Outputs (dead letters among them) may be written, the
            // offsets are not committed.
            self.dead_letters_unsafe = true;
            self.crash();
            return false;
        }
        true
    }

    /// Delivers the next flush `shard` queued, if any, and says how that went.
    pub(super) fn try_deliver(&mut self, shard: usize) -> Option<Result<(), DeliveryError>> {
        let flush = self.process.queues[shard]
            .0
            .lock()
            .expect("not poisoned")
            .pop_front()?;
        trace_flush(shard, &flush);
        let (delivery, pending) = (
            &self.process.deliveries[shard],
            &mut self.process.pending[shard],
        );
        Some(self.runtime.block_on(delivery.deliver(flush, pending)))
    }

    /// The next writes of a sink fail: transiently, or for good (once), or
    /// the next commits fail.
    pub(super) fn fault(&mut self) {
        let mut world = self.world.lock().expect("not poisoned");
        let sink = ["table", "dead-letters", "changelog"][self.rng.random_range(0..3)];
        match self.rng.random_range(0..10) {
            0 => {
                world.faults.insert(sink, (1, true));
            }
            1..3 => world.failing_commits += self.rng.random_range(1..3),
            _ => {
                world
                    .faults
                    .insert(sink, (self.rng.random_range(1..5), false));
            }
        }
    }

    /// A partition moves to the other shard: revoked cleanly (its rows
    /// written and committed first), or lost (the new owner replays what
    /// was not committed).
    pub(super) fn rebalance(&mut self) {
        let partition = self.rng.random_range(0..PARTITIONS);
        let lost = self.rng.random_bool(0.3);
        self.move_partition(partition, lost);
    }

    /// `partition` moves to the other shard: revoked cleanly, or `lost`.
    pub(super) fn move_partition(&mut self, partition: i32, lost: bool) {
        let from = self.process.owner(partition);
        let to = (from + 1) % SHARDS;
        if lost {
            self.process
                .owners
                .lock()
                .expect("not poisoned")
                .insert(partition, to);
        }
        let (done, _) = std::sync::mpsc::channel();
        self.process.shards[from]
            .revoke(&[partition], lost, done)
            .expect("the queue always takes a flush");
        // Another member has it already when it is lost: the flushes still
        // queued here are not written (delivery sees the ownership ended),
        // and its new owner replays what was not committed. Dead letters
        // written whose commit failed are written again by the new owner.
        if !lost && !self.deliver_all(from) {
            // The process died meanwhile: no more rebalancing.
            return;
        }
        if self.process.pending[from].has(partition) {
            self.dead_letters_unsafe = true;
        }
        self.process
            .owners
            .lock()
            .expect("not poisoned")
            .insert(partition, to);
        let world = self.world.lock().expect("not poisoned");
        let committed = world.committed.get(&partition).copied();
        let entries = restored(&world, partition);
        drop(world);
        self.process.shards[to].restore(partition, entries);
        self.process
            .position
            .insert(partition, committed.unwrap_or(0));
    }

    /// Delivers every flush queued by `shard`; a permanent failure stops
    /// the process (then false).
    fn deliver_all(&mut self, shard: usize) -> bool {
        let generation = self.crashes;
        while self.deliver_next(shard) {}
        self.crashes == generation
    }

    /// Every shard cuts over to another aggregator version: the other good
    /// one, or a broken one that probation must roll back.
    pub(super) fn swap(&mut self) {
        let fault = match self.rng.random_range(0..10) {
            0..3 => Fault::Traps,
            3 => Fault::BreaksSchema,
            _ => Fault::None,
        };
        self.swap_to(fault);
    }

    /// Every shard cuts over to the other aggregator version, or to a
    /// `broken` one; returns where the shards report on the swap.
    pub(super) fn swap_to(&mut self, fault: Fault) -> Arc<Reports> {
        let version = if self.running.version == 1 { 2 } else { 1 };
        let shape = Arc::new(Shape::new(Arc::clone(&self.running.shape.schema)));
        let order = Arc::new(Order {
            id: self.next_order,
            stage: 0,
            instances: Instances::made_by(move || Ok(summing(version, fault))),
            aggregator: Some(AggregatorVersion {
                output: Arc::clone(&shape),
                state_version: version,
            }),
            requested: Instant::now(),
            // Long enough that every shard meets the broken version on a batch.
            probation: Some(Duration::from_secs(3_600)),
            reports: Arc::default(),
        });
        let reports = Arc::clone(&order.reports);
        self.next_order += 1;
        for shard in &mut self.process.shards {
            shard.cut_over(Arc::clone(&order));
        }
        if fault == Fault::None {
            self.running = Running { version, shape };
        }
        reports
    }

    /// The process dies: what was not durable is gone. A new one starts
    /// with the pipeline file's version (a swap is not remembered), and
    /// migrates state the other version wrote.
    pub(super) fn crash(&mut self) {
        self.crashes += 1;
        // Dead letters written whose offsets were not committed (the commit
        // failed) are written again by the next process.
        if self.process.pending.iter().any(Pending::has_offsets) {
            self.dead_letters_unsafe = true;
        }
        if self.running.version != 1 {
            let schema = Arc::clone(&self.running.shape.schema);
            self.running = Running {
                version: 1,
                shape: Arc::new(Shape::new(schema)),
            };
        }
        self.process = start(
            &self.world,
            &self.input,
            &self.clock,
            &self.running,
            self.max_keys,
        );
    }

    /// The input ends and the faults with it: everything is read, flushed,
    /// delivered and committed.
    pub(super) fn drain(&mut self) {
        {
            let mut world = self.world.lock().expect("not poisoned");
            world.failing_commits = 0;
            world.faults.retain(|_, (_, data)| !*data);
        }
        for _ in 0..10_000 {
            let unread = (0..PARTITIONS)
                .any(|p| (self.process.position[&p] as usize) < self.input[p as usize].len());
            if unread {
                self.read();
                continue;
            }
            for shard in &mut self.process.shards {
                while shard.has_stale() {
                    shard.refresh_some();
                    shard.tick(true).expect("the queue always takes a flush");
                }
                shard.tick(true).expect("the queue always takes a flush");
            }
            for shard in 0..SHARDS {
                self.deliver_all(shard);
            }
            // Offsets whose commit failed go with the last commits.
            for shard in 0..SHARDS {
                let pending = std::mem::take(&mut self.process.pending[shard]);
                self.runtime
                    .block_on(self.process.deliveries[shard].finish(pending))
                    .expect("commits work again");
            }
            let world = self.world.lock().expect("not poisoned");
            let caught_up = (0..PARTITIONS).all(|p| {
                world.committed.get(&p).copied().unwrap_or(0) as usize
                    == self.input[p as usize].len()
            });
            if caught_up {
                return;
            }
        }
        let world = self.world.lock().expect("not poisoned");
        panic!(
            "the pipeline did not catch up: committed {:?}, positions {:?}, ends {:?}, owners {:?}",
            world.committed,
            self.process.position,
            self.input.iter().map(Vec::len).collect::<Vec<_>>(),
            self.process.owners
        );
    }
}

/// With `WEIR_SIMULATION_TRACE` set, what a delivery is about to write.
fn trace_flush(shard: usize, flush: &Flush) {
    if std::env::var_os("WEIR_SIMULATION_TRACE").is_some() {
        eprintln!(
            "  deliver shard {shard}: rows {:?} changelog {} dead {:?} offsets {:?}",
            flush
                .records
                .rows
                .iter()
                .map(|r| (r.shape.id, r.rows.clone()))
                .collect::<Vec<_>>(),
            flush.records.changelog.len(),
            flush
                .records
                .dead
                .iter()
                .map(|l| (l.offset, l.code.clone(), l.reason.clone()))
                .collect::<Vec<_>>(),
            flush.offsets
        );
    }
}
