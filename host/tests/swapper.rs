//! The swapper's decisions, with the shards played by the test: what a swap
//! checks before it starts, what it records once every shard cut over, how
//! it puts every shard back when one cannot start the new version, and how
//! a version that fails probation is rolled back by the watcher.
//!
//! The shards' own side (the cut-over between two batches, probation,
//! rollback with the old state) is in the engine's simulation tests.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{load, plugin_path};
use weir::engine::aggregator_schema;
use weir::engine::swap::{
    AggregatorVersion, Order, Report, RouteError, SwapError, Swapper, SwapperParts,
};
use weir::plugin::{Runtime, RuntimeOptions, StageContext};
use weir::sink::{Shape, Sinks};

/// The orders the test's shards got, in order.
type Orders = Arc<Mutex<Vec<Arc<Order>>>>;

/// How the test's shards answer an order.
#[derive(Clone, Copy)]
enum Shards {
    /// Every shard cuts over and processes a first batch.
    Take,
    /// Shard 1 cannot instantiate the new version.
    FailOnOne,
}

/// A swapper over a pipeline of `filter` then `session-stats`, run by two
/// shards that answer as `shards` says; the orders they got.
fn swapper(shards: Shards) -> (Arc<Swapper>, Orders) {
    let aggregator = load("session-stats");
    let context = |stage: &str| Arc::new(StageContext::new("swaps", stage));
    let (schema, state_version) =
        aggregator_schema(&aggregator, &context("stats")).expect("the aggregator's schema");
    let version = AggregatorVersion {
        output: Arc::new(Shape::new(schema)),
        state_version,
    };
    swapper_over(shards, ("stats", aggregator), Some(version))
}

/// A swapper over a pipeline of `filter` then `last` (an aggregator of
/// `version`, or, `None`, another filter or transform).
fn swapper_over(
    shards: Shards,
    (last_name, last): (&str, Arc<weir::plugin::Plugin>),
    version: Option<AggregatorVersion>,
) -> (Arc<Swapper>, Orders) {
    let filter = load("noop-filter");
    let context = |stage: &str| Arc::new(StageContext::new("swaps", stage));
    let orders: Orders = Arc::default();
    let seen = Arc::clone(&orders);
    let router = Arc::new(move |order: &Arc<Order>, _wait: Duration| {
        seen.lock().expect("not poisoned").push(Arc::clone(order));
        for shard in 0..2 {
            let failed =
                matches!(shards, Shards::FailOnOne) && shard == 1 && order.probation.is_some();
            let id = order.id;
            order.reports.add(if failed {
                Report::Failed {
                    id,
                    shard,
                    reason: "no memory left".to_owned(),
                }
            } else {
                Report::CutOver { id, shard }
            });
            if !failed {
                order.reports.add(Report::FirstBatch {
                    id,
                    shard,
                    latency: Duration::from_millis(3),
                    stall: Duration::from_millis(1),
                });
            }
        }
        Ok::<usize, RouteError>(2)
    });
    let runtime = Runtime::with_options(RuntimeOptions {
        cache_dir: Some(common::plugin_dir().join("compiled")),
        ..RuntimeOptions::default()
    })
    .expect("the plugin runtime starts");
    let swapper = Swapper::new(SwapperParts {
        pipeline: "swaps".to_owned(),
        runtime: Arc::new(runtime),
        stages: vec![
            ("filter".to_owned(), context("filter"), filter),
            (last_name.to_owned(), context(last_name), last),
        ],
        origins: vec!["filter.wasm".to_owned(), format!("{last_name}.wasm")],
        aggregator: version,
        sinks: Arc::new(Sinks::new("swaps", Vec::new())),
        router,
        shards: 2,
    });
    (Arc::new(swapper), orders)
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(plugin_path(name)).expect("the component reads")
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

#[test]
fn a_swap_that_every_shard_takes_is_recorded_and_kept_for_a_rollback() {
    let (swapper, orders) = swapper(Shards::Take);
    let tokio = tokio();
    let record = tokio
        .block_on(swapper.swap("stats", component("session-stats-v2"), "v2.wasm".to_owned()))
        .expect("the swap completes");
    assert_eq!(record.action, "swap");
    assert_eq!(record.stage, "stats");
    assert_ne!(record.from, record.to);
    assert_eq!(record.first_batch_ms, Some(3.0), "the slowest shard's");
    assert_eq!(record.stall_ms, Some(1.0));
    let orders = orders.lock().expect("not poisoned");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].stage, 1, "the aggregator is stage 1");
    assert!(orders[0].probation.is_some(), "a swap starts on probation");
    let aggregator = orders[0].aggregator.as_ref().expect("an aggregator order");
    assert_eq!(aggregator.state_version, 2);
    drop(orders);

    let stages = tokio.block_on(swapper.stages());
    assert_eq!(stages[1].plugin.origin, "v2.wasm");
    assert_eq!(stages[1].previous.len(), 1);
    assert_eq!(stages[1].previous[0].origin, "stats.wasm");
    assert_eq!(swapper.history().len(), 1);

    // A rollback goes back to the version before, and forgets the one left.
    let back = tokio
        .block_on(swapper.rollback("stats"))
        .expect("the rollback completes");
    assert_eq!(back.action, "rollback");
    assert_eq!(
        (back.from.as_str(), back.to.as_str()),
        (record.to.as_str(), record.from.as_str())
    );
    let stages = tokio.block_on(swapper.stages());
    assert_eq!(stages[1].plugin.origin, "stats.wasm");
    assert!(stages[1].previous.is_empty());
}

#[test]
fn the_last_stage_of_a_pipeline_without_an_aggregator_swaps_as_a_plain_stage() {
    let (swapper, orders) = swapper_over(Shards::Take, ("last", load("noop-filter")), None);
    let tokio = tokio();
    let record = tokio
        .block_on(swapper.swap("last", component("hungry-filter"), "hungry.wasm".to_owned()))
        .expect("the swap completes");
    assert_eq!((record.action, record.stage.as_str()), ("swap", "last"));
    let orders = orders.lock().expect("not poisoned");
    assert_eq!(orders[0].stage, 1);
    assert!(
        orders[0].aggregator.is_none(),
        "no aggregator version: the shards swap a plain stage"
    );
    drop(orders);
    // An aggregator cannot take a filter's place.
    let refused =
        tokio.block_on(swapper.swap("last", component("session-stats"), "stats.wasm".to_owned()));
    let error = refused
        .expect_err("a filter's place takes a filter")
        .to_string();
    assert!(error.contains("runs a plugin of world `filter`"), "{error}");
}

#[test]
fn when_one_shard_cannot_start_the_version_every_shard_goes_back() {
    let (swapper, orders) = swapper(Shards::FailOnOne);
    let tokio = tokio();
    let error = tokio
        .block_on(swapper.swap("stats", component("session-stats-v2"), "v2.wasm".to_owned()))
        .expect_err("shard 1 fails");
    let SwapError::Incomplete(message) = &error else {
        panic!("{error:?}");
    };
    assert!(
        message.contains("shard 1") && message.contains("no memory left"),
        "{message}"
    );
    // The second order puts every shard back on the running version, its
    // state version included.
    let orders = orders.lock().expect("not poisoned");
    assert_eq!(orders.len(), 2);
    let versions: Vec<Option<u32>> = orders
        .iter()
        .map(|order| order.aggregator.as_ref().map(|a| a.state_version))
        .collect();
    assert_eq!(versions, [Some(2), Some(1)]);
    assert!(orders[1].probation.is_none());
    assert_eq!(orders[1].stage, 1);
    drop(orders);
    let stages = tokio.block_on(swapper.stages());
    assert_eq!(stages[1].plugin.origin, "stats.wasm");
    assert!(stages[1].previous.is_empty());
    assert!(swapper.history().is_empty());
}

#[test]
fn a_version_that_fails_probation_is_rolled_back_by_the_watcher() {
    let (swapper, orders) = swapper(Shards::Take);
    let tokio = tokio();
    tokio.spawn(Arc::clone(&swapper).watch());
    let record = tokio
        .block_on(swapper.swap("filter", component("noop-filter"), "new.wasm".to_owned()))
        .expect("the swap completes");
    let order = Arc::clone(&orders.lock().expect("not poisoned")[0]);
    order.reports.add(Report::ProbationFailed {
        id: record.id,
        shard: 0,
        reason: "it trapped: unreachable".to_owned(),
    });
    let history = tokio.block_on(async {
        for _ in 0..200 {
            let history = swapper.history();
            if history.len() == 2 {
                return history;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no automatic rollback: {:?}", swapper.history());
    });
    assert_eq!(history[1].action, "automatic-rollback");
    assert_eq!(
        history[1].reason.as_deref(),
        Some("it trapped: unreachable")
    );
    let stages = tokio.block_on(swapper.stages());
    assert_eq!(stages[0].plugin.origin, "filter.wasm");
}

#[test]
fn a_swap_is_refused_before_any_shard_hears_of_it() {
    let (swapper, orders) = swapper(Shards::Take);
    let tokio = tokio();
    let swap = |stage: &str, name: &str| {
        tokio
            .block_on(swapper.swap(stage, component(name), format!("{name}.wasm")))
            .expect_err("refused")
            .to_string()
    };
    let unknown = swap("enrich", "noop-filter");
    assert!(
        unknown.contains("no stage `enrich`") && unknown.contains("`filter`, `stats`"),
        "{unknown}"
    );
    let world = tokio
        .block_on(swapper.swap("stats", component("noop-filter"), "filter.wasm".to_owned()))
        .expect_err("refused");
    assert!(
        matches!(&world, SwapError::Refused(why) if why.contains("world")),
        "{world}"
    );
    let no_previous = tokio
        .block_on(swapper.rollback("stats"))
        .expect_err("nothing to roll back to");
    assert!(
        matches!(no_previous, SwapError::NoPrevious(_)),
        "{no_previous}"
    );
    assert!(orders.lock().expect("not poisoned").is_empty());
}
