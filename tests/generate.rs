//! `weir generate` into a real Kafka topic: every event arrives, keyed by
//! its session, in order within the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value;
use weir::generate::GenerateArgs;
use weir_tests::{Stack, unique};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    generate: GenerateArgs,
}

#[tokio::test]
async fn generated_events_arrive_in_kafka_keyed_by_session() -> Result<()> {
    let stack = Stack::from_env();
    let topic = unique("weir_generate");
    let args = Args::try_parse_from([
        "generate",
        "--rate",
        "0",
        "--count",
        "3000",
        "--seed",
        "11",
        "--topic",
        &topic,
        "--bootstrap",
        &stack.bootstrap,
    ])?
    .generate;
    let counts = tokio::task::spawn_blocking(move || {
        weir::generate::run(&args, &Arc::new(AtomicBool::new(false)))
    })
    .await??;
    assert_eq!(counts.events, 3000);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", unique("weir_generate_group"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut per_session: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..3000 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("timed out waiting for generated events")??;
        let key = std::str::from_utf8(message.key().context("no key")?)?.to_owned();
        let event: Value = serde_json::from_slice(message.payload().context("no value")?)?;
        assert_eq!(
            event["session_id"],
            key.as_str(),
            "the key is the session id"
        );
        let event_type = event["event_type"]
            .as_str()
            .context("event_type")?
            .to_owned();
        per_session.entry(key).or_default().push(event_type);
    }
    // Within a session (one partition, in order) the first event is its start.
    for (session, types) in &per_session {
        assert_eq!(
            types[0], "session_start",
            "session {session} starts with session_start"
        );
    }
    println!(
        "weir generate: 3000 events in {} sessions read back from {topic}",
        per_session.len()
    );
    Ok(())
}
