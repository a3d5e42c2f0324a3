//! The two commands of the README: `cargo xtask demo` and `cargo xtask test`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::stack::Stack;

/// Brings up the stack the demo runs on and shows where everything is.
///
/// The stock pipeline (generator, plugins, sinks) is not built yet; until it
/// is, the demo is the stack itself, ready for it.
pub fn demo(stack: &Stack) -> Result<()> {
    stack.up()?;
    println!();
    println!("The stack is up. Stop it with `cargo xtask stack down`.");
    for (name, value) in stack.env() {
        println!("  {name}={value}");
    }
    Ok(())
}

/// Every check and test: formatting, lints, then the test suites against the
/// real stack (started first, left running unless `stop_stack`).
pub fn test(stack: &Stack, stop_stack: bool) -> Result<()> {
    let started = Instant::now();
    let result = run_checks(stack);
    if stop_stack {
        stack.down()?;
    }
    println!(
        "xtask test: {} in {:.0}s",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

fn run_checks(stack: &Stack) -> Result<()> {
    step("stack", || stack.up())?;
    step("format", || cargo(&["fmt", "--all", "--check"], stack))?;
    step("lints", || {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            stack,
        )
    })?;
    // `--show-output` keeps what passing tests print: the broker's version,
    // the registry's schema id, measured figures.
    step("tests", || {
        cargo(
            &["test", "--workspace", "--locked", "--", "--show-output"],
            stack,
        )
    })?;
    Ok(())
}

fn step(name: &str, run: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let started = Instant::now();
    let result = run();
    println!("<== {name}: {:.0}s", started.elapsed().as_secs_f64());
    result
}

/// Runs the same cargo that runs us, with the stack's endpoints in the environment.
fn cargo(args: &[&str], stack: &Stack) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo).args(args).envs(stack.env()).status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
