//! `weir plugin ...`: the admin API from the command line.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// `weir plugin`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// The admin API of the running `weir run`.
    #[arg(
        long,
        env = "WEIR_ADMIN_URL",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub admin: String,
    /// The token changes need (the one `weir run` was started with); it is
    /// sent with reads too, which it allows.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The CA (PEM) that signed the admin API's certificate, for an
    /// `https://` address whose certificate the system does not trust.
    #[arg(long, env = "WEIR_ADMIN_CA", global = true)]
    pub admin_ca: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: crate::cli::PluginCommand,
}

/// What `weir plugin` does through the admin API of a running `weir run`.
#[derive(Debug, clap::Subcommand)]
pub enum AdminAction {
    /// The running pipelines, their stages and the plugin versions in each.
    List,
    /// A pipeline's swaps and rollbacks.
    History {
        /// The pipeline.
        pipeline: String,
    },
    /// Replaces a stage's plugin in a running pipeline (checked first; on
    /// probation for 30 s: a trap rolls it back by itself).
    Swap {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
        /// The new component (.wasm).
        file: PathBuf,
    },
    /// Puts a stage back on the plugin version it ran before.
    Rollback {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
    },
}

/// Runs `action` through the admin API; prints its answer as JSON.
pub fn run(args: &PluginArgs, action: &AdminAction) -> anyhow::Result<()> {
    let base = args.admin.trim_end_matches('/');
    let mut client =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(120));
    if let Some(ca) = &args.admin_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
        {
            client = client.add_root_certificate(certificate);
        }
    }
    let client = client.build()?;
    let authorized = |request: reqwest::blocking::RequestBuilder| match &args.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let request = match action {
        AdminAction::List => authorized(client.get(format!("{base}/pipelines"))),
        AdminAction::History { pipeline } => {
            authorized(client.get(format!("{base}/pipelines/{pipeline}/history")))
        }
        AdminAction::Swap {
            pipeline,
            stage,
            file,
        } => {
            let component =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let origin = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            authorized(
                client
                    .put(format!("{base}/pipelines/{pipeline}/stages/{stage}/plugin"))
                    .query(&[("origin", origin.display().to_string())])
                    .header("Content-Type", "application/wasm")
                    .body(component),
            )
        }
        AdminAction::Rollback { pipeline, stage } => authorized(client.post(format!(
            "{base}/pipelines/{pipeline}/stages/{stage}/rollback"
        ))),
    };
    let response = request
        .send()
        .with_context(|| format!("cannot reach the admin API at {base}: is `weir run` running?"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .with_context(|| format!("the admin API answered {status} without JSON"))?;
    if !status.is_success() {
        let message = body["error"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        bail!("{message} ({status})");
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
