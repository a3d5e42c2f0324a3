//! Plugins written in other languages, built with their own toolchains from
//! their own registries: JavaScript with componentize-js (npm), Python with
//! componentize-py (PyPI, in a virtual environment in the cache folder).
//! Each is rebuilt only when its sources or the contract changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// A JavaScript plugin: a folder with `package.json` (and its lock) whose
/// `build` script writes the component to `$OUT`.
pub fn build_js(source: &Path, wit: &Path, out: &Path) -> Result<()> {
    if is_fresh(out, &[source, wit])? {
        return Ok(());
    }
    let npm = which(
        "npm",
        "Node.js and npm (on Debian: `apt-get install nodejs npm`)",
    )?;
    if !source.join("node_modules").is_dir() {
        run(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(source),
            "installing componentize-js with npm",
        )?;
    }
    run(
        Command::new(&npm)
            .args(["run", "--silent", "build"])
            .env("OUT", out)
            .current_dir(source),
        &format!("building {} with componentize-js", source.display()),
    )?;
    println!("built {}", out.display());
    Ok(())
}

/// A Python plugin: a folder with `app.py` and `requirements.txt` (which
/// pins componentize-py), built for `world`.
pub fn build_python(
    source: &Path,
    wit: &Path,
    world: &str,
    out: &Path,
    cache: &Path,
) -> Result<()> {
    if is_fresh(out, &[source, wit])? {
        return Ok(());
    }
    let python = python_with(&source.join("requirements.txt"), cache)?;
    let venv = python
        .parent()
        .and_then(Path::parent)
        .expect("the venv's python is in <venv>/bin");
    run(
        Command::new(venv.join("bin/componentize-py"))
            .arg("--wit-path")
            .arg(wit)
            .args(["--world", world, "componentize", "app", "--python-path"])
            .arg(source)
            .arg("--output")
            .arg(out),
        &format!("building {} with componentize-py", source.display()),
    )?;
    println!("built {}", out.display());
    Ok(())
}

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

/// True when `out` exists and is newer than every file under `inputs`
/// (dependency folders and build outputs aside).
fn is_fresh(out: &Path, inputs: &[&Path]) -> Result<bool> {
    let Ok(built) = fs::metadata(out).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    for input in inputs {
        if newest(input)? > built {
            return Ok(false);
        }
    }
    Ok(true)
}

fn newest(path: &Path) -> Result<SystemTime> {
    let metadata = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut newest = metadata.modified()?;
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if matches!(
                name.to_str(),
                Some("node_modules" | "__pycache__" | "target")
            ) {
                continue;
            }
            newest = newest.max(self::newest(&entry.path())?);
        }
    }
    Ok(newest)
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
