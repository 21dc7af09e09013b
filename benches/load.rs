//! Load benchmark: the gateway against the same data fetched straight from the agencies.
//!
//! Run with `cargo bench --bench load`. Everything happens in this one process, on loopback:
//! the simulated agencies (`civicgraph::demo`) are started on ephemeral ports, the gateway is
//! loaded from the repository's own `civicgraph.toml` (with the agencies' URLs and an in-memory
//! store), and a pooled keep-alive `reqwest` client drives, at a fixed concurrency for a fixed
//! time, two paths that produce the same citizen:
//!
//! - **direct**: `GET {registry}/v1/people/{id}`, then `GET {tax}/v1/taxpayers/{tin}/account`
//!   (sequential, as the gateway must: the TIN comes from the person), both bodies parsed;
//! - **gateway**: `POST {gateway}/graphql` with [`QUERY`] and the id as a variable, the body
//!   parsed and checked to carry no `errors`.
//!
//! Ids rotate over the whole population (`C0000001`…), each worker starting at its own offset,
//! so no run hammers one hot key. Before measuring, a sample of gateway answers is compared
//! with the population itself, so the benchmark never times wrong answers.
//!
//! A second section, "where the time goes", times the stages of one request in-process at
//! concurrency 1: parse, execute (validate + resolve + backend calls), the backend calls alone,
//! serialisation, and the whole HTTP round trip.
//!
//! # Settings (environment variables)
//!
//! | variable                    | default  | meaning                                                     |
//! |-----------------------------|----------|-------------------------------------------------------------|
//! | `LOAD_SECONDS`              | `5`      | measured seconds per run (one path at one level)            |
//! | `LOAD_WARMUP_SECONDS`       | `1`      | unmeasured seconds before each run                          |
//! | `LOAD_CONCURRENCY`          | `1,32`   | comma-separated numbers of concurrent workers               |
//! | `LOAD_CITIZENS`             | `10000`  | size of the synthetic population                            |
//! | `LOAD_SEED`                 | `42`     | seed of the synthetic population                            |
//! | `LOAD_BREAKDOWN_ITERATIONS` | `2000`   | measured iterations of the breakdown; `0` skips it          |
//! | `LOAD_SERVER_THREADS`       | cores    | worker threads of the tokio runtime the servers run on      |
//! | `LOAD_CLIENT_THREADS`       | `0`      | `0`: the load generator shares the servers' runtime; `N`: it gets its own runtime with `N` threads (closer to a client in another process) |
//!
//! For example: `LOAD_SECONDS=10 LOAD_CONCURRENCY=1,8,64 cargo bench --bench load`.
//!
//! With the defaults the whole run takes about 30 s (4 runs of 6 s, then the breakdown).
//! Without `--bench` on the command line (`cargo test --benches`), the binary only smoke-tests
//! itself: 0.2 s runs at concurrency 1 and 4 and 50 breakdown iterations, unless the
//! variables above say otherwise.
//!
//! # Reading the numbers
//!
//! The load generator, the gateway and both agencies share one process and, by default, one
//! tokio runtime (one worker thread per core) on the same machine. The table compares the two
//! paths under identical conditions; it is not a capacity figure for a deployment. Besides
//! latency and throughput it gives the process's CPU time per request (Linux only), which
//! does not depend on how the scheduler happens to place tasks: at concurrency 1 wall-clock
//! latency is mostly threads waking each other up, and it can shift by a factor of 3 from one
//! run to the next on a virtual machine.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark binary's report on stdout is its whole output"
)]

use std::env;
use std::fmt::Display;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use civicgraph::config::Vars;
use civicgraph::demo::agencies::{account_json, person_json};
use civicgraph::demo::data::{MAX_POPULATION, citizen_id};
use civicgraph::demo::{Population, SimulatedAgencies};
use civicgraph::graph::Outcome;
use civicgraph::server::{Gateway, RunningGateway};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

/// The citizen query both the load runs and the breakdown send.
const QUERY: &str = "query Citizen($id: ID!) { citizen(id: $id) { id name birthDate \
                     address { street city postalCode } taxAccount { balance filingStatus \
                     assessments { year assessed paid } } } }";

/// How many gateway answers are compared with the population before measuring.
const SAMPLE_CHECKS: usize = 50;

/// How long stopping the servers may take before the benchmark gives up waiting.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let servers_runtime = runtime("load-servers", settings.server_threads)?;
    let client_runtime = match settings.client_threads {
        Some(threads) => Some(runtime("load-client", threads)?),
        None => None,
    };
    let servers = servers_runtime.block_on(Servers::start(&settings))?;
    let outcome = client_runtime
        .as_ref()
        .unwrap_or(&servers_runtime)
        .block_on(measure(&settings, &servers));
    // The client's runtime goes first, closing its pooled connections.
    drop(client_runtime);
    servers_runtime.block_on(servers.stop());
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

/// What to run, from the environment (see the table at the top of the file).
#[derive(Debug, Clone)]
struct Settings {
    measure: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    citizens: usize,
    seed: u64,
    breakdown_iterations: usize,
    /// Worker threads of the servers' runtime (and of the client's, when they share one).
    server_threads: usize,
    /// Worker threads of the client's own runtime; `None` runs the client on the servers' one.
    client_threads: Option<usize>,
    /// Run without `--bench`: a quick check that the benchmark works, not a measurement.
    smoke: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let smoke = !env::args().any(|arg| arg == "--bench");
        let (seconds, warmup, concurrency, iterations) = if smoke {
            (0.2, 0.1, "1,4", 50)
        } else {
            (5.0, 1.0, "1,32", 2000)
        };
        let seconds: f64 = env_or("LOAD_SECONDS", seconds)?;
        let warmup: f64 = env_or("LOAD_WARMUP_SECONDS", warmup)?;
        ensure!(
            seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0,
            "LOAD_SECONDS must be a number of seconds above 0 and at most 3600, not {seconds}"
        );
        ensure!(
            warmup.is_finite() && (0.0..=3600.0).contains(&warmup),
            "LOAD_WARMUP_SECONDS must be between 0 and 3600, not {warmup}"
        );
        let concurrency_text = env::var("LOAD_CONCURRENCY").unwrap_or_else(|_| concurrency.into());
        let concurrency = concurrency_text
            .split(',')
            .map(str::trim)
            .filter(|level| !level.is_empty())
            .map(|level| match level.parse::<usize>() {
                Ok(level @ 1..=4096) => Ok(level),
                _ => Err(anyhow!(
                    "LOAD_CONCURRENCY must list numbers from 1 to 4096 (e.g. `1,32`), not `{level}`"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            !concurrency.is_empty(),
            "LOAD_CONCURRENCY lists no concurrency level"
        );
        let citizens: usize = env_or("LOAD_CITIZENS", 10_000)?;
        ensure!(
            (1..=MAX_POPULATION).contains(&citizens),
            "LOAD_CITIZENS must be between 1 and {MAX_POPULATION}, not {citizens}"
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let server_threads: usize = env_or("LOAD_SERVER_THREADS", cores)?;
        ensure!(
            (1..=256).contains(&server_threads),
            "LOAD_SERVER_THREADS must be between 1 and 256, not {server_threads}"
        );
        let client_threads: usize = env_or("LOAD_CLIENT_THREADS", 0)?;
        ensure!(
            client_threads <= 256,
            "LOAD_CLIENT_THREADS must be between 0 and 256, not {client_threads}"
        );
        let client_threads = (client_threads > 0).then_some(client_threads);
        Ok(Self {
            measure: Duration::from_secs_f64(seconds),
            warmup: Duration::from_secs_f64(warmup),
            concurrency,
            citizens,
            seed: env_or("LOAD_SEED", 42)?,
            breakdown_iterations: env_or("LOAD_BREAKDOWN_ITERATIONS", iterations)?,
            server_threads,
            client_threads,
            smoke,
        })
    }
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

/// The servers under test, running on their runtime until [`Servers::stop`].
#[derive(Debug)]
struct Servers {
    population: Arc<Population>,
    agencies: SimulatedAgencies,
    gateway: RunningGateway,
    config_path: PathBuf,
    vars: Vars,
    setup: Duration,
}

impl Servers {
    async fn start(settings: &Settings) -> Result<Self> {
        let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml");
        let started = Instant::now();
        let population = Arc::new(Population::generate(settings.citizens, settings.seed));
        let agencies = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .context("cannot start the simulated agencies")?;
        let vars = Vars::from_env()
            .set("REGISTRY_URL", &agencies.registry_url)
            .set("TAX_URL", &agencies.tax_url)
            .set("CIVICGRAPH_STORAGE_URL", "sqlite::memory:");
        let gateway = match start_gateway(&config_path, &vars).await {
            Ok(gateway) => gateway,
            Err(error) => {
                agencies.shutdown().await;
                return Err(error);
            }
        };
        Ok(Self {
            population,
            agencies,
            gateway,
            config_path,
            vars,
            setup: started.elapsed(),
        })
    }

    /// Stops the gateway, then the agencies it calls, waiting at most [`SHUTDOWN_LIMIT`].
    async fn stop(self) {
        let Self {
            agencies, gateway, ..
        } = self;
        let stopping = Instant::now();
        let stopped = tokio::time::timeout(SHUTDOWN_LIMIT, async {
            let gateway_result = gateway.shutdown().await;
            agencies.shutdown().await;
            gateway_result
        })
        .await;
        match stopped {
            Ok(Ok(())) => println!(
                "\nServers stopped in {:.0} ms.",
                stopping.elapsed().as_secs_f64() * 1e3
            ),
            Ok(Err(error)) => println!("\nThe gateway ended with an error: {error}"),
            Err(_) => println!(
                "\nThe servers did not stop within {} s; exiting anyway.",
                SHUTDOWN_LIMIT.as_secs()
            ),
        }
    }
}

async fn start_gateway(config_path: &Path, vars: &Vars) -> Result<RunningGateway> {
    let gateway = Gateway::load(config_path, vars)
        .await
        .with_context(|| format!("cannot load the gateway from {}", config_path.display()))?
        .with_listen_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .bind()
        .await
        .context("cannot bind the gateway")?;
    Ok(gateway.spawn())
}

/// The servers under test and the client that drives them.
#[derive(Debug, Clone)]
struct Target {
    client: reqwest::Client,
    registry_url: String,
    tax_url: String,
    graphql_url: String,
    citizens: usize,
}

impl Target {
    fn new(
        agencies: &SimulatedAgencies,
        gateway: &RunningGateway,
        settings: &Settings,
    ) -> Result<Self> {
        let most_workers = settings.concurrency.iter().copied().max().unwrap_or(1);
        let client = reqwest::Client::builder()
            // Every worker keeps its connections (up to two hosts each for `direct`).
            .pool_max_idle_per_host(most_workers.saturating_mul(2))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the benchmark's HTTP client")?;
        Ok(Self {
            client,
            registry_url: agencies.registry_url.clone(),
            tax_url: agencies.tax_url.clone(),
            graphql_url: format!("{}/graphql", gateway.url()),
            citizens: settings.citizens,
        })
    }

    /// (a) The two backend calls a client would make without the gateway.
    async fn direct(&self, id: &str) -> Result<()> {
        let person = self
            .get_json(&format!("{}/v1/people/{id}", self.registry_url))
            .await?;
        let Some(Value::Object(person)) = person.get("person") else {
            bail!("the registry answered {id} without a `person` object");
        };
        let Some(Value::String(tin)) = person.get("tin") else {
            bail!("the registry's {id} has no `tin` string");
        };
        let response = self
            .client
            .get(format!("{}/v1/taxpayers/{tin}/account", self.tax_url))
            .send()
            .await
            .context("the tax agency did not answer")?;
        let status = response.status();
        // The body is always read, so that the connection goes back to the pool.
        let body = response
            .bytes()
            .await
            .context("cannot read the tax agency's answer")?;
        let account: Value =
            serde_json::from_slice(&body).context("the tax agency's answer is not JSON")?;
        match status {
            StatusCode::OK if account.get("account").is_some_and(Value::is_object) => Ok(()),
            // Minors have no account: the gateway answers `taxAccount: null` for them.
            StatusCode::NOT_FOUND => Ok(()),
            _ => bail!("the tax agency answered {status} for {tin}: {account}"),
        }
    }

    /// (b) The same citizen through the gateway; returns the `data.citizen` it got.
    async fn gateway(&self, id: &str) -> Result<Value> {
        let body = serde_json::to_vec(&json!({ "query": QUERY, "variables": { "id": id } }))
            .context("cannot encode the GraphQL request")?;
        let response = self
            .client
            .post(&self.graphql_url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/graphql-response+json")
            .body(body)
            .send()
            .await
            .context("the gateway did not answer")?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("cannot read the gateway's answer")?;
        let mut answer: Value =
            serde_json::from_slice(&body).context("the gateway's answer is not JSON")?;
        if status != StatusCode::OK || answer.get("errors").is_some() {
            bail!("the gateway answered {status} for {id}: {answer}");
        }
        let citizen = answer
            .pointer_mut("/data/citizen")
            .map(Value::take)
            .unwrap_or(Value::Null);
        ensure!(
            citizen.get("id").and_then(Value::as_str) == Some(id),
            "the gateway's answer for {id} is for someone else: {citizen}"
        );
        Ok(citizen)
    }

    async fn get_json(&self, url: &str) -> Result<Value> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("cannot read the answer to GET {url}"))?;
        ensure!(status == StatusCode::OK, "GET {url} answered {status}");
        serde_json::from_slice(&body).with_context(|| format!("GET {url} did not answer JSON"))
    }

    async fn call(&self, path: LoadPath, id: &str) -> Result<()> {
        match path {
            LoadPath::Direct => self.direct(id).await,
            LoadPath::Gateway => self.gateway(id).await.map(drop),
        }
    }
}

/// The two ways to get a citizen that the load runs compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadPath {
    Direct,
    Gateway,
}

impl LoadPath {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
        }
    }
}

/// Everything measured, in order, once the servers are up.
async fn measure(settings: &Settings, servers: &Servers) -> Result<()> {
    let target = Target::new(&servers.agencies, &servers.gateway, settings)?;
    let target = &target;
    let population = servers.population.as_ref();
    let checked = check_answers(target, population).await?;
    print_context(settings, servers.setup, checked);

    let mut rows = Vec::new();
    for &concurrency in &settings.concurrency {
        for path in [LoadPath::Direct, LoadPath::Gateway] {
            rows.push(load_run(settings, target, path, concurrency).await);
        }
    }
    print_load_table(&rows);

    if settings.breakdown_iterations > 0 {
        let breakdown = breakdown(settings, target, &servers.config_path, &servers.vars).await?;
        print_breakdown(settings, &breakdown);
    }
    let failed: u64 = rows.iter().map(|row| row.errors).sum();
    ensure!(
        failed == 0,
        "{failed} requests failed during the load runs (see the table)"
    );
    Ok(())
}

/// How many answers [`check_answers`] compared, and how many of them had no tax account.
#[derive(Debug, Clone, Copy)]
struct Checked {
    answers: usize,
    without_account: usize,
}

/// Compares a sample of gateway answers (adults and minors) with the population itself, and
/// makes sure the direct path works for the same citizens.
async fn check_answers(target: &Target, population: &Population) -> Result<Checked> {
    let step = (population.len() / SAMPLE_CHECKS).max(1);
    let mut checked = Checked {
        answers: 0,
        without_account: 0,
    };
    for index in (0..population.len()).step_by(step).take(SAMPLE_CHECKS) {
        let id = citizen_id(index);
        let expected = expected_citizen(population, &id)
            .with_context(|| format!("the population has no {id}"))?;
        let got = target.gateway(&id).await?;
        ensure!(
            got == expected,
            "the gateway's answer for {id} differs from the agencies' data:\n  got      {got}\n  expected {expected}"
        );
        target.direct(&id).await?;
        checked.answers += 1;
        if got["taxAccount"].is_null() {
            checked.without_account += 1;
        }
    }
    ensure!(checked.answers > 0, "no citizen to check");
    Ok(checked)
}

/// What the gateway must answer for [`QUERY`], built from the agencies' own JSON.
fn expected_citizen(population: &Population, id: &str) -> Option<Value> {
    let person = population.person(id)?;
    let registry = person_json(person);
    let tax_account = population.account_of(person).map(|account| {
        let account = account_json(account);
        let assessments: Vec<Value> = account["assessments"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|a| json!({ "year": a["year"], "assessed": a["assessed"], "paid": a["paid"] }))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "balance": account["balance"],
            "filingStatus": account["filing_status"],
            "assessments": assessments,
        })
    });
    Some(json!({
        "id": person.id,
        "name": person.full_name,
        "birthDate": registry["birth_date"],
        "address": {
            "street": person.address.street,
            "city": person.address.city,
            "postalCode": person.address.postal_code,
        },
        "taxAccount": tax_account,
    }))
}

fn print_context(settings: &Settings, setup: Duration, checked: Checked) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let levels: Vec<String> = settings.concurrency.iter().map(usize::to_string).collect();
    println!("# civicgraph load benchmark");
    if settings.smoke {
        println!();
        println!(
            "SMOKE MODE (no `--bench` argument): a check that the benchmark runs, not a measurement."
        );
    }
    println!();
    let runtimes = match settings.client_threads {
        None => format!(
            "load generator, gateway and agencies on one tokio runtime ({} worker threads)",
            settings.server_threads
        ),
        Some(client) => format!(
            "gateway and agencies on one tokio runtime ({} worker threads), the load generator on \
             another ({client})",
            settings.server_threads
        ),
    };
    println!(
        "- machine: {cores} cores (std::thread::available_parallelism), shared with other work; \
         one process, {runtimes}, all over 127.0.0.1"
    );
    println!(
        "- population: {} citizens, seed {} (agencies and gateway up in {:.0} ms)",
        settings.citizens,
        settings.seed,
        setup.as_secs_f64() * 1e3
    );
    println!(
        "- each run: {:.1} s warm-up, then {:.1} s measured; concurrency levels: {}",
        settings.warmup.as_secs_f64(),
        settings.measure.as_secs_f64(),
        levels.join(", ")
    );
    println!(
        "- checked before measuring: {} gateway answers ({} of them without a tax account) equal \
         the agencies' data",
        checked.answers, checked.without_account
    );
    println!();
}

/// One path at one concurrency level, measured.
#[derive(Debug)]
struct RunResult {
    concurrency: usize,
    path: LoadPath,
    requests: usize,
    errors: u64,
    first_error: Option<String>,
    measured: Duration,
    /// CPU time of the whole process during the measured window, where it can be read.
    cpu: Option<Duration>,
    /// Sorted, in microseconds.
    latencies: Vec<u64>,
}

impl RunResult {
    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.measured.as_secs_f64()
    }

    fn p50_ms(&self) -> f64 {
        percentile(&self.latencies, 50.0) as f64 / 1e3
    }

    fn p99_ms(&self) -> f64 {
        percentile(&self.latencies, 99.0) as f64 / 1e3
    }

    /// Process CPU µs per measured request (client + gateway + agencies).
    fn cpu_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    /// How many cores the process kept busy on average.
    fn cores_busy(&self) -> Option<f64> {
        Some(self.cpu?.as_secs_f64() / self.measured.as_secs_f64())
    }
}

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerResult {
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `concurrency` workers on one path: warm-up, then the measured window. A request counts
/// when it both starts and ends inside the window; the workers stop issuing at its end.
async fn load_run(
    settings: &Settings,
    target: &Target,
    path: LoadPath,
    concurrency: usize,
) -> RunResult {
    let begin = Instant::now();
    let window_start = begin + settings.warmup;
    let window_end = window_start + settings.measure;
    // The process's CPU time over the measured window: client, gateway and agencies together.
    let cpu_meter = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        let before = process_cpu_time();
        tokio::time::sleep_until(window_end.into()).await;
        Some(process_cpu_time()?.saturating_sub(before?))
    });
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let target = target.clone();
        // Workers start spread over the population and each walks it in order.
        let first = worker * target.citizens / concurrency;
        workers.push(tokio::spawn(async move {
            let mut seen = WorkerResult::default();
            let mut index = first;
            loop {
                let started = Instant::now();
                if started >= window_end {
                    break;
                }
                let id = citizen_id(index);
                index = (index + 1) % target.citizens;
                let result = target.call(path, &id).await;
                let ended = Instant::now();
                match result {
                    Ok(()) if started >= window_start && ended <= window_end => {
                        let micros = ended.duration_since(started).as_micros();
                        seen.latencies
                            .push(u64::try_from(micros).unwrap_or(u64::MAX));
                    }
                    Ok(()) => {}
                    Err(error) => {
                        seen.errors += 1;
                        if seen.first_error.is_none() {
                            seen.first_error = Some(format!("{error:#}"));
                        }
                    }
                }
            }
            seen
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        match worker.await {
            Ok(seen) => {
                latencies.extend(seen.latencies);
                errors += seen.errors;
                first_error = first_error.or(seen.first_error);
            }
            Err(error) => {
                errors += 1;
                first_error = first_error.or_else(|| Some(format!("a worker died: {error}")));
            }
        }
    }
    latencies.sort_unstable();
    RunResult {
        concurrency,
        path,
        requests: latencies.len(),
        errors,
        first_error,
        measured: settings.measure,
        cpu: cpu_meter.await.ok().flatten(),
        latencies,
    }
}

/// CPU time run so far by all live threads of this process, from Linux's
/// `/proc/self/task/*/schedstat` (nanoseconds); `None` where that is not available.
fn process_cpu_time() -> Option<Duration> {
    let mut nanos: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        // A thread that ends between the listing and the read is skipped.
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let on_cpu = stat.split_whitespace().next()?.parse::<u64>().ok()?;
        nanos = nanos.saturating_add(on_cpu);
    }
    Some(Duration::from_nanos(nanos))
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[u64], percent: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_load_table(rows: &[RunResult]) {
    let optional = |value: Option<f64>, decimals: usize| {
        value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
    };
    println!("## Throughput and latency");
    println!();
    println!(
        "CPU µs/req and cores busy are the whole process's (load generator + gateway + agencies) \
         over the measured window, from /proc/self/task/*/schedstat."
    );
    println!();
    println!(
        "| concurrency | path | requests/s | p50 ms | p99 ms | CPU µs/req | cores busy | requests | errors |"
    );
    println!(
        "|------------:|------|-----------:|-------:|-------:|-----------:|-----------:|---------:|-------:|"
    );
    let mut summaries = Vec::new();
    for pair in rows.chunks(2) {
        for row in pair {
            println!(
                "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} |",
                row.concurrency,
                row.path.name(),
                row.requests_per_second(),
                row.p50_ms(),
                row.p99_ms(),
                optional(row.cpu_per_request(), 0),
                optional(row.cores_busy(), 2),
                row.requests,
                row.errors
            );
        }
        if let [direct, gateway] = pair
            && direct.path == LoadPath::Direct
            && gateway.path == LoadPath::Gateway
        {
            let ratio = gateway.requests_per_second() / direct.requests_per_second();
            let added_p50 = gateway.p50_ms() - direct.p50_ms();
            let added_p99 = gateway.p99_ms() - direct.p99_ms();
            let cpu = gateway.cpu_per_request().zip(direct.cpu_per_request());
            let cpu_ratio = cpu.map(|(gateway, direct)| gateway / direct);
            println!(
                "| {} | overhead: gateway/direct rps, gateway − direct ms, gateway/direct CPU | {ratio:.2}× | {added_p50:+.3} | {added_p99:+.3} | {}× | | | |",
                direct.concurrency,
                optional(cpu_ratio, 2),
            );
            let cpu_text = cpu.map_or_else(String::new, |(gateway, direct)| {
                format!(
                    "; it costs {:.2}× the CPU per citizen ({gateway:.0} vs {direct:.0} µs, whole process)",
                    gateway / direct
                )
            });
            summaries.push(format!(
                "- concurrency {}: the gateway serves {:.2}× the direct throughput ({:.0} vs {:.0} requests/s) \
                 and adds {:+.3} ms at p50 ({:.3} vs {:.3} ms), {:+.3} ms at p99{cpu_text}",
                direct.concurrency,
                ratio,
                gateway.requests_per_second(),
                direct.requests_per_second(),
                added_p50,
                gateway.p50_ms(),
                direct.p50_ms(),
                added_p99
            ));
        }
    }
    println!();
    for summary in summaries {
        println!("{summary}");
    }
    for row in rows {
        if let Some(error) = &row.first_error {
            println!(
                "- first error, concurrency {} {}: {error}",
                row.concurrency,
                row.path.name()
            );
        }
    }
    println!();
}

/// The wall-clock times of one stage of the breakdown, in microseconds per call.
#[derive(Debug, Default)]
struct Stage(Vec<f64>);

impl Stage {
    fn push(&mut self, measured: bool, micros: f64) {
        if measured {
            self.0.push(micros);
        }
    }

    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }

    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }
}

/// The stages of one request, measured at concurrency 1.
#[derive(Debug, Default)]
struct Breakdown {
    parse: Stage,
    execute: Stage,
    backends: Stage,
    serialise: Stage,
    http: Stage,
    graph_execute: Stage,
    graph_execute_without_completion: Stage,
    clone_document: Stage,
}

/// Unmeasured iterations before the measured ones.
fn breakdown_warmup(iterations: usize) -> usize {
    (iterations / 10).max(10)
}

/// The steps of one breakdown iteration, run in an order that rotates every iteration.
const BREAKDOWN_STEPS: usize = 6;

/// Times the stages of one request at concurrency 1. Every iteration runs every stage once for
/// the same id, and the order of the stages rotates from one iteration to the next: what runs
/// just before a call (computation or I/O, a thread parked or not) moves its time by tens of
/// µs, and the rotation spreads that over all stages instead of biasing their differences.
async fn breakdown(
    settings: &Settings,
    target: &Target,
    config_path: &Path,
    vars: &Vars,
) -> Result<Breakdown> {
    let iterations = settings.breakdown_iterations;
    let warmup = breakdown_warmup(iterations);
    let elapsed = |started: Instant| started.elapsed().as_secs_f64() * 1e6;
    // The graph built the way `civicgraph check` builds it: its own connectors and pools,
    // calling the same agencies, with no HTTP server in front.
    let checked = civicgraph::server::check(config_path, vars).map_err(|diagnostics| {
        anyhow!("the shipped configuration does not check:\n{diagnostics}")
    })?;
    let graph = &checked.graph;
    let document = async_graphql::parser::parse_query(QUERY)
        .context("the benchmark's query does not parse")?;
    let request = |id: &str| {
        async_graphql::Request::new(QUERY)
            .variables(async_graphql::Variables::from_json(json!({ "id": id })))
    };

    let mut b = Breakdown::default();
    for i in 0..warmup + iterations {
        let measured = i >= warmup;
        let id = citizen_id(i * 7 % target.citizens);
        for step in 0..BREAKDOWN_STEPS {
            match (i + step) % BREAKDOWN_STEPS {
                // (1) Parse only.
                0 => {
                    let started = Instant::now();
                    let parsed = async_graphql::parser::parse_query(black_box(QUERY))
                        .context("the benchmark's query does not parse")?;
                    b.parse.push(measured, elapsed(started));
                    black_box(&parsed);
                    // The clone `Graph::execute` makes, alone.
                    let started = Instant::now();
                    let copy = black_box(&document).clone();
                    b.clone_document.push(measured, elapsed(started));
                    black_box(&copy);
                }
                // (2) Execute in-process: async-graphql parses, validates and resolves (two
                // backend calls through the connectors); then (4) serialise the response.
                1 => {
                    let started = Instant::now();
                    let response = graph.schema.execute(request(&id)).await;
                    b.execute.push(measured, elapsed(started));
                    ensure!(
                        response.errors.is_empty(),
                        "in-process execution for {id} failed: {:?}",
                        response.errors
                    );
                    let started = Instant::now();
                    let bytes =
                        serde_json::to_vec(&response).context("cannot serialise a response")?;
                    b.serialise.push(measured, elapsed(started));
                    black_box(&bytes);
                }
                // (2′) What the HTTP handler calls instead of (2): `Graph::execute` with the
                // document it parsed, which clones it, validates, resolves and completes.
                2 => {
                    let parsed = async_graphql::parser::parse_query(QUERY)
                        .context("the benchmark's query does not parse")?;
                    let started = Instant::now();
                    let outcome = graph
                        .execute(
                            request(&id),
                            &parsed,
                            civicgraph::auth::Principal::Anonymous,
                        )
                        .await;
                    b.graph_execute.push(measured, elapsed(started));
                    match outcome {
                        Outcome::Executed(response) if response.errors.is_empty() => {}
                        other => bail!("`Graph::execute` for {id} failed: {other:?}"),
                    }
                }
                // `Graph::execute` without its completion pass: the same clone handed to
                // the schema directly, so that (2′) minus this is what completion costs.
                3 => {
                    let parsed = async_graphql::parser::parse_query(QUERY)
                        .context("the benchmark's query does not parse")?;
                    let started = Instant::now();
                    let mut request = request(&id);
                    request.set_parsed_query(parsed.clone());
                    let response = graph.schema.execute(request).await;
                    b.graph_execute_without_completion
                        .push(measured, elapsed(started));
                    ensure!(
                        response.errors.is_empty(),
                        "in-process execution for {id} failed: {:?}",
                        response.errors
                    );
                }
                // (3) The two backend calls alone, as in the direct runs.
                4 => {
                    let started = Instant::now();
                    target.direct(&id).await?;
                    b.backends.push(measured, elapsed(started));
                }
                // (5) The full HTTP path, as in the gateway runs.
                _ => {
                    let started = Instant::now();
                    let citizen = target.gateway(&id).await?;
                    b.http.push(measured, elapsed(started));
                    black_box(&citizen);
                }
            }
        }
    }
    Ok(b)
}

fn print_breakdown(settings: &Settings, b: &Breakdown) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("## Where the time goes");
    println!();
    println!(
        "Concurrency 1, wall-clock µs per call: {} measured iterations after {} unmeasured ones; each \
         iteration runs every stage once for the same id, in an order that rotates every iteration, \
         ids rotating over the population. Means on a noisy, shared {cores}-core machine: read small \
         differences as rough.",
        settings.breakdown_iterations,
        breakdown_warmup(settings.breakdown_iterations),
    );
    println!();
    println!("| stage | what is timed | mean µs | median µs |");
    println!("|-------|---------------|--------:|----------:|");
    let rows: [(&str, &str, &Stage); 8] = [
        (
            "(1) parse",
            "`async_graphql::parser::parse_query(QUERY)`",
            &b.parse,
        ),
        (
            "(2) execute",
            "`graph.schema.execute(request)` in-process: parse + validate + resolve + both backend calls",
            &b.execute,
        ),
        (
            "(3) backend calls",
            "`GET /v1/people/{id}` then `GET /v1/taxpayers/{tin}/account`, both parsed (as `direct`)",
            &b.backends,
        ),
        (
            "(4) serialise",
            "`serde_json::to_vec(&response)` of (2)'s response",
            &b.serialise,
        ),
        (
            "(5) HTTP",
            "`POST /graphql` round trip (query parse served from the document cache), answer parsed and checked (as `gateway`)",
            &b.http,
        ),
        (
            "(2′) handler's execute",
            "`Graph::execute(request, &parsed)` as the handler calls it: document clone + validate + resolve + both backend calls + completion",
            &b.graph_execute,
        ),
        (
            "(2″) without completion",
            "what `Graph::execute` does minus completion: `set_parsed_query(parsed.clone())` + `schema.execute`",
            &b.graph_execute_without_completion,
        ),
        (
            "extra",
            "`ExecutableDocument::clone` of the parsed query (done inside `Graph::execute`)",
            &b.clone_document,
        ),
    ];
    for (stage, what, samples) in rows {
        println!(
            "| {stage} | {what} | {:.1} | {:.1} |",
            samples.mean(),
            samples.median(),
        );
    }

    let (parse, execute, backends, serialise, http, graph_execute) = (
        b.parse.mean(),
        b.execute.mean(),
        b.backends.mean(),
        b.serialise.mean(),
        b.http.mean(),
        b.graph_execute.mean(),
    );
    let executor = execute - backends - parse;
    // The HTTP handler finds the query in the gateway's document cache, so its path is (2′),
    // not (2): no parse.
    let handler_executor = graph_execute - backends;
    let outside = http - graph_execute;
    println!();
    println!("Derived from the means (differences of noisy means: read ± 10 µs):");
    println!();
    println!(
        "- executor overhead, uncached = (2) − (3) − (1) = {execute:.1} − {backends:.1} − {parse:.1} = **{executor:.1} µs** \
         (validation, resolvers, the connectors' own work)"
    );
    println!(
        "- executor overhead as the handler runs it = (2′) − (3) = {graph_execute:.1} − {backends:.1} = **{handler_executor:.1} µs** \
         (the parse is served from the document cache; validation, resolvers, completion)"
    );
    println!(
        "- HTTP + serialisation overhead = (5) − (2′) = {http:.1} − {graph_execute:.1} = **{outside:.1} µs** \
         (serialising alone, (4): {serialise:.1} µs; the rest is the extra loopback round trip, both HTTP \
         ends and the handler's own work)"
    );
    let without_completion = b.graph_execute_without_completion.mean();
    println!(
        "- completion (key order, null propagation) ≈ (2′) − (2″) = {graph_execute:.1} − {without_completion:.1} = {:.1} µs",
        graph_execute - without_completion
    );
    if http > 0.0 {
        println!(
            "- shares of one gateway request over HTTP ({http:.1} µs): backend calls {:.0}%, \
             executor {:.0}%, HTTP + serialisation {:.0}% (parse: cached)",
            backends / http * 100.0,
            handler_executor / http * 100.0,
            outside / http * 100.0
        );
    }
}
