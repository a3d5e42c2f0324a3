//! Hostile input through the real stack: records no well-behaved producer
//! writes — keys, values, headers, timestamps, sizes and encodings of every
//! awkward kind — sent among the generator's valid events into the stock
//! pipeline, run as `weir run`. For every kind the pipeline keeps moving;
//! the record is either counted as the event it is or dead-lettered with
//! the reason; every session equals the SQL oracle (computed from the valid
//! events and the hostile ones that are events); and SIGTERM ends the
//! process with status 0 within 30 s.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use sqlx::postgres::PgPoolOptions;
use weir_tests::oracle::{check_avro, differences, load_raw, oracle_query};
use weir_tests::pipeline::{
    Scenario, demo_pipeline, generated_events, progress, read_dead_letters, terminate,
    wait_caught_up,
};
use weir_tests::raw::{self, Raw};

/// The catalog every pipeline test writes to the shared tables.
const SEED: &str = "42";

/// The largest value the test's pipeline takes (`max_record_bytes`).
const MAX_RECORD_BYTES: usize = 16_384;

/// What must become of a hostile record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// It is a valid event of its session: the oracle counts it.
    Counted,
    /// It is dead-lettered by `stage`, of `kind`, with `code`.
    Dead {
        stage: &'static str,
        kind: &'static str,
        code: &'static str,
    },
}

/// One kind of hostile record.
struct Hostile {
    /// What is hostile about it.
    what: &'static str,
    /// A marker in its key or value, to find its dead letter by.
    id: String,
    record: Raw,
    expect: Expect,
}

const fn dead(stage: &'static str, kind: &'static str, code: &'static str) -> Expect {
    Expect::Dead { stage, kind, code }
}

const SOURCE_NOT_JSON: Expect = dead("source", "malformed", "not-json");

/// The corpus: `session` is a real session of the generated events, and
/// `event` one of its events (a JSON object), to make hostile records that
/// are otherwise valid events.
fn corpus(session: &str, event: &serde_json::Value) -> Vec<Hostile> {
    let mut kinds: Vec<(&'static str, Raw, Expect)> = Vec::new();
    let keyed = |value: Vec<u8>| Raw {
        key: Some(b"hostile".to_vec()),
        value: Some(value),
        ..Raw::default()
    };
    // An event of `session` with `extra` merged in (a valid event).
    let event_with = |extra: serde_json::Value| {
        let mut event = event.clone();
        for (name, value) in extra.as_object().expect("an object") {
            event[name] = value.clone();
        }
        event
    };
    let counted = |value: Vec<u8>| Raw {
        key: Some(session.as_bytes().to_vec()),
        value: Some(value),
        ..Raw::default()
    };
    let text = |value: serde_json::Value| value.to_string().into_bytes();

    // Values the source refuses.
    kinds.push((
        "plain text",
        keyed(b"hello, weir ID".to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "a JSON array",
        keyed(br#"["ID", 1, 2]"#.to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "an empty value",
        Raw {
            key: Some(b"ID".to_vec()),
            value: Some(Vec::new()),
            ..Raw::default()
        },
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "a null value (tombstone)",
        Raw {
            key: Some(b"ID".to_vec()),
            ..Raw::default()
        },
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "truncated JSON",
        keyed(br#"{"id": "ID", "event_type": "pa"#.to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "invalid UTF-8 in a string",
        keyed(b"{\"id\": \"ID\", \"user_id\": \"\xff\xfe\"}".to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "a lone UTF-16 surrogate escape",
        keyed(br#"{"id": "ID", "note": "\ud800"}"#.to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "a byte-order mark before the JSON",
        keyed(b"\xef\xbb\xbf{\"id\": \"ID\"}".to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "JSON nested 2 000 deep",
        keyed(
            format!(
                r#"{{"id": "ID", "deep": {}{}}}"#,
                "[".repeat(2000),
                "]".repeat(2000)
            )
            .into_bytes(),
        ),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "two JSON objects in one value",
        keyed(br#"{"id": "ID"} {"id": "ID"}"#.to_vec()),
        SOURCE_NOT_JSON,
    ));
    kinds.push((
        "a value one byte over max_record_bytes",
        Raw {
            key: Some(b"ID".to_vec()),
            value: Some(
                format!(r#"{{"pad": "{}"}}"#, "x".repeat(MAX_RECORD_BYTES - 10)).into_bytes(),
            ),
            ..Raw::default()
        },
        dead("source", "malformed", "oversized"),
    ));
    // Keys the aggregator cannot key state by.
    let valid = text(event_with(serde_json::json!({ "id": "ID" })));
    kinds.push((
        "no key",
        Raw {
            value: Some(valid.clone()),
            ..Raw::default()
        },
        dead("session-stats", "malformed", "missing-key"),
    ));
    kinds.push((
        "an empty key",
        Raw {
            key: Some(Vec::new()),
            value: Some(valid.clone()),
            ..Raw::default()
        },
        dead("session-stats", "malformed", "missing-key"),
    ));
    kinds.push((
        "a key that is not UTF-8",
        Raw {
            key: Some(b"\xc3\x28ID".to_vec()),
            value: Some(valid.clone()),
            ..Raw::default()
        },
        dead("session-stats", "malformed", "key-not-utf8"),
    ));
    kinds.push((
        "a key holding NUL",
        Raw {
            key: Some(b"ses\0sion".to_vec()),
            value: Some(valid.clone()),
            ..Raw::default()
        },
        dead("session-stats", "malformed", "key-not-text"),
    ));
    // The one that once held the demo pipeline for good: PostgreSQL's
    // index refuses a 5 000-character key, and the flush was retried forever.
    let long_key: String = (0..5000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let long = text(event_with(
        serde_json::json!({ "id": "ID", "session_id": long_key }),
    ));
    kinds.push((
        "a 5 000-character key and session_id",
        Raw {
            key: Some(long_key.clone().into_bytes()),
            value: Some(long),
            ..Raw::default()
        },
        dead("session-stats", "malformed", "key-too-long"),
    ));
    // Values the stages refuse.
    kinds.push((
        "no session_id",
        keyed(br#"{"id": "ID", "event_type": "page_view"}"#.to_vec()),
        dead("field-filter", "rejected", "predicate-failed"),
    ));
    kinds.push((
        "an unknown event_type",
        keyed(br#"{"id": "ID", "session_id": "s", "event_type": "teleport"}"#.to_vec()),
        dead("field-filter", "rejected", "predicate-failed"),
    ));
    let cart = |extra| counted(text(event_with(extra)));
    kinds.push((
        "a cart total that is text",
        cart(serde_json::json!({ "id": "ID", "event_type": "add_to_cart", "cart_total": "lots" })),
        dead("session-stats", "rejected", "malformed-json"),
    ));
    kinds.push((
        "a fractional item count",
        cart(
            serde_json::json!({ "id": "ID", "event_type": "add_to_cart", "cart_item_count": 2.5 }),
        ),
        dead("session-stats", "rejected", "malformed-json"),
    ));
    kinds.push(("an item count past 64 bits", counted(format!(r#"{{"id": "ID", "session_id": "{session}", "event_type": "add_to_cart", "cart_item_count": 99999999999999999999}}"#).into_bytes()), dead("session-stats", "rejected", "malformed-json")));
    // Headers.
    kinds.push((
        "a header name that is not UTF-8",
        Raw {
            headers: vec![
                (b"trace".to_vec(), b"1".to_vec()),
                (b"\xff\xfe-name".to_vec(), b"\x00\xff".to_vec()),
            ],
            ..keyed(br#"{"id": "ID", "event_type": "page_view"}"#.to_vec())
        },
        dead("source", "malformed", "header-not-utf8"),
    ));
    let plain = || text(event_with(serde_json::json!({ "id": "ID" })));
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..500)
        .map(|i| (format!("h{i}").into_bytes(), vec![b'v'; 8]))
        .collect();
    kinds.push((
        "500 headers",
        Raw {
            headers: many,
            ..counted(plain())
        },
        Expect::Counted,
    ));
    kinds.push((
        "a header value of 100 KB of any bytes",
        Raw {
            headers: vec![(
                b"blob".to_vec(),
                (0..100_000).map(|i| (i % 256) as u8).collect(),
            )],
            ..counted(plain())
        },
        Expect::Counted,
    ));
    kinds.push((
        "an empty header name and a null-free binary value",
        Raw {
            headers: vec![(Vec::new(), b"\x01\x02".to_vec())],
            ..counted(plain())
        },
        Expect::Counted,
    ));
    // Timestamps.
    kinds.push((
        "a timestamp in the year 3000",
        Raw {
            timestamp: Some(32_503_680_000_000),
            ..counted(plain())
        },
        Expect::Counted,
    ));
    kinds.push((
        "a timestamp of 1970",
        Raw {
            timestamp: Some(1),
            ..counted(plain())
        },
        Expect::Counted,
    ));
    // Encodings and shapes that are valid.
    kinds.push(("emoji, right-to-left text, combining marks, escapes", counted(text(event_with(serde_json::json!({ "id": "ID", "note": "😀 עברית e\u{301} \u{2028} \"quoted\" \\ \t" })))), Expect::Counted));
    kinds.push((
        "whitespace around the JSON",
        counted(format!("\n\t  {}  \r\n", String::from_utf8(plain()).expect("text")).into_bytes()),
        Expect::Counted,
    ));
    let fields: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| (format!("f{i}"), serde_json::json!(i)))
        .collect();
    kinds.push((
        "200 extra fields",
        counted(text(event_with(
            serde_json::json!({ "id": "ID", "extra": fields }),
        ))),
        Expect::Counted,
    ));
    let at_limit = {
        let mut event = event_with(serde_json::json!({ "id": "ID", "pad": "" }));
        // Room for the pad, less what the marker adds (`ID` -> `hostile-NN`).
        let room = MAX_RECORD_BYTES - event.to_string().len() - 8;
        event["pad"] = serde_json::json!("p".repeat(room));
        text(event)
    };
    kinds.push((
        "a value of exactly max_record_bytes",
        counted(at_limit),
        Expect::Counted,
    ));

    kinds
        .into_iter()
        .enumerate()
        .map(|(index, (what, mut record, expect))| {
            // The marker `ID` becomes this record's own, where it appears
            // (keys and values that must stay as built keep their bytes).
            let id = format!("hostile-{index:02}");
            let mark = |bytes: &mut Vec<u8>| {
                if let Some(at) = bytes.windows(2).position(|w| w == b"ID") {
                    bytes.splice(at..at + 2, id.bytes());
                }
            };
            record.key.as_mut().map(mark);
            record.value.as_mut().map(mark);
            if what == "a value of exactly max_record_bytes" {
                assert_eq!(record.value.as_ref().map(Vec::len), Some(MAX_RECORD_BYTES));
            }
            Hostile {
                what,
                id,
                record,
                expect,
            }
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn every_kind_of_hostile_record_is_counted_or_dead_lettered_and_the_rest_equals_the_oracle()
-> Result<()> {
    let run = Scenario::new("hostile", 2)?;
    let (stack, names, dir, tokio) = (&run.stack, &run.names, &run.dir, &run.tokio);
    let valid = generated_events(stack, SEED, 20, 3000, &dir.join("events.jsonl"))?;
    // Hostile events join a real session, in the middle of its events.
    let session = valid[0]["session_id"]
        .as_str()
        .context("session_id")?
        .to_owned();
    let middle = valid
        .iter()
        .filter(|e| e["session_id"] == session.as_str())
        .nth(3)
        .context("a session of several events")?;
    let mut event = middle.clone();
    event["event_type"] = serde_json::json!("page_view");
    let hostile = corpus(&session, &event);
    ensure!(hostile.len() >= 25, "{} kinds", hostile.len());
    // Brokers since Kafka 4.0 refuse records dated more than an hour ahead
    // unless the topic allows them, as older brokers and such topics do.
    tokio.block_on(allow_any_timestamp(stack, &names.events))?;

    // Valid events keyed by session, a hostile record every 90; the lines
    // of the oracle are the events in the order they were sent.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "2000000")
        .create()?;
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut next = hostile.iter();
    for (index, event) in valid.iter().enumerate() {
        if index % 90 == 45
            && let Some(record) = next.next()
        {
            raw::send(producer.client(), &names.events, &record.record)?;
            if record.expect == Expect::Counted {
                let value = record.record.value.as_deref().context("a value")?;
                lines.push((
                    lines.len() as i64,
                    String::from_utf8(value.to_vec())?.trim().to_owned(),
                ));
            }
        }
        let value = event.to_string();
        let key = event["session_id"].as_str().context("session_id")?;
        raw::send(
            producer.client(),
            &names.events,
            &Raw {
                key: Some(key.as_bytes().to_vec()),
                value: Some(value.clone().into_bytes()),
                ..Raw::default()
            },
        )?;
        lines.push((lines.len() as i64, value));
    }
    ensure!(next.next().is_none(), "every hostile record was sent");
    producer.flush(Duration::from_secs(30))?;
    let (_, ends) = progress(stack, &names.group(), &names.events)?;
    let sent = valid.len() + hostile.len();
    ensure!(
        ends.iter().sum::<i64>() as usize == sent,
        "the broker took {ends:?} of {sent} records"
    );

    let pipeline = demo_pipeline(
        dir,
        names,
        &format!("max_record_bytes = {MAX_RECORD_BYTES}"),
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut weir,
        Duration::from_secs(300),
    )
    .with_context(|| run.log_tail("weir.log", 30))?;
    let stopping = Instant::now();
    let status = terminate(&mut weir)?;
    let stopped = stopping.elapsed();
    ensure!(
        status.success(),
        "weir exited with {status}: {}",
        run.log_tail("weir.log", 30)
    );
    ensure!(
        stopped < Duration::from_secs(30),
        "SIGTERM took {stopped:?}"
    );
    println!("caught up; SIGTERM ended weir with status 0 in {stopped:.1?}");

    // Every hostile record that is not an event is in the dead-letter topic, saying why.
    let expected_letters = hostile
        .iter()
        .filter(|h| h.expect != Expect::Counted)
        .count();
    let letters = read_dead_letters(stack, &names.dead_letters(), expected_letters)?;
    ensure!(
        letters.len() == expected_letters,
        "{} of {expected_letters} dead letters arrived",
        letters.len()
    );
    for hostile in &hostile {
        let found = letters.iter().find(|letter| {
            letter
                .key
                .as_deref()
                .is_some_and(|key| contains(key, &hostile.id))
                || contains(&letter.value, &hostile.id)
        });
        let Expect::Dead { stage, kind, code } = hostile.expect else {
            ensure!(
                found.is_none(),
                "{} ({}): an event, yet dead-lettered",
                hostile.what,
                hostile.id
            );
            println!("  counted       {}", hostile.what);
            continue;
        };
        let letter = found.with_context(|| {
            let seen: Vec<String> = letters
                .iter()
                .map(|l| {
                    let value = String::from_utf8_lossy(&l.value);
                    format!(
                        "{:?} {}",
                        l.headers.get("weir.error.code"),
                        value.chars().take(60).collect::<String>()
                    )
                })
                .collect();
            format!(
                "no dead letter for {} ({}); the dead letters:\n{}",
                hostile.what,
                hostile.id,
                seen.join("\n")
            )
        })?;
        let header = |name: &str| letter.headers.get(name).map(String::as_str);
        let got = (
            header("weir.error.stage"),
            header("weir.error.kind"),
            header("weir.error.code"),
        );
        ensure!(
            got == (Some(stage), Some(kind), Some(code)),
            "{}: {:?}",
            hostile.what,
            letter.headers
        );
        ensure!(header("weir.source.topic") == Some(names.events.as_str()));
        ensure!(header("weir.source.offset").is_some_and(|o| o.parse::<i64>().is_ok()));
        let reason = header("weir.error.reason").unwrap_or_default();
        ensure!(!reason.is_empty(), "{}: no reason", hostile.what);
        if code != "oversized" {
            ensure!(
                letter.value == hostile.record.value.clone().unwrap_or_default(),
                "{}: the dead letter carries the value as it arrived",
                hostile.what
            );
        }
        println!(
            "  dead-lettered {:<52} {stage}/{code}: {}",
            hostile.what,
            reason.chars().take(70).collect::<String>()
        );
    }

    // Every session, in the table and on the Avro topic, equals the oracle.
    tokio.block_on(async {
        let pool = PgPoolOptions::new().max_connections(2).connect(&stack.database_url).await?;
        let raw_table = format!("{}_raw", names.table);
        let oracle = format!("{}_oracle", names.table);
        load_raw(&pool, &raw_table, &lines).await?;
        sqlx::query(&format!("CREATE TABLE {oracle} AS {}", oracle_query(&raw_table)))
            .execute(&pool)
            .await?;
        let (different, samples) = differences(&pool, &names.table, &oracle).await?;
        ensure!(different == 0, "{different} sessions differ from the oracle:\n{}", samples.join("\n"));
        let sessions: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {oracle}")).fetch_one(&pool).await?;
        let (keys, _) = check_avro(stack, &pool, &names.avro, &oracle).await?;
        println!(
            "{} hostile kinds among {} events: {sessions} sessions in the table and {keys} on the Avro topic equal the oracle",
            hostile.len(),
            valid.len()
        );
        for table in [&raw_table, &oracle] {
            sqlx::query(&format!("DROP TABLE {table}")).execute(&pool).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Lets `topic` take records of any timestamp.
async fn allow_any_timestamp(stack: &weir_tests::Stack, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?;
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("message.timestamp.after.max.ms", "9223372036854775807");
    for result in admin.alter_configs([&change], &AdminOptions::new()).await? {
        result.map_err(|(_, error)| anyhow::anyhow!("altering `{topic}`: {error}"))?;
    }
    Ok(())
}
