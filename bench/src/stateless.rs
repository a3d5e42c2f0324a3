//! `weir-bench stateless`: a pipeline without an aggregator against a plain
//! consume-and-produce of the same input, side by side. (The issue calls
//! the copier the ceiling; measured, weir is faster: it works on batches in
//! parallel, the copier on one record at a time.)
//!
//! - **The copier**: a plain consume-and-produce in this process — one
//!   consumer reading the topic, one idempotent producer (`acks=all`, as
//!   weir's) writing every record as it is to another topic — timed from
//!   the first record read until Kafka has acknowledged the last.
//! - **weir**: `pipelines/commerce-events.toml` with its filter keeping every
//!   event type, so it writes the same records (enriched), timed from its
//!   first committed flush until its committed offsets reach the end of the
//!   topic (offsets are committed once the output topic holds the records).
//!
//! The two take turns going first, `--runs` times each.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::Stack;
use weir_tests::pipeline::{Names, create_topic, stock_pipeline};

use crate::pipeline::{produce, run_to_end};
use crate::race::median;

/// Options of `weir-bench stateless`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events pre-produced.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Runs of each, taking turns.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Every event type the generator writes: the filter keeps them all, so
/// weir writes as many records as the copier copies.
const ALL_TYPES: &str = r#"in = ["session_start", "page_view", "search", "product_viewed", "add_to_cart", "cart_viewed", "purchase", "session_end"]"#;

/// Runs both in turn and prints each run and the medians.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-stateless"));
    std::fs::create_dir_all(&dir)?;
    let tag = crate::race::tag("stateless");
    let names = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &names.events, args.partitions))?;
    println!(
        "weir-bench stateless: {} events, {} partitions, {} runs each",
        args.events, args.partitions, args.runs
    );
    produce(&stack, &names.events, args.events, 1000)?;
    let (mut copier, mut weir) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let output = format!("{tag}-out-{run}");
        let copier_first = run % 2 == 0;
        for copier_turn in [copier_first, !copier_first] {
            if copier_turn {
                let rate = consume_and_produce(&stack, &names.events, &output, args.events)?;
                println!(
                    "  run {}: consume-and-produce {rate:>9.0} events/s",
                    run + 1
                );
                copier.push(rate);
            } else {
                let rate = weir_run(&stack, &dir, &names, run, &tag, args.events)?;
                println!(
                    "  run {}: weir, stateless     {rate:>9.0} events/s",
                    run + 1
                );
                weir.push(rate);
            }
        }
    }
    let (copier, weir) = (median(&mut copier), median(&mut weir));
    println!(
        "medians: consume-and-produce {copier:.0} events/s, weir {weir:.0} events/s: {:.2}x its rate",
        weir / copier
    );
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&stack, &tag)
}

/// `pipelines/commerce-events.toml` over `names.events` into a topic of
/// this run, keeping every event; events per second from its first commit
/// to its last.
fn weir_run(
    stack: &Stack,
    dir: &std::path::Path,
    names: &Names,
    run: usize,
    tag: &str,
    events: u64,
) -> Result<f64> {
    let name = format!("{}-{run}", names.pipeline);
    let pipeline = stock_pipeline(
        dir,
        "commerce-events",
        &name,
        &[
            ("name = \"commerce-events\"", format!("name = \"{name}\"")),
            (
                "topic = \"ecommerce.events\"",
                format!("topic = \"{}\"", names.events),
            ),
            (
                "topic = \"commerce_events\"",
                format!("topic = \"{tag}-weir-{run}\""),
            ),
            (
                r#"in = ["product_viewed", "add_to_cart", "purchase"]"#,
                ALL_TYPES.to_owned(),
            ),
        ],
        "",
    )?;
    run_to_end(
        stack,
        &format!("weir-{name}"),
        &names.events,
        &pipeline,
        events,
    )
}

/// Reads `input` from its start and writes every record as it is to
/// `output`; events per second from the first record read until the last
/// write is acknowledged.
fn consume_and_produce(stack: &Stack, input: &str, output: &str, events: u64) -> Result<f64> {
    let consumer: BaseConsumer = stack
        .kafka_client()
        .set("group.id", weir_tests::unique("weir-bench-copy"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[input])?;
    let producer: ThreadedProducer<DefaultProducerContext> = stack
        .kafka_client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let mut read = 0u64;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < events {
        if Instant::now() > deadline {
            bail!("consume-and-produce copied {read} of {events} events in 10 minutes");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        started.get_or_insert_with(Instant::now);
        let mut record = BaseRecord::<[u8], [u8]>::to(output)
            .payload(message.payload().unwrap_or_default())
            .timestamp(message.timestamp().to_millis().unwrap_or(0));
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    // The producer's queue is full: let it drain.
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
        read += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    let seconds = started.expect("read something").elapsed().as_secs_f64();
    Ok(read as f64 / seconds)
}
