//! weir's Python (a virtual environment in the cache folder) for the tests'
//! own clients. Plugins in other languages are built by `weir plugin build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The project's Python (a virtual environment in the cache) with the
/// packages of `requirements` installed; returns its interpreter.
pub fn python_with(requirements: &Path, cache: &Path) -> Result<PathBuf> {
    let venv = cache.join("python");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let system = which(
            "python3",
            "Python 3.11 or newer with venv (`apt-get install python3-venv`)",
        )?;
        run(
            Command::new(system).args(["-m", "venv"]).arg(&venv),
            "creating the Python virtual environment",
        )?;
    }
    run(
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

fn which(program: &str, install: &str) -> Result<PathBuf> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(PathBuf::from(program)),
        _ => bail!("`{program}` is missing; install {install}"),
    }
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?} ({what})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
