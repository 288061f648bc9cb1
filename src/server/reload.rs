//! Reloading the configuration: on SIGHUP and when the file changes.
//!
//! A reload loads, validates and builds the whole new pipeline first; only then is it
//! swapped in, atomically. A config that fails any check is logged with every problem and
//! the old pipeline keeps serving. Settings bound at start (`server.listen`, timeouts of the
//! listener, workers) need a restart; a reload that changes them says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::SharedPipeline;
use crate::config::ServerConfig;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::pipeline::Pipeline;

/// Why a reload was refused (the old config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Build(String),
}

pub struct Reloader {
    path: PathBuf,
    pipeline: SharedPipeline,
    /// The listener settings in force, to warn when a reload would need a restart.
    server: ServerConfig,
    /// The file's bytes at the last load, to see changes without trusting mtimes.
    last: Mutex<Option<Vec<u8>>>,
    /// Counts of reloads that took effect and that were refused.
    outcomes: tokio::sync::watch::Sender<ReloadCounts>,
    metrics: Arc<Metrics>,
    /// Live TLS configs by listener address: certificates are re-read on reload.
    tls: Vec<super::TlsHandle>,
    /// The process's stores: a reload keeps the login counters and the Redis connection.
    stores: Arc<crate::store::Stores>,
}

/// How many reloads took effect, and how many were refused, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    pub applied: u64,
    pub refused: u64,
}

impl Reloader {
    pub fn new(
        path: &Path,
        pipeline: SharedPipeline,
        server: ServerConfig,
        metrics: Arc<Metrics>,
        tls: Vec<super::TlsHandle>,
    ) -> Reloader {
        Reloader {
            tls,
            metrics,
            path: path.to_path_buf(),
            pipeline,
            server,
            last: Mutex::new(std::fs::read(path).ok()),
            outcomes: tokio::sync::watch::Sender::new(ReloadCounts::default()),
            stores: Arc::default(),
        }
    }

    /// Builds reloaded pipelines in `stores` (the ones the first pipeline uses).
    pub fn with_stores(mut self, stores: Arc<crate::store::Stores>) -> Reloader {
        self.stores = stores;
        self
    }

    /// Reload outcomes so far; the receiver sees every change (for tests and metrics).
    pub fn outcomes(&self) -> tokio::sync::watch::Receiver<ReloadCounts> {
        self.outcomes.subscribe()
    }

    /// Loads, checks and builds the file, then swaps it in; on any problem keeps the old one.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let bytes = std::fs::read(&self.path).ok();
        let result = crate::load::load(&self.path)
            .map_err(ReloadError::from)
            .and_then(|loaded| {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                let s = &loaded.config.server;
                if s.listen != self.server.listen
                    || s.header_read_timeout != self.server.header_read_timeout
                    || s.park_idle_after != self.server.park_idle_after
                    || s.max_connections != self.server.max_connections
                    || s.workers != self.server.workers
                {
                    tracing::warn!(
                        "server.listen, header_read_timeout, park_idle_after, \
                        max_connections and workers take effect at the next restart"
                    );
                }
                // Listeners are bound once: a new [forward_auth] listen needs a restart too
                // (the settings behind the endpoints change at once).
                let decisions = |l: &[crate::config::ListenerConfig]| -> Vec<_> {
                    l.iter()
                        .filter(|l| l.front == crate::config::Front::ForwardAuth)
                        .map(|l| l.addr)
                        .collect()
                };
                if decisions(&s.listeners) != decisions(&self.server.listeners) {
                    tracing::warn!("forward_auth.listen takes effect at the next restart");
                }
                let pipeline = Pipeline::build_in(
                    &loaded.config,
                    &loaded.built,
                    self.metrics.clone(),
                    &self.stores,
                )
                .map_err(ReloadError::Build)?;
                // New certificates for the listeners we have (matched by address). The load
                // built them all before this point, so a broken one leaves every listener as it
                // was.
                for (addr, live) in &self.tls {
                    let built = s
                        .listeners
                        .iter()
                        .position(|l| l.addr == *addr)
                        .and_then(|i| loaded.built.tls.get(i).cloned().flatten());
                    if let Some(config) = built {
                        live.store(config);
                    }
                }
                self.pipeline.store(Arc::new(pipeline));
                Ok(())
            });
        if let Ok(mut last) = self.last.lock() {
            *last = bytes;
        }
        match &result {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), "configuration reloaded");
                self.outcomes.send_modify(|c| c.applied += 1);
                self.metrics
                    .reloads
                    .get_or_create(&OutcomeLabels {
                        outcome: "applied".into(),
                    })
                    .inc();
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), "reload refused, the previous \
                    configuration keeps serving: {e}");
                self.outcomes.send_modify(|c| c.refused += 1);
                self.metrics
                    .reloads
                    .get_or_create(&OutcomeLabels {
                        outcome: "refused".into(),
                    })
                    .inc();
            }
        }
        result
    }

    /// Reloads whenever the file's content changes, checking every `poll`.
    pub async fn watch(self: Arc<Self>, poll: Duration) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = std::fs::read(&self.path).ok();
            let changed = self.last.lock().map(|last| *last != now).unwrap_or(false);
            if changed && now.is_some() {
                let _ = self.reload();
            }
        }
    }

    /// Reloads on every SIGHUP.
    #[cfg(unix)]
    pub async fn on_sighup(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by editing the file instead");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = self.reload();
        }
    }
}
