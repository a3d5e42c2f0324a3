//! `cargo xtask test`: every check and test of the README's second command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::stack::Stack;
use crate::toolchains;

/// Every check and test: formatting, lints, then the test suites against the
/// real stack (started first, left running unless `stop_stack`).
pub fn test(stack: &Stack, stop_stack: bool) -> Result<()> {
    let started = Instant::now();
    let result = run_checks(stack);
    if stop_stack {
        // The secured stack's test stops it; this covers a test that failed first.
        Stack::locate(true)?.down()?;
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
    let plugins = stack.repo().join("plugins");
    step("stack", || stack.up())?;
    step("format", || {
        cargo(&["fmt", "--all", "--check"], stack, None)?;
        cargo(&["fmt", "--all", "--check"], stack, Some(&plugins))
    })?;
    // The host's tests load the real compiled plugins, so they build first:
    // the Rust ones with cargo, the others with `weir plugin build` (which
    // fetches each language's tools from its registry).
    step("plugins", || {
        toolchains::ensure_wasm_target()?;
        cargo(&["build", "--release", "--locked"], stack, Some(&plugins))?;
        toolchains::ensure_c_toolchain()?;
        cargo(&["build", "--locked", "-p", "weir"], stack, None)?;
        let weir = target_dir(stack).join("debug/weir");
        let out = plugin_dir(stack);
        for (dir, component) in GUESTS {
            let status = Command::new(&weir)
                .args(["plugin", "build"])
                // weir's cache is the stack's (its Python serves the tests' clients too).
                .envs(stack.env())
                .arg(plugins.join(dir))
                .arg("--out")
                .arg(out.join(component))
                .status()
                .with_context(|| format!("cannot start {}", weir.display()))?;
            if !status.success() {
                bail!("`weir plugin build plugins/{dir}` failed ({status})");
            }
        }
        Ok(())
    })?;
    // Tests read weir's output with other clients too (confluent-kafka's Avro reader).
    let python = step("test clients", || {
        toolchains::python_with(
            &stack.repo().join("tests/python/requirements.txt"),
            stack.cache(),
        )
    })?;
    // The status page is tested in a real browser, driven by Playwright from
    // npm (its core alone: the browser is Debian's), and the dashboards'
    // expressions by a real Prometheus.
    step("browser and Prometheus", || {
        toolchains::ensure_observability_tools()?;
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(stack.repo().join("tests/browser"))
            .status()
            .context("cannot start npm")?;
        if !status.success() {
            bail!("`npm ci` in tests/browser failed ({status})");
        }
        Ok(())
    })?;
    step("lints", || {
        let clippy = [
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ];
        cargo(&clippy, stack, None)?;
        cargo(&clippy, stack, Some(&plugins))
    })?;
    // The plugin crates' own unit tests (the SDK's state migrations, the
    // aggregations' rules) run natively: there the export macros export
    // nothing and a plugin is a plain library.
    step("plugin unit tests", || {
        cargo(
            &["test", "--workspace", "--locked", "--target", "host-tuple"],
            stack,
            Some(&plugins),
        )
    })?;
    // Fault tests stop and start single services through this very binary
    // (`$WEIR_XTASK stack down kafka`).
    let xtask = xtask_exe()?;
    // `--show-output` keeps what passing tests print: the broker's version,
    // the registry's schema id, measured figures.
    let env = [
        ("WEIR_PYTHON", python.as_os_str()),
        ("WEIR_XTASK", xtask.as_os_str()),
    ];
    step("tests", || {
        cargo_with(
            &[
                "test",
                "--workspace",
                "--locked",
                "--",
                "--show-output",
                "--skip",
                SWAP_UNDER_LOAD,
            ],
            stack,
            None,
            &env,
        )
    })?;
    // The swap test measures latency against targets: it runs on a release
    // build, as weir runs in production.
    step("swap under load (release build)", || {
        cargo(
            &["build", "--release", "--locked", "-p", "weir"],
            stack,
            None,
        )?;
        cargo_with(
            &[
                "test",
                "--release",
                "--locked",
                "-p",
                "weir-tests",
                "--test",
                "swap",
                "--",
                "--show-output",
                "--exact",
                SWAP_UNDER_LOAD,
            ],
            stack,
            None,
            &env,
        )
    })?;
    Ok(())
}

/// Plugins in other languages than Rust: folder under `plugins/`, and the
/// component's name among the Rust ones (where the tests look for them).
const GUESTS: [(&str, &str); 8] = [
    ("testing/js-filter", "js_filter.wasm"),
    ("testing/python-filter", "python_filter.wasm"),
    ("js/session-stats", "session_stats_js.wasm"),
    ("python/session-stats", "session_stats_py.wasm"),
    ("c/session-stats", "session_stats_c.wasm"),
    ("js/category-interest", "category_interest.wasm"),
    ("python/funnel-timing", "funnel_timing.wasm"),
    ("c/checkout-summary", "checkout_summary.wasm"),
];

/// The hot-swap test that prints swap latency (`tests/swap.rs`).
const SWAP_UNDER_LOAD: &str =
    "session_stats_swapped_back_and_forth_under_load_counts_every_event_once";

fn step<T>(name: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let started = Instant::now();
    let result = run();
    println!("<== {name}: {:.0}s", started.elapsed().as_secs_f64());
    result
}

/// Runs the same cargo that runs us, with the stack's endpoints and the
/// plugin folder in the environment, in `dir` (the plugins workspace has its
/// own `.cargo/config.toml`, which cargo finds from the working folder).
fn cargo(args: &[&str], stack: &Stack, dir: Option<&Path>) -> Result<()> {
    cargo_with(args, stack, dir, &[])
}

/// [`cargo`] with more environment variables.
fn cargo_with(
    args: &[&str],
    stack: &Stack,
    dir: Option<&Path>,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(args)
        .envs(stack.env())
        .env("WEIR_PLUGIN_DIR", plugin_dir(stack))
        .envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let status = command.status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The running xtask binary. When cargo has rebuilt it since it started,
/// Linux names the replaced file `<path> (deleted)`; the new binary at
/// `<path>` is the one to run.
fn xtask_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running xtask binary")?;
    if !exe.exists()
        && let Some(path) = exe.to_str().and_then(|p| p.strip_suffix(" (deleted)"))
    {
        return Ok(PathBuf::from(path));
    }
    Ok(exe)
}

/// Where the plugins workspace puts its release components.
fn plugin_dir(stack: &Stack) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => stack.repo().join("plugins/target"),
    };
    target.join("wasm32-wasip2/release")
}

/// Where cargo puts the host's build outputs.
fn target_dir(stack: &Stack) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => stack.repo().join("target"),
    }
}
