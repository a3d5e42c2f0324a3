//! The host's one parse of each record: plugins declare the top-level JSON
//! fields they read (`reads`), and the host finds those fields' values with
//! a native parser, once per record for the whole pipeline, and hands each
//! stage the spans of the fields it reads. No plugin parses JSON text to
//! reach its fields; Wasm plugins run only their own logic.
//!
//! - [`Reader`]: the union of the fields a chain's stages read, and how to
//!   find them in a batch ([`Reader::parse`]).
//! - [`Parsed`]: one batch's fields, one row of spans per JSON-object record;
//!   carried along when a filter keeps records, so nothing is parsed twice.
//! - [`FieldsExt`]: the contract's [`Fields`] for a single record (trap isolation).

use jiter::{Jiter, JiterResult, Peek};

use super::batch::slice;
use super::bindings::types::{Batch, Fields, Span};

/// The fields a chain's stages read, as one list (a stage's own list maps
/// into it with [`Reader::columns`]).
#[derive(Debug, Clone, Default)]
pub struct Reader {
    names: Vec<String>,
}

impl Reader {
    /// The union of `reads`, in order of first mention.
    pub fn new<'a>(reads: impl IntoIterator<Item = &'a [String]>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for name in reads.into_iter().flatten() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        Self { names }
    }

    /// Where each of `reads` lies among this reader's fields.
    ///
    /// # Panics
    ///
    /// If a name of `reads` is not one of the reader's (it was built from a
    /// different list).
    pub fn columns(&self, reads: &[String]) -> Vec<usize> {
        reads
            .iter()
            .map(|name| {
                self.names
                    .iter()
                    .position(|known| known == name)
                    .expect("the reader was built with every stage's fields")
            })
            .collect()
    }

    /// Finds this reader's fields in every record of `batch`.
    pub fn parse(&self, batch: &Batch) -> Parsed {
        let mut parsed = Parsed::new(self.names.len(), batch.records.len());
        for info in &batch.records {
            self.push(slice(&batch.data, info.value), &mut parsed);
        }
        parsed
    }

    /// Appends the row of `value` to `parsed`.
    pub fn push(&self, value: &[u8], parsed: &mut Parsed) {
        let start = parsed.spans.len();
        parsed.spans.resize(start + self.names.len(), ABSENT);
        if self.find(value, 0, &mut parsed.spans[start..]).is_ok() {
            parsed.first.push(Some(index_u32(start)));
        } else {
            parsed.spans.truncate(start);
            parsed.first.push(None);
        }
    }

    /// Appends the row of `output`, a transform's output for record `index`
    /// of `inputs` (whose value is `input`). An output that is its input
    /// with members added before the closing brace — what enrichment does —
    /// is parsed only where it differs: the input's spans stay valid, and
    /// the added members are parsed (and checked) on their own; a member
    /// added again replaces the input's, as in a full parse. Any other
    /// output is parsed whole.
    pub fn push_extended(
        &self,
        inputs: &Parsed,
        index: usize,
        input: &[u8],
        output: &[u8],
        parsed: &mut Parsed,
    ) {
        let Some(first) = inputs.first[index] else {
            return self.push(output, parsed);
        };
        let Some(added) = added_members(input, output) else {
            return self.push(output, parsed);
        };
        // The input's row, then what the added members (parsed as an object
        // of their own, `{` + members) set over it: positions in `members`
        // are one `{` less and `added` more in `output`.
        let start = parsed.spans.len();
        let first = first as usize;
        parsed
            .spans
            .extend_from_slice(&inputs.spans[first..first + inputs.width]);
        let mut members = Vec::with_capacity(output.len() - added + 1);
        members.push(b'{');
        members.extend_from_slice(&output[added..]);
        if self
            .find(&members, added - 1, &mut parsed.spans[start..])
            .is_ok()
        {
            parsed.first.push(Some(index_u32(start)));
        } else {
            parsed.spans.truncate(start);
            parsed.first.push(None);
        }
    }

    /// Sets the spans in `row` of this reader's fields found in `value`,
    /// moved `shift` bytes on (others are left as they are); an error when
    /// `value` is not a JSON object (the whole value is checked, fields read
    /// or not).
    fn find(&self, value: &[u8], shift: usize, row: &mut [Span]) -> Result<(), ()> {
        if std::str::from_utf8(value).is_err() {
            return Err(());
        }
        let mut json = Jiter::new(value);
        let mut walk = |json: &mut Jiter<'_>| -> JiterResult<bool> {
            if json.peek()? != Peek::Object {
                return Ok(false);
            }
            let mut key = json.next_object()?.map(|key| self.column(key));
            while let Some(column) = key {
                let peek = json.peek()?;
                let start = json.current_index();
                json.known_skip(peek)?;
                if let Some(column) = column {
                    // A repeated field: the last one counts, as in JavaScript.
                    row[column] = Span {
                        start: index_u32(start + shift),
                        len: index_u32(json.current_index() - start),
                    };
                }
                key = json.next_key()?.map(|key| self.column(key));
            }
            json.finish()?;
            Ok(true)
        };
        match walk(&mut json) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(()),
        }
    }

    fn column(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|name| name == key)
    }
}

/// Where the members `output` adds to the JSON object `input` start (after
/// the separating comma), when `output` is `input` up to its closing brace
/// followed by members and a closing brace of its own; `None` otherwise.
fn added_members(input: &[u8], output: &[u8]) -> Option<usize> {
    let close = input.iter().rposition(|&byte| byte == b'}')?;
    let body = &input[..close];
    if output.len() <= close || output[..close] != *body {
        return None;
    }
    let rest = &output[close..];
    let skip = rest.iter().position(|byte| !byte.is_ascii_whitespace())?;
    let open = body.iter().position(|&byte| byte == b'{')?;
    let empty = body[open + 1..].iter().all(u8::is_ascii_whitespace);
    match rest[skip] {
        b',' if !empty => Some(close + skip + 1),
        b'"' if empty => Some(close + skip),
        _ => None,
    }
}

/// A field the record does not have.
const ABSENT: Span = Span { start: 0, len: 0 };

/// One batch's fields: for each record, `None` when its value is not a JSON
/// object, else where its row of spans starts (one span per reader field,
/// relative to the record's value).
#[derive(Debug, Clone)]
pub struct Parsed {
    width: usize,
    first: Vec<Option<u32>>,
    spans: Vec<Span>,
}

impl Parsed {
    fn new(width: usize, records: usize) -> Self {
        Self {
            width,
            first: Vec::with_capacity(records),
            spans: Vec::with_capacity(records * width),
        }
    }

    /// Whether record `index`'s value is a JSON object (its whole value
    /// checked: well-formed UTF-8 and JSON).
    pub fn is_object(&self, index: usize) -> bool {
        self.first[index].is_some()
    }

    /// Where field `column` of this reader lies in record `index`'s value
    /// (a span of length 0: the object has no such field); `None` when the
    /// value is not a JSON object.
    pub fn field(&self, index: usize, column: usize) -> Option<Span> {
        let first = self.first[index]? as usize;
        Some(self.spans[first + column])
    }

    /// An empty set of rows of the same width, to carry records into.
    pub fn empty_like(&self) -> Self {
        Self::new(self.width, 0)
    }

    /// The rows of records `indexes`, in that order: the fields of the
    /// batch that [`BatchExt::select`](super::BatchExt::select) makes of the
    /// same records (spans are relative to each record's value, so they stay
    /// valid).
    pub fn select(&self, indexes: &[u32]) -> Self {
        let mut selected = Self::new(self.width, indexes.len());
        for &index in indexes {
            match self.first[index as usize] {
                Some(first) => {
                    let first = first as usize;
                    selected.first.push(Some(index_u32(selected.spans.len())));
                    selected
                        .spans
                        .extend_from_slice(&self.spans[first..first + self.width]);
                }
                None => selected.first.push(None),
            }
        }
        selected
    }

    /// The contract's [`Fields`] for a stage reading `columns` of this reader.
    pub fn project(&self, columns: &[usize]) -> Fields {
        let mut fields = Fields {
            first: Vec::with_capacity(self.first.len()),
            spans: Vec::with_capacity(self.spans.len() / self.width.max(1) * columns.len()),
        };
        for first in &self.first {
            match first {
                Some(first) => {
                    let row = &self.spans[*first as usize..*first as usize + self.width];
                    fields.first.push(Some(index_u32(fields.spans.len())));
                    fields
                        .spans
                        .extend(columns.iter().map(|&column| row[column]));
                }
                None => fields.first.push(None),
            }
        }
        fields
    }
}

/// What a stage's [`Fields`] hold for part of a batch.
pub trait FieldsExt {
    /// The fields of record `index` alone (`width`: the fields the plugin reads).
    fn single(&self, index: usize, width: usize) -> Fields;
}

impl FieldsExt for Fields {
    fn single(&self, index: usize, width: usize) -> Fields {
        match self.first.get(index) {
            None => no_fields(),
            Some(None) => Fields {
                first: vec![None],
                spans: Vec::new(),
            },
            Some(Some(first)) => Fields {
                first: vec![Some(0)],
                spans: self.spans[*first as usize..*first as usize + width].to_vec(),
            },
        }
    }
}

/// The [`Fields`] of `batch` for one plugin reading `reads` (a stage alone:
/// tests and benchmarks; a chain parses once for all its stages).
pub fn read(batch: &Batch, reads: &[String]) -> Fields {
    if reads.is_empty() {
        return no_fields();
    }
    let reader = Reader::new([reads]);
    reader.parse(batch).project(&reader.columns(reads))
}

/// The [`Fields`] of a batch for a plugin that reads none.
pub fn no_fields() -> Fields {
    Fields {
        first: Vec::new(),
        spans: Vec::new(),
    }
}

fn index_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a batch stays below 4 GiB and 2^32 records")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::batch::{BatchBuilder, RecordRef};

    fn batch(values: &[&str]) -> Batch {
        let mut builder = BatchBuilder::default();
        for (offset, value) in values.iter().enumerate() {
            builder.push(RecordRef {
                key: None,
                value: value.as_bytes(),
                timestamp: 0,
                partition: 0,
                offset: offset as i64,
            });
        }
        builder.build()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    /// The text of each field read, per record (`None`: not an object).
    fn texts(batch: &Batch, fields: &Fields, width: usize) -> Vec<Option<Vec<String>>> {
        (0..batch.records.len())
            .map(|index| {
                fields.first[index].map(|first| {
                    let value = slice(&batch.data, batch.records[index].value);
                    (0..width)
                        .map(|column| {
                            let span = fields.spans[first as usize + column];
                            String::from_utf8(slice(value, span).to_vec()).unwrap()
                        })
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn finds_each_stages_fields_once_for_all() {
        let filter = names(&["event_type"]);
        let aggregator = names(&["cart_total", "event_type", "user"]);
        let reader = Reader::new([filter.as_slice(), aggregator.as_slice()]);
        let batch = batch(&[
            r#"{"event_type": "page_view", "user": {"id": 1, "tags": ["a", "}"]}, "cart_total": 12.5}"#,
            r#" { "cart_total" : null , "event_type":"purchase" } "#,
            r#"{"event_type": "x", "event_type": "last wins"}"#,
            r#"{}"#,
        ]);
        let parsed = reader.parse(&batch);
        let fields = parsed.project(&reader.columns(&aggregator));
        let some = |list: &[&str]| Some(names(list));
        assert_eq!(
            texts(&batch, &fields, 3),
            vec![
                some(&["12.5", "\"page_view\"", r#"{"id": 1, "tags": ["a", "}"]}"#]),
                some(&["null", "\"purchase\"", ""]),
                some(&["", "\"last wins\"", ""]),
                some(&["", "", ""]),
            ]
        );
        let fields = parsed.project(&reader.columns(&filter));
        assert_eq!(texts(&batch, &fields, 1)[1], some(&["\"purchase\""]));
    }

    #[test]
    fn values_that_are_not_json_objects_have_no_fields() {
        let reader = Reader::new([names(&["a"]).as_slice()]);
        let batch = batch(&[
            "not json",
            "[1, 2]",
            r#""text""#,
            r#"{"a": 1"#,
            r#"{"a": 1} trailing"#,
            r#"{"a": "\x"}"#,
            r#"{"a": 1}"#,
        ]);
        let fields = reader.parse(&batch).project(&[0]);
        let objects: Vec<bool> = fields.first.iter().map(Option::is_some).collect();
        assert_eq!(objects, [false, false, false, false, false, false, true]);
    }

    #[test]
    fn an_extended_output_is_parsed_where_it_differs() {
        let reader = Reader::new([names(&["a", "b", "c"]).as_slice()]);
        let inputs = batch(&[
            r#"{"a": 1, "b": {"x": "}"}}"#,
            r#"{"a": 1}"#,
            r#"{ }"#,
            r#"{"a": 1}"#,
            r#"{"a": 1}"#,
            "not json",
        ]);
        let outputs = [
            r#"{"a": 1, "b": {"x": "}"},"c":"added"}"#,
            r#"{"a": 1 , "a": 2}"#,
            r#"{ "c": 3}"#,
            r#"{"a": 1,"c": oops}"#,
            r#"{"a": 9, "c": 3}"#,
            r#"{"c": 4}"#,
        ];
        let parsed = reader.parse(&inputs);
        let mut extended = parsed.empty_like();
        let mut whole = parsed.empty_like();
        for (index, output) in outputs.iter().enumerate() {
            let input = slice(&inputs.data, inputs.records[index].value);
            reader.push_extended(&parsed, index, input, output.as_bytes(), &mut extended);
            reader.push(output.as_bytes(), &mut whole);
        }
        // The same rows as parsing each output whole.
        let out = batch(&outputs);
        let columns = [0, 1, 2];
        assert_eq!(
            texts(&out, &extended.project(&columns), 3),
            texts(&out, &whole.project(&columns), 3)
        );
        assert_eq!(
            texts(&out, &extended.project(&columns), 3)[0],
            Some(names(&["1", r#"{"x": "}"}"#, r#""added""#]))
        );
        assert_eq!(extended.first[3], None, "an added member that is not JSON");
    }

    #[test]
    fn rows_follow_the_records_they_belong_to() {
        let reader = Reader::new([names(&["b", "a"]).as_slice()]);
        let batch = batch(&[r#"{"a": 1, "b": 2}"#, "oops", r#"{"b": 3}"#]);
        let parsed = reader.parse(&batch);
        let kept = parsed.select(&[2, 1, 0]);
        let fields = kept.project(&[1, 0]);
        assert_eq!(fields.first, [Some(0), None, Some(2)]);
        assert_eq!(fields.single(2, 2).spans, fields.spans[2..4].to_vec());
        assert_eq!(fields.single(1, 2).first, [None]);
    }
}
