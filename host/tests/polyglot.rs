//! The contract from other languages: the same trivial filter built with
//! componentize-js (JavaScript) and componentize-py (Python) runs in the
//! runtime like a Rust plugin.

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
