//! Tools for plugin authors, run with no Kafka and no database:
//!
//! - [`scaffold`]: `weir plugin new`, a working plugin with its own test;
//! - [`build`]: `weir plugin build`, a plugin in any of weir's languages
//!   into a component;
//! - [`local`]: `weir plugin test`, a plugin over a JSON Lines file;
//! - [`inspect`]: `weir plugin inspect`, what a component is and declares.

pub mod build;
pub mod inspect;
pub mod local;
pub mod scaffold;

use crate::plugin::{Runtime, RuntimeOptions};

/// The runtime the authoring commands load plugins into: compiled plugins
/// are cached as `weir run` caches them.
fn runtime() -> anyhow::Result<Runtime> {
    let mut options = RuntimeOptions::from_env().map_err(anyhow::Error::msg)?;
    if options.cache_dir.is_none() {
        options.cache_dir = crate::dirs::cache().map(|dir| dir.join("compiled"));
    }
    Runtime::with_options(options)
        .map_err(|error| anyhow::anyhow!("cannot start the Wasm engine: {error:#}"))
}
