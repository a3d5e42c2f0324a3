//! A transform's answer, turned from one output buffer into records per
//! input record, checked against the contract on the way.

use super::batch::slice;
use super::bindings::transforming::Transformed;
use super::error::{Failure, Trap};

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
