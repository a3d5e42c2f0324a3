//! What the tests need from the machine beyond Rust: the tests' own clients
//! in weir's Python (the virtual environment weir makes in the cache), the
//! Rust toolchain's wasm32-wasip2 target (added when missing), and the C
//! toolchain `weir plugin build` compiles C plugins with (Debian's packages,
//! installed when missing). Plugins are built by `weir plugin build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// weir's Python, the virtual environment `weir plugin build` makes in the
/// cache for Python plugins (the plugins step builds some first), with the
/// packages of `requirements` installed; returns its interpreter.
pub fn python_with(requirements: &Path, cache: &Path) -> Result<PathBuf> {
    let python = cache.join("python/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: `weir plugin build` makes it when it builds a Python plugin (the plugins step)",
            python.display()
        );
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

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?} ({what})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The target the plugins build for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the Rust toolchain running this (the one `rust-toolchain.toml`
/// pins) can build for wasm32-wasip2, and adds the target with rustup when
/// it cannot: rustup adds a toolchain file's targets only when it installs
/// the toolchain, so one installed earlier without it lacks the target.
pub fn ensure_wasm_target() -> Result<()> {
    if has_wasm_target()? {
        return Ok(());
    }
    println!("==> adding the Rust target {WASM_TARGET} (the plugins build for it)");
    // Under `cargo xtask`, rustup has set RUSTUP_TOOLCHAIN: the target goes
    // to the pinned toolchain.
    run(
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
        &format!("`rustup target add {WASM_TARGET}`"),
    )
    .with_context(|| {
        format!("the Rust toolchain has no {WASM_TARGET} target and rustup could not add it")
    })?;
    if !has_wasm_target()? {
        bail!("`rustup target add {WASM_TARGET}` ran, yet the toolchain still lacks it");
    }
    Ok(())
}

/// Whether the toolchain's sysroot holds the wasm32-wasip2 standard library.
fn has_wasm_target() -> Result<bool> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("cannot start {}", rustc.to_string_lossy()))?;
    if !output.status.success() {
        bail!("`rustc --print sysroot` failed ({})", output.status);
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    Ok(sysroot
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir())
}

/// The Debian packages of the C toolchain: clang, its linker and wasm32
/// runtime, and wasi-libc.
const C_PACKAGES: [&str; 4] = [
    "clang-14",
    "lld-14",
    "wasi-libc",
    "libclang-rt-14-dev-wasm32",
];

/// Makes sure clang can build C plugins for wasm32-wasi; installs Debian's
/// packages when they are missing (as root, with apt-get).
pub fn ensure_c_toolchain() -> Result<()> {
    let has_clang = Command::new("clang-14")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    // Debian's wasi-libc puts its headers and libraries under /usr.
    let has_sysroot = Path::new("/usr/include/wasm32-wasi").is_dir()
        && Path::new("/usr/lib/wasm32-wasi").is_dir();
    let has_runtime = Path::new("/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi").is_dir();
    if has_clang && has_sysroot && has_runtime {
        return Ok(());
    }
    install_packages("the C toolchain for C plugins", &C_PACKAGES)
}

/// What the observability tests drive: a real browser (the status page)
/// and a real Prometheus (scraping weir, answering the dashboards).
const OBSERVABILITY_PACKAGES: [&str; 3] = ["chromium", "prometheus", "fonts-dejavu-core"];

/// Makes sure Debian's chromium and prometheus are installed (as root, with
/// apt-get, when they are missing).
pub fn ensure_observability_tools() -> Result<()> {
    let present = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if present("chromium") && present("prometheus") {
        return Ok(());
    }
    install_packages(
        "a browser and Prometheus for the observability tests",
        &OBSERVABILITY_PACKAGES,
    )
}

/// `apt-get install`s `packages` (needed for `why`).
fn install_packages(why: &str, packages: &[&str]) -> Result<()> {
    println!("installing {why}: {}", packages.join(" "));
    run(
        Command::new("apt-get").arg("update").arg("-qq"),
        &format!("apt-get update ({why})"),
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!(
            "installing {} (as root: `apt-get install {}`)",
            packages.join(" "),
            packages.join(" ")
        ),
    )
}
