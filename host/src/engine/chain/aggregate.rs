//! The aggregator's part of a batch: its records grouped by (partition,
//! key), those a key's state already holds skipped, state another version
//! wrote migrated, and the aggregator's results checked and turned into
//! state updates.

use std::borrow::Cow;
use std::collections::HashMap;

use super::flight::Reaching;
use super::keys::key_of;
use super::{Aggregating, Replays, Update, index_u32};
use crate::engine::origin::{self, Origin, Origins};
use crate::engine::state::{Folded, Held, KeyedState};
use crate::plugin::{Batch, BatchExt, Failure, Group, GroupResult, Reader, no_fields};
use crate::sink::{DeadLetter, limits};

/// What the aggregator made of a batch.
#[derive(Default)]
pub(super) struct Aggregated {
    /// Records that went into state.
    pub(super) records: u64,
    /// Records skipped because their key's state already held them.
    pub(super) replayed: u64,
    /// Records dated further ahead of the wall clock than stream time goes.
    pub(super) ahead: u64,
    /// The state updates, applied by the caller.
    pub(super) updates: Vec<Update>,
}

/// The records reaching the aggregator by key, keys in order of first
/// appearance.
struct Keyed<'a> {
    keys: Vec<(i32, Cow<'a, [u8]>)>,
    /// (key id, record index), sorted by key id; records keep their order
    /// within a key.
    order: Vec<(u32, u32)>,
    /// Behind a repartition topic: each record's origin, by record index
    /// (`None`: it has none, and is a dead letter, not keyed).
    origins: Vec<Option<Origin>>,
}

/// How far a group's events take its key.
struct Newest {
    /// The newest event time.
    time: i64,
    /// The newest offset in the partition read.
    offset: i64,
    /// Behind a repartition topic: the newest origin per source partition.
    origins: Origins,
}

/// The groups the aggregator is called with.
#[derive(Default)]
struct Groups {
    groups: Vec<Group>,
    /// The batch's records in group order (each group's events side by side).
    records: Vec<u32>,
    /// For each of those, the source record it came from.
    origin: Vec<u32>,
    /// Per group: its partition and what its events bring the key to.
    newest: Vec<(i32, Newest)>,
    /// Records skipped because their key's state already held them.
    replayed: u64,
}

impl Aggregating {
    /// Groups the records `reaching` the aggregator by (partition, key),
    /// runs the aggregator over the groups and returns the state updates
    /// (applied by the caller, once the batch is kept).
    pub(super) fn aggregate(
        &mut self,
        reader: &Reader,
        mut reaching: Reaching<'_>,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) -> Aggregated {
        if !self.stage.columns.is_empty() && reaching.parsed.is_none() {
            reaching.parsed = Some(reader.parse(reaching.batch));
        }
        let (keyed, ahead) = self.key(&reaching, state, dead);
        if keyed.order.is_empty() {
            return Aggregated {
                ahead,
                ..Aggregated::default()
            };
        }
        let groups = self.group(&reaching, keyed, state, dead);
        let fields = reaching.parsed.as_ref().map_or_else(no_fields, |parsed| {
            parsed.select(&groups.records).project(&self.stage.columns)
        });
        let grouped = reaching.batch.select(&groups.records);
        let results = self
            .stage
            .timed(|code| code.aggregate(&grouped, &fields, &groups.groups));
        Aggregated {
            ahead,
            ..self.fold(reaching.source, groups, results, dead)
        }
    }

    /// Finds each record's key (those without a valid one become dead
    /// letters) and moves stream time, once per partition; also how many
    /// records were dated further ahead than stream time may go.
    fn key<'a>(
        &self,
        reaching: &Reaching<'a>,
        state: &mut KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) -> (Keyed<'a>, u64) {
        let batch = reaching.batch;
        let mut ids: HashMap<(i32, Cow<'_, [u8]>), u32> = HashMap::new();
        let mut keyed = Keyed {
            keys: Vec::new(),
            order: Vec::with_capacity(batch.records.len()),
            origins: Vec::new(),
        };
        if self.replays == Replays::ByOrigin {
            keyed.origins.reserve(batch.records.len());
        }
        // Stream time moves with every record, keyed or not: once per partition per batch.
        let mut stream_time: Vec<(i32, i64)> = Vec::new();
        for (index, &source_index) in reaching.origin.iter().enumerate() {
            let record = batch.record(index);
            match stream_time.iter_mut().find(|(p, _)| *p == record.partition) {
                Some(slot) => slot.1 = slot.1.max(record.timestamp),
                None => stream_time.push((record.partition, record.timestamp)),
            }
            let keyed_by = match self.replays {
                Replays::ByOffset => key_of(record, self.key_field.as_deref()),
                Replays::ByOrigin => {
                    let origin = origin_of(batch, index);
                    keyed.origins.push(origin.as_ref().ok().copied());
                    origin.and_then(|_| key_of(record, None))
                }
            };
            let key = match keyed_by {
                Ok(key) => key,
                Err((code, reason)) => {
                    let record = reaching.source.record(source_index as usize);
                    let stage = &self.stage.name;
                    dead.push(DeadLetter::malformed(record, stage, code, reason));
                    continue;
                }
            };
            let id = *ids
                .entry((record.partition, key.clone()))
                .or_insert_with(|| {
                    keyed.keys.push((record.partition, key));
                    index_u32(keyed.keys.len() - 1)
                });
            keyed.order.push((id, index_u32(index)));
        }
        let mut ahead = 0;
        for (partition, newest) in stream_time {
            if state.observe(partition, newest) {
                let records = reaching.batch.records.iter();
                ahead += records
                    .filter(|r| r.partition == partition && r.timestamp > state.trusted_until())
                    .count() as u64;
            }
        }
        keyed.order.sort_by_key(|&(id, _)| id);
        (keyed, ahead)
    }

    /// Makes one group per key of its records the key's state does not
    /// hold yet, with the key's state (migrated if another version wrote
    /// it).
    fn group(
        &mut self,
        reaching: &Reaching<'_>,
        keyed: Keyed<'_>,
        state: &KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) -> Groups {
        let (batch, origin) = (reaching.batch, reaching.origin);
        let mut groups = Groups {
            groups: Vec::with_capacity(keyed.keys.len()),
            records: Vec::with_capacity(keyed.order.len()),
            origin: Vec::with_capacity(keyed.order.len()),
            newest: Vec::with_capacity(keyed.keys.len()),
            replayed: 0,
        };
        let mut room = state.room();
        for run in keyed.order.chunk_by(|a, b| a.0 == b.0) {
            let (partition, key) = &keyed.keys[run[0].0 as usize];
            let previous = state.get(*partition, key);
            if previous.is_none() {
                if room == 0 {
                    self.refuse_new_key(reaching, run, state, dead);
                    continue;
                }
                room -= 1;
            }
            let (fresh, origins) = self.fresh(run, batch, &keyed.origins, previous);
            let skipped = run.len() - fresh.len();
            groups.replayed += skipped as u64;
            if fresh.is_empty() {
                continue;
            }
            // State another version of the aggregator wrote is migrated first.
            let prior = match previous {
                None => None,
                Some(held) if held.version == self.state_version => Some(held.state.to_vec()),
                Some(held) => match self.stage.worker.migrate(held.version, held.state) {
                    Ok(state) => Some(state),
                    Err(failure) => {
                        let failure = Failure::Trapped(format!(
                            "cannot migrate the key's state from version {}: {failure}",
                            held.version
                        ));
                        for &index in &fresh {
                            let record = reaching.source.record(origin[index as usize] as usize);
                            dead.push(self.stage.fail(record, failure.clone()));
                        }
                        continue;
                    }
                },
            };
            let first = index_u32(groups.records.len());
            let mut newest = Newest {
                time: i64::MIN,
                offset: i64::MIN,
                origins,
            };
            for &index in &fresh {
                let record = &batch.records[index as usize];
                newest.time = newest.time.max(record.timestamp);
                newest.offset = newest.offset.max(record.offset);
                groups.records.push(index);
                groups.origin.push(origin[index as usize]);
            }
            groups.groups.push(Group {
                key: key.to_vec(),
                state: prior,
                first,
                count: index_u32(groups.records.len()) - first,
            });
            groups.newest.push((*partition, newest));
        }
        groups
    }

    /// The records of a key's `run` its state does not hold yet (by index
    /// in `batch`), in order, and the origins the key holds with them.
    /// Read directly, those past the offset the state applied (a source
    /// record's records share its offset, and are always in one batch);
    /// behind a repartition topic, those past the origin the key holds for
    /// their source partition, including records earlier in the run (a
    /// record written again may follow its original in the same batch).
    fn fresh(
        &self,
        run: &[(u32, u32)],
        batch: &Batch,
        origins: &[Option<Origin>],
        previous: Option<Held<'_>>,
    ) -> (Vec<u32>, Origins) {
        let indexes = run.iter().map(|&(_, index)| index);
        match self.replays {
            Replays::ByOffset => {
                let done = previous.map_or(i64::MIN, |held| held.applied);
                let fresh = indexes
                    .filter(|&index| batch.records[index as usize].offset > done)
                    .collect();
                (fresh, Origins::default())
            }
            Replays::ByOrigin => {
                let mut held = previous
                    .map(|held| held.origins.clone())
                    .unwrap_or_default();
                let fresh = indexes
                    .filter(|&index| {
                        let origin = origins[index as usize].expect("keyed records have an origin");
                        let fresh = !held.holds(origin);
                        held.advance(origin);
                        fresh
                    })
                    .collect();
                (fresh, held)
            }
        }
    }

    /// Dead-letters the events of a new key (`run`) the state has no room
    /// for (`max_keys`); the first time, says so in the log.
    fn refuse_new_key(
        &mut self,
        reaching: &Reaching<'_>,
        run: &[(u32, u32)],
        state: &KeyedState,
        dead: &mut Vec<DeadLetter>,
    ) {
        let max = state.max_keys();
        if !std::mem::replace(&mut self.warned_full, true) {
            tracing::warn!(
                stage = %self.stage.name,
                max_keys = max,
                "The state holds `max_keys` keys: events of new keys are dead-lettered \
                 (state-full) until idle keys are evicted; logged once per shard."
            );
        }
        let reason = format!(
            "the aggregator's state holds its most keys ({max}, `max_keys`): events of \
             new keys are refused until idle keys are evicted (`idle_timeout`)"
        );
        for &(_, index) in run {
            let record = reaching
                .source
                .record(reaching.origin[index as usize] as usize);
            let stage = &self.stage.name;
            dead.push(DeadLetter::malformed(
                record,
                stage,
                "state-full",
                reason.clone(),
            ));
        }
    }

    /// Checks the aggregator's `results` for `groups` and turns them into
    /// state updates; records it failed become dead letters.
    fn fold(
        &self,
        source: &Batch,
        groups: Groups,
        results: Vec<GroupResult>,
        dead: &mut Vec<DeadLetter>,
    ) -> Aggregated {
        let stage = &self.stage;
        let mut aggregated = Aggregated {
            records: 0,
            replayed: groups.replayed,
            ahead: 0,
            updates: Vec::with_capacity(groups.groups.len()),
        };
        let origin = &groups.origin;
        for ((group, result), (partition, newest)) in
            groups.groups.into_iter().zip(results).zip(groups.newest)
        {
            let first = group.first as usize;
            let events = first..first + group.count as usize;
            if let Some(row) = &result.row
                && let Err(error) = self.schema.check(row)
            {
                // The plugin broke its own schema: none of the group's
                // events count, and each says why.
                let failure = Failure::Trapped(format!(
                    "its output row does not fit its output schema: {error}"
                ));
                for index in events {
                    let record = source.record(origin[index] as usize);
                    dead.push(stage.fail(record, failure.clone()));
                }
                continue;
            }
            if let Some((code, reason)) = too_large(&result) {
                // Its row or state could never be written: the group's
                // events are refused, and the key keeps its state.
                for index in events {
                    let record = source.record(origin[index] as usize);
                    dead.push(DeadLetter::malformed(
                        record,
                        &stage.name,
                        code,
                        reason.clone(),
                    ));
                }
                continue;
            }
            let went_through = (group.count as usize).saturating_sub(result.failures.len());
            aggregated.records += went_through as u64;
            for (index, failure) in result.failures {
                dead.push(stage.fail(source.record(origin[index] as usize), failure));
            }
            if group.state.is_none() && group.count > 0 && went_through == 0 {
                // A new key none of whose events went through has no state
                // and no row: it has not begun.
                continue;
            }
            if let Some(new_state) = result.state {
                let folded = Folded {
                    state: new_state,
                    row: result.row,
                    applied: newest.offset,
                    origins: newest.origins,
                    last_event: newest.time,
                };
                aggregated.updates.push((partition, group.key, folded));
            }
        }
        aggregated
    }
}

/// The origin of record `index` of `batch` (behind a repartition topic), or
/// why it has none: a dead letter's code and reason.
pub(super) fn origin_of(batch: &Batch, index: usize) -> Result<Origin, (&'static str, String)> {
    let header = batch
        .headers_of(index)
        .iter()
        .rfind(|header| header.key == origin::HEADER);
    header
        .and_then(|header| Origin::decode(&header.value))
        .ok_or_else(|| {
            (
                "no-origin",
                format!(
                    "the record has no valid `{}` header: it was not written by weir's \
                     first hop, and a repartition topic takes only those",
                    origin::HEADER
                ),
            )
        })
}

/// Why a group's result could never be written, if it could not: a state
/// or a row larger than the sinks take.
fn too_large(result: &GroupResult) -> Option<(&'static str, String)> {
    let state = result.state.as_ref().map_or(0, Vec::len);
    let row = result.row.as_deref().map_or(0, limits::row_bytes);
    [
        (
            "state-too-large",
            "state",
            state,
            limits::MAX_STATE_BYTES,
            "a changelog message",
        ),
        (
            "row-too-large",
            "row",
            row,
            limits::MAX_ROW_BYTES,
            "a Kafka message",
        ),
    ]
    .into_iter()
    .find(|&(_, _, bytes, max, _)| bytes > max)
    .map(|(code, what, bytes, max, fits)| {
        (
            code,
            format!(
                "with this record the key's {what} would be {bytes} bytes; a {what} is at most \
                 {max} (it must fit {fits}); the key keeps its state without it"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Value;

    fn result(state: usize, text: usize) -> GroupResult {
        GroupResult {
            state: Some(vec![0; state]),
            row: Some(vec![Value::Text("x".repeat(text)), Value::Long(1)]),
            failures: Vec::new(),
        }
    }

    #[test]
    fn a_result_the_sinks_cannot_take_is_refused_with_its_size() {
        assert_eq!(too_large(&result(limits::MAX_STATE_BYTES, 1000)), None);
        let (code, reason) = too_large(&result(limits::MAX_STATE_BYTES + 1, 10)).expect("refused");
        assert_eq!(code, "state-too-large");
        assert!(reason.contains("900001 bytes"), "{reason}");
        let text = limits::MAX_ROW_BYTES - 20;
        assert_eq!(too_large(&result(10, text)), None, "the largest row fits");
        let (code, _) = too_large(&result(10, text + 1)).expect("refused");
        assert_eq!(code, "row-too-large");
    }
}
