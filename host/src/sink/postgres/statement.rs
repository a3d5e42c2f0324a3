//! The upsert statement: one `INSERT ... SELECT * FROM UNNEST(...)` per
//! batch, values bound as one array per column, never pasted into SQL.

use super::quote_ident;
use crate::plugin::Value;
use crate::sink::schema::{ColumnType, RowSchema};

/// The table's `columns` that rows of `schema` lack, but the key column.
pub(super) fn others(columns: &[String], key_column: &str, schema: &RowSchema) -> Vec<String> {
    columns
        .iter()
        .filter(|name| **name != key_column)
        .filter(|name| !schema.columns.iter().any(|c| c.name == **name))
        .cloned()
        .collect()
}

/// `statement` with `rows[i]` bound for each `i` of `chosen`: one array per
/// column.
pub(super) fn bind_rows<'q>(
    statement: &'q str,
    rows: &[(String, Vec<Value>)],
    chosen: &[usize],
    schema: &RowSchema,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(statement).bind(
        chosen
            .iter()
            .map(|&i| rows[i].0.clone())
            .collect::<Vec<String>>(),
    );
    for (column_index, column) in schema.columns.iter().enumerate() {
        // One array per column, NULL where the row's value is of no use here.
        let values = chosen.iter().map(|&i| &rows[i].1[column_index]);
        query = match column.kind {
            ColumnType::Boolean => query.bind(array(values, |v| match v {
                Value::Boolean(b) => Some(*b),
                _ => None,
            })),
            ColumnType::Long => query.bind(array(values, |v| match v {
                Value::Long(n) => Some(*n),
                _ => None,
            })),
            ColumnType::Double => query.bind(array(values, |v| match v {
                Value::Double(x) => Some(*x),
                _ => None,
            })),
            ColumnType::Text => query.bind(array(values, |v| match v {
                Value::Text(s) => Some(s.clone()),
                _ => None,
            })),
            ColumnType::Bytes => query.bind(array(values, |v| match v {
                Value::Bytes(b) => Some(b.clone()),
                _ => None,
            })),
        };
    }
    query
}

/// A column's values as a bindable array.
fn array<'a, T>(
    values: impl Iterator<Item = &'a Value>,
    pick: impl Fn(&Value) -> Option<T>,
) -> Vec<Option<T>> {
    values.map(pick).collect()
}

/// `INSERT ... SELECT * FROM UNNEST($1::TEXT[], ...) ON CONFLICT (key) DO UPDATE ...`:
/// one statement and one round trip for a whole batch, values bound as arrays.
pub(super) fn upsert_statement(
    table: &str,
    key_column: &str,
    schema: &RowSchema,
    others: &[String],
) -> String {
    let key = quote_ident(key_column);
    let names: Vec<String> = std::iter::once(key.clone())
        .chain(schema.columns.iter().map(|c| quote_ident(&c.name)))
        .collect();
    let arrays: Vec<String> = std::iter::once("TEXT".to_owned())
        .chain(schema.columns.iter().map(|c| c.kind.postgres().to_owned()))
        .enumerate()
        .map(|(i, kind)| format!("${}::{kind}[]", i + 1))
        .collect();
    // Columns of the table this schema does not have (another version of
    // the plugin added them) are cleared: a row is this version's, whole.
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .chain(
            others
                .iter()
                .map(|name| format!("{} = NULL", quote_ident(name))),
        )
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) ON CONFLICT ({key}) {on_conflict}",
        quote_ident(table),
        names.join(", "),
        arrays.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_values_bound() {
        assert_eq!(quote_ident("SESSION_ID"), "\"SESSION_ID\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let schema = RowSchema::parse(
            r#"{"type":"record","name":"R","fields":[
                {"name":"USER_ID","type":["null","string"]},{"name":"EVENTS","type":"long"}]}"#,
        )
        .unwrap();
        assert_eq!(
            upsert_statement("sessions", "SESSION_ID", &schema, &[]),
            "INSERT INTO \"sessions\" (\"SESSION_ID\", \"USER_ID\", \"EVENTS\") \
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[]) \
             ON CONFLICT (\"SESSION_ID\") DO UPDATE SET \"USER_ID\" = EXCLUDED.\"USER_ID\", \
             \"EVENTS\" = EXCLUDED.\"EVENTS\""
        );
    }
}
