//! Hand-written schedules on the simulated world, one decision of the core
//! each: when a shard flushes, when delivery commits, what a rebalance
//! writes and replays, and what probation rolls back. The seeded schedules
//! cover their combinations; these name what broke when one fails.

use super::*;

/// A record that adds `n` to `key`.
fn good(key: &str, n: i64) -> Event {
    Event {
        key: Some(key.as_bytes().to_vec()),
        value: format!("{{\"n\": {n}}}").into_bytes(),
        n: Some(n),
    }
}

/// A record weir must dead-letter: its value is not JSON.
fn not_json(key: &str) -> Event {
    Event {
        key: Some(key.as_bytes().to_vec()),
        value: b"{oops".to_vec(),
        n: None,
    }
}

/// A simulation whose partition 0 holds `events` (the others nothing);
/// partition 0 starts on shard 0.
fn partition_zero(events: Vec<Event>) -> Simulation {
    let mut input = vec![Vec::new(); PARTITIONS as usize];
    input[0] = events;
    let simulation = Simulation::over(StdRng::seed_from_u64(0), input);
    assert_eq!(simulation.process.owner(0), 0);
    simulation
}

/// [`partition_zero`] with its first `count` records read and flushed by
/// shard 0 (its input quiet long enough), the flush not yet delivered.
fn read_and_flushed(events: Vec<Event>, count: usize) -> Simulation {
    let mut simulation = partition_zero(events);
    simulation.read_from(0, count);
    simulation.advance_by(Duration::from_millis(200));
    simulation
}

impl Simulation {
    /// Flushes `shard` has queued for delivery.
    fn queued(&self, shard: usize) -> usize {
        self.process.queues[shard]
            .0
            .lock()
            .expect("not poisoned")
            .len()
    }

    /// The committed offset of `partition`.
    fn committed(&self, partition: i32) -> Option<i64> {
        let world = self.world.lock().expect("not poisoned");
        world.committed.get(&partition).copied()
    }

    /// The sinks' row for `key`, as (count, sum).
    fn row(&self, key: &str) -> Option<(i64, i64)> {
        let world = self.world.lock().expect("not poisoned");
        match world.table.get(key).map(Vec::as_slice) {
            Some([Value::Long(count), Value::Long(sum)]) => Some((*count, *sum)),
            Some(other) => panic!("key {key}: a row that is not two longs: {other:?}"),
            None => None,
        }
    }

    /// Makes the next `times` writes of `sink` fail (`data`: for good).
    fn fail_writes(&self, sink: &'static str, times: u32, data: bool) {
        let mut world = self.world.lock().expect("not poisoned");
        world.faults.insert(sink, (times, data));
    }
}

#[test]
fn a_shard_flushes_once_its_input_is_quiet_and_not_before() {
    let mut simulation = partition_zero(vec![good("a", 1), good("a", 2), good("b", 5)]);
    simulation.read_from(0, 3);
    // Quiet for `max_wait` (50 ms) but within a tenth of the interval of
    // the last flush (the start): nothing yet.
    simulation.advance_by(Duration::from_millis(60));
    assert_eq!(simulation.queued(0), 0);
    simulation.advance_by(Duration::from_millis(50));
    assert_eq!(simulation.queued(0), 1, "a quiet input flushes early");
    assert_eq!(simulation.committed(0), None, "nothing is written yet");
    assert!(simulation.deliver_next(0));
    assert_eq!(simulation.row("a"), Some((2, 3)));
    assert_eq!(simulation.row("b"), Some((1, 5)));
    assert_eq!(simulation.committed(0), Some(3));
}

#[test]
fn a_busy_shard_flushes_on_its_interval() {
    let mut simulation = partition_zero((0..40).map(|n| good("a", n)).collect());
    // A record every 40 ms: the input is never quiet for `max_wait`.
    let busy = |simulation: &mut Simulation, steps: usize| {
        for _ in 0..steps {
            simulation.read_from(0, 1);
            simulation.advance_by(Duration::from_millis(40));
        }
    };
    // Shard 0 of 2 ticks first at half the interval (the shards' flushes
    // are spread over it), then every interval (1 s).
    busy(&mut simulation, 12);
    assert_eq!(simulation.queued(0), 0, "480 ms");
    busy(&mut simulation, 1);
    assert_eq!(simulation.queued(0), 1, "520 ms: the first tick");
    busy(&mut simulation, 24);
    assert_eq!(simulation.queued(0), 1, "1 480 ms");
    busy(&mut simulation, 1);
    assert_eq!(simulation.queued(0), 2, "1 520 ms: the second tick");
    while simulation.deliver_next(0) {}
    assert_eq!(simulation.row("a"), Some((38, (0..38).sum())));
    assert_eq!(simulation.committed(0), Some(38));
}

#[test]
fn offsets_are_committed_once_every_sink_took_the_flush() {
    let mut simulation = read_and_flushed(vec![good("a", 1), not_json("a"), good("a", 2)], 3);
    // Each sink fails a few times before it takes the flush; delivery
    // retries (the simulated offsets check, at the commit, that the table,
    // the changelog and the dead letters hold every record below it).
    simulation.fail_writes("table", 3, false);
    simulation.fail_writes("dead-letters", 2, false);
    simulation.fail_writes("changelog", 1, false);
    assert!(matches!(simulation.try_deliver(0), Some(Ok(()))));
    assert_eq!(simulation.row("a"), Some((2, 3)));
    assert_eq!(simulation.committed(0), Some(3));
    let world = simulation.world.lock().expect("not poisoned");
    assert_eq!(world.dead, [(0, 1)], "the bad record is dead-lettered once");
    assert!(world.faults.values().all(|(left, _)| *left == 0));
}

#[test]
fn a_retry_writes_only_to_the_sinks_that_failed() {
    let mut simulation = read_and_flushed(vec![good("a", 1), not_json("a"), good("a", 2)], 3);
    // The dead-letter sink fails twice and the changelog once: the table
    // took the flush on the first attempt and is not sent it again.
    simulation.fail_writes("dead-letters", 2, false);
    simulation.fail_writes("changelog", 1, false);
    assert!(matches!(simulation.try_deliver(0), Some(Ok(()))));
    let world = simulation.world.lock().expect("not poisoned");
    let writes = |sink: &str| world.writes.get(sink).copied().unwrap_or(0);
    assert_eq!(
        (writes("table"), writes("dead-letters"), writes("changelog")),
        (1, 1, 1)
    );
    assert_eq!(world.dead, [(0, 1)]);
    assert_eq!(world.committed.get(&0), Some(&3));
}

#[test]
fn a_permanent_error_of_any_sink_stops_delivery_and_commits_nothing() {
    for sink in ["table", "dead-letters", "changelog"] {
        let mut simulation = read_and_flushed(vec![good("a", 1), not_json("a"), good("a", 2)], 3);
        simulation.fail_writes(sink, 1, true);
        let delivered = simulation.try_deliver(0).expect("a flush was queued");
        assert!(
            matches!(delivered, Err(DeliveryError::Permanent(_))),
            "{sink}: {delivered:?}"
        );
        assert_eq!(simulation.committed(0), None, "{sink}");
        // The next process reads the records again and writes them, once.
        simulation.dead_letters_unsafe = true;
        simulation.crash();
        simulation.drain();
        simulation.check();
    }
}

#[test]
fn a_record_read_again_after_a_failed_commit_counts_once() {
    let mut simulation = read_and_flushed(vec![good("a", 1), good("a", 2), good("b", 4)], 3);
    // Rows and state are written, the commit fails, then the process dies:
    // its successor restores the state and reads all three again.
    simulation
        .world
        .lock()
        .expect("not poisoned")
        .failing_commits = 1;
    assert!(matches!(simulation.try_deliver(0), Some(Ok(()))));
    assert_eq!(simulation.committed(0), None);
    assert_eq!(simulation.row("a"), Some((2, 3)));
    simulation.crash();
    assert_eq!(simulation.process.position[&0], 0, "read from the start");
    simulation.read_from(0, 3);
    simulation.advance_by(Duration::from_millis(200));
    while simulation.deliver_next(0) {}
    assert_eq!(simulation.row("a"), Some((2, 3)), "not (4, 6)");
    assert_eq!(simulation.row("b"), Some((1, 4)));
    assert_eq!(simulation.committed(0), Some(3));
}

#[test]
fn a_revoked_partition_is_written_and_committed_before_it_moves() {
    let mut simulation = partition_zero(vec![good("a", 1), good("a", 2), good("a", 3)]);
    simulation.read_from(0, 2);
    simulation.move_partition(0, false);
    assert_eq!(simulation.process.owner(0), 1);
    assert_eq!(simulation.row("a"), Some((2, 3)));
    assert_eq!(simulation.committed(0), Some(2));
    // The new owner goes on from the commit, with the state restored.
    assert_eq!(simulation.process.position[&0], 2);
    simulation.read_from(0, 1);
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(1));
    assert_eq!(simulation.row("a"), Some((3, 6)));
}

#[test]
fn a_lost_partition_is_written_by_its_new_owner_only() {
    let mut simulation = read_and_flushed(vec![good("a", 1), good("a", 2), not_json("a")], 3);
    assert_eq!(simulation.queued(0), 1);
    // Another member has the partition before the old owner's flush is
    // delivered: that flush writes nothing of it and commits nothing.
    simulation.move_partition(0, true);
    assert!(simulation.deliver_next(0));
    assert_eq!(simulation.row("a"), None);
    assert_eq!(simulation.committed(0), None);
    assert!(
        simulation
            .world
            .lock()
            .expect("not poisoned")
            .dead
            .is_empty()
    );
    // The new owner reads it all again.
    assert_eq!(simulation.process.position[&0], 0);
    simulation.read_from(0, 3);
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(1));
    assert_eq!(simulation.row("a"), Some((2, 3)));
    assert_eq!(simulation.committed(0), Some(3));
    simulation.drain();
    simulation.check();
}

#[test]
fn a_version_that_fails_probation_is_rolled_back_with_the_old_state() {
    let mut simulation = read_and_flushed(vec![good("a", 1), good("a", 2), good("a", 4)], 1);
    assert!(simulation.deliver_next(0));
    let reports = simulation.swap_to(Fault::Traps);
    // The broken version traps on its first batch: the batch is run again
    // on the version before, which keeps the state it had.
    simulation.read_from(0, 2);
    let failures = reports.take_probation_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(0));
    assert_eq!(simulation.row("a"), Some((3, 7)));
    assert!(
        simulation
            .world
            .lock()
            .expect("not poisoned")
            .dead
            .is_empty()
    );
}

/// With `max_keys` reached, events of new keys are dead-lettered
/// (`state-full`) while the keys held go on; the process's shards share the
/// count, and keys restored after a restart count too.
#[test]
fn a_full_state_refuses_new_keys_and_keeps_counting_the_ones_it_holds() {
    let mut simulation = partition_zero(vec![
        good("a", 1),
        good("b", 2),
        good("c", 4),
        good("a", 8),
        good("d", 16),
        good("e", 32),
    ]);
    simulation.max_keys = 2;
    simulation.world.lock().expect("not poisoned").refusals = true;
    simulation.crash(); // a process with the limit
    simulation.read_from(0, 5);
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(0));
    assert_eq!(simulation.row("a"), Some((2, 9)));
    assert_eq!(simulation.row("b"), Some((1, 2)));
    assert_eq!(simulation.row("c"), None);
    assert_eq!(simulation.row("d"), None);
    let world = Arc::clone(&simulation.world);
    let dead = || world.lock().expect("not poisoned").dead.clone();
    assert_eq!(
        dead(),
        vec![(0, 2), (0, 4)],
        "c and d, by partition and offset"
    );
    // After a restart the restored keys fill the state again.
    simulation.crash();
    simulation.read_from(0, 1);
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(0));
    assert_eq!(
        simulation.row("e"),
        None,
        "still full: a and b were restored"
    );
    assert_eq!(dead(), vec![(0, 2), (0, 4), (0, 5)]);
}

/// Rows that break the version's own schema are dead-lettered as trapped
/// without a trap: they once went unnoticed by probation, so a version
/// that broke its schema on every row was never rolled back.
#[test]
fn a_version_whose_rows_break_its_schema_fails_probation_too() {
    let mut simulation = read_and_flushed(vec![good("a", 1), good("a", 2), good("a", 4)], 1);
    assert!(simulation.deliver_next(0));
    let reports = simulation.swap_to(Fault::BreaksSchema);
    simulation.read_from(0, 2);
    let failures = reports.take_probation_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    simulation.advance_by(Duration::from_millis(200));
    assert!(simulation.deliver_next(0));
    assert_eq!(
        simulation.row("a"),
        Some((3, 7)),
        "the old version ran the batch"
    );
    let world = simulation.world.lock().expect("not poisoned");
    assert!(world.dead.is_empty(), "{:?}", world.dead);
}

#[test]
fn a_swap_migrates_state_and_counts_every_record_once() {
    let mut simulation = partition_zero(vec![good("a", 1), good("a", 2), good("a", 4)]);
    simulation.read_from(0, 1);
    let reports = simulation.swap_to(Fault::None);
    simulation.read_from(0, 2);
    assert!(reports.take_probation_failures().is_empty());
    simulation.drain();
    simulation.check();
    // The state the new version wrote is its own (sum first).
    let world = simulation.world.lock().expect("not poisoned");
    let stored = &restored(&world, 0)[b"a".as_slice()];
    assert_eq!(stored.state_version, 2);
    assert_eq!(decode(2, &stored.state), (3, 7));
}
