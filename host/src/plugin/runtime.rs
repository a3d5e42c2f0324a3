//! The plugin runtime: one wasmtime [`Engine`] (component model, pooling
//! allocator, epoch interruption), one [`Linker`] with the contract's imports,
//! and loading — compile once, check the world and contract version, and
//! pre-instantiate.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{aggregator_world, filter_world, transform_world};
use super::cache::CompiledCache;
use super::error::LoadError;
use super::imports::{self, HostState};

/// The contract this host implements (the version of the `wit/` package).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The three kinds of plugin, one per world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `weir:plugin/filtering` (world `filter`).
    Filter,
    /// Exports `weir:plugin/transforming` (world `transform`).
    Transform,
    /// Exports `weir:plugin/aggregating` (world `aggregator`).
    Aggregator,
}

impl PluginKind {
    /// The world's name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Transform => "transform",
            Self::Aggregator => "aggregator",
        }
    }

    fn from_interface(interface: &str) -> Option<Self> {
        match interface {
            "filtering" => Some(Self::Filter),
            "transforming" => Some(Self::Transform),
            "aggregating" => Some(Self::Aggregator),
            _ => None,
        }
    }
}

/// Engine-wide options (per-stage limits live in [`super::StageLimits`]).
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Meter fuel, so stages may set a fuel budget per call. Off by default:
    /// metering slows every plugin down.
    pub fuel_metering: bool,
    /// Make plugin code visible to `perf`: `perfmap` or `jitdump` (from
    /// `WEIR_WASM_PROFILER` when built with [`RuntimeOptions::from_env`]).
    pub profiler: Option<wasmtime::ProfilingStrategy>,
    /// Keep compiled plugins here, keyed by the plugin's SHA-256 and the
    /// engine's settings, so a restart or a hot swap of a known plugin skips
    /// compiling it (seconds for JavaScript and Python plugins).
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeOptions {
    /// Defaults, with the profiler named by `WEIR_WASM_PROFILER` (`perfmap`
    /// or `jitdump`) and the compiled-plugin cache in `WEIR_PLUGIN_CACHE`, if set.
    pub fn from_env() -> Result<Self, UnknownProfiler> {
        let profiler = match std::env::var("WEIR_WASM_PROFILER").ok().as_deref() {
            None | Some("") | Some("none") => None,
            Some("perfmap") => Some(wasmtime::ProfilingStrategy::PerfMap),
            Some("jitdump") => Some(wasmtime::ProfilingStrategy::JitDump),
            Some(other) => return Err(UnknownProfiler(other.to_owned())),
        };
        Ok(Self {
            profiler,
            cache_dir: std::env::var_os("WEIR_PLUGIN_CACHE").map(PathBuf::from),
            ..Self::default()
        })
    }
}

/// `WEIR_WASM_PROFILER` names no profiler weir knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WEIR_WASM_PROFILER={0} is not a profiler; use `perfmap` or `jitdump`")]
pub struct UnknownProfiler(pub String);

/// The engine, the linker and the epoch ticker behind every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    options: RuntimeOptions,
    /// The compiled-plugin cache, when one is configured and safe to use.
    cache: Option<CompiledCache>,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Runtime {
    /// A runtime with default options.
    pub fn new() -> wasmtime::Result<Self> {
        Self::with_options(RuntimeOptions::default())
    }

    /// A runtime with `options`.
    pub fn with_options(options: RuntimeOptions) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel_metering);
        if let Some(profiler) = options.profiler {
            config.profiler(profiler);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        imports::add_to_linker(&mut linker)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop_ticker);
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        let cache = options.cache_dir.as_deref().and_then(|dir| {
            CompiledCache::open(dir)
                .inspect_err(|error| {
                    tracing::warn!(
                        %error,
                        "Not using the compiled-plugin cache: every plugin is compiled at load."
                    );
                })
                .ok()
        });
        Ok(Self {
            engine,
            linker,
            options,
            cache,
            stop_ticker,
            ticker: Some(ticker),
        })
    }

    /// The options this runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// Loads the component in `path` as plugin `name`.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            plugin: name.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        self.load(name, &bytes)
    }

    /// Compiles `bytes`, detects the world it exports and its contract
    /// version, refuses what this host cannot run, and pre-instantiates it.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let sha256 = sha256_hex(bytes);
        let component = self.compile(name, bytes, &sha256)?;
        let (kind, version) = detect_world(name, &self.engine, &component)?;
        let link = |error: wasmtime::Error| LoadError::Link {
            plugin: name.to_owned(),
            reason: format!("{error:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let pre = match kind {
            PluginKind::Filter => {
                Pre::Filter(filter_world::FilterPre::new(instance_pre).map_err(link)?)
            }
            PluginKind::Transform => {
                Pre::Transform(transform_world::TransformPre::new(instance_pre).map_err(link)?)
            }
            PluginKind::Aggregator => {
                Pre::Aggregator(aggregator_world::AggregatorPre::new(instance_pre).map_err(link)?)
            }
        };
        Ok(Arc::new(Plugin {
            name: name.to_owned(),
            kind,
            contract_version: version,
            sha256,
            engine: self.engine.clone(),
            fuel_metering: self.options.fuel_metering,
            pre,
        }))
    }
}

impl Runtime {
    /// Compiles `bytes`, or takes the compiled form from the cache.
    fn compile(&self, name: &str, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        let settings = {
            let mut hasher = std::hash::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            hasher.finish()
        };
        let cached = self.cache.as_ref().and_then(|cache| {
            cache
                .load(sha256, settings)
                .inspect_err(|error| {
                    tracing::warn!(plugin = name, %error, "Compiled plugin in the cache not used; compiling again.");
                })
                .ok()
                .flatten()
        });
        if let Some(compiled) = cached {
            // SAFETY: the bytes were sealed by this cache (an HMAC under a key
            // only this account can read, over the plugin's SHA-256, these
            // engine settings and the bytes) after `Component::serialize` of
            // an engine with these settings wrote them; wasmtime checks their
            // header too. On any error the plugin is compiled again below.
            #[allow(
                unsafe_code,
                reason = "loading weir's own sealed compiled-plugin cache"
            )]
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(
                    plugin = name,
                    error = %error,
                    "Compiled plugin in the cache is unusable; compiling again."
                ),
            }
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|error| LoadError::Compile {
                plugin: name.to_owned(),
                reason: format!("{error:#}"),
            })?;
        if let Some(cache) = &self.cache {
            let stored = component
                .serialize()
                .map_err(|error| error.to_string())
                .and_then(|compiled| {
                    cache
                        .store(sha256, settings, &compiled)
                        .map_err(|error| error.to_string())
                });
            if let Err(error) = stored {
                tracing::warn!(
                    plugin = name,
                    %error,
                    "Could not cache the compiled plugin; it will be compiled again next time."
                );
            }
        }
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// Pool sizes for a host running a few dozen plugin instances. Memory per
/// instance is capped per stage by the store limiter; the pool only bounds
/// what any instance could reserve. Tables are sized for interpreters
/// compiled to components (JavaScript, Python), which have large ones.
fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(2048)
        .total_memories(512)
        .total_tables(1024)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_core_instances_per_component(64)
        .table_elements(200_000)
        .max_core_instance_size(16 << 20)
        .max_component_instance_size(16 << 20)
        .max_memory_size(4 << 30);
    pool
}

/// Finds the one `weir:plugin/<interface>@<version>` export and checks the version.
fn detect_world(
    name: &str,
    engine: &Engine,
    component: &Component,
) -> Result<(PluginKind, semver::Version), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(export, _)| export.to_owned())
        .collect();
    let ours: Vec<(PluginKind, &str)> = exports
        .iter()
        .filter_map(|export| {
            let rest = export.strip_prefix("weir:plugin/")?;
            let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
            Some((PluginKind::from_interface(interface)?, version))
        })
        .collect();
    let [(kind, version)] = ours.as_slice() else {
        let found = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports
                .iter()
                .map(|export| format!("`{export}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(LoadError::NoWorld {
            plugin: name.to_owned(),
            found,
        });
    };
    let supported =
        semver::Version::parse(CONTRACT_VERSION).expect("the contract version is semver");
    let incompatible = || LoadError::IncompatibleVersion {
        plugin: name.to_owned(),
        found: if version.is_empty() {
            "(no version)".to_owned()
        } else {
            (*version).to_owned()
        },
        supported: CONTRACT_VERSION.to_owned(),
    };
    let found = semver::Version::parse(version).map_err(|_| incompatible())?;
    // Semver for 0.x: the minor version is the breaking one.
    let compatible = found.major == supported.major
        && (supported.major > 0 || found.minor == supported.minor)
        && found.pre.is_empty();
    if !compatible {
        return Err(incompatible());
    }
    Ok((*kind, found))
}

/// A compiled, checked, pre-instantiated plugin: instances are cheap to make.
pub struct Plugin {
    /// The name it was loaded under (labels its logs and errors).
    pub name: String,
    /// Which world it exports.
    pub kind: PluginKind,
    /// The contract version it was built against.
    pub contract_version: semver::Version,
    /// The SHA-256 of its component file, in hex: the version dead letters,
    /// logs and the admin API name it by.
    pub sha256: String,
    pub(super) engine: Engine,
    pub(super) fuel_metering: bool,
    pub(super) pre: Pre,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("contract_version", &self.contract_version)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Fails unless the plugin is of `kind`.
    pub fn expect_kind(&self, kind: PluginKind) -> Result<(), LoadError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(LoadError::WrongWorld {
                plugin: self.name.clone(),
                found: self.kind.world(),
                expected: kind.world(),
            })
        }
    }
}

impl Plugin {
    /// The names of what the component imports and exports (interfaces and
    /// functions), as `weir plugin inspect` shows them.
    pub fn interfaces(&self) -> (Vec<String>, Vec<String>) {
        let component = match &self.pre {
            Pre::Filter(pre) => pre.instance_pre().component(),
            Pre::Transform(pre) => pre.instance_pre().component(),
            Pre::Aggregator(pre) => pre.instance_pre().component(),
        };
        let kind = component.component_type();
        let imports = kind.imports(&self.engine).map(|(name, _)| name.to_owned());
        let exports = kind.exports(&self.engine).map(|(name, _)| name.to_owned());
        (imports.collect(), exports.collect())
    }
}

pub(super) enum Pre {
    Filter(filter_world::FilterPre<HostState>),
    Transform(transform_world::TransformPre<HostState>),
    Aggregator(aggregator_world::AggregatorPre<HostState>),
}

/// The SHA-256 of a component, in hex: the version logs, dead letters and
/// the admin API name a plugin by.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
