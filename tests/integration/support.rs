//! Servers and clients for the integration tests.
//!
//! - [`FakeAgency`]: a scripted backend on `127.0.0.1:0` that records every request it gets.
//! - [`TestGateway`]: a project written into a temporary directory, loaded exactly as
//!   `civicgraph serve` loads one, served on `127.0.0.1:0`.
//! - [`DemoStack`]: the repository's own `civicgraph.toml` in front of the simulated agencies.
//! - [`citizen_project`]: a small citizen graph (registry + tax) over two given backends.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use civicgraph::auth::{DEMO_CITIZEN_HEADER, DEMO_OPERATOR_HEADER};
use civicgraph::config::{Diagnostics, Vars};
use civicgraph::demo::{Population, SimulatedAgencies};
use civicgraph::server::{Checked, Gateway, RunningGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any single HTTP exchange in a test may take before the test fails instead of
/// hanging.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The header a GET query needs to pass the CSRF rule (a browser would preflight it).
pub(crate) const PREFLIGHT_HEADER: &str = "x-civicgraph-preflight";

/// The marker every fake error body carries; it must never reach a gateway client.
pub(crate) const BACKEND_SECRET: &str = "SECRET-BACKEND-DETAIL";

// ---------------------------------------------------------------------------------------------
// Fake agencies
// ---------------------------------------------------------------------------------------------

/// What a fake agency answers on a route.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A complete answer.
    Body {
        status: StatusCode,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// Another reply, sent after a delay (for timeouts and in-flight requests).
    Delayed(Duration, Box<Reply>),
    /// Never answers.
    Hang,
}

impl Reply {
    /// A JSON body with a status.
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::Body {
            status: StatusCode::from_u16(status).expect("a valid HTTP status"),
            headers: vec![("content-type", "application/json".to_string())],
            body: Bytes::from(body.to_string()),
        }
    }

    /// Raw bytes that claim to be JSON (a legacy backend's garbage).
    pub(crate) fn raw(status: u16, body: impl Into<Bytes>) -> Self {
        Self::Body {
            status: StatusCode::from_u16(status).expect("a valid HTTP status"),
            headers: vec![("content-type", "application/json".to_string())],
            body: body.into(),
        }
    }

    /// This reply with one more header (e.g. `location` on a redirect).
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Self::Body { headers, .. } = &mut self {
            headers.push((name, value.to_string()));
        }
        self
    }

    /// A reply that never comes.
    pub(crate) fn hang() -> Self {
        Self::Hang
    }

    /// This reply, sent only after `delay`.
    pub(crate) fn after(self, delay: Duration) -> Self {
        Self::Delayed(delay, Box::new(self))
    }

    fn respond(self) -> futures::future::BoxFuture<'static, Response> {
        Box::pin(async move {
            match self {
                Self::Body {
                    status,
                    headers,
                    body,
                } => {
                    let mut response = (status, Body::from(body)).into_response();
                    for (name, value) in headers {
                        response.headers_mut().insert(
                            name,
                            HeaderValue::from_str(&value).expect("a valid header value"),
                        );
                    }
                    response
                }
                Self::Delayed(delay, reply) => {
                    tokio::time::sleep(delay).await;
                    reply.respond().await
                }
                Self::Hang => std::future::pending().await,
            }
        })
    }
}

/// One request as a fake agency received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The route pattern it matched (`/v1/people/{id}`), or `""` when none did.
    pub(crate) route: String,
    /// The path exactly as sent, still percent-encoded.
    pub(crate) path: String,
    /// The query string, if any.
    pub(crate) query: Option<String>,
    /// The request headers.
    pub(crate) headers: HeaderMap,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// A scripted backend: `FakeAgency::new().route(path, reply).run().await`.
#[derive(Debug, Default)]
pub(crate) struct FakeAgency {
    routes: Vec<(String, Reply)>,
}

impl FakeAgency {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Answers `reply` on `pattern` (axum syntax, e.g. `/v1/people/{id}`) for any method.
    pub(crate) fn route(mut self, pattern: &str, reply: Reply) -> Self {
        self.routes.push((pattern.to_string(), reply));
        self
    }

    /// Serves on `127.0.0.1:0`; unmatched paths get a JSON 404 and are recorded too.
    pub(crate) async fn run(self) -> RunningAgency {
        let log: Log = Arc::default();
        let mut router = Router::new();
        for (pattern, reply) in self.routes {
            let log = Arc::clone(&log);
            let route = pattern.clone();
            router = router.route(
                &pattern,
                any(move |request: Request| {
                    record(&log, &route, &request);
                    reply.clone().respond()
                }),
            );
        }
        let fallback_log = Arc::clone(&log);
        router = router.fallback(move |request: Request| {
            record(&fallback_log, "", &request);
            async {
                Reply::json(404, json!({"error": "no such route"}))
                    .respond()
                    .await
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for a fake agency");
        let addr = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the fake agency serves");
        });
        RunningAgency { addr, log, task }
    }
}

fn record(log: &Log, route: &str, request: &Request) {
    log.lock()
        .expect("the log is never poisoned")
        .push(Recorded {
            route: route.to_string(),
            path: request.uri().path().to_string(),
            query: request.uri().query().map(str::to_string),
            headers: request.headers().clone(),
        });
}

/// A fake agency serving in the background; dropping it stops it.
#[derive(Debug)]
pub(crate) struct RunningAgency {
    addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl RunningAgency {
    /// `http://127.0.0.1:port`, for a connector's `base_url`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose route pattern or exact path is `path`.
    pub(crate) fn calls(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.route == path || r.path == path)
            .count()
    }

    /// Every request received, in order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("the log is never poisoned").clone()
    }

    /// Waits (polling briefly) until `path` has been called `count` times.
    pub(crate) async fn wait_for_calls(&self, path: &str, count: usize) {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while self.calls(path) < count {
            assert!(
                Instant::now() < deadline,
                "`{path}` was never called {count} time(s); requests: {:?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RunningAgency {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on which nothing listens: a port that was just bound and released.
pub(crate) fn refused_url() -> String {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port to release");
    let port = listener.local_addr().expect("a bound address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------------
// Projects and gateways
// ---------------------------------------------------------------------------------------------

/// A project on disk: `civicgraph.toml`, `schema/`, `connectors/`, and the variables to load
/// it with (the process environment is never read).
#[derive(Debug)]
pub(crate) struct Project {
    dir: tempfile::TempDir,
    vars: HashMap<String, String>,
}

impl Project {
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("civicgraph.toml")
    }

    pub(crate) fn vars(&self) -> Vars {
        Vars::only(self.vars.clone())
    }

    /// The `${VAR}` values, for a child process's environment.
    pub(crate) fn env(&self) -> &HashMap<String, String> {
        &self.vars
    }
}

/// Serves a loaded gateway on an ephemeral loopback port in the background.
pub(crate) async fn serve_on_loopback(gateway: Gateway) -> RunningGateway {
    gateway
        .with_listen_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .bind()
        .await
        .expect("bind a loopback port for the gateway")
        .spawn()
}

/// Loads and validates a project as `civicgraph check` does, opening nothing.
pub(crate) fn check(project: &Project) -> Result<Checked, Diagnostics> {
    civicgraph::server::check(&project.config_path(), &project.vars())
}

/// Builds a [`Project`] and, with [`TestGatewayBuilder::build`], a running gateway.
#[derive(Debug)]
pub(crate) struct TestGatewayBuilder {
    gateway_toml: Option<String>,
    server: Vec<String>,
    http: Vec<String>,
    schemas: BTreeMap<String, String>,
    connectors: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<u8>>,
    vars: HashMap<String, String>,
}

impl TestGatewayBuilder {
    /// Adds any other file (a copybook, a WSDL), by its path inside the project.
    pub(crate) fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_string(), contents.into());
        self
    }

    /// Adds (or replaces) `schema/<name>`.
    pub(crate) fn schema(mut self, name: &str, sdl: &str) -> Self {
        self.schemas.insert(name.to_string(), sdl.to_string());
        self
    }

    /// Adds (or replaces) `connectors/<name>`.
    pub(crate) fn connector(mut self, name: &str, toml: &str) -> Self {
        self.connectors.insert(name.to_string(), toml.to_string());
        self
    }

    /// Sets a `${VAR}` value.
    pub(crate) fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Adds a `key = value` line to `[server]` in the generated `civicgraph.toml`.
    pub(crate) fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Adds a `key = value` line to `[http]` (dotted keys reach `csrf.` and `cors.`).
    pub(crate) fn http(mut self, line: &str) -> Self {
        self.http.push(line.to_string());
        self
    }

    /// Writes this exact text as `civicgraph.toml` instead of the generated one.
    pub(crate) fn gateway_toml(mut self, text: &str) -> Self {
        self.gateway_toml = Some(text.to_string());
        self
    }

    /// Writes the project into a fresh temporary directory.
    pub(crate) fn write(self) -> Project {
        let dir = tempfile::tempdir().expect("create a temporary project directory");
        let gateway_toml = self.gateway_toml.unwrap_or_else(|| {
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{}\n\n[storage]\nurl = \"sqlite::memory:\"\n\n[http]\n{}\n",
                self.server.join("\n"),
                self.http.join("\n")
            )
        });
        write_file(&dir.path().join("civicgraph.toml"), &gateway_toml);
        std::fs::create_dir(dir.path().join("schema")).expect("create schema/");
        std::fs::create_dir(dir.path().join("connectors")).expect("create connectors/");
        for (name, sdl) in &self.schemas {
            write_file(&dir.path().join("schema").join(name), sdl);
        }
        for (name, toml) in &self.connectors {
            write_file(&dir.path().join("connectors").join(name), toml);
        }
        for (path, contents) in &self.files {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create the file's directory");
            }
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        Project {
            dir,
            vars: self.vars,
        }
    }

    /// Writes, loads, binds `127.0.0.1:0` and serves. Panics with the diagnostics when the
    /// project does not load, since every caller expects a valid one.
    pub(crate) async fn build(self) -> TestGateway {
        let project = self.write();
        let gateway = match Gateway::load(&project.config_path(), &project.vars()).await {
            Ok(gateway) => gateway,
            Err(error) => panic!("the test project does not load:\n{error}"),
        };
        let running = serve_on_loopback(gateway).await;
        TestGateway {
            client: GatewayClient::new(running.addr),
            running,
            _project: project,
        }
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A gateway serving a temporary project.
#[derive(Debug)]
pub(crate) struct TestGateway {
    client: GatewayClient,
    running: RunningGateway,
    _project: Project,
}

impl TestGateway {
    pub(crate) fn builder() -> TestGatewayBuilder {
        TestGatewayBuilder {
            gateway_toml: None,
            server: Vec::new(),
            http: Vec::new(),
            schemas: BTreeMap::new(),
            connectors: BTreeMap::new(),
            files: BTreeMap::new(),
            vars: HashMap::new(),
        }
    }

    /// Stops the gateway the way `civicgraph serve` does on SIGTERM.
    pub(crate) async fn shutdown(self) -> std::io::Result<()> {
        self.running.shutdown().await
    }
}

impl std::ops::Deref for TestGateway {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

/// What the gateway answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub(crate) body: Value,
    /// The body as text, for checks that must see every byte.
    pub(crate) text: String,
}

impl Answer {
    /// The `Content-Type` header, or `""`.
    pub(crate) fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE.as_str())
    }

    /// A header's value, or `""`.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn new(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        Self {
            status,
            headers,
            body: serde_json::from_slice(bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// An HTTP client for one gateway; cheap to clone into a spawned task.
#[derive(Debug, Clone)]
pub(crate) struct GatewayClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl GatewayClient {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("build an HTTP client"),
            addr,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /graphql` with `{"query": query}` and no special headers.
    pub(crate) async fn post(&self, query: &str) -> Answer {
        self.post_with(json!({ "query": query }), &[]).await
    }

    /// `POST /graphql` with `{"query": query}` as the citizen `citizen_id` (the demo header
    /// `X-Demo-Citizen`, which the gateway must have switched on).
    pub(crate) async fn post_as_citizen(&self, citizen_id: &str, query: &str) -> Answer {
        self.post_with(
            json!({ "query": query }),
            &[(DEMO_CITIZEN_HEADER, citizen_id)],
        )
        .await
    }

    /// `POST /graphql` with `{"query": query}` as the operator `operator` (the demo header
    /// `X-Demo-Operator`, which the gateway must have switched on).
    pub(crate) async fn post_as_operator(&self, operator: &str, query: &str) -> Answer {
        self.post_with(
            json!({ "query": query }),
            &[(DEMO_OPERATOR_HEADER, operator)],
        )
        .await
    }

    /// `POST /graphql` with a JSON body; `headers` are added to (or replace)
    /// `Content-Type: application/json`.
    pub(crate) async fn post_with(&self, body: Value, headers: &[(&str, &str)]) -> Answer {
        self.post_body(body.to_string(), headers).await
    }

    /// `POST /graphql` with any body.
    pub(crate) async fn post_body(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in headers {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        let request = self.http.post(self.url("/graphql")).headers(map).body(body);
        send(request).await
    }

    /// `GET /graphql?query=…` (URL-encoded), with the header that opens the CSRF gate.
    pub(crate) async fn get_query(&self, query: &str) -> Answer {
        send(
            self.http
                .get(self.url("/graphql"))
                .header(PREFLIGHT_HEADER, "1")
                .query(&[("query", query)]),
        )
        .await
    }

    /// `GET path` with extra headers.
    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request).await
    }

    /// Sends `request` byte for byte on a new connection and reads the answer to the end.
    /// For what reqwest will not send, such as a request with no `Accept` header at all.
    pub(crate) async fn raw(&self, request: &str) -> Answer {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).await?;
            std::io::Result::Ok(bytes)
        };
        let bytes = tokio::time::timeout(CLIENT_TIMEOUT, exchange)
            .await
            .expect("the gateway answers in time")
            .expect("a raw HTTP exchange");
        parse_http_response(&bytes)
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("read the gateway's body");
    Answer::new(status, headers, &bytes)
}

/// Parses an HTTP/1.1 answer with a `Content-Length` or chunked body.
fn parse_http_response(bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP header block");
    let head = std::str::from_utf8(&bytes[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a `name: value` header");
        headers.append(
            header::HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            HeaderValue::from_str(value.trim()).expect("a header value"),
        );
    }
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size line");
            let size_text = std::str::from_utf8(&rest[..line_end]).expect("a chunk size");
            let size = usize::from_str_radix(size_text.trim(), 16).expect("a hex chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = decoded;
    }
    Answer::new(
        StatusCode::from_u16(status).expect("a valid status"),
        headers,
        &body,
    )
}

// ---------------------------------------------------------------------------------------------
// The demo: shipped configuration + simulated agencies
// ---------------------------------------------------------------------------------------------

/// The seed the demo and the documentation use.
pub(crate) const DEMO_SEED: u64 = 42;

/// The repository's `civicgraph.toml`.
pub(crate) fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml")
}

/// The simulated agencies and the gateway loaded from the repository's own configuration.
#[derive(Debug)]
pub(crate) struct DemoStack {
    client: GatewayClient,
    pub(crate) population: Arc<Population>,
    /// The gateway's consent ledger, for granting consents as citizens would.
    pub(crate) ledger: civicgraph::consent::ConsentLedger,
    /// The gateway's life-event outbox, for recording events as its detectors would.
    pub(crate) outbox: civicgraph::events::Outbox,
    /// The gateway's live feed, to see how many subscriptions listen.
    pub(crate) feed: Option<civicgraph::events::feed::EventFeed>,
    /// What the development issuer needs to mint tokens for this stack.
    vars: Vars,
    _gateway: RunningGateway,
    _agencies: SimulatedAgencies,
    /// The UI database, the gateway's signing key and its audit checkpoints, so that no test
    /// writes into the repository's `.civicgraph/`.
    _ui_database: tempfile::TempDir,
}

impl DemoStack {
    /// A bearer token of the development issuer for an agency client of `agency`.
    pub(crate) fn agency_token(&self, agency: &str, scopes: &[&str], purpose: &str) -> String {
        let (config, root) = civicgraph::config::load_gateway_config(&repo_config(), &self.vars)
            .unwrap_or_else(|problems| panic!("the shipped configuration: {problems}"));
        civicgraph::auth::dev_tokens::mint(
            &config,
            &root,
            &civicgraph::auth::dev_tokens::Persona::Agency {
                client_id: format!("{agency}-test-client"),
                agency: agency.to_string(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                purpose: purpose.to_string(),
            },
            chrono::Utc::now(),
            chrono::Duration::minutes(10),
        )
        .expect("mint a development token")
    }
}

impl std::ops::Deref for DemoStack {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

/// Starts the simulated agencies (seed [`DEMO_SEED`]): registry, tax, motor vehicles over
/// SOAP and unemployment insurance in an SQLite file; then the shipped gateway in front of
/// them with the citizens linked in its identity crosswalk, as `civicgraph demo` does. The demo
/// headers are on, so a test acts as a citizen with [`GatewayClient::post_as_citizen`] or as an
/// operator with [`GatewayClient::post_as_operator`].
pub(crate) async fn start_demo(citizens: usize) -> DemoStack {
    let population = Arc::new(Population::generate(citizens, DEMO_SEED));
    let agencies = SimulatedAgencies::start(Arc::clone(&population))
        .await
        .expect("start the simulated agencies");
    let ui_database = tempfile::tempdir().expect("a directory for the UI database");
    let ui_path = ui_database.path().join("ui.db");
    civicgraph::demo::ui::seed(
        &civicgraph::demo::ui::sqlite_url(&ui_path, "rwc"),
        &population,
    )
    .await
    .expect("seed the unemployment insurance database");
    let vars = Vars::only(HashMap::from([
        ("REGISTRY_URL".to_string(), agencies.registry_url.clone()),
        ("TAX_URL".to_string(), agencies.tax_url.clone()),
        ("DMV_URL".to_string(), agencies.dmv_url.clone()),
        (
            "BENEFITS_MAINFRAME_ADDR".to_string(),
            agencies.benefits_addr.clone(),
        ),
        (
            "BENEFITS_EXTRACT_DIR".to_string(),
            agencies.benefits_extract_dir.display().to_string(),
        ),
        (
            "UI_DATABASE_URL".to_string(),
            civicgraph::demo::ui::sqlite_url(&ui_path, "ro"),
        ),
        (
            "CIVICGRAPH_STORAGE_URL".to_string(),
            "sqlite::memory:".to_string(),
        ),
        ("CIVICGRAPH_DEMO_HEADERS".to_string(), "true".to_string()),
        ("CIVICGRAPH_DEV_TOKENS".to_string(), "true".to_string()),
        (
            "CIVICGRAPH_DEV_KEY".to_string(),
            ui_database
                .path()
                .join("dev-issuer-key.pem")
                .display()
                .to_string(),
        ),
        (
            "CIVICGRAPH_SIGNING_KEY".to_string(),
            ui_database
                .path()
                .join("signing-key.pem")
                .display()
                .to_string(),
        ),
        (
            "CIVICGRAPH_AUDIT_CHECKPOINTS".to_string(),
            ui_database
                .path()
                .join("audit-checkpoints.jsonl")
                .display()
                .to_string(),
        ),
    ]));
    let gateway = match Gateway::load(&repo_config(), &vars).await {
        Ok(gateway) => gateway,
        Err(error) => panic!("the shipped configuration does not load:\n{error}"),
    };
    civicgraph::demo::link_population(&gateway.crosswalk(), &population)
        .await
        .expect("link the demo citizens");
    let ledger = gateway.consent_ledger();
    let outbox = gateway.outbox();
    let feed = gateway.event_feed();
    let running = serve_on_loopback(gateway).await;
    DemoStack {
        client: GatewayClient::new(running.addr),
        population,
        ledger,
        outbox,
        feed,
        vars,
        _gateway: running,
        _agencies: agencies,
        _ui_database: ui_database,
    }
}

// ---------------------------------------------------------------------------------------------
// A small citizen graph over fake backends
// ---------------------------------------------------------------------------------------------

/// Citizens from a registry, joined with their tax accounts by TIN.
pub(crate) const CITIZEN_SDL: &str = r#"scalar Money

type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
}

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}

type TaxAccount {
  tin: String!
  balance: Money!
  filingStatus: FilingStatus
}

enum FilingStatus {
  FILED
  OVERDUE
}
"#;

/// The registry connector; `${REGISTRY_URL}` is the fake registry.
pub(crate) const REGISTRY_TOML: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"
timeout_ms = 2000

[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

/// The tax connector; its timeout, 404 policy and API key come from variables.
pub(crate) const TAX_TOML: &str = r#"name = "tax"
kind = "rest"
base_url = "${TAX_URL}"
timeout_ms = ${TAX_TIMEOUT_MS:-2000}

[headers]
x-api-key = "${TAX_API_KEY:-no-key}"

[operations.account]
path = "/v1/taxpayers/{tin}/account"
select = "/account"
not_found = "${TAX_NOT_FOUND:-null}"
"#;

/// The route of the fake registry's person endpoint.
pub(crate) const PERSON_ROUTE: &str = "/v1/people/{id}";
/// The route of the fake tax agency's account endpoint.
pub(crate) const ACCOUNT_ROUTE: &str = "/v1/taxpayers/{tin}/account";

/// The one person the fake registry knows, as it serves them.
pub(crate) fn ada() -> Value {
    json!({"person": {"id": "C0000001", "full_name": "Ada Lovelace", "tin": "123456789"}})
}

/// Ada's tax account, as the fake tax agency serves it.
pub(crate) fn ada_account() -> Value {
    json!({"account": {"tin": "123456789", "balance": "-120.50", "filing_status": "FILED"}})
}

/// A registry that knows Ada under any id.
pub(crate) async fn ada_registry() -> RunningAgency {
    FakeAgency::new()
        .route(PERSON_ROUTE, Reply::json(200, ada()))
        .run()
        .await
}

/// A tax agency that answers every account request with `reply`.
pub(crate) async fn tax_agency(reply: Reply) -> RunningAgency {
    FakeAgency::new().route(ACCOUNT_ROUTE, reply).run().await
}

/// [`CITIZEN_SDL`] with its two connectors pointed at `registry_url` and `tax_url`.
pub(crate) fn citizen_project(registry_url: &str, tax_url: &str) -> TestGatewayBuilder {
    TestGateway::builder()
        .schema("citizen.graphql", CITIZEN_SDL)
        .connector("registry.toml", REGISTRY_TOML)
        .connector("tax.toml", TAX_TOML)
        .var("REGISTRY_URL", registry_url)
        .var("TAX_URL", tax_url)
}

/// The parts of a GraphQL response a test asserts on: `data` and, for each error, its `path`
/// and `extensions` (messages and locations are wording, checked elsewhere).
pub(crate) fn outcome(body: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(data) = body.get("data") {
        out.insert("data".to_string(), data.clone());
    }
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        let errors = errors
            .iter()
            .map(|e| {
                let mut kept = serde_json::Map::new();
                for key in ["path", "extensions"] {
                    if let Some(value) = e.get(key) {
                        kept.insert(key.to_string(), value.clone());
                    }
                }
                Value::Object(kept)
            })
            .collect();
        out.insert("errors".to_string(), Value::Array(errors));
    }
    Value::Object(out)
}
