//! The `weir run` process: one Wasm runtime, one async runtime and one
//! admin API shared by every pipeline it runs; a pipeline that fails stops
//! the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::Instrument;

use super::config::RunConfig;
use super::error::RunError;
use super::topology::{self, Shared};
use crate::admin::Admin;
use crate::connect::check::Needs;
use crate::pipeline::{Format, LookupFrom, PipelinePlan};
use crate::plugin::{NativeStages, Runtime, RuntimeOptions};

/// Runs every pipeline of `plans` until `stop` is raised, then shuts them
/// down cleanly: in-flight records are processed, written and committed.
pub fn run(
    plans: Vec<PipelinePlan>,
    config: &RunConfig,
    stop: &Arc<AtomicBool>,
) -> Result<(), RunError> {
    run_with(plans, config, stop, &NativeStages::new())
}

/// [`run`], with the stages named in `natives` running native code instead
/// of their plugins (the benchmark's native baseline; weir itself passes none).
pub fn run_with(
    plans: Vec<PipelinePlan>,
    config: &RunConfig,
    stop: &Arc<AtomicBool>,
    natives: &NativeStages,
) -> Result<(), RunError> {
    config.admin.check_exposure()?;
    let admin_tls = config
        .admin
        .tls
        .as_ref()
        .map(crate::admin::AdminTls::server_config)
        .transpose()?;
    let mut options = RuntimeOptions::from_env()?;
    // Fuel is metered by the whole engine (it slows every plugin), so it is
    // on when a stage of any pipeline sets a fuel budget, and only then.
    options.fuel_metering |= plans
        .iter()
        .flat_map(|plan| &plan.stages)
        .any(|stage| stage.limits.fuel.is_some());
    if options.cache_dir.is_none() {
        options.cache_dir = crate::dirs::cache().map(|dir| dir.join("compiled"));
    }
    let runtime = Arc::new(
        Runtime::with_options(options).map_err(|error| RunError::Wasm(format!("{error:#}")))?,
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::AsyncRuntime)?;
    // An Avro length cannot exceed the value that holds it: a hostile one
    // is refused before anything is allocated for it (the bound is
    // process-wide; the largest value any Avro source takes).
    if let Some(largest) = (plans.iter())
        .filter(|plan| plan.source.format == Format::Avro)
        .map(|plan| plan.source.max_record_bytes)
        .max()
    {
        apache_avro::max_allocation_bytes(largest);
    }
    tokio.block_on(async {
        crate::connect::check::check(&config.services(), needs(&plans)).await?;
        let admin = Arc::new(Admin::new(
            config.admin.access(),
            crate::telemetry::metrics::install(),
        ));
        let server = serve_admin(config, &admin, admin_tls, stop).await?;
        // A pipeline re-keyed through Kafka runs as two.
        let plans = plans.into_iter().flat_map(PipelinePlan::into_hops);
        let runs = plans.map(|plan| {
            // Everything a pipeline logs, on any of its threads, carries its
            // name. Its spans are at ERROR level so that every filter that
            // lets a line through keeps them (a disabled span names nothing).
            let span = tracing::error_span!("pipeline", pipeline = %plan.name);
            let pipeline = plan.name.to_string();
            let shared = Shared {
                runtime: Arc::clone(&runtime),
                config,
                stop: Arc::clone(stop),
                admin: Arc::clone(&admin),
                natives,
            };
            async move {
                let result = topology::run(plan, shared).instrument(span).await;
                result.map_err(|source| {
                    stop.store(true, Ordering::Relaxed);
                    RunError::Pipeline {
                        pipeline,
                        source: Box::new(source),
                    }
                })
            }
        });
        let results = futures::future::join_all(runs).await;
        server.abort();
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    })
}

/// The services `plans` use.
fn needs(plans: &[PipelinePlan]) -> Needs {
    Needs {
        kafka: true,
        database: plans.iter().any(|plan| {
            plan.sinks.postgres.is_some()
                || plan
                    .lookups
                    .iter()
                    .any(|lookup| matches!(lookup.from, LookupFrom::Query { .. }))
        }),
        registry: plans
            .iter()
            .any(|plan| plan.sinks.kafka.is_some() || plan.source.format == Format::Avro),
    }
}

/// Starts the admin API (status page, metrics, swaps) on its address; it
/// serves until `stop` is raised.
async fn serve_admin(
    config: &RunConfig,
    admin: &Arc<Admin>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: &Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, RunError> {
    let addr = config.admin.addr;
    let listening = |source| RunError::AdminListen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listening)?;
    let over = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "The admin API speaks plain HTTP beyond this machine: its tokens cross the network \
             in clear. Give it --admin-tls-cert and --admin-tls-key, or put it behind a TLS proxy."
        );
    }
    tracing::info!(
        addr = %listener.local_addr().map_err(listening)?,
        scheme = over,
        changes = if config.admin.token.is_some() { "need the token" } else { "off (no WEIR_ADMIN_TOKEN)" },
        reads = if config.admin.read_token.is_some() { "need a token" } else { "open" },
        "Admin API listening."
    );
    let stop = Arc::clone(stop);
    Ok(tokio::spawn(crate::admin::serve(
        listener,
        Arc::clone(admin),
        tls,
        async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )))
}
