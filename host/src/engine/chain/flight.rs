//! A batch on its way through the filters and transforms: which records
//! are still in it, where each came from, and their fields once parsed.

use super::keys::{key_of, key_of_field, not_a_json_object};
use super::stage::{Counts, Stage};
use super::values::AvroValues;
use super::{Rekey, Tally, index_u32};
use crate::engine::origin::{self, Origin};
use crate::plugin::{
    Batch, BatchBuilder, BatchExt, Fields, Parsed, PluginKind, Reader, RecordRef, Verdict, slice,
};
use crate::sink::{DeadLetter, limits};

/// The records the next stage reads, with for each the source record it
/// came from (dead letters carry the record as it arrived).
pub(super) struct InFlight<'s> {
    source: &'s Batch,
    /// The batch the next stage reads (`None`: the source itself).
    current: Option<Batch>,
    /// The fields the stages read, once parsed (a transform's output is new
    /// JSON: parsed again when a later stage reads fields).
    parsed: Option<Parsed>,
    /// For each record of the batch, its index in the source.
    origin: Vec<u32>,
}

/// The records that reach the aggregator: the source, their batch, their
/// fields if a stage already parsed them, and for each the source record it
/// came from.
pub(super) struct Reaching<'a> {
    pub(super) source: &'a Batch,
    pub(super) batch: &'a Batch,
    pub(super) parsed: Option<Parsed>,
    pub(super) origin: &'a [u32],
}

/// What one stage read, as the functions running it see it.
struct StageInput<'a> {
    source: &'a Batch,
    batch: &'a Batch,
    fields: &'a Fields,
    origin: &'a [u32],
    parsed: Option<&'a Parsed>,
}

/// What one stage made of its batch: the records the next stage reads.
struct Next {
    batch: Batch,
    origin: Vec<u32>,
    parsed: Option<Parsed>,
}

impl<'s> InFlight<'s> {
    /// Every record of `source`, none parsed yet.
    pub(super) fn new(source: &'s Batch) -> Self {
        Self {
            source,
            current: None,
            parsed: None,
            origin: (0..index_u32(source.records.len())).collect(),
        }
    }

    /// The records the next stage reads.
    pub(super) fn batch(&self) -> &Batch {
        self.current.as_ref().unwrap_or(self.source)
    }

    /// Checks a `json` source's values with the parse that finds the
    /// stages' fields: those that are not JSON objects become dead letters
    /// before any stage.
    pub(super) fn check_json(&mut self, reader: &Reader, dead: &mut Vec<DeadLetter>) {
        let checked = reader.parse(self.source);
        if (0..self.source.records.len()).all(|index| checked.is_object(index)) {
            self.parsed = Some(checked);
            return;
        }
        let source = self.source;
        self.origin.retain(|&index| {
            let object = checked.is_object(index as usize);
            if !object {
                let record = source.record(index as usize);
                dead.push(DeadLetter::malformed(
                    record,
                    "source",
                    "not-json",
                    not_a_json_object(record.value),
                ));
            }
            object
        });
        self.current = Some(source.select(&self.origin));
        self.parsed = Some(checked.select(&self.origin));
    }

    /// Decodes an `avro` source's values into the JSON the stages read;
    /// those that cannot be read become dead letters (carrying the value as
    /// it arrived) before any stage.
    pub(super) fn decode_avro(
        &mut self,
        avro: &mut AvroValues,
        reader: &Reader,
        dead: &mut Vec<DeadLetter>,
    ) {
        let source = self.source;
        let mut decoded = BatchBuilder::with_capacity(source.records.len(), source.data.len() * 2);
        let mut json = Vec::new();
        self.origin.retain(|&index| {
            let record = source.record(index as usize);
            json.clear();
            match avro.to_json(record.value, &mut json) {
                Ok(()) => {
                    decoded.push(RecordRef {
                        value: &json,
                        ..record
                    });
                    for header in source.headers_of(index as usize) {
                        decoded.header(&header.key, &header.value);
                    }
                    true
                }
                Err(unreadable) => {
                    dead.push(DeadLetter::malformed(
                        record,
                        "source",
                        unreadable.code,
                        unreadable.message,
                    ));
                    false
                }
            }
        });
        let decoded = decoded.build();
        self.parsed = Some(reader.parse(&decoded));
        self.current = Some(decoded);
    }

    /// Runs `stage` (a filter or a transform) over the batch, which then
    /// holds what the stage passed on; returns what the stage did.
    pub(super) fn run(
        &mut self,
        stage: &mut Stage,
        reader: &Reader,
        tally: &mut Tally,
        dead: &mut Vec<DeadLetter>,
    ) -> Counts {
        let batch = self.current.as_ref().unwrap_or(self.source);
        let records_in = batch.records.len() as u64;
        let dropped_before = tally.dropped;
        let fields = stage.fields(batch, &mut self.parsed, reader);
        let input = StageInput {
            source: self.source,
            batch,
            fields: &fields,
            origin: &self.origin,
            parsed: self.parsed.as_ref(),
        };
        let next = match stage.kind {
            PluginKind::Filter => filter(stage, &input, tally, dead),
            PluginKind::Transform => Some(transform(stage, &input, reader, tally, dead)),
            PluginKind::Aggregator => unreachable!("the aggregator is the last stage"),
        };
        let Some(next) = next else {
            // The filter kept every record: the batch goes on as it is.
            return Counts {
                records_in,
                records_out: records_in,
                dropped: 0,
            };
        };
        let counts = Counts {
            records_in,
            records_out: next.origin.len() as u64,
            dropped: tally.dropped - dropped_before,
        };
        self.current = Some(next.batch);
        self.origin = next.origin;
        self.parsed = next.parsed;
        counts
    }

    /// The records that passed every stage, as a batch of their own for
    /// the sinks to write as they are. One too large for any Kafka topic
    /// ([`limits::MAX_EMITTED_BYTES`]) becomes a dead letter of `stage` (the
    /// last), carrying its source record.
    pub(super) fn into_emitted(self, stage: &str, dead: &mut Vec<DeadLetter>) -> Batch {
        let batch = self.current.unwrap_or_else(|| self.source.clone());
        let size = |index: usize| {
            let record = batch.record(index);
            let headers: usize = (batch.headers_of(index).iter())
                .map(|h| h.key.len() + h.value.len())
                .sum();
            record.key.map_or(0, <[u8]>::len) + record.value.len() + headers
        };
        let fits = |index: usize| size(index) <= limits::MAX_EMITTED_BYTES;
        if (0..batch.records.len()).all(fits) {
            return batch;
        }
        batch.select_where(|index| {
            if fits(index) {
                return true;
            }
            let source = self.source.record(self.origin[index] as usize);
            dead.push(DeadLetter::malformed(
                source,
                stage,
                "too-large",
                format!(
                    "the record it became takes {} bytes with its key and headers, more than \
                     the {} a Kafka topic takes from weir",
                    size(index),
                    limits::MAX_EMITTED_BYTES
                ),
            ));
            false
        })
    }

    /// Keys each record by `rekey`'s field for the second hop and adds its
    /// origin header (the first hop of a re-keyed pipeline); records
    /// without a valid key become dead letters, as the aggregator would
    /// make them.
    pub(super) fn rekey(&mut self, rekey: &Rekey, reader: &Reader, dead: &mut Vec<DeadLetter>) {
        let batch = self.current.as_ref().unwrap_or(self.source);
        // The chain's one parse finds the field with the stages' own.
        let column = reader.columns(std::slice::from_ref(&rekey.field))[0];
        let parsed = self.parsed.take().unwrap_or_else(|| reader.parse(batch));
        let mut builder = BatchBuilder::with_capacity(batch.records.len(), batch.data.len());
        let mut origin = Vec::with_capacity(self.origin.len());
        // Each record's index among those its source record became.
        let mut made = (u32::MAX, 0);
        for (index, &source_index) in self.origin.iter().enumerate() {
            made = if made.0 == source_index {
                (source_index, made.1 + 1)
            } else {
                (source_index, 0)
            };
            let record = batch.record(index);
            let from = self.source.record(source_index as usize);
            let key = match parsed.field(index, column) {
                Some(span) => key_of_field(slice(record.value, span), &rekey.field),
                // Not an object: the whole value's reading says why.
                None => key_of(record, Some(&rekey.field)),
            };
            let key = match key {
                Ok(key) => key,
                Err((code, reason)) => {
                    dead.push(DeadLetter::malformed(from, &rekey.stage, code, reason));
                    continue;
                }
            };
            builder.push(RecordRef {
                key: Some(&key),
                ..record
            });
            for header in batch.headers_of(index) {
                builder.header(&header.key, &header.value);
            }
            let at = Origin {
                partition: from.partition,
                offset: from.offset,
                index: made.1,
            };
            builder.header(origin::HEADER, &at.encode());
            origin.push(source_index);
        }
        self.current = Some(builder.build());
        self.origin = origin;
        self.parsed = None;
    }

    /// The records that reach the aggregator (the fields parsed so far
    /// move with them).
    pub(super) fn reaching(&mut self) -> Reaching<'_> {
        Reaching {
            source: self.source,
            batch: self.current.as_ref().unwrap_or(self.source),
            parsed: self.parsed.take(),
            origin: &self.origin,
        }
    }
}

/// Runs a filter; `None` when it kept every record.
fn filter(
    stage: &mut Stage,
    input: &StageInput<'_>,
    tally: &mut Tally,
    dead: &mut Vec<DeadLetter>,
) -> Option<Next> {
    let verdicts = stage.timed(|code| code.filter(input.batch, input.fields));
    if verdicts.iter().all(|v| *v == Verdict::Keep) {
        return None;
    }
    let mut kept = Vec::with_capacity(verdicts.len());
    let mut origin = Vec::with_capacity(input.origin.len());
    for (index, verdict) in verdicts.into_iter().enumerate() {
        match verdict {
            Verdict::Keep => {
                kept.push(index_u32(index));
                origin.push(input.origin[index]);
            }
            Verdict::Drop => tally.dropped += 1,
            Verdict::Failed(failure) => {
                let record = input.source.record(input.origin[index] as usize);
                dead.push(stage.fail(record, failure));
            }
        }
    }
    Some(Next {
        batch: input.batch.select(&kept),
        origin,
        parsed: input.parsed.map(|parsed| parsed.select(&kept)),
    })
}

/// Runs a transform: each record becomes its outputs (none: dropped).
fn transform(
    stage: &mut Stage,
    input: &StageInput<'_>,
    reader: &Reader,
    tally: &mut Tally,
    dead: &mut Vec<DeadLetter>,
) -> Next {
    // Outputs that extend their input (enrichment) are parsed only where
    // they differ, while the input's fields are at hand; other outputs wait
    // for a stage that reads them.
    let mut parsed = stage
        .read_later
        .then(|| input.parsed.map(Parsed::empty_like))
        .flatten();
    let batch = input.batch;
    let results = stage.timed(|code| code.transform(batch, input.fields));
    let mut next = BatchBuilder::with_capacity(batch.records.len(), batch.data.len());
    let mut origin = Vec::with_capacity(input.origin.len());
    for (index, result) in results.into_iter().enumerate() {
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(failure) => {
                let record = input.source.record(input.origin[index] as usize);
                dead.push(stage.fail(record, failure));
                continue;
            }
        };
        if outputs.is_empty() {
            tally.dropped += 1;
        }
        let record = batch.record(index);
        for output in &outputs {
            next.push(RecordRef {
                key: output.key.as_deref(),
                value: &output.value,
                ..record
            });
            if let (Some(parsed), Some(known)) = (&mut parsed, input.parsed) {
                reader.push_extended(known, index, record.value, &output.value, parsed);
            }
            for (key, value) in &output.headers {
                next.header(key, value);
            }
            origin.push(input.origin[index]);
        }
    }
    Next {
        batch: next.build(),
        origin,
        parsed,
    }
}
