//! JavaScript plugins: the folder's npm packages installed, esbuild bundles
//! the entry with weir's SDK, componentize-js makes the component.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::job::Job;
use super::manifest::entry;
use super::tools::{execute, require};

/// Builds a JavaScript plugin with esbuild and componentize-js.
pub(super) fn build(
    &Job {
        dir,
        manifest,
        home,
        out,
        ..
    }: &Job<'_>,
) -> anyhow::Result<()> {
    let entry = entry(manifest, "module file")?;
    let npm = require(
        "npm",
        "Node.js and npm (on Debian: `apt-get install nodejs npm`)",
    )?;
    install_packages(&npm, dir)?;
    let bin = dir.join("node_modules/.bin");
    let bundle = dir.join("target/bundle.js");
    execute(
        Command::new(bin.join("esbuild"))
            .arg(entry)
            .args([
                "--bundle",
                "--format=esm",
                "--platform=neutral",
                "--external:weir:*",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", bundle.display()))
            .current_dir(dir),
        "bundling the plugin with esbuild",
    )?;
    execute(
        Command::new(bin.join("componentize-js"))
            .arg(&bundle)
            .arg("--wit")
            .arg(home.join("wit"))
            .args(["--world-name", manifest.world.name()])
            .args(["--disable", "http", "--disable", "fetch-event"])
            .arg("--out")
            .arg(out)
            .current_dir(dir),
        "building the component with componentize-js",
    )
}

/// Installs the plugin's npm packages when they are missing, and again when
/// the lock changed since.
fn install_packages(npm: &Path, dir: &Path) -> anyhow::Result<()> {
    let installed = fs::metadata(dir.join("node_modules/.package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    let locked = fs::metadata(dir.join("package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    if installed.is_none() || locked.is_some_and(|locked| Some(locked) > installed) {
        let ci = locked.is_some();
        execute(
            Command::new(npm)
                .args([if ci { "ci" } else { "install" }, "--no-audit", "--no-fund"])
                .current_dir(dir),
            "installing the plugin's npm packages",
        )?;
    }
    Ok(())
}
