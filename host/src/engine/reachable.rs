//! Starting against services that may not be up yet: retry what failed
//! because a service did not answer, with backoff, until it does or the
//! pipeline is stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::error::TopologyError;

/// Runs `attempt` until it succeeds, retrying with backoff while it fails
/// because a service (the registry, PostgreSQL) is unreachable; other
/// errors, or a stop, end it.
pub async fn until_reachable<T, F, Fut>(
    stop: &AtomicBool,
    what: &str,
    mut attempt: F,
) -> Result<T, TopologyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TopologyError>>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_unreachable() && !stop.load(Ordering::Relaxed) => {
                tracing::warn!(%error, retry_in = ?backoff, "{what} failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
