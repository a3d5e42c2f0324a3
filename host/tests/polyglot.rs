//! The contract from other languages: the same trivial filter built with
//! componentize-js (JavaScript) and componentize-py (Python) runs in the
//! runtime like a Rust plugin; and `session-stats` written in Rust,
//! JavaScript, Python and C gives the oracle's rows over the shared vectors.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{batch, load};
use weir::plugin::{Batch, Failure, PluginKind, StageContext, Verdict, Worker};

fn check_purchase_filter(name: &str) {
    let started = Instant::now();
    let plugin = load(name);
    let compiled = started.elapsed();
    assert_eq!(plugin.kind, PluginKind::Filter);
    assert_eq!(plugin.contract_version.to_string(), "0.2.0");
    let mut worker =
        Worker::new(plugin, Arc::new(StageContext::new("test", name))).expect("starts");
    let records = batch(&[
        ("s1", r#"{"event_type":"purchase","total":12.5}"#),
        ("s1", r#"{"event_type":"page_view"}"#),
        ("s1", "{not json"),
        ("s2", r#"{"event_type":"purchase"}"#),
    ]);
    let verdicts = filter(&mut worker, &records);
    assert_eq!(verdicts[0], Verdict::Keep);
    assert_eq!(verdicts[1], Verdict::Drop);
    match &verdicts[2] {
        Verdict::Failed(Failure::Rejected(error)) => assert_eq!(error.code, "malformed-json"),
        other => panic!("{name}: expected a rejection, got {other:?}"),
    }
    assert_eq!(verdicts[3], Verdict::Keep);
    println!("{name}: loaded in {compiled:.1?}, filtered a batch correctly");
}

#[test]
fn a_javascript_filter_runs() {
    check_purchase_filter("js-filter");
}

#[test]
fn a_python_filter_runs() {
    check_purchase_filter("python-filter");
}

// The stage alone, its fields found as a chain would find them.
fn filter(worker: &mut Worker, batch: &Batch) -> Vec<Verdict> {
    let fields = weir::plugin::read(batch, worker.reads());
    worker.filter(batch, &fields)
}

/// The shared test vectors of `session-stats` (plugins/vectors/session-stats).
fn vectors() -> std::path::PathBuf {
    common::manifest_dir().join("../plugins/vectors/session-stats")
}

/// The expected files are the oracle's output, not any plugin's: running
/// the oracle again gives the same bytes.
#[test]
fn the_session_stats_vectors_are_the_oracles_output() {
    let dir = vectors();
    let out = std::env::temp_dir().join(format!("weir-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let python = std::env::var_os("WEIR_PYTHON").unwrap_or_else(|| "python3".into());
    let status = std::process::Command::new(python)
        .arg(dir.join("oracle.py"))
        .arg(dir.join("events.jsonl"))
        .arg(out.join("expected.jsonl"))
        .arg(out.join("expected-dead-letters.jsonl"))
        .status()
        .expect("python runs the oracle");
    assert!(status.success());
    for file in ["expected.jsonl", "expected-dead-letters.jsonl"] {
        let committed = std::fs::read(dir.join(file)).unwrap();
        let computed = std::fs::read(out.join(file)).unwrap();
        assert!(
            committed == computed,
            "{file} is not what oracle.py computes from events.jsonl: run it again"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// `session-stats` in every language gives, over the shared vectors, the
/// oracle's rows byte for byte and refuses exactly the oracle's bad lines.
fn check_session_stats(name: &str) {
    let dir = vectors();
    let expected_dead: Vec<i64> = std::fs::read_to_string(dir.join("expected-dead-letters.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["line"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let output = std::env::temp_dir().join(format!("weir-{name}-{}.jsonl", std::process::id()));
    // A batch size that splits sessions across calls, so state goes out and back in.
    for batch in [1, 64, 4096] {
        let args = weir::authoring::local::TestArgs {
            key_field: Some("session_id".to_owned()),
            output: Some(output.clone()),
            expect: Some(dir.join("expected.jsonl")),
            batch,
            ..weir::authoring::local::TestArgs::new(
                common::plugin_path(name),
                dir.join("events.jsonl"),
            )
        };
        let started = Instant::now();
        let summary = weir::authoring::local::run_in(&common::RUNTIME, &args)
            .unwrap_or_else(|error| panic!("{name} at batch {batch}: {error:#}"));
        assert_eq!(summary.differences, 0);
        assert_eq!(
            summary.dead_letters, expected_dead,
            "{name} at batch {batch}"
        );
        assert_eq!(
            std::fs::read(&output).unwrap(),
            std::fs::read(dir.join("expected.jsonl")).unwrap(),
            "{name}: the rows are the oracle's, byte for byte"
        );
        println!(
            "{name}: batch {batch}: {} records, {} rows, {} dead letters, as the oracle, in {:.1?}",
            summary.records,
            summary.outputs,
            summary.dead_letters.len(),
            started.elapsed()
        );
    }
    std::fs::remove_file(&output).unwrap();
}

#[test]
fn session_stats_in_rust_gives_the_oracles_rows() {
    check_session_stats("session-stats");
}

#[test]
fn session_stats_in_javascript_gives_the_oracles_rows() {
    check_session_stats("session-stats-js");
}

#[test]
fn session_stats_in_python_gives_the_oracles_rows() {
    check_session_stats("session-stats-py");
}

#[test]
fn session_stats_in_c_gives_the_oracles_rows() {
    check_session_stats("session-stats-c");
}
