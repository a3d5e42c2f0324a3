//! `weir plugin build`: one command builds a plugin in any of weir's
//! languages into a component, with that language's own tools from its own
//! registry. A plugin folder says what it is in `weir-plugin.toml`:
//!
//! ```toml
//! name = "session-stats"     # the component is <name>.wasm
//! language = "javascript"    # rust | javascript | python | c
//! world = "aggregator"       # filter | transform | aggregator
//! entry = "session-stats.js" # javascript: the module; python: the module name
//!
//! [test]                     # what `weir plugin test` runs here
//! input = "test/events.jsonl"
//! expect = "test/expected.jsonl"
//! key_field = "session_id"
//! ```
//!
//! - Rust: `cargo build --release --target wasm32-wasip2` (the crate uses
//!   weir's Rust SDK).
//! - JavaScript: `npm install` when `node_modules` is missing, esbuild bundles
//!   the entry with weir's SDK, componentize-js makes the component.
//! - Python: componentize-py (pinned by the SDK's `requirements.txt`, in a
//!   virtual environment in weir's cache) with weir's SDK on its path.
//! - C: bindings for the world generated from the contract (wit-bindgen's C
//!   generator, built into weir), every `.c` file of the folder compiled with
//!   weir's SDK by clang for wasm32-wasi (wasi-libc), and the module made a
//!   component here (wit-component, with the WASI adapter when it needs one).
//!
//! A build is skipped when the component is newer than every source file,
//! the contract and the SDK (`--force` builds anyway).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Deserialize;

/// `weir plugin build`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The plugin's folder (with `weir-plugin.toml`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where the component goes (default: `<dir>/target/<name>.wasm`).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Build even when the component is newer than its sources.
    #[arg(long)]
    pub force: bool,
}

/// A plugin folder's `weir-plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name (the component is `<name>.wasm`).
    pub name: String,
    /// The language it is written in.
    pub language: Language,
    /// The world it is built for.
    pub world: World,
    /// JavaScript: the module file; Python: the module name. Rust: unused.
    pub entry: Option<String>,
    /// What `weir plugin test` runs in this folder when given no files.
    #[serde(default)]
    pub test: Option<TestManifest>,
}

/// The `[test]` table of `weir-plugin.toml`: the plugin's own test, paths
/// relative to the plugin's folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestManifest {
    /// Input records, one per line.
    pub input: Option<PathBuf>,
    /// The output expected.
    pub expect: Option<PathBuf>,
    /// The JSON field keying an aggregator's state.
    pub key_field: Option<String>,
    /// The plugin's configuration (a table).
    pub config: Option<toml::Table>,
}

/// The languages `weir plugin build` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, with weir's Rust SDK (cargo).
    Rust,
    /// JavaScript, with weir's JavaScript SDK (esbuild and componentize-js, from npm).
    #[serde(alias = "js")]
    #[value(alias = "js")]
    Javascript,
    /// Python, with weir's Python SDK (componentize-py, from PyPI).
    #[serde(alias = "py")]
    #[value(alias = "py")]
    Python,
    /// C, with weir's C SDK (clang and wasi-libc, from Debian's packages).
    C,
}

/// The contract's worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Keeps, drops or rejects records.
    Filter,
    /// Turns each record into zero or more records.
    Transform,
    /// Folds each key's events into host-held state.
    Aggregator,
}

impl World {
    /// The world's name in the contract.
    pub fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Transform => "transform",
            Self::Aggregator => "aggregator",
        }
    }
}

/// Reads `<dir>/weir-plugin.toml`.
pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("weir-plugin.toml");
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: a plugin folder says what it is there (`weir plugin new` writes one)",
            path.display()
        )
    })?;
    toml::from_str(&text)
        .with_context(|| format!("{} is not a valid plugin manifest", path.display()))
}

/// Runs `weir plugin build`; returns the component's path.
pub fn run(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    let dir = &args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot find the plugin folder {}", args.dir.display()))?;
    let manifest = manifest(dir)?;
    // Absolute: the tools run in the plugin's folder.
    let out = match &args.out {
        Some(out) => {
            std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?
        }
        None => dir.join("target").join(format!("{}.wasm", manifest.name)),
    };
    let home = crate::dirs::home()?;
    let sdk = home.join("plugins/sdk").join(match manifest.language {
        Language::Rust => "rust",
        Language::Javascript => "js",
        Language::Python => "python",
        Language::C => "c",
    });
    // Rust builds are cargo's to skip: it knows the dependency graph.
    if manifest.language != Language::Rust
        && !args.force
        && is_fresh(&out, &[dir, &home.join("wit"), &sdk])?
    {
        eprintln!("{} is up to date", out.display());
        return Ok(out);
    }
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let started = Instant::now();
    // Tools write the component next to its final name; it is renamed into
    // place, so a pipeline never loads half a file.
    let partial = out.with_extension(format!("partial-{}.wasm", std::process::id()));
    let job = Job {
        dir,
        manifest: &manifest,
        home: &home,
        sdk: &sdk,
        out: &partial,
    };
    let built = match manifest.language {
        Language::Rust => build_rust(&job),
        Language::Javascript => build_js(&job),
        Language::Python => build_python(&job),
        Language::C => build_c(&job),
    };
    if let Err(error) = built {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    fs::rename(&partial, &out).with_context(|| format!("cannot write {}", out.display()))?;
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "built {} ({} {}, {:.1} MiB) in {:.1} s",
        out.display(),
        manifest.world.name(),
        manifest.name,
        size as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// What a build works with.
struct Job<'a> {
    /// The plugin's folder.
    dir: &'a Path,
    manifest: &'a Manifest,
    /// weir's source folder (the contract).
    home: &'a Path,
    /// The language's SDK.
    sdk: &'a Path,
    /// Where the component goes.
    out: &'a Path,
}

fn entry<'a>(manifest: &'a Manifest, what: &str) -> anyhow::Result<&'a str> {
    manifest
        .entry
        .as_deref()
        .with_context(|| format!("weir-plugin.toml: `entry` must name the plugin's {what}"))
}

fn build_rust(&Job { dir, out, .. }: &Job<'_>) -> anyhow::Result<()> {
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

fn build_js(
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
    // Installed when missing, and again when the lock changed since.
    let installed = fs::metadata(dir.join("node_modules/.package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    let locked = fs::metadata(dir.join("package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    if installed.is_none() || locked.is_some_and(|locked| Some(locked) > installed) {
        let ci = locked.is_some();
        execute(
            Command::new(&npm)
                .args([if ci { "ci" } else { "install" }, "--no-audit", "--no-fund"])
                .current_dir(dir),
            "installing the plugin's npm packages",
        )?;
    }
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

fn build_python(
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

/// The clang packages that build C plugins, on Debian.
const C_TOOLS: &str = "clang, lld, wasi-libc and clang's wasm32 runtime (on Debian: `apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32`)";

fn build_c(
    &Job {
        dir,
        manifest,
        home,
        sdk,
        out,
    }: &Job<'_>,
) -> anyhow::Result<()> {
    let world = manifest.world.name();
    let clang = ["clang-14", "clang"]
        .into_iter()
        .find(|clang| {
            Command::new(clang)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .with_context(|| format!("clang is missing; install {C_TOOLS}"))?;
    // The world's bindings, from the contract.
    let bindings = dir.join("target/bindings");
    fs::create_dir_all(&bindings)
        .with_context(|| format!("cannot create {}", bindings.display()))?;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(home.join("wit"))
        .context("cannot read weir's contract")?;
    let world_id = resolve.select_world(&[package], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&resolve, world_id, &mut files)
        .context("cannot generate the C bindings")?;
    for (name, contents) in files.iter() {
        fs::write(bindings.join(name), contents)
            .with_context(|| format!("cannot write {}", bindings.join(name).display()))?;
    }
    // The plugin's sources, the SDK and the bindings, into one module.
    let mut sources: Vec<PathBuf> = Vec::new();
    for folder in [dir.to_owned(), dir.join("src")] {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "c") {
                sources.push(path);
            }
        }
    }
    if sources.is_empty() {
        bail!("{} has no .c files", dir.display());
    }
    sources.sort();
    let module = dir
        .join("target")
        .join(format!("{}.core.wasm", manifest.name));
    execute(
        Command::new(clang)
            .args([
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-Wall",
                "-Wl,--strip-debug",
            ])
            .arg(format!("-DWEIR_WORLD_{}", world.to_uppercase()))
            .arg("-I")
            .arg(sdk)
            .arg("-I")
            .arg(&bindings)
            .arg("-o")
            .arg(&module)
            .args(&sources)
            .arg(sdk.join("weir.c"))
            .arg(bindings.join(format!("{world}.c")))
            .arg(bindings.join(format!("{world}_component_type.o"))),
        &format!("compiling with {clang} (it needs {C_TOOLS})"),
    )?;
    let core = fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&core)?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .context("cannot make a component of the compiled module")?;
    fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))
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

/// True when `out` exists and is newer than every file under `inputs`
/// (dependency folders and build outputs aside).
fn is_fresh(out: &Path, inputs: &[&Path]) -> anyhow::Result<bool> {
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

fn newest(path: &Path) -> anyhow::Result<SystemTime> {
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

/// `program`, if it runs; else an error saying how to install it.
fn require(program: &str, install: &str) -> anyhow::Result<PathBuf> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(PathBuf::from(program)),
        _ => bail!("`{program}` is missing; install {install}"),
    }
}

fn execute(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?} ({what})", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
