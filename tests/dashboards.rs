//! weir's Grafana provisioning and dashboards, checked without Grafana.
//!
//! Grafana cannot run here, so the test does what it would do with the
//! files: it reads the provisioning YAML and every dashboard into the parts
//! of Grafana's model weir relies on and checks them (layout, data source
//! uids, queries, the reference's panels), checks every Prometheus
//! expression against the metric families weir exports, and runs every SQL
//! query of every dashboard against the tables a real run of the two stock
//! pipelines filled. A few of the numbers the panels show are computed again
//! from the raw events, independently of any aggregate.
//!
//! Grafana's model and the reading of the files are in
//! [`weir_tests::grafana`]; this file holds what weir's files must satisfy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value};
use weir::telemetry::metrics::{FAMILIES, Family, Kind};
use weir_tests::grafana::{self, Dashboard, DataSource, GridPos, Panel};
use weir_tests::oracle::{load_raw, read_topic};
use weir_tests::pipeline::{
    Names, Running, Scenario, activity_pipeline, demo_pipeline, generate, wait_caught_up,
};

/// Where the compose file mounts `grafana/dashboards` in the Grafana container.
const DASHBOARDS_MOUNT: &str = "/var/lib/grafana/dashboards";

/// Panel types weir's dashboards use; anything else is a typo or a plugin
/// panel the provisioned Grafana does not have.
const PANEL_TYPES: [&str; 5] = ["row", "stat", "table", "barchart", "timeseries"];

/// The reference's dashboards and their panels (semantics.md §4), by file:
/// each title with the panel type it must be.
const REFERENCE: [(&str, &[(&str, &str)]); 3] = [
    (
        "session-overview.json",
        &[
            ("Total Purchases", "stat"),
            ("Average Events per Session", "stat"),
            ("Conversion Rate", "stat"),
            ("Sessions by State", "barchart"),
            ("Total Sessions", "stat"),
            ("Sessions by Segment", "barchart"),
        ],
    ),
    (
        "real-time-activity.json",
        &[
            ("Recent Sessions", "table"),
            ("Events by Segment", "barchart"),
            ("Total Events", "stat"),
        ],
    ),
    (
        "product-analytics.json",
        &[
            ("Top Sessions by Cart Value", "table"),
            ("Revenue vs Abandoned Cart Value", "barchart"),
            ("Shopping Funnel", "barchart"),
            ("Cart Abandonment Rate", "stat"),
            ("Total Revenue", "stat"),
            ("Average Order Value", "stat"),
        ],
    ),
];

/// The tables the SQL dashboards read, as their queries name them.
const TABLES: [&str; 2] = ["sessions", "session_activity"];

/// Events of the demo run: enough for every segment, state and funnel step.
const EVENTS: u64 = 20_000;

/// The catalog every pipeline test writes to the shared `users` and
/// `products` tables, so tests running at once agree on it.
const SEED: &str = "42";

// ---------------------------------------------------------------------------
// The model check.

#[test]
fn provisioning_and_dashboards_fit_grafanas_model() -> Result<()> {
    let sources = grafana::data_sources()?;
    check_data_sources(&sources)?;
    check_provider()?;
    let dashboards = grafana::dashboards()?;
    for file in REFERENCE
        .iter()
        .map(|(file, _)| *file)
        .chain(["weir-pipeline.json"])
    {
        ensure!(
            dashboards.contains_key(file),
            "grafana/dashboards/{file} is missing"
        );
    }

    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (file, dashboard) in &dashboards {
        let mut report = |problem: String| problems.push(format!("{file}: {problem}"));
        if !uids.insert(dashboard.uid.as_str()) {
            report(format!(
                "uid `{}` is another dashboard's too",
                dashboard.uid
            ));
        }
        if !titles.insert(dashboard.title.as_str()) {
            report(format!("title `{}` twice in the folder", dashboard.title));
        }
        check_dashboard(dashboard, &sources, &mut report);
    }
    for (file, panels) in REFERENCE {
        let Some(dashboard) = dashboards.get(file) else {
            continue;
        };
        let have: HashMap<&str, &str> = dashboard
            .all_panels()
            .into_iter()
            .map(|p| (p.title.as_str(), p.kind.as_str()))
            .collect();
        for (title, kind) in panels {
            match have.get(title) {
                None => problems.push(format!("{file}: no `{title}` panel (semantics.md §4)")),
                Some(have) if have != kind => {
                    problems.push(format!("{file}: `{title}` is a {have}, not a {kind}"));
                }
                Some(_) => {}
            }
        }
    }
    let pipeline = &dashboards["weir-pipeline.json"];
    check_pipeline_dashboard(pipeline, &mut |problem: String| {
        problems.push(format!("weir-pipeline.json: {problem}"));
    });
    ensure!(problems.is_empty(), "{}", problems.join("\n"));

    let panels: usize = dashboards.values().map(|d| d.all_panels().len()).sum();
    println!(
        "{} dashboards, {panels} panels, {} data sources: every panel fits Grafana's model",
        dashboards.len(),
        sources.len()
    );
    Ok(())
}

/// The two data sources the dashboards name, as the compose file's services
/// serve them.
fn check_data_sources(sources: &BTreeMap<String, DataSource>) -> Result<()> {
    let postgres = sources.get("weir-postgres").context("no `weir-postgres`")?;
    let prometheus = sources
        .get("weir-prometheus")
        .context("no `weir-prometheus`")?;
    let setting = |key: &str| postgres.json_data.get(key).cloned();
    let password = postgres
        .secure_json_data
        .get("password")
        .map(String::as_str);
    let checks = [
        (
            sources.values().filter(|s| s.is_default).count() == 1,
            "exactly one data source is the default",
        ),
        (
            postgres.kind == "grafana-postgresql-datasource",
            "weir-postgres is Grafana's PostgreSQL data source",
        ),
        (
            postgres.url == "postgres:5432",
            "weir-postgres reaches the compose file's postgres service",
        ),
        (
            postgres.user.as_deref() == Some("weir") && password == Some("weir"),
            "weir-postgres logs in as weir, its password in secureJsonData",
        ),
        (
            setting("database") == Some("weir".into())
                && setting("sslmode") == Some("disable".into())
                && setting("postgresVersion") == Some(1500.into()),
            "weir-postgres reads database weir of PostgreSQL 15 without TLS",
        ),
        (
            prometheus.kind == "prometheus" && prometheus.url == "http://prometheus:9090",
            "weir-prometheus reaches the compose file's prometheus service",
        ),
        (
            sources.values().all(|s| s.access == "proxy"),
            "Grafana's server makes the queries (access: proxy)",
        ),
        (
            sources.values().all(|s| !s.editable && !s.name.is_empty()),
            "each is named and, being provisioned, not editable",
        ),
    ];
    for (ok, what) in checks {
        ensure!(ok, "{}: {what}", grafana::DATA_SOURCES_FILE);
    }
    Ok(())
}

/// The provider reads the folder the compose file mounts the dashboards on.
fn check_provider() -> Result<()> {
    let path = grafana::dir().join(grafana::PROVIDERS_FILE);
    let file = grafana::providers()?;
    let [provider] = file.providers.as_slice() else {
        bail!("{}: one provider", path.display());
    };
    let mounts = compose_mounts()?;
    let mounted = |host: &str, container: &str| {
        mounts
            .iter()
            .any(|(from, to)| same_dir(from, host) && same_dir(to, container))
    };
    let checks = [
        (file.api_version == 1, "apiVersion 1"),
        (
            !provider.name.is_empty() && provider.org_id == 1 && provider.kind == "file",
            "a named file provider for the main organisation",
        ),
        (
            provider.folder == "weir" && provider.folder_uid.as_deref() == Some("weir"),
            "dashboards go in the `weir` folder, with a stable uid",
        ),
        // Edits in Grafana would be lost at the next reload, so Grafana
        // refuses them; a dashboard removed from the folder stays until
        // someone deletes it on purpose.
        (
            provider.disable_deletion && !provider.allow_ui_updates,
            "the files are the source of truth",
        ),
        (
            provider.update_interval_seconds > 0 && !provider.options.folders_from_files_structure,
            "changed files are picked up, into the one folder",
        ),
        (
            provider.options.path == DASHBOARDS_MOUNT
                && mounted("./grafana/dashboards", &provider.options.path),
            "it reads the folder docker-compose.yml mounts ./grafana/dashboards on",
        ),
        (
            mounted("./grafana/provisioning", "/etc/grafana/provisioning"),
            "docker-compose.yml mounts ./grafana/provisioning where Grafana reads it",
        ),
    ];
    for (ok, what) in checks {
        ensure!(
            ok,
            "{}: {what} (grafana mounts: {mounts:?})",
            path.display()
        );
    }
    Ok(())
}

/// The Grafana service's volumes in the repository's compose file, as
/// (host path, container path).
fn compose_mounts() -> Result<Vec<(String, String)>> {
    let path = weir_tests::manifest_dir().join("../docker-compose.yml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let volumes = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .with_context(|| format!("{}: no volumes for the grafana service", path.display()))?;
    Ok(volumes
        .iter()
        .filter_map(|volume| match volume {
            // The short syntax: `HOST:CONTAINER[:MODE]`.
            serde_yaml_ng::Value::String(short) => {
                let mut parts = short.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            long => Some((
                long["source"].as_str()?.to_owned(),
                long["target"].as_str()?.to_owned(),
            )),
        })
        .collect())
}

/// Whether two paths name the same folder (`./a/b/` and `a/b`).
fn same_dir(a: &str, b: &str) -> bool {
    let clean = |p: &str| p.trim_start_matches("./").trim_end_matches('/').to_owned();
    clean(a) == clean(b)
}

/// Everything one dashboard must satisfy, whatever it shows.
fn check_dashboard(
    dashboard: &Dashboard,
    sources: &BTreeMap<String, DataSource>,
    report: &mut impl FnMut(String),
) {
    let uid_ok = !dashboard.uid.is_empty()
        && dashboard.uid.len() <= 40
        && dashboard
            .uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !uid_ok {
        report(format!(
            "uid `{}`: 1-40 letters, digits, - or _",
            dashboard.uid
        ));
    }
    if dashboard.title.trim().is_empty() {
        report("an empty title".into());
    }
    if dashboard.schema_version < 39 {
        report(format!(
            "schemaVersion {} (39 or later)",
            dashboard.schema_version
        ));
    }
    // A live demo: the panels follow the stream.
    if !["5s", "10s"].contains(&dashboard.refresh.as_str()) {
        report(format!("refresh `{}`, not 5s or 10s", dashboard.refresh));
    }
    if !dashboard.tags.iter().any(|t| t == "weir") {
        report("no `weir` tag (the dashboards link to each other by it)".into());
    }
    for variable in &dashboard.templating.list {
        if let Some(source) = &variable.datasource
            && !sources.contains_key(&source.uid)
        {
            report(format!(
                "variable `{}` reads unknown data source `{}`",
                variable.name, source.uid
            ));
        }
    }

    let panels = dashboard.all_panels();
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let mut report = |problem: String| report(format!("panel `{}`: {problem}", panel.title));
        if !ids.insert(panel.id) {
            report(format!("id {} is another panel's too", panel.id));
        }
        if !PANEL_TYPES.contains(&panel.kind.as_str()) {
            report(format!("unknown type `{}`", panel.kind));
        }
        let GridPos { x, w, h, .. } = panel.grid_pos;
        if w == 0 || h == 0 || x + w > 24 {
            report(format!(
                "gridPos {:?} outside the 24 columns",
                panel.grid_pos
            ));
        }
        if panel.kind == "row" {
            continue;
        }
        check_panel_queries(panel, sources, &mut report);
    }
    for (i, a) in panels.iter().enumerate() {
        for b in &panels[i + 1..] {
            if a.grid_pos.overlaps(b.grid_pos) {
                report(format!("panels `{}` and `{}` overlap", a.title, b.title));
            }
        }
    }
}

/// A panel's data source and targets.
fn check_panel_queries(
    panel: &Panel,
    sources: &BTreeMap<String, DataSource>,
    report: &mut impl FnMut(String),
) {
    let Some(source) = &panel.datasource else {
        report("no datasource".into());
        return;
    };
    let Some(provisioned) = sources.get(&source.uid) else {
        report(format!(
            "data source uid `{}` is not provisioned",
            source.uid
        ));
        return;
    };
    if provisioned.kind != source.kind {
        report(format!(
            "data source `{}` is a {}, not a {}",
            source.uid, provisioned.kind, source.kind
        ));
    }
    if panel.targets.is_empty() {
        report("no targets".into());
    }
    let mut ref_ids = BTreeSet::new();
    for target in &panel.targets {
        if target.ref_id.is_empty() || !ref_ids.insert(target.ref_id.as_str()) {
            report(format!("target refId `{}` empty or twice", target.ref_id));
        }
        if target.datasource.as_ref().is_some_and(|own| own != source) {
            report(format!(
                "target {} reads another data source than its panel",
                target.ref_id
            ));
        }
        match provisioned.kind.as_str() {
            "grafana-postgresql-datasource" => {
                if target
                    .raw_sql
                    .as_deref()
                    .is_none_or(|sql| sql.trim().is_empty())
                {
                    report(format!("target {}: no rawSql", target.ref_id));
                }
                if target.raw_query != Some(true) || target.editor_mode.as_deref() != Some("code") {
                    report(format!(
                        "target {}: rawQuery true and editorMode code",
                        target.ref_id
                    ));
                }
                // Rows of columns, not time series: every SQL panel here is a
                // table, a category bar chart or a single number.
                if target.format.as_deref() != Some("table") {
                    report(format!("target {}: format `table`", target.ref_id));
                }
            }
            "prometheus" => {
                if target
                    .expr
                    .as_deref()
                    .is_none_or(|expr| expr.trim().is_empty())
                {
                    report(format!("target {}: no expr", target.ref_id));
                }
            }
            other => report(format!("no checks for data sources of type {other}")),
        }
    }
}

// ---------------------------------------------------------------------------
// The pipeline dashboard against the metrics weir exports.

/// Metric families a plugin names (a `name` label): no fixed panel can show them.
fn plugin_defined(family: &Family) -> bool {
    family.labels.contains(&"name")
}

/// The pipeline dashboard: a `$pipeline` variable drawn from weir's own
/// metrics, every expression valid against them, and every family on a panel.
fn check_pipeline_dashboard(dashboard: &Dashboard, report: &mut impl FnMut(String)) {
    let pipeline_variable = dashboard
        .templating
        .list
        .iter()
        .find(|v| v.name == "pipeline");
    match pipeline_variable {
        None => report("no `pipeline` variable".into()),
        Some(variable) => {
            let definition = variable.definition.as_deref().unwrap_or_default();
            let known = definition
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|args| args.split_once(','))
                .is_some_and(|(metric, label)| {
                    family(metric.trim()).is_some_and(|f| f.labels.contains(&label.trim()))
                });
            if variable.kind != "query" || !known {
                report(format!(
                    "`pipeline` is not label_values of a weir metric: `{definition}`"
                ));
            }
        }
    }
    let mut shown = BTreeSet::new();
    for panel in dashboard.all_panels() {
        for target in &panel.targets {
            let Some(expr) = &target.expr else { continue };
            match promql_families(expr) {
                Ok(families) => shown.extend(families),
                Err(error) => report(format!("panel `{}`: `{expr}`: {error}", panel.title)),
            }
        }
    }
    for family in FAMILIES.iter().filter(|f| !plugin_defined(f)) {
        if !shown.contains(family.name) {
            report(format!("no panel shows {}", family.name));
        }
    }
}

/// The family weir exports under `name`, if any.
fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The metric families a PromQL expression reads, after checking that each
/// name is a series weir exports (a histogram only through `_bucket`,
/// `_sum` and `_count`, buckets only under `histogram_quantile`), that every
/// matcher and `by` names a label those families have, and that every
/// selector of a per-pipeline family honours the `$pipeline` variable.
fn promql_families(expr: &str) -> Result<Vec<&'static str>> {
    let mut depth = 0i32;
    for c in expr.chars() {
        depth += match c {
            '(' | '{' | '[' => 1,
            ')' | '}' | ']' => -1,
            _ => 0,
        };
        ensure!(depth >= 0, "a bracket closes that was never opened");
    }
    ensure!(depth == 0, "unbalanced brackets");

    let mut families: Vec<&'static Family> = Vec::new();
    let mut groupings: Vec<Vec<String>> = Vec::new();
    let bytes = expr.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        if c == b'"' {
            // Skip string literals: label values are not names.
            at += 1 + expr[at + 1..].find('"').context("an unclosed string")? + 1;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len()
            && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_' || bytes[at] == b':')
        {
            at += 1;
        }
        let word = &expr[start..at];
        let rest = expr[at..].trim_start();
        if word == "by" || word == "without" {
            let list = rest
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .context("`by` without a label list")?
                .0;
            groupings.push(list.split(',').map(|l| l.trim().to_owned()).collect());
            continue;
        }
        if !word.starts_with("weir_") {
            continue;
        }
        let found = family(word)
            .filter(|f| f.kind != Kind::Histogram)
            .or_else(|| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    family(word.strip_suffix(suffix)?).filter(|f| f.kind == Kind::Histogram)
                })
            });
        let Some(found) = found else {
            bail!("`{word}` is not a series weir exports");
        };
        if word.ends_with("_bucket") && !expr[..start].contains("histogram_quantile(") {
            bail!("`{word}` outside histogram_quantile");
        }
        let matchers = match rest.strip_prefix('{') {
            Some(inner) => inner.split_once('}').context("an unclosed selector")?.0,
            None => "",
        };
        for matcher in matchers.split(',').filter(|m| !m.trim().is_empty()) {
            let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
            ensure!(
                found.labels.contains(&label),
                "{word} has no label `{label}`"
            );
        }
        if found.labels.contains(&"pipeline") && !matchers.contains(r#"pipeline=~"$pipeline""#) {
            bail!("{word} is not filtered by the $pipeline variable");
        }
        families.push(found);
    }
    ensure!(!families.is_empty(), "reads no weir metric");
    for labels in groupings {
        for label in labels {
            let known =
                label == "le" || families.iter().any(|f| f.labels.contains(&label.as_str()));
            ensure!(known, "grouped by `{label}`, which none of its metrics has");
        }
    }
    Ok(families.iter().map(|f| f.name).collect())
}

// ---------------------------------------------------------------------------
// The SQL dashboards over a real run.

/// `sql` with each whole-word, unquoted table name of `tables` replaced:
/// text in quotes (column names, labels) is left as it is.
fn with_tables(sql: &str, tables: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\'' || c == '"' {
            let end = sql[start + 1..]
                .find(c)
                .map_or(sql.len(), |i| start + 1 + i + 1);
            out.push_str(&sql[start..end]);
            while chars.peek().is_some_and(|&(i, _)| i < end) {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = chars.peek() {
                if !(next.is_ascii_alphanumeric() || next == '_' || next == '$') {
                    break;
                }
                end = i + next.len_utf8();
                chars.next();
            }
            let word = &sql[start..end];
            let replaced = tables
                .iter()
                .find(|(from, _)| *from == word)
                .map(|(_, to)| *to);
            out.push_str(replaced.unwrap_or(word));
        } else {
            out.push(c);
        }
    }
    out
}

/// The rows one panel's query returned, each as column name -> value.
struct Answer {
    dashboard: String,
    panel: String,
    rows: Vec<Map<String, Value>>,
}

impl Answer {
    /// A single-value panel's number.
    fn number(&self) -> Result<f64> {
        let row = self.rows.first().context("no row")?;
        let [value] = row.values().collect::<Vec<_>>()[..] else {
            bail!("{}: {} columns, not one", self.panel, row.len());
        };
        value
            .as_f64()
            .with_context(|| format!("{}: `{value}` is not a number", self.panel))
    }
}

/// Runs every SQL query of `dashboard` with the test's table names and
/// checks what it returns against the panel showing it.
async fn run_queries(
    pool: &sqlx::PgPool,
    dashboard: &Dashboard,
    tables: &[(&str, &str)],
) -> Result<Vec<Answer>> {
    let mut answers = Vec::new();
    for panel in dashboard.all_panels() {
        for target in &panel.targets {
            let Some(sql) = &target.raw_sql else { continue };
            let context = format!("{} / {} ({})", dashboard.title, panel.title, target.ref_id);
            for table in TABLES {
                ensure!(
                    !sql.contains(&format!("\"{table}\"")),
                    "{context}: names table {table} in quotes, which the test would not rename"
                );
            }
            let sql = with_tables(sql, tables);
            // Each row as JSON, so every column type compares the same way.
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT row_to_json(q)::text FROM ({sql}) AS q"))
                    .fetch_all(pool)
                    .await
                    .with_context(|| format!("{context}: the query fails:\n{sql}"))?;
            let rows: Vec<Map<String, Value>> = rows
                .iter()
                .map(|row| serde_json::from_str(row))
                .collect::<Result<_, _>>()?;
            ensure!(!rows.is_empty(), "{context}: no rows");
            check_answer(panel, &rows).with_context(|| context.clone())?;
            answers.push(Answer {
                dashboard: dashboard.title.clone(),
                panel: panel.title.clone(),
                rows,
            });
        }
    }
    Ok(answers)
}

/// What a panel of each type needs from its rows to show something.
fn check_answer(panel: &Panel, rows: &[Map<String, Value>]) -> Result<()> {
    for column in panel.named_columns() {
        ensure!(
            rows[0].contains_key(&column),
            "the settings name column `{column}`, the query returns {:?}",
            rows[0].keys().collect::<Vec<_>>()
        );
    }
    match panel.kind.as_str() {
        "stat" => {
            ensure!(
                rows.len() == 1,
                "a single-value panel got {} rows",
                rows.len()
            );
            for (column, value) in &rows[0] {
                ensure!(!value.is_null(), "`{column}` is NULL");
                ensure!(value.is_number(), "`{column}` is `{value}`, not a number");
            }
        }
        "barchart" => {
            let x = panel.x_field().context("a bar chart without xField")?;
            for row in rows {
                for (column, value) in row {
                    if column == x {
                        ensure!(value.is_string(), "category `{value}` is not text");
                    } else {
                        ensure!(
                            value.is_number(),
                            "bar `{column}` is `{value}`, not a number"
                        );
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A panel's answer, by dashboard and panel title.
fn answer<'a>(answers: &'a [Answer], dashboard: &str, panel: &str) -> Result<&'a Answer> {
    answers
        .iter()
        .find(|a| a.dashboard == dashboard && a.panel == panel)
        .with_context(|| format!("no answer for {dashboard} / {panel}"))
}

/// How far a dashboard's number may be from the raw events' for each kind
/// of figure: counts exactly; money to a millionth (sums of doubles in the
/// pipeline against exact decimals here); times in milliseconds to a
/// hundredth (the events carry microseconds).
const EXACT: f64 = 0.0;
const MONEY: f64 = 1e-6;
const MILLIS: f64 = 0.01;

#[test]
fn every_dashboard_query_answers_over_a_real_run() -> Result<()> {
    let run = Scenario::new("dashboards", 4)?;
    let (stack, names) = (&run.stack, &run.names);
    let dashboards = grafana::dashboards()?;

    let counts = generate(
        stack,
        &[
            "--rate",
            "0",
            "--seed",
            SEED,
            "--sessions",
            "200",
            "--count",
            &EVENTS.to_string(),
            "--topic",
            &names.events,
            "--write-catalog",
        ],
    )?;
    ensure!(counts.events == EVENTS);
    let demo = demo_pipeline(&run.dir, names, "")?;
    // The activity pipeline beside the demo, as the demo command runs them:
    // same input topic, names of its own.
    let activity_names = Names {
        pipeline: format!("{}-activity", names.pipeline),
        events: names.events.clone(),
        avro: format!("{}_activity_avro", names.table),
        table: format!("{}_activity", names.table),
    };
    let activity = activity_pipeline(&run.dir, &activity_names)?;
    let (activity_name, activity_table) = (activity_names.pipeline, activity_names.table);
    let started = Instant::now();
    let mut weir = Running::start_all(stack, &[&demo, &activity])?;
    for pipeline in [&names.pipeline, &activity_name] {
        wait_caught_up(
            stack,
            &format!("weir-{pipeline}"),
            &names.events,
            &mut weir,
            Duration::from_secs(600),
        )?;
    }
    weir.stop()?;
    println!(
        "{EVENTS} events, {} sessions: demo and activity pipelines caught up in {:.1?}",
        counts.sessions,
        started.elapsed()
    );

    let pool = run.pool()?;
    let raw = format!("{}_raw", names.table);
    run.tokio
        .block_on(load_raw(&pool, &raw, &read_topic(stack, &names.events)?))?;
    let tables = [
        ("sessions", names.table.as_str()),
        ("session_activity", activity_table.as_str()),
    ];
    let mut answers = Vec::new();
    for dashboard in dashboards.values() {
        answers.extend(run.tokio.block_on(run_queries(&pool, dashboard, &tables))?);
    }
    for answer in &answers {
        let first = Value::Object(answer.rows[0].clone()).to_string();
        let first = match first.char_indices().nth(100) {
            Some((cut, _)) => format!("{}…", &first[..cut]),
            None => first,
        };
        println!(
            "  {} / {}: {} row(s), first {first}",
            answer.dashboard,
            answer.panel,
            answer.rows.len()
        );
    }

    // The same numbers from the raw events, without any aggregate.
    let (sessions, events, purchases, revenue, latest): (f64, f64, f64, f64, f64) =
        run.tokio.block_on(
            sqlx::query_as(&format!(
                "SELECT count(DISTINCT data->>'session_id')::float8, count(*)::float8, \
                        count(*) FILTER (WHERE data->>'event_type' = 'purchase')::float8, \
                        coalesce(sum((data->>'total')::numeric) FILTER (WHERE data->>'event_type' = 'purchase'), 0)::float8, \
                        extract(epoch FROM max((data->>'timestamp')::timestamptz))::float8 * 1000 \
                 FROM {raw}"
            ))
            .fetch_one(&pool),
        )?;
    ensure!(purchases > 0.0, "the run has purchases to show");
    let overview = "Session Overview";
    let activity_dashboard = "Real-Time Activity";
    let product = "Product Analytics";
    let compared = [
        ("sessions", overview, "Total Sessions", sessions, EXACT),
        ("events", activity_dashboard, "Total Events", events, EXACT),
        ("purchases", overview, "Total Purchases", purchases, EXACT),
        ("true revenue", product, "True Revenue", revenue, MONEY),
        (
            "true average order value",
            product,
            "True Average Order Value",
            revenue / purchases,
            MONEY,
        ),
        (
            "latest event (ms)",
            activity_dashboard,
            "Latest Event",
            latest,
            MILLIS,
        ),
    ];
    for (what, dashboard, panel, truth, tolerance) in compared {
        let shown = answer(&answers, dashboard, panel)?.number()?;
        ensure!(
            (shown - truth).abs() <= tolerance,
            "{what}: {panel} shows {shown}, the raw events say {truth}"
        );
        println!("  {what}: the dashboard and the raw events agree on {shown}");
    }
    // Recent Sessions is sorted by recency: its first row holds the newest event.
    let recent = &answer(&answers, activity_dashboard, "Recent Sessions")?.rows;
    let times: Vec<&str> = recent
        .iter()
        .map(|row| row["Last event"].as_str().context("a time"))
        .collect::<Result<_>>()?;
    ensure!(
        times.is_sorted_by(|a, b| a >= b),
        "Recent Sessions newest first: {times:?}"
    );
    let newest: f64 = run.tokio.block_on(
        sqlx::query_scalar("SELECT (extract(epoch FROM $1::timestamptz) * 1000)::float8")
            .bind(times[0])
            .fetch_one(&pool),
    )?;
    ensure!(
        (newest - latest).abs() <= MILLIS,
        "Recent Sessions starts at {}, the newest event is later",
        times[0]
    );

    run.tokio.block_on(async {
        for table in [&raw, &names.table, &activity_table] {
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "{} SQL queries of {} dashboards answered over a real run",
        answers.len(),
        answers
            .iter()
            .map(|a| a.dashboard.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    );
    Ok(())
}

#[test]
fn table_names_are_replaced_only_where_they_are_names() {
    let sql = r#"SELECT 'sessions' AS "sessions", s."SESSION_ID" FROM sessions s LEFT JOIN session_activity a ON true, my_sessions"#;
    assert_eq!(
        with_tables(sql, &[("sessions", "t1"), ("session_activity", "t2")]),
        r#"SELECT 'sessions' AS "sessions", s."SESSION_ID" FROM t1 s LEFT JOIN t2 a ON true, my_sessions"#
    );
}

#[test]
fn promql_names_outside_weirs_metrics_are_refused() {
    let ok = r#"histogram_quantile(0.99, sum by (le, pipeline) (rate(weir_batch_duration_seconds_bucket{pipeline=~"$pipeline"}[1m])))"#;
    assert_eq!(
        promql_families(ok).ok(),
        Some(vec!["weir_batch_duration_seconds"])
    );
    for bad in [
        r#"rate(weir_nonexistent_total{pipeline=~"$pipeline"}[1m])"#,
        r#"rate(weir_source_records_total[1m])"#,
        r#"sum by (sink) (rate(weir_source_records_total{pipeline=~"$pipeline"}[1m]))"#,
        r#"rate(weir_batch_duration_seconds_bucket{pipeline=~"$pipeline"}[1m])"#,
        r#"weir_batch_duration_seconds{pipeline=~"$pipeline"}"#,
        r#"sum(rate(weir_source_records_total{pipeline=~"$pipeline"}[1m])"#,
    ] {
        assert!(promql_families(bad).is_err(), "{bad} passed");
    }
}

/// A change that must make a good dashboard fail the model check.
type Breakage = fn(&mut Value);

#[test]
fn broken_dashboards_are_refused() -> Result<()> {
    let sources = grafana::data_sources()?;
    let path = grafana::dir().join("dashboards/session-overview.json");
    let good: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let breakages: [(&str, Breakage); 8] = [
        ("outside the 24 columns", |d| {
            d["panels"][0]["gridPos"]["x"] = 20.into()
        }),
        ("is not provisioned", |d| {
            d["panels"][0]["datasource"]["uid"] = "other".into()
        }),
        ("no rawSql", |d| {
            d["panels"][0]["targets"][0]["rawSql"] = " ".into()
        }),
        ("another panel's too", |d| {
            d["panels"][1]["id"] = d["panels"][0]["id"].clone()
        }),
        ("unknown type", |d| {
            d["panels"][0]["type"] = "piechart".into()
        }),
        ("schemaVersion", |d| d["schemaVersion"] = 27.into()),
        ("overlap", |d| {
            d["panels"][1]["gridPos"] = d["panels"][0]["gridPos"].clone()
        }),
        ("refId", |d| {
            d["panels"][0]["targets"][0]["refId"] = "".into()
        }),
    ];
    for (expected, breakage) in breakages {
        let mut broken = good.clone();
        breakage(&mut broken);
        let dashboard: Dashboard = serde_json::from_value(broken)?;
        let mut problems = Vec::new();
        check_dashboard(&dashboard, &sources, &mut |problem| problems.push(problem));
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "`{expected}` not reported: {problems:?}"
        );
    }
    // And the file itself passes, so each problem above is the breakage's.
    let dashboard: Dashboard = serde_json::from_value(good)?;
    let mut problems = Vec::new();
    check_dashboard(&dashboard, &sources, &mut |problem| problems.push(problem));
    assert!(problems.is_empty(), "{problems:?}");
    Ok(())
}
