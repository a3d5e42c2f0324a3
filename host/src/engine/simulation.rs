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

use super::chain::{Chain, Stage};
use super::changelog::Stored;
use super::clock::Clock;
use super::deliver::{Committed, Delivery, DeliveryError, Offsets, Ownership, Pending};
use super::shard::{Chunk, Flush, Handover, Shard, ShardError, ShardSettings};
use super::stats::Stats;
use super::swap::{AggregatorVersion, Instances, Order, Reports};
use crate::pipeline::Format;
use crate::plugin::{
    Batch, BatchBuilder, BatchExt, Failure, Fields, Group, GroupResult, PluginKind, RecordRef,
    StageCode, Value,
};
use crate::sink::error::BoxError;
use crate::sink::{ChangelogRecord, Phase, Records, RowSchema, Shape, Sink, SinkError, Sinks};

const PARTITIONS: i32 = 3;
const SHARDS: usize = 2;
const SCHEMA: &str = r#"{"type": "record", "name": "sum", "fields": [
    {"name": "COUNT", "type": ["null", "long"]},
    {"name": "SUM", "type": ["null", "long"]}
]}"#;

/// One input record; `n` is what it adds, `None` for a record weir must
/// dead-letter (not JSON, or no key).
#[derive(Debug, Clone)]
struct Event {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    n: Option<i64>,
}

fn generate(rng: &mut StdRng) -> Vec<Vec<Event>> {
    (0..PARTITIONS)
        .map(|partition| {
            let count = rng.random_range(10..60);
            (0..count)
                .map(|_| {
                    let key = format!("p{partition}-k{}", rng.random_range(0..4));
                    let n = rng.random_range(-5..100);
                    match rng.random_range(0..100) {
                        0..4 => Event {
                            key: Some(key.into_bytes()),
                            value: b"not json".to_vec(),
                            n: None,
                        },
                        4..6 => Event {
                            key: None,
                            value: format!("{{\"n\": {n}}}").into_bytes(),
                            n: None,
                        },
                        _ => Event {
                            key: Some(key.into_bytes()),
                            value: format!("{{\"n\": {n}}}").into_bytes(),
                            n: Some(n),
                        },
                    }
                })
                .collect()
        })
        .collect()
}

/// The oracle: each key's count and sum over all its good records.
fn fold(input: &[Vec<Event>]) -> BTreeMap<String, (i64, i64)> {
    let mut rows = BTreeMap::new();
    for event in input.iter().flatten() {
        if let (Some(key), Some(n)) = (&event.key, event.n) {
            let row = rows
                .entry(String::from_utf8_lossy(key).into_owned())
                .or_insert((0, 0));
            row.0 += 1;
            row.1 += n;
        }
    }
    rows
}

/// The aggregator, natively: count and sum of `n` per key. Version 1 keeps
/// (count, sum), version 2 (sum, count); each migrates the other's state.
/// `broken` traps on every call (a bad release, for probation to catch).
struct Summing {
    version: u32,
    broken: bool,
    traps: u64,
}

impl Summing {
    fn decode(&self, state: &[u8]) -> (i64, i64) {
        let word =
            |i: usize| i64::from_be_bytes(state[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        if self.version == 1 {
            (word(0), word(1))
        } else {
            (word(1), word(0))
        }
    }

    fn encode(&self, (count, sum): (i64, i64)) -> Vec<u8> {
        let (a, b) = if self.version == 1 {
            (count, sum)
        } else {
            (sum, count)
        };
        [a.to_be_bytes(), b.to_be_bytes()].concat()
    }
}

impl StageCode for Summing {
    fn reads(&self) -> &[String] {
        &[]
    }

    fn aggregate(&mut self, batch: &Batch, _fields: &Fields, groups: &[Group]) -> Vec<GroupResult> {
        if self.broken {
            self.traps += 1;
        }
        groups
            .iter()
            .map(|group| {
                let events = group.first as usize..(group.first + group.count) as usize;
                if self.broken {
                    // What an instance that trapped gives: every event failed.
                    return GroupResult {
                        state: group.state.clone(),
                        row: None,
                        failures: events
                            .map(|index| (index, Failure::Trapped("a trap".to_owned())))
                            .collect(),
                    };
                }
                let mut total = group.state.as_deref().map_or((0, 0), |s| self.decode(s));
                for index in events {
                    let value: serde_json::Value =
                        serde_json::from_slice(batch.record(index).value).expect("checked JSON");
                    total.0 += 1;
                    total.1 += value["n"].as_i64().expect("every good record has n");
                }
                GroupResult {
                    state: Some(self.encode(total)),
                    row: Some(vec![Value::Long(total.0), Value::Long(total.1)]),
                    failures: Vec::new(),
                }
            })
            .collect()
    }

    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, Failure> {
        Ok(self.encode(decode(from_version, state)))
    }

    fn restarts(&self) -> u64 {
        self.traps
    }
}

/// A state of `version`, as (count, sum).
fn decode(version: u32, state: &[u8]) -> (i64, i64) {
    Summing {
        version,
        broken: false,
        traps: 0,
    }
    .decode(state)
}

fn summing(version: u32, broken: bool) -> Stage {
    Stage::native(
        "sim",
        "sum",
        PluginKind::Aggregator,
        Box::new(Summing {
            version,
            broken,
            traps: 0,
        }),
    )
}

/// A clock that moves only when the schedule says so.
struct SimClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().expect("not poisoned")
    }
}

/// Everything that survives a crash: the broker's topics and the sinks.
#[derive(Default)]
struct Durable {
    committed: BTreeMap<i32, i64>,
    changelog: Vec<ChangelogRecord>,
    table: HashMap<String, Vec<Value>>,
    dead: Vec<(i32, i64)>,
    /// Sink name -> how many of its next writes fail, and how.
    faults: HashMap<&'static str, (u32, bool)>,
    /// Commits that fail next.
    failing_commits: u32,
}

type World = Arc<Mutex<Durable>>;

/// A simulated sink: the table, the dead-letter topic or the changelog.
struct SimSink {
    name: &'static str,
    world: World,
}

impl Sink for SimSink {
    fn name(&self) -> &str {
        self.name
    }

    fn phase(&self) -> Phase {
        if self.name == "changelog" {
            Phase::State
        } else {
            Phase::Outputs
        }
    }

    fn count(&self, records: &Records) -> usize {
        match self.name {
            "table" => records.row_count(),
            "dead-letters" => records.dead.len(),
            _ => records.changelog.len(),
        }
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        let mut world = self.world.lock().expect("not poisoned");
        if let Some((left, data)) = world
            .faults
            .get_mut(self.name)
            .filter(|(left, _)| *left > 0)
        {
            *left -= 1;
            let (sink, source) = (self.name.to_owned(), "simulated failure".into());
            let error = if *data {
                SinkError::Data { sink, source }
            } else {
                SinkError::External { sink, source }
            };
            return Box::pin(std::future::ready(Err(error)));
        }
        match self.name {
            "table" => {
                for (key, row) in records.rows.iter().flat_map(|rows| &rows.rows) {
                    world.table.insert(key.clone(), row.clone());
                }
            }
            "dead-letters" => {
                let letters = records.dead.iter().map(|l| (l.partition, l.offset));
                world.dead.extend(letters);
            }
            _ => world.changelog.extend(records.changelog.iter().cloned()),
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The group's offsets on the simulated broker, as one member (a shard
/// here plays a weir instance of its own) commits them; each commit is
/// checked against what the sinks hold.
struct SimOffsets {
    world: World,
    input: Arc<Vec<Vec<Event>>>,
    member: usize,
    owners: Owners,
}

/// Which member holds each partition.
type Owners = Arc<Mutex<BTreeMap<i32, usize>>>;

impl Offsets for SimOffsets {
    fn held(&self) -> Option<HashSet<i32>> {
        let owners = self.owners.lock().expect("not poisoned");
        Some(
            owners
                .iter()
                .filter(|(_, member)| **member == self.member)
                .map(|(partition, _)| *partition)
                .collect(),
        )
    }

    fn commit<'a>(
        &'a self,
        offsets: &'a BTreeMap<i32, i64>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        let mut world = self.world.lock().expect("not poisoned");
        if world.failing_commits > 0 {
            world.failing_commits -= 1;
            return Box::pin(std::future::ready(Err("simulated commit failure".into())));
        }
        for (&partition, &offset) in offsets {
            let below = &self.input[partition as usize][..offset as usize];
            let expected = fold(&[below.to_vec()]);
            for (key, (count, _)) in expected {
                let held = match world.table.get(&key).map(Vec::as_slice) {
                    Some([Value::Long(count), Value::Long(_)]) => *count,
                    _ => 0,
                };
                assert!(
                    held >= count,
                    "committed offset {offset} of partition {partition} before the sinks held \
                     key {key}'s {count} records below it (they hold {held})"
                );
            }
            world.committed.insert(partition, offset);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Flushes waiting for delivery, two at most before the shard would wait.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<VecDeque<Flush>>>);

impl Handover for Queue {
    fn has_room(&self) -> bool {
        self.0.lock().expect("not poisoned").len() < 2
    }

    fn hand_over(&self, flush: Flush) -> Result<(), ShardError> {
        self.0.lock().expect("not poisoned").push_back(flush);
        Ok(())
    }
}

/// The running members of the group (a shard each, with its own
/// delivery), as one process: a crash drops them all.
struct Process {
    shards: Vec<Shard<Queue>>,
    queues: Vec<Queue>,
    pending: Vec<Pending>,
    deliveries: Vec<Delivery>,
    owners: Owners,
    /// The next offset the source reads, per partition.
    position: BTreeMap<i32, i64>,
}

impl Process {
    fn owner(&self, partition: i32) -> usize {
        self.owners.lock().expect("not poisoned")[&partition]
    }
}

/// The running aggregator version (shards start on it after a crash).
struct Running {
    version: u32,
    shape: Arc<Shape>,
}

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
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let input = Arc::new(generate(&mut rng));
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
        let process = start(&world, &input, &clock, &running);
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

    /// The source hands a shard the next records of one partition.
    fn read(&mut self) {
        let partition = self.rng.random_range(0..PARTITIONS);
        let from = self.process.position[&partition];
        let events = &self.input[partition as usize];
        if from as usize >= events.len() {
            return;
        }
        let to = (from as usize + self.rng.random_range(1..9)).min(events.len());
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
    fn advance(&mut self) {
        let by = Duration::from_millis(self.rng.random_range(5..700));
        *self.clock.elapsed.lock().expect("not poisoned") += by;
        for shard in &mut self.process.shards {
            shard.refresh_some();
            shard.tick(false).expect("the queue always takes a flush");
        }
    }

    /// Delivery takes one flush of one shard.
    fn deliver_one(&mut self) {
        let shard = self.rng.random_range(0..SHARDS);
        self.deliver_next(shard);
    }

    /// Delivers the next flush `shard` queued: false when there was none,
    /// or when a permanent failure stopped the process.
    fn deliver_next(&mut self, shard: usize) -> bool {
        let flush = self.process.queues[shard]
            .0
            .lock()
            .expect("not poisoned")
            .pop_front();
        let Some(flush) = flush else {
            return false;
        };
        trace_flush(shard, &flush);
        let (delivery, pending) = (
            &self.process.deliveries[shard],
            &mut self.process.pending[shard],
        );
        if let Err(error) = self.runtime.block_on(delivery.deliver(flush, pending)) {
            assert!(matches!(error, DeliveryError::Permanent(_)), "{error}");
            // Outputs (dead letters among them) may be written, the
            // offsets are not committed.
            self.dead_letters_unsafe = true;
            self.crash();
            return false;
        }
        true
    }

    /// The next writes of a sink fail: transiently, or for good (once), or
    /// the next commits fail.
    fn fault(&mut self) {
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
    fn rebalance(&mut self) {
        let partition = self.rng.random_range(0..PARTITIONS);
        let from = self.process.owner(partition);
        let lost = self.rng.random_bool(0.3);
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
    fn swap(&mut self) {
        let broken = self.rng.random_bool(0.4);
        let version = if self.running.version == 1 { 2 } else { 1 };
        let shape = Arc::new(Shape::new(Arc::clone(&self.running.shape.schema)));
        let order = Arc::new(Order {
            id: self.next_order,
            stage: 0,
            instances: Instances::made_by(move || Ok(summing(version, broken))),
            aggregator: Some(AggregatorVersion {
                output: Arc::clone(&shape),
                state_version: version,
            }),
            requested: Instant::now(),
            // Long enough that every shard meets the broken version on a batch.
            probation: Some(Duration::from_secs(3_600)),
            reports: Arc::new(Reports::default()),
        });
        self.next_order += 1;
        for shard in &mut self.process.shards {
            shard.cut_over(Arc::clone(&order));
        }
        if !broken {
            self.running = Running { version, shape };
        }
    }

    /// The process dies: what was not durable is gone. A new one starts
    /// with the pipeline file's version (a swap is not remembered), and
    /// migrates state the other version wrote.
    fn crash(&mut self) {
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
        self.process = start(&self.world, &self.input, &self.clock, &self.running);
    }

    /// The input ends and the faults with it: everything is read, flushed,
    /// delivered and committed.
    fn drain(&mut self) {
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

/// A partition's state as the changelog holds it (newest record per key).
fn restored(world: &Durable, partition: i32) -> HashMap<Vec<u8>, Stored> {
    let mut entries = HashMap::new();
    for record in world.changelog.iter().filter(|r| r.partition == partition) {
        match &record.value {
            Some(value) => {
                entries.insert(
                    record.key.clone(),
                    Stored::decode(value).expect("a stored state"),
                );
            }
            None => {
                entries.remove(&record.key);
            }
        }
    }
    entries
}

/// A new process: each partition's state restored from the changelog and
/// read from its committed offset.
fn start(
    world: &World,
    input: &Arc<Vec<Vec<Event>>>,
    clock: &Arc<SimClock>,
    running: &Running,
) -> Process {
    let stats = Arc::new(Stats::new("sim", SHARDS));
    let committed = Arc::new(Committed::default());
    let queues: Vec<Queue> = (0..SHARDS).map(|_| Queue::default()).collect();
    // Each shard plays a member of the group: an ownership of its own.
    let ownership: Vec<Arc<Ownership>> = (0..SHARDS).map(|_| Arc::default()).collect();
    let mut shards: Vec<Shard<Queue>> = queues
        .iter()
        .enumerate()
        .map(|(id, queue)| {
            let chain = Chain::new(
                Vec::new(),
                summing(running.version, false),
                None,
                Arc::clone(&running.shape.schema),
                running.version,
                Format::Json,
            );
            let settings = ShardSettings {
                id,
                shards: SHARDS,
                flush_interval: Duration::from_secs(1),
                max_wait: Duration::from_millis(50),
                idle_timeout: None,
                state_version: running.version,
                output: Arc::clone(&running.shape),
                clock: Arc::clone(clock) as Arc<dyn Clock>,
                ownership: Arc::clone(&ownership[id]),
            };
            Shard::new(
                chain,
                queue.clone(),
                settings,
                Arc::clone(&stats),
                Arc::clone(&committed),
            )
        })
        .collect();
    let mut owners = BTreeMap::new();
    let mut position = BTreeMap::new();
    let durable = world.lock().expect("not poisoned");
    for partition in 0..PARTITIONS {
        let shard = partition as usize % SHARDS;
        shards[shard].restore(partition, restored(&durable, partition));
        owners.insert(partition, shard);
        let from = durable.committed.get(&partition).copied();
        position.insert(partition, from.unwrap_or(0));
    }
    drop(durable);
    let owners = Arc::new(Mutex::new(owners));
    let sinks: Arc<Sinks> = Arc::new(Sinks::new(
        "sim",
        ["table", "dead-letters", "changelog"]
            .into_iter()
            .map(|name| {
                Box::new(SimSink {
                    name,
                    world: Arc::clone(world),
                }) as Box<dyn Sink>
            })
            .collect(),
    ));
    let deliveries = (0..SHARDS)
        .map(|member| Delivery {
            sinks: Arc::clone(&sinks),
            offsets: Arc::new(SimOffsets {
                world: Arc::clone(world),
                input: Arc::clone(input),
                member,
                owners: Arc::clone(&owners),
            }),
            stats: Arc::clone(&stats),
            committed: Arc::clone(&committed),
            ownership: Arc::clone(&ownership[member]),
            stop: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    Process {
        shards,
        queues,
        pending: (0..SHARDS).map(|_| Pending::default()).collect(),
        deliveries,
        owners,
        position,
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
