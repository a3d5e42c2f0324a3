//! Pipeline files: the stock `pipelines/demo.toml` is valid, and each file
//! of `pipelines/invalid/` fails with exactly the message beside it
//! (`<name>.expected`). `WEIR_BLESS=1` rewrites the expected messages; read
//! the diff before committing it.

mod common;

use std::path::PathBuf;

use weir::pipeline;

fn fixtures() -> PathBuf {
    common::manifest_dir().join("tests/pipelines/invalid")
}

/// A folder holding a `plugin.wasm` and a lookup file `rows.jsonl`, so
/// fixtures fail only for their own reason.
fn plugin_folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    std::fs::write(dir.join("plugin.wasm"), b"").expect("plugin file");
    std::fs::write(dir.join("rows.jsonl"), "{\"user_id\": \"u1\"}\n").expect("lookup file");
    dir
}

#[test]
fn invalid_pipelines_fail_with_their_golden_messages() {
    let base = plugin_folder();
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "at least ten invalid files");
    let mut mismatches = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).expect("fixture");
        let errors = match pipeline::check(&name, &text, &base) {
            Ok(_) => panic!("{name} passed validation"),
            Err(errors) => errors.to_string(),
        };
        let expected_file = file.with_extension("expected");
        if bless {
            std::fs::write(&expected_file, format!("{errors}\n")).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|_| {
            panic!(
                "{} is missing (run with WEIR_BLESS=1)",
                expected_file.display()
            )
        });
        if expected.trim_end() != errors {
            mismatches.push(format!(
                "{name}\n--- expected\n{}\n--- got\n{errors}",
                expected.trim_end()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn the_demo_pipeline_is_valid() {
    let repo = common::manifest_dir().join("..");
    let text = std::fs::read_to_string(repo.join("pipelines/demo.toml")).expect("demo.toml");
    // The plugins are wherever this build put them.
    let text = text.replace(
        "../plugins/target/wasm32-wasip2/release",
        &common::plugin_dir().display().to_string(),
    );
    let pipeline = pipeline::check("demo.toml", &text, &repo.join("pipelines"))
        .unwrap_or_else(|errors| panic!("{errors}"));
    let stages: Vec<&str> = pipeline.stage_names().collect();
    assert_eq!(stages, ["field-filter", "catalog-enrich", "session-stats"]);
    assert_eq!(pipeline.source.group, "weir-demo");
    assert_eq!(pipeline.dead_letter_topic.as_str(), "demo.dlq");
    let kafka = pipeline.sinks.kafka.as_ref().expect("a Kafka sink");
    assert_eq!(kafka.topic.as_str(), "session_stats_avro");
    assert_eq!(kafka.subject, "session_stats_avro-value");
    let postgres = pipeline.sinks.postgres.as_ref().expect("a PostgreSQL sink");
    assert_eq!(postgres.table.as_str(), "sessions");
    assert_eq!(postgres.key_column.as_str(), "SESSION_ID");
    assert_eq!(pipeline.batch.max_records, 512);
}

/// `weir validate` loads the plugins too: what only their worlds tell — the
/// stage order, aggregator-only fields — fails with a clear message.
#[test]
fn validate_checks_what_the_plugins_tell() {
    let plugins = common::plugin_dir();
    let dir = std::env::temp_dir().join(format!("weir-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    let write = |name: &str, stages: &[(&str, &str, &str)]| {
        let mut text = String::from(
            "name = \"demo\"\n[source]\ntopic = \"events\"\n[sinks.postgres]\ntable = \"t\"\n",
        );
        for (stage, plugin, extra) in stages {
            text.push_str(&format!(
                "[[stages]]\nname = \"{stage}\"\nplugin = \"{}\"\n{extra}\n",
                plugins.join(plugin).display()
            ));
        }
        let path = dir.join(name);
        std::fs::write(&path, text).expect("pipeline file");
        path
    };
    let validate = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("validate")
            .arg(path)
            .output()
            .expect("weir validate runs")
    };

    let good = write(
        "good.toml",
        &[
            ("filter", "field_filter.wasm", ""),
            ("stats", "session_stats.wasm", "idle_timeout = \"30m\""),
        ],
    );
    let output = validate(&good);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("filter (filter) -> stats (aggregator)"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Keyed by a field: `weir validate` says what re-keying will create.
    let rekeyed = write(
        "rekeyed.toml",
        &[
            ("filter", "field_filter.wasm", ""),
            ("stats", "session_stats.wasm", "key_field = \"session_id\""),
        ],
    );
    let output = validate(&rekeyed);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "stage `stats` is keyed by field `session_id`: records are re-keyed through topic \
             `weir-demo.stats.repartition` (made with the source's partition count), read by \
             group `weir-demo.stats` as `demo.stats`"
        ),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&validate(&good).stdout).contains("re-keyed"));

    // Without an aggregator, the records go to Kafka or a file as they are.
    let stateless = dir.join("stateless.toml");
    std::fs::write(
        &stateless,
        format!(
            "name = \"demo\"\n[source]\ntopic = \"events\"\n[sinks.kafka]\ntopic = \"kept\"\n\
             [[stages]]\nname = \"filter\"\nplugin = \"{}\"\n",
            plugins.join("field_filter.wasm").display()
        ),
    )
    .expect("pipeline file");
    let output = validate(&stateless);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A file that exists but is no component.
    let bogus = dir.join("bogus.wasm");
    std::fs::write(&bogus, "not wasm").expect("bogus plugin");
    let bogus = bogus.display().to_string();
    for (file, stages, expected) in [
        (
            "aggregator-first.toml",
            vec![
                ("stats", "session_stats.wasm", ""),
                ("filter", "field_filter.wasm", ""),
            ],
            "stage `stats` is an aggregator but not the last stage",
        ),
        (
            "filter-to-postgres.toml",
            vec![("filter", "field_filter.wasm", "")],
            "the PostgreSQL sink writes rows of columns, which an aggregator makes; \
             the last stage `filter` is a filter plugin, whose records have no columns",
        ),
        (
            "key-on-filter.toml",
            vec![
                ("filter", "field_filter.wasm", "key_field = \"user_id\""),
                ("stats", "session_stats.wasm", ""),
            ],
            "stage `filter` sets `key_field`, `idle_timeout` or `max_keys`, which only aggregators use",
        ),
        (
            "not-a-component.toml",
            vec![("stats", bogus.as_str(), "")],
            "stage `stats`: plugin `stats` is not a valid WebAssembly component",
        ),
    ] {
        let output = validate(&write(file, &stages));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file} passed");
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
