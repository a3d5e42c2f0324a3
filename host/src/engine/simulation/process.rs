//! One simulated process: a shard and a delivery per member of the group,
//! each partition's state restored from the simulated changelog.

use super::*;

/// The running members of the group (a shard each, with its own
/// delivery), as one process: a crash drops them all.
pub(super) struct Process {
    pub(super) shards: Vec<Shard<Queue>>,
    pub(super) queues: Vec<Queue>,
    pub(super) pending: Vec<Pending>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) owners: Owners,
    /// The next offset the source reads, per partition.
    pub(super) position: BTreeMap<i32, i64>,
}

impl Process {
    pub(super) fn owner(&self, partition: i32) -> usize {
        self.owners.lock().expect("not poisoned")[&partition]
    }
}

/// The running aggregator version (shards start on it after a crash).
pub(super) struct Running {
    pub(super) version: u32,
    pub(super) shape: Arc<Shape>,
}

/// A new process: each partition's state restored from the changelog and
/// read from its committed offset.
pub(super) fn start(
    world: &World,
    input: &Arc<Vec<Vec<Event>>>,
    clock: &Arc<SimClock>,
    running: &Running,
    max_keys: u64,
) -> Process {
    let keys = Arc::new(KeyBudget::new(max_keys));
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
                End::Aggregate(Box::new(Aggregating::new(
                    summing(running.version, Fault::None),
                    None,
                    Arc::clone(&running.shape.schema),
                    running.version,
                ))),
                Values::Json,
            );
            let settings = ShardSettings {
                id,
                shards: SHARDS,
                flush_interval: Duration::from_secs(1),
                max_wait: Duration::from_millis(50),
                idle_timeout: None,
                max_clock_skew: Duration::from_secs(60),
                keys: Arc::clone(&keys),
                aggregator: Some(AggregatorVersion {
                    output: Arc::clone(&running.shape),
                    state_version: running.version,
                }),
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
