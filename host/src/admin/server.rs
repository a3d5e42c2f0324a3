//! The admin HTTP API of `weir run`: the pipelines, their stages and
//! plugin versions, and hot swap.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /pipelines` | every pipeline with its stages and plugin versions |
//! | `GET /pipelines/{pipeline}` | one pipeline |
//! | `GET /pipelines/{pipeline}/history` | its swaps and rollbacks, oldest first |
//! | `PUT /pipelines/{pipeline}/stages/{stage}/plugin` | body: a component; swaps it in |
//! | `POST /pipelines/{pipeline}/stages/{stage}/rollback` | back to the version before |
//! | `GET /` | the status page (HTML; it refreshes itself) |
//! | `GET /status` | what the status page shows, as JSON |
//! | `GET /metrics` | every metric, in Prometheus' text format |
//!
//! Who may call what is [`super::access`]'s: every request must name a host
//! the API answers to (the loopback names by default, so a DNS-rebinding
//! page cannot read it); reads are open unless weir was given a read token
//! (`WEIR_ADMIN_READ_TOKEN`); the two mutating calls need `Authorization:
//! Bearer <token>`, the token weir was started with (`WEIR_ADMIN_TOKEN`).
//! Without one, mutating calls are refused. The API listens on 127.0.0.1
//! unless told otherwise. Errors are JSON: `{"error": "..."}`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use metrics_exporter_prometheus::PrometheusHandle;

use super::access::{Access, Refusal};
use crate::engine::monitor::{Live, LiveStatus};
use crate::engine::swap::{StageInfo, SwapError, SwapRecord, Swapper};

/// The largest component the API takes.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// The running pipelines, as the API sees them.
pub struct Admin {
    pipelines: RwLock<BTreeMap<String, Registered>>,
    access: Access,
    metrics: PrometheusHandle,
    started: chrono::DateTime<chrono::Utc>,
}

/// A running pipeline: its swapper (stages, versions, history) and what
/// its monitor last saw.
#[derive(Clone)]
struct Registered {
    swapper: Arc<Swapper>,
    live: Arc<Live>,
}

impl Admin {
    /// An API that lets in what `access` allows, serving the metrics
    /// `metrics` renders.
    pub fn new(access: Access, metrics: PrometheusHandle) -> Self {
        Self {
            pipelines: RwLock::default(),
            access,
            metrics,
            started: chrono::Utc::now(),
        }
    }

    /// Makes a running pipeline reachable.
    pub fn register(&self, swapper: Arc<Swapper>, live: Arc<Live>) {
        self.pipelines
            .write()
            .expect("not poisoned")
            .insert(swapper.pipeline().to_owned(), Registered { swapper, live });
    }

    /// Forgets a pipeline that stopped.
    pub fn unregister(&self, pipeline: &str) {
        self.pipelines
            .write()
            .expect("not poisoned")
            .remove(pipeline);
    }

    /// The part of pipeline `name` that runs `stage`: the second hop
    /// (`<name>.<stage>`) when the pipeline is re-keyed and `stage` is its
    /// aggregator, else the pipeline itself.
    fn part(&self, name: &str, stage: &str) -> Result<Arc<Swapper>, ApiError> {
        let second = format!("{name}.{stage}");
        if self
            .pipelines
            .read()
            .expect("not poisoned")
            .contains_key(&second)
        {
            return self.pipeline(&second);
        }
        self.pipeline(name)
    }

    fn pipeline(&self, name: &str) -> Result<Arc<Swapper>, ApiError> {
        self.pipelines
            .read()
            .expect("not poisoned")
            .get(name)
            .map(|registered| Arc::clone(&registered.swapper))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no pipeline `{name}` runs here"),
                )
            })
    }
}

/// The API's routes over `admin`.
pub fn router(admin: Arc<Admin>) -> Router {
    // Changes are authorized before their body is read.
    let changes = Router::new()
        .route("/pipelines/{pipeline}/stages/{stage}/plugin", put(swap))
        .route(
            "/pipelines/{pipeline}/stages/{stage}/rollback",
            post(rollback),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&admin),
            require_change_token,
        ));
    Router::new()
        .route("/", get(status_page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pipelines", get(list))
        .route("/pipelines/{pipeline}", get(describe))
        .route("/pipelines/{pipeline}/history", get(history))
        .merge(changes)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&admin),
            require_host_and_read_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(admin)
}

/// Every request: a name the API answers to, and the read token if reads need one.
async fn require_host_and_read_token(
    State(admin): State<Arc<Admin>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    admin.access.check_host(request.headers())?;
    admin.access.check_read(request.headers())?;
    Ok(next.run(request).await)
}

/// The calls that change a pipeline: the change token.
async fn require_change_token(
    State(admin): State<Arc<Admin>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    admin.access.check_change(request.headers())?;
    Ok(next.run(request).await)
}

/// Serves the API on `listener` until `stop` resolves: over TLS with
/// `tls`, plain HTTP without.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router(admin))
            .with_graceful_shutdown(stop)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        stop.await;
        // Requests under way get a few seconds; a swap answers within its own.
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(router(admin).into_make_service())
        .await
}

/// A pipeline as the API shows it.
#[derive(Debug, Serialize)]
pub struct PipelineInfo {
    /// Its name.
    pub name: String,
    /// Its stages, in order.
    pub stages: Vec<StageInfo>,
}

/// Everything the status page shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// weir's version.
    pub version: &'static str,
    /// When this weir started.
    pub started: chrono::DateTime<chrono::Utc>,
    /// The running pipelines.
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline on the status page.
#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    /// Its name.
    pub name: String,
    /// Its stages, in order, with their plugin versions.
    pub stages: Vec<StageInfo>,
    /// Rates, totals and lag, as last sampled.
    pub live: LiveStatus,
    /// The latest swaps and rollbacks, newest first.
    pub swaps: Vec<SwapRecord>,
}

/// Swaps the status page lists per pipeline.
const LATEST_SWAPS: usize = 8;

impl Admin {
    fn registered(&self) -> Vec<Registered> {
        self.pipelines
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    async fn status(&self) -> Status {
        let mut pipelines = Vec::new();
        for Registered { swapper, live } in self.registered() {
            let mut swaps = swapper.history();
            swaps.reverse();
            swaps.truncate(LATEST_SWAPS);
            pipelines.push(PipelineStatus {
                name: swapper.pipeline().to_owned(),
                stages: swapper.stages().await,
                live: live.get(),
                swaps,
            });
        }
        Status {
            version: env!("CARGO_PKG_VERSION"),
            started: self.started,
            pipelines,
        }
    }
}

async fn status(State(admin): State<Arc<Admin>>) -> Json<Status> {
    Json(admin.status().await)
}

async fn status_page(State(admin): State<Arc<Admin>>) -> maud::Markup {
    super::status::page(&admin.status().await)
}

async fn metrics(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics::render(&admin.metrics),
    )
}

async fn list(State(admin): State<Arc<Admin>>) -> Json<Vec<PipelineInfo>> {
    let swappers: Vec<_> = admin
        .registered()
        .into_iter()
        .map(|registered| registered.swapper)
        .collect();
    let mut pipelines = Vec::with_capacity(swappers.len());
    for swapper in swappers {
        pipelines.push(PipelineInfo {
            name: swapper.pipeline().to_owned(),
            stages: swapper.stages().await,
        });
    }
    Json(pipelines)
}

async fn describe(
    State(admin): State<Arc<Admin>>,
    Path(pipeline): Path<String>,
) -> Result<Json<PipelineInfo>, ApiError> {
    let swapper = admin.pipeline(&pipeline)?;
    Ok(Json(PipelineInfo {
        name: pipeline,
        stages: swapper.stages().await,
    }))
}

async fn history(
    State(admin): State<Arc<Admin>>,
    Path(pipeline): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(admin.pipeline(&pipeline)?.history()))
}

/// `?origin=` names where an uploaded component came from (a file path).
#[derive(Debug, Deserialize)]
struct Upload {
    origin: Option<String>,
}

async fn swap(
    State(admin): State<Arc<Admin>>,
    Path((pipeline, stage)): Path<(String, String)>,
    Query(upload): Query<Upload>,
    component: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let swapper = admin.part(&pipeline, &stage)?;
    if component.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the request body must be the new component (a .wasm file)".to_owned(),
        ));
    }
    let origin = upload.origin.unwrap_or_else(|| "upload".to_owned());
    // A swap runs to its end even if the client goes away.
    let record =
        tokio::spawn(async move { swapper.swap(&stage, component.to_vec(), origin).await })
            .await
            .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))??;
    Ok(Json(record))
}

async fn rollback(
    State(admin): State<Arc<Admin>>,
    Path((pipeline, stage)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let swapper = admin.part(&pipeline, &stage)?;
    let record = tokio::spawn(async move { swapper.rollback(&stage).await })
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))??;
    Ok(Json(record))
}

/// An error answer: a status and a message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl From<SwapError> for ApiError {
    fn from(error: SwapError) -> Self {
        let status = match &error {
            SwapError::NoStage { .. } => StatusCode::NOT_FOUND,
            SwapError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SwapError::NoPrevious(_) => StatusCode::CONFLICT,
            SwapError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SwapError::Incomplete(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, error.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(Refusal(status, message): Refusal) -> Self {
        Self(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        // A browser then asks for the token (any user name, the token as password).
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"weir admin API\""),
            );
        }
        response
    }
}
