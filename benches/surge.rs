//! Surge benchmark: a legacy backend that falls over beyond 74 calls in flight, a crowd of
//! citizens ramping from 50 to 1000 at once, and the gateway with its shield on and off.
//!
//! Run with `cargo bench --bench surge`. Everything happens in this one process, on loopback:
//!
//! - **The backend** is the unemployment insurance agency's claim service, an axum server on
//!   `127.0.0.1:0` with one operation, `GET /v1/claimants/{id}/claim`, answering a record
//!   derived from the citizen id after a service time drawn uniformly from 20–50 ms (the
//!   mainframe behind it is slow, so 74 calls in flight is real traffic, not a burst of
//!   microseconds). It counts every call, the calls in flight (an atomic, increased on arrival
//!   and decreased when the handler ends, however it ends) and their peak; a call that arrives
//!   while [`BACKEND_LIMIT`] = 74 are already in flight is answered `503` at once (the issue's
//!   Rhode Island phone line). A refused call counts as in flight for the moment it is there,
//!   so a peak above 74 means the backend was asked for more than it could take.
//! - **The gateway** is loaded in-process from a project written into a temporary directory:
//!   `civicgraph.toml` (loopback listener, an SQLite store file in the directory, demo headers
//!   so each request acts as the citizen named in `X-Demo-Citizen`, and `[shield] enabled`,
//!   the one line that differs between the two gateway runs; the signing key and audit
//!   checkpoints default to paths inside the directory), `schema/surge.graphql` (`Query.me`,
//!   the signed-in citizen's claim, `@connect`ed to the backend and `@public`) and
//!   `connectors/ui_claims.toml` ([`MAX_CONCURRENCY`] = 64 below the backend's 74, a queue
//!   timeout of [`QUEUE_TIMEOUT_MS`], a cache of [`CACHE_TTL_S`] s with stale answers served
//!   for [`STALE_S`] s when the backend cannot answer, and a connection pool large enough
//!   that neither run churns TCP connections).
//! - **The clients** are a load generator on a pooled HTTP/1.1 keep-alive `reqwest` client:
//!   each worker loops, asking for one citizen's claim at a time, the citizen drawn from a Zipf
//!   distribution (exponent 1.0 by default) over 10 000 citizens, so a few citizens are asked
//!   for all the time and most rarely, as when a whole state refreshes its claim page. Workers
//!   are added at each step of the ramp, 50 → 100 → 250 → 500 → 1000, and keep running to the
//!   end, 4 s per step.
//!
//! Three runs, one after another, each with a fresh backend (and gateway), so each starts cold:
//!
//! 1. **baseline**: the clients call the backend directly, no gateway, at the same
//!    concurrency: what the backend alone does under the surge, measured in the same run
//!    because the machine is shared and noisy;
//! 2. **shield off**: through the gateway with `[shield] enabled = false` (every call goes
//!    straight to the connector: no cache, coalescing, bulkhead, breaker or retries);
//! 3. **shield on**: the same gateway with `[shield] enabled = true`.
//!
//! Every answer is checked: a gateway answer without errors must be exactly the claim of the
//! citizen asked for (so a cache entry served to the wrong citizen would show), and a
//! baseline `200` must carry that citizen's record. For every step and overall, each run
//! prints requests/s (requests started in the step's window, per second of it) and answers
//! without errors per second, p50/p99 latency over every answer, stale answers (served from
//! the cache past their TTL, marked in `extensions.freshness`, while the backend was busy),
//! errors by `extensions.code` and HTTP status, the backend's calls, its refusals and its
//! peak in flight, the cache hit ratio `1 − backend calls / requests` and backend calls per
//! request.
//!
//! The benchmark **fails** (exits non-zero) when, with the shield on, the backend's peak in
//! flight ever exceeded 74 (the issue's property); when any answer was wrong; when the
//! baseline never pushed the backend past its limit although the ramp goes beyond it (the
//! peak counter would then prove nothing); or when a gateway run answered nothing at all.
//! A shield-on peak above [`MAX_CONCURRENCY`] but at most 74 does not fail the run but is
//! printed as a finding: the bulkhead is meant never to let more through.
//!
//! # Settings (environment variables)
//!
//! | variable               | default               | meaning                                                                       |
//! |------------------------|-----------------------|-------------------------------------------------------------------------------|
//! | `SURGE_STEPS`          | `50,100,250,500,1000` | concurrent clients at each step of the ramp                                   |
//! | `SURGE_STEP_SECONDS`   | `4`                   | seconds per step                                                              |
//! | `SURGE_CITIZENS`       | `10000`               | how many citizens the Zipf distribution spreads over                          |
//! | `SURGE_ZIPF_S`         | `1.0`                 | the Zipf exponent (0 is uniform; 1.0–1.1 is typical)                          |
//! | `SURGE_SEED`           | `42`                  | seed of the clients' and the backend's random draws                           |
//! | `SURGE_SERVICE_MS`     | `20-50`               | the backend's service time range, in ms                                       |
//! | `SURGE_RUNS`           | `baseline,off,on`     | which runs, in order                                                          |
//! | `SURGE_THREADS`        | cores                 | worker threads of the runtime the backend and the gateway share               |
//! | `SURGE_CLIENT_THREADS` | `1`                   | worker threads of the clients' own runtime; `0` puts them on the servers' one |
//!
//! With the defaults a run takes about 65 s (3 runs × 5 steps × 4 s, plus set-up and drain).
//! Without `--bench` on the command line (`cargo test --benches`), the binary only checks
//! itself with small numbers: steps of 20 and 150 clients, 0.5 s each, citizens drawn
//! uniformly from 100 000 (so nearly every request misses the cache and the shield's bulkhead
//! fills up) and a backend taking 100–200 ms (so that even an unoptimised client drives it
//! well past 74 calls in flight in the baseline), which checks the shield-on peak under
//! pressure. The variables below override these too.
//!
//! # Reading the numbers
//!
//! Clients, gateway and backend share one process and the machine's cores, so requests/s are
//! what this machine does with all three at once, not a deployment's capacity: compare the
//! runs with one another, not with other machines. The clients get a tokio runtime of their
//! own by default, as clients on other machines would: on the servers' runtime, a crowd of
//! 1000 client tasks sits in the same run queue as the gateway's, so each of the gateway's
//! wake-ups waits behind them, and the shield's slots end up held mostly by calls waiting for
//! a thread rather than by the backend. (Measured with `SURGE_CLIENT_THREADS=0` on a 2-core
//! machine: with the shield on, the backend's peak stayed at 44–54 while the bulkhead, full,
//! was already shedding `BACKEND_BUSY`; with a client runtime of one thread the peak is 64,
//! the bulkhead's limit, from 250 clients on.) A slot is held from the moment the shield
//! takes it until the connector has read the answer, so under CPU pressure the backend sees
//! fewer calls at once than the shield counts, never more.
//!
//! A request belongs to
//! the step in which it *started*; the backend's counters are read at the step boundaries,
//! and once more after the last step, when the clients have stopped starting requests and
//! every request still under way has finished. So for the whole ramp `backend calls /
//! requests` is exact, while per step it can be off by the calls of requests that started
//! just before a boundary and reached the backend just after it (at most the concurrency).
//! A request the shield sheds with `BACKEND_BUSY` makes no backend call, so it counts towards
//! the hit ratio as the formula defines it; read the ratio together with the error column.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark binary's report on stdout is its whole output"
)]

use std::collections::BTreeMap;
use std::env;
use std::fmt::{Display, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use civicgraph::auth::DEMO_CITIZEN_HEADER;
use civicgraph::config::Vars;
use civicgraph::demo::data::citizen_id;
use civicgraph::server::{Gateway, RunningGateway};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Calls the backend takes at once; one more and it answers 503.
const BACKEND_LIMIT: usize = 74;
/// The connector's `max_concurrency`: the shield's own limit, below the backend's.
const MAX_CONCURRENCY: usize = 64;
/// The connector's `queue_timeout_ms`: how long a call waits for a slot before `BACKEND_BUSY`.
const QUEUE_TIMEOUT_MS: u64 = 100;
/// The connector's `cache.ttl_s`: short, so that answers expire during the ramp and the
/// figures show a steady state rather than a cache that only ever warms up.
const CACHE_TTL_S: u64 = 5;
/// The connector's `cache.serve_stale_on_error_s`.
const STALE_S: u64 = 60;
/// The connector's `timeout_ms`: far above the service time, so no call times out unless the
/// machine itself stalls.
const CONNECTOR_TIMEOUT_MS: u64 = 5_000;
/// The client's deadline per request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping a server may take before the benchmark stops waiting for it.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// Citizens whose gateway answers are compared with the backend's records before a run.
const SAMPLE_CHECKS: usize = 5;

/// The citizen query: the signed-in citizen's own claim.
const QUERY: &str = "query Claim { me { id claimId status filedOn weeklyBenefit weeksPaid } }";

/// The connector's name in the SDL and in `extensions.freshness`.
const CONNECTOR: &str = "ui_claims";

/// The gateway's whole graph: `me`, bound to the backend. `@public` because the caller is the
/// citizen whose claim it is, and the benchmark is about the shield, not the policy engine.
const SCHEMA: &str = r#""A decimal amount as a string (`412.50`)."
scalar Money

"A calendar date, `YYYY-MM-DD`."
scalar Date

type Query {
  "The signed-in citizen's unemployment claim, as the claims site's status page asks for it."
  me: Citizen
    @connect(connector: "ui_claims", operation: "claim", args: {id: "$caller.citizenId"})
    @public
}

"A citizen with their current unemployment claim."
type Citizen {
  id: ID!
  claimId: ID
  status: ClaimStatus
  filedOn: Date
  weeklyBenefit: Money
  weeksPaid: Int
}

"Where a claim stands."
enum ClaimStatus {
  PENDING
  ACTIVE
  EXHAUSTED
  DENIED
}
"#;

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let servers = runtime("surge-servers", settings.threads)?;
    let clients = match settings.client_threads {
        Some(threads) => Some(runtime("surge-clients", threads)?),
        None => None,
    };
    let clients_handle = clients.as_ref().map_or_else(
        || servers.handle().clone(),
        |clients| clients.handle().clone(),
    );
    let outcome = servers.block_on(surge(&settings, &clients_handle));
    // The clients' runtime goes first: no task of it outlives the servers.
    drop(clients);
    outcome
}

fn runtime(name: &str, threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("cannot build the `{name}` tokio runtime"))
}

/// Runs every configured run, prints the tables, then checks the properties. The clients'
/// workers are spawned on `clients`.
async fn surge(settings: &Settings, clients: &tokio::runtime::Handle) -> Result<()> {
    let zipf = Arc::new(Zipf::new(settings.citizens, settings.zipf_s));
    print_context(settings, &zipf);
    let mut results = Vec::new();
    for &run in &settings.runs {
        let result = run_once(settings, run, &zipf, clients)
            .await
            .with_context(|| format!("the {} run failed", run.title()))?;
        print_run(settings, &result);
        results.push(result);
    }
    print_summary(&results);
    verdict(settings, &results)
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// Which way the clients reach the claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Straight to the backend.
    Baseline,
    /// Through the gateway, `[shield] enabled = false`.
    ShieldOff,
    /// Through the gateway, `[shield] enabled = true`.
    ShieldOn,
}

impl Run {
    fn title(self) -> &'static str {
        match self {
            Self::Baseline => "baseline (backend direct, no gateway)",
            Self::ShieldOff => "gateway, shield off",
            Self::ShieldOn => "gateway, shield on",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Baseline => "baseline: backend direct",
            Self::ShieldOff => "shield off",
            Self::ShieldOn => "shield on",
        }
    }
}

impl FromStr for Run {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "baseline" => Ok(Self::Baseline),
            "off" => Ok(Self::ShieldOff),
            "on" => Ok(Self::ShieldOn),
            _ => bail!("SURGE_RUNS lists `baseline`, `off` and `on`, not `{text}`"),
        }
    }
}

/// What to run, from the environment (see the table at the top of the file).
#[derive(Debug, Clone)]
struct Settings {
    steps: Vec<usize>,
    step: Duration,
    citizens: usize,
    zipf_s: f64,
    seed: u64,
    service_ms: (u64, u64),
    runs: Vec<Run>,
    /// Worker threads of the servers' runtime (and of the clients', when they share it).
    threads: usize,
    /// Worker threads of the clients' own runtime; `None` runs them on the servers' one.
    client_threads: Option<usize>,
    /// Run without `--bench`: a quick self-check, not a measurement.
    smoke: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let smoke = !env::args().any(|arg| arg == "--bench");
        // The self-check draws citizens uniformly from a large set, so that nearly every
        // request misses the cache and the shield's bulkhead is full, and makes the backend
        // slower, so that even an unoptimised client keeps well over 74 calls in flight in the
        // baseline: the peak check has teeth.
        let (steps, seconds, citizens, zipf_s, service) = if smoke {
            ("20,150", 0.5, 100_000, 0.0, "100-200")
        } else {
            ("50,100,250,500,1000", 4.0, 10_000, 1.0, "20-50")
        };
        let steps_text = env::var("SURGE_STEPS").unwrap_or_else(|_| steps.into());
        let steps = steps_text
            .split(',')
            .map(str::trim)
            .filter(|level| !level.is_empty())
            .map(|level| match level.parse::<usize>() {
                Ok(level @ 1..=5000) => Ok(level),
                _ => Err(anyhow!(
                    "SURGE_STEPS must list numbers of clients from 1 to 5000 (e.g. `50,100,250`), not `{level}`"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!steps.is_empty(), "SURGE_STEPS lists no step");
        ensure!(
            steps.windows(2).all(|pair| pair[0] <= pair[1]),
            "SURGE_STEPS is a ramp: each step needs at least as many clients as the one before, not `{steps_text}`"
        );
        let seconds: f64 = env_or("SURGE_STEP_SECONDS", seconds)?;
        ensure!(
            seconds.is_finite() && seconds > 0.0 && seconds <= 600.0,
            "SURGE_STEP_SECONDS must be above 0 and at most 600, not {seconds}"
        );
        let citizens: usize = env_or("SURGE_CITIZENS", citizens)?;
        ensure!(
            (1..=1_000_000).contains(&citizens),
            "SURGE_CITIZENS must be between 1 and 1000000, not {citizens}"
        );
        let zipf_s: f64 = env_or("SURGE_ZIPF_S", zipf_s)?;
        ensure!(
            zipf_s.is_finite() && (0.0..=5.0).contains(&zipf_s),
            "SURGE_ZIPF_S must be between 0 and 5, not {zipf_s}"
        );
        let service_text = env::var("SURGE_SERVICE_MS").unwrap_or_else(|_| service.into());
        let service_ms = parse_range(&service_text).with_context(|| {
            format!("SURGE_SERVICE_MS must be `min-max` in ms (e.g. `20-50`, at most 10000), not `{service_text}`")
        })?;
        let runs_text = env::var("SURGE_RUNS").unwrap_or_else(|_| "baseline,off,on".into());
        let runs = runs_text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Run::from_str)
            .collect::<Result<Vec<_>>>()?;
        ensure!(!runs.is_empty(), "SURGE_RUNS lists no run");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads: usize = env_or("SURGE_THREADS", cores)?;
        ensure!(
            (1..=256).contains(&threads),
            "SURGE_THREADS must be between 1 and 256, not {threads}"
        );
        let client_threads: usize = env_or("SURGE_CLIENT_THREADS", 1)?;
        ensure!(
            client_threads <= 256,
            "SURGE_CLIENT_THREADS must be between 0 and 256, not {client_threads}"
        );
        Ok(Self {
            steps,
            step: Duration::from_secs_f64(seconds),
            citizens,
            zipf_s,
            seed: env_or("SURGE_SEED", 42)?,
            service_ms,
            runs,
            threads,
            client_threads: (client_threads > 0).then_some(client_threads),
            smoke,
        })
    }

    fn most_clients(&self) -> usize {
        self.steps.iter().copied().max().unwrap_or(1)
    }
}

/// `min-max` in ms, `min <= max <= 10000`.
fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (min, max) = text.split_once('-')?;
    let (min, max) = (min.trim().parse().ok()?, max.trim().parse().ok()?);
    (min <= max && max <= 10_000).then_some((min, max))
}

/// Reads and parses an environment variable, or gives the default when it is unset.
fn env_or<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    match env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|error| anyhow!("{name}=`{text}` is not valid: {error}")),
        Err(env::VarError::NotPresent) => Ok(default),
        Err(env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

// ---------------------------------------------------------------------------------------------
// Random draws
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast generator, plenty for drawing
/// citizens and service times, and written here so the benchmark needs no extra crate.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// A Zipf distribution over ranks `0..n`: rank `k` (0-based) is drawn with probability
/// proportional to `1 / (k + 1)^s`. Sampling inverts the cumulative weights by binary search,
/// exact for any `s` and `n` (a table of `n` floats; 80 kB for 10 000 citizens).
#[derive(Debug)]
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += (rank as f64).powf(-s);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let target = rng.next_f64() * self.total();
        self.cumulative
            .partition_point(|&c| c <= target)
            .min(self.cumulative.len() - 1)
    }

    /// The share of draws that fall on the `top` most popular ranks.
    fn share_of_top(&self, top: usize) -> f64 {
        let top = top.clamp(1, self.cumulative.len());
        self.cumulative[top - 1] / self.total()
    }
}

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/// The claim record the backend holds for citizen number `index` (0-based), as it serves it.
fn claim_record(index: usize) -> Value {
    json!({
        "id": citizen_id(index),
        "claim_id": format!("UI-{:08}", index * 7 + 3),
        "status": claim_status(index),
        "filed_on": format!("2020-{:02}-{:02}", 3 + index % 4, 1 + index % 28),
        "weekly_benefit": format!("{}.{:02}", 120 + index % 480, index % 100),
        "weeks_paid": index % 27,
    })
}

fn claim_status(index: usize) -> &'static str {
    ["ACTIVE", "PENDING", "ACTIVE", "EXHAUSTED", "DENIED"][index % 5]
}

/// What the gateway must answer for `me` when citizen number `index` asks.
fn expected_me(index: usize) -> Value {
    let record = claim_record(index);
    json!({
        "id": record["id"],
        "claimId": record["claim_id"],
        "status": record["status"],
        "filedOn": record["filed_on"],
        "weeklyBenefit": record["weekly_benefit"],
        "weeksPaid": record["weeks_paid"],
    })
}

/// The citizen number of a canonical id (`C0000001` is 0).
fn citizen_index(id: &str) -> Option<usize> {
    let digits = id.strip_prefix('C')?;
    if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_sub(1)
}

/// The backend's counters.
#[derive(Debug, Default)]
struct BackendCounters {
    /// Every call that arrived, refused or not.
    calls: AtomicU64,
    /// Calls answered 503 because 74 were already in flight.
    refused: AtomicU64,
    in_flight: AtomicUsize,
    /// The highest `in_flight` since the last [`BackendCounters::take_window`].
    window_peak: AtomicUsize,
    /// The highest `in_flight` ever.
    peak: AtomicUsize,
}

/// Counters at a step boundary, and the peak since the previous one.
#[derive(Debug, Clone, Copy, Default)]
struct BackendWindow {
    calls: u64,
    refused: u64,
    peak: usize,
}

impl BackendWindow {
    /// The calls and refusals since `earlier`, with this window's peak.
    fn since(self, earlier: Self) -> Self {
        Self {
            calls: self.calls - earlier.calls,
            refused: self.refused - earlier.refused,
            peak: self.peak,
        }
    }
}

impl BackendCounters {
    /// Reads the totals and restarts the window's peak from the calls in flight now.
    fn take_window(&self) -> BackendWindow {
        let now = self.in_flight.load(Ordering::SeqCst);
        BackendWindow {
            calls: self.calls.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::SeqCst),
            peak: self.window_peak.swap(now, Ordering::SeqCst),
        }
    }
}

/// Leaves the in-flight count when the handler ends, however it ends (a dropped connection
/// drops the handler's future too).
struct InFlight<'a>(&'a BackendCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Backend {
    counters: BackendCounters,
    seed: u64,
    service_ms: (u64, u64),
    citizens: usize,
}

async fn claim(State(backend): State<Arc<Backend>>, UrlPath(id): UrlPath<String>) -> Response {
    let counters = &backend.counters;
    let call = counters.calls.fetch_add(1, Ordering::SeqCst);
    let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(counters);
    counters.window_peak.fetch_max(now, Ordering::SeqCst);
    counters.peak.fetch_max(now, Ordering::SeqCst);
    if now > BACKEND_LIMIT {
        counters.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "all lines are busy" })),
        )
            .into_response();
    }
    let (min, max) = backend.service_ms;
    let service = min + SplitMix64(backend.seed ^ call).next_u64() % (max - min + 1);
    tokio::time::sleep(Duration::from_millis(service)).await;
    match citizen_index(&id).filter(|&index| index < backend.citizens) {
        Some(index) => axum::Json(json!({ "claimant": claim_record(index) })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such claimant" })),
        )
            .into_response(),
    }
}

/// The backend, serving until [`RunningBackend::stop`].
#[derive(Debug)]
struct RunningBackend {
    state: Arc<Backend>,
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningBackend {
    async fn start(settings: &Settings) -> Result<Self> {
        let state = Arc::new(Backend {
            counters: BackendCounters::default(),
            seed: settings.seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
            service_ms: settings.service_ms,
            citizens: settings.citizens,
        });
        let router = Router::new()
            .route("/v1/claimants/{id}/claim", get(claim))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("cannot bind a loopback port for the backend")?;
        let addr = listener
            .local_addr()
            .context("the backend's listener has no address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            state,
            url: format!("http://{addr}"),
            stop,
            task,
        })
    }

    fn counters(&self) -> &BackendCounters {
        &self.state.counters
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_LIMIT, &mut task)
            .await
            .is_err()
        {
            println!(
                "(the backend did not stop within {} s; abandoned)",
                SHUTDOWN_LIMIT.as_secs()
            );
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

/// Writes the gateway's project into `dir`: identical for both gateway runs but for
/// `[shield] enabled`.
fn write_project(dir: &Path, shield: bool) -> Result<()> {
    let store = civicgraph::demo::ui::sqlite_url(&dir.join("civicgraph.db"), "rwc");
    let gateway_toml = format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         graphiql = false\n\
         shutdown_grace_ms = 2000\n\
         \n\
         [storage]\n\
         url = {store}\n\
         \n\
         [auth]\n\
         # Each request acts as the citizen named in `X-Demo-Citizen`.\n\
         demo_headers = true\n\
         \n\
         [shield]\n\
         enabled = {shield}\n",
        store = toml::Value::String(store),
    );
    let connector_toml = format!(
        "name = \"{CONNECTOR}\"\n\
         kind = \"rest\"\n\
         description = \"Unemployment insurance claims (a backend that fails beyond {BACKEND_LIMIT} calls in flight)\"\n\
         base_url = \"${{SURGE_BACKEND_URL}}\"\n\
         timeout_ms = {CONNECTOR_TIMEOUT_MS}\n\
         # As many idle connections as the largest surge, so neither run churns TCP connections.\n\
         pool_max_idle = 2048\n\
         max_concurrency = {MAX_CONCURRENCY}\n\
         queue_timeout_ms = {QUEUE_TIMEOUT_MS}\n\
         cache = {{ ttl_s = {CACHE_TTL_S}, max_mb = 16, serve_stale_on_error_s = {STALE_S} }}\n\
         \n\
         [operations.claim]\n\
         description = \"The claimant's current claim\"\n\
         path = \"/v1/claimants/{{id}}/claim\"\n\
         select = \"/claimant\"\n"
    );
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(&dir.join("civicgraph.toml"), &gateway_toml)?;
    for sub in ["schema", "connectors"] {
        std::fs::create_dir(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    write(&dir.join("schema").join("surge.graphql"), SCHEMA)?;
    write(
        &dir.join("connectors").join(format!("{CONNECTOR}.toml")),
        &connector_toml,
    )
}

/// Loads the project in `dir` against the backend at `backend_url` and serves it on loopback.
async fn start_gateway(dir: &Path, backend_url: &str) -> Result<RunningGateway> {
    let config = dir.join("civicgraph.toml");
    let vars = Vars::only(
        [("SURGE_BACKEND_URL".to_string(), backend_url.to_string())]
            .into_iter()
            .collect(),
    );
    let gateway = Gateway::load(&config, &vars)
        .await
        .with_context(|| format!("cannot load the gateway from {}", config.display()))?;
    let bound = gateway
        .with_listen_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .bind()
        .await
        .context("cannot bind the gateway")?;
    Ok(bound.spawn())
}

// ---------------------------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------------------------

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    /// The right claim; `stale` when the shield served it past its TTL.
    Answered { stale: bool },
    /// An error, labelled `CODE status` (or what the transport said).
    Failed(String),
    /// An answer that is not the claim of the citizen asked for.
    Wrong(String),
}

/// Where the clients send their requests.
#[derive(Debug, Clone)]
struct Target {
    client: reqwest::Client,
    kind: TargetKind,
}

#[derive(Debug, Clone)]
enum TargetKind {
    Backend { url: String },
    Gateway { graphql_url: String, body: Bytes },
}

impl Target {
    fn new(
        run: Run,
        backend_url: &str,
        gateway: Option<&RunningGateway>,
        most: usize,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(most.saturating_add(16))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(CLIENT_TIMEOUT)
            .build()
            .context("cannot build the benchmark's HTTP client")?;
        let kind = match (run, gateway) {
            (Run::Baseline, _) => TargetKind::Backend {
                url: backend_url.to_string(),
            },
            (_, Some(gateway)) => TargetKind::Gateway {
                graphql_url: format!("{}/graphql", gateway.url()),
                body: Bytes::from(
                    serde_json::to_vec(&json!({ "query": QUERY }))
                        .context("cannot encode the GraphQL request")?,
                ),
            },
            (_, None) => bail!("a gateway run without a gateway"),
        };
        Ok(Self { client, kind })
    }

    async fn request(&self, index: usize) -> Outcome {
        let id = citizen_id(index);
        match &self.kind {
            TargetKind::Backend { url } => {
                let sent = self
                    .client
                    .get(format!("{url}/v1/claimants/{id}/claim"))
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => return transport_failure(&error),
                };
                let status = response.status();
                let body = match response.bytes().await {
                    Ok(body) => body,
                    Err(error) => return transport_failure(&error),
                };
                if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    return Outcome::Failed("backend refused 503".into());
                }
                if status != reqwest::StatusCode::OK {
                    return Outcome::Failed(format!("backend {}", status.as_u16()));
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(answer) if answer["claimant"] == claim_record(index) => {
                        Outcome::Answered { stale: false }
                    }
                    Ok(answer) => Outcome::Wrong(format!("backend answered {answer} for {id}")),
                    Err(error) => {
                        Outcome::Wrong(format!("backend answer for {id} is not JSON: {error}"))
                    }
                }
            }
            TargetKind::Gateway { graphql_url, body } => {
                let sent = self
                    .client
                    .post(graphql_url)
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/graphql-response+json")
                    .header(DEMO_CITIZEN_HEADER, &id)
                    .body(body.clone())
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => return transport_failure(&error),
                };
                let status = response.status().as_u16();
                let bytes = match response.bytes().await {
                    Ok(bytes) => bytes,
                    Err(error) => return transport_failure(&error),
                };
                let answer: Value = match serde_json::from_slice(&bytes) {
                    Ok(answer) => answer,
                    Err(_) => return Outcome::Failed(format!("non-JSON {status}")),
                };
                classify_gateway_answer(&answer, status, index)
            }
        }
    }
}

/// Sorts a gateway answer: the first error's code and the HTTP status, or a check of the data.
fn classify_gateway_answer(answer: &Value, status: u16, index: usize) -> Outcome {
    if let Some(errors) = answer.get("errors").and_then(Value::as_array)
        && let Some(first) = errors.first()
    {
        let code = first
            .pointer("/extensions/code")
            .and_then(Value::as_str)
            .unwrap_or("NO_CODE");
        return Outcome::Failed(format!("{code} {status}"));
    }
    if status != 200 {
        return Outcome::Failed(format!("no error but HTTP {status}"));
    }
    if answer.pointer("/data/me") != Some(&expected_me(index)) {
        return Outcome::Wrong(format!(
            "the gateway answered {answer} for {}",
            citizen_id(index)
        ));
    }
    let stale = answer
        .pointer(&format!("/extensions/freshness/{CONNECTOR}/stale"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Outcome::Answered { stale }
}

fn transport_failure(error: &reqwest::Error) -> Outcome {
    Outcome::Failed(if error.is_timeout() {
        "client timeout".into()
    } else if error.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    })
}

/// What one step saw, from one worker or merged.
#[derive(Debug, Default, Clone)]
struct StepStats {
    answered: u64,
    stale: u64,
    /// Every answer's latency, µs, errors included.
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    wrong: u64,
    first_wrong: Option<String>,
}

impl StepStats {
    fn record(&mut self, outcome: Outcome, took: Duration) {
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        match outcome {
            Outcome::Answered { stale } => {
                self.answered += 1;
                self.stale += u64::from(stale);
            }
            Outcome::Failed(label) => *self.errors.entry(label).or_default() += 1,
            Outcome::Wrong(what) => {
                self.wrong += 1;
                self.first_wrong.get_or_insert(what);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.answered += other.answered;
        self.stale += other.stale;
        self.latencies_us.extend(other.latencies_us);
        for (label, count) in other.errors {
            *self.errors.entry(label).or_default() += count;
        }
        self.wrong += other.wrong;
        if self.first_wrong.is_none() {
            self.first_wrong = other.first_wrong;
        }
    }

    fn requests(&self) -> u64 {
        self.latencies_us.len() as u64
    }
}

/// One row of a run's table: a step, or the whole ramp.
#[derive(Debug, Clone)]
struct Row {
    clients: usize,
    seconds: f64,
    stats: StepStats,
    backend_calls: u64,
    backend_refused: u64,
    backend_peak: usize,
}

impl Row {
    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.seconds.max(1e-9)
    }

    fn percentile_ms(&self, quantile: f64) -> f64 {
        percentile(&self.stats.latencies_us, quantile) / 1e3
    }

    fn calls_per_request(&self) -> f64 {
        self.backend_calls as f64 / (self.stats.requests().max(1)) as f64
    }
}

/// Nearest-rank percentile of `samples` (sorted), in the samples' unit.
fn percentile(sorted: &[u32], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// One run: its steps, the whole ramp, and the backend's all-time peak.
#[derive(Debug)]
struct RunResult {
    run: Run,
    steps: Vec<Row>,
    overall: Row,
    backend_peak_ever: usize,
}

/// Starts a fresh backend (and gateway), checks a few answers, ramps the clients up step by
/// step, and stops everything.
async fn run_once(
    settings: &Settings,
    run: Run,
    zipf: &Arc<Zipf>,
    clients: &tokio::runtime::Handle,
) -> Result<RunResult> {
    let backend = RunningBackend::start(settings).await?;
    let project = match run {
        Run::Baseline => None,
        Run::ShieldOff | Run::ShieldOn => {
            let dir = tempfile::Builder::new()
                .prefix("civicgraph-surge-")
                .tempdir()
                .context("cannot create a directory for the gateway's project")?;
            write_project(dir.path(), run == Run::ShieldOn)?;
            Some(dir)
        }
    };
    let gateway = match &project {
        Some(dir) => match start_gateway(dir.path(), &backend.url).await {
            Ok(gateway) => Some(gateway),
            Err(error) => {
                backend.stop().await;
                return Err(error);
            }
        },
        None => None,
    };
    let outcome = async {
        let target = Target::new(run, &backend.url, gateway.as_ref(), settings.most_clients())?;
        check_answers(&target, settings.citizens).await?;
        ramp(settings, run, &target, backend.counters(), zipf, clients).await
    }
    .await;
    if let Some(gateway) = gateway {
        match tokio::time::timeout(SHUTDOWN_LIMIT, gateway.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => println!("(the gateway ended with an error: {error})"),
            Err(_) => println!(
                "(the gateway did not stop within {} s)",
                SHUTDOWN_LIMIT.as_secs()
            ),
        }
    }
    backend.stop().await;
    drop(project);
    outcome
}

/// Before timing anything: a few citizens, one at a time, must get exactly their claim.
async fn check_answers(target: &Target, citizens: usize) -> Result<()> {
    let step = (citizens / SAMPLE_CHECKS).max(1);
    for index in (0..citizens).step_by(step).take(SAMPLE_CHECKS) {
        match target.request(index).await {
            Outcome::Answered { stale: false } => {}
            other => bail!(
                "before the ramp, {} got {other:?} instead of their claim",
                citizen_id(index)
            ),
        }
    }
    Ok(())
}

/// Ramps the clients through the steps and gathers what each step saw.
async fn ramp(
    settings: &Settings,
    run: Run,
    target: &Target,
    counters: &BackendCounters,
    zipf: &Arc<Zipf>,
    runtime: &tokio::runtime::Handle,
) -> Result<RunResult> {
    let steps = settings.steps.len();
    // The step a request starting now belongs to; `steps` once the last window has closed,
    // after which workers start no more requests.
    let current = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<JoinHandle<Vec<StepStats>>> = Vec::new();
    let mut windows = Vec::with_capacity(steps);
    let mut seconds = Vec::with_capacity(steps);
    let mut previous = counters.take_window();
    for (step, &clients) in settings.steps.iter().enumerate() {
        let started = Instant::now();
        while workers.len() < clients {
            let worker = workers.len() as u64;
            let mut rng = SplitMix64(settings.seed ^ worker.wrapping_mul(0xA076_1D64_78BD_642F));
            let (target, zipf, current) = (target.clone(), Arc::clone(zipf), Arc::clone(&current));
            workers.push(runtime.spawn(async move {
                let mut stats = vec![StepStats::default(); steps];
                loop {
                    let step = current.load(Ordering::SeqCst);
                    let Some(slot) = stats.get_mut(step) else {
                        break;
                    };
                    let index = zipf.sample(&mut rng);
                    let sent = Instant::now();
                    let outcome = target.request(index).await;
                    slot.record(outcome, sent.elapsed());
                }
                stats
            }));
        }
        tokio::time::sleep_until(started + settings.step).await;
        current.store(step + 1, Ordering::SeqCst);
        seconds.push(started.elapsed().as_secs_f64());
        if step + 1 < steps {
            let window = counters.take_window();
            windows.push(window.since(previous));
            previous = window;
        }
    }
    // Let every request started in a window finish, so that the last step's backend calls and
    // requests are complete and the whole ramp's ratio is exact.
    let mut merged = vec![StepStats::default(); steps];
    for worker in workers {
        let stats = worker.await.context("a client worker panicked")?;
        for (into, from) in merged.iter_mut().zip(stats) {
            into.merge(from);
        }
    }
    windows.push(counters.take_window().since(previous));
    let mut rows: Vec<Row> = merged
        .into_iter()
        .zip(windows)
        .zip(seconds)
        .zip(&settings.steps)
        .map(|(((mut stats, window), seconds), &clients)| {
            stats.latencies_us.sort_unstable();
            Row {
                clients,
                seconds,
                stats,
                backend_calls: window.calls,
                backend_refused: window.refused,
                backend_peak: window.peak,
            }
        })
        .collect();
    let mut overall = Row {
        clients: settings.most_clients(),
        seconds: rows.iter().map(|row| row.seconds).sum(),
        stats: StepStats::default(),
        backend_calls: rows.iter().map(|row| row.backend_calls).sum(),
        backend_refused: rows.iter().map(|row| row.backend_refused).sum(),
        backend_peak: rows.iter().map(|row| row.backend_peak).max().unwrap_or(0),
    };
    for row in &mut rows {
        overall.stats.merge(row.stats.clone());
    }
    overall.stats.latencies_us.sort_unstable();
    Ok(RunResult {
        run,
        steps: rows,
        overall,
        backend_peak_ever: counters.peak.load(Ordering::SeqCst),
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn print_context(settings: &Settings, zipf: &Zipf) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    if settings.smoke {
        println!(
            "Surge benchmark, self-check mode (no `--bench`): small numbers, no figures worth reading."
        );
    } else {
        println!("# Surge benchmark");
    }
    println!();
    println!(
        "- backend: `GET /v1/claimants/{{id}}/claim`, service time {}–{} ms, refuses (503) any call beyond {BACKEND_LIMIT} in flight",
        settings.service_ms.0, settings.service_ms.1
    );
    println!(
        "- connector: `max_concurrency = {MAX_CONCURRENCY}`, `queue_timeout_ms = {QUEUE_TIMEOUT_MS}`, \
         `cache = {{ ttl_s = {CACHE_TTL_S}, serve_stale_on_error_s = {STALE_S} }}`, `timeout_ms = {CONNECTOR_TIMEOUT_MS}`, default retry and breaker"
    );
    println!(
        "- clients: HTTP/1.1 keep-alive, ramp {} clients, {:.1} s per step; citizens drawn from Zipf(s = {}) over {}: \
         the top citizen gets {:.1}% of requests, the top 1% of citizens {:.1}%, the top 10% {:.1}%",
        settings
            .steps
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" → "),
        settings.step.as_secs_f64(),
        settings.zipf_s,
        settings.citizens,
        zipf.share_of_top(1) * 100.0,
        zipf.share_of_top(settings.citizens.div_ceil(100)) * 100.0,
        zipf.share_of_top(settings.citizens.div_ceil(10)) * 100.0,
    );
    let runtimes = match settings.client_threads {
        None => format!(
            "one tokio runtime with {} worker threads for the backend, the gateway and the clients",
            settings.threads
        ),
        Some(clients) => format!(
            "a tokio runtime with {} worker threads for the backend and the gateway, another with {clients} for the clients",
            settings.threads
        ),
    };
    println!("- one process, {runtimes}, on a {cores}-core machine shared with others");
    println!();
}

fn errors_cell(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "—".into();
    }
    let mut cell = String::new();
    for (label, count) in errors {
        if !cell.is_empty() {
            cell.push_str(", ");
        }
        let _ = write!(cell, "{label}: {count}");
    }
    cell
}

fn row_cells(row: &Row) -> String {
    format!(
        "{:.0} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1}% | {:.3}",
        row.per_second(row.stats.requests()),
        row.per_second(row.stats.answered),
        row.percentile_ms(0.50),
        row.percentile_ms(0.99),
        row.stats.stale,
        errors_cell(&row.stats.errors),
        row.backend_calls,
        row.backend_refused,
        row.backend_peak,
        (1.0 - row.calls_per_request()) * 100.0,
        row.calls_per_request(),
    )
}

const ROW_HEADER: &str = "req/s | ok/s | p50 ms | p99 ms | stale | errors (code HTTP: count) | backend calls | backend 503s | backend peak in flight | cache hit ratio | backend calls/req";

fn print_run(settings: &Settings, result: &RunResult) {
    println!("## {}", result.run.title());
    println!();
    println!("| clients | {ROW_HEADER} |");
    println!(
        "|--------:|------:|-----:|-------:|-------:|------:|---------------------------|--------------:|-------------:|-----------------------:|----------------:|------------------:|"
    );
    for row in &result.steps {
        println!("| {} | {} |", row.clients, row_cells(row));
    }
    println!(
        "| **all {:.0} s** | {} |",
        result.overall.seconds,
        row_cells(&result.overall)
    );
    println!();
    if result.overall.stats.wrong > 0 {
        println!(
            "**{} wrong answers**; the first: {}",
            result.overall.stats.wrong,
            result.overall.stats.first_wrong.as_deref().unwrap_or("?")
        );
        println!();
    }
    if settings.smoke {
        println!(
            "(backend peak in flight over the whole run, checks included: {})",
            result.backend_peak_ever
        );
        println!();
    }
}

fn print_summary(results: &[RunResult]) {
    println!("## Summary: the whole ramp, per run");
    println!();
    println!("| run | {ROW_HEADER} |");
    println!(
        "|-----|------:|-----:|-------:|-------:|------:|---------------------------|--------------:|-------------:|-----------------------:|----------------:|------------------:|"
    );
    for result in results {
        println!(
            "| {} | {} |",
            result.run.short(),
            row_cells(&result.overall)
        );
    }
    println!();
    println!(
        "req/s counts every answer, errors included; ok/s only answers with the citizen's claim (stale ones \
         included). Latencies are over every answer. Cache hit ratio = 1 − backend calls / requests (a \
         request shed with BACKEND_BUSY makes no backend call). The backend's peak counts refused calls \
         too: it is the load the backend saw."
    );
    println!();
}

/// The properties the benchmark stands for; any failure makes the run exit non-zero.
fn verdict(settings: &Settings, results: &[RunResult]) -> Result<()> {
    let mut failures = Vec::new();
    for result in results {
        if result.overall.stats.wrong > 0 {
            failures.push(format!(
                "{}: {} answers were not the claim of the citizen asked for (first: {})",
                result.run.title(),
                result.overall.stats.wrong,
                result.overall.stats.first_wrong.as_deref().unwrap_or("?")
            ));
        }
        if result.run != Run::Baseline && result.overall.stats.answered == 0 {
            failures.push(format!(
                "{}: not one request was answered",
                result.run.title()
            ));
        }
        match result.run {
            Run::ShieldOn if result.backend_peak_ever > BACKEND_LIMIT => failures.push(format!(
                "with the shield on, the backend saw {} calls in flight at once, beyond its limit of {BACKEND_LIMIT} \
                 (the connector's max_concurrency is {MAX_CONCURRENCY})",
                result.backend_peak_ever
            )),
            Run::ShieldOn => {
                println!(
                    "With the shield on, the backend's peak in flight was {} (limit {BACKEND_LIMIT}, max_concurrency {MAX_CONCURRENCY}).",
                    result.backend_peak_ever
                );
                if result.backend_peak_ever > MAX_CONCURRENCY {
                    println!(
                        "FINDING: the peak is above max_concurrency = {MAX_CONCURRENCY}: the bulkhead let more calls through than its limit."
                    );
                }
            }
            Run::Baseline if settings.most_clients() > BACKEND_LIMIT => {
                if result.backend_peak_ever <= BACKEND_LIMIT {
                    failures.push(format!(
                        "the baseline ramp to {} clients never pushed the backend past {BACKEND_LIMIT} calls in flight \
                         (peak {}), so the shield-on peak proves nothing",
                        settings.most_clients(),
                        result.backend_peak_ever
                    ));
                }
            }
            Run::Baseline | Run::ShieldOff => {}
        }
    }
    if failures.is_empty() {
        println!("All checks passed.");
        Ok(())
    } else {
        for failure in &failures {
            println!("FAILED: {failure}");
        }
        bail!(
            "{} check(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )
    }
}
