//! A transform's answer, turned from one output buffer into records per
//! input record, checked against the contract on the way.

use super::batch::slice;
use super::bindings::transforming::Transformed;
use super::error::{Failure, Trap};

/// How many bytes more than its output buffer a transform's records may
/// take, when their spans overlap (the same bytes emitted twice are copied
/// twice): enough for fan-out, not for a few bytes of buffer multiplied by
/// every record into the host's memory.
pub const MAX_ALIASED_BYTES: usize = 64 * 1024 * 1024;

/// A record a transform emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRecord {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Turns a transform's output buffer into records per input record,
/// checking that it keeps to the contract.
pub fn split_transformed(
    transformed: Transformed,
    inputs: usize,
) -> Result<Vec<Result<Vec<OutputRecord>, Failure>>, Trap> {
    let Transformed {
        data,
        records,
        headers,
        rejected,
    } = transformed;
    let span_ok = |start: u32, len: u32| {
        (start as usize)
            .checked_add(len as usize)
            .is_some_and(|end| end <= data.len())
    };
    // Spans may overlap, and each is copied: bound the copies first.
    let copied: u64 = records
        .iter()
        .map(|emitted| {
            u64::from(emitted.value.len) + emitted.key.map_or(0, |key| u64::from(key.len))
        })
        .sum();
    if copied > (data.len() + MAX_ALIASED_BYTES) as u64 {
        return Err(Trap(format!(
            "emitted records whose keys and values add up to {copied} bytes from an output \
             buffer of {} bytes (spans may overlap by at most {MAX_ALIASED_BYTES} bytes in all)",
            data.len()
        )));
    }
    let mut outputs: Vec<(usize, OutputRecord)> = Vec::with_capacity(records.len());
    for emitted in &records {
        let source = emitted.source as usize;
        let key_ok = emitted.key.is_none_or(|key| span_ok(key.start, key.len));
        if source >= inputs || !key_ok || !span_ok(emitted.value.start, emitted.value.len) {
            return Err(Trap(format!(
                "emitted a record that points outside its batch (source {source} of {inputs})"
            )));
        }
        outputs.push((
            source,
            OutputRecord {
                key: emitted.key.map(|key| slice(&data, key).to_vec()),
                value: slice(&data, emitted.value).to_vec(),
                headers: Vec::new(),
            },
        ));
    }
    for header in headers {
        let Some((_, output)) = outputs.get_mut(header.record as usize) else {
            return Err(Trap(format!(
                "emitted a header for record {} it did not emit",
                header.record
            )));
        };
        output.headers.push((header.key, header.value));
    }
    let mut results: Vec<Result<Vec<OutputRecord>, Failure>> =
        (0..inputs).map(|_| Ok(Vec::new())).collect();
    for (source, output) in outputs {
        if let Ok(list) = &mut results[source] {
            list.push(output);
        }
    }
    for rejection in rejected {
        let index = rejection.index as usize;
        if index >= inputs {
            return Err(Trap(format!(
                "rejected record {index} of a batch of {inputs}"
            )));
        }
        results[index] = Err(Failure::Rejected(rejection.error));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::transforming::Emitted;
    use crate::plugin::bindings::types::Span;

    fn emitting(data: Vec<u8>, spans: &[(u32, u32)]) -> Transformed {
        Transformed {
            data,
            records: spans
                .iter()
                .map(|&(start, len)| Emitted {
                    source: 0,
                    key: None,
                    value: Span { start, len },
                })
                .collect(),
            headers: Vec::new(),
            rejected: Vec::new(),
        }
    }

    #[test]
    fn overlapping_spans_are_copied_up_to_a_bound_not_multiplied_without_end() {
        // The same 1 MiB emitted twice: fine.
        let mib = 1024 * 1024;
        let twice = emitting(vec![7; mib as usize], &[(0, mib), (0, mib)]);
        let records = split_transformed(twice, 1).expect("within the bound");
        assert_eq!(records[0].as_ref().expect("emitted").len(), 2);
        // The same 1 MiB a hundred thousand times would be 100 GB.
        let spans = vec![(0, mib); 100_000];
        let error = split_transformed(emitting(vec![7; mib as usize], &spans), 1)
            .expect_err("refused before copying");
        assert!(
            error.0.contains("add up to 104857600000 bytes"),
            "{}",
            error.0
        );
    }
}
