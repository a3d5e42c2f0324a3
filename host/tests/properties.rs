//! Property tests of the code that reads bytes from outside: the JSON field
//! scanner (against serde_json, a second implementation), the changelog
//! record decoder, the lowering of a transform's spans into records, and
//! the pipeline file parser. Any input: no panic, and the answer agrees with
//! what the bytes say. A failing case prints its shrunk input. The test
//! command runs the same cases every time (a fixed seed); `PROPTEST_RNG_SEED`
//! explores others and `PROPTEST_CASES` sets how many (256 by default).

use proptest::prelude::*;
use serde_json::{Map, Value as Json};
use weir::engine::changelog::Stored;
use weir::engine::origin::{Origin, Origins};
use weir::plugin::bindings::transforming::{Emitted, Transformed};
use weir::plugin::bindings::types::{RecordHeader, Rejection, Span};
use weir::plugin::transformed::split_transformed;
use weir::plugin::{Failure, Reader};

/// The field names the scanner looks for; generated objects use them and others.
const NAMES: [&str; 5] = ["a", "b", "session_id", "é", "a\"b"];

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Json::from),
        "\\PC{0,12}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((name(), inner), 0..6)
                .prop_map(|members| Json::Object(members.into_iter().collect())),
        ]
    })
}

/// A member name: one the scanner looks for, or any other.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES.to_vec()).prop_map(str::to_owned),
        "\\PC{0,6}",
    ]
}

/// A JSON object, as text with whitespace of its own between tokens.
fn object() -> impl Strategy<Value = (Map<String, Json>, Vec<u8>)> {
    (prop::collection::vec((name(), json()), 0..8), any::<bool>()).prop_map(|(members, pretty)| {
        let object: Map<String, Json> = members.into_iter().collect();
        let text = if pretty {
            serde_json::to_vec_pretty(&object)
        } else {
            serde_json::to_vec(&object)
        };
        (object, text.expect("serializable"))
    })
}

/// The spans the scanner found in `value` for [`NAMES`], if it took the
/// value for a JSON object.
fn scan(value: &[u8]) -> Option<Vec<Span>> {
    let names: Vec<String> = NAMES.iter().map(|&n| n.to_owned()).collect();
    let reader = Reader::new([names.as_slice()]);
    let parsed = reader.parse(&batch_of(value));
    let fields = parsed.project(&reader.columns(&names));
    let first = fields.first[0]? as usize;
    Some(fields.spans[first..first + NAMES.len()].to_vec())
}

/// What serde_json says of `value`: an object, or not.
fn serde_object(value: &[u8]) -> Option<Map<String, Json>> {
    match serde_json::from_slice::<Json>(value) {
        Ok(Json::Object(object)) => Some(object),
        _ => None,
    }
}

/// Checks the scanner's spans against serde_json's reading of `value`.
fn agree(value: &[u8], object: &Map<String, Json>, spans: &[Span]) -> Result<(), TestCaseError> {
    for (name, span) in NAMES.iter().zip(spans) {
        match object.get(*name) {
            None => prop_assert_eq!(span.len, 0, "`{}` is absent", name),
            Some(expected) => {
                let start = span.start as usize;
                let raw = &value[start..start + span.len as usize];
                let found: Json = serde_json::from_slice(raw).map_err(|e| {
                    TestCaseError::fail(format!("`{name}`'s span is not JSON: {e}"))
                })?;
                prop_assert_eq!(&found, expected, "`{}`", name);
            }
        }
    }
    Ok(())
}

proptest! {
    // A failure prints its shrunk input; there is no source folder to keep
    // regressions in beside an integration test.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        rng_seed: seed(),
        ..ProptestConfig::default()
    })]

    /// Every field of a JSON object is found where serde_json finds it.
    #[test]
    fn the_scanner_finds_each_field_serde_json_finds((_, value) in object()) {
        let spans = scan(&value).expect("a JSON object is an object");
        // serde_json's reading of the text (its floats may differ in the
        // last bit from the generated ones).
        let object = serde_object(&value).expect("serde_json reads it back");
        agree(&value, &object, &spans)?;
    }

    /// One byte changed, added or removed anywhere: the scanner and
    /// serde_json agree whether it is still a JSON object, and on its fields.
    #[test]
    fn the_scanner_agrees_with_serde_json_on_damaged_objects(
        (_, value) in object(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..3u8,
    ) {
        let mut damaged = value.clone();
        let at = at.index(damaged.len() + 1);
        match how {
            0 if at < damaged.len() => damaged[at] = byte,
            1 => damaged.insert(at, byte),
            _ if at < damaged.len() => { damaged.remove(at); }
            _ => damaged.push(byte),
        }
        let scanned = scan(&damaged);
        // A number beyond f64's range is valid JSON that parsers may refuse
        // (RFC 8259, section 6): serde_json does, the scanner takes it.
        let out_of_range = serde_json::from_slice::<Json>(&damaged)
            .is_err_and(|error| error.to_string().contains("number out of range"));
        if out_of_range {
            return Ok(());
        }
        match serde_object(&damaged) {
            Some(object) if has_duplicates(&damaged) => {
                // Which duplicate counts differs between parsers; whether
                // it is an object does not.
                let _ = object;
                prop_assert!(scanned.is_some());
            }
            Some(object) => {
                let spans = scanned.ok_or_else(|| TestCaseError::fail(format!(
                    "serde_json reads an object the scanner refuses: {:?}",
                    String::from_utf8_lossy(&damaged)
                )))?;
                agree(&damaged, &object, &spans)?;
            }
            None => prop_assert!(
                scanned.is_none(),
                "the scanner takes what serde_json refuses: {:?}",
                String::from_utf8_lossy(&damaged)
            ),
        }
    }

    /// Any bytes at all: no panic, and an answer only for what serde_json
    /// reads as an object.
    #[test]
    fn the_scanner_takes_any_bytes(value in prop::collection::vec(any::<u8>(), 0..64)) {
        let scanned = scan(&value);
        prop_assert_eq!(scanned.is_some(), serde_object(&value).is_some());
    }

    /// A transform's output that is its input with members added (what
    /// enrichment does) is read only where it differs: the same fields as
    /// reading it whole.
    #[test]
    fn reading_an_extended_output_equals_reading_it_whole(
        (_, input) in object(),
        (_, added) in object(),
    ) {
        // The input with the added object's members before its closing brace.
        let output = extend(&input, &added);
        let names: Vec<String> = NAMES.iter().map(|&n| n.to_owned()).collect();
        let reader = Reader::new([names.as_slice()]);
        let inputs = reader.parse(&batch_of(&input));
        let mut extended = inputs.empty_like();
        reader.push_extended(&inputs, 0, &input, &output, &mut extended);
        let mut whole = inputs.empty_like();
        reader.push(&output, &mut whole);
        let columns = reader.columns(&names);
        let (a, b) = (extended.project(&columns), whole.project(&columns));
        prop_assert_eq!(a.first.is_empty(), b.first.is_empty());
        prop_assert_eq!(a.first[0].is_some(), b.first[0].is_some());
        if a.first[0].is_some() && !has_duplicates(&output) {
            prop_assert_eq!(a.spans, b.spans);
        }
    }

    /// Any changelog value: no panic; what decodes encodes back to the same
    /// bytes, and what is encoded decodes to the same state.
    #[test]
    fn changelog_values_decode_only_as_written(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        state_version in any::<u32>(),
        applied in any::<i64>(),
        origins in prop::collection::vec((any::<i32>(), any::<i64>(), any::<u32>()), 0..4),
        last_event in any::<i64>(),
        state in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(stored) = Stored::decode(&bytes) {
            prop_assert_eq!(stored.encode(), bytes);
        }
        let origins = Origins::from_vec(
            origins
                .into_iter()
                .map(|(partition, offset, index)| Origin { partition, offset, index })
                .collect(),
        );
        let stored = Stored { state_version, applied, origins, last_event, state };
        prop_assert_eq!(Stored::decode(&stored.encode()).expect("decodes"), stored);
    }

    /// Any spans a transform returns: no panic; spans outside its buffer,
    /// sources outside the batch and headers of records not emitted are
    /// refused; otherwise each record is the bytes its spans say.
    #[test]
    fn a_transforms_spans_become_records_only_when_they_are_sound(
        data in prop::collection::vec(any::<u8>(), 0..32),
        records in prop::collection::vec((0..4u32, prop::option::of((0..40u32, 0..40u32)), (0..40u32, 0..40u32)), 0..6),
        headers in prop::collection::vec((0..8u32, "\\PC{0,3}", prop::collection::vec(any::<u8>(), 0..3)), 0..4),
        rejected in prop::collection::vec(0..5u32, 0..3),
        inputs in 1..4usize,
    ) {
        let span = |(start, len): (u32, u32)| Span { start, len };
        let transformed = Transformed {
            data: data.clone(),
            records: records.iter().map(|&(source, key, value)| Emitted { source, key: key.map(span), value: span(value) }).collect(),
            headers: headers.iter().map(|(record, key, value)| RecordHeader { record: *record, key: key.clone(), value: value.clone() }).collect(),
            rejected: rejected.iter().map(|&index| Rejection {
                index,
                error: weir::plugin::PluginError { code: "c".into(), message: "m".into() },
            }).collect(),
        };
        let fits = |(start, len): (u32, u32)| start as usize + len as usize <= data.len();
        let sound = records.iter().all(|&(source, key, value)| {
            (source as usize) < inputs && key.is_none_or(fits) && fits(value)
        }) && headers.iter().all(|(record, _, _)| (*record as usize) < records.len())
            && rejected.iter().all(|&index| (index as usize) < inputs);
        match split_transformed(transformed, inputs) {
            Err(_) => prop_assert!(!sound),
            Ok(results) => {
                prop_assert!(sound);
                prop_assert_eq!(results.len(), inputs);
                for (index, result) in results.iter().enumerate() {
                    let mine: Vec<_> = records.iter().filter(|r| r.0 as usize == index).collect();
                    match result {
                        Err(Failure::Rejected(_)) => prop_assert!(rejected.contains(&(index as u32))),
                        Err(other) => prop_assert!(false, "{other:?}"),
                        Ok(outputs) => {
                            prop_assert_eq!(outputs.len(), mine.len());
                            for (output, &&(_, _, (start, len))) in outputs.iter().zip(&mine) {
                                prop_assert_eq!(&output.value[..], &data[start as usize..(start + len) as usize]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Any text as a pipeline file: no panic, and every error points into
    /// the text.
    #[test]
    fn any_text_as_a_pipeline_file_gets_an_answer(text in "\\PC{0,200}") {
        let _ = weir::pipeline::check("any.toml", &text, std::path::Path::new("."));
    }

    /// The stock pipeline file cut anywhere, or with one line replaced by
    /// any text: no panic.
    #[test]
    fn a_damaged_pipeline_file_gets_an_answer(
        at in any::<prop::sample::Index>(),
        line in any::<prop::sample::Index>(),
        junk in "\\PC{0,40}",
    ) {
        let demo = include_str!("../../pipelines/demo.toml");
        let mut cut = at.index(demo.len() + 1);
        while !demo.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = weir::pipeline::check("demo.toml", &demo[..cut], std::path::Path::new("."));
        let mut lines: Vec<&str> = demo.lines().collect();
        let replaced = line.index(lines.len());
        lines[replaced] = &junk;
        let _ = weir::pipeline::check("demo.toml", &lines.join("\n"), std::path::Path::new("."));
    }
}

/// The cases' seed: fixed, so a run reproduces, unless `PROPTEST_RNG_SEED`
/// asks for another.
fn seed() -> proptest::test_runner::RngSeed {
    if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        ProptestConfig::default().rng_seed
    } else {
        proptest::test_runner::RngSeed::Fixed(0x5eed_0021)
    }
}

/// `input` (a JSON object's text) with `added`'s members before its
/// closing brace, as an enrichment writes them.
fn extend(input: &[u8], added: &[u8]) -> Vec<u8> {
    let close = input.iter().rposition(|&b| b == b'}').expect("an object");
    let open = added.iter().position(|&b| b == b'{').expect("an object");
    let members = &added[open + 1..added.iter().rposition(|&b| b == b'}').expect("an object")];
    let empty_input = serde_object(input).is_some_and(|o| o.is_empty());
    let members_text = String::from_utf8_lossy(members);
    if members_text.trim().is_empty() {
        return input.to_vec();
    }
    let mut output = input[..close].to_vec();
    if !empty_input {
        output.push(b',');
    }
    output.extend_from_slice(members);
    output.extend_from_slice(&input[close..]);
    output
}

/// Whether the object in `value` names a top-level member twice.
fn has_duplicates(value: &[u8]) -> bool {
    #[derive(Default)]
    struct Seen(bool);
    impl<'de> serde::de::Visitor<'de> for &mut Seen {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut names = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                if !names.insert(name) {
                    self.0 = true;
                }
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut seen = Seen::default();
    let mut deserializer = serde_json::Deserializer::from_slice(value);
    let _ = serde::Deserializer::deserialize_any(&mut deserializer, &mut seen);
    seen.0
}

/// A batch of one record whose value is `value`.
fn batch_of(value: &[u8]) -> weir::plugin::Batch {
    let mut builder = weir::plugin::BatchBuilder::default();
    builder.push(weir::plugin::RecordRef {
        key: None,
        value,
        timestamp: 0,
        partition: 0,
        offset: 0,
    });
    builder.build()
}
