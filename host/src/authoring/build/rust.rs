//! Rust plugins: cargo builds the crate (which uses weir's Rust SDK) for
//! `wasm32-wasip2`, and the library's `.wasm` is the component.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::job::Job;

/// Builds a Rust plugin with cargo.
pub(super) fn build(&Job { dir, out, .. }: &Job<'_>) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context(
            "cannot start cargo (install Rust with rustup, then `rustup target add wasm32-wasip2`)",
        )?;
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    // The library's .wasm among the artifacts cargo reports.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["manifest_path"]
                .as_str()
                .is_some_and(|path| Path::new(path).parent() == dir.canonicalize().ok().as_deref())
        })
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|file| file.as_str().map(PathBuf::from))
        .find(|file| file.extension().is_some_and(|ext| ext == "wasm"))
        .context("cargo built no .wasm: the crate needs `crate-type = [\"cdylib\"]`")?;
    fs::copy(&built, out).with_context(|| format!("cannot copy {}", built.display()))?;
    Ok(())
}
