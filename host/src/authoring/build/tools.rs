//! Starting the external tools a build runs, with errors that say how to
//! install what is missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// `program`, if it runs; else an error saying how to install it.
pub(super) fn require(program: &str, install: &str) -> anyhow::Result<PathBuf> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(PathBuf::from(program)),
        _ => bail!("`{program}` is missing; install {install}"),
    }
}

/// Runs `command` to its end; `what` names the step in the error when it
/// cannot start or fails.
pub(super) fn execute(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?} ({what})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
