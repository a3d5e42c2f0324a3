//! Whether a component is newer than everything it is built from, so an
//! unchanged plugin is not built again.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;

/// True when `out` exists and is newer than every file under `inputs`
/// (dependency folders and build outputs aside).
pub(super) fn is_fresh(out: &Path, inputs: &[&Path]) -> anyhow::Result<bool> {
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

/// The newest modification time of `path` and everything under it.
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
