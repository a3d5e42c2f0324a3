//! C plugins, with clang as the only outside tool: weir generates the
//! world's bindings itself (wit-bindgen's C generator) and makes the
//! component itself (wit-component).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::job::Job;
use super::tools::execute;

/// The clang packages that build C plugins, on Debian.
const C_TOOLS: &str = "clang, lld, wasi-libc and clang's wasm32 runtime (on Debian: `apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32`)";

/// Builds a C plugin with clang and wit-component.
pub(super) fn build(job: &Job<'_>) -> anyhow::Result<()> {
    let clang = clang()?;
    let bindings = bindings(job)?;
    let sources = sources(job.dir)?;
    let module = compile(job, clang, &bindings, &sources)?;
    componentize(&module, job.out)
}

/// The first clang that runs.
fn clang() -> anyhow::Result<&'static str> {
    ["clang-14", "clang"]
        .into_iter()
        .find(|clang| {
            Command::new(clang)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .with_context(|| format!("clang is missing; install {C_TOOLS}"))
}

/// Writes the world's bindings, from the contract, to `target/bindings` of
/// the plugin's folder; returns that folder.
fn bindings(
    &Job {
        dir,
        manifest,
        home,
        ..
    }: &Job<'_>,
) -> anyhow::Result<PathBuf> {
    let bindings = dir.join("target/bindings");
    fs::create_dir_all(&bindings)
        .with_context(|| format!("cannot create {}", bindings.display()))?;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(home.join("wit"))
        .context("cannot read weir's contract")?;
    let world_id = resolve.select_world(&[package], Some(manifest.world.name()))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&resolve, world_id, &mut files)
        .context("cannot generate the C bindings")?;
    for (name, contents) in files.iter() {
        fs::write(bindings.join(name), contents)
            .with_context(|| format!("cannot write {}", bindings.join(name).display()))?;
    }
    Ok(bindings)
}

/// The plugin's `.c` files (in its folder and its `src`), sorted.
fn sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
    Ok(sources)
}

/// Compiles the plugin's sources, the SDK and the bindings into one core
/// module; returns its path.
fn compile(
    &Job {
        dir, manifest, sdk, ..
    }: &Job<'_>,
    clang: &str,
    bindings: &Path,
    sources: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    let world = manifest.world.name();
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
            .arg(bindings)
            .arg("-o")
            .arg(&module)
            .args(sources)
            .arg(sdk.join("weir.c"))
            .arg(bindings.join(format!("{world}.c")))
            .arg(bindings.join(format!("{world}_component_type.o"))),
        &format!("compiling with {clang} (it needs {C_TOOLS})"),
    )?;
    Ok(module)
}

/// Makes a component of the core module at `module`, with the WASI adapter
/// when it imports WASI preview 1, and writes it to `out`.
fn componentize(module: &Path, out: &Path) -> anyhow::Result<()> {
    let core = fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
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
