//! Python plugins: componentize-py, pinned by the SDK's `requirements.txt`
//! in a virtual environment in weir's cache, with weir's SDK on its path.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::job::Job;
use super::manifest::entry;
use super::tools::{execute, require};

/// Builds a Python plugin with componentize-py.
pub(super) fn build(
    &Job {
        dir,
        manifest,
        home,
        sdk,
        out,
    }: &Job<'_>,
) -> anyhow::Result<()> {
    let module = entry(manifest, "module name (for app.py: app)")?;
    let cache = crate::dirs::cache()
        .context("set HOME or WEIR_CACHE_DIR: Python's build tools are kept there")?;
    let python = python_with(&sdk.join("requirements.txt"), &cache)?;
    let bin = python.parent().expect("a venv's python is in <venv>/bin");
    execute(
        Command::new(bin.join("componentize-py"))
            .arg("--wit-path")
            .arg(home.join("wit"))
            .args(["--world", manifest.world.name(), "componentize", module])
            .arg("--python-path")
            .arg(sdk)
            .arg("--python-path")
            .arg(dir)
            .arg("--output")
            .arg(out),
        "building the component with componentize-py",
    )
}

/// weir's Python (a virtual environment in `cache`) with the packages of
/// `requirements` installed; returns its interpreter.
pub fn python_with(requirements: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    let venv = cache.join("python");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let system = require(
            "python3",
            "Python 3.11 or newer with venv (`apt-get install python3-venv`)",
        )?;
        execute(
            Command::new(system).args(["-m", "venv"]).arg(&venv),
            "creating weir's Python virtual environment",
        )?;
    }
    execute(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        &format!("installing {} with pip", requirements.display()),
    )?;
    Ok(python)
}
