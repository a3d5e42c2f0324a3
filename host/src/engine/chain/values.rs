//! How a chain reads its source's values before the first stage: `json`
//! values are checked by the chain's one parse, `bytes` pass as they are,
//! and `avro` values (the Confluent wire format: a zero byte, the writer's
//! schema id in 4 bytes, the Avro datum) are decoded with the writer's
//! schema from the registry into the JSON the stages read, so a plugin's
//! `reads` find the same fields in either.
//!
//! Avro values become JSON as `apache-avro` maps them: records and maps are
//! objects, unions their branch's value, enums and UUIDs strings, dates,
//! times and timestamps their numbers, `bytes`, `fixed`, decimals and
//! durations arrays of byte values. A value that cannot be read — no
//! framing, a schema id the registry does not have, a datum that does not
//! decode or leaves bytes over, a top level that is not a record, a float
//! JSON cannot hold — is dead-lettered with the reason, before any stage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::schema::Name;
use apache_avro::types::Value as Avro;

use crate::sink::registry::{RegistryClient, RegistryError};

/// How a chain reads its source's values.
pub enum Values {
    /// JSON objects; checked by the chain's one parse.
    Json,
    /// Any bytes, passed on as they are.
    Bytes,
    /// Avro in the Confluent wire format, decoded into JSON.
    Avro(Box<AvroValues>),
}

/// Why a value cannot be read: a dead letter's reason code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The reason code (`not-avro`, `unknown-schema`, `unusable-schema`, `not-a-record`).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl Unreadable {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A schema as fetched: usable, or why not. A registry never reuses an id
/// for another schema, so what it answered stays true, except "no such id",
/// which a registry that lags behind another may answer for a schema just
/// registered: that is asked again after [`ASK_AGAIN`].
type Fetched = Result<Arc<Schema>, Unreadable>;

/// How long "no schema with this id" is believed.
const ASK_AGAIN: Duration = Duration::from_secs(10);

/// The most ids a shard remembers as unknown: values naming random ids
/// (hostile, or not Avro at all) would otherwise grow the cache without end.
const MAX_UNKNOWN: usize = 10_000;

/// Decodes Avro values with their writers' schemas, each fetched from the
/// registry the first time its id is seen.
pub struct AvroValues {
    registry: Arc<RegistryClient>,
    tokio: tokio::runtime::Handle,
    schemas: HashMap<u32, (Fetched, Instant)>,
}

/// How long a shard waits between tries while the registry does not answer.
const RETRY: Duration = Duration::from_secs(2);

/// How often a registry that still does not answer is logged again.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl AvroValues {
    /// A decoder that fetches schemas from `registry` (on `tokio`; it is
    /// called from a shard's own thread).
    pub fn new(registry: Arc<RegistryClient>, tokio: tokio::runtime::Handle) -> Self {
        Self {
            registry,
            tokio,
            schemas: HashMap::new(),
        }
    }

    /// A decoder that already holds `schemas` (tests).
    #[cfg(test)]
    pub(crate) fn with_schemas(
        registry: Arc<RegistryClient>,
        tokio: tokio::runtime::Handle,
        schemas: impl IntoIterator<Item = (u32, Fetched)>,
    ) -> Self {
        Self {
            registry,
            tokio,
            schemas: (schemas.into_iter())
                .map(|(id, fetched)| (id, (fetched, Instant::now())))
                .collect(),
        }
    }

    /// Appends `value`, decoded, to `out` as one JSON object.
    pub fn to_json(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<(), Unreadable> {
        let [0, a, b, c, d, datum @ ..] = value else {
            return Err(Unreadable::new(
                "not-avro",
                "not in the Confluent wire format (a zero byte, then a 4-byte schema id)",
            ));
        };
        let id = u32::from_be_bytes([*a, *b, *c, *d]);
        let schema = self.schema(id)?;
        decode(&schema, id, datum, out)
    }

    /// The schema registered as `id`, fetched once. While the registry does
    /// not answer, the shard waits and tries again: its records are not
    /// the ones at fault.
    fn schema(&mut self, id: u32) -> Fetched {
        if let Some((fetched, at)) = self.schemas.get(&id)
            && (!is_unknown(fetched) || at.elapsed() < ASK_AGAIN)
        {
            return fetched.clone();
        }
        let started = Instant::now();
        let mut warned: Option<Instant> = None;
        let found = loop {
            match self.tokio.block_on(self.registry.schema_by_id(id)) {
                Ok(found) => break found,
                Err(error @ (RegistryError::Unreachable { .. } | RegistryError::Http { .. })) => {
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(
                            schema_id = id,
                            waited = ?started.elapsed(),
                            "Cannot fetch the schema of an Avro value; the pipeline waits for the registry: {error}"
                        );
                        warned = Some(Instant::now());
                    }
                    std::thread::sleep(RETRY);
                }
            }
        };
        let fetched = match found {
            None => Err(Unreadable::new(
                "unknown-schema",
                format!("schema id {id} is not in the registry"),
            )),
            Some(found) if !found.schema_type.eq_ignore_ascii_case("AVRO") => Err(Unreadable::new(
                "not-avro",
                format!("schema id {id} is a {} schema", found.schema_type),
            )),
            Some(found) => usable(id, &found.schema).map(Arc::new),
        };
        if let Err(unreadable) = &fetched {
            tracing::warn!(
                schema_id = id,
                "Values written with schema {id} cannot be read and go to the dead-letter topic: {}",
                unreadable.message
            );
        }
        if is_unknown(&fetched) {
            let unknown = self.schemas.values().filter(|(f, _)| is_unknown(f)).count();
            if unknown >= MAX_UNKNOWN {
                self.schemas.retain(|_, (f, _)| !is_unknown(f));
            }
        }
        self.schemas.insert(id, (fetched.clone(), Instant::now()));
        fetched
    }
}

/// True for "the registry has no schema with this id".
fn is_unknown(fetched: &Fetched) -> bool {
    matches!(fetched, Err(unreadable) if unreadable.code == "unknown-schema")
}

/// Schema `id`'s text as a schema weir can decode with: parsed, with no
/// type that contains itself (a hostile value could nest it until the stack
/// ran out) and no array of items that take no bytes (a hostile count
/// could make it loop for hours).
pub(crate) fn usable(id: u32, text: &str) -> Result<Schema, Unreadable> {
    let unusable =
        |why: String| Unreadable::new("unusable-schema", format!("schema id {id} {why}"));
    let schema =
        Schema::parse_str(text).map_err(|error| unusable(format!("does not parse: {error}")))?;
    let mut open = Vec::new();
    let mut named = HashMap::new();
    check(&schema, &mut open, &mut named).map_err(unusable)?;
    Ok(schema)
}

/// Walks `schema`: `open` holds the records it is inside, `named` every
/// named type seen so far and whether it can take no bytes.
fn check(
    schema: &Schema,
    open: &mut Vec<Name>,
    named: &mut HashMap<Name, bool>,
) -> Result<bool, String> {
    Ok(match schema {
        Schema::Null => true,
        Schema::Record(record) => {
            open.push(record.name.clone());
            let mut empty = true;
            for field in &record.fields {
                empty &= check(&field.schema, open, named)?;
            }
            open.pop();
            named.insert(record.name.clone(), empty);
            empty
        }
        Schema::Ref { name } => {
            if open.contains(name) {
                return Err(format!(
                    "contains itself (`{name}`): recursive types are not read"
                ));
            }
            named.get(name).copied().unwrap_or(false)
        }
        Schema::Array(array) => {
            if check(&array.items, open, named)? {
                return Err("has an array of items that take no bytes".to_owned());
            }
            false
        }
        Schema::Map(map) => {
            check(&map.types, open, named)?;
            false
        }
        Schema::Union(union) => {
            for variant in union.variants() {
                check(variant, open, named)?;
            }
            // The branch index takes a byte.
            false
        }
        Schema::Fixed(fixed) => {
            named.insert(fixed.name.clone(), fixed.size == 0);
            fixed.size == 0
        }
        Schema::Enum(enumeration) => {
            // One symbol encodes as index 0 in one byte.
            named.insert(enumeration.name.clone(), false);
            false
        }
        _ => false,
    })
}

/// `datum` decoded with `schema` (registered as `id`), appended to `out`
/// as JSON.
fn decode(schema: &Schema, id: u32, datum: &[u8], out: &mut Vec<u8>) -> Result<(), Unreadable> {
    let not_avro = |why: String| Unreadable::new("not-avro", why);
    let mut reader = Strict {
        rest: datum,
        ran_out: false,
    };
    let value = apache_avro::from_avro_datum(schema, &mut reader, None)
        .map_err(|error| not_avro(format!("does not decode with schema id {id}: {error}")))?;
    if reader.ran_out {
        return Err(not_avro(format!(
            "the datum ends before schema id {id} does (a value cut short)"
        )));
    }
    if !reader.rest.is_empty() {
        return Err(not_avro(format!(
            "{} bytes are left after the datum of schema id {id}",
            reader.rest.len()
        )));
    }
    if !matches!(value, Avro::Record(_)) {
        return Err(Unreadable::new(
            "not-a-record",
            format!("schema id {id} is not a record: the stages read fields of records"),
        ));
    }
    let json = serde_json::Value::try_from(value)
        .map_err(|error| not_avro(format!("has a value JSON cannot hold: {error}")))?;
    serde_json::to_writer(out, &json).map_err(|error| not_avro(error.to_string()))
}

/// A datum's bytes that remember running out: `apache-avro` reads a string
/// or a union index cut short by the end of its input as null rather than
/// failing, which would turn a truncated value into one with nulls.
struct Strict<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl std::io::Read for Strict<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The decoder asks for exactly what the schema says comes next.
        if buf.len() > self.rest.len() {
            self.ran_out = true;
        }
        self.rest.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    const EVENT: &str = r#"{"type":"record","name":"Event","fields":[
        {"name":"session_id","type":"string"},
        {"name":"event_type","type":{"type":"enum","name":"Kind","symbols":["page_view","purchase"]}},
        {"name":"cart_total","type":["null","double"],"default":null},
        {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
            {"name":"product_id","type":"string"},{"name":"quantity","type":"long"}]}}},
        {"name":"note","type":["null","string"],"default":null}]}"#;

    fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        value.extend_from_slice(datum);
        value
    }

    fn event_datum(schema: &Schema) -> Vec<u8> {
        let mut record = Record::new(schema).unwrap();
        record.put("session_id", "sess_1");
        record.put("event_type", Avro::Enum(1, "purchase".to_owned()));
        record.put("cart_total", Avro::Union(1, Box::new(Avro::Double(12.5))));
        let Schema::Record(top) = schema else {
            unreachable!()
        };
        let item_schema = match &top.fields[3].schema {
            Schema::Array(array) => (*array.items).clone(),
            other => panic!("{other:?}"),
        };
        let mut item = Record::new(&item_schema).unwrap();
        item.put("product_id", "prod_0007");
        item.put("quantity", 2_i64);
        record.put("items", Avro::Array(vec![item.into()]));
        record.put(
            "note",
            Avro::Union(1, Box::new(Avro::String("hello".to_owned()))),
        );
        apache_avro::to_avro_datum(schema, record).unwrap()
    }

    fn decoded(text: &str, value: &[u8]) -> Result<serde_json::Value, Unreadable> {
        let schema = usable(7, text)?;
        let [0, _, _, _, _, datum @ ..] = value else {
            return Err(Unreadable::new("not-avro", "unframed"));
        };
        let mut out = Vec::new();
        decode(&schema, 7, datum, &mut out)?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn a_record_becomes_the_json_object_the_stages_read() {
        let schema = Schema::parse_str(EVENT).unwrap();
        let json = decoded(EVENT, &framed(7, &event_datum(&schema))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "session_id": "sess_1",
                "event_type": "purchase",
                "cart_total": 12.5,
                "items": [{"product_id": "prod_0007", "quantity": 2}],
                "note": "hello",
            })
        );
    }

    #[test]
    fn values_that_cannot_be_read_say_why() {
        let schema = Schema::parse_str(EVENT).unwrap();
        let datum = event_datum(&schema);
        let mut longer = datum.clone();
        longer.push(0);
        assert_eq!(
            decoded(EVENT, &framed(7, &longer)).unwrap_err().message,
            "1 bytes are left after the datum of schema id 7"
        );
        // Cut anywhere, even inside a string or before a union's index
        // (which the decoder alone would read as null), it is refused.
        for end in 0..datum.len() {
            let cut = decoded(EVENT, &framed(7, &datum[..end])).unwrap_err();
            assert_eq!(cut.code, "not-avro", "cut at {end}: {cut:?}");
        }
        // A string claiming far more bytes than the value holds.
        let mut huge = vec![0xfe, 0xff, 0xff, 0xff, 0x0f];
        huge.extend_from_slice(b"abc");
        assert_eq!(
            decoded(EVENT, &framed(7, &huge)).unwrap_err().code,
            "not-avro"
        );
        let long = r#"{"type":"long"}"#;
        assert_eq!(
            decoded(long, &framed(7, &[2])).unwrap_err().code,
            "not-a-record"
        );
        let float = r#"{"type":"record","name":"F","fields":[{"name":"x","type":"double"}]}"#;
        let nan = f64::NAN.to_le_bytes();
        assert_eq!(
            decoded(float, &framed(7, &nan)).unwrap_err().code,
            "not-avro"
        );
    }

    #[test]
    fn schemas_a_hostile_value_could_abuse_are_refused() {
        let recursive = r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"]}]}"#;
        let refused = usable(3, recursive).unwrap_err();
        assert_eq!(refused.code, "unusable-schema");
        assert!(refused.message.contains("contains itself"), "{refused:?}");
        let empty_items = r#"{"type":"record","name":"R","fields":[
            {"name":"xs","type":{"type":"array","items":{"type":"record","name":"E","fields":[
                {"name":"n","type":"null"}]}}}]}"#;
        assert!(
            usable(3, empty_items)
                .unwrap_err()
                .message
                .contains("take no bytes")
        );
        assert_eq!(usable(3, "{").unwrap_err().code, "unusable-schema");
        // A named type used twice, not inside itself, is fine.
        let twice = r#"{"type":"record","name":"Order","fields":[
            {"name":"from","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},
            {"name":"to","type":"Address"}]}"#;
        assert!(usable(3, twice).is_ok());
    }
}
