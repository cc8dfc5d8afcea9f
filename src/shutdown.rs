//! The stop signal every service listens to: a watch channel that turns `true` once.

use tokio::sync::watch;

pub type Shutdown = watch::Receiver<bool>;

/// A new signal: the sender stops everything, receivers are handed to services.
pub fn channel() -> (watch::Sender<bool>, Shutdown) {
    watch::channel(false)
}

/// Completes once the signal is raised (or its sender is gone).
pub async fn stopped(shutdown: &mut Shutdown) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
