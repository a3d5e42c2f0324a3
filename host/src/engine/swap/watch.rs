//! `weir run --watch`: a stage's plugin is swapped when its file changes on
//! disk (a rebuild), through the same checks and cut-over as the admin API.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::Swapper;

/// How long a burst of file events settles before the file is read (a
/// build writes a file in several steps).
const SETTLE: Duration = Duration::from_millis(500);

/// Watches `files` (stage name, plugin file) until the task is dropped,
/// swapping a stage when its file's content changes.
pub async fn run(swapper: Arc<Swapper>, files: Vec<(String, PathBuf)>) {
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            events.send(event.paths).ok();
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "Cannot watch the plugin files; --watch is off.");
            return;
        }
    };
    // Watch the folders: a rebuild may replace the file rather than write it.
    let folders: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|(_, file)| file.parent().map(PathBuf::from))
        .collect();
    for folder in &folders {
        if let Err(error) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            tracing::error!(folder = %folder.display(), %error, "Cannot watch a plugin folder.");
        }
    }
    tracing::info!(pipeline = %swapper.pipeline(), files = files.len(), "Watching the plugin files.");
    let by_path: HashMap<PathBuf, String> = files
        .into_iter()
        .map(|(stage, file)| (file, stage))
        .collect();
    while let Some(paths) = changes.recv().await {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut note = |paths: Vec<PathBuf>| {
            for path in paths {
                if let Some(stage) = by_path.get(&path) {
                    touched.insert(stage.clone());
                }
            }
        };
        note(paths);
        // Let the burst settle, taking what else arrives meanwhile.
        tokio::time::sleep(SETTLE).await;
        while let Ok(paths) = changes.try_recv() {
            note(paths);
        }
        for stage in touched {
            let Some((file, _)) = by_path.iter().find(|(_, s)| **s == stage) else {
                continue;
            };
            swap_if_changed(&swapper, &stage, file).await;
        }
    }
}

async fn swap_if_changed(swapper: &Swapper, stage: &str, file: &PathBuf) {
    let bytes = match tokio::fs::read(file).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "A watched plugin file cannot be read; the stage keeps its plugin.");
            return;
        }
    };
    let sha256 = crate::plugin::sha256_hex(&bytes);
    let running = swapper
        .stages()
        .await
        .into_iter()
        .find(|info| info.name == stage)
        .map(|info| info.plugin.sha256);
    if running.as_deref() == Some(sha256.as_str()) {
        return;
    }
    match swapper.swap(stage, bytes, file.display().to_string()).await {
        Ok(record) => tracing::info!(
            pipeline = %swapper.pipeline(),
            stage,
            to = %record.to,
            "The plugin file changed: swapped."
        ),
        Err(error) => tracing::warn!(
            pipeline = %swapper.pipeline(),
            stage,
            %error,
            "The plugin file changed, but the new version was not swapped in."
        ),
    }
}
