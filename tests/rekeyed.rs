//! A re-keyed aggregation from its pipeline file (`pipelines/category-sales.toml`:
//! purchases split into their items, summed per product category through the
//! repartition topic) on the real stack, its table checked against what SQL
//! computes from the input events and the catalog: from a JSON topic, and
//! from a topic of Confluent-framed Avro written under two versions of its
//! schema (`format = "avro"`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value as Json;
use weir::sink::registry::RegistryClient;
use weir_tests::categories::{
    CATALOG_CATEGORY, by_boundary, category_pipeline, category_pipeline_with, caught_up,
    equal_to_oracle, run_to_end,
};
use weir_tests::oracle::load_raw;
use weir_tests::pipeline::{Scenario, generated_events, progress, read_dead_letters};

#[test]
fn sales_per_category_are_summed_through_the_repartition_topic() -> Result<()> {
    let run = Scenario::new("categories", 4)?;
    run.write_catalog("7")?;
    let (pipeline, table) = category_pipeline(&run, "json")?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    let counts = run
        .start_generator("7", 40_000, 0, 1_000)
        .join()
        .expect("generator")?;
    ensure!(counts.events == 40_000);
    run_to_end(&run, &mut weir)?;

    let pool = run.pool()?;
    let raw = run.load_input(&pool)?;
    let (categories, lines) = equal_to_oracle(&run, &pool, &raw, &table, CATALOG_CATEGORY)?;
    println!(
        "{lines} items of {} events: {categories} categories equal the SQL oracle",
        counts.events
    );
    Ok(())
}

/// The generator's events as the Avro topic carries them: the fields the
/// example reads and a few others; the second version adds two optional
/// fields (a compatible change).
const EVENT_V1: &str = r#"{"type": "record", "name": "Event", "namespace": "shop", "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "event_type", "type": "string"},
    {"name": "timestamp", "type": "string"},
    {"name": "session_id", "type": "string"},
    {"name": "user_id", "type": ["null", "string"], "default": null},
    {"name": "order_id", "type": ["null", "string"], "default": null},
    {"name": "items", "type": ["null", {"type": "array", "items": {
        "type": "record", "name": "Item", "fields": [
            {"name": "product_id", "type": "string"},
            {"name": "product_name", "type": "string"},
            {"name": "price", "type": "double"},
            {"name": "quantity", "type": "long"}]}}], "default": null}]}"#;

fn event_v2() -> String {
    EVENT_V1.replace(
        r#""default": null}]}"#,
        r#""default": null},
    {"name": "payment_method", "type": ["null", "string"], "default": null},
    {"name": "device", "type": ["null", {"type": "record", "name": "Device", "fields": [
        {"name": "type", "type": "string"}, {"name": "os", "type": "string"}]}], "default": null}]}"#,
    )
}

// Every test here writes the catalog of seed 7 (the same rows: they may run at once).
#[test]
fn sales_per_category_from_an_avro_topic_equal_sql_over_the_same_events() -> Result<()> {
    let run = Scenario::new("avro-categories", 4)?;
    let stack = &run.stack;
    let events = generated_events(stack, "7", 400, 30_000, &run.dir.join("events.jsonl"))?;
    let registry = RegistryClient::new(&stack.services.registry)?;
    let subject = format!("{}-value", run.names.events);
    let v2_text = event_v2();
    let versions = [EVENT_V1, v2_text.as_str()].map(|text| -> Result<(u32, Schema)> {
        let id = run.tokio.block_on(registry.register(&subject, text))?;
        Ok((id, Schema::parse_str(text)?))
    });
    let [v1, v2] = versions;
    let (v1, v2) = (v1?, v2?);
    ensure!(v1.0 != v2.0, "two versions, two ids");

    let producer: ThreadedProducer<DefaultProducerContext> = stack
        .kafka_client()
        .set("enable.idempotence", "true")
        .create()?;
    let send = |key: &str, value: &[u8]| -> Result<()> {
        producer
            .send(BaseRecord::to(&run.names.events).key(key).payload(value))
            .map_err(|(error, _)| error)?;
        Ok(())
    };
    // Every other event under each version, in the order generated.
    for (index, event) in events.iter().enumerate() {
        let (id, schema) = if index % 2 == 0 { &v1 } else { &v2 };
        let key = event["session_id"].as_str().context("session_id")?;
        send(key, &framed(*id, schema, event)?)?;
    }
    // Values an Avro source cannot read, each under a key naming it.
    let datum = framed(v1.0, &v1.1, &events[0])?;
    let hostile: [(&str, Vec<u8>, &str); 4] = [
        (
            "json",
            br#"{"event_type": "purchase"}"#.to_vec(),
            "not-avro",
        ),
        (
            "unknown-id",
            [&[0, 0x7f, 0xff, 0xff, 0xfe][..], &datum[5..]].concat(),
            "unknown-schema",
        ),
        ("cut", datum[..datum.len() - 4].to_vec(), "not-avro"),
        ("longer", [&datum[..], &[0, 0]].concat(), "not-avro"),
    ];
    for (key, value, _) in &hostile {
        send(&format!("hostile-{key}"), value)?;
    }
    producer.flush(Duration::from_secs(30))?;

    let (pipeline, table) = category_pipeline(&run, "avro")?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    run_to_end(&run, &mut weir)?;

    let pool = run.pool()?;
    let raw = format!("{}_raw", run.names.table);
    let as_json: Vec<(i64, String)> = (events.iter().enumerate())
        .map(|(index, event)| (index as i64, event.to_string()))
        .collect();
    run.tokio.block_on(load_raw(&pool, &raw, &as_json))?;
    let (categories, lines) = equal_to_oracle(&run, &pool, &raw, &table, CATALOG_CATEGORY)?;

    let letters = read_dead_letters(stack, &run.names.dead_letters(), hostile.len())?;
    for (key, _, code) in &hostile {
        let key = format!("hostile-{key}");
        let letter = letters
            .iter()
            .find(|letter| letter.key.as_deref() == Some(key.as_bytes()))
            .with_context(|| format!("no dead letter for {key}: {letters:?}"))?;
        let found = letter
            .headers
            .get("weir.error.code")
            .map_or("", String::as_str);
        ensure!(found == *code, "{key}: {found} where {code} was expected");
    }
    println!(
        "{lines} items of {} Avro events (schema ids {} and {}): {categories} categories equal \
         the SQL oracle; {} unreadable values dead-lettered with their reasons",
        events.len(),
        v1.0,
        v2.0,
        letters.len()
    );
    Ok(())
}

#[test]
fn a_product_recategorised_in_postgresql_counts_under_its_new_category_after_the_refresh()
-> Result<()> {
    const REFRESH: Duration = Duration::from_secs(1);
    let run = Scenario::new("recategorised", 4)?;
    run.write_catalog("7")?;
    let pool = run.pool()?;
    // The pipeline's own catalog (the shared one stays as other tests read it).
    let (catalog, before) = (
        format!("{}_products", run.names.table),
        format!("{}_before", run.names.table),
    );
    let execute = |sql: String| -> Result<u64> {
        let done = run.tokio.block_on(sqlx::query(&sql).execute(&pool))?;
        Ok(done.rows_affected())
    };
    execute(format!(
        "CREATE TABLE {catalog} AS SELECT product_id, category FROM products"
    ))?;
    execute(format!("CREATE TABLE {before} AS TABLE {catalog}"))?;
    let (pipeline, table) = category_pipeline_with(
        &run,
        "json",
        vec![(
            "query = \"SELECT product_id, category FROM products\"",
            format!(
                "query = \"SELECT product_id, category FROM {catalog}\"\nrefresh = \"{}s\"",
                REFRESH.as_secs()
            ),
        )],
    )?;
    // The documented delay: the next refresh (at most REFRESH later) and
    // its query.
    let (moved, (categories, lines)) = around_a_change(
        &run,
        (&pipeline, &table),
        (&before, &catalog),
        REFRESH * 3,
        || {
            let moved = execute(format!(
                "UPDATE {catalog} SET category = 'outdoor' WHERE category = 'sports'"
            ))?;
            ensure!(moved > 0, "the catalog has sports products");
            Ok(moved)
        },
    )?;
    let outdoor = run.scalar::<i64>(
        &pool,
        &format!("SELECT coalesce(sum(\"ORDER_LINES\"), 0)::bigint FROM {table} WHERE \"CATEGORY\" = 'outdoor'"),
    )?;
    ensure!(outdoor > 0, "items were sold under the new category");
    println!(
        "{moved} products moved from sports to outdoor between two runs of 20 000 events: \
         {lines} items in {categories} categories equal the SQL oracle ({outdoor} under outdoor)"
    );
    Ok(())
}

#[test]
fn a_product_recategorised_on_a_lookup_topic_counts_under_its_new_category_soon_after() -> Result<()>
{
    let run = Scenario::new("catalog-topic", 4)?;
    run.write_catalog("7")?;
    let pool = run.pool()?;
    let execute = |sql: String| -> Result<u64> {
        let done = run.tokio.block_on(sqlx::query(&sql).execute(&pool))?;
        Ok(done.rows_affected())
    };
    // The catalog as a compacted topic, keyed by product, and as it was.
    let before = format!("{}_before", run.names.table);
    execute(format!(
        "CREATE TABLE {before} AS SELECT product_id, category FROM products"
    ))?;
    let topic = format!("{}.products", run.names.events);
    run.tokio
        .block_on(weir::kafka::ensure_topics(
            &weir::kafka::Connection::new(&run.stack.bootstrap),
            std::slice::from_ref(&topic),
            2,
            &[("cleanup.policy", "compact")],
        ))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let rows: Vec<(String, String)> = run.tokio.block_on(
        sqlx::query_as(&format!(
            "SELECT product_id, json_build_object('product_id', product_id, 'category', category)::text \
             FROM {before}"
        ))
        .fetch_all(&pool),
    )?;
    let producer: ThreadedProducer<DefaultProducerContext> = run
        .stack
        .kafka_client()
        .set("enable.idempotence", "true")
        .create()?;
    let send = |key: &str, value: Option<&str>| -> Result<()> {
        let mut record = BaseRecord::<str, str>::to(&topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).map_err(|(error, _)| error)?;
        producer.flush(Duration::from_secs(30))?;
        Ok(())
    };
    for (product, row) in &rows {
        send(product, Some(row))?;
    }
    let (pipeline, table) = category_pipeline_with(
        &run,
        "json",
        vec![
            (
                "query = \"SELECT product_id, category FROM products\"",
                format!("topic = \"{topic}\""),
            ),
            ("key = \"product_id\"", String::new()),
        ],
    )?;
    // Every sports product moves to outdoor; one home product leaves the
    // catalog (a tombstone).
    let after = format!("{}_after", run.names.table);
    execute(format!("CREATE TABLE {after} AS TABLE {before}"))?;
    execute(format!(
        "UPDATE {after} SET category = 'outdoor' WHERE category = 'sports'"
    ))?;
    let gone: String = run.scalar(
        &pool,
        &format!("SELECT min(product_id) FROM {before} WHERE category = 'home'"),
    )?;
    execute(format!("DELETE FROM {after} WHERE product_id = '{gone}'"))?;
    let moved: Vec<(String, String)> = run.tokio.block_on(
        sqlx::query_as(&format!(
            "SELECT product_id, json_build_object('product_id', product_id, 'category', category)::text \
             FROM {after} WHERE category = 'outdoor'"
        ))
        .fetch_all(&pool),
    )?;
    // The documented delay: a topic's records reach the table within a
    // second of being written.
    let ((), (categories, lines)) = around_a_change(
        &run,
        (&pipeline, &table),
        (&before, &after),
        Duration::from_secs(2),
        || {
            for (product, row) in &moved {
                send(product, Some(row))?;
            }
            send(&gone, None)
        },
    )?;
    // The tombstone counted: the deleted product sold after it, as uncategorised.
    let uncategorised = run.scalar::<i64>(
        &pool,
        &format!(
            "SELECT coalesce(sum(\"ORDER_LINES\"), 0)::bigint FROM {table} \
             WHERE \"CATEGORY\" = 'uncategorised'"
        ),
    )?;
    ensure!(
        uncategorised > 0,
        "items of the deleted product were sold after its tombstone"
    );
    println!(
        "{} products moved to outdoor and one deleted on the lookup topic between two runs of \
         20 000 events: {lines} items in {categories} categories equal the SQL oracle \
         ({uncategorised} uncategorised)",
        moved.len()
    );
    Ok(())
}

/// The category example (`pipeline`, writing `table`) over the same
/// 20 000 events twice, the catalog changed by `change` between the two
/// and `delay` (the documented one) waited after it: the table against SQL
/// that gives the first run's items their category from catalog table
/// `before` and the second run's from `after`. What `change` returned, and
/// the categories and items.
fn around_a_change<T>(
    run: &Scenario,
    (pipeline, table): (&Path, &str),
    (before, after): (&str, &str),
    delay: Duration,
    change: impl FnOnce() -> Result<T>,
) -> Result<(T, (i64, i64))> {
    let mut weir = run.spawn_weir(pipeline, "weir.log", &[])?;
    let generate = || -> Result<()> {
        let counts = run
            .start_generator("7", 20_000, 0, 500)
            .join()
            .expect("generator")?;
        ensure!(counts.events == 20_000);
        Ok(())
    };
    generate()?;
    caught_up(run, &mut weir)?;
    let (_, boundary) = progress(&run.stack, &run.names.group(), &run.names.events)?;
    let changed = change()?;
    std::thread::sleep(delay);
    generate()?;
    run_to_end(run, &mut weir)?;
    let pool = run.pool()?;
    let raw = run.load_input(&pool)?;
    let category = by_boundary(&boundary, before, after);
    Ok((
        changed,
        equal_to_oracle(run, &pool, &raw, table, &category)?,
    ))
}

#[test]
fn a_lookup_topic_that_does_not_exist_stops_the_start_with_its_name() -> Result<()> {
    let run = Scenario::new("no-catalog-topic", 1)?;
    let missing = format!("{}.no-such-products", run.names.events);
    let (pipeline, _) = category_pipeline_with(
        &run,
        "json",
        vec![
            (
                "query = \"SELECT product_id, category FROM products\"",
                format!("topic = \"{missing}\""),
            ),
            ("key = \"product_id\"", String::new()),
        ],
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = weir.try_wait()? {
            break status;
        }
        ensure!(std::time::Instant::now() < deadline, "weir still runs");
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(!status.success(), "weir fails");
    let log = run.log_tail("weir.log", 5);
    ensure!(
        log.contains(&format!("topic `{missing}` does not exist")),
        "the error names the topic:\n{log}"
    );
    Ok(())
}

/// `event` in the Confluent wire format under schema `id`.
fn framed(id: u32, schema: &Schema, event: &Json) -> Result<Vec<u8>> {
    let mut value = vec![0];
    value.extend_from_slice(&id.to_be_bytes());
    value.extend(apache_avro::to_avro_datum(schema, avro(schema, event)?)?);
    Ok(value)
}

/// A JSON value as the Avro value of `schema` (the subset the event schemas use).
fn avro(schema: &Schema, json: &Json) -> Result<Avro> {
    Ok(match schema {
        Schema::Record(record) => Avro::Record(
            (record.fields.iter())
                .map(|field| Ok((field.name.clone(), avro(&field.schema, &json[&field.name])?)))
                .collect::<Result<_>>()?,
        ),
        Schema::Union(union) => match json {
            Json::Null => Avro::Union(0, Box::new(Avro::Null)),
            present => Avro::Union(1, Box::new(avro(&union.variants()[1], present)?)),
        },
        Schema::Array(array) => Avro::Array(
            (json.as_array().context("an array")?.iter())
                .map(|item| avro(&array.items, item))
                .collect::<Result<_>>()?,
        ),
        Schema::String => Avro::String(json.as_str().context("a string")?.to_owned()),
        Schema::Double => Avro::Double(json.as_f64().context("a number")?),
        Schema::Long => Avro::Long(json.as_i64().context("an integer")?),
        other => bail!("no conversion to {other:?}"),
    })
}
