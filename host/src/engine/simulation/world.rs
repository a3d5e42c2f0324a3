//! What outlives a simulated process: the clock, the broker (committed
//! offsets, the changelog) and the sinks.

use super::*;

/// A clock that moves only when the schedule says so.
pub(super) struct SimClock {
    pub(super) start: Instant,
    pub(super) elapsed: Mutex<Duration>,
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().expect("not poisoned")
    }

    /// The simulated records are dated from the epoch on; the wall clock
    /// starts a day later.
    fn wall_ms(&self) -> i64 {
        let elapsed = *self.elapsed.lock().expect("not poisoned");
        86_400_000 + i64::try_from(elapsed.as_millis()).expect("a short simulation")
    }
}

/// Everything that survives a crash: the broker's topics and the sinks.
#[derive(Default)]
pub(super) struct Durable {
    pub(super) committed: BTreeMap<i32, i64>,
    pub(super) changelog: Vec<ChangelogRecord>,
    pub(super) table: HashMap<String, Vec<Value>>,
    pub(super) dead: Vec<(i32, i64)>,
    /// Sink name -> how many of its next writes fail, and how.
    pub(super) faults: HashMap<&'static str, (u32, bool)>,
    /// Commits that fail next.
    pub(super) failing_commits: u32,
    /// Sink name -> the writes it took.
    pub(super) writes: HashMap<&'static str, usize>,
    /// Good records may be dead-lettered (a `max_keys` is set): the sinks
    /// must hold every good record below a commit but those.
    pub(super) refusals: bool,
}

pub(super) type World = Arc<Mutex<Durable>>;

/// A simulated sink: the table, the dead-letter topic or the changelog.
pub(super) struct SimSink {
    pub(super) name: &'static str,
    pub(super) world: World,
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
        *world.writes.entry(self.name).or_default() += 1;
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
pub(super) struct SimOffsets {
    pub(super) world: World,
    pub(super) input: Arc<Vec<Vec<Event>>>,
    pub(super) member: usize,
    pub(super) owners: Owners,
}

/// Which member holds each partition.
pub(super) type Owners = Arc<Mutex<BTreeMap<i32, usize>>>;

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
            let refused =
                |at: usize| world.refusals && world.dead.contains(&(partition, at as i64));
            let kept = below.iter().enumerate().filter(|&(at, _)| !refused(at));
            let expected = fold(&[kept.map(|(_, event)| event.clone()).collect()]);
            let changelog = restored(&world, partition);
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
                let stored = changelog
                    .get(key.as_bytes())
                    .map_or(0, |stored| decode(stored.state_version, &stored.state).0);
                assert!(
                    stored >= count,
                    "committed offset {offset} of partition {partition} before the changelog \
                     held key {key}'s {count} records below it (it holds {stored})"
                );
            }
            for (at, event) in below.iter().enumerate() {
                let at = (partition, at as i64);
                assert!(
                    event.n.is_some() || world.dead.contains(&at),
                    "committed offset {offset} before bad record {at:?} was dead-lettered"
                );
            }
            world.committed.insert(partition, offset);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Flushes waiting for delivery, two at most before the shard would wait.
#[derive(Clone, Default)]
pub(super) struct Queue(pub(super) Arc<Mutex<VecDeque<Flush>>>);

impl Handover for Queue {
    fn has_room(&self) -> bool {
        self.0.lock().expect("not poisoned").len() < 2
    }

    fn hand_over(&self, flush: Flush) -> Result<(), ShardError> {
        self.0.lock().expect("not poisoned").push_back(flush);
        Ok(())
    }
}

/// A partition's state as the changelog holds it (newest record per key).
pub(super) fn restored(world: &Durable, partition: i32) -> HashMap<Vec<u8>, Stored> {
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
