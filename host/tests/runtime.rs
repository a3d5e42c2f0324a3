//! The plugin runtime with real compiled components: the stock plugins on
//! known inputs, and plugins that break in every way a plugin can.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RUNTIME, batch, load, plugin_path};
use serde_json::{Value as Json, json};
use weir::plugin::{
    Batch, BatchBuilder, Failure, Group, GroupResult, LoadError, LookupTables, OutputRecord,
    PluginKind, RecordRef, Runtime, RuntimeOptions, StageContext, StageLimits, Value, Verdict,
    Worker,
};

fn stage(config: Json) -> Arc<StageContext> {
    let mut context = StageContext::new("test", "stage");
    context.config_json = config.to_string();
    Arc::new(context)
}

fn rejected_code(verdict: &Verdict) -> Option<&str> {
    match verdict {
        Verdict::Failed(Failure::Rejected(error)) => Some(&error.code),
        _ => None,
    }
}

#[test]
fn field_filter_keeps_drops_and_rejects_by_its_predicates() {
    let plugin = load("field-filter");
    assert_eq!(plugin.kind, PluginKind::Filter);
    let config = json!({"keep_if": [
        {"field": "session_id", "present": true},
        {"field": "event_type", "in": ["page_view", "purchase"], "otherwise": "reject"},
        {"field": "device.type", "equals": "mobile"},
    ]});
    let mut worker = Worker::new(plugin, stage(config)).expect("starts");
    let records = batch(&[
        (
            "s1",
            r#"{"session_id":"s1","event_type":"page_view","device":{"type":"mobile"}}"#,
        ),
        (
            "s1",
            r#"{"event_type":"page_view","device":{"type":"mobile"}}"#,
        ),
        ("s1", r#"{"session_id":null,"event_type":"page_view"}"#),
        (
            "s1",
            r#"{"session_id":"s1","event_type":"teleport","device":{"type":"mobile"}}"#,
        ),
        (
            "s1",
            r#"{"session_id":"s1","event_type":"purchase","device":{"type":"desktop"}}"#,
        ),
        ("s1", "not json at all"),
        (
            "s1",
            r#"{"session_id":"s1","event_type":"purchase","device":{"type":"mobile"}}"#,
        ),
    ]);
    let verdicts = filter(&mut worker, &records);
    assert_eq!(verdicts.len(), records.records.len());
    assert_eq!(verdicts[0], Verdict::Keep);
    assert_eq!(verdicts[1], Verdict::Drop, "no session_id");
    assert_eq!(verdicts[2], Verdict::Drop, "null session_id");
    assert_eq!(
        rejected_code(&verdicts[3]),
        Some("predicate-failed"),
        "unknown event_type"
    );
    assert_eq!(verdicts[4], Verdict::Drop, "not mobile");
    assert_eq!(rejected_code(&verdicts[5]), Some("malformed-json"));
    assert_eq!(verdicts[6], Verdict::Keep);
    assert_eq!(worker.restarts(), 0, "no trap, no restart");
}

#[test]
fn catalog_enrich_copies_fields_from_lookup_tables() {
    let plugin = load("catalog-enrich");
    assert_eq!(plugin.kind, PluginKind::Transform);
    let mut lookups = LookupTables::default();
    lookups.insert(
        "users",
        HashMap::from([("user_00042".to_owned(), r#"{"segment":"vip"}"#.to_owned())]),
    );
    lookups.insert(
        "products",
        HashMap::from([(
            "prod_0007".to_owned(),
            r#"{"category":"electronics","brand":"Voltix"}"#.to_owned(),
        )]),
    );
    let mut context = StageContext::new("test", "enrich");
    context.lookups = Arc::new(lookups);
    context.config_json = json!({"enrich": [
        {"table": "users", "key_field": "user_id", "fields": {"user_segment": "segment"}},
        {"table": "products", "key_field": "product_id",
         "fields": {"product_category": "category", "product_brand": "brand"}},
    ]})
    .to_string();
    let mut worker = Worker::new(plugin, Arc::new(context)).expect("starts");
    let records = batch(&[
        (
            "s1",
            r#"{"event_type":"product_viewed","user_id":"user_00042","product_id":"prod_0007"}"#,
        ),
        (
            "s1",
            r#"{"event_type":"session_start","user_id":"user_00042","user_segment":"new"}"#,
        ),
        ("s1", r#"{"event_type":"page_view","user_id":"user_99999"}"#),
        ("s1", "{broken"),
        // A field present as null is replaced, not added a second time.
        (
            "s1",
            r#"{"user_id":"user_00042","user_segment":null,"big":12345678901234567890123}"#,
        ),
        // An empty-looking object with spaces, and an escaped key.
        (
            "s1",
            "{ \"user_id\" : \"user_00042\" , \"caf\\u00e9\": 1 }  ",
        ),
    ]);
    let results = transform(&mut worker, &records);
    let value = |index: usize| -> Json {
        let emitted = results[index].as_ref().expect("transformed");
        assert_eq!(emitted.len(), 1);
        assert_eq!(
            emitted[0].key.as_deref(),
            Some(&b"s1"[..]),
            "the key is kept"
        );
        serde_json::from_slice(&emitted[0].value).expect("JSON out")
    };
    assert_eq!(
        value(0),
        json!({"event_type":"product_viewed","user_id":"user_00042","product_id":"prod_0007",
               "user_segment":"vip","product_category":"electronics","product_brand":"Voltix"})
    );
    assert_eq!(
        value(1)["user_segment"],
        "new",
        "an event's own segment is kept"
    );
    assert_eq!(
        value(2),
        json!({"event_type":"page_view","user_id":"user_99999"}),
        "a miss passes unchanged"
    );
    match &results[3] {
        Err(Failure::Rejected(error)) => assert_eq!(error.code, "malformed-json"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let text = String::from_utf8(results[4].as_ref().expect("transformed")[0].value.clone())
        .expect("UTF-8");
    assert_eq!(text.matches("user_segment").count(), 1, "{text}");
    assert!(
        text.contains("\"big\":12345678901234567890123"),
        "numbers keep every digit: {text}"
    );
    let mut replaced = value(4);
    replaced.as_object_mut().expect("an object").remove("big");
    assert_eq!(
        replaced,
        json!({"user_id":"user_00042","user_segment":"vip"})
    );
    assert_eq!(
        value(5),
        json!({"user_id":"user_00042","café":1,"user_segment":"vip"})
    );
}

/// Every byte the host lowers reaches the plugin as sent: record metadata at
/// its extremes, keys absent and empty, headers, and field spans for values
/// that are objects, objects missing fields, and not objects at all. The
/// host writes these lists into guest memory itself (`bindings::types`), so
/// this pins its layout against what the SDK reads.
#[test]
fn records_and_fields_cross_the_boundary_intact() {
    let plugin = load("metadata-echo");
    let mut worker = Worker::new(plugin, stage(json!({}))).expect("starts");
    let record =
        |key: Option<&'static [u8]>, value: &'static str, timestamp, partition, offset| RecordRef {
            key,
            value: value.as_bytes(),
            timestamp,
            partition,
            offset,
        };
    let cases = [
        record(Some(b"k1"), r#"{"a":1,"b":"two"}"#, 1_700_000_000_123, 0, 0),
        record(None, r#"{"b":[1,{"c":null}],"a":null}"#, -1, 7, i64::MAX),
        record(Some(b""), r#"{"z":true}"#, i64::MIN, i32::MAX, 1),
        record(Some(&[0, 255, 10]), "not json", 0, -1, i64::MIN),
        record(Some(b"k5"), "[1,2]", i64::MAX, 3, 42),
        record(None, r#"{ "a" : "x\"y" , "b" : -0.5e3 }"#, 5, 0, 1 << 40),
    ];
    let mut builder = BatchBuilder::default();
    for case in cases {
        builder.push(case);
        if case.offset == 42 {
            builder.header("trace", b"t-1");
            builder.header("empty", b"");
        }
    }
    let batch = builder.build();
    let results = transform(&mut worker, &batch);
    assert_eq!(results.len(), cases.len());
    let bytes = |bytes: &[u8]| json!(bytes);
    let expected_fields = [
        Some([Some("1"), Some(r#""two""#)]),
        Some([Some("null"), Some(r#"[1,{"c":null}]"#)]),
        Some([None, None]),
        None,
        None,
        Some([Some(r#""x\"y""#), Some("-0.5e3")]),
    ];
    for (index, (case, fields)) in cases.iter().zip(expected_fields).enumerate() {
        let output = results[index].as_ref().expect("echoed");
        let echo: Json = serde_json::from_slice(&output[0].value).expect("the echo is JSON");
        let headers = if case.offset == 42 {
            json!([["trace", bytes(b"t-1")], ["empty", bytes(b"")]])
        } else {
            json!([])
        };
        let fields =
            fields.map(|fields| fields.map(|field| field.map(|text| bytes(text.as_bytes()))));
        assert_eq!(
            echo,
            json!({
                "key": case.key.map(bytes),
                "value": bytes(case.value),
                "timestamp": case.timestamp,
                "partition": case.partition,
                "offset": case.offset,
                "headers": headers,
                "fields": fields,
            }),
            "record {index}"
        );
    }
}

#[test]
fn session_stats_computes_the_reference_columns() {
    let plugin = load("session-stats");
    assert_eq!(plugin.kind, PluginKind::Aggregator);
    let mut worker = Worker::new(plugin, stage(json!({}))).expect("starts");
    assert_eq!(worker.state_version(), Ok(1));
    let schema: Json =
        serde_json::from_str(&worker.output_schema().expect("schema")).expect("JSON");
    let names: Vec<&str> = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|field| field["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "USER_ID",
            "USER_SEGMENT",
            "SESSION_STATE",
            "EVENTS_COUNT",
            "PAGES_VIEWED",
            "PRODUCTS_VIEWED",
            "ITEMS_IN_CART",
            "CART_VALUE",
            "PURCHASE_COUNT"
        ]
    );

    let events = [
        r#"{"event_type":"session_start","user_id":"user_00001","user_segment":"vip","session_state":"browsing"}"#,
        r#"{"event_type":"page_view","user_id":"user_00001","session_state":"browsing"}"#,
        r#"{"event_type":"product_viewed","user_id":"user_00001","session_state":"shopping","price":12.5}"#,
        r#"{"event_type":"add_to_cart","user_id":"user_00001","session_state":"shopping","cart_total":99.5,"cart_item_count":2}"#,
        r#"{"event_type":"cart_viewed","user_id":"user_00001","session_state":"checkout","cart_total":45.0,"cart_item_count":1}"#,
        r#"{"event_type":"purchase","user_id":"user_00001","session_state":"completed","total":107.46}"#,
        r#"{"event_type":"session_end","user_id":null,"user_segment":null}"#,
    ];
    let events: Vec<(&str, &str)> = events.iter().map(|event| ("sess_1", *event)).collect();
    let group = Group {
        key: b"sess_1".to_vec(),
        state: None,
        first: 0,
        count: 7,
    };
    let results = aggregate(&mut worker, &batch(&events), &[group]);
    assert_eq!(results.len(), 1);
    assert!(results[0].failures.is_empty(), "{:?}", results[0].failures);
    // Hand-computed from the rules: newest non-null user, segment and state;
    // 7 events, 1 page view, 1 product view, the largest cart (2 items,
    // 99.5), 1 purchase.
    assert_eq!(
        results[0].row.as_deref(),
        Some(
            &[
                Value::Text("user_00001".into()),
                Value::Text("vip".into()),
                Value::Text("completed".into()),
                Value::Long(7),
                Value::Long(1),
                Value::Long(1),
                Value::Long(2),
                Value::Double(99.5),
                Value::Long(1),
            ][..]
        )
    );

    // The state carries over: one more event on top of it, and a bad one.
    let next = Group {
        key: b"sess_1".to_vec(),
        state: results[0].state.clone(),
        first: 0,
        count: 2,
    };
    let events = batch(&[
        (
            "sess_1",
            r#"{"event_type":"page_view","session_state":"browsing"}"#,
        ),
        (
            "sess_1",
            r#"{"event_type":"page_view","cart_total":"lots"}"#,
        ),
    ]);
    let results = aggregate(&mut worker, &events, &[next]);
    let row = results[0].row.as_ref().expect("changed");
    assert_eq!(row[2], Value::Text("browsing".into()));
    assert_eq!(row[3], Value::Long(8), "the bad event is not counted");
    assert_eq!(row[4], Value::Long(2));
    assert_eq!(results[0].failures.len(), 1);
    assert_eq!(results[0].failures[0].0, 1);
    assert!(
        matches!(&results[0].failures[0].1, Failure::Rejected(e) if e.code == "malformed-json")
    );
}

#[test]
fn a_panicking_plugin_fails_only_the_poison_records() {
    let mut worker = Worker::new(load("panicking-filter"), stage(json!({}))).expect("starts");
    let records: Vec<(&str, &str)> = (0..20)
        .map(|i| ("k", if i == 3 || i == 17 { "POISON" } else { "fine" }))
        .collect();
    let verdicts = filter(&mut worker, &batch(&records));
    for (i, verdict) in verdicts.iter().enumerate() {
        if i == 3 || i == 17 {
            match verdict {
                Verdict::Failed(Failure::Trapped(message)) => assert!(
                    message.contains(&format!("poison record at offset {i}")),
                    "the trap carries the panic message: {message}"
                ),
                other => panic!("record {i}: expected a trap, got {other:?}"),
            }
        } else {
            assert_eq!(verdict, &Verdict::Keep, "record {i}");
        }
    }
    assert!(worker.restarts() >= 2, "each trap renews the instance");
    // The worker goes on with fresh instances.
    assert_eq!(
        filter(&mut worker, &batch(&[("k", "fine")])),
        vec![Verdict::Keep]
    );
}

#[test]
fn a_plugin_that_loops_forever_hits_its_deadline() {
    let mut context = StageContext::new("test", "loop");
    context.limits = StageLimits {
        call_timeout_ms: 200,
        ..StageLimits::default()
    };
    let mut worker = Worker::new(load("looping-filter"), Arc::new(context)).expect("starts");
    let records = batch(&[("k", "fine"), ("k", "LOOP"), ("k", "fine")]);
    let started = Instant::now();
    let verdicts = filter(&mut worker, &records);
    let elapsed = started.elapsed();
    assert_eq!(verdicts[0], Verdict::Keep);
    assert_eq!(
        verdicts[1],
        Verdict::Failed(Failure::Trapped(
            "exceeded its call deadline of 12 ms (a record retried alone, after its batch \
             trapped, gets at most a sixteenth of the stage's 200 ms)"
                .into()
        ))
    );
    assert_eq!(verdicts[2], Verdict::Keep);
    // Two interrupted calls (the batch, then the record alone), nothing more.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // One looping record is no reason to stop calling the plugin.
    assert_eq!(
        filter(&mut worker, &batch(&[("k", "fine")])),
        vec![Verdict::Keep]
    );
}

/// A plugin that loops on every record once cost a batch a deadline per
/// record (512 records at 5 s: 43 minutes). Now the retries share one more
/// deadline, the records left are dead-lettered untried, and the stage's
/// circuit opens: its next batches are dead-lettered without calling it.
#[test]
fn a_plugin_that_loops_on_every_record_costs_a_batch_about_two_deadlines_then_is_not_called() {
    let mut context = StageContext::new("test", "loop");
    context.limits = StageLimits {
        call_timeout_ms: 320,
        ..StageLimits::default()
    };
    let mut worker = Worker::new(load("looping-filter"), Arc::new(context)).expect("starts");
    let looping: Vec<(&str, &str)> = (0..200).map(|_| ("k", "LOOP")).collect();
    let started = Instant::now();
    let verdicts = filter(&mut worker, &batch(&looping));
    let elapsed = started.elapsed();
    // The batch (320 ms), then retries sharing 320 ms: not 200 x 320 ms = 64 s.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let code = |verdict: &Verdict| match verdict {
        Verdict::Failed(Failure::Trapped(_)) => "trap",
        Verdict::Failed(Failure::Skipped { code, .. }) => code,
        other => panic!("a looping record went through: {other:?}"),
    };
    let trapped = verdicts.iter().filter(|v| code(v) == "trap").count();
    let untried = verdicts
        .iter()
        .filter(|v| code(v) == "budget-spent")
        .count();
    assert_eq!(trapped + untried, 200);
    assert!(
        (1..=40).contains(&trapped),
        "about sixteen records tried alone, {trapped} were"
    );
    // The circuit is open: good records too are dead-lettered, at once.
    let started = Instant::now();
    let verdicts = filter(&mut worker, &batch(&[("k", "fine"), ("k", "LOOP")]));
    assert!(started.elapsed() < Duration::from_millis(200));
    for verdict in &verdicts {
        match verdict {
            Verdict::Failed(Failure::Skipped { code, reason }) => {
                assert_eq!(*code, "circuit-open");
                assert!(reason.contains("then a batch tries it again"), "{reason}");
            }
            other => panic!("expected circuit-open, got {other:?}"),
        }
    }
}

#[test]
fn a_plugin_that_allocates_without_bound_hits_its_memory_cap() {
    let mut context = StageContext::new("test", "hungry");
    context.limits = StageLimits {
        memory_mib: 32,
        ..StageLimits::default()
    };
    let mut worker = Worker::new(load("hungry-filter"), Arc::new(context)).expect("starts");
    let verdicts = filter(&mut worker, &batch(&[("k", "HUNGRY"), ("k", "fine")]));
    match &verdicts[0] {
        Verdict::Failed(Failure::Trapped(message)) => {
            assert!(
                message.starts_with("exceeded its memory limit of 32 MiB"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(verdicts[1], Verdict::Keep);
}

#[test]
fn fuel_limits_the_work_of_one_call() {
    let runtime = Runtime::with_options(RuntimeOptions {
        fuel_metering: true,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let plugin = runtime
        .load_file("looping-filter", &plugin_path("looping-filter"))
        .expect("loads");
    let mut context = StageContext::new("test", "fuel");
    context.limits = StageLimits {
        fuel: Some(5_000_000),
        ..StageLimits::default()
    };
    let mut worker = Worker::new(plugin, Arc::new(context)).expect("starts");
    let verdicts = filter(&mut worker, &batch(&[("k", "LOOP"), ("k", "fine")]));
    assert_eq!(
        verdicts[0],
        Verdict::Failed(Failure::Trapped(
            "ran out of fuel (5000000 units per call)".into()
        ))
    );
    assert_eq!(verdicts[1], Verdict::Keep);
}

#[test]
fn an_aggregator_that_traps_loses_only_the_poison_events() {
    let mut worker = Worker::new(load("panicking-counter"), stage(json!({}))).expect("starts");
    let group = |key: &str, first: u32, count: u32| Group {
        key: key.as_bytes().to_vec(),
        state: None,
        first,
        count,
    };
    let events = batch(&[
        ("a", "x"),
        ("a", "x"),
        ("a", "x"),
        ("b", "x"),
        ("b", "POISON"),
        ("b", "x"),
        ("b", "x"),
    ]);
    let results = aggregate(&mut worker, &events, &[group("a", 0, 3), group("b", 3, 4)]);
    assert_eq!(results[0].row, Some(vec![Value::Long(3)]));
    assert!(results[0].failures.is_empty());
    assert_eq!(
        results[1].row,
        Some(vec![Value::Long(3)]),
        "three good events of b count"
    );
    assert_eq!(results[1].failures.len(), 1);
    assert_eq!(results[1].failures[0].0, 4, "the index in the batch");
    assert!(matches!(&results[1].failures[0].1, Failure::Trapped(m) if m.contains("poison event")));
}

#[test]
fn a_component_of_another_world_is_refused_by_name() {
    let error = RUNTIME
        .load_file("greeter", &plugin_path("wrong-world"))
        .expect_err("not a weir plugin");
    assert!(matches!(error, LoadError::NoWorld { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("plugin `greeter` exports `elsewhere:greeter/greet@1.0.0`"),
        "{message}"
    );
    assert!(
        message.contains("world `filter`, `transform` or `aggregator`"),
        "{message}"
    );
}

#[test]
fn a_component_of_an_incompatible_contract_is_refused() {
    let error = RUNTIME
        .load_file("future", &plugin_path("future-contract"))
        .expect_err("built for 0.3.0");
    assert!(
        matches!(error, LoadError::IncompatibleVersion { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "plugin `future` was built against weir:plugin@0.3.0; this weir runs weir:plugin@0.2.0 \
         and versions compatible with it. Rebuild the plugin against weir:plugin@0.2.0"
    );
}

#[test]
fn a_plugin_of_the_wrong_kind_or_with_bad_config_is_refused() {
    let plugin = load("session-stats");
    let error = plugin
        .expect_kind(PluginKind::Filter)
        .expect_err("an aggregator");
    assert_eq!(
        error.to_string(),
        "plugin `session-stats` is a aggregator plugin, but this stage needs a filter plugin"
    );
    let error = Worker::new(
        load("field-filter"),
        stage(json!({"keep_if": [{"field": "x"}]})),
    )
    .err()
    .expect("a predicate without a test");
    assert!(
        matches!(&error, LoadError::Config { error, .. } if error.code == "bad-config"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("needs exactly one of `present`, `equals` or `in`"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let error = RUNTIME
        .load("junk", b"\0asm but not really")
        .expect_err("junk");
    assert!(matches!(error, LoadError::Compile { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("plugin `junk` is not a valid WebAssembly component")
    );
}

#[test]
fn compiled_plugins_are_cached_and_a_bad_cache_file_is_recompiled() {
    let cache = std::env::temp_dir().join(format!("weir-plugin-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let runtime = Runtime::with_options(RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let path = plugin_path("field-filter");
    runtime.load_file("field-filter", &path).expect("compiles");
    let compiled = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(&cache)
            .expect("the cache folder exists")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    };
    let files = compiled();
    assert_eq!(files.len(), 1, "one compiled plugin: {files:?}");

    // From the cache, the plugin works as before.
    let config = json!({"keep_if": [{"field": "session_id", "present": true}]});
    let plugin = runtime
        .load_file("field-filter", &path)
        .expect("from the cache");
    let mut worker = Worker::new(plugin, stage(config.clone())).expect("starts");
    let verdicts = filter(
        &mut worker,
        &batch(&[("s", r#"{"session_id":"s"}"#), ("s", "{}")]),
    );
    assert_eq!(verdicts, vec![Verdict::Keep, Verdict::Drop]);

    // A damaged cache file is not trusted: the plugin is compiled again.
    std::fs::write(&files[0], b"not a compiled component").expect("damage");
    let plugin = runtime
        .load_file("field-filter", &path)
        .expect("recompiled");
    let mut worker = Worker::new(plugin, stage(config)).expect("starts");
    assert_eq!(
        filter(&mut worker, &batch(&[("s", "{}")])),
        vec![Verdict::Drop]
    );
    assert!(
        std::fs::metadata(&files[0]).expect("rewritten").len() > 1000,
        "the cache file is rewritten"
    );

    // Another plugin's compiled code planted under this plugin's name (a
    // valid file of this very cache): never run, the plugin is compiled again.
    runtime
        .load_file("catalog-enrich", &plugin_path("catalog-enrich"))
        .expect("compiles");
    let other = compiled()
        .into_iter()
        .find(|file| *file != files[0])
        .expect("catalog-enrich's file");
    std::fs::copy(&other, &files[0]).expect("plant");
    let plugin = runtime
        .load_file("field-filter", &path)
        .expect("recompiled, not the planted code");
    assert_eq!(plugin.kind, weir::plugin::PluginKind::Filter);
    let mut worker = Worker::new(
        plugin,
        stage(json!({"keep_if": [{"field": "session_id", "present": true}]})),
    )
    .expect("starts");
    assert_eq!(
        filter(
            &mut worker,
            &batch(&[("s", r#"{"session_id":"s"}"#), ("s", "{}")])
        ),
        vec![Verdict::Keep, Verdict::Drop]
    );
    assert_ne!(
        std::fs::read(&files[0]).expect("rewritten"),
        std::fs::read(&other).expect("other"),
        "the planted file is replaced by this plugin's own"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

// The stage alone, its fields found as a chain would find them.
fn filter(worker: &mut Worker, batch: &Batch) -> Vec<Verdict> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.filter(batch, &fields)
}

fn transform(worker: &mut Worker, batch: &Batch) -> Vec<Result<Vec<OutputRecord>, Failure>> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.transform(batch, &fields)
}

fn aggregate(worker: &mut Worker, batch: &Batch, groups: &[Group]) -> Vec<GroupResult> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.aggregate(batch, &fields, groups)
}
