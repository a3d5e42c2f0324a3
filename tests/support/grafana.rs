//! The parts of Grafana's provisioning and dashboard models weir relies on,
//! and reading them from the repository's `grafana/` folder.
//!
//! Provisioning files are weir's own and small, so unknown fields are
//! refused (a misspelt key would otherwise be ignored by Grafana without a
//! word); dashboards carry many display settings no test has an opinion on,
//! so those are let through.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde_json::Value;

/// The data source provisioning file, under [`dir`].
pub const DATA_SOURCES_FILE: &str = "provisioning/datasources/weir.yml";

/// The dashboard provisioning file, under [`dir`].
pub const PROVIDERS_FILE: &str = "provisioning/dashboards/weir.yml";

/// `grafana/provisioning/datasources/*.yml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSources {
    /// The file format's version (`apiVersion`).
    pub api_version: u32,
    /// The data sources Grafana creates at start.
    pub datasources: Vec<DataSource>,
}

/// One provisioned data source.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSource {
    /// The name Grafana's UI shows.
    pub name: String,
    /// The data source plugin (`type`): `prometheus`,
    /// `grafana-postgresql-datasource`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The stable id panels and variables refer to it by.
    pub uid: String,
    /// Who makes the queries: `proxy` (Grafana's server) or `direct` (the
    /// browser).
    pub access: String,
    /// Where the service answers, as Grafana's server reaches it.
    pub url: String,
    /// The user to log in as, for databases.
    pub user: Option<String>,
    /// Whether new panels read this data source unless told otherwise.
    #[serde(default)]
    pub is_default: bool,
    /// Whether Grafana's UI may change it.
    #[serde(default)]
    pub editable: bool,
    /// The plugin's own settings (`jsonData`).
    #[serde(default)]
    pub json_data: BTreeMap<String, serde_yaml_ng::Value>,
    /// Settings Grafana stores encrypted, such as `password`
    /// (`secureJsonData`).
    #[serde(default)]
    pub secure_json_data: BTreeMap<String, String>,
}

/// `grafana/provisioning/dashboards/*.yml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Providers {
    /// The file format's version (`apiVersion`).
    pub api_version: u32,
    /// Where Grafana finds dashboards.
    pub providers: Vec<Provider>,
}

/// One dashboard provider.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    /// The provider's name.
    pub name: String,
    /// The organisation the dashboards belong to (1 is the main one).
    pub org_id: u32,
    /// The folder the dashboards appear in.
    pub folder: String,
    /// That folder's stable id.
    pub folder_uid: Option<String>,
    /// Where the dashboards come from (`type`): `file` reads a folder.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether a dashboard removed from the source stays in Grafana.
    pub disable_deletion: bool,
    /// Whether Grafana's UI may save changes to the dashboards.
    pub allow_ui_updates: bool,
    /// How often Grafana looks for changed files.
    pub update_interval_seconds: u32,
    /// Where a file provider reads.
    pub options: ProviderOptions,
}

/// Where a file provider reads dashboards.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderOptions {
    /// The folder, as Grafana's container sees it.
    pub path: String,
    /// Whether sub-folders become Grafana folders of their own.
    #[serde(default)]
    pub folders_from_files_structure: bool,
}

/// A dashboard file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// The stable id links and the API use.
    pub uid: String,
    /// The title shown in the folder.
    pub title: String,
    /// The version of Grafana's dashboard model the file is written in.
    pub schema_version: u32,
    /// How often the panels query again (`5s`, `1m`, …).
    pub refresh: String,
    /// Tags, by which dashboards link to each other.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The top-level panels; see [`Dashboard::all_panels`] for those inside
    /// collapsed rows too.
    pub panels: Vec<Panel>,
    /// The dashboard's variables.
    #[serde(default)]
    pub templating: Templating,
}

/// The dashboard's variables.
#[derive(Debug, Default, Deserialize)]
pub struct Templating {
    /// The variables, in the order the dashboard shows them.
    #[serde(default)]
    pub list: Vec<Variable>,
}

/// A template variable.
#[derive(Debug, Deserialize)]
pub struct Variable {
    /// The name queries use as `$name`.
    pub name: String,
    /// Where its values come from (`type`): `query`, `custom`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The data source a `query` variable asks.
    pub datasource: Option<DataSourceRef>,
    /// The query's text, such as `label_values(metric, label)`.
    pub definition: Option<String>,
}

/// A panel; a row may hold its panels while collapsed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    /// The panel's id, unique within its dashboard.
    pub id: u32,
    /// The visualisation (`type`): `stat`, `table`, `row`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The title shown above the panel.
    pub title: String,
    /// Where the panel sits.
    pub grid_pos: GridPos,
    /// The data source its targets read unless they name their own.
    pub datasource: Option<DataSourceRef>,
    /// The panel's queries.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// The visualisation's settings, as they are in the file.
    #[serde(default)]
    pub options: Value,
    /// How fields (columns, series) are shown.
    #[serde(default)]
    pub field_config: FieldConfig,
    /// A collapsed row's panels.
    #[serde(default)]
    pub panels: Vec<Panel>,
}

/// Where a panel sits: Grafana's grid is 24 columns wide.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct GridPos {
    /// The first column.
    pub x: u32,
    /// The first row.
    pub y: u32,
    /// The width, in columns.
    pub w: u32,
    /// The height, in rows.
    pub h: u32,
}

/// A reference to a data source, as panels and targets hold it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataSourceRef {
    /// The data source plugin (`type`), as [`DataSource::kind`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The data source's [`DataSource::uid`].
    pub uid: String,
}

/// A panel's query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The query's name within its panel (`A`, `B`, …).
    pub ref_id: String,
    /// The data source, when the query names its own.
    pub datasource: Option<DataSourceRef>,
    /// A SQL data source's query text.
    pub raw_sql: Option<String>,
    /// Whether a SQL query is the text as written, not the query builder's.
    pub raw_query: Option<bool>,
    /// The editor the query was written in: `code` or `builder`.
    pub editor_mode: Option<String>,
    /// What a SQL query returns: `table` or `time_series`.
    pub format: Option<String>,
    /// A Prometheus data source's PromQL expression.
    pub expr: Option<String>,
}

/// The field settings of a panel: only the overrides matter here, because
/// they name the columns a query must return.
#[derive(Debug, Default, Deserialize)]
pub struct FieldConfig {
    /// Settings for some fields only.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// A field override.
#[derive(Debug, Deserialize)]
pub struct Override {
    /// The fields it applies to.
    pub matcher: Matcher,
}

/// What an override applies to.
#[derive(Debug, Deserialize)]
pub struct Matcher {
    /// How fields are matched: `byName`, `byRegexp`, …
    pub id: String,
    /// The matcher's argument; for `byName`, the field's name.
    #[serde(default)]
    pub options: Value,
}

impl Dashboard {
    /// Every panel of the dashboard, those inside collapsed rows included.
    pub fn all_panels(&self) -> Vec<&Panel> {
        fn walk<'a>(panels: &'a [Panel], out: &mut Vec<&'a Panel>) {
            for panel in panels {
                out.push(panel);
                walk(&panel.panels, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.panels, &mut out);
        out
    }
}

impl Panel {
    /// The columns the panel's settings name: `byName` overrides and a bar
    /// chart's category field. The query must return each of them.
    pub fn named_columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .field_config
            .overrides
            .iter()
            .filter(|o| o.matcher.id == "byName")
            .filter_map(|o| o.matcher.options.as_str().map(str::to_owned))
            .collect();
        names.extend(self.x_field().map(str::to_owned));
        names
    }

    /// A bar chart's category column.
    pub fn x_field(&self) -> Option<&str> {
        self.options.get("xField").and_then(Value::as_str)
    }
}

impl GridPos {
    /// Whether the two places share a cell.
    pub fn overlaps(self, other: GridPos) -> bool {
        self.x < other.x + other.w
            && other.x < self.x + self.w
            && self.y < other.y + other.h
            && other.y < self.y + self.h
    }
}

/// The repository's `grafana/` folder, the one the compose file mounts from.
pub fn dir() -> PathBuf {
    crate::manifest_dir().join("../grafana")
}

/// The provisioned data sources ([`DATA_SOURCES_FILE`]), by uid; a file of
/// another `apiVersion` than 1, or with a uid twice, is an error.
pub fn data_sources() -> Result<BTreeMap<String, DataSource>> {
    let path = dir().join(DATA_SOURCES_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let file: DataSources =
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", path.display()))?;
    ensure!(file.api_version == 1, "{}: apiVersion 1", path.display());
    let mut by_uid = BTreeMap::new();
    for source in file.datasources {
        ensure!(
            by_uid.insert(source.uid.clone(), source).is_none(),
            "{}: a data source uid twice",
            path.display()
        );
    }
    Ok(by_uid)
}

/// The dashboard providers ([`PROVIDERS_FILE`]), as the file has them.
pub fn providers() -> Result<Providers> {
    let path = dir().join(PROVIDERS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_yaml_ng::from_str(&text).with_context(|| path.display().to_string())
}

/// Every dashboard file of `grafana/dashboards`, by file name.
pub fn dashboards() -> Result<BTreeMap<String, Dashboard>> {
    let folder = dir().join("dashboards");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&folder).with_context(|| folder.display().to_string())? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        // Valid JSON first, so a syntax error is reported as one and not as
        // a missing field.
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let dashboard: Dashboard = serde_json::from_value(json)
            .with_context(|| format!("{} does not fit Grafana's model", path.display()))?;
        let name = path.file_name().context("a file name")?.to_string_lossy();
        files.insert(name.into_owned(), dashboard);
    }
    Ok(files)
}
