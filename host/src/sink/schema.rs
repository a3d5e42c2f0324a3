//! The shape of an aggregator's output rows, read from the Avro schema it
//! declares: column names, types and nullability, shared by the sinks.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use apache_avro::Schema;
use apache_avro::schema::RecordSchema;

use crate::plugin::Value;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Avro `boolean`.
    Boolean,
    /// Avro `int` or `long` (stored as 64-bit).
    Long,
    /// Avro `float` or `double` (stored as 64-bit).
    Double,
    /// Avro `string`.
    Text,
    /// Avro `bytes`.
    Bytes,
}

impl ColumnType {
    /// The PostgreSQL type of the column.
    pub fn postgres(self) -> &'static str {
        match self {
            Self::Boolean => "BOOLEAN",
            Self::Long => "BIGINT",
            Self::Double => "DOUBLE PRECISION",
            Self::Text => "TEXT",
            Self::Bytes => "BYTEA",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (Self::Boolean, Value::Boolean(_))
                | (Self::Long, Value::Long(_))
                | (Self::Double, Value::Double(_))
                | (Self::Text, Value::Text(_))
                | (Self::Bytes, Value::Bytes(_))
        )
    }
}

/// One column of the output row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The field name (kept as written, upper case included).
    pub name: String,
    /// Its type.
    pub kind: ColumnType,
    /// Whether it may be NULL (a union with `null`).
    pub nullable: bool,
    /// Avro `int`: values must fit in 32 bits (the Avro topic could not carry more).
    pub int32: bool,
}

/// The output row's columns, in schema order.
#[derive(Debug, Clone)]
pub struct RowSchema {
    /// The parsed Avro schema (for the Kafka sink).
    pub avro: Schema,
    /// The Avro schema as the plugin wrote it (registered as is).
    pub text: String,
    /// The columns.
    pub columns: Vec<Column>,
    /// The columns' names as apache-avro's serializer takes them (see [`interned`]).
    pub field_names: Vec<&'static str>,
}

/// The output schema cannot serve as a row schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not valid Avro.
    #[error("the output schema is not valid Avro: {0}")]
    Avro(#[from] apache_avro::Error),
    /// Not a record.
    #[error("the output schema must be an Avro record, not {0}")]
    NotRecord(String),
    /// A field of a type the sinks cannot store.
    #[error(
        "output field `{field}` has type {kind}, which the sinks cannot store (use boolean, int, long, float, double, string or bytes, optionally in a union with null)"
    )]
    Unsupported {
        /// The field.
        field: String,
        /// Its type.
        kind: String,
    },
    /// A row that does not match the schema.
    #[error("the plugin returned a row of {found} values for {expected} columns")]
    Width {
        /// Values in the row.
        found: usize,
        /// Columns in the schema.
        expected: usize,
    },
    /// A value of the wrong type.
    #[error("column `{column}` received {value:?}")]
    Type {
        /// The column.
        column: String,
        /// The value.
        value: Value,
    },
    /// A text value holds a NUL character, which PostgreSQL cannot store.
    #[error("column `{column}` received text with a NUL character, which PostgreSQL cannot store")]
    Nul {
        /// The column.
        column: String,
    },
}

impl RowSchema {
    /// Reads the columns of an Avro record schema.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let avro = Schema::parse_str(text)?;
        let Schema::Record(RecordSchema { fields, .. }) = &avro else {
            return Err(SchemaError::NotRecord(format!("{avro:?}")));
        };
        let columns: Vec<Column> = fields
            .iter()
            .map(|field| {
                let (inner, nullable) = match &field.schema {
                    Schema::Union(union) => {
                        let variants = union.variants();
                        let non_null: Vec<&Schema> =
                            variants.iter().filter(|s| **s != Schema::Null).collect();
                        match non_null.as_slice() {
                            [only] if variants.len() == 2 => (*only, true),
                            _ => (&field.schema, true),
                        }
                    }
                    other => (other, false),
                };
                let kind = match inner {
                    Schema::Boolean => ColumnType::Boolean,
                    Schema::Int | Schema::Long => ColumnType::Long,
                    Schema::Float | Schema::Double => ColumnType::Double,
                    Schema::String => ColumnType::Text,
                    Schema::Bytes => ColumnType::Bytes,
                    other => {
                        return Err(SchemaError::Unsupported {
                            field: field.name.clone(),
                            kind: format!("{other:?}"),
                        });
                    }
                };
                Ok(Column {
                    name: field.name.clone(),
                    kind,
                    nullable,
                    int32: *inner == Schema::Int,
                })
            })
            .collect::<Result<_, _>>()?;
        let field_names = columns
            .iter()
            .map(|column| interned(&column.name))
            .collect();
        Ok(Self {
            avro,
            text: text.to_owned(),
            columns,
            field_names,
        })
    }

    /// Checks that `row` fits the columns.
    pub fn check(&self, row: &[Value]) -> Result<(), SchemaError> {
        if row.len() != self.columns.len() {
            return Err(SchemaError::Width {
                found: row.len(),
                expected: self.columns.len(),
            });
        }
        for (column, value) in self.columns.iter().zip(row) {
            let fits = column.kind.accepts(value)
                && (column.nullable || *value != Value::Null)
                && !(column.int32 && matches!(value, Value::Long(n) if i32::try_from(*n).is_err()));
            if !fits {
                return Err(SchemaError::Type {
                    column: column.name.clone(),
                    value: value.clone(),
                });
            }
            // PostgreSQL's text cannot hold NUL; a row that carries one could
            // never be written, so it is refused here, not retried forever.
            if let Value::Text(text) = value
                && text.contains('\0')
            {
                return Err(SchemaError::Nul {
                    column: column.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// `name` for the life of the process, as apache-avro's serializer takes
/// field names (`&'static str`): each distinct name is kept once, however
/// many schemas name it (a process sees its plugins' few field names).
fn interned(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let name: &'static str = Box::leak(name.into());
    names.insert(name);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_types_and_nullability() {
        let schema = RowSchema::parse(
            r#"{"type":"record","name":"R","fields":[
                {"name":"USER_ID","type":["null","string"]},
                {"name":"EVENTS","type":"long"},
                {"name":"VALUE","type":["null","double"]},
                {"name":"FLAG","type":"boolean"}]}"#,
        )
        .unwrap();
        let kinds: Vec<_> = schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.nullable))
            .collect();
        assert_eq!(
            kinds,
            [
                ("USER_ID", ColumnType::Text, true),
                ("EVENTS", ColumnType::Long, false),
                ("VALUE", ColumnType::Double, true),
                ("FLAG", ColumnType::Boolean, false),
            ]
        );
        assert!(
            schema
                .check(&[
                    Value::Null,
                    Value::Long(1),
                    Value::Double(1.5),
                    Value::Boolean(true)
                ])
                .is_ok()
        );
        assert!(
            schema
                .check(&[Value::Null, Value::Null, Value::Null, Value::Boolean(true)])
                .is_err()
        );
        assert!(schema.check(&[Value::Long(1)]).is_err());
    }

    #[test]
    fn refuses_what_a_table_cannot_hold() {
        assert!(matches!(
            RowSchema::parse(r#""string""#),
            Err(SchemaError::NotRecord(_))
        ));
        let nested = r#"{"type":"record","name":"R","fields":[{"name":"A","type":{"type":"array","items":"long"}}]}"#;
        assert!(matches!(
            RowSchema::parse(nested),
            Err(SchemaError::Unsupported { .. })
        ));
    }

    #[test]
    fn rows_the_sinks_could_never_write_are_refused() {
        let schema = RowSchema::parse(
            r#"{"type":"record","name":"R","fields":[
                {"name":"SMALL","type":"int"},{"name":"NAME","type":["null","string"]}]}"#,
        )
        .unwrap();
        let text = |s: &str| Value::Text(s.to_owned());
        assert!(schema.check(&[Value::Long(7), text("ok")]).is_ok());
        assert!(matches!(
            schema.check(&[Value::Long(1 << 40), text("ok")]),
            Err(SchemaError::Type { .. })
        ));
        assert!(matches!(
            schema.check(&[Value::Long(7), text("a\0b")]),
            Err(SchemaError::Nul { .. })
        ));
    }
}
