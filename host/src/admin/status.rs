//! The status page at the admin server's root: every running pipeline, its
//! stages with their plugin versions, live rates, lag, dead letters and the
//! latest swaps. Rendered on the server; a few lines of script fetch the
//! page again every two seconds and swap its `<main>` in, so one renderer
//! serves both the first load and every refresh.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::server::{PipelineStatus, Status};

/// How often the page refreshes itself (ms).
const REFRESH_MS: u32 = 2000;

/// The whole page.
pub fn page(status: &Status) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "weir status" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "weir" }
                    span.muted { "v" (status.version) " · started " (status.started.format("%Y-%m-%d %H:%M:%S UTC")) }
                    nav {
                        a href="/metrics" { "metrics" }
                        a href="/status" { "status JSON" }
                        a href="/pipelines" { "pipelines API" }
                    }
                }
                (main(status))
                script { (PreEscaped(SCRIPT.replace("REFRESH_MS", &REFRESH_MS.to_string()))) }
            }
        }
    }
}

fn main(status: &Status) -> Markup {
    html! {
        main data-updated=(chrono::Utc::now().to_rfc3339()) {
            @if status.pipelines.is_empty() {
                p.empty { "No pipeline is running (yet): pipelines appear here once they have started." }
            }
            @for pipeline in &status.pipelines {
                (pipeline_section(pipeline))
            }
            p.muted.updated { "Updated " (chrono::Utc::now().format("%H:%M:%S")) " UTC · refreshes every " (REFRESH_MS / 1000) " s" }
        }
    }
}

fn pipeline_section(pipeline: &PipelineStatus) -> Markup {
    let live = &pipeline.live;
    html! {
        section.pipeline data-pipeline=(pipeline.name) {
            h2 { (pipeline.name) span.muted { " · up " (duration(live.uptime_seconds)) } }
            @if let Some(failing) = &live.failing {
                p.failing data-attempts=(failing.attempts) {
                    strong { "Sinks failing" }
                    " since " (failing.since.format("%H:%M:%S UTC")) " (" (failing.attempts) " attempts): "
                    (failing.error)
                    span.muted { " — the pipeline waits and retries; nothing is committed until they write." }
                }
            }
            div.tiles {
                (tile("in-rate", "In", &format!("{} /s", grouped(live.in_per_second.round() as u64)), "records read per second"))
                (tile("rows-rate", "Rows out", &format!("{} /s", grouped(live.rows_per_second.round() as u64)), "rows the sinks confirmed per second"))
                (tile("lag", "Lag", &live.total_lag().map_or_else(|| "unknown".to_owned(), |lag| grouped(lag.max(0) as u64)), "records not yet committed"))
                (tile("dead-letters", "Dead letters", &grouped(live.totals.dead), &format!("{:.1} /s now", live.dead_per_second)))
                (tile("keys", "Keys", &grouped(live.totals.keys), "keys held in state"))
                (tile("received", "Read", &grouped(live.totals.received), "records since start"))
            }
            h3 { "Stages" }
            table.stages {
                thead { tr { th { "#" } th { "stage" } th { "plugin" } th { "world" } th { "version" } th { "state" } th { "loaded" } th { "from" } } }
                tbody {
                    @for (index, stage) in pipeline.stages.iter().enumerate() {
                        tr data-stage=(stage.name) {
                            td.muted { (index + 1) }
                            td.name { (stage.name) }
                            td { (stage.plugin.name) }
                            td { (stage.plugin.world) }
                            td.version data-version=(stage.plugin.sha256) title=(stage.plugin.sha256) {
                                code { (short(&stage.plugin.sha256)) }
                                @if !stage.previous.is_empty() {
                                    span.muted { " (" (stage.previous.len()) " before)" }
                                }
                            }
                            td { @if let Some(version) = stage.plugin.state_version { "v" (version) } @else { span.muted { "–" } } }
                            td.muted { (stage.plugin.loaded_at.format("%H:%M:%S")) }
                            td.origin.muted title=(stage.plugin.origin) { (file_name(&stage.plugin.origin)) }
                        }
                    }
                }
            }
            @if let Some(partitions) = &live.lag {
                h3 { "Lag by partition" }
                div.partitions {
                    @for partition in partitions {
                        span.partition data-partition=(partition.partition) { "p" (partition.partition) " " strong { (grouped(partition.records.max(0) as u64)) } }
                    }
                }
            }
            h3 { "Latest swaps" }
            @if pipeline.swaps.is_empty() {
                p.muted { "None yet. Swap a stage with " code { "weir plugin swap" } " or the admin API." }
            } @else {
                table.swaps {
                    thead { tr { th { "#" } th { "when" } th { "stage" } th { "action" } th { "from → to" } th { "cut-over" } th { "stall" } th { "why" } } }
                    tbody {
                        @for swap in &pipeline.swaps {
                            tr data-swap=(swap.id) {
                                td.muted { (swap.id) }
                                td { (swap.at.format("%H:%M:%S")) }
                                td { (swap.stage) }
                                td { span class={"action " (swap.action)} { (swap.action) } }
                                td { code { (short(&swap.from)) } " → " code { (short(&swap.to)) } }
                                td { (format!("{:.1} ms", swap.cut_over_ms)) }
                                td { @if let Some(stall) = swap.stall_ms { (format!("{stall:.1} ms")) } @else { span.muted { "–" } } }
                                td.muted { (swap.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn tile(id: &str, label: &str, value: &str, hint: &str) -> Markup {
    html! {
        div.tile data-metric=(id) {
            div.label { (label) }
            div.value { (value) }
            div.hint { (hint) }
        }
    }
}

/// The first 12 hex digits of a SHA-256, as versions are shown.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `1234567` as `1 234 567` (thin spaces: readable, and unambiguous in any locale).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(digit);
    }
    out
}

fn duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

const SCRIPT: &str = r#"
setInterval(async () => {
  try {
    const response = await fetch(location.pathname, { cache: "no-store" });
    if (!response.ok) return;
    const next = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("main");
    if (next) document.querySelector("main").replaceWith(next);
    document.body.classList.remove("stale");
  } catch (error) {
    document.body.classList.add("stale");
  }
}, REFRESH_MS);
"#;

const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #6b7380; --line: #e3e6ea; --card: #fff; --bg: #f5f6f8; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
body.stale main { opacity: .55; }
p.failing { padding: 10px 14px; border: 1px solid #d1242f; border-radius: 8px; background: #fff1f0; }
header { display: flex; gap: 16px; align-items: baseline; padding: 14px 28px; background: var(--card); border-bottom: 1px solid var(--line); }
header nav { margin-left: auto; display: flex; gap: 14px; }
a { color: var(--accent); text-decoration: none; }
.brand { font-weight: 700; font-size: 20px; letter-spacing: .5px; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 28px 28px; }
.muted { color: var(--muted); font-weight: normal; }
section.pipeline { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 6px 22px 18px; margin-top: 20px; }
h2 { font-size: 18px; margin: 14px 0 12px; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 20px 0 8px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .label { color: var(--muted); font-size: 12px; }
.tile .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .hint { color: var(--muted); font-size: 11px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; }
td.name { font-weight: 600; }
td.origin { max-width: 220px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f0f2f5; padding: 1px 5px; border-radius: 4px; }
.partitions { display: flex; flex-wrap: wrap; gap: 8px; }
.partition { border: 1px solid var(--line); border-radius: 6px; padding: 3px 9px; }
.action { border-radius: 10px; padding: 1px 8px; font-size: 12px; background: #e7f0ff; }
.action.rollback, .action.automatic-rollback { background: #fff1e0; }
.empty { margin-top: 24px; }
.updated { margin-top: 14px; font-size: 12px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1\u{2009}000");
        assert_eq!(grouped(1_234_567), "1\u{2009}234\u{2009}567");
    }

    #[test]
    fn text_from_pipelines_is_escaped() {
        let status = Status {
            version: "0",
            started: chrono::Utc::now(),
            pipelines: vec![PipelineStatus {
                name: "<script>alert(1)</script>".to_owned(),
                stages: Vec::new(),
                live: crate::engine::monitor::LiveStatus::default(),
                swaps: Vec::new(),
            }],
        };
        let html = page(&status).into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert(1)"));
    }
}
