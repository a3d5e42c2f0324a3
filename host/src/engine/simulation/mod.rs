//! A deterministic simulation of the engine's core, in the manner of
//! FoundationDB's simulator and TigerBeetle's VOPR: the real shard loop,
//! chain, keyed state, swap cut-over and delivery run against a simulated
//! clock, a simulated broker (input partitions, committed offsets, the
//! changelog) and simulated sinks, under a schedule drawn from one seed:
//! batches, flush ticks, transient and permanent sink failures, failed
//! commits, partitions moving between shards (revoked cleanly or lost),
//! swaps to a new aggregator version, swaps to a broken one that probation
//! rolls back, and crashes that lose everything not yet durable.
//!
//! What it checks, against an oracle that folds the input itself:
//!
//! - offsets are never committed before the sinks hold every record below
//!   them (checked at each commit);
//! - after the schedule, every key's row and state is the fold of all its
//!   records, each exactly once (replays skipped, rollbacks back to the old
//!   version's state, nothing lost across crashes);
//! - every bad record is dead-lettered, and more than once only when the
//!   process died between writing its dead letter and committing it.
//!
//! `WEIR_SIMULATION_SEEDS` sets how many schedules run (10 000 by default),
//! `WEIR_SIMULATION_SEED` runs one: a failing seed reproduces exactly.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::chain::{Aggregating, Chain, End, Stage, Values};
use super::changelog::Stored;
use super::clock::Clock;
use super::deliver::{Committed, Delivery, DeliveryError, Offsets, Ownership, Pending};
use super::shard::{Chunk, Flush, Handover, Shard, ShardError, ShardSettings};
use super::state::KeyBudget;
use super::stats::Stats;
use super::swap::{AggregatorVersion, Instances, Order, Reports};
use crate::plugin::{
    Batch, BatchBuilder, BatchExt, Failure, Fields, Group, GroupResult, PluginKind, RecordRef,
    StageCode, Value,
};
use crate::sink::error::BoxError;
use crate::sink::{ChangelogRecord, Phase, Records, RowSchema, Shape, Sink, SinkError, Sinks};

mod cases;
mod input;
mod process;
mod schedule;
mod world;

use self::input::*;
use self::process::*;
use self::world::*;

const PARTITIONS: i32 = 3;
const SHARDS: usize = 2;
const SCHEMA: &str = r#"{"type": "record", "name": "sum", "fields": [
    {"name": "COUNT", "type": ["null", "long"]},
    {"name": "SUM", "type": ["null", "long"]}
]}"#;

struct Simulation {
    rng: StdRng,
    input: Arc<Vec<Vec<Event>>>,
    world: World,
    clock: Arc<SimClock>,
    running: Running,
    process: Process,
    runtime: tokio::runtime::Runtime,
    next_order: u64,
    /// Whether a dead letter may have been written and not committed when
    /// the process died (then writing it again is allowed).
    dead_letters_unsafe: bool,
    /// Processes that died so far.
    crashes: u64,
    /// The most keys a process holds (`max_keys`).
    max_keys: u64,
}

impl Simulation {
    /// The schedule of `seed`, over an input drawn from it.
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let input = generate(&mut rng);
        Self::over(rng, input)
    }

    /// A simulation of `input` (one list of records per partition), its
    /// first process started.
    fn over(rng: StdRng, input: Vec<Vec<Event>>) -> Self {
        assert_eq!(input.len(), PARTITIONS as usize);
        let input = Arc::new(input);
        let world = World::default();
        let clock = Arc::new(SimClock {
            start: Instant::now(),
            elapsed: Mutex::default(),
        });
        let schema = Arc::new(RowSchema::parse(SCHEMA).expect("the schema parses"));
        let running = Running {
            version: 1,
            shape: Arc::new(Shape::new(schema)),
        };
        let process = start(&world, &input, &clock, &running, u64::MAX);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        Self {
            rng,
            input,
            world,
            clock,
            running,
            process,
            runtime,
            next_order: 1,
            dead_letters_unsafe: false,
            crashes: 0,
            max_keys: u64::MAX,
        }
    }

    fn run(&mut self) {
        let steps = self.rng.random_range(50..250);
        let trace = std::env::var_os("WEIR_SIMULATION_TRACE").is_some();
        for step in 0..steps {
            let choice = self.rng.random_range(0..100);
            if trace {
                let world = self.world.lock().expect("not poisoned");
                eprintln!(
                    "step {step}: {choice} position {:?} owner {:?} committed {:?} table {:?}",
                    self.process.position, self.process.owners, world.committed, world.table
                );
            }
            match choice {
                0..45 => self.read(),
                45..65 => self.advance(),
                65..85 => self.deliver_one(),
                85..89 => self.fault(),
                89..93 => self.rebalance(),
                93..97 => self.swap(),
                _ => self.crash(),
            }
        }
        self.drain();
        self.check();
    }

    /// Checks the invariants once the schedule has drained.
    fn check(&self) {
        let world = self.world.lock().expect("not poisoned");
        let oracle = fold(&self.input);
        let table: BTreeMap<String, (i64, i64)> = world
            .table
            .iter()
            .map(|(key, row)| match row.as_slice() {
                [Value::Long(count), Value::Long(sum)] => (key.clone(), (*count, *sum)),
                other => panic!("key {key}: a row that is not two longs: {other:?}"),
            })
            .collect();
        assert_eq!(
            table, oracle,
            "the sinks' rows are not the fold of every record once"
        );
        // The changelog's newest state of every key is the same fold.
        for partition in 0..PARTITIONS {
            for (key, stored) in restored(&world, partition) {
                let key = String::from_utf8(key).expect("UTF-8 keys");
                assert_eq!(
                    Some(&decode(stored.state_version, &stored.state)),
                    oracle.get(&key),
                    "key {key}: the changelog's state is not the fold"
                );
            }
        }
        let mut letters: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for letter in &world.dead {
            *letters.entry(*letter).or_default() += 1;
        }
        for (partition, events) in self.input.iter().enumerate() {
            for (offset, event) in events.iter().enumerate() {
                let at = (partition as i32, offset as i64);
                let times = letters.get(&at).copied().unwrap_or(0);
                if event.n.is_some() {
                    assert_eq!(times, 0, "good record {at:?} was dead-lettered");
                } else if self.dead_letters_unsafe {
                    assert!(times >= 1, "bad record {at:?} was never dead-lettered");
                } else {
                    assert_eq!(times, 1, "bad record {at:?} dead-lettered {times} times");
                }
            }
        }
    }
}

/// Runs the schedule of `seed`, reporting the seed if it fails.
fn run_seed(seed: u64) {
    let result = std::panic::catch_unwind(|| Simulation::new(seed).run());
    if let Err(panic) = result {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        panic!("seed {seed} failed (rerun it with WEIR_SIMULATION_SEED={seed}): {message}");
    }
}

#[test]
fn seeded_schedules_keep_every_invariant() {
    if let Some(seed) = std::env::var("WEIR_SIMULATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed);
        return;
    }
    let seeds: u64 = std::env::var("WEIR_SIMULATION_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let started = Instant::now();
    // Seeds are independent: spread them over the cores.
    let workers = std::thread::available_parallelism().map_or(2, usize::from) as u64;
    std::thread::scope(|scope| {
        for worker in 0..workers {
            scope.spawn(move || {
                for seed in (worker..seeds).step_by(workers as usize) {
                    run_seed(seed);
                }
            });
        }
    });
    eprintln!("simulation: {seeds} schedules in {:?}", started.elapsed());
}
