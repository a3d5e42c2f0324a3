//! The PostgreSQL sink against the real database: the `session_stats`
//! table as the reference had it (ten quoted upper-case columns), created
//! and widened by weir, rows upserted one statement per batch.

use anyhow::Result;
use sqlx::Row;
use weir::plugin::Value;
use weir::sink::{PostgresSink, RowSchema};
use weir_tests::{Stack, unique};

/// SESSION_ID, USER_ID, EVENTS_COUNT, CART_VALUE, ITEMS_IN_CART as stored.
type StoredRow = (String, Option<String>, i64, Option<f64>, Option<i64>);

fn row(user: Option<&str>, events: i64, cart: Option<f64>) -> Vec<Value> {
    let text = |s: Option<&str>| s.map(|s| Value::Text(s.to_owned())).unwrap_or(Value::Null);
    vec![
        text(user),
        text(Some("vip")),
        text(Some("browsing")),
        Value::Long(events),
        Value::Long(1),
        Value::Long(2),
        cart.map(|_| Value::Long(1)).unwrap_or(Value::Null),
        cart.map(Value::Double).unwrap_or(Value::Null),
        Value::Long(0),
    ]
}

#[tokio::test]
async fn the_sessions_table_is_created_and_upserted() -> Result<()> {
    let stack = Stack::from_env();
    let table = unique("sessions");
    let schema = RowSchema::parse(session_stats::OUTPUT_SCHEMA)?;
    let sink =
        PostgresSink::connect(&stack.services.database, &table, "SESSION_ID", schema).await?;
    sink.migrate().await?;
    sink.migrate().await?; // idempotent

    let columns: Vec<(String, String)> = sqlx::query(
        "SELECT column_name, data_type FROM information_schema.columns
         WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(&table)
    .fetch_all(sink.pool())
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let expected = [
        ("SESSION_ID", "text"),
        ("USER_ID", "text"),
        ("USER_SEGMENT", "text"),
        ("SESSION_STATE", "text"),
        ("EVENTS_COUNT", "bigint"),
        ("PAGES_VIEWED", "bigint"),
        ("PRODUCTS_VIEWED", "bigint"),
        ("ITEMS_IN_CART", "bigint"),
        ("CART_VALUE", "double precision"),
        ("PURCHASE_COUNT", "bigint"),
    ];
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(columns, expected);

    let written = sink
        .upsert(&[
            ("s1".into(), row(Some("user_00001"), 1, None)),
            ("s2".into(), row(None, 3, Some(19.99))),
        ])
        .await?;
    assert_eq!(written, 2);
    // An update of s1, a new s3, and s3 twice in one batch: its last row wins.
    let written = sink
        .upsert(&[
            ("s1".into(), row(Some("user_00001"), 5, Some(120.5))),
            ("s3".into(), row(Some("user_00003"), 1, None)),
            ("s3".into(), row(Some("user_00003"), 2, None)),
        ])
        .await?;
    assert_eq!(written, 2);

    let rows = sqlx::query(&format!(
        r#"SELECT "SESSION_ID", "USER_ID", "EVENTS_COUNT", "CART_VALUE", "ITEMS_IN_CART"
           FROM "{table}" ORDER BY "SESSION_ID""#
    ))
    .fetch_all(sink.pool())
    .await?;
    let rows: Vec<StoredRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "s1".into(),
                Some("user_00001".into()),
                5,
                Some(120.5),
                Some(1)
            ),
            ("s2".into(), None, 3, Some(19.99), Some(1)),
            ("s3".into(), Some("user_00003".into()), 2, None, None),
        ]
    );

    // A new plugin version with one more output field widens the table.
    let wider = session_stats::OUTPUT_SCHEMA.replace(
        r#"{"name": "PURCHASE_COUNT", "type": ["null", "long"], "default": null}"#,
        r#"{"name": "PURCHASE_COUNT", "type": ["null", "long"], "default": null},
    {"name": "REVENUE", "type": ["null", "double"], "default": null}"#,
    );
    assert_ne!(
        wider,
        session_stats::OUTPUT_SCHEMA,
        "the schema gained a field"
    );
    let wide = PostgresSink::connect(
        &stack.services.database,
        &table,
        "SESSION_ID",
        RowSchema::parse(&wider)?,
    )
    .await?;
    wide.migrate().await?;
    let mut with_revenue = row(Some("user_00002"), 4, Some(19.99));
    with_revenue.push(Value::Double(21.59));
    wide.upsert(&[("s2".into(), with_revenue)]).await?;
    let revenue: Option<f64> = sqlx::query_scalar(&format!(
        r#"SELECT "REVENUE" FROM "{table}" WHERE "SESSION_ID" = 's2'"#
    ))
    .fetch_one(sink.pool())
    .await?;
    assert_eq!(revenue, Some(21.59));

    sqlx::query(&format!(r#"DROP TABLE "{table}""#))
        .execute(sink.pool())
        .await?;
    Ok(())
}

/// A new aggregator version's rows are checked against the table before a
/// swap (and a start): a retyped column, an output field named like the key
/// column and a NOT NULL column the rows would clear are refused with the
/// reason, and the check leaves the table as it was.
#[tokio::test]
async fn rows_the_table_cannot_take_are_refused_before_any_write() -> Result<()> {
    let stack = Stack::from_env();
    let table = unique("checked");
    let schema = |fields: &str| {
        RowSchema::parse(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
    };
    let first =
        schema(r#"{"name":"EVENTS","type":"long"},{"name":"NOTE","type":["null","string"]}"#)?;
    let sink =
        PostgresSink::connect(&stack.services.database, &table, "KEY", first.clone()).await?;
    sink.migrate().await?;
    let columns = || async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(sink.pool())
        .await?;
        anyhow::Ok(names)
    };
    let before = columns().await?;

    assert_eq!(sink.refusal(&first).await?, None, "the running rows fit");
    let wider = schema(
        r#"{"name":"EVENTS","type":"long"},{"name":"NOTE","type":["null","string"]},
           {"name":"ADDED","type":["null","double"],"default":null}"#,
    )?;
    assert_eq!(sink.refusal(&wider).await?, None, "a new column is fine");
    assert_eq!(columns().await?, before, "the check added nothing for good");

    let retyped =
        schema(r#"{"name":"EVENTS","type":"string"},{"name":"NOTE","type":["null","string"]}"#)?;
    let refusal = sink.refusal(&retyped).await?.expect("refused");
    assert!(
        refusal.contains("column `EVENTS`")
            && refusal.contains("bigint")
            && refusal.contains("TEXT"),
        "{refusal}"
    );
    let keyed = schema(r#"{"name":"KEY","type":"string"},{"name":"EVENTS","type":"long"}"#)?;
    let refusal = sink.refusal(&keyed).await?.expect("refused");
    assert!(refusal.contains("named like the key column"), "{refusal}");

    sqlx::query(&format!(
        "ALTER TABLE \"{table}\" ALTER COLUMN \"NOTE\" SET NOT NULL"
    ))
    .execute(sink.pool())
    .await?;
    let narrower = schema(r#"{"name":"EVENTS","type":"long"}"#)?;
    let refusal = sink.refusal(&narrower).await?.expect("refused");
    assert!(
        refusal.contains("`NOTE`") && refusal.contains("NOT NULL"),
        "{refusal}"
    );

    // Whatever else PostgreSQL refuses, the dry run of the upsert finds.
    sqlx::query(&format!(
        "ALTER TABLE \"{table}\" ALTER COLUMN \"NOTE\" DROP NOT NULL, \
         ADD CONSTRAINT positive CHECK (\"EVENTS\" > 0), \
         ADD COLUMN \"ODD\" INTEGER GENERATED ALWAYS AS (1) STORED"
    ))
    .execute(sink.pool())
    .await?;
    let refusal = sink.refusal(&first).await?.expect("refused");
    assert!(refusal.contains("refuses the rows' upsert"), "{refusal}");
    sqlx::query(&format!("DROP TABLE \"{table}\""))
        .execute(sink.pool())
        .await?;
    Ok(())
}
