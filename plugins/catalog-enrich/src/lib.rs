//! `catalog-enrich`: copies fields from the host's lookup tables onto JSON
//! events — the user's segment onto every event of that user (the reference
//! only has it on `session_start`), the product's category and brand onto
//! product events.
//!
//! ```toml
//! [[stages.config.enrich]]
//! table = "users"              # a lookup table of the pipeline
//! key_field = "user_id"        # the event field holding the row's key
//! fields = { user_segment = "segment" }   # event field = table column
//!
//! [[stages.config.enrich]]
//! table = "products"
//! key_field = "product_id"
//! fields = { product_category = "category", product_brand = "brand" }
//! ```
//!
//! Fields the event already has are kept (`overwrite = true` replaces them).
//! Events without the key field, or whose key has no row, pass unchanged and
//! count in the `lookup_misses` metric. A value that is not a JSON object is
//! rejected.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use weir_plugin_sdk::{
    Config, Emitter, Field, Fields, PluginError, Record, Transform, export_transform, host,
    plugin_error,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    enrich: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// The lookup table.
    table: String,
    /// The event field whose value is the row's key.
    key_field: String,
    /// Event field to write -> table column to read.
    fields: BTreeMap<String, String>,
    /// Replace fields the event already has.
    #[serde(default)]
    overwrite: bool,
}

/// Where rows come from: the host's lookup tables in the plugin, a map in tests.
pub trait Lookup {
    /// The row of `table` with key `key` as a JSON object.
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>>;
}

struct HostLookup;

impl Lookup for HostLookup {
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>> {
        host::lookup(table, key)
    }
}

/// The fields one row adds.
type Added = Arc<[Member]>;

/// A field a row adds to events.
#[derive(Debug)]
struct Member {
    /// The event field.
    field: String,
    /// Its value, as JSON text.
    json: String,
    /// `"field":value`, as appended to an event (escaped once, when the row
    /// is first fetched).
    text: Vec<u8>,
    /// Where `field` is in the plugin's `reads`.
    column: usize,
}

pub struct CatalogEnrich {
    rules: Vec<Rule>,
    /// The fields read: every rule's key field, then the fields rules write
    /// (to keep an event's own values).
    reads: Vec<String>,
    /// Per rule, where its key field is in `reads`.
    key_columns: Vec<usize>,
    /// Per rule, per key, the fields a row adds, as `(field, JSON text)`:
    /// lookup tables are read-only, so each row is fetched and parsed once.
    cache: Mutex<Vec<HashMap<String, Option<Added>>>>,
}

/// Rows cached before the cache starts over (bounds a plugin's memory when
/// a table is large).
const CACHE_ROWS: usize = 200_000;

/// An event's top-level fields, values left unparsed: only for the rare
/// events that must be written again (a field replaced).
struct AllFields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for AllFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = AllFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AllFields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(AllFields(fields))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl AllFields<'_> {
    fn has(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(key, value)| key == name && value.get() != "null")
    }
}

impl CatalogEnrich {
    /// Where field `name` is in `reads` (it is there: `reads` lists every
    /// field the rules name).
    fn column(&self, name: &str) -> usize {
        self.reads
            .iter()
            .position(|read| read == name)
            .expect("reads holds every field the rules name")
    }

    /// Enriches one JSON event (`value`, whose `fields` the host found),
    /// appending the result to `out`; returns how many lookups missed. The
    /// event's bytes are kept as they are and the looked-up fields appended
    /// before its closing brace: nothing of the event is parsed here.
    pub fn enrich(
        &self,
        value: &[u8],
        fields: &Fields<'_>,
        lookup: &impl Lookup,
        out: &mut Vec<u8>,
    ) -> Result<u64, PluginError> {
        let mut misses = 0;
        let mut added: Vec<(usize, Added)> = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(raw) = fields.get(self.key_columns[index]) else {
                continue;
            };
            // A string key is read without a copy unless it has escapes.
            let key: Cow<'_, str> = if raw.text().first() == Some(&b'"') {
                match raw.str() {
                    Ok(key) => key,
                    Err(_) => continue,
                }
            } else {
                match raw.parse::<Json>() {
                    Ok(Json::Number(key)) => Cow::Owned(key.to_string()),
                    _ => continue,
                }
            };
            match self.row(index, rule, key, lookup) {
                Some(row) => added.push((index, row)),
                None => misses += 1,
            }
        }
        // Replacing a field (`overwrite`, or a field present as null) needs
        // the event rewritten; appending would give it the key twice.
        let replaces = added.iter().any(|(index, row)| {
            self.rules[*index].overwrite
                || row.iter().any(|member| {
                    fields
                        .get(member.column)
                        .is_some_and(|value| value.is_null())
                })
        });
        if replaces {
            let all: AllFields<'_> = serde_json::from_slice(value).map_err(|error| {
                plugin_error(
                    "malformed-json",
                    format!("value is not a JSON object: {error}"),
                )
            })?;
            self.enrich_rewriting(&all, &added, out);
            return Ok(misses);
        }
        let start = value
            .iter()
            .position(|&b| b == b'{')
            .expect("a JSON object starts with `{`");
        let end = value
            .iter()
            .rposition(|&b| b == b'}')
            .expect("a JSON object ends with `}`");
        out.extend_from_slice(&value[..end]);
        let mut empty = value[start + 1..end].iter().all(u8::is_ascii_whitespace);
        let mut written: Vec<&str> = Vec::new();
        for (_, row) in &added {
            for member in row.iter() {
                let field = member.field.as_str();
                let present = fields.get(member.column).and_then(Field::non_null);
                if present.is_some() || written.contains(&field) {
                    continue;
                }
                if !empty {
                    out.push(b',');
                }
                empty = false;
                out.extend_from_slice(&member.text);
                written.push(field);
            }
        }
        out.extend_from_slice(&value[end..]);
        Ok(misses)
    }

    /// The fields `rule` adds for `key`, from the cache or the table.
    fn row(
        &self,
        index: usize,
        rule: &Rule,
        key: Cow<'_, str>,
        lookup: &impl Lookup,
    ) -> Option<Added> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(found) = cache[index].get(key.as_ref()) {
            return found.clone();
        }
        let fields = lookup.row(&rule.table, &key).map(|row| {
            rule.fields
                .iter()
                .filter_map(|(target, column)| {
                    let json = row.get(column)?.to_string();
                    let mut text = serde_json::to_vec(target).expect("a string serialises");
                    text.push(b':');
                    text.extend_from_slice(json.as_bytes());
                    Some(Member {
                        field: target.clone(),
                        json,
                        text,
                        column: self.column(target),
                    })
                })
                .collect::<Vec<_>>()
                .into()
        });
        if cache.iter().map(HashMap::len).sum::<usize>() >= CACHE_ROWS {
            cache.iter_mut().for_each(HashMap::clear);
        }
        cache[index].insert(key.into_owned(), fields.clone());
        fields
    }

    /// The path for rules that replace fields the event has: the event is
    /// written again from its top-level fields, each kept as its original
    /// text (numbers keep every digit), replaced ones left out, then the
    /// looked-up fields appended.
    fn enrich_rewriting(&self, all: &AllFields<'_>, added: &[(usize, Added)], out: &mut Vec<u8>) {
        // The value each field ends with: the first rule that sets it wins,
        // as on the appending path; an event's own non-null value stays
        // unless that rule overwrites.
        let mut set: Vec<(&str, &str)> = Vec::new();
        for (index, row) in added {
            let overwrite = self.rules[*index].overwrite;
            for Member { field, json, .. } in row.iter() {
                if set.iter().any(|(name, _)| name == field) {
                    continue;
                }
                if overwrite || !all.has(field) {
                    set.push((field, json));
                }
            }
        }
        out.push(b'{');
        let mut first = true;
        let mut write = |out: &mut Vec<u8>, name: &str, json: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, name).expect("a string serialises");
            out.push(b':');
            out.extend_from_slice(json.as_bytes());
        };
        for (name, raw) in &all.0 {
            if !set.iter().any(|(field, _)| *field == name.as_ref()) {
                write(out, name, raw.get());
            }
        }
        for (name, json) in &set {
            write(out, name, json);
        }
        out.push(b'}');
    }

    /// Builds the plugin from JSON configuration text (tests use this).
    pub fn from_json(config: &str) -> Result<Self, PluginError> {
        Self::new(&Config::from_json(config)?)
    }
}

impl Transform for CatalogEnrich {
    fn new(config: &Config) -> Result<Self, PluginError> {
        let settings: Settings = config.parse()?;
        for rule in &settings.enrich {
            if rule.fields.is_empty() {
                return Err(plugin_error(
                    "bad-config",
                    format!("the rule for table `{}` copies no `fields`", rule.table),
                ));
            }
        }
        let mut reads: Vec<String> = Vec::new();
        let names = settings
            .enrich
            .iter()
            .flat_map(|rule| std::iter::once(&rule.key_field).chain(rule.fields.keys()));
        for name in names {
            if !reads.contains(name) {
                reads.push(name.clone());
            }
        }
        let key_columns = settings
            .enrich
            .iter()
            .map(|rule| {
                reads
                    .iter()
                    .position(|read| *read == rule.key_field)
                    .expect("every key field is read")
            })
            .collect();
        Ok(Self {
            cache: Mutex::new(vec![HashMap::new(); settings.enrich.len()]),
            rules: settings.enrich,
            reads,
            key_columns,
        })
    }

    fn reads(&self) -> Vec<String> {
        self.reads.clone()
    }

    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError> {
        let fields = record.fields()?;
        let misses = out.emit_with(record.key, |value| {
            self.enrich(record.value, &fields, &HostLookup, value)
        })?;
        if misses > 0 {
            host::counter_add("lookup_misses", misses);
        }
        for (key, value) in record.headers() {
            out.header(key, value);
        }
        Ok(())
    }
}

export_transform!(CatalogEnrich);
