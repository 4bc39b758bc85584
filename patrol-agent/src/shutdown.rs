//! [`Tasks`]: every task an agent runs, in one `JoinSet`, stopped by one
//! cancellation token cloned into each (the mini-redis `shutdown.rs`
//! pattern). The agent's transport, timer and owner tasks are spawned here
//! by `agent::start`; the daemon adds its control listener, seed refresher
//! and key reloader. Stopping cancels the token and waits for every task;
//! dropping the set aborts whatever is left.

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One agent's tasks and the token that stops them.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<()>,
    token: CancellationToken,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// A clone of the token: a task ends soon after it is cancelled.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Run `task` until it ends or the token is cancelled, whichever comes
    /// first: a task that forgets to watch the token still stops.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        let token = self.token.clone();
        self.set.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Cancel the token and wait for every task to end.
    pub async fn shutdown(&mut self) {
        self.token.cancel();
        while self.set.join_next().await.is_some() {}
    }
}
