//! Smoke tests that prove each part of the local stack is the real thing:
//! Kafka speaks the Kafka protocol and keeps consumer-group offsets, the
//! registry speaks the Confluent API, PostgreSQL runs SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apache_avro::types::{Record, Value};
use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value as Json, json};
use sqlx::Row;
use weir_tests::{Stack, unique};

const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;

fn admin(stack: &Stack) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?)
}

/// Produces keyed messages to a fresh topic and reads every one back through
/// a consumer group, then checks the group's committed offsets.
#[tokio::test]
async fn kafka_round_trip_through_a_consumer_group() -> Result<()> {
    let stack = Stack::from_env();
    let topic = unique("weir_smoke");
    let group = unique("weir_smoke_group");
    let admin = admin(&stack)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let new_topic = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new_topic], &options).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    let mut sent = BTreeMap::new();
    for i in 0..MESSAGES {
        let key = format!("session-{}", i % 17);
        let value = format!(r#"{{"seq":{i},"event_type":"page_view"}}"#);
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)?;
        sent.insert(value, key);
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut received = BTreeMap::new();
    let mut per_partition = BTreeMap::<i32, i64>::new();
    while received.len() < MESSAGES {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("timed out waiting for messages")??;
        let key = String::from_utf8(message.key().context("message without key")?.to_vec())?;
        let value = String::from_utf8(message.payload().context("empty message")?.to_vec())?;
        *per_partition.entry(message.partition()).or_default() += 1;
        received.insert(value, key);
    }
    assert_eq!(
        received, sent,
        "every message comes back once, with its key"
    );
    // Keys spread over partitions, so the group really consumed several.
    assert!(
        per_partition.len() > 1,
        "messages in one partition only: {per_partition:?}"
    );
    consumer.commit_consumer_state(CommitMode::Sync)?;

    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition(&topic, partition);
    }
    let committed = consumer.committed_offsets(assignment, Duration::from_secs(10))?;
    for element in committed.elements() {
        let expected = per_partition
            .get(&element.partition())
            .copied()
            .unwrap_or(0);
        let offset = match element.offset() {
            Offset::Offset(offset) => offset,
            Offset::Invalid if expected == 0 => 0,
            other => anyhow::bail!("partition {}: committed {other:?}", element.partition()),
        };
        assert_eq!(
            offset,
            expected,
            "committed offset of partition {}",
            element.partition()
        );
    }

    admin.delete_topics(&[&topic], &options).await?;
    Ok(())
}

/// Asks the broker over the Kafka protocol, with Kafka's own features tool,
/// which metadata version its cluster runs: it names the broker's release.
#[test]
fn broker_is_kafka_4_3() -> Result<()> {
    let stack = Stack::from_env();
    let output = stack.kafka_tool(
        "org.apache.kafka.tools.FeatureCommand",
        &["--bootstrap-server", &stack.bootstrap, "describe"],
    )?;
    let line = output
        .lines()
        .find(|line| line.contains("Feature: metadata.version"))
        .with_context(|| format!("no metadata.version in:\n{output}"))?;
    let mut words = line.split_whitespace();
    let finalized = words
        .find(|word| *word == "FinalizedVersionLevel:")
        .and_then(|_| words.next())
        .with_context(|| format!("no finalized level in: {line}"))?;
    println!("broker metadata.version (Kafka release): {finalized}");
    ensure!(
        finalized.starts_with("4.3"),
        "expected a Kafka 4.3 broker, got {finalized}"
    );
    Ok(())
}

const SESSION_SCHEMA: &str = r#"{
  "type": "record", "name": "SessionStats", "namespace": "weir.smoke",
  "fields": [
    {"name": "session_id", "type": "string"},
    {"name": "event_count", "type": "long"},
    {"name": "user_segment", "type": ["null", "string"], "default": null}
  ]
}"#;

/// Registers an Avro schema through the Confluent API, fetches it back by the
/// id the registry returned, and round-trips a record through it.
#[tokio::test]
async fn registry_round_trip_through_the_confluent_api() -> Result<()> {
    let stack = Stack::from_env();
    let http = reqwest::Client::new();
    let subject = format!("{}-value", unique("weir_smoke"));
    let content_type = "application/vnd.schemaregistry.v1+json";
    let register = |schema: &str| {
        http.post(format!(
            "{}/subjects/{subject}/versions",
            stack.registry_url
        ))
        .header("Content-Type", content_type)
        .json(&json!({ "schema": schema }))
        .send()
    };

    let response: Json = register(SESSION_SCHEMA)
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = response["id"]
        .as_i64()
        .with_context(|| format!("no id in {response}"))?;
    println!("schema registry returned id {id} for subject {subject}");

    let again: Json = register(SESSION_SCHEMA)
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(
        again["id"].as_i64(),
        Some(id),
        "registering the same schema again keeps its id"
    );

    let fetched: Json = stack.registry_get(&format!("/schemas/ids/{id}")).await?;
    let fetched_text = fetched["schema"]
        .as_str()
        .context("no schema in the answer")?;
    let sent = Schema::parse_str(SESSION_SCHEMA)?;
    let fetched = Schema::parse_str(fetched_text)?;
    assert_eq!(fetched.canonical_form(), sent.canonical_form());

    let versions: Json = stack
        .registry_get(&format!("/subjects/{subject}/versions"))
        .await?;
    assert_eq!(versions, json!([1]));

    let config: Json = stack.registry_get("/config").await?;
    assert!(
        config["compatibilityLevel"].is_string(),
        "global config: {config}"
    );

    // A record written with the registered schema reads back with the fetched one.
    let mut record = Record::new(&sent).context("the schema is a record")?;
    record.put("session_id", "s-1");
    record.put("event_count", 42_i64);
    record.put(
        "user_segment",
        Value::Union(1, Box::new(Value::String("loyal".into()))),
    );
    let bytes = to_avro_datum(&sent, record)?;
    let decoded = from_avro_datum(&fetched, &mut bytes.as_slice(), None)?;
    let Value::Record(fields) = decoded else {
        anyhow::bail!("decoded {decoded:?}")
    };
    assert_eq!(
        fields[0],
        ("session_id".into(), Value::String("s-1".into()))
    );
    assert_eq!(fields[1], ("event_count".into(), Value::Long(42)));

    http.delete(format!("{}/subjects/{subject}", stack.registry_url))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Creates a table, upserts into it with bound values, reads the rows back.
#[tokio::test]
async fn postgres_round_trip_with_upserts() -> Result<()> {
    let stack = Stack::from_env();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url)
        .await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    println!("PostgreSQL server version {version}");

    let table = unique("weir_smoke");
    sqlx::query(&format!(
        r#"CREATE TABLE "{table}" (session_id TEXT PRIMARY KEY, event_count BIGINT NOT NULL)"#
    ))
    .execute(&pool)
    .await?;
    let upsert = format!(
        r#"INSERT INTO "{table}" (session_id, event_count) VALUES ($1, $2)
           ON CONFLICT (session_id) DO UPDATE SET event_count = EXCLUDED.event_count"#
    );
    for (session, count) in [("s-1", 1_i64), ("s-2", 5), ("s-1", 3)] {
        sqlx::query(&upsert)
            .bind(session)
            .bind(count)
            .execute(&pool)
            .await?;
    }
    let rows = sqlx::query(&format!(
        r#"SELECT session_id, event_count FROM "{table}" ORDER BY session_id"#
    ))
    .fetch_all(&pool)
    .await?;
    let rows: Vec<(String, i64)> = rows
        .iter()
        .map(|row| (row.get("session_id"), row.get("event_count")))
        .collect();
    assert_eq!(rows, vec![("s-1".to_owned(), 3), ("s-2".to_owned(), 5)]);

    sqlx::query(&format!(r#"DROP TABLE "{table}""#))
        .execute(&pool)
        .await?;
    Ok(())
}
