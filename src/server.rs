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
use crate::events::feed::EventFeed;
use crate::events::rules::{CheckAgainst, Rules};
use crate::events::services::{Catalogue, DOCUMENTED_EVENT_TYPES, OfferRelay, ServiceOffers};
use crate::events::{Detector, EventServices, Outbox};
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
    /// `[events] nats_url` is set but NATS could not be reached or its stream made.
    #[error("civicgraph.toml [events] nats_url: {0}")]
    Nats(crate::events::nats::NatsError),
    /// The webhook client could not be built.
    #[error("cannot build the webhook client: {0}")]
    Egress(crate::events::egress::EgressError),
    /// The event outbox could not be prepared.
    #[error(transparent)]
    Outbox(#[from] crate::events::OutboxError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `[server] graphiql_assets_dir` lost a file between the check and the start.
    #[error("civicgraph.toml [server] graphiql_assets_dir: {0}")]
    GraphiqlAssets(#[from] crate::http::playground::LoadGraphiqlAssetsError),
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
    /// `schema/life-events.toml`, checked against the graph (empty when there is none).
    pub rules: Arc<Rules>,
    /// `schema/services.toml`, checked against the graph and the rules (empty when there is
    /// none).
    pub services: Arc<Catalogue>,
    /// Connectors taken over unchanged from the graph a reload replaces (see
    /// [`check_for_reload`]); empty otherwise.
    pub kept_connectors: Vec<String>,
    /// `[persisted]`: the manifests, read and checked.
    pub persisted: Arc<crate::http::persisted::PersistedOperations>,
}

/// Loads and validates everything, opening nothing: what `civicgraph check` runs.
pub fn check(config_path: &Path, vars: &Vars) -> Result<Checked, Diagnostics> {
    check_with(config_path, vars, None)
}

/// [`check`] for a hot reload: the same validation, with the shields sharing the serving
/// graph's hub (metrics, Redis tier, consent generations) and every connector whose file is
/// unchanged taken over warm from `serving`.
pub fn check_for_reload(
    config_path: &Path,
    vars: &Vars,
    serving: &Connectors,
) -> Result<Checked, Diagnostics> {
    check_with(config_path, vars, Some(serving))
}

fn check_with(
    config_path: &Path,
    vars: &Vars,
    serving: Option<&Connectors>,
) -> Result<Checked, Diagnostics> {
    let (project, mut diagnostics) = load_project(config_path, vars);
    let hub = match serving {
        Some(serving) => Arc::clone(serving.hub()),
        None => ShieldHub::new(project.gateway.shield.enabled),
    };
    let (mut connectors, mut connector_problems) =
        build_shielded_connectors(&project.connectors, hub);
    diagnostics.append(&mut connector_problems);
    let kept_connectors = match serving {
        Some(serving) => connectors.keep_unchanged(serving),
        None => Vec::new(),
    };
    // A connector that parsed but did not build is already reported; its fields must not
    // also be called "unknown connector".
    let mut broken = project.broken_connectors.clone();
    for loaded in &project.connectors {
        let name = loaded.config.name().get_ref();
        if connectors.get(name).is_none() {
            broken.insert(name.clone());
        }
    }
    let server = project.gateway.server.effective();
    let options = GraphOptions {
        introspection: server.introspection,
        max_depth: server.max_depth,
        limits: project.gateway.limits.clone(),
        suggestions: server.suggestions(),
        trust: Arc::new(project.gateway.trust.clone()),
    };
    let built = build_graph(&project.schema_files, &connectors, &broken, &options);
    let rules = match (&built, &project.life_events) {
        (Ok(graph), Some(file)) => {
            let has_mutation = |field: &str| graph.has_mutation_field(field);
            match Rules::load(
                file,
                &CheckAgainst {
                    connectors: connectors.specs(),
                    trust: &project.gateway.trust,
                    has_mutation: &has_mutation,
                },
            ) {
                Ok(rules) => rules,
                Err(mut problems) => {
                    diagnostics.append(&mut problems);
                    Rules::default()
                }
            }
        }
        _ => Rules::default(),
    };
    let services = match &built {
        Ok(graph) => {
            // Triggers name the rules' event types; without rules (none, or broken), the
            // documented ones, so a catalogue is still checked.
            let mut known = rules.event_types();
            if known.is_empty() {
                known = DOCUMENTED_EVENT_TYPES
                    .iter()
                    .map(|t| t.to_string())
                    .collect();
            }
            let (catalogue, mut problems) = Catalogue::load(
                &project.root.join(&project.gateway.paths.schema),
                vars,
                Some(graph),
                &project.gateway.trust,
                &known,
            );
            diagnostics.append(&mut problems);
            catalogue
        }
        Err(_) => Catalogue::default(),
    };
    let services = Arc::new(services);
    let (persisted, mut persisted_problems) =
        crate::http::persisted::PersistedOperations::load(config_path, &project.gateway.persisted);
    diagnostics.append(&mut persisted_problems);
    match built {
        Ok(graph) if diagnostics.is_empty() => Ok(Checked {
            config: project.gateway,
            graph: graph.with_service_catalogue(Arc::clone(&services)),
            connectors,
            tokens: project.tokens,
            root: project.root,
            rules: Arc::new(rules),
            services,
            kept_connectors,
            persisted: Arc::new(persisted),
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
    /// What the current configuration built; a reload replaces it whole.
    live: Assembled,
    /// What was opened once and outlives every reload.
    opened: Opened,
    listen: SocketAddr,
    shutdown_grace: Duration,
    checkpoints: CheckpointPlan,
    /// Where the configuration is read from again on reload, with the same variables.
    config_path: PathBuf,
    vars: Vars,
}

/// What a gateway opens once, at start, and keeps across reloads: the store and everything
/// bound to it or to a connection. Settings behind these need a restart (see `reload`).
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub(crate) store: Store,
    pub(crate) key: SigningKey,
    pub(crate) audit: AuditLog,
    pub(crate) writer: AuditWriter,
    pub(crate) nats: Option<crate::events::nats::NatsPublisher>,
    /// One feed for every graph, so subscriptions opened before a reload keep streaming and
    /// shutdown ends them all.
    pub(crate) feed: Option<EventFeed>,
    /// This instance's id for leases (pollers, deliveries), the same across reloads.
    pub(crate) owner: String,
    pub(crate) tabs: Option<Vec<crate::http::playground::PlaygroundTab>>,
}

/// What one checked configuration becomes on top of [`Opened`]: the HTTP state with its
/// graph, and the background work bound to that graph's rules and connectors.
#[derive(Debug, Clone)]
pub(crate) struct Assembled {
    pub(crate) state: AppState,
    pub(crate) events: Option<EventsPlan>,
    /// Turns life events into service offers while serving (when `[events] enabled` and a
    /// service has triggers), passing every `feed_poll_ms`.
    pub(crate) offers: Option<(OfferRelay, Duration)>,
    pub(crate) config: GatewayConfig,
    pub(crate) connectors: Connectors,
}

/// What runs in the background for life events while the gateway serves: the pollers and
/// the delivery dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct EventsPlan {
    pub(crate) detector: Detector,
    pub(crate) dispatcher: crate::events::deliver::Dispatcher,
    pub(crate) connectors: Connectors,
    pub(crate) owner: String,
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
        let opened = open(&checked).await?;
        let checkpoints = CheckpointPlan {
            audit: opened.audit.clone(),
            key: opened.key.clone(),
            path: checked.root.join(&checked.config.audit.checkpoint_file),
            interval: Duration::from_secs(checked.config.audit.checkpoint_interval_s.max(1)),
        };
        let live = assemble(checked, &opened).await?;
        let server = &live.config.server;
        Ok(Self {
            listen: server.listen,
            shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
            live,
            opened,
            checkpoints,
            config_path: config_path.to_path_buf(),
            vars: vars.clone(),
        })
    }

    /// The identity crosswalk in this gateway's store (for loading links, e.g. the demo's).
    pub fn crosswalk(&self) -> Crosswalk {
        Crosswalk::new(self.opened.store.clone())
    }

    /// The summary `civicgraph check` prints, for start-up logs.
    pub fn summary(&self) -> &GraphSummary {
        &self.live.state.graph.summary
    }

    /// Opens GraphiQL with these tabs (the demo's personas); reloads keep them.
    pub fn with_playground(mut self, tabs: &[crate::http::playground::PlaygroundTab]) -> Self {
        self.live.state = self.live.state.with_playground(tabs);
        self.opened.tabs = Some(tabs.to_vec());
        self
    }

    /// The consent ledger in this gateway's store (for tests and tools).
    pub fn consent_ledger(&self) -> crate::consent::ConsentLedger {
        crate::consent::ConsentLedger::new(
            self.opened.store.clone(),
            std::sync::Arc::clone(self.live.state.graph.trust()),
        )
    }

    /// The live feed behind `Subscription.lifeEvents` (`None` with `[events] enabled = false`).
    pub fn event_feed(&self) -> Option<EventFeed> {
        self.opened.feed.clone()
    }

    /// The life-event outbox in this gateway's store (for tests and tools).
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.opened.store.clone())
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

    /// The router, for in-process use (benchmarks, `oneshot` tests). It serves the graph
    /// loaded now; only [`BoundGateway::serve`] reloads.
    pub fn router(&self) -> axum::Router {
        app(self.live.state.clone())
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

/// Opens what outlives reloads: the signing key, the store, the Redis tier, the audit writer,
/// NATS and the subscription feed.
async fn open(checked: &Checked) -> Result<Opened, StartGatewayError> {
    let key = SigningKey::load_or_create(&checked.root.join(&checked.config.trust.signing_key))?;
    let store = Store::connect(&checked.config.storage).await?;
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
    let settings = &checked.config.events;
    let nats = match settings
        .nats_url
        .as_ref()
        .filter(|url| settings.enabled && !url.expose().is_empty())
    {
        Some(url) => {
            let publisher = crate::events::nats::NatsPublisher::connect(
                url.expose(),
                &settings.nats_stream,
                &settings.subject_prefix,
            )
            .await
            .map_err(StartGatewayError::Nats)?;
            Outbox::new(store.clone())
                .ensure_nats_subscriber(&settings.subject_prefix)
                .await?;
            Some(publisher)
        }
        None => None,
    };
    let feed = settings.enabled.then(|| {
        EventFeed::new(
            Outbox::new(store.clone()),
            Duration::from_millis(settings.feed_poll_ms.max(1)),
        )
    });
    Ok(Opened {
        writer: AuditWriter::spawn(audit.clone()),
        key,
        audit,
        nats,
        feed,
        owner: format!("gw-{}", uuid::Uuid::new_v4().simple()),
        tabs: None,
        store,
    })
}

/// Builds the served graph and its background work from a checked configuration, on top of
/// what is open. Start-up and every reload come through here.
pub(crate) async fn assemble(
    checked: Checked,
    opened: &Opened,
) -> Result<Assembled, StartGatewayError> {
    checked.connectors.attach(&opened.store).await;
    let store = &opened.store;
    let services = TrustServices {
        ledger: ConsentLedger::new(store.clone(), Arc::clone(checked.graph.trust())),
        audit: opened.audit.clone(),
        writer: opened.writer.clone(),
        signing: opened.key.clone(),
    };
    let events = if checked.config.events.enabled {
        Some(events_plan(
            &checked,
            opened,
            services.ledger.clone(),
            Arc::clone(checked.graph.trust()),
        )?)
    } else {
        None
    };
    let outbox = Outbox::new(store.clone());
    let settings = &checked.config.events;
    let offers = (settings.enabled
        && checked
            .services
            .services()
            .iter()
            .any(|s| !s.triggers.is_empty()))
    .then(|| {
        let lease = Duration::from_secs(settings.lease_s.max(1));
        let relay = OfferRelay::new(outbox.clone(), Arc::clone(&checked.services), lease);
        (relay, Duration::from_millis(settings.feed_poll_ms.max(10)))
    });
    let mut graph = checked
        .graph
        .clone()
        .with_crosswalk(Crosswalk::new(store.clone()))
        .with_trust_services(services)
        .with_service_offers(ServiceOffers::new(outbox, Arc::clone(&checked.services)));
    if let Some(plan) = &events {
        graph = graph.with_events(EventServices {
            detector: plan.detector.clone(),
            allow_private_endpoints: checked.config.events.allow_private_endpoints,
        });
    }
    if let Some(feed) = &opened.feed {
        graph = graph.with_event_feed(feed.clone());
    }
    let server = checked.config.server.effective();
    let mut state = AppState::new(
        graph,
        store.clone(),
        server.clone(),
        checked.config.auth.clone(),
        checked.tokens,
    )
    .with_edge(checked.config.http.clone());
    if let Some(dir) = server
        .graphiql_assets_dir
        .as_ref()
        .filter(|dir| !dir.get_ref().trim().is_empty())
    {
        let assets = crate::http::playground::GraphiqlAssets::load(
            &checked.root.join(dir.get_ref().trim()),
        )?;
        state = state.with_graphiql_assets(assets);
    }
    state = state.with_limits(checked.persisted, &checked.config.quotas);
    if let Some(plan) = &events {
        state = state.with_events(EventServices {
            detector: plan.detector.clone(),
            allow_private_endpoints: checked.config.events.allow_private_endpoints,
        });
    }
    if let Some(tabs) = &opened.tabs {
        state = state.with_playground(tabs);
    }
    Ok(Assembled {
        state,
        events,
        offers,
        config: checked.config,
        connectors: checked.connectors,
    })
}

/// Builds what life events need: the detector over the checked rules and the dispatcher that
/// delivers for this instance (through NATS too when it was opened).
fn events_plan(
    checked: &Checked,
    opened: &Opened,
    ledger: ConsentLedger,
    trust: Arc<crate::config::TrustConfig>,
) -> Result<EventsPlan, StartGatewayError> {
    let settings = checked.config.events.clone();
    let outbox = Outbox::new(opened.store.clone());
    let metrics = Arc::clone(checked.connectors.hub().metrics());
    let detector = Detector::new(
        Arc::clone(&checked.rules),
        outbox.clone(),
        Crosswalk::new(opened.store.clone()),
        Arc::clone(&metrics),
    );
    let egress = crate::events::egress::Egress::new(
        settings.allow_private_endpoints,
        Duration::from_millis(settings.delivery_timeout_ms.max(1)),
    )
    .map_err(StartGatewayError::Egress)?;
    let dispatcher = crate::events::deliver::Dispatcher::new(
        outbox,
        ledger,
        trust,
        egress,
        opened.nats.clone(),
        settings,
        opened.owner.clone(),
        metrics,
        detector.recorded(),
    );
    Ok(EventsPlan {
        detector,
        dispatcher,
        connectors: checked.connectors.clone(),
        owner: opened.owner.clone(),
    })
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
    pub fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
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
        let Gateway {
            live,
            opened,
            shutdown_grace: grace,
            config_path,
            vars,
            ..
        } = gateway;
        let store = opened.store.clone();
        let feed = opened.feed.clone();
        let edge = live.config.http.clone();
        // Other instances' consent withdrawals (PostgreSQL only), heard for the life of the
        // process: the shield hub it clears is shared by every reloaded graph.
        let (stop_listening, listening_stopped) = tokio::sync::watch::channel(false);
        let withdrawals = match &store {
            Store::Postgres(pool) => {
                let hub = Arc::clone(live.connectors.hub());
                Some(crate::consent::broadcast::spawn_listener(
                    pool.clone(),
                    move |event| withdrawal_heard(&hub, event),
                    listening_stopped,
                ))
            }
            Store::Sqlite(_) => None,
        };
        // The reloader owns the graph from here: it starts its background work and swaps in
        // every valid new one; the listener always serves whichever is current. It starts
        // when `serve` is called, not when its future is first polled, so an edit made right
        // after `spawn` returns is already watched.
        let (reloader, served) = crate::reload::Reloader::start(config_path, vars, opened, live);
        async move {
            let server = crate::http::listener::serve(listener, served, &edge, signal);
            let result = tokio::select! {
                () = server => Ok(()),
                () = async {
                    let _ = stopping_rx.await;
                    tokio::time::sleep(grace).await;
                } => {
                    tracing::warn!(grace_ms = grace.as_millis() as u64, "Shutdown grace period ended with requests still in flight.");
                    Ok(())
                }
            };
            // Open subscriptions end (their sockets close) before the store they read goes away.
            if let Some(feed) = feed {
                feed.shutdown();
            }
            reloader.stop().await;
            let _ = stop_listening.send(true);
            if let Some(task) = withdrawals {
                let _ = task.await;
            }
            checkpointer.shutdown().await;
            store.close().await;
            result
        }
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

/// Acts on what the consent-withdrawal listener heard: one agency's cached reads go, or
/// every agency's when notices may have been missed.
fn withdrawal_heard(hub: &ShieldHub, event: crate::consent::broadcast::ListenerEvent) {
    use crate::consent::broadcast::ListenerEvent;
    match event {
        ListenerEvent::Withdrawn(withdrawal) => {
            tracing::debug!(agency = %withdrawal.agency, generation = withdrawal.generation, "Consent withdrawal heard.");
            hub.consent_withdrawn_elsewhere(&withdrawal.agency);
        }
        ListenerEvent::Listening => {
            hub.set_consent_listener_up(true);
            hub.consents_may_have_changed();
        }
        ListenerEvent::Lost => {
            hub.set_consent_listener_up(false);
            hub.consents_may_have_changed();
        }
        ListenerEvent::Unreadable => {
            tracing::warn!(
                "An unreadable consent-withdrawal notice; dropping every agency's cached reads."
            );
            hub.consents_may_have_changed();
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
        assert!(
            fields("registry").contains(&"Mutation.changeAddress <- change_address".to_string()),
            "{:?}",
            fields("registry")
        );
    }
}
