//! [`InvalidationListener`]: applies other instances' revocations to this instance's
//! memory tier, through Redis pub/sub.
//!
//! Pub/sub delivers at most once: a message published while the subscription connection
//! is down is lost. So the listener flushes its target whenever that connection drops,
//! whenever it is re-established (messages may have been published in between), and
//! whenever it falls behind its buffer. In every case the memory tier's own TTL bounds
//! how long a missed message could matter. The same channel carries session-state
//! changes (`t`, `w`), applied to a [`StateInvalidation`] target when one is given.

use std::sync::Arc;
use std::time::Duration;

use cache_core::invalidation::Invalidation;
use cache_core::{RevocationSink, StateInvalidation, StoreError, UserCache};
use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::RedisConfig;
use crate::error::RedisError;
use crate::keys::Keys;

/// What the listener feeds: a tier that can drop revoked sessions and stale users.
pub trait InvalidationTarget: RevocationSink + UserCache {}

impl<T: RevocationSink + UserCache + ?Sized> InvalidationTarget for T {}

/// Subscribes to the invalidation channel and applies its messages to a target (the local
/// memory tier). Messages published by this instance itself are applied too, which is
/// harmless. Stops on drop or with [`InvalidationListener::stop`].
pub struct InvalidationListener {
    client: Client,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for InvalidationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationListener").finish_non_exhaustive()
    }
}

impl InvalidationListener {
    /// Connects a dedicated client (in the background, like [`crate::RedisStore`]) and
    /// starts applying messages to `target`. Fails only on an invalid configuration;
    /// waits at most `connect_timeout` for the first subscription.
    pub async fn spawn(
        config: &RedisConfig,
        target: Arc<dyn InvalidationTarget>,
    ) -> Result<Self, StoreError> {
        Self::spawn_for(config, Targets { sessions: Some(target), states: None }).await
    }

    /// As [`Self::spawn`], applying the messages about session states to `states` (a
    /// memory tier of states) and ignoring those about sessions.
    pub async fn spawn_for_states(
        config: &RedisConfig,
        states: Arc<dyn StateInvalidation>,
    ) -> Result<Self, StoreError> {
        Self::spawn_for(config, Targets { sessions: None, states: Some(states) }).await
    }

    async fn spawn_for(config: &RedisConfig, target: Targets) -> Result<Self, StoreError> {
        let client = config.builder()?.build().map_err(RedisError::from)?;
        let channel = Keys::new(&config.key_prefix).channel().to_owned();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        // Receivers first, so that neither the first connection nor a message is missed.
        let task = tokio::spawn(run(
            client.clone(),
            client.message_rx(),
            client.reconnect_rx(),
            client.error_rx(),
            channel,
            target,
            subscribed_tx,
        ));
        drop(client.connect());
        let _ = tokio::time::timeout(config.connect_timeout, subscribed_rx).await;
        Ok(Self { client, task })
    }

    /// Unsubscribes and closes the connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.client.quit().await;
    }
}

impl Drop for InvalidationListener {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// What the messages are applied to.
struct Targets {
    sessions: Option<Arc<dyn InvalidationTarget>>,
    states: Option<Arc<dyn StateInvalidation>>,
}

async fn flush(target: &Targets, why: &'static str) {
    if let Some(states) = &target.states {
        states.clear_states();
    }
    let Some(sessions) = &target.sessions else { return };
    if let Err(error) = sessions.clear().await {
        tracing::warn!(%error, why, "could not flush the memory tier");
    }
}

/// Applies one decoded message.
async fn apply(target: &Targets, message: Invalidation) {
    match (message, &target.sessions, &target.states) {
        (Invalidation::Revoked(revocation), Some(sessions), _) => {
            if let Err(error) = sessions.apply_revocations(&[revocation]).await {
                tracing::warn!(%error, "could not apply a revocation; flushing");
                flush(target, "apply failed").await;
            }
        }
        (Invalidation::User(user), Some(sessions), _) => {
            if let Err(error) = sessions.invalidate_user(user).await {
                tracing::warn!(%error, "could not drop a user; flushing");
                flush(target, "invalidate failed").await;
            }
        }
        (Invalidation::State(key), _, Some(states)) => states.forget_state(&key),
        (Invalidation::UserStates(user), _, Some(states)) => states.forget_user_states(user),
        // A message for a cache this listener does not feed.
        _ => {}
    }
}

/// Subscribes to `channel`, retrying with a backoff (up to 1 s) until it works: a
/// listener that silently stayed unsubscribed would never flush again.
async fn subscribe(client: &Client, channel: &str) {
    let mut backoff = Duration::from_millis(20);
    loop {
        match client.subscribe(channel).await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(%error, "invalidation subscribe failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn run(
    client: Client,
    mut messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    mut errors: tokio::sync::broadcast::Receiver<(
        fred::error::Error,
        Option<fred::types::config::Server>,
    )>,
    channel: String,
    target: Targets,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let mut subscribed = Some(subscribed);
    let mut connected = false;
    loop {
        tokio::select! {
            // Messages first: a burst is applied before a reconnect flushes anyway.
            biased;
            message = messages.recv() => match message {
                Ok(message) => {
                    if message.channel != channel.as_str() {
                        continue;
                    }
                    let Some(text) = message.value.as_str().map(|s| s.into_owned()) else { continue };
                    match Invalidation::decode(&text) {
                        Some(message) => apply(&target, message).await,
                        None => tracing::debug!("ignored a malformed invalidation message"),
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "invalidation listener fell behind; flushing the memory tier");
                    flush(&target, "lagged").await;
                }
                Err(RecvError::Closed) => return,
            },
            event = reconnects.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Subscriptions do not survive a new connection: subscribe again, then
                    // flush what may have been missed while no subscription existed.
                    subscribe(&client, &channel).await;
                    flush(&target, "resubscribed").await;
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                        tracing::info!("listening for invalidations");
                    } else {
                        tracing::info!("invalidation channel back; memory tier flushed");
                    }
                    connected = true;
                }
                Err(RecvError::Closed) => return,
            },
            event = errors.recv() => match event {
                // Once per outage: while disconnected nothing new can be missed that the
                // flush after resubscribing does not cover (and the memory TTL bounds).
                Ok((error, _)) if connected => {
                    tracing::warn!(%error, "invalidation channel lost; memory tier flushed");
                    connected = false;
                    flush(&target, "connection lost").await;
                }
                Ok((error, _)) => tracing::debug!(%error, "invalidation channel still down"),
                Err(RecvError::Lagged(_)) => flush(&target, "lagged").await,
                Err(RecvError::Closed) => return,
            },
        }
    }
}
