//! Life-event delivery benchmark: events per second from detection to an acknowledged webhook,
//! and each event's delay, p50/p99/max.
//!
//! Run with `cargo bench --bench events`. Everything happens in this one process, on loopback:
//!
//! - **Detection** is the inbound webhook endpoint, `POST /events/cases`: senders push signed
//!   change notifications (Standard Webhooks, one change each), spread round-robin over a
//!   number of citizens, through a pooled keep-alive HTTP client: first a **burst** of `N`, `S`
//!   requests at a time (throughput, and how long the queue takes to drain), then a **steady**
//!   stream at a fixed rate below capacity (the delay of an event that does not queue behind
//!   thousands of others). The gateway verifies each, applies the rules (`CaseUpdated`, a thin
//!   payload of ids) and records the event with its delivery row in the outbox, in one
//!   transaction, before it answers. An event's clock starts when its notification is *sent*.
//! - **Delivery** is the gateway's own dispatcher: it claims due deliveries with a lease and
//!   POSTs each event, signed, to one subscriber, keeping each citizen's events in order and
//!   at most `max_in_flight_per_subscriber` in flight. The clock stops when the receiver has
//!   the event.
//! - **The receiver** is an axum server on `127.0.0.1:0` that verifies every signature with
//!   `civicgraph::events::signature::WebhookSecret`, notes the first arrival of each event,
//!   counts arrivals per `webhook-id`, and answers 200 (after `EVENTS_BENCH_RECEIVER_MS`).
//! - **The gateway** is loaded in-process with `civicgraph::server::Gateway`, as `civicgraph
//!   serve` loads one, from a project written into a temporary directory: its store, demo
//!   headers (the subscriber is registered through `registerEventSubscriber` as an operator),
//!   the inbound source and its rule. Each gateway run has a fresh store of one of these kinds:
//!   - `sqlite`: an SQLite file in the directory, opened as the gateway opens it (SQLite's
//!     default rollback journal: sqlx leaves `journal_mode` alone);
//!   - `sqlite-wal`: the same, but the file is created in WAL mode first (WAL is a property of
//!     the file, so the gateway keeps it), to show what the journal mode costs;
//!   - `postgres`: a fresh schema in the database at `EVENTS_BENCH_POSTGRES_URL` (or
//!     `CIVICGRAPH_TEST_POSTGRES_URL`), dropped afterwards.
//!
//! **Baseline**, measured in the same run because the machine is shared and noisy: the same
//! number of signed event POSTs sent straight to the same kind of receiver, as many at a time
//! as the dispatcher may have in flight, no gateway. It is what the receiver and the loopback
//! HTTP stack cost by themselves.
//!
//! Every run checks itself and **fails** (exits non-zero) unless every event arrived, each
//! webhook request validly signed, and the baseline's each exactly once. The gateway delivers at
//! least once: when the store cannot write an attempt's outcome (an overloaded SQLite file gives
//! up after its 5 s busy timeout, and the gateway logs it), the event is sent again after its
//! lease, with the same id; such repeats are counted (`again`), not hidden. A notification the
//! gateway could not record is answered 503 and sent again by the benchmark, as any sender would
//! (`503s`), its clock still running. A gateway run is measured on a fresh gateway and store
//! after a small warm-up burst (not counted). Events per second is `N / (last arrival − first
//! send)`; `ingest/s` is how fast the gateway accepted the notifications (`N / (last acceptance −
//! first send)`), which bounds the rest.
//!
//! # Settings (environment variables)
//!
//! | variable                   | default (quick mode) | meaning                                              |
//! |----------------------------|----------------------|------------------------------------------------------|
//! | `EVENTS_BENCH_EVENTS`      | `3000` (`200`)       | events in the burst (and the baseline), `N`          |
//! | `EVENTS_BENCH_PACED_EVENTS`| `1000` (`50`)        | events sent at a steady rate after the burst; `0` skips |
//! | `EVENTS_BENCH_PACED_RATE`  | `100`                | that rate, notifications per second                  |
//! | `EVENTS_BENCH_CITIZENS`    | `500` (`50`)         | citizens the events are spread over, round-robin     |
//! | `EVENTS_BENCH_SENDERS`     | `16` (`8`)           | inbound notifications in flight at once, `S`         |
//! | `EVENTS_BENCH_IN_FLIGHT`   | `8,32` (`8`)         | `max_in_flight_per_subscriber` of each gateway run   |
//! | `EVENTS_BENCH_RECEIVER_MS` | `0`                  | the receiver's service time per request              |
//! | `EVENTS_BENCH_STORES`      | `sqlite,sqlite-wal`, and `postgres` when a URL is set (`sqlite-wal`) | the stores of the gateway runs |
//! | `EVENTS_BENCH_POSTGRES_URL`| `CIVICGRAPH_TEST_POSTGRES_URL` | the database a `postgres` run makes its schema in |
//! | `EVENTS_BENCH_THREADS`     | cores                | worker threads of the runtime everything shares      |
//! | `EVENTS_BENCH_LOG`         | none                 | the gateway's log filter (e.g. `warn`), on stderr    |
//!
//! Without `--bench` on the command line (`cargo test --benches`), the binary runs the quick
//! mode: the numbers in brackets, a few seconds in all, every check still made.
//!
//! # Reading the numbers
//!
//! Senders, gateway, store and receiver share one process and the machine's cores, so the
//! figures say what this machine does with all of them at once, not a deployment's capacity:
//! compare the gateway runs with the baseline and with one another. The delay of an event in
//! a burst includes its wait behind the events before it (each citizen's in order, a cap on
//! what is in flight), so its p99 grows with `N`; the steady rows show the delay itself.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark binary's report on stdout is its whole output"
)]

use std::collections::HashMap;
use std::env;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use civicgraph::auth::DEMO_OPERATOR_HEADER;
use civicgraph::config::Vars;
use civicgraph::events::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret};
use civicgraph::server::Gateway;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// How long a run may take before the benchmark gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How often a sender sends a notification the gateway answered 503 again, and how long it
/// waits first.
const RESEND_LIMIT: usize = 200;
const RESEND_AFTER: Duration = Duration::from_millis(50);
/// The HTTP clients' deadline per request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

const RULES: &str = r#"
[sources.case-notices]
kind = "inbound"
connector = "cases"
secret = "${CASES_SECRET}"
tolerance_s = 300

[[events]]
type = "CaseUpdated"
source = "case-notices"
category = "case.updates"
citizen = { field = "citizen_id" }
subject = { case = "case_id", change = "change_id" }
key = ["change"]
"#;

/// The backend the notifications come from (the inbound source names it; it is never called).
const CASES_CONNECTOR: &str = r#"
name = "cases"
kind = "rest"
base_url = "http://127.0.0.1:9"

[operations.changes]
path = "/changes"
"#;

fn main() -> Result<()> {
    // The gateway's own logs, when asked for (`EVENTS_BENCH_LOG=warn`): a failed claim or
    // attempt shows here rather than as a mysteriously slow run.
    if let Ok(filter) = env::var("EVENTS_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name("events-bench")
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    runtime.block_on(bench(&settings))
}

#[derive(Debug)]
struct Settings {
    events: usize,
    paced_events: usize,
    paced_rate: f64,
    citizens: usize,
    senders: usize,
    in_flight: Vec<usize>,
    receiver_service: Duration,
    stores: Vec<StoreKind>,
    postgres_url: Option<String>,
    threads: usize,
    quick: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let quick = !env::args().any(|arg| arg == "--bench");
        let (events, paced_events, citizens, senders, in_flight) = if quick {
            (200, 50, 50, 8, "8")
        } else {
            (3000, 1000, 500, 16, "8,32")
        };
        let mut settings = Self {
            events: env_or("EVENTS_BENCH_EVENTS", events)?,
            paced_events: env_or("EVENTS_BENCH_PACED_EVENTS", paced_events)?,
            paced_rate: env_or("EVENTS_BENCH_PACED_RATE", 100.0)?,
            citizens: env_or("EVENTS_BENCH_CITIZENS", citizens)?,
            senders: env_or("EVENTS_BENCH_SENDERS", senders)?,
            in_flight: env_or("EVENTS_BENCH_IN_FLIGHT", in_flight.to_string())?
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .map_err(|e| anyhow!("EVENTS_BENCH_IN_FLIGHT=`{n}`: {e}"))
                })
                .collect::<Result<_>>()?,
            receiver_service: Duration::from_millis(env_or("EVENTS_BENCH_RECEIVER_MS", 0)?),
            stores: Vec::new(),
            postgres_url: env::var("EVENTS_BENCH_POSTGRES_URL")
                .or_else(|_| env::var("CIVICGRAPH_TEST_POSTGRES_URL"))
                .ok()
                .filter(|u| !u.is_empty()),
            threads: env_or(
                "EVENTS_BENCH_THREADS",
                std::thread::available_parallelism().map_or(2, usize::from),
            )?,
            quick,
        };
        ensure!(
            (1..=100_000).contains(&settings.events),
            "EVENTS_BENCH_EVENTS must be 1 to 100000"
        );
        ensure!(
            settings.paced_events <= 100_000
                && settings.paced_rate.is_finite()
                && (0.1..=10_000.0).contains(&settings.paced_rate),
            "EVENTS_BENCH_PACED_EVENTS must be at most 100000 and EVENTS_BENCH_PACED_RATE 0.1 to 10000"
        );
        ensure!(
            settings.citizens >= 1,
            "EVENTS_BENCH_CITIZENS must be at least 1"
        );
        ensure!(
            (1..=1024).contains(&settings.senders),
            "EVENTS_BENCH_SENDERS must be 1 to 1024"
        );
        ensure!(
            settings.in_flight.iter().all(|n| (1..=64).contains(n))
                && !settings.in_flight.is_empty(),
            "EVENTS_BENCH_IN_FLIGHT must list numbers from 1 to 64 (the dispatcher's own limit)"
        );
        ensure!(
            settings.threads >= 1,
            "EVENTS_BENCH_THREADS must be at least 1"
        );
        let default_stores = match (quick, &settings.postgres_url) {
            // WAL: the quick check takes 2 s instead of 15 in a debug build.
            (true, _) => "sqlite-wal",
            (false, Some(_)) => "sqlite,sqlite-wal,postgres",
            (false, None) => "sqlite,sqlite-wal",
        };
        settings.stores = env_or("EVENTS_BENCH_STORES", default_stores.to_string())?
            .split(',')
            .map(|name| StoreKind::parse(name.trim()))
            .collect::<Result<_>>()?;
        ensure!(
            !settings.stores.contains(&StoreKind::Postgres) || settings.postgres_url.is_some(),
            "a `postgres` run needs EVENTS_BENCH_POSTGRES_URL or CIVICGRAPH_TEST_POSTGRES_URL"
        );
        Ok(settings)
    }
}

/// The store of a gateway run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    SqliteWal,
    Postgres,
}

impl StoreKind {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "sqlite" => Self::Sqlite,
            "sqlite-wal" => Self::SqliteWal,
            "postgres" => Self::Postgres,
            other => bail!(
                "EVENTS_BENCH_STORES: unknown store `{other}`; use sqlite, sqlite-wal or postgres"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::SqliteWal => "SQLite WAL",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh store for one gateway run; `close` removes a PostgreSQL schema again.
struct FreshStore {
    url: String,
    schema: Option<(sqlx::PgPool, String)>,
}

impl FreshStore {
    async fn new(kind: StoreKind, dir: &std::path::Path, postgres: Option<&str>) -> Result<Self> {
        let file = format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display());
        match kind {
            StoreKind::Sqlite => Ok(Self {
                url: file,
                schema: None,
            }),
            StoreKind::SqliteWal => {
                use sqlx::ConnectOptions as _;
                let mut connection = file
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()?
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .connect()
                    .await
                    .context("cannot create the SQLite file in WAL mode")?;
                let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                    .fetch_one(&mut connection)
                    .await?;
                ensure!(
                    mode == "wal",
                    "the SQLite file is in `{mode}` mode, not WAL"
                );
                drop(connection);
                Ok(Self {
                    url: file,
                    schema: None,
                })
            }
            StoreKind::Postgres => {
                let url = postgres.ok_or_else(|| anyhow!("no PostgreSQL URL"))?;
                let admin = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("cannot reach the benchmark's PostgreSQL")?;
                let schema = format!("events_bench_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await?;
                let separator = if url.contains('?') { '&' } else { '?' };
                Ok(Self {
                    url: format!("{url}{separator}options=-c%20search_path%3D{schema}"),
                    schema: Some((admin, schema)),
                })
            }
        }
    }

    async fn close(self) -> Result<()> {
        if let Some((admin, schema)) = self.schema {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await?;
        }
        Ok(())
    }
}

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

async fn bench(settings: &Settings) -> Result<()> {
    if settings.quick {
        println!(
            "QUICK MODE (no `--bench` argument): a check that the benchmark works, not a measurement."
        );
    }
    println!(
        "{} events in a burst ({} notifications in flight), then {} at {}/s, over {} citizens per \
         gateway run; receiver service time {} ms; {} runtime threads",
        settings.events,
        settings.senders,
        settings.paced_events,
        settings.paced_rate,
        settings.citizens,
        settings.receiver_service.as_millis(),
        settings.threads,
    );
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()
        .context("cannot build the HTTP client")?;
    let mut rows = Vec::new();
    let baseline_in_flight = settings.in_flight[0];
    rows.push(baseline(settings, &http, baseline_in_flight).await?);
    let mut run = 0;
    for store in &settings.stores {
        for in_flight in &settings.in_flight {
            rows.extend(through_gateway(settings, &http, *store, *in_flight, run).await?);
            run += 1;
        }
    }
    println!();
    println!(
        "{:<44} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6}",
        "run",
        "events",
        "events/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "ingest/s",
        "503s",
        "again"
    );
    for row in &rows {
        println!(
            "{:<44} {:>7} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>6} {:>6}",
            row.name,
            row.events,
            row.per_second,
            ms(row.delays.p(0.50)),
            ms(row.delays.p(0.90)),
            ms(row.delays.p(0.99)),
            ms(row.delays.p(1.0)),
            row.ingest_per_second
                .map_or_else(|| "-".to_string(), |r| format!("{r:.0}")),
            row.refused
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            row.repeated
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        );
    }
    println!();
    println!(
        "delay: from first sending the change notification (gateway) or the webhook (baseline) \
         to its arrival at the receiver; 503s: notifications the gateway could not record and \
         answered 503 (sent again 50 ms later, the clock still running); again: webhooks \
         repeating an event already received (at least once: an outcome the store could not \
         write is sent again after its lease, same id). Every event arrived, validly signed."
    );
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One line of the report.
struct Row {
    name: String,
    events: usize,
    per_second: f64,
    delays: Delays,
    ingest_per_second: Option<f64>,
    /// Notifications the gateway answered 503 (sent again).
    refused: Option<u64>,
    /// Webhook requests repeating an event already received.
    repeated: Option<u64>,
}

/// Delays, sorted.
struct Delays(Vec<Duration>);

impl Delays {
    fn new(mut delays: Vec<Duration>) -> Self {
        delays.sort_unstable();
        Self(delays)
    }

    /// The `q` quantile (nearest rank); 1.0 is the maximum.
    fn p(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.0.len() as f64) * q).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// What the receiver saw.
struct Sink {
    secret: OnceLock<WebhookSecret>,
    service: Duration,
    /// First arrival per change id (the event's `subject.change`).
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Requests per `webhook-id`.
    per_id: Mutex<HashMap<String, u32>>,
    bad: AtomicU64,
    requests: AtomicU64,
}

impl Sink {
    fn arrived(&self) -> usize {
        self.arrivals.lock().map_or(0, |a| a.len())
    }
}

/// Starts a receiver; the secret it verifies with is set once it is known.
async fn receiver(service: Duration) -> Result<(Arc<Sink>, String)> {
    async fn hook(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let at = Instant::now();
        sink.requests.fetch_add(1, Ordering::Relaxed);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(id), Some(timestamp), Some(signature), Some(secret)) = (
            header(ID_HEADER),
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            sink.secret.get(),
        ) else {
            sink.bad.fetch_add(1, Ordering::Relaxed);
            return StatusCode::BAD_REQUEST;
        };
        let now = chrono::Utc::now().timestamp();
        if secret
            .verify(id, timestamp, signature, &body, now, 300)
            .is_err()
        {
            sink.bad.fetch_add(1, Ordering::Relaxed);
            return StatusCode::BAD_REQUEST;
        }
        let change = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["subject"]["change"].as_str().map(str::to_string));
        let Some(change) = change else {
            sink.bad.fetch_add(1, Ordering::Relaxed);
            return StatusCode::BAD_REQUEST;
        };
        if let Ok(mut arrivals) = sink.arrivals.lock() {
            arrivals.entry(change).or_insert(at);
        }
        if let Ok(mut per_id) = sink.per_id.lock() {
            *per_id.entry(id.to_string()).or_default() += 1;
        }
        if !sink.service.is_zero() {
            tokio::time::sleep(sink.service).await;
        }
        StatusCode::OK
    }
    let sink = Arc::new(Sink {
        secret: OnceLock::new(),
        service,
        arrivals: Mutex::default(),
        per_id: Mutex::default(),
        bad: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot bind the receiver")?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&sink));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((sink, format!("http://{addr}/hook")))
}

/// Waits until `count` events arrived; fails after [`RUN_LIMIT`].
async fn wait_for_arrivals(sink: &Sink, count: usize, started: Instant) -> Result<()> {
    while sink.arrived() < count {
        ensure!(
            started.elapsed() < RUN_LIMIT,
            "only {} of {count} events arrived within {RUN_LIMIT:?}",
            sink.arrived()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Checks that each of `expected` events arrived (after a moment for late duplicates), every
/// request validly signed; returns each change's first arrival and how many requests repeated
/// an event already received. Delivery is at least once: an attempt whose outcome the store
/// could not write (the gateway logs it) is sent again after its lease, with the same id.
async fn check_arrivals(sink: &Sink, expected: usize) -> Result<(HashMap<String, Instant>, u64)> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bad = sink.bad.load(Ordering::Relaxed);
    ensure!(
        bad == 0,
        "{bad} webhook requests were refused (bad signature or body)"
    );
    let per_id = sink.per_id.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    ensure!(
        per_id.len() == expected,
        "{} distinct webhook ids for {expected} events",
        per_id.len()
    );
    let repeats = per_id
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    let arrivals = sink
        .arrivals
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    ensure!(
        arrivals.len() == expected,
        "{} of {expected} events arrived",
        arrivals.len()
    );
    Ok((arrivals, repeats))
}

// ---------------------------------------------------------------------------------------------
// Baseline: signed POSTs straight to a receiver
// ---------------------------------------------------------------------------------------------

async fn baseline(settings: &Settings, http: &reqwest::Client, in_flight: usize) -> Result<Row> {
    let (sink, url) = receiver(settings.receiver_service).await?;
    let secret = WebhookSecret::generate().map_err(|e| anyhow!("a secret: {e}"))?;
    sink.secret
        .set(secret.clone())
        .map_err(|_| anyhow!("the receiver's secret is set once"))?;
    let n = settings.events;
    let next = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Vec<OnceLock<Instant>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (http, url, next, sent, secret) = (
            http.clone(),
            url.clone(),
            Arc::clone(&next),
            Arc::clone(&sent),
            secret.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= sent.len() {
                    return Ok::<(), anyhow::Error>(());
                }
                let id = format!("evt_base{i:08}");
                let body = json!({
                    "type": "CaseUpdated",
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "data": {"id": id, "citizenId": format!("C{:07}", i % 1000 + 1),
                             "citizenSequence": 1, "category": "case.updates",
                             "subject": {"case": format!("CASE-{i}"), "change": format!("base-{i}")},
                             "occurredAt": chrono::Utc::now().to_rfc3339()}
                })
                .to_string();
                let timestamp = chrono::Utc::now().timestamp();
                let signature = secret.sign(&id, timestamp, body.as_bytes());
                let _ = sent[i].set(Instant::now());
                let status = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(ID_HEADER, &id)
                    .header(TIMESTAMP_HEADER, timestamp.to_string())
                    .header(SIGNATURE_HEADER, signature)
                    .body(body)
                    .send()
                    .await?
                    .status();
                ensure!(status.is_success(), "the receiver answered {status}");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let finished = Instant::now();
    let (arrivals, repeats) = check_arrivals(&sink, n).await?;
    ensure!(
        repeats == 0,
        "the baseline sends each event once, yet {repeats} arrived again"
    );
    let delays = (0..n)
        .map(|i| {
            let sent = sent[i].get().copied().unwrap_or(started);
            arrivals
                .get(&format!("base-{i}"))
                .map(|at| at.saturating_duration_since(sent))
                .ok_or_else(|| anyhow!("change base-{i} never arrived"))
        })
        .collect::<Result<Vec<_>>>()?;
    let row = Row {
        name: format!("baseline, direct POSTs, {in_flight} at a time"),
        events: n,
        per_second: n as f64 / (finished - started).as_secs_f64(),
        delays: Delays::new(delays),
        ingest_per_second: None,
        refused: None,
        repeated: None,
    };
    println!("{}: done", row.name);
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Through the gateway: inbound notification → outbox → dispatcher → receiver
// ---------------------------------------------------------------------------------------------

async fn through_gateway(
    settings: &Settings,
    http: &reqwest::Client,
    store: StoreKind,
    in_flight: usize,
    run: usize,
) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir().context("a project directory")?;
    let root = dir.path();
    let fresh = FreshStore::new(store, root, settings.postgres_url.as_deref()).await?;
    let gateway_toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536

[storage]
url = "${{STORAGE_URL}}"
max_connections = 8

[auth]
demo_headers = true

[trust]
signing_key = "signing-key.pem"

[trust.purposes]
case-management = "managing your case"

[trust.categories]
"case.updates" = "updates to your case"

# The subscriber's agency owns `case.*` on a legal basis, so no consent is needed.
[trust.agencies.case]
name = "the Case Agency"
legal_basis = "Case Management Act §1"

[audit]
checkpoint_file = "audit-checkpoints.jsonl"

[events]
allow_private_endpoints = true
max_in_flight_per_subscriber = {in_flight}
retry_schedule_s = [1, 1, 1, 1, 1]
"#
    );
    std::fs::write(root.join("civicgraph.toml"), gateway_toml)?;
    std::fs::create_dir(root.join("schema"))?;
    std::fs::create_dir(root.join("connectors"))?;
    std::fs::write(
        root.join("schema/base.graphql"),
        "scalar DateTime\ntype Query\ntype Mutation\n",
    )?;
    std::fs::write(
        root.join("schema/events.graphql"),
        include_str!("../schema/events.graphql"),
    )?;
    std::fs::write(
        root.join("schema/subscriptions.graphql"),
        include_str!("../schema/subscriptions.graphql"),
    )?;
    std::fs::write(root.join("schema/life-events.toml"), RULES)?;
    std::fs::write(root.join("connectors/cases.toml"), CASES_CONNECTOR)?;
    let inbound_secret = WebhookSecret::generate().map_err(|e| anyhow!("a secret: {e}"))?;
    let vars = Vars::only(HashMap::from([
        ("STORAGE_URL".to_string(), fresh.url.clone()),
        ("CASES_SECRET".to_string(), inbound_secret.expose()),
    ]));
    let gateway = Gateway::load(&root.join("civicgraph.toml"), &vars)
        .await
        .map_err(|e| anyhow!("the benchmark's gateway does not load:\n{e}"))?
        .with_listen_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .bind()
        .await?
        .spawn();
    let base = gateway.url();

    let (sink, hook_url) = receiver(settings.receiver_service).await?;
    let registration: Value = http
        .post(format!("{base}/graphql"))
        .header(DEMO_OPERATOR_HEADER, "bench")
        .header("content-type", "application/json")
        .body(
            json!({
                "query": "mutation($url: String!) { registerEventSubscriber(agency: \"case\", \
                          purpose: \"case-management\", url: $url) { secret subscriber { id } } }",
                "variables": {"url": hook_url},
            })
            .to_string(),
        )
        .send()
        .await?
        .bytes()
        .await
        .map(|bytes| serde_json::from_slice(&bytes).unwrap_or(Value::Null))?;
    let secret = registration["data"]["registerEventSubscriber"]["secret"]
        .as_str()
        .and_then(|s| WebhookSecret::parse(s).ok())
        .ok_or_else(|| anyhow!("registerEventSubscriber failed: {registration}"))?;
    sink.secret
        .set(secret)
        .map_err(|_| anyhow!("the receiver's secret is set once"))?;
    let subscriber = registration["data"]["registerEventSubscriber"]["subscriber"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Warm-up: connections, caches and the store's pages, not measured.
    let warmup = (settings.events / 20).clamp(1, 100);
    let tag = format!("r{run}");
    let warm = Instant::now();
    let warm_tag = format!("{tag}w");
    let _ = notify(
        http,
        &base,
        &inbound_secret,
        &warm_tag,
        warmup,
        Pace::Burst,
        settings,
    )
    .await?;
    wait_for_arrivals(&sink, warmup, warm).await?;
    let mut expected = warmup;
    let mut repeats_before = 0;

    let name = format!("gateway, {}, {in_flight} in flight", store.name());
    let mut rows = Vec::new();
    let phases = [
        (
            format!("{tag}b"),
            settings.events,
            Pace::Burst,
            format!("{name}, burst"),
        ),
        (
            format!("{tag}p"),
            settings.paced_events,
            Pace::Every(Duration::from_secs_f64(1.0 / settings.paced_rate)),
            format!("{name}, {}/s", settings.paced_rate),
        ),
    ];
    for (phase_tag, count, pace, row_name) in phases {
        if count == 0 {
            continue;
        }
        let started = Instant::now();
        let (sent, refused) = notify(
            http,
            &base,
            &inbound_secret,
            &phase_tag,
            count,
            pace,
            settings,
        )
        .await?;
        expected += count;
        wait_for_arrivals(&sink, expected, started).await?;
        let (arrivals, repeats) = match check_arrivals(&sink, expected).await {
            Ok(found) => found,
            Err(error) => {
                let retried = retried_deliveries(http, &base, &subscriber).await;
                bail!("{error}\ndeliveries attempted more than once: {retried}");
            }
        };
        let repeated = repeats - repeats_before;
        repeats_before = repeats;
        let mut delays = Vec::with_capacity(count);
        let mut last_arrival = started;
        for (i, (sent_at, _)) in sent.iter().enumerate() {
            let at = arrivals
                .get(&format!("{phase_tag}-{i}"))
                .copied()
                .ok_or_else(|| anyhow!("event {phase_tag}-{i} never arrived"))?;
            last_arrival = last_arrival.max(at);
            delays.push(at.saturating_duration_since(*sent_at));
        }
        let last_answer = sent
            .iter()
            .map(|(_, answered)| *answered)
            .max()
            .unwrap_or(started);
        println!(
            "{row_name}: done ({} webhook requests so far)",
            sink.requests.load(Ordering::Relaxed)
        );
        rows.push(Row {
            name: row_name,
            events: count,
            per_second: count as f64 / (last_arrival - started).as_secs_f64(),
            delays: Delays::new(delays),
            ingest_per_second: Some(count as f64 / (last_answer - started).as_secs_f64()),
            refused: Some(refused),
            repeated: Some(repeated),
        });
    }
    gateway
        .shutdown()
        .await
        .context("the benchmark's gateway did not stop cleanly")?;
    fresh.close().await?;
    Ok(rows)
}

/// The subscriber's deliveries that took more than one attempt, with their last error, to
/// explain a duplicate.
async fn retried_deliveries(http: &reqwest::Client, base: &str, subscriber: &str) -> String {
    let query = json!({
        "query": "query($id: ID!) { eventDeliveries(subscriberId: $id, first: 500) { state attempts \
                  lastStatus lastError event { id } } }",
        "variables": {"id": subscriber},
    });
    let answer = http
        .post(format!("{base}/graphql"))
        .header(DEMO_OPERATOR_HEADER, "bench")
        .header("content-type", "application/json")
        .body(query.to_string())
        .send()
        .await;
    let Ok(answer) = answer else {
        return "(the gateway did not answer)".to_string();
    };
    let body: Value = answer
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let retried: Vec<&Value> = body["data"]["eventDeliveries"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|d| d["attempts"].as_i64() > Some(1))
                .collect()
        })
        .unwrap_or_default();
    format!("{retried:?}")
}

/// How notifications are sent.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// As fast as `senders` requests at a time allow.
    Burst,
    /// One every this long, each on its own (as a steady stream of changes arrives).
    Every(Duration),
}

/// Sends `count` signed change notifications to `POST /events/cases`; change `i` is
/// `{tag}-{i}`. Returns when each was first sent and when it was accepted, and how many times
/// the gateway answered 503.
async fn notify(
    http: &reqwest::Client,
    base: &str,
    secret: &WebhookSecret,
    tag: &str,
    count: usize,
    pace: Pace,
    settings: &Settings,
) -> Result<(Vec<(Instant, Instant)>, u64)> {
    let sender = Arc::new(Sender {
        http: http.clone(),
        url: format!("{base}/events/cases"),
        secret: secret.clone(),
        tag: tag.to_string(),
        citizens: settings.citizens,
        times: (0..count).map(|_| OnceLock::new()).collect(),
        refused: AtomicU64::new(0),
    });
    let mut workers = tokio::task::JoinSet::new();
    match pace {
        Pace::Burst => {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..settings.senders.min(count) {
                let (sender, next) = (Arc::clone(&sender), Arc::clone(&next));
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= sender.times.len() {
                            return Ok::<(), anyhow::Error>(());
                        }
                        sender.send(i).await?;
                    }
                });
            }
        }
        Pace::Every(period) => {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in 0..count {
                ticks.tick().await;
                let sender = Arc::clone(&sender);
                workers.spawn(async move { sender.send(i).await });
            }
        }
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let times = sender
        .times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.get()
                .copied()
                .ok_or_else(|| anyhow!("notification {i} was not sent"))
        })
        .collect::<Result<_>>()?;
    Ok((times, sender.refused.load(Ordering::Relaxed)))
}

/// What sending one notification needs, shared by the sending tasks.
struct Sender {
    http: reqwest::Client,
    url: String,
    secret: WebhookSecret,
    tag: String,
    citizens: usize,
    /// When each notification was first sent, and when it was accepted.
    times: Vec<OnceLock<(Instant, Instant)>>,
    /// 503 answers (nothing recorded; sent again).
    refused: AtomicU64,
}

impl Sender {
    /// Sends notification `i`: one change about citizen `i mod citizens`.
    async fn send(&self, i: usize) -> Result<()> {
        let change = format!("{}-{i}", self.tag);
        let citizen = i % self.citizens + 1;
        let body = json!({
            "change_id": change,
            "citizen_id": format!("C{citizen:07}"),
            "case_id": format!("CASE-{citizen}"),
        })
        .to_string();
        let id = format!("msg_{change}");
        let sent = Instant::now();
        // A 503 says the change was not recorded: send it again, as a sender would (with the
        // same id, so a recording that did happen is not made twice).
        for _ in 0..RESEND_LIMIT {
            let timestamp = chrono::Utc::now().timestamp();
            let signature = self.secret.sign(&id, timestamp, body.as_bytes());
            let response = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(ID_HEADER, &id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await?;
            let status = response.status();
            let answer: Value = response
                .bytes()
                .await
                .map(|bytes| serde_json::from_slice(&bytes).unwrap_or(Value::Null))?;
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RESEND_AFTER).await;
                continue;
            }
            let recorded =
                answer["events"].as_array().map(Vec::len) == Some(1) || answer["duplicate"] == true;
            ensure!(
                status.is_success() && recorded,
                "the inbound endpoint answered {status}: {answer}"
            );
            let _ = self.times[i].set((sent, Instant::now()));
            return Ok(());
        }
        bail!("change {change} was refused {RESEND_LIMIT} times")
    }
}
