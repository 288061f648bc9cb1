//! Waiting for a condition without sleeping for a guessed time: poll it until a deadline.

use std::time::{Duration, Instant};

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Polls `check` until it holds; panics naming `what` after [`EVENTUALLY`].
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(EVENTUALLY, what, check).await;
}

/// Polls `check` every 20 ms until it holds; panics naming `what` once `limit` has passed.
pub async fn eventually_within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
