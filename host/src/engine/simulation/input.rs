//! The simulation's input, its aggregator (a count and a sum per key, in
//! two state versions), and the oracle's fold of the input.

use super::*;

/// One input record; `n` is what it adds, `None` for a record weir must
/// dead-letter (not JSON, or no key).
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Vec<u8>,
    pub(super) n: Option<i64>,
}

pub(super) fn generate(rng: &mut StdRng) -> Vec<Vec<Event>> {
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
pub(super) fn fold(input: &[Vec<Event>]) -> BTreeMap<String, (i64, i64)> {
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
/// A `fault` makes it a bad release, for probation to catch.
pub(super) struct Summing {
    pub(super) version: u32,
    pub(super) fault: Fault,
    pub(super) traps: u64,
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
        if self.fault == Fault::Traps {
            self.traps += 1;
        }
        groups
            .iter()
            .map(|group| {
                let events = group.first as usize..(group.first + group.count) as usize;
                if self.fault == Fault::Traps {
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
                let mut row = vec![Value::Long(total.0), Value::Long(total.1)];
                if self.fault == Fault::BreaksSchema {
                    // A column its schema does not have: no trap, but no row either.
                    row.push(Value::Null);
                }
                GroupResult {
                    state: Some(self.encode(total)),
                    row: Some(row),
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
pub(super) fn decode(version: u32, state: &[u8]) -> (i64, i64) {
    Summing {
        version,
        fault: Fault::None,
        traps: 0,
    }
    .decode(state)
}

/// What is wrong with a version of the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// Nothing.
    None,
    /// It traps on every call.
    Traps,
    /// Its rows do not fit its own schema.
    BreaksSchema,
}

pub(super) fn summing(version: u32, fault: Fault) -> Stage {
    Stage::native(
        "sim",
        "sum",
        PluginKind::Aggregator,
        Box::new(Summing {
            version,
            fault,
            traps: 0,
        }),
    )
}
