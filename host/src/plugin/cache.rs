//! The compiled-plugin cache: native code wasmtime compiled from a plugin,
//! kept so a restart does not compile it again. Loading native code runs
//! it, so the cache trusts only what this process's account wrote:
//!
//! - the folder must belong to this account and be writable by no one else
//!   (weir makes it so when it creates it; otherwise the cache is not used);
//! - each file is sealed: an HMAC-SHA-256, under a key only this account can
//!   read (`key` in the folder), over the plugin's SHA-256, wasmtime's
//!   settings and the compiled bytes; a file whose seal does not match (one
//!   copied from elsewhere, planted, truncated, or for another plugin) is
//!   never loaded, and the plugin is compiled again;
//! - files are written to a fresh private temporary file and renamed into
//!   place;
//! - the folder is kept under a size (`WEIR_PLUGIN_CACHE_MAX_MB`, 2048 by
//!   default) by removing the files used least recently.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a sealed file starts with.
const MAGIC: &[u8; 8] = b"WEIRCW01";
const SEAL: usize = 32;
/// The cache's default size bound.
const DEFAULT_MAX_MB: u64 = 2048;

/// A cache folder weir may load native code from.
#[derive(Debug)]
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
    max_bytes: u64,
}

/// Why the cache is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The folder or its key is not this account's alone.
    #[error("{} is not safe to load native code from: {why}", path.display())]
    Unsafe {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// True when `metadata` is this account's and writable by no one else.
fn private(path: &Path, metadata: &fs::Metadata) -> Result<(), CacheError> {
    let me = nix::unistd::geteuid().as_raw();
    let why = if metadata.uid() != me {
        format!(
            "it belongs to user {}, not to this account ({me})",
            metadata.uid()
        )
    } else if metadata.mode() & 0o022 != 0 {
        format!(
            "others can write to it (mode {:o}); `chmod go-w` it",
            metadata.mode() & 0o777
        )
    } else {
        return Ok(());
    };
    Err(CacheError::Unsafe {
        path: path.to_owned(),
        why,
    })
}

impl CompiledCache {
    /// The cache in `dir`, created private if missing; an error when the
    /// folder or its key could be someone else's.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        private(dir, &fs::metadata(dir).map_err(io(dir))?)?;
        let key_path = dir.join("key");
        if !key_path.exists() {
            // Written whole, then put in place unless another weir did it
            // first (whose key then serves both).
            let key: [u8; 32] = rand::random();
            let mut file = tempfile::Builder::new()
                .prefix(".key-")
                .tempfile_in(dir)
                .map_err(io(dir))?;
            file.write_all(&key).map_err(io(&key_path))?;
            if let Err(error) = file.persist_noclobber(&key_path)
                && error.error.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(io(&key_path)(error.error));
            }
        }
        let metadata = fs::symlink_metadata(&key_path).map_err(io(&key_path))?;
        private(&key_path, &metadata)?;
        if metadata.mode() & 0o077 != 0 || !metadata.is_file() {
            return Err(CacheError::Unsafe {
                path: key_path,
                why: "the key must be a file only its owner can read (mode 600)".to_owned(),
            });
        }
        let bytes = fs::read(&key_path).map_err(io(&key_path))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CacheError::Unsafe {
            path: key_path.clone(),
            why: "the key is not 32 bytes".to_owned(),
        })?;
        let max_mb = std::env::var("WEIR_PLUGIN_CACHE_MAX_MB")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(DEFAULT_MAX_MB);
        Ok(Self {
            dir: dir.to_owned(),
            key,
            max_bytes: max_mb << 20,
        })
    }

    /// The file of the plugin whose SHA-256 is `sha256` compiled with
    /// wasmtime settings `settings`.
    fn path(&self, sha256: &str, settings: u64) -> PathBuf {
        self.dir.join(format!("{sha256}-{settings:016x}.cwasm"))
    }

    fn seal(&self, sha256: &str, settings: u64, compiled: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(sha256.as_bytes());
        mac.update(&settings.to_le_bytes());
        mac.update(compiled);
        mac
    }

    /// The compiled bytes of that plugin, if a file sealed for it is there
    /// (its use time refreshed); `Err` says why a file there was not used.
    pub fn load(&self, sha256: &str, settings: u64) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.path(sha256, settings);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io(&path)(error)),
        };
        private(&path, &metadata)?;
        // Read into memory rather than mapped: a file truncated under a
        // mapping would crash the host.
        let mut bytes = fs::read(&path).map_err(io(&path))?;
        let unsealed = |why: &str| CacheError::Unsafe {
            path: path.clone(),
            why: why.to_owned(),
        };
        if bytes.len() < MAGIC.len() + SEAL || !bytes.starts_with(MAGIC) {
            return Err(unsealed("not a file weir sealed"));
        }
        let compiled = bytes.split_off(MAGIC.len() + SEAL);
        self.seal(sha256, settings, &compiled)
            .verify_slice(&bytes[MAGIC.len()..])
            .map_err(|_| unsealed("its seal does not match this plugin and this cache's key"))?;
        let _ = fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(SystemTime::now()));
        Ok(Some(compiled))
    }

    /// Stores `compiled` for that plugin, sealed, then keeps the folder
    /// under its size bound.
    pub fn store(&self, sha256: &str, settings: u64, compiled: &[u8]) -> Result<(), CacheError> {
        let path = self.path(sha256, settings);
        let mut file = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        let seal = self
            .seal(sha256, settings, compiled)
            .finalize()
            .into_bytes();
        file.write_all(MAGIC)
            .and_then(|()| file.write_all(&seal))
            .and_then(|()| file.write_all(compiled))
            .map_err(io(&path))?;
        file.persist(&path)
            .map_err(|error| io(&path)(error.error))?;
        self.prune();
        Ok(())
    }

    /// Removes the least recently used files until the folder holds at
    /// most its bound.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                Some((metadata.modified().ok()?, metadata.len(), entry.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "Compiled-plugin cache over its size; removed the least recently used.");
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_sealed_file_loads_and_a_planted_one_does_not() {
        let dir = scratch("planted");
        let cache = CompiledCache::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        cache.store("aaaa", 7, b"native code").unwrap();
        assert_eq!(cache.load("aaaa", 7).unwrap().unwrap(), b"native code");
        assert_eq!(cache.load("aaaa", 8).unwrap(), None, "other settings");

        // A file planted under the name of another plugin: never loaded.
        fs::copy(cache.path("aaaa", 7), cache.path("bbbb", 7)).unwrap();
        assert!(matches!(
            cache.load("bbbb", 7),
            Err(CacheError::Unsafe { .. })
        ));
        fs::write(
            cache.path("cccc", 7),
            b"WEIRCW01 raw native code, no valid seal",
        )
        .unwrap();
        fs::set_permissions(cache.path("cccc", 7), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            cache.load("cccc", 7),
            Err(CacheError::Unsafe { .. })
        ));
        // Changed bytes under the right name.
        let mut bytes = fs::read(cache.path("aaaa", 7)).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(cache.path("aaaa", 7), bytes).unwrap();
        assert!(matches!(
            cache.load("aaaa", 7),
            Err(CacheError::Unsafe { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        let dir = scratch("open");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = CompiledCache::open(&dir).unwrap_err();
        assert!(error.to_string().contains("others can write"), "{error}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let cache = CompiledCache::open(&dir).unwrap();
        cache.store("aaaa", 1, b"x").unwrap();
        fs::set_permissions(cache.path("aaaa", 1), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            cache.load("aaaa", 1),
            Err(CacheError::Unsafe { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_least_recently_used_files_go_when_the_folder_is_full() {
        let dir = scratch("prune");
        let mut cache = CompiledCache::open(&dir).unwrap();
        cache.max_bytes = 3 * (1000 + (MAGIC.len() + SEAL) as u64);
        for (index, name) in ["a", "b", "c"].iter().enumerate() {
            cache.store(name, 1, &[0; 1000]).unwrap();
            let when =
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + index as u64);
            fs::File::options()
                .write(true)
                .open(cache.path(name, 1))
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        // `a` is used again: `b` is now the least recently used.
        assert!(cache.load("a", 1).unwrap().is_some());
        cache.store("d", 1, &[0; 1000]).unwrap();
        assert!(cache.load("b", 1).unwrap().is_none(), "b was removed");
        for name in ["a", "c", "d"] {
            assert!(cache.load(name, 1).unwrap().is_some(), "{name} kept");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
