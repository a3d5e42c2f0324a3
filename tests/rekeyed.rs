//! A re-keyed aggregation from its pipeline file (`pipelines/category-sales.toml`:
//! purchases split into their items, summed per product category through the
//! repartition topic) on the real stack, its table checked against what SQL
//! computes from the input events and the catalog: from a JSON topic, and
//! from a topic of Confluent-framed Avro written under two versions of its
//! schema (`format = "avro"`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value as Json;
use sqlx::PgPool;
use weir::sink::registry::RegistryClient;
use weir_tests::oracle::{differences_in, load_raw, read_topic};
use weir_tests::pipeline::{
    Scenario, generated_events, progress, stock_pipeline, terminate, wait_caught_up,
};

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
    let raw = format!("{}_raw", run.names.table);
    run.tokio.block_on(load_raw(
        &pool,
        &raw,
        &read_topic(&run.stack, &run.names.events)?,
    ))?;
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

    let letters = dead_letters(&run, hostile.len())?;
    for (key, _, code) in &hostile {
        let key = format!("hostile-{key}");
        let found = letters
            .iter()
            .find(|(letter, _)| *letter == key)
            .with_context(|| format!("no dead letter for {key}: {letters:?}"))?;
        ensure!(
            found.1 == *code,
            "{key}: {} where {code} was expected",
            found.1
        );
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
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    let generate = || -> Result<()> {
        let counts = run
            .start_generator("7", 20_000, 0, 500)
            .join()
            .expect("generator")?;
        ensure!(counts.events == 20_000);
        Ok(())
    };
    generate()?;
    caught_up(&run, &mut weir)?;
    let (_, boundary) = progress(&run.stack, &run.names.group(), &run.names.events)?;
    let moved = execute(format!(
        "UPDATE {catalog} SET category = 'outdoor' WHERE category = 'sports'"
    ))?;
    ensure!(moved > 0, "the catalog has sports products");
    // The documented delay: the next refresh (at most REFRESH later) and
    // its query; the same events again are processed after it.
    std::thread::sleep(REFRESH * 3);
    generate()?;
    run_to_end(&run, &mut weir)?;

    let raw = format!("{}_raw", run.names.table);
    run.tokio.block_on(load_raw(
        &pool,
        &raw,
        &read_topic(&run.stack, &run.names.events)?,
    ))?;
    // Events before the boundary (their partition's offset below it) were
    // enriched with the catalog as it was, the others with the new one.
    let before_boundary = boundary
        .iter()
        .enumerate()
        .map(|(partition, end)| {
            format!("(r.line / 1000000000000 = {partition} AND r.line % 1000000000000 < {end})")
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let category = format!(
        "CASE WHEN {before_boundary} \
         THEN (SELECT p.category FROM {before} p WHERE p.product_id = item->>'product_id') \
         ELSE (SELECT p.category FROM {catalog} p WHERE p.product_id = item->>'product_id') END"
    );
    let (categories, lines) = equal_to_oracle(&run, &pool, &raw, &table, &category)?;
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

/// `pipelines/category-sales.toml` for `run`, reading values as `format`;
/// the file and its table.
fn category_pipeline(run: &Scenario, format: &str) -> Result<(PathBuf, String)> {
    category_pipeline_with(run, format, Vec::new())
}

/// [`category_pipeline`] with more of its lines rewritten.
fn category_pipeline_with(
    run: &Scenario,
    format: &str,
    more: Vec<(&str, String)>,
) -> Result<(PathBuf, String)> {
    let table = format!("{}_sales", run.names.table);
    let mut rewrites = vec![
        (
            "name = \"category-sales\"",
            format!("name = \"{}\"", run.names.pipeline),
        ),
        (
            "topic = \"ecommerce.events\"",
            format!("topic = \"{}\"", run.names.events),
        ),
        ("format = \"json\"", format!("format = \"{format}\"")),
        ("table = \"category_sales\"", format!("table = \"{table}\"")),
    ];
    rewrites.extend(more);
    let pipeline = stock_pipeline(
        &run.dir,
        "category-sales",
        &run.names.pipeline,
        &rewrites,
        "",
    )?;
    Ok((pipeline, table))
}

/// Waits until both hops have committed everything, then stops weir.
fn run_to_end(run: &Scenario, weir: &mut std::process::Child) -> Result<()> {
    caught_up(run, weir)?;
    ensure!(terminate(weir)?.success(), "weir stops cleanly");
    Ok(())
}

/// Waits until both hops have committed everything.
fn caught_up(run: &Scenario, weir: &mut std::process::Child) -> Result<()> {
    let group = run.names.group();
    let second = format!("{group}.sales");
    for (group, topic) in [
        (group.clone(), run.names.events.clone()),
        (second.clone(), format!("{second}.repartition")),
    ] {
        wait_caught_up(&run.stack, &group, &topic, weir, Duration::from_secs(300))
            .with_context(|| format!("weir's log ends:\n{}", run.log_tail("weir.log", 12)))?;
    }
    Ok(())
}

/// The category of an item (`item`, of event `r`) in the oracle: the
/// catalog table's.
const CATALOG_CATEGORY: &str =
    "(SELECT p.category FROM products p WHERE p.product_id = item->>'product_id')";

/// Compares `table` with SQL over the events in `raw` (`line`, `data`):
/// every item of every purchase, its category given by the SQL expression
/// `category` (NULL: uncategorised), summed per category in exact decimals.
/// Returns the categories and the items.
fn equal_to_oracle(
    run: &Scenario,
    pool: &PgPool,
    raw: &str,
    table: &str,
    category: &str,
) -> Result<(i64, i64)> {
    let oracle = format!("{raw}_oracle");
    run.tokio.block_on(async {
        sqlx::query(&format!(
            "CREATE TABLE {oracle} AS \
             SELECT coalesce({category}, 'uncategorised') AS \"CATEGORY\", \
                    sum((item->>'quantity')::bigint) AS \"UNITS_SOLD\", \
                    (sum(round((item->>'price')::numeric * 100) * (item->>'quantity')::bigint) / 100)::float8 AS \"REVENUE\", \
                    count(*) AS \"ORDER_LINES\" \
             FROM {raw} r \
             CROSS JOIN LATERAL jsonb_array_elements(r.data->'items') AS item \
             WHERE r.data->>'event_type' = 'purchase' \
             GROUP BY 1"
        ))
        .execute(pool)
        .await
    })?;
    let categories = run.scalar::<i64>(pool, &format!("SELECT count(*) FROM {oracle}"))?;
    let lines = run.scalar::<i64>(
        pool,
        &format!("SELECT sum(\"ORDER_LINES\")::bigint FROM {oracle}"),
    )?;
    ensure!(
        categories > 3 && lines > 300,
        "the input has sales: {categories} categories, {lines} items"
    );
    let columns = "\"CATEGORY\", \"UNITS_SOLD\", \"REVENUE\", \"ORDER_LINES\"";
    let (different, samples) = run
        .tokio
        .block_on(differences_in(pool, table, &oracle, columns))?;
    ensure!(
        different == 0,
        "{different} rows differ between `{table}` and the oracle; first ones:\n{}",
        samples.join("\n")
    );
    Ok((categories, lines))
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

/// The first `count` dead letters of the scenario's pipeline: each key
/// and its `weir.error.code`.
fn dead_letters(run: &Scenario, count: usize) -> Result<Vec<(String, String)>> {
    let reader: BaseConsumer = run
        .stack
        .kafka_client()
        .set("group.id", weir_tests::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[&run.names.dead_letters()])?;
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while letters.len() < count && std::time::Instant::now() < deadline {
        let Some(message) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        let code = (message.headers().into_iter())
            .flat_map(|headers| headers.iter())
            .find(|header| header.key == "weir.error.code")
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        letters.push((key, code));
    }
    ensure!(
        reader.poll(Duration::from_secs(2)).is_none(),
        "more dead letters than expected: {letters:?}"
    );
    Ok(letters)
}
