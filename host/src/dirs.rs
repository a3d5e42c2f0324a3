//! Where weir keeps things outside a project: its cache (compiled plugins,
//! plugin toolchains) and its own source folder (the WIT contract and the
//! SDKs that plugin builds use).

use std::path::PathBuf;

/// `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.
pub fn cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("weir"))
}

/// weir's source folder, which holds `wit/` and `plugins/sdk/`:
/// `$WEIR_HOME`, else the folder this weir was built from.
pub fn home() -> anyhow::Result<PathBuf> {
    let home = match std::env::var_os("WEIR_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    };
    let home = home.canonicalize().unwrap_or(home);
    if !home.join("wit").is_dir() || !home.join("plugins/sdk").is_dir() {
        anyhow::bail!(
            "cannot find weir's contract and SDKs in {} (no wit/ and plugins/sdk/ there): set WEIR_HOME to weir's source folder",
            home.display()
        );
    }
    Ok(home)
}
