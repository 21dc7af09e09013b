//! Hot reload: a serving gateway picks up edits to `civicgraph.toml`, `schema/` and
//! `connectors/` (watched, with `[reload]`) or a SIGHUP, without dropping a request.
//!
//! A reload runs exactly the validation `civicgraph check` runs. A configuration with any
//! problem never replaces the serving one: the problems are logged with their `file:line`, the
//! `civicgraph_graph_reloads_total{outcome="failure"}` counter goes up, and the previous graph
//! keeps serving. A valid one is assembled beside the serving one and swapped in atomically
//! (`arc-swap`): every request runs start to finish on the graph it started on, because it holds
//! that graph's router for its whole life; a subscription keeps the graph it opened on until it
//! ends.
//!
//! **Reloaded**: the graph (schema, connectors with their shields and caches, bindings),
//! `[trust]` purposes, categories and agencies, `schema/life-events.toml`,
//! `schema/services.toml`, `[auth]` issuers (a JWKS URL is fetched again), `[server]` request
//! limits, introspection and GraphiQL, every `[events]` delivery setting, `[paths]` and
//! `[reload]` itself. The background work bound to the graph — change-feed pollers, the
//! delivery dispatcher and the offer relay — is stopped (each finishes what it is doing) before
//! the new graph's starts, so no source is polled twice. A connector whose file did not change
//! and whose kind is described by that file alone (`rest`, `sql`) is taken over with its cache,
//! breaker and bulkhead; other connectors (and the parsed-query cache) start cold.
//!
//! **Restart needed** (a change is logged as a warning and the start-up value stays in effect):
//! `[server] listen` and `shutdown_grace_ms`, `[storage]`, `[cache]`, `[shield] enabled`,
//! `[events] enabled`, `nats_url`, `nats_stream`, `subject_prefix`, `[trust] signing_key` and
//! `[audit]` — what the gateway opened or connected to once, at start.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::config::{GatewayConfig, Vars};
use crate::http::app;
use crate::server::{Assembled, Opened, assemble, check_for_reload};

/// Why a reload started, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The file watcher saw a change.
    Files,
    /// The process received SIGHUP.
    Hangup,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Files => "file change",
            Self::Hangup => "SIGHUP",
        }
    }
}

/// The handle [`crate::server::BoundGateway::serve`] keeps on the reload worker.
#[derive(Debug)]
pub(crate) struct Reloader {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Reloader {
    /// Starts `live`'s background work and the worker that reloads it; returns the router to
    /// serve, which always dispatches to the current graph.
    pub(crate) fn start(
        config_path: PathBuf,
        vars: Vars,
        opened: Opened,
        live: Assembled,
    ) -> (Self, Router) {
        let current = Arc::new(ArcSwap::from_pointee(app(live.state.clone())));
        let served = Router::new().fallback_service(Current(Arc::clone(&current)));
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            config_path,
            vars,
            opened,
            started: live.config.clone(),
            background: Some(Background::start(&live)),
            live,
            current,
        };
        // Watching starts before serving does, so no edit made after start-up is missed.
        let (trigger, triggers) = mpsc::channel::<Trigger>(1);
        let watcher = worker.watch(&trigger);
        let hangup = hangup_signal();
        let task = tokio::spawn(worker.run(stopped, trigger, triggers, watcher, hangup));
        (Self { stop, task }, served)
    }

    /// Stops watching, waits for a reload under way, then stops the current graph's
    /// background work.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "The reload worker ended abnormally.");
        }
    }
}

/// The served service: each request goes to the router current when it arrives and keeps it
/// (and so its graph) until it is answered.
#[derive(Clone)]
struct Current(Arc<ArcSwap<Router>>);

impl tower::Service<Request> for Current {
    type Response = Response;
    type Error = Infallible;
    type Future = tower::util::Oneshot<Router, Request>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let router = Router::clone(&self.0.load());
        router.oneshot(request)
    }
}

/// The tasks one graph runs in the background: change-feed pollers, the delivery dispatcher
/// and the offer relay.
struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    fn start(live: &Assembled) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(plan) = &live.events {
            tasks.extend(crate::events::poll::spawn_pollers(
                &plan.detector,
                &plan.connectors,
                &plan.owner,
                &stopped,
            ));
            tasks.push(plan.dispatcher.clone().spawn(stopped.clone()));
        }
        if let Some((relay, every)) = live.offers.clone() {
            tasks.push(relay.spawn(every, stopped));
        }
        Self { stop, tasks }
    }

    /// Signals every task and waits until each has finished what it was doing.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Owns the serving graph between reloads.
struct Worker {
    config_path: PathBuf,
    vars: Vars,
    opened: Opened,
    /// The configuration at start, whose restart-only settings stay in effect.
    started: GatewayConfig,
    live: Assembled,
    background: Option<Background>,
    current: Arc<ArcSwap<Router>>,
}

impl Worker {
    async fn run(
        mut self,
        mut stopped: watch::Receiver<bool>,
        trigger: mpsc::Sender<Trigger>,
        mut triggers: mpsc::Receiver<Trigger>,
        mut watcher: Option<RecommendedWatcher>,
        mut hangup: Hangup,
    ) {
        loop {
            let cause = tokio::select! {
                _ = stopped.changed() => break,
                Some(cause) = triggers.recv() => cause,
                Some(()) = next_hangup(&mut hangup) => Trigger::Hangup,
            };
            if cause == Trigger::Files {
                self.settle(&mut triggers).await;
            }
            if *stopped.borrow() {
                break;
            }
            if self.reload(cause).await {
                // The new configuration may watch other directories, or not at all.
                drop(watcher.take());
                watcher = self.watch(&trigger);
            }
        }
        drop(watcher);
        if let Some(background) = self.background.take() {
            background.stop().await;
        }
    }

    /// Waits until the files have been quiet for `[reload] debounce_ms`, so an editor's burst
    /// of writes (or a `git checkout` of many files) becomes one reload; at most ten quiet
    /// periods, so a file written all the time still gets reloaded.
    async fn settle(&self, triggers: &mut mpsc::Receiver<Trigger>) {
        let quiet = Duration::from_millis(self.live.config.reload.debounce_ms.max(1));
        for _ in 0..10 {
            match tokio::time::timeout(quiet, triggers.recv()).await {
                Ok(Some(Trigger::Files)) => continue,
                _ => return,
            }
        }
    }

    /// Checks the files and, when they are valid, swaps their graph in. Returns whether it did.
    async fn reload(&mut self, cause: Trigger) -> bool {
        let began = Instant::now();
        let metrics = Arc::clone(self.live.connectors.hub().metrics());
        let (path, vars, serving) = (
            self.config_path.clone(),
            self.vars.clone(),
            self.live.connectors.clone(),
        );
        // Reading files and building the schema blocks; requests keep being served meanwhile.
        let checked =
            tokio::task::spawn_blocking(move || check_for_reload(&path, &vars, &serving)).await;
        let mut checked = match checked {
            Ok(Ok(checked)) => checked,
            Ok(Err(diagnostics)) => {
                metrics.graph_reloaded(false);
                tracing::error!(
                    trigger = cause.as_str(),
                    problems = diagnostics.0.len(),
                    "graph reload failed; still serving the previous graph. {}",
                    diagnostics.to_string().trim_end()
                );
                return false;
            }
            Err(error) => {
                metrics.graph_reloaded(false);
                tracing::error!(trigger = cause.as_str(), %error, "graph reload failed while checking; still serving the previous graph.");
                return false;
            }
        };
        for setting in keep_start_up_values(&self.started, &mut checked.config) {
            tracing::warn!(
                setting,
                "restart needed: `{setting}` changed in civicgraph.toml; the running gateway keeps its start-up value until it is restarted."
            );
        }
        let kept = checked.kept_connectors.join(", ");
        let assembled = match assemble(checked, &self.opened).await {
            Ok(assembled) => assembled,
            Err(error) => {
                metrics.graph_reloaded(false);
                tracing::error!(trigger = cause.as_str(), %error, "graph reload failed; still serving the previous graph.");
                return false;
            }
        };
        self.current.store(Arc::new(app(assembled.state.clone())));
        // Requests still running on the previous graph keep it alive until they finish.
        self.live = assembled;
        // The previous graph's pollers and workers stop before the new ones start, so no
        // source is polled and no delivery claimed by both.
        if let Some(background) = self.background.take() {
            background.stop().await;
        }
        self.background = Some(Background::start(&self.live));
        metrics.graph_reloaded(true);
        let summary = &self.live.state.graph.summary;
        tracing::info!(
            trigger = cause.as_str(),
            connectors = summary.connectors.len(),
            fields = summary.fields,
            kept_warm = %kept,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "graph reloaded: {} connectors, {} fields",
            summary.connectors.len(),
            summary.fields
        );
        true
    }

    /// Watches `civicgraph.toml` and the schema and connectors directories when `[reload]
    /// watch` is on; a change sends `trigger` (the worker then debounces).
    fn watch(&self, trigger: &mpsc::Sender<Trigger>) -> Option<RecommendedWatcher> {
        if !self.live.config.reload.watch {
            return None;
        }
        let Some(watched) = Watched::new(&self.config_path, &self.live.config) else {
            tracing::warn!(
                "Cannot resolve the configuration's directory; file changes are not watched (SIGHUP still reloads)."
            );
            return None;
        };
        let trigger = trigger.clone();
        let filter = watched.clone();
        let handler = move |result: notify::Result<notify::Event>| match result {
            Ok(event) => {
                if changes_content(&event.kind)
                    && event.paths.iter().any(|path| filter.matters(path))
                {
                    // Full means a reload is queued already, which will read this change too.
                    let _ = trigger.try_send(Trigger::Files);
                }
            }
            Err(error) => tracing::warn!(%error, "The file watcher reported an error."),
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(%error, "Cannot watch files; SIGHUP still reloads.");
                return None;
            }
        };
        let mut targets = vec![(watched.root.clone(), RecursiveMode::NonRecursive)];
        targets.extend(
            watched
                .dirs
                .iter()
                .map(|dir| (dir.clone(), RecursiveMode::Recursive)),
        );
        for (path, mode) in targets {
            if let Err(error) = watcher.watch(&path, mode) {
                tracing::warn!(path = %path.display(), %error, "Cannot watch this path for changes.");
            }
        }
        Some(watcher)
    }
}

/// Whether an event can mean new content. Opening, reading and closing a file unchanged (as
/// every reload does) and access-time updates cannot; reacting to them would reload forever.
fn changes_content(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// The paths whose changes start a reload.
#[derive(Debug, Clone)]
struct Watched {
    /// The directory of `civicgraph.toml` (watched without its subdirectories).
    root: PathBuf,
    config_file: PathBuf,
    /// The schema and connectors directories that exist.
    dirs: Vec<PathBuf>,
}

impl Watched {
    fn new(config_path: &Path, config: &GatewayConfig) -> Option<Self> {
        let parent = match config_path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let root = std::fs::canonicalize(parent).ok()?;
        let config_file = root.join(config_path.file_name()?);
        let dirs = [&config.paths.schema, &config.paths.connectors]
            .into_iter()
            .filter_map(|dir| std::fs::canonicalize(root.join(dir)).ok())
            .collect();
        Some(Self {
            root,
            config_file,
            dirs,
        })
    }

    /// Whether a change at `path` can change the graph: the config file or anything in the
    /// graph's directories, except editors' hidden and backup files.
    fn matters(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
            return false;
        }
        path == self.config_file || self.dirs.iter().any(|dir| path.starts_with(dir))
    }
}

/// Puts back, in `new`, every setting that only takes effect at start, and names those that
/// differed, so a reload applies everything else and says what needs a restart.
fn keep_start_up_values(started: &GatewayConfig, new: &mut GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:ident).+) => {
            if new.$($field).+ != started.$($field).+ {
                changed.push($name);
                new.$($field).+ = started.$($field).+.clone();
            }
        };
    }
    macro_rules! keep_secret {
        ($name:literal, $($field:ident).+) => {
            let exposed = |secret: &Option<crate::config::Secret>| {
                secret.as_ref().map(|s| s.expose().to_string())
            };
            if exposed(&new.$($field).+) != exposed(&started.$($field).+) {
                changed.push($name);
                new.$($field).+ = started.$($field).+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.shutdown_grace_ms", server.shutdown_grace_ms);
    keep!("storage.url", storage.url);
    keep!("storage.max_connections", storage.max_connections);
    keep_secret!("cache.redis_url", cache.redis_url);
    keep_secret!("cache.redis_secret", cache.redis_secret);
    keep!("cache.redis_timeout_ms", cache.redis_timeout_ms);
    keep!("shield.enabled", shield.enabled);
    keep!("events.enabled", events.enabled);
    keep_secret!("events.nats_url", events.nats_url);
    keep!("events.nats_stream", events.nats_stream);
    keep!("events.subject_prefix", events.subject_prefix);
    keep!("trust.signing_key", trust.signing_key);
    keep!("audit.checkpoint_file", audit.checkpoint_file);
    keep!("audit.checkpoint_interval_s", audit.checkpoint_interval_s);
    keep!("audit.timeout_ms", audit.timeout_ms);
    changed
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

/// SIGHUP, the operator's "reload now"; `None` where there is none.
fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGHUP; only file changes reload.");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The next SIGHUP; never, when there is no signal to wait for.
async fn next_hangup(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup.as_mut() {
        return signal.recv().await;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_their_start_up_values() {
        let started = GatewayConfig::default();
        let mut new: GatewayConfig = toml::from_str(
            "[server]\nlisten = \"127.0.0.1:9\"\nmax_body_bytes = 10\n[storage]\nurl = \"sqlite::memory:\"\n[cache]\nredis_url = \"redis://127.0.0.1:1\"\n",
        )
        .expect("a valid civicgraph.toml");
        let changed = keep_start_up_values(&started, &mut new);
        assert_eq!(changed, ["server.listen", "storage.url", "cache.redis_url"]);
        assert_eq!(new.server.listen, started.server.listen);
        assert_eq!(new.storage.url, started.storage.url);
        assert!(new.cache.redis_url.is_none());
        // A reloadable setting is applied.
        assert_eq!(new.server.max_body_bytes, 10);
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange};
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn only_the_config_file_and_the_graph_directories_matter() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["schema", "connectors"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create a directory");
        }
        let config = dir.path().join("civicgraph.toml");
        let watched =
            Watched::new(&config, &GatewayConfig::default()).expect("the directory resolves");
        let root = &watched.root;
        assert!(watched.matters(&root.join("civicgraph.toml")));
        assert!(watched.matters(&root.join("schema/citizen.graphql")));
        assert!(watched.matters(&root.join("connectors/copybooks/case.cpy")));
        assert!(!watched.matters(&root.join("civicgraph.db-wal")));
        assert!(!watched.matters(&root.join("schema/.citizen.graphql.swp")));
        assert!(!watched.matters(&root.join("connectors/tax.toml~")));
    }
}
