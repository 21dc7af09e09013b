//! Loading a gateway from its configuration and running it until shutdown.
//!
//! `serve`, `demo`, the integration tests and the load benchmark all go through here, so what
//! they exercise is exactly what production runs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::{AuditLog, AuditWriter, Checkpointer};
use crate::auth::TokenValidator;
use crate::config::{Diagnostics, GatewayConfig, Vars, load_project};
use crate::connectors::{Connectors, build_shielded_connectors};
use crate::consent::ConsentLedger;
use crate::graph::{Graph, GraphOptions, GraphSummary, TrustServices, build_graph};
use crate::http::{AppState, app};
use crate::identity::Crosswalk;
use crate::shield::ShieldHub;
use crate::signing::{SigningError, SigningKey};
use crate::store::{Store, StoreError};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartGatewayError {
    /// The configuration has errors (all of them are listed).
    #[error("{0}")]
    Config(#[from] Diagnostics),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key for receipts and checkpoints could not be read or made.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// `[cache] redis_url` is not a Redis URL (Redis being down is not an error: the tier
    /// then misses until it is back).
    #[error("civicgraph.toml [cache] redis_url: {0}")]
    CacheTier(crate::cache_tier::CacheTierError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A validated configuration and its graph, before anything is opened or bound.
#[derive(Debug)]
pub struct Checked {
    /// `civicgraph.toml` as loaded.
    pub config: GatewayConfig,
    /// The executable graph.
    pub graph: Graph,
    /// The built connectors (the graph holds them too), for attaching the store.
    pub connectors: Connectors,
    /// The bearer-token validator for `[[auth.issuers]]`.
    pub tokens: TokenValidator,
    /// The directory of `civicgraph.toml`, which relative paths in it start from.
    pub root: PathBuf,
}

/// Loads and validates everything, opening nothing: what `civicgraph check` runs.
pub fn check(config_path: &Path, vars: &Vars) -> Result<Checked, Diagnostics> {
    let (project, mut diagnostics) = load_project(config_path, vars);
    let hub = ShieldHub::new(project.gateway.shield.enabled);
    let (connectors, mut connector_problems) = build_shielded_connectors(&project.connectors, hub);
    diagnostics.append(&mut connector_problems);
    // A connector that parsed but did not build is already reported; its fields must not
    // also be called "unknown connector".
    let mut broken = project.broken_connectors.clone();
    for loaded in &project.connectors {
        let name = loaded.config.name().get_ref();
        if connectors.get(name).is_none() {
            broken.insert(name.clone());
        }
    }
    let options = GraphOptions {
        introspection: project.gateway.server.introspection,
        max_depth: project.gateway.server.max_depth,
        trust: Arc::new(project.gateway.trust.clone()),
    };
    match build_graph(&project.schema_files, &connectors, &broken, &options) {
        Ok(graph) if diagnostics.is_empty() => Ok(Checked {
            config: project.gateway,
            graph,
            connectors,
            tokens: project.tokens,
            root: project.root,
        }),
        Ok(_) => Err(sorted(diagnostics)),
        Err(mut graph_problems) => {
            diagnostics.append(&mut graph_problems);
            Err(sorted(diagnostics))
        }
    }
}

/// Problems in file and line order, so a user can walk through them top to bottom.
fn sorted(mut diagnostics: Vec<crate::config::Diagnostic>) -> Diagnostics {
    diagnostics.sort_by(|a, b| {
        let key = |d: &crate::config::Diagnostic| {
            d.location
                .as_ref()
                .map(|l| (l.path.clone(), l.line, l.column))
        };
        key(a).cmp(&key(b))
    });
    Diagnostics(diagnostics)
}

/// A loaded gateway, ready to serve.
#[derive(Debug, Clone)]
pub struct Gateway {
    state: AppState,
    listen: SocketAddr,
    shutdown_grace: Duration,
    checkpoints: CheckpointPlan,
}

/// What the audit checkpointer needs; it starts when the gateway serves and writes a last
/// checkpoint when it stops.
#[derive(Debug, Clone)]
struct CheckpointPlan {
    audit: AuditLog,
    key: SigningKey,
    path: PathBuf,
    interval: Duration,
}

impl Gateway {
    /// Loads the configuration, builds the graph and opens the store.
    pub async fn load(config_path: &Path, vars: &Vars) -> Result<Self, StartGatewayError> {
        let checked = check(config_path, vars)?;
        let key =
            SigningKey::load_or_create(&checked.root.join(&checked.config.trust.signing_key))?;
        let store = Store::connect(&checked.config.storage).await?;
        checked.connectors.attach(&store).await;
        if let Some(url) = checked
            .config
            .cache
            .redis_url
            .as_ref()
            .filter(|url| !url.expose().is_empty())
        {
            let tier = crate::cache_tier::RedisTier::new(
                url.expose(),
                checked
                    .config
                    .cache
                    .redis_secret
                    .as_ref()
                    .filter(|secret| !secret.expose().is_empty())
                    .map(|secret| secret.expose().as_bytes()),
                Duration::from_millis(checked.config.cache.redis_timeout_ms.max(1)),
            )
            .map_err(StartGatewayError::CacheTier)?;
            checked.connectors.hub().set_redis(tier);
        }
        let audit = AuditLog::new(
            store.clone(),
            Duration::from_millis(checked.config.audit.timeout_ms.max(1)),
        );
        let services = TrustServices {
            ledger: ConsentLedger::new(store.clone(), Arc::clone(checked.graph.trust())),
            audit: audit.clone(),
            writer: AuditWriter::spawn(audit.clone()),
            signing: key.clone(),
        };
        let graph = checked
            .graph
            .with_crosswalk(Crosswalk::new(store.clone()))
            .with_trust_services(services);
        let checkpoints = CheckpointPlan {
            audit,
            key,
            path: checked.root.join(&checked.config.audit.checkpoint_file),
            interval: Duration::from_secs(checked.config.audit.checkpoint_interval_s.max(1)),
        };
        let server = checked.config.server;
        Ok(Self {
            listen: server.listen,
            shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
            state: AppState::new(graph, store, server, checked.config.auth, checked.tokens),
            checkpoints,
        })
    }

    /// The identity crosswalk in this gateway's store (for loading links, e.g. the demo's).
    pub fn crosswalk(&self) -> Crosswalk {
        Crosswalk::new(self.state.store.clone())
    }

    /// The summary `civicgraph check` prints, for start-up logs.
    pub fn summary(&self) -> &GraphSummary {
        &self.state.graph.summary
    }

    /// Opens GraphiQL with these tabs (the demo's personas).
    pub fn with_playground(mut self, tabs: &[crate::http::playground::PlaygroundTab]) -> Self {
        self.state = self.state.with_playground(tabs);
        self
    }

    /// The consent ledger in this gateway's store (for tests and tools).
    pub fn consent_ledger(&self) -> crate::consent::ConsentLedger {
        crate::consent::ConsentLedger::new(
            self.state.store.clone(),
            std::sync::Arc::clone(self.state.graph.trust()),
        )
    }

    /// The audit trail in this gateway's store.
    pub fn audit_log(&self) -> AuditLog {
        self.checkpoints.audit.clone()
    }

    /// Overrides the listen address (the demo's `--port`, tests' port 0).
    pub fn with_listen_addr(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The router, for in-process use (benchmarks, `oneshot` tests).
    pub fn router(&self) -> axum::Router {
        app(self.state.clone())
    }

    /// Binds the listener; the port is known before serving starts.
    pub async fn bind(self) -> Result<BoundGateway, StartGatewayError> {
        let listener =
            TcpListener::bind(self.listen)
                .await
                .map_err(|source| StartGatewayError::Listen {
                    addr: self.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartGatewayError::Listen {
                addr: self.listen,
                source,
            })?;
        Ok(BoundGateway {
            gateway: self,
            listener,
            local_addr,
        })
    }
}

/// A gateway with its listener bound.
#[derive(Debug)]
pub struct BoundGateway {
    gateway: Gateway,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl BoundGateway {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the
    /// configured grace period and closes the store.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            gateway, listener, ..
        } = self;
        let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let plan = gateway.checkpoints.clone();
        let checkpointer = Checkpointer::spawn(plan.audit, plan.key, plan.path, plan.interval);
        let server = axum::serve(listener, gateway.router()).with_graceful_shutdown(signal);
        let grace = gateway.shutdown_grace;
        let result = tokio::select! {
            result = server => result,
            () = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "Shutdown grace period ended with requests still in flight.");
                Ok(())
            }
        };
        checkpointer.shutdown().await;
        gateway.state.store.close().await;
        result
    }

    /// Serves in a background task; the handle stops it. For tests, benchmarks and the demo.
    pub fn spawn(self) -> RunningGateway {
        let addr = self.local_addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = stopped.await;
        }));
        RunningGateway {
            addr,
            stop: Some(stop),
            task,
        }
    }
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct RunningGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    /// `http://addr` for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight requests, and returns how serving ended.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("Shutdown signal received; finishing in-flight requests.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_is_valid() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml");
        let checked = check(&config, &Vars::default()).unwrap_or_else(|d| panic!("{d}"));
        let fields = |connector: &str| -> Vec<String> {
            checked.graph.summary.connectors[connector]
                .fields
                .iter()
                .map(|(field, operation)| format!("{field} <- {operation}"))
                .collect()
        };
        assert_eq!(
            fields("tax"),
            ["Citizen.taxAccount <- account (tin from the identity crosswalk)"]
        );
        assert_eq!(
            fields("dmv"),
            [
                "Citizen.driverLicense <- license (license_number from the identity crosswalk)",
                "Citizen.vehicles <- vehicles (license_number from the identity crosswalk)",
            ]
        );
        assert_eq!(
            fields("ui"),
            ["Citizen.unemploymentClaims <- claims (claimant_id from the identity crosswalk)"]
        );
    }
}
