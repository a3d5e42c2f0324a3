//! The command itself: from a plugin folder to a component, renamed into
//! place only when its language's build succeeded.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::manifest::{Language, Manifest, manifest};

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

/// What a build works with.
pub(super) struct Job<'a> {
    /// The plugin's folder.
    pub(super) dir: &'a Path,
    /// The folder's `weir-plugin.toml`.
    pub(super) manifest: &'a Manifest,
    /// weir's source folder (the contract).
    pub(super) home: &'a Path,
    /// The language's SDK.
    pub(super) sdk: &'a Path,
    /// Where the component goes.
    pub(super) out: &'a Path,
}

/// Runs `weir plugin build`; returns the component's path.
pub fn run(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    let dir = &args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot find the plugin folder {}", args.dir.display()))?;
    let manifest = manifest(dir)?;
    let out = out_path(args, dir, &manifest)?;
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
        && super::fresh::is_fresh(&out, &[dir, &home.join("wit"), &sdk])?
    {
        eprintln!("{} is up to date", out.display());
        return Ok(out);
    }
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let started = Instant::now();
    build_into_place(&Job {
        dir,
        manifest: &manifest,
        home: &home,
        sdk: &sdk,
        out: &out,
    })?;
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

/// Where the component goes, absolute: the tools run in the plugin's folder.
fn out_path(args: &BuildArgs, dir: &Path, manifest: &Manifest) -> anyhow::Result<PathBuf> {
    Ok(match &args.out {
        Some(out) => {
            std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?
        }
        None => dir.join("target").join(format!("{}.wasm", manifest.name)),
    })
}

/// Builds `job` with its language's tools and renames the component to
/// `job.out`.
fn build_into_place(job: &Job<'_>) -> anyhow::Result<()> {
    let out = job.out;
    // Tools write the component next to its final name; it is renamed into
    // place, so a pipeline never loads half a file.
    let partial = out.with_extension(format!("partial-{}.wasm", std::process::id()));
    let job = Job {
        out: &partial,
        ..*job
    };
    let built = match job.manifest.language {
        Language::Rust => super::rust::build(&job),
        Language::Javascript => super::javascript::build(&job),
        Language::Python => super::python::build(&job),
        Language::C => super::c::build(&job),
    };
    if let Err(error) = built {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))
}
