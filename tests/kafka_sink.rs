//! The Kafka sink against the real broker and registry, read back the way a
//! downstream consumer does: magic byte, schema id, the schema fetched from
//! the registry by that id, the Avro datum decoded with it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use apache_avro::types::Value as Avro;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value as Json;
use weir::plugin::Value;
use weir::sink::{KafkaSink, RegistryClient, RowSchema};
use weir_tests::avro::WireReader;
use weir_tests::{Stack, unique};

fn row(user: Option<&str>, events: i64, cart: Option<f64>) -> Vec<Value> {
    let text = |s: Option<&str>| s.map(|s| Value::Text(s.to_owned())).unwrap_or(Value::Null);
    vec![
        text(user),
        text(Some("returning")),
        text(Some("checkout")),
        Value::Long(events),
        Value::Long(2),
        Value::Long(3),
        cart.map(|_| Value::Long(2)).unwrap_or(Value::Null),
        cart.map(Value::Double).unwrap_or(Value::Null),
        Value::Long(0),
    ]
}

#[tokio::test]
async fn rows_reach_kafka_as_confluent_avro() -> Result<()> {
    let stack = Stack::from_env();
    let topic = unique("session_stats_avro");
    let schema = RowSchema::parse(session_stats::OUTPUT_SCHEMA)?;
    let sink = KafkaSink::connect(
        &weir::kafka::Connection::new(&stack.bootstrap),
        RegistryClient::new(&stack.services.registry)?,
        &topic,
        None,
        schema.clone(),
    )
    .await?;
    let rows = vec![
        ("sess_1".to_owned(), row(Some("user_00001"), 4, Some(59.5))),
        ("sess_2".to_owned(), row(None, 1, None)),
    ];
    sink.send(&rows).await?;

    // A second sink for the same topic finds the schema registered: same id, one version.
    let again = KafkaSink::connect(
        &weir::kafka::Connection::new(&stack.bootstrap),
        RegistryClient::new(&stack.services.registry)?,
        &topic,
        None,
        schema,
    )
    .await?;
    assert_eq!(again.schema_id(), sink.schema_id());
    let versions: Json = stack
        .registry_get(&format!("/subjects/{topic}-value/versions"))
        .await?;
    assert_eq!(versions, serde_json::json!([1]), "registered once");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", unique("weir_avro_reader"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut decoded: HashMap<String, Vec<(String, Avro)>> = HashMap::new();
    let mut reader = WireReader::default();
    while decoded.len() < rows.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("timed out reading the sink's topic")??;
        let key = std::str::from_utf8(message.key().context("no key")?)?.to_owned();
        let payload = message.payload().context("no value")?;
        let fields = reader.fields(&stack, payload).await?;
        decoded.insert(key, fields);
    }
    let field = |key: &str, name: &str| -> Avro {
        decoded[key]
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect("field")
    };
    let some = |v: Avro| Avro::Union(1, Box::new(v));
    assert_eq!(
        field("sess_1", "USER_ID"),
        some(Avro::String("user_00001".into()))
    );
    assert_eq!(field("sess_1", "EVENTS_COUNT"), some(Avro::Long(4)));
    assert_eq!(field("sess_1", "CART_VALUE"), some(Avro::Double(59.5)));
    assert_eq!(
        field("sess_2", "USER_ID"),
        Avro::Union(0, Box::new(Avro::Null))
    );
    assert_eq!(
        field("sess_2", "ITEMS_IN_CART"),
        Avro::Union(0, Box::new(Avro::Null))
    );
    assert_eq!(decoded["sess_1"].len(), 9, "the nine value columns");
    println!(
        "kafka sink: schema id {} under {topic}-value, {} rows decoded through the registry",
        sink.schema_id(),
        rows.len()
    );
    Ok(())
}
