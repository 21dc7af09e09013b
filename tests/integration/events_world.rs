//! A self-contained world for the life-event crash and scale tests, independent of the demo
//! agencies: a change feed the gateway polls, a webhook receiver that can hold requests open
//! and notices one event being delivered twice at once, a project written to disk, and
//! `civicgraph serve` as a real child process that a test can SIGKILL and start again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use civicgraph::auth::DEMO_OPERATOR_HEADER;
use civicgraph::events::signature::WebhookSecret;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::GatewayClient;

/// The agency that owns [`CATEGORY`] on a legal basis, so it receives the events without a
/// consent (the consent filter is tested elsewhere).
pub(crate) const AGENCY: &str = "case";
/// The category of every event in this world.
pub(crate) const CATEGORY: &str = "case.updates";
/// The one event type.
pub(crate) const EVENT_TYPE: &str = "CaseUpdated";

/// The most changes the feed answers per request, so a big backlog takes several pages.
const FEED_PAGE: usize = 50;

// ---------------------------------------------------------------------------------------------
// The backend's change feed
// ---------------------------------------------------------------------------------------------

/// A backend change feed on `127.0.0.1:0`: `GET /changes?since=N` answers the changes after
/// sequence number `N`. It lives in the test process, so it outlives gateway restarts.
#[derive(Clone, Default)]
pub(crate) struct ChangeFeed {
    changes: Arc<Mutex<Vec<Value>>>,
    asked: Arc<Mutex<Vec<u64>>>,
}

#[derive(serde::Deserialize)]
struct Since {
    since: Option<u64>,
}

impl ChangeFeed {
    /// Serves the feed; returns it and its base URL.
    pub(crate) async fn start() -> (Self, String) {
        async fn changes(
            State(feed): State<ChangeFeed>,
            Query(q): Query<Since>,
        ) -> axum::Json<Value> {
            let since = q.since.unwrap_or(0);
            feed.asked.lock().unwrap().push(since);
            let all = feed.changes.lock().unwrap();
            let page: Vec<Value> = all
                .iter()
                .skip(usize::try_from(since).unwrap())
                .take(FEED_PAGE)
                .cloned()
                .collect();
            axum::Json(json!({ "changes": page }))
        }
        let feed = Self::default();
        let app = Router::new()
            .route("/changes", get(changes))
            .with_state(feed.clone());
        let addr = spawn_server(bind_any().await, app);
        (feed, format!("http://{addr}"))
    }

    /// Appends a change about `citizen`'s `case`; returns its sequence number.
    pub(crate) fn push(&self, citizen: &str, case: &str) -> u64 {
        let mut all = self.changes.lock().unwrap();
        let seq = all.len() as u64 + 1;
        all.push(json!({
            "seq": seq,
            "citizen_id": citizen,
            "case_id": case,
            "kind": "updated",
        }));
        seq
    }

    /// Every `since` the feed was asked with, in order.
    pub(crate) fn asked(&self) -> Vec<u64> {
        self.asked.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The subscriber's webhook receiver
// ---------------------------------------------------------------------------------------------

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Keeps every request open, unanswered, until the mode changes.
    Hold,
    /// Answers 200 after this delay.
    Answer(Duration),
}

/// One webhook request as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Reception {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) body: String,
    pub(crate) at: Instant,
}

impl Reception {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a webhook body that is not JSON ({e}): {}", self.body))
    }
}

struct ReceiverState {
    mode: watch::Sender<Mode>,
    log: Mutex<Vec<Reception>>,
    /// Requests being handled, per `webhook-id`.
    live: Mutex<HashMap<String, usize>>,
    /// Ids that arrived while a request with the same id was still being handled.
    overlaps: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts a request as in flight from its arrival until its handler ends, however it ends
/// (answered, or dropped when the gateway's connection went away).
struct Live {
    state: Arc<ReceiverState>,
    id: String,
}

impl Live {
    fn enter(state: &Arc<ReceiverState>, id: &str) -> Self {
        let mut live = state.live.lock().unwrap();
        let count = live.entry(id.to_string()).or_default();
        if *count > 0 {
            state.overlaps.lock().unwrap().push(id.to_string());
        }
        *count += 1;
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self {
            state: Arc::clone(state),
            id: id.to_string(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut live = self.state.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = live.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.id);
            }
        }
    }
}

/// A webhook endpoint on loopback that records every request (id, signature headers, body,
/// arrival time) and tracks, per `webhook-id`, whether two requests were ever in flight at once.
pub(crate) struct Receiver {
    state: Arc<ReceiverState>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Serves on `127.0.0.1:0`.
    pub(crate) async fn start(mode: Mode) -> Self {
        Self::serve(bind_any().await, mode)
    }

    /// Serves on `addr` (a port reserved with [`unused_addr`] before anything listened on it).
    pub(crate) async fn start_at(addr: SocketAddr, mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind the reserved receiver address {addr}: {e}"));
        Self::serve(listener, mode)
    }

    fn serve(listener: tokio::net::TcpListener, mode: Mode) -> Self {
        async fn hook(
            State(state): State<Arc<ReceiverState>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let reception = Reception {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
                body: String::from_utf8_lossy(&body).into_owned(),
                at: Instant::now(),
            };
            let _live = Live::enter(&state, &reception.id);
            state.log.lock().unwrap().push(reception);
            let mut mode = state.mode.subscribe();
            loop {
                let current = *mode.borrow_and_update();
                match current {
                    Mode::Hold => {
                        if mode.changed().await.is_err() {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                    }
                    Mode::Answer(delay) => {
                        tokio::time::sleep(delay).await;
                        return StatusCode::OK;
                    }
                }
            }
        }
        let state = Arc::new(ReceiverState {
            mode: watch::Sender::new(mode),
            log: Mutex::default(),
            live: Mutex::default(),
            overlaps: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        });
        let addr = listener.local_addr().expect("a bound address");
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            state,
            url: format!("http://{addr}/hook"),
            task,
        }
    }

    /// The webhook URL to register.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Changes how requests are answered, including those held open now.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Every request so far, in arrival order.
    pub(crate) fn receptions(&self) -> Vec<Reception> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests being handled now.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever handled at once.
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Ids that arrived while another request with the same id was still in flight.
    pub(crate) fn overlaps(&self) -> Vec<String> {
        self.state.overlaps.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address on which nothing listens yet: a port bound and released, for a receiver that
/// starts later.
pub(crate) fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound address")
}

async fn bind_any() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

fn spawn_server(listener: tokio::net::TcpListener, app: Router) -> SocketAddr {
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// The project and the `civicgraph serve` child process
// ---------------------------------------------------------------------------------------------

/// The rules: every change of the feed is a `CaseUpdated` event about its `citizen_id`, one
/// per change (`key` is the change's sequence number).
pub(crate) const RULES: &str = r#"
[sources.case-feed]
kind = "poll"
connector = "cases"
operation = "changes"
cursor = "seq"
start = "0"
every_s = 1

[[events]]
type = "CaseUpdated"
source = "case-feed"
category = "case.updates"
citizen = { field = "citizen_id" }
subject = { case = "case_id", change = "seq" }
key = ["change"]
"#;

pub(crate) const CASES_CONNECTOR: &str = r#"
name = "cases"
kind = "rest"
base_url = "${CASES_URL}"
timeout_ms = 2000

[operations.changes]
path = "/changes"
query = { since = "{since}" }
select = "/changes"
"#;

const BASE_SDL: &str = "scalar DateTime\ntype Query\ntype Mutation\n";

/// Where a project's gateway keeps its store.
pub(crate) enum Storage<'a> {
    /// An SQLite file in the project's directory, which outlives the process.
    SqliteFile,
    /// This URL (a PostgreSQL schema of the test's own).
    Url(&'a str),
}

/// A project on disk for `civicgraph serve`: its store, its only connector the change feed at
/// `feed_url`, and `events` the lines of its `[events]` section.
pub(crate) struct EventsProject {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl EventsProject {
    pub(crate) fn write(storage: Storage<'_>, feed_url: &str, events: &str) -> Self {
        let dir = tempfile::tempdir().expect("a project directory");
        let root = dir.path();
        let storage_url = match storage {
            Storage::SqliteFile => {
                format!("sqlite://{}?mode=rwc", root.join("gateway.db").display())
            }
            Storage::Url(url) => url.to_string(),
        };
        let gateway = format!(
            r#"[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 1000

[storage]
url = "${{STORAGE_URL}}"
max_connections = 4

[auth]
demo_headers = true

[trust]
signing_key = "signing-key.pem"

[trust.purposes]
case-management = "managing your case"

[trust.categories]
"{CATEGORY}" = "updates to your case"

[trust.agencies.{AGENCY}]
name = "the Case Agency"
legal_basis = "Case Management Act §1"

[audit]
checkpoint_file = "audit-checkpoints.jsonl"

[events]
allow_private_endpoints = true
{events}
"#
        );
        std::fs::write(root.join("civicgraph.toml"), gateway).expect("write civicgraph.toml");
        std::fs::create_dir(root.join("schema")).expect("create schema/");
        std::fs::create_dir(root.join("connectors")).expect("create connectors/");
        std::fs::write(root.join("schema/base.graphql"), BASE_SDL).expect("write base.graphql");
        std::fs::write(
            root.join("schema/events.graphql"),
            include_str!("../../schema/events.graphql"),
        )
        .expect("write events.graphql");
        std::fs::write(
            root.join("schema/subscriptions.graphql"),
            include_str!("../../schema/subscriptions.graphql"),
        )
        .expect("write subscriptions.graphql");
        std::fs::write(root.join("schema/life-events.toml"), RULES).expect("write the rules");
        std::fs::write(root.join("connectors/cases.toml"), CASES_CONNECTOR)
            .expect("write cases.toml");
        Self {
            dir,
            env: vec![
                ("STORAGE_URL".to_string(), storage_url),
                ("CASES_URL".to_string(), feed_url.to_string()),
            ],
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("civicgraph.toml")
    }
}

/// `civicgraph serve` running as a child process. Dropping it kills it, so a failing test
/// leaves no process behind.
pub(crate) struct ServeProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `civicgraph serve` on `project` and waits (at most 60 s) for its listener.
    pub(crate) async fn start(project: &EventsProject) -> Self {
        Self::start_in(project.dir.path(), &project.config_path(), &project.env).await
    }

    /// Starts `civicgraph serve --config config` in `dir` with only `env` in its environment,
    /// and waits (at most 60 s) for its listener.
    pub(crate) async fn start_in(
        dir: &std::path::Path,
        config: &std::path::Path,
        env: &[(String, String)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CIVICGRAPH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start civicgraph serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let found = log.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["message"] == "CivicGraph is listening.")
                    .then(|| event["addr"].as_str()?.parse::<SocketAddr>().ok())
                    .flatten()
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Some(status) = child.try_wait().expect("poll the child") {
                panic!(
                    "civicgraph serve exited ({status}) before listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "civicgraph serve did not listen within 60 s:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        Self { child, log, addr }
    }

    /// A GraphQL client for this process.
    pub(crate) fn client(&self) -> GatewayClient {
        GatewayClient::new(self.addr)
    }

    /// `kill -9`: the process ends at once, in whatever it was doing (`Child::kill` sends
    /// SIGKILL on Unix).
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL civicgraph serve");
        let status = self.child.wait().expect("reap civicgraph serve");
        assert!(
            !status.success(),
            "a SIGKILLed process does not exit cleanly"
        );
    }

    /// The last log lines, for a failure message.
    pub(crate) fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let from = log.len().saturating_sub(40);
        log[from..].join("\n")
    }

    /// The Prometheus counter `civicgraph_event_deliveries_total` for one outcome.
    pub(crate) async fn deliveries_counted(&self, outcome: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text");
        let wanted = format!("outcome=\"{outcome}\"");
        text.lines()
            .filter(|line| {
                line.starts_with("civicgraph_event_deliveries_total{") && line.contains(&wanted)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|n| n as u64)
            .sum()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Through the graph, and checks on what the receiver got
// ---------------------------------------------------------------------------------------------

async fn operator(client: &GatewayClient, query: &str, variables: Value) -> Value {
    let answer = client
        .post_with(
            json!({ "query": query, "variables": variables }),
            &[(DEMO_OPERATOR_HEADER, "ops")],
        )
        .await;
    assert!(
        answer.body.get("errors").is_none(),
        "the operator's request failed: {:#}",
        answer.body
    );
    answer.body["data"].clone()
}

/// Registers `url` for [`AGENCY`]'s events as an operator; returns the subscriber id and the
/// secret shown once.
pub(crate) async fn register_subscriber(
    client: &GatewayClient,
    url: &str,
) -> (String, WebhookSecret) {
    let data = operator(
        client,
        "mutation($agency: String!, $url: String!, $types: [String!]) { \
           registerEventSubscriber(agency: $agency, purpose: \"case-management\", url: $url, \
             eventTypes: $types) { subscriber { id active } secret } }",
        json!({ "agency": AGENCY, "url": url, "types": [EVENT_TYPE] }),
    )
    .await;
    let registration = &data["registerEventSubscriber"];
    assert_eq!(registration["subscriber"]["active"], true, "{data:#}");
    let secret = registration["secret"]
        .as_str()
        .and_then(|s| WebhookSecret::parse(s).ok())
        .unwrap_or_else(|| panic!("a whsec_ secret: {data:#}"));
    let id = registration["subscriber"]["id"]
        .as_str()
        .expect("a subscriber id")
        .to_string();
    (id, secret)
}

/// The subscriber's deliveries in `state` (`None`: all), as `{state, event {id citizenId
/// citizenSequence}}`.
pub(crate) async fn deliveries(
    client: &GatewayClient,
    subscriber: &str,
    state: Option<&str>,
) -> Vec<Value> {
    let data = operator(
        client,
        "query($id: ID!, $state: DeliveryState) { eventDeliveries(subscriberId: $id, \
           state: $state, first: 500) { state attempts event { id citizenId citizenSequence } } }",
        json!({ "id": subscriber, "state": state }),
    )
    .await;
    data["eventDeliveries"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a list of deliveries: {data:#}"))
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
pub(crate) async fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks every reception: a valid Standard Webhooks signature, the body's `data.id` equal to
/// the `webhook-id`, and one identical body for every reception of one id (a redelivery sends
/// the same event, not a new one). Returns each event's body by id.
pub(crate) fn check_receptions(
    receptions: &[Reception],
    secret: &WebhookSecret,
) -> BTreeMap<String, Value> {
    let now = chrono::Utc::now().timestamp();
    let mut bodies: BTreeMap<String, String> = BTreeMap::new();
    for reception in receptions {
        secret
            .verify(
                &reception.id,
                &reception.timestamp,
                &reception.signature,
                reception.body.as_bytes(),
                now,
                3600,
            )
            .unwrap_or_else(|e| panic!("webhook {} is not validly signed: {e}", reception.id));
        let body = reception.json();
        assert_eq!(body["data"]["id"], reception.id.as_str(), "{body}");
        assert_eq!(body["type"], EVENT_TYPE, "{body}");
        let first = bodies
            .entry(reception.id.clone())
            .or_insert_with(|| reception.body.clone());
        assert_eq!(
            *first, reception.body,
            "event {} was sent again with a different body",
            reception.id
        );
    }
    bodies
        .into_iter()
        .map(|(id, body)| (id, serde_json::from_str(&body).expect("checked above")))
        .collect()
}

/// Per citizen, the `citizenSequence` of each event in the order of its first reception.
pub(crate) fn first_reception_order(receptions: &[Reception]) -> BTreeMap<String, Vec<i64>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for reception in receptions {
        if !seen.insert(reception.id.clone()) {
            continue;
        }
        let body = reception.json();
        let citizen = body["data"]["citizenId"].as_str().expect("a citizen id");
        let sequence = body["data"]["citizenSequence"]
            .as_i64()
            .expect("a citizen sequence");
        order.entry(citizen.to_string()).or_default().push(sequence);
    }
    order
}

/// Asserts that every citizen's events were first received as 1, 2, 3, … with none missing.
pub(crate) fn assert_in_order_per_citizen(
    receptions: &[Reception],
    per_citizen: &BTreeMap<String, usize>,
) {
    let order = first_reception_order(receptions);
    for (citizen, count) in per_citizen {
        let expected: Vec<i64> = (1..=i64::try_from(*count).unwrap()).collect();
        assert_eq!(
            order.get(citizen),
            Some(&expected),
            "citizen {citizen}'s events, in the order first received"
        );
    }
    assert_eq!(
        order.len(),
        per_citizen.len(),
        "events about citizens nobody changed: {order:?}"
    );
}

/// Citizen `n`'s canonical id.
pub(crate) fn citizen(n: usize) -> String {
    format!("C{n:07}")
}
