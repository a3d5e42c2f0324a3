//! Reading weir's Avro rows as a downstream consumer does: the Confluent
//! wire format (magic byte 0, the schema id, the Avro datum), each writer
//! schema fetched once from the registry by its id.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use anyhow::{Context, Result, bail, ensure};
use apache_avro::types::Value as Avro;
use apache_avro::{Schema, from_avro_datum};

use crate::Stack;

/// Decodes Confluent-framed Avro records, caching the schemas it fetched.
#[derive(Default)]
pub struct WireReader {
    schemas: HashMap<u32, Schema>,
}

impl WireReader {
    /// The fields of the record in `payload`, by name.
    pub async fn fields(&mut self, stack: &Stack, payload: &[u8]) -> Result<Vec<(String, Avro)>> {
        ensure!(
            payload.len() > 5 && payload[0] == 0,
            "not the Confluent wire format (magic byte 0, then a schema id)"
        );
        let id = u32::from_be_bytes(payload[1..5].try_into()?);
        let schema = match self.schemas.entry(id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let fetched = stack.registry_get(&format!("/schemas/ids/{id}")).await?;
                let text = fetched["schema"].as_str().context("a schema's text")?;
                new.insert(Schema::parse_str(text)?)
            }
        };
        let Avro::Record(fields) = from_avro_datum(schema, &mut &payload[5..], None)? else {
            bail!("a value that is not a record");
        };
        Ok(fields)
    }
}
