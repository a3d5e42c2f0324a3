//! weir seen from outside, on a running demo pipeline against the real
//! stack: the status page in a real browser (Debian's chromium driven by
//! Playwright), `/metrics` with every family weir exports, and a real
//! Prometheus scraping weir and answering every expression of the weir
//! pipeline dashboard.
//!
//! Needs `chromium`, `prometheus` and `tests/browser/node_modules`
//! (`cargo xtask test` installs them).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir::telemetry::metrics::{FAMILIES, Kind};
use weir_tests::pipeline::{Scenario, demo_pipeline, plugin_dir, terminate};

const SEED: &str = "8";
const TOKEN: &str = "observability-token";
/// Malformed messages sent among the events: their dead letters must show.
const BAD_MESSAGES: usize = 12;
/// Families only plugins feed: `catalog-enrich` counts lookup misses, which
/// the demo's catalog never has, and no stock plugin sets a gauge.
const FROM_PLUGINS: [&str; 2] = ["weir_plugin_counter_total", "weir_plugin_gauge"];

#[test]
fn status_page_metrics_and_prometheus_on_a_running_demo() -> Result<()> {
    let run = Scenario::new("observe", 4)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--admin-token", TOKEN])?;
    let admin = run.admin_url("weir.log")?;
    let prometheus = Prometheus::start(&run.dir, &admin)?;

    let generator = run.start_generator(SEED, 90_000, 3_000, 500);

    // The browser: stages, a rate that changes, a swap through the API.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let browser = repo().join("tests/browser");
    let output = Command::new("node")
        .arg(browser.join("status-page.mjs"))
        .args(["--url", &format!("{admin}/")])
        .args(["--pipeline", &run.names.pipeline])
        .args(["--stages", "field-filter,catalog-enrich,session-stats"])
        .args(["--stage", "session-stats"])
        .arg("--component")
        .arg(plugin_dir().join("session_stats_v2.wasm"))
        .args(["--token", TOKEN])
        .arg("--screenshot")
        .arg(&screenshot)
        .current_dir(&browser)
        .output()
        .context("cannot start node (the browser test needs Node.js)")?;
    let said = String::from_utf8_lossy(&output.stdout);
    println!("{said}");
    ensure!(
        output.status.success(),
        "the browser test failed:\n{said}\n{}\nweir's log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        run.log_tail("weir.log", 20)
    );
    let png = std::fs::metadata(&screenshot)?.len();
    ensure!(png > 10_000, "the screenshot has only {png} bytes");
    println!(
        "status page screenshot: {} ({png} bytes)",
        screenshot.display()
    );

    send_malformed(&run, BAD_MESSAGES)?;
    generator.join().expect("the generator thread")?;

    // `/metrics`: every family, and the ones a running demo feeds above zero.
    let deadline = Instant::now() + Duration::from_secs(60);
    let samples = loop {
        let samples = scrape(&admin)?;
        if malformed(&samples) >= BAD_MESSAGES as f64 || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut missing = Vec::new();
    let mut zero = Vec::new();
    for family in FAMILIES {
        if FROM_PLUGINS.contains(&family.name) {
            continue;
        }
        let name = match family.kind {
            Kind::Histogram => format!("{}_count", family.name),
            Kind::Counter | Kind::Gauge => family.name.to_owned(),
        };
        if !samples.contains_key(&name) {
            missing.push(family.name);
            continue;
        }
        // A healthy run has no sink errors or retries, may evict nothing,
        // replays nothing, has no record dated ahead of the clock and no
        // plugin out of time, and its lag may be down to zero; the demo's
        // filter refuses records (dead letters) rather than dropping them.
        let may_be_zero = [
            "weir_stage_records_dropped_total",
            "weir_sink_errors_total",
            "weir_sink_retries_total",
            "weir_state_evicted_keys_total",
            "weir_records_replayed_total",
            "weir_records_ahead_of_clock_total",
            "weir_plugin_circuit_opened_total",
            "weir_consumer_lag_records",
        ];
        if !may_be_zero.contains(&family.name) && sum(&samples, &name) <= 0.0 {
            zero.push(family.name);
        }
    }
    ensure!(missing.is_empty(), "/metrics lacks {missing:?}");
    ensure!(zero.is_empty(), "zero on a running demo: {zero:?}");
    ensure!(
        malformed(&samples) == BAD_MESSAGES as f64,
        "values that are not JSON counted as dead letters: {} of {BAD_MESSAGES}",
        malformed(&samples)
    );
    let per_stage = |family: &str, stage: &str| {
        samples.get(family).map_or(0.0, |series| {
            series
                .iter()
                .filter(|(labels, _)| labels.contains(&format!("stage=\"{stage}\"")))
                .map(|(_, value)| value)
                .sum::<f64>()
        })
    };
    for stage in ["field-filter", "catalog-enrich", "session-stats"] {
        ensure!(
            per_stage("weir_stage_records_in_total", stage) > 0.0,
            "{stage}: no records in"
        );
        ensure!(
            per_stage("weir_plugin_call_duration_seconds_count", stage) > 0.0,
            "{stage}: no calls"
        );
    }
    ensure!(
        per_stage("weir_plugin_swaps_total", "session-stats") >= 1.0,
        "the swap is not counted"
    );
    println!(
        "/metrics: {} families, {} series",
        FAMILIES.len() - FROM_PLUGINS.len(),
        samples.values().map(Vec::len).sum::<usize>()
    );

    // The pipeline dashboard: its metrics are weir's, and Prometheus answers it.
    let expressions = dashboard_expressions(&run.names.pipeline)?;
    ensure!(
        expressions.len() >= 10,
        "only {} expressions in the dashboards",
        expressions.len()
    );
    let exported: BTreeSet<String> = samples.keys().cloned().collect();
    for (title, expression) in &expressions {
        for name in metric_names(expression) {
            ensure!(
                exported.contains(&name),
                "panel `{title}` uses `{name}`, which weir does not export (expression: {expression})"
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let empty = loop {
        let mut empty = Vec::new();
        for (title, expression) in &expressions {
            if prometheus.query(expression)? == 0 {
                empty.push(format!("{title}: {expression}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break empty;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    ensure!(
        empty.is_empty(),
        "Prometheus answers nothing to:\n{}",
        empty.join("\n")
    );
    println!(
        "Prometheus {} answered all {} expressions of the dashboards",
        prometheus.version()?,
        expressions.len()
    );

    prometheus.stop();
    let status = terminate(&mut weir)?;
    ensure!(status.success(), "weir exited with {status}");
    Ok(())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Sends `count` values that are not JSON, keyed, to the scenario's topic.
fn send_malformed(run: &Scenario, count: usize) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &run.stack.bootstrap)
        .create()?;
    for index in 0..count {
        let key = format!("bad-{index}");
        let value = format!("this is not JSON {index}");
        producer
            .send(BaseRecord::to(&run.names.events).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// Series by name: (labels as written, value).
type Samples = HashMap<String, Vec<(String, f64)>>;

/// Reads `/metrics` in Prometheus' text format.
fn scrape(admin: &str) -> Result<Samples> {
    let response = reqwest::blocking::get(format!("{admin}/metrics"))?;
    ensure!(
        response.status().is_success(),
        "/metrics answered {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("text/plain"),
        "/metrics is {content_type}"
    );
    let text = response.text()?;
    let mut samples = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').context("a sample line")?;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let value: f64 = value
            .parse()
            .with_context(|| format!("the value of {line}"))?;
        samples
            .entry(name.to_owned())
            .or_default()
            .push((labels.trim_end_matches('}').to_owned(), value));
    }
    Ok(samples)
}

/// Dead letters of the source's values that are not JSON.
fn malformed(samples: &Samples) -> f64 {
    samples
        .get("weir_dead_letters_total")
        .map_or(0.0, |series| {
            series
                .iter()
                .filter(|(labels, _)| {
                    labels.contains("stage=\"source\"") && labels.contains("kind=\"malformed\"")
                })
                .map(|(_, value)| value)
                .sum()
        })
}

fn sum(samples: &Samples, name: &str) -> f64 {
    samples
        .get(name)
        .map_or(0.0, |series| series.iter().map(|(_, value)| value).sum())
}

/// Every Prometheus expression of the dashboards, by panel title, with
/// Grafana's variables set as Grafana would for `pipeline`.
fn dashboard_expressions(pipeline: &str) -> Result<Vec<(String, String)>> {
    let mut expressions = Vec::new();
    for entry in std::fs::read_dir(repo().join("grafana/dashboards"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}", path.display()))?;
        let mut panels: Vec<&serde_json::Value> = Vec::new();
        collect_panels(&dashboard, &mut panels);
        for panel in panels {
            if panel["datasource"]["type"] != "prometheus" {
                continue;
            }
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expression) = target["expr"].as_str() {
                    expressions.push((title.to_owned(), grafana_variables(expression, pipeline)));
                }
            }
        }
    }
    Ok(expressions)
}

fn collect_panels<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
    for panel in value["panels"].as_array().into_iter().flatten() {
        into.push(panel);
        collect_panels(panel, into);
    }
}

fn grafana_variables(expression: &str, pipeline: &str) -> String {
    expression
        .replace("${pipeline}", pipeline)
        .replace("$pipeline", pipeline)
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "10m")
}

/// The metric names an expression reads (as exported: a histogram's
/// `_bucket`, `_sum` and `_count` are series of their own).
fn metric_names(expression: &str) -> BTreeSet<String> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("weir_"))
        .map(|token| {
            // A histogram's own name stands for its series.
            if FAMILIES
                .iter()
                .any(|f| f.kind == Kind::Histogram && f.name == token)
            {
                format!("{token}_count")
            } else {
                token.to_owned()
            }
        })
        .collect()
}

/// A Prometheus server (Debian's) scraping weir every second.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(dir: &Path, admin: &str) -> Result<Self> {
        let target = admin.trim_start_matches("http://");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: weir\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .context("cannot start prometheus (Debian's package `prometheus`)")?;
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready, and scraping weir.
        let deadline = Instant::now() + Duration::from_secs(60);
        while prometheus.query("up{job=\"weir\"} == 1").unwrap_or(0) == 0 {
            if Instant::now() > deadline {
                bail!(
                    "Prometheus does not scrape weir: {}",
                    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(prometheus)
    }

    /// Evaluates `expression` now; how many series answer. A query
    /// Prometheus refuses is an error.
    fn query(&self, expression: &str) -> Result<usize> {
        let response: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expression)])
            .send()?
            .json()?;
        if response["status"] != "success" {
            bail!("Prometheus refused `{expression}`: {}", response["error"]);
        }
        Ok(response["data"]["result"].as_array().map_or(0, Vec::len))
    }

    fn version(&self) -> Result<String> {
        let response: serde_json::Value =
            reqwest::blocking::get(format!("{}/api/v1/status/buildinfo", self.url))?.json()?;
        Ok(response["data"]["version"]
            .as_str()
            .unwrap_or("?")
            .to_owned())
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
