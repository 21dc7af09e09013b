//! Load benchmark: the gateway against the same data fetched straight from the agencies.
//!
//! Run with `cargo bench --bench load`. Everything happens in this one process, on loopback:
//! the simulated agencies (`civicgraph::demo`: registry and tax over REST, the motor vehicle
//! agency over SOAP 1.1, unemployment insurance in an SQLite file seeded in a temporary
//! directory, the benefits mainframe answering EBCDIC records over TCP and having written its
//! nightly payment extract file) are started, the gateway is loaded from the repository's own
//! `civicgraph.toml` (with the agencies' addresses, the UI database opened read-only, the
//! extract directory, an in-memory store, into which the `benefit_payments` connector loads
//! the extract) and every citizen's agency keys are linked in its identity crosswalk, as
//! `civicgraph demo` does. A pooled keep-alive `reqwest` client then drives, at a fixed
//! concurrency for a fixed time, two paths that produce the same citizen, for each of three
//! scenarios:
//!
//! - **citizen** ([`CITIZEN_QUERY`]: registry + tax):
//!   - *direct*: `GET {registry}/v1/people/{id}`, then `GET {tax}/v1/taxpayers/{tin}/account`,
//!     both bodies parsed. The client keeps its own crosswalk (the population, in memory), so
//!     it knows the TIN without asking anyone, and skips the tax call for a citizen with no
//!     tax account (minors), as the gateway does;
//!   - *gateway*: `POST {gateway}/graphql` with the query, as the citizen whose record it is
//!     (the `X-Demo-Citizen` header, which the benchmark switches on as `civicgraph demo`
//!     does): every query asks for `me`, the only way the shipped schema lets anyone read all
//!     of a citizen's record.
//! - **three-agency** ([`THREE_AGENCY_QUERY`]: registry + tax + motor vehicles + unemployment
//!   insurance):
//!   - *direct*: `GET` the registry's person, then at once (`tokio::join!`) the tax account
//!     (if the citizen has a TIN), the two SOAP envelopes `GetLicense` and `GetVehicles` the
//!     `soap` connector sends (if they hold a licence), and `connectors/ui.toml`'s claims
//!     query on a read-only sqlx SQLite pool on the same file (if they ever claimed). Every
//!     answer is parsed: JSON with `serde_json`, SOAP with a full `quick-xml` pass, SQL rows
//!     decoded column by column (see `benches/load/direct.rs`). Keys again come from the
//!     client's own crosswalk;
//!   - *gateway*: `POST /graphql` with the query; the gateway looks the keys up in its
//!     crosswalk (one store query per request) and makes the same four calls concurrently.
//! - **four-agency** ([`FOUR_AGENCY_QUERY`]: the three-agency query + `benefitCases`, every
//!   field, + `benefitPayments { issuedOn amount status }`):
//!   - *direct*: as three-agency, with a fifth call in the same `tokio::join!`: the benefits
//!     mainframe's `BNQ1` inquiry, made as a program talking to the mainframe makes it. It
//!     keeps a pool of TCP connections (4, as many as `connectors/benefits.toml`'s
//!     `max_connections`, so the mainframe sees no more transactions at once than from the
//!     gateway), builds the `BNQ-REQUEST` record, writes it behind a 4-byte big-endian
//!     length and reads the `BNQ-RESPONSE` record back the same way, all with the library's
//!     own public codec and framing (`RecordCodec` with the shipped connector's options,
//!     `write_frame` / `read_frame`), so that both paths pay the same for EBCDIC decoding and
//!     the comparison is about the gateway's own overhead. Payments have no online access and
//!     the direct client cannot read the gateway's store: it reads the nightly extract file
//!     once at start-up (before measuring; the context lines say how long that took), decodes
//!     every record into a map by case number, and looks the citizen's payments up there per
//!     request, as a client holding the nightly file would. A citizen without a case number
//!     (about four in five) gets neither benefits step, as in the gateway;
//!   - *gateway*: `POST /graphql`; the gateway makes the inquiry through the `benefits`
//!     connector and reads the payments with a query on its store (the `benefit_payments`
//!     connector), both only for citizens with a case number in its crosswalk.
//!
//! Every gateway answer is parsed and checked to carry no `errors` and the right id.
//!
//! Ids rotate over the whole population (`C0000001`…), each worker starting at its own offset,
//! so no run hammers one hot key. Before measuring, a sample of answers from both paths is
//! compared with the population itself, so the benchmark never times wrong answers: every
//! gateway answer must equal, field for field, the citizen built from the population (the
//! three-agency fields for that query; for the four-agency one also every benefit case:
//! program and status enum names, dates, amounts with two decimals, household size, payment
//! method and details; and every payment), and both paths must agree with the population on a
//! summary: tax balance, licence number, vehicle and claim counts, and for the four-agency
//! query each case's program and monthly amount and each payment's date and amount, from the
//! direct client's decoded records. The sample is spread over the population and adds a
//! minor, a vehicle owner, a claimant, a citizen with a closed benefits case and one whose
//! case has no payment.
//!
//! A second section per scenario, "where the time goes", times the stages of one request
//! in-process at concurrency 1: parse, `Graph::execute` as the HTTP handler calls it (with the
//! gateway's crosswalk, consent ledger and audit trail, as the citizen), the crosswalk lookup
//! alone, the direct path's backend calls, serialisation, the whole HTTP round trip, and every
//! backend call both through its connector (built from the shipped files) and by hand. For the
//! four-agency query the per-call table has two more rows: the mainframe inquiry (connector
//! against the hand-written client above) and the payments, where "connector" is the
//! `benefit_payments` connector's store query and "by hand" the direct client's lookup in its
//! in-memory map; that row is a store round trip against a map lookup, not a connector's own
//! work, and the derived lines report it apart. The breakdown's graph and connectors are built
//! apart from the running gateway, whose store is out of reach (it hands out only its
//! crosswalk, consent ledger and audit trail, which the graph is given), so the connectors get
//! a store of their own, opened from the same settings (an in-memory SQLite database), and load
//! the extract into it as `Gateway::load` does. Ids rotate over the whole population, except
//! for the four-agency breakdown, which takes the citizens with every agency key (tax account,
//! licence, claimant id, case number): with ids from the whole population most iterations would
//! skip the benefits calls, whose per-call rows (always called) would then not add up to stage
//! (2). The old "`schema.execute` without completion" stage is gone: resolvers now need the
//! per-request scope (principal + crosswalk) that only `Graph::execute` can insert (its type is
//! private to the crate), so executing the schema directly would fail every crosswalk-keyed
//! field; completion is now inside the executor figure.
//!
//! # Settings (environment variables)
//!
//! | variable                    | default                            | meaning                                                     |
//! |-----------------------------|------------------------------------|-------------------------------------------------------------|
//! | `LOAD_SECONDS`              | `2.5`                              | measured seconds per run (one path at one level)            |
//! | `LOAD_WARMUP_SECONDS`       | `0.5`                              | unmeasured seconds before each run                          |
//! | `LOAD_CONCURRENCY`          | `1,32`                             | comma-separated numbers of concurrent workers               |
//! | `LOAD_SCENARIOS`            | `citizen,three-agency,four-agency` | which scenarios to run, in order                            |
//! | `LOAD_CITIZENS`             | `10000`                            | size of the synthetic population                            |
//! | `LOAD_SEED`                 | `42`                               | seed of the synthetic population                            |
//! | `LOAD_BREAKDOWN_ITERATIONS` | `1500`                             | measured iterations of each scenario's breakdown; `0` skips it |
//! | `LOAD_SERVER_THREADS`       | cores                              | worker threads of the tokio runtime the servers run on      |
//! | `LOAD_CLIENT_THREADS`       | `0`                                | `0`: the load generator shares the servers' runtime; `N`: it gets its own runtime with `N` threads (closer to a client in another process) |
//!
//! For example: `LOAD_SECONDS=10 LOAD_CONCURRENCY=1,8,64 LOAD_SCENARIOS=three-agency cargo
//! bench --bench load`.
//!
//! With the defaults the whole run takes about 65 s: 12 runs of 3 s (3 scenarios × 2 levels ×
//! 2 paths; the per-run time was cut from 1 + 5 s to 0.5 + 3.5 s when the second scenario came
//! and to 0.5 + 2.5 s when the third came, to stay near a minute), the three breakdowns (about
//! 28 s on a 2-core machine, more than half of it the four-agency one, each of whose
//! iterations makes the payments store query three times) and set-up (seeding the UI
//! database, linking 10 000 citizens and decoding the payment extract for the direct client,
//! well under 1 s); raise `LOAD_SECONDS` for steadier figures. Without `--bench` on the
//! command line (`cargo test --benches`), the binary only smoke-tests itself: 1 000 citizens,
//! 0.2 s runs at concurrency 1 and 4 and 30 breakdown iterations, unless the variables above
//! say otherwise.
//!
//! # Reading the numbers
//!
//! The load generator, the gateway and all agencies share one process and, by default, one
//! tokio runtime (one worker thread per core) on the same machine; the SQLite database is
//! read by sqlx's own per-connection threads. The tables compare the two paths under
//! identical conditions; they are not capacity figures for a deployment. Besides latency and
//! throughput they give the process's CPU time per request (Linux only), which does not
//! depend on how the scheduler happens to place tasks: at concurrency 1 wall-clock latency is
//! mostly threads waking each other up, and it can shift by a factor of 3 from one run to the
//! next on a virtual machine.
//!
//! "gateway − direct" is what the gateway adds on top of a client that already has every agency
//! key: the extra HTTP exchange (client → gateway), GraphQL validation, resolvers and
//! completion, each connector's own work (URL and envelope templating, XML → JSON, row → JSON),
//! the crosswalk lookup, which the direct client does in memory and the gateway does in its
//! store between the registry call and the agency calls, the audit trail (every answer carries
//! the citizen's personal data, so before it leaves the gateway appends the request's reads to
//! its hash-chained audit trail, one batched write to its store per request), and, for the
//! three- and four-agency queries, whether the agency calls overlap: the breakdown compares
//! `Graph::execute` with the connector calls made one after another and made at once, and says
//! which fits. It splits these at concurrency 1; under load (concurrency 32, both cores busy)
//! compare CPU µs/req.
//!
//! For the four-agency query, the payments come from a query on the gateway's store, which
//! also answers the crosswalk lookups and takes the audit appends. The benchmark's store is an
//! in-memory SQLite database, which the gateway keeps on a single connection (each connection
//! to `:memory:` would be a database of its own): under load, every request's crosswalk lookup
//! and audit append and every case holder's payments query wait in line for that one
//! connection, so whatever the payments query costs (its row in the per-call table) weighs on
//! throughput at concurrency 32 far more than at 1.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark binary's report on stdout is its whole output"
)]

#[path = "load/direct.rs"]
mod direct;

use std::env;
use std::fmt::Display;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use civicgraph::audit::AuditLog;
use civicgraph::auth::{DEMO_CITIZEN_HEADER, Principal};
use civicgraph::config::{Vars, load_project};
use civicgraph::connectors::{Arguments, Connectors, build_connectors};
use civicgraph::consent::ConsentLedger;
use civicgraph::demo::agencies::{account_json, person_json};
use civicgraph::demo::data::{MAX_POPULATION, citizen_id};
use civicgraph::demo::dmv::SOAP_PATH;
use civicgraph::demo::{Population, SimulatedAgencies};
use civicgraph::graph::{Graph, Outcome, RequestContext, TrustServices};
use civicgraph::identity::{CitizenId, Crosswalk};
use civicgraph::server::{Gateway, RunningGateway};
use civicgraph::signing::SigningKey;
use civicgraph::store::Store;
use direct::{Agencies, DmvOperation, Mainframe, Payments, Summary};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

/// The citizen query of the first scenario: registry + tax. Every query is the signed-in
/// citizen's own record (`me`), the one caller the shipped schema lets read all of it.
const CITIZEN_QUERY: &str = "query Citizen { me { id name birthDate \
                             address { street city postalCode } taxAccount { balance filingStatus \
                             assessments { year assessed paid } } } }";

/// The three-agency citizen query: registry + tax + motor vehicles + unemployment insurance.
const THREE_AGENCY_QUERY: &str = "query Citizen { me { id name birthDate \
     address { street city postalCode } taxAccount { balance filingStatus \
     assessments { year assessed paid } } driverLicense { number class status expiresOn \
     restrictions } vehicles { vin plate make model year } unemploymentClaims { claimId status \
     filedOn weeklyBenefit weeksPaid } } }";

/// The four-agency citizen query: the three-agency one, plus the benefit cases from the
/// benefits mainframe (online, over TCP) and the payments from its nightly extract.
const FOUR_AGENCY_QUERY: &str = "query Citizen { me { id name birthDate \
     address { street city postalCode } taxAccount { balance filingStatus \
     assessments { year assessed paid } } driverLicense { number class status expiresOn \
     restrictions } vehicles { vin plate make model year } unemploymentClaims { claimId status \
     filedOn weeklyBenefit weeksPaid } benefitCases { program caseStatus openedOn closedOn \
     monthlyAmount balanceDue householdSize payMethod card { last4 issuedOn } \
     deposit { accountLast4 } check { mailCode } } benefitPayments { issuedOn amount status } } }";

/// How many gateway answers (per scenario) are compared with the population before measuring.
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

/// What a load run fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// [`CITIZEN_QUERY`]: registry + tax.
    Citizen,
    /// [`THREE_AGENCY_QUERY`]: registry + tax + motor vehicles + unemployment insurance.
    ThreeAgency,
    /// [`FOUR_AGENCY_QUERY`]: the three-agency query + the benefits mainframe (cases online,
    /// payments from its extract).
    FourAgency,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::ThreeAgency => "three-agency",
            Self::FourAgency => "four-agency",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Citizen => "citizen query (registry + tax)",
            Self::ThreeAgency => {
                "three-agency citizen query (registry + tax + motor vehicles over SOAP + \
                 unemployment insurance over SQL)"
            }
            Self::FourAgency => {
                "four-agency citizen query (the three-agency query + benefit cases from the \
                 benefits mainframe over TCP + benefit payments from its nightly extract)"
            }
        }
    }

    fn query(self) -> &'static str {
        match self {
            Self::Citizen => CITIZEN_QUERY,
            Self::ThreeAgency => THREE_AGENCY_QUERY,
            Self::FourAgency => FOUR_AGENCY_QUERY,
        }
    }

    /// The backend calls the direct path makes, for the breakdown's stage descriptions.
    fn direct_calls(self) -> &'static str {
        match self {
            Self::Citizen => "`GET /v1/people/{id}` then `GET /v1/taxpayers/{tin}/account`",
            Self::ThreeAgency => {
                "`GET /v1/people/{id}`, then tax `GET` ‖ SOAP `GetLicense` ‖ SOAP `GetVehicles` ‖ \
                 claims SQL"
            }
            Self::FourAgency => {
                "`GET /v1/people/{id}`, then tax `GET` ‖ SOAP `GetLicense` ‖ SOAP `GetVehicles` ‖ \
                 claims SQL ‖ mainframe `BNQ1` inquiry over TCP; then the payments from the \
                 extract held in memory"
            }
        }
    }

    /// The single backend calls the breakdown times through their connector and by hand.
    fn calls(self) -> &'static [BackendCall] {
        match self {
            Self::Citizen => &[BackendCall::Person, BackendCall::Account],
            Self::ThreeAgency => &[
                BackendCall::Person,
                BackendCall::Account,
                BackendCall::License,
                BackendCall::Vehicles,
                BackendCall::Claims,
            ],
            Self::FourAgency => &[
                BackendCall::Person,
                BackendCall::Account,
                BackendCall::License,
                BackendCall::Vehicles,
                BackendCall::Claims,
                BackendCall::Cases,
                BackendCall::Payments,
            ],
        }
    }

    /// The citizens (indices into the population) the breakdown's ids rotate over, and who
    /// they are. The four-agency breakdown takes citizens with every agency key, so that (2),
    /// (3) and (5) make every call the per-call table times (a benefits case number is rare,
    /// and the payments lookup costs much more than the others); the other scenarios keep
    /// the whole population.
    fn probe_citizens(self, population: &Population) -> (Vec<usize>, &'static str) {
        let people = population.people();
        let matching = |keep: &dyn Fn(&civicgraph::demo::data::Person) -> bool| -> Vec<usize> {
            (0..people.len()).filter(|&i| keep(&people[i])).collect()
        };
        if self == Self::FourAgency {
            let every_key = matching(&|p| {
                population.account_of(p).is_some()
                    && p.license_number.is_some()
                    && p.claimant_id.is_some()
                    && p.case_number.is_some()
            });
            if !every_key.is_empty() {
                return (
                    every_key,
                    "citizens with every agency key (tax account, licence, claimant id, benefits \
                     case number), so that every stage makes every call",
                );
            }
            let case_holders = matching(&|p| p.case_number.is_some());
            if !case_holders.is_empty() {
                return (case_holders, "citizens with a benefits case number");
            }
        }
        (
            (0..people.len()).collect(),
            "citizens: the whole population",
        )
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "citizen" => Ok(Self::Citizen),
            "three-agency" => Ok(Self::ThreeAgency),
            "four-agency" => Ok(Self::FourAgency),
            _ => bail!(
                "LOAD_SCENARIOS lists `citizen`, `three-agency` and `four-agency`, not `{text}`"
            ),
        }
    }
}

/// What to run, from the environment (see the table at the top of the file).
#[derive(Debug, Clone)]
struct Settings {
    measure: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    scenarios: Vec<Scenario>,
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
        let (seconds, warmup, concurrency, iterations, citizens) = if smoke {
            (0.2, 0.1, "1,4", 30, 1_000)
        } else {
            (2.5, 0.5, "1,32", 1500, 10_000)
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
        let scenarios_text = env::var("LOAD_SCENARIOS")
            .unwrap_or_else(|_| "citizen,three-agency,four-agency".into());
        let scenarios = scenarios_text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Scenario::from_str)
            .collect::<Result<Vec<_>>>()?;
        ensure!(!scenarios.is_empty(), "LOAD_SCENARIOS lists no scenario");
        let citizens: usize = env_or("LOAD_CITIZENS", citizens)?;
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
            scenarios,
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
    /// The gateway's identity crosswalk (its store), with every citizen linked.
    crosswalk: Crosswalk,
    /// The gateway's consent ledger and audit trail (its store), for the breakdown's graph.
    ledger: ConsentLedger,
    audit: AuditLog,
    /// The read-only URL of the unemployment insurance database.
    ui_url: String,
    /// Keeps the directory of the unemployment insurance database, the gateway's signing key
    /// and its audit checkpoints until the servers stop.
    ui_directory: tempfile::TempDir,
    config_path: PathBuf,
    vars: Vars,
    setup: Duration,
}

impl Servers {
    async fn start(settings: &Settings) -> Result<Self> {
        let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml");
        let started = Instant::now();
        let population = Arc::new(Population::generate(settings.citizens, settings.seed));
        let ui_directory = tempfile::Builder::new()
            .prefix("civicgraph-load-ui-")
            .tempdir()
            .context("cannot create a directory for the unemployment insurance database")?;
        let ui_path = ui_directory.path().join("ui.db");
        civicgraph::demo::ui::seed(
            &civicgraph::demo::ui::sqlite_url(&ui_path, "rwc"),
            &population,
        )
        .await
        .context("cannot seed the unemployment insurance database")?;
        let ui_url = civicgraph::demo::ui::sqlite_url(&ui_path, "ro");
        let agencies = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .context("cannot start the simulated agencies")?;
        let vars = Vars::from_env()
            .set("REGISTRY_URL", &agencies.registry_url)
            .set("TAX_URL", &agencies.tax_url)
            .set("DMV_URL", &agencies.dmv_url)
            .set("BENEFITS_MAINFRAME_ADDR", &agencies.benefits_addr)
            .set(
                "BENEFITS_EXTRACT_DIR",
                agencies.benefits_extract_dir.display().to_string(),
            )
            .set("UI_DATABASE_URL", &ui_url)
            .set("CIVICGRAPH_STORAGE_URL", "sqlite::memory:")
            // Each request acts as the citizen it reads (`X-Demo-Citizen`), as in the demo.
            .set("CIVICGRAPH_DEMO_HEADERS", "true")
            // The key that signs audit checkpoints, and the checkpoints, stay out of the
            // repository.
            .set(
                "CIVICGRAPH_SIGNING_KEY",
                ui_directory
                    .path()
                    .join("signing-key.pem")
                    .display()
                    .to_string(),
            )
            .set(
                "CIVICGRAPH_AUDIT_CHECKPOINTS",
                ui_directory
                    .path()
                    .join("audit-checkpoints.jsonl")
                    .display()
                    .to_string(),
            );
        let (gateway, crosswalk, ledger, audit) =
            match start_gateway(&config_path, &vars, &population).await {
                Ok(started) => started,
                Err(error) => {
                    agencies.shutdown().await;
                    return Err(error);
                }
            };
        Ok(Self {
            population,
            agencies,
            gateway,
            crosswalk,
            ledger,
            audit,
            ui_url,
            ui_directory,
            config_path,
            vars,
            setup: started.elapsed(),
        })
    }

    /// Stops the gateway, then the agencies it calls, waiting at most [`SHUTDOWN_LIMIT`];
    /// then removes the unemployment insurance database.
    async fn stop(self) {
        let Self {
            agencies,
            gateway,
            ui_directory,
            ..
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
        drop(ui_directory);
    }
}

/// Loads the gateway, links every citizen's agency keys in its crosswalk, binds and serves.
/// Returns it with its crosswalk, consent ledger and audit trail.
async fn start_gateway(
    config_path: &Path,
    vars: &Vars,
    population: &Population,
) -> Result<(RunningGateway, Crosswalk, ConsentLedger, AuditLog)> {
    let gateway = Gateway::load(config_path, vars)
        .await
        .with_context(|| format!("cannot load the gateway from {}", config_path.display()))?;
    let crosswalk = gateway.crosswalk();
    let (ledger, audit) = (gateway.consent_ledger(), gateway.audit_log());
    civicgraph::demo::link_population(&crosswalk, population)
        .await
        .context("cannot link the citizens in the gateway's identity crosswalk")?;
    let gateway = gateway
        .with_listen_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .bind()
        .await
        .context("cannot bind the gateway")?;
    Ok((gateway.spawn(), crosswalk, ledger, audit))
}

/// The servers under test and the client that drives them.
#[derive(Debug, Clone)]
struct Target {
    /// The direct path: the agencies called by hand.
    agencies: Agencies,
    graphql_url: String,
    citizens: usize,
}

impl Target {
    async fn new(servers: &Servers, settings: &Settings) -> Result<Self> {
        let most_workers = settings.concurrency.iter().copied().max().unwrap_or(1);
        let client = reqwest::Client::builder()
            // Every worker keeps its connections (a DMV worker has two calls in flight).
            .pool_max_idle_per_host(most_workers.saturating_mul(2))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the benchmark's HTTP client")?;
        let agencies = Agencies {
            client,
            registry_url: servers.agencies.registry_url.clone(),
            tax_url: servers.agencies.tax_url.clone(),
            soap_url: format!("{}{SOAP_PATH}", servers.agencies.dmv_url),
            ui: Agencies::open_ui(&servers.ui_url).await?,
            mainframe: Arc::new(Mainframe::new(&servers.agencies.benefits_addr)?),
            payments: Arc::new(Payments::load(&servers.agencies.benefits_extract_dir)?),
            population: Arc::clone(&servers.population),
        };
        Ok(Self {
            agencies,
            graphql_url: format!("{}/graphql", servers.gateway.url()),
            citizens: settings.citizens,
        })
    }

    /// (a) The backend calls a client would make without the gateway.
    async fn direct(&self, scenario: Scenario, id: &str) -> Result<Summary> {
        match scenario {
            Scenario::Citizen => self.agencies.citizen(id).await,
            Scenario::ThreeAgency => self.agencies.three_agency(id).await,
            Scenario::FourAgency => self.agencies.four_agency(id).await,
        }
    }

    /// (b) The same citizen through the gateway, asking as that citizen (`X-Demo-Citizen`)
    /// for their own record; returns the `data.me` it got.
    async fn gateway(&self, scenario: Scenario, id: &str) -> Result<Value> {
        let body = serde_json::to_vec(&json!({ "query": scenario.query() }))
            .context("cannot encode the GraphQL request")?;
        let response = self
            .agencies
            .client
            .post(&self.graphql_url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/graphql-response+json")
            .header(DEMO_CITIZEN_HEADER, id)
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
            .pointer_mut("/data/me")
            .map(Value::take)
            .unwrap_or(Value::Null);
        ensure!(
            citizen.get("id").and_then(Value::as_str) == Some(id),
            "the gateway's answer for {id} is for someone else: {citizen}"
        );
        Ok(citizen)
    }

    async fn call(&self, scenario: Scenario, path: LoadPath, id: &str) -> Result<()> {
        match path {
            LoadPath::Direct => self.direct(scenario, id).await.map(drop),
            LoadPath::Gateway => self.gateway(scenario, id).await.map(drop),
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
    let target = Target::new(servers, settings).await?;
    let target = &target;
    let population = servers.population.as_ref();
    let mut checked = Vec::new();
    for &scenario in &settings.scenarios {
        checked.push((scenario, check_answers(target, population, scenario).await?));
    }
    print_context(settings, servers.setup, &checked, &target.agencies.payments);

    let mut failed = 0;
    for &scenario in &settings.scenarios {
        let mut rows = Vec::new();
        for &concurrency in &settings.concurrency {
            for path in [LoadPath::Direct, LoadPath::Gateway] {
                rows.push(load_run(settings, target, scenario, path, concurrency).await);
            }
        }
        print_load_table(scenario, &rows);
        failed += rows.iter().map(|row| row.errors).sum::<u64>();
    }

    if settings.breakdown_iterations > 0 {
        let probes = Probes::new(servers).await?;
        for &scenario in &settings.scenarios {
            let breakdown = breakdown(settings, target, &probes, scenario).await?;
            print_breakdown(settings, scenario, &breakdown);
        }
    }
    ensure!(
        failed == 0,
        "{failed} requests failed during the load runs (see the tables)"
    );
    Ok(())
}

/// What [`check_answers`] compared for one scenario.
#[derive(Debug, Clone, Copy, Default)]
struct Checked {
    answers: usize,
    with_account: usize,
    licensed: usize,
    with_vehicles: usize,
    claimants: usize,
    with_cases: usize,
    with_payments: usize,
}

/// Compares a sample of gateway and direct answers with the population itself. The sample
/// is spread over the population and, where the population has them, includes a minor, a
/// vehicle owner, a claimant, and benefits case holders: one with a closed case, one without
/// any payment.
async fn check_answers(
    target: &Target,
    population: &Population,
    scenario: Scenario,
) -> Result<Checked> {
    let step = (population.len() / SAMPLE_CHECKS).max(1);
    let mut sample: Vec<usize> = (0..population.len())
        .step_by(step)
        .take(SAMPLE_CHECKS)
        .collect();
    let people = population.people();
    let benefits = population.benefits();
    let special = [
        people
            .iter()
            .position(|p| population.account_of(p).is_none()),
        people.iter().position(|p| {
            p.license_number
                .as_deref()
                .is_some_and(|n| !population.vehicles_of(n).is_empty())
        }),
        people.iter().position(|p| {
            p.claimant_id
                .as_deref()
                .is_some_and(|c| !population.claims_of(c).is_empty())
        }),
        people.iter().position(|p| {
            p.case_number.as_deref().is_some_and(|c| {
                benefits
                    .cases(c)
                    .iter()
                    .any(|case| case.closed_on.is_some())
            })
        }),
        people.iter().position(|p| {
            p.case_number
                .as_deref()
                .is_some_and(|c| benefits.payments(c).is_empty())
        }),
    ];
    for index in special.into_iter().flatten() {
        if !sample.contains(&index) {
            sample.push(index);
        }
    }
    let mut checked = Checked::default();
    for index in sample {
        let id = citizen_id(index);
        let person = population
            .person(&id)
            .with_context(|| format!("the population has no {id}"))?;
        let expected = expected_summary(population, scenario, &id)?;
        let got = target.gateway(scenario, &id).await?;
        let mut citizen = expected_citizen(population, &id)
            .with_context(|| format!("the population has no {id}"))?;
        if matches!(scenario, Scenario::ThreeAgency | Scenario::FourAgency) {
            add_three_agency(population, &id, &mut citizen)?;
        }
        if scenario == Scenario::FourAgency {
            add_four_agency(population, &id, &mut citizen)?;
        }
        ensure!(
            got == citizen,
            "the gateway's {} answer for {id} differs from the agencies' data:\n  got      {got}\n  expected {citizen}",
            scenario.name()
        );
        let gateway_summary = gateway_summary(scenario, &got)?;
        ensure!(
            gateway_summary == expected,
            "the gateway's {} answer for {id} sums up as {gateway_summary:?}, not {expected:?}",
            scenario.name()
        );
        let direct = target.direct(scenario, &id).await?;
        ensure!(
            direct == expected,
            "the direct {} path for {id} got {direct:?}, not {expected:?}",
            scenario.name()
        );
        checked.answers += 1;
        checked.with_account += usize::from(expected.balance.is_some());
        if scenario != Scenario::Citizen {
            checked.licensed += usize::from(person.license_number.is_some());
            checked.with_vehicles += usize::from(expected.vehicles.is_some_and(|n| n > 0));
            checked.claimants += usize::from(expected.claims.is_some());
        }
        checked.with_cases += usize::from(expected.cases.is_some());
        checked.with_payments +=
            usize::from(expected.payments.as_ref().is_some_and(|p| !p.is_empty()));
    }
    ensure!(checked.answers > 0, "no citizen to check");
    Ok(checked)
}

/// What the population says both paths must find for `id`.
fn expected_summary(population: &Population, scenario: Scenario, id: &str) -> Result<Summary> {
    let person = population
        .person(id)
        .with_context(|| format!("the population has no {id}"))?;
    let balance = population
        .account_of(person)
        .map(|account| account_json(account)["balance"].clone());
    if scenario == Scenario::Citizen {
        return Ok(Summary {
            balance,
            ..Summary::default()
        });
    }
    let license = person.license_number.clone();
    let benefits = population.benefits();
    // Only the four-agency query asks the benefits mainframe.
    let case_number = person
        .case_number
        .as_deref()
        .filter(|_| scenario == Scenario::FourAgency);
    Ok(Summary {
        balance,
        vehicles: license
            .as_deref()
            .map(|number| population.vehicles_of(number).len()),
        license,
        claims: person
            .claimant_id
            .as_deref()
            .map(|claimant| population.claims_of(claimant).len()),
        cases: case_number.map(|case_number| {
            benefits
                .cases(case_number)
                .iter()
                .map(|case| {
                    (
                        case.program.graphql().to_owned(),
                        format!("{:.2}", case.monthly_amount),
                    )
                })
                .collect()
        }),
        payments: case_number.map(|case_number| {
            benefits
                .payments(case_number)
                .iter()
                .map(|payment| {
                    (
                        payment.issued_on.to_string(),
                        format!("{:.2}", payment.amount),
                    )
                })
                .collect()
        }),
    })
}

/// A gateway answer reduced to a [`Summary`].
fn gateway_summary(scenario: Scenario, citizen: &Value) -> Result<Summary> {
    let pairs = |field: &str, first: &str, second: &str| -> Result<Option<Vec<(String, String)>>> {
        let items = match &citizen[field] {
            Value::Null => return Ok(None),
            Value::Array(items) => items,
            other => bail!("`{field}` is not a list: {other}"),
        };
        let text = |item: &Value, name: &str| -> Result<String> {
            item[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("an entry of `{field}` without `{name}`: {item}"))
        };
        items
            .iter()
            .map(|item| Ok((text(item, first)?, text(item, second)?)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    };
    let count = |field: &str| -> Result<Option<usize>> {
        match &citizen[field] {
            Value::Null => Ok(None),
            Value::Array(items) => Ok(Some(items.len())),
            other => bail!("`{field}` is not a list: {other}"),
        }
    };
    let balance = match &citizen["taxAccount"] {
        Value::Null => None,
        account => Some(account["balance"].clone()),
    };
    if scenario == Scenario::Citizen {
        return Ok(Summary {
            balance,
            ..Summary::default()
        });
    }
    Ok(Summary {
        balance,
        license: match &citizen["driverLicense"] {
            Value::Null => None,
            license => Some(
                license["number"]
                    .as_str()
                    .context("a licence without a number")?
                    .to_owned(),
            ),
        },
        vehicles: count("vehicles")?,
        claims: count("unemploymentClaims")?,
        cases: pairs("benefitCases", "program", "monthlyAmount")?,
        payments: pairs("benefitPayments", "issuedOn", "amount")?,
    })
}

/// What the gateway must answer for [`CITIZEN_QUERY`], built from the agencies' own JSON.
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

/// Adds what [`THREE_AGENCY_QUERY`] asks of the motor vehicle and unemployment insurance
/// agencies to [`expected_citizen`]'s answer, from the population.
fn add_three_agency(population: &Population, id: &str, citizen: &mut Value) -> Result<()> {
    let person = population
        .person(id)
        .with_context(|| format!("the population has no {id}"))?;
    let Value::Object(fields) = citizen else {
        bail!("the expected citizen is not an object");
    };
    let license = person
        .license_number
        .as_deref()
        .and_then(|number| population.license(number));
    fields.insert(
        "driverLicense".into(),
        license.map_or(Value::Null, |license| {
            json!({
                "number": license.number,
                "class": license.class.as_str(),
                "status": license.status.as_str(),
                "expiresOn": license.expires_on.to_string(),
                "restrictions": license.restrictions,
            })
        }),
    );
    fields.insert(
        "vehicles".into(),
        person
            .license_number
            .as_deref()
            .map_or(Value::Null, |number| {
                population
                    .vehicles_of(number)
                    .iter()
                    .map(|v| {
                        json!({
                            "vin": v.vin,
                            "plate": v.plate,
                            "make": v.make,
                            "model": v.model,
                            "year": v.year,
                        })
                    })
                    .collect()
            }),
    );
    fields.insert(
        "unemploymentClaims".into(),
        person
            .claimant_id
            .as_deref()
            .map_or(Value::Null, |claimant| {
                population
                    .claims_of(claimant)
                    .iter()
                    .map(|c| {
                        json!({
                            "claimId": c.claim_id,
                            "status": c.status.as_str(),
                            "filedOn": c.filed_on.to_string(),
                            "weeklyBenefit": c.weekly_benefit.to_string(),
                            "weeksPaid": c.weeks_paid,
                        })
                    })
                    .collect()
            }),
    );
    Ok(())
}

/// Adds what [`FOUR_AGENCY_QUERY`] asks of the benefits mainframe to [`add_three_agency`]'s
/// answer, from the population: the cases as the online inquiry holds them, the payments as
/// the nightly extract lists them; both `null` for a citizen without a case number.
fn add_four_agency(population: &Population, id: &str, citizen: &mut Value) -> Result<()> {
    use civicgraph::demo::benefits::Payment;

    let person = population
        .person(id)
        .with_context(|| format!("the population has no {id}"))?;
    let Value::Object(fields) = citizen else {
        bail!("the expected citizen is not an object");
    };
    let benefits = population.benefits();
    let case_number = person.case_number.as_deref();
    fields.insert(
        "benefitCases".into(),
        case_number.map_or(Value::Null, |case_number| {
            benefits
                .cases(case_number)
                .iter()
                .map(|case| {
                    let (method, card, deposit, check) = match &case.payment {
                        Payment::Card { last4, issued_on } => (
                            "CARD",
                            json!({ "last4": last4, "issuedOn": issued_on.to_string() }),
                            Value::Null,
                            Value::Null,
                        ),
                        Payment::Deposit { account_last4 } => (
                            "DEPOSIT",
                            Value::Null,
                            json!({ "accountLast4": account_last4 }),
                            Value::Null,
                        ),
                        Payment::Check { mail_code } => (
                            "CHECK",
                            Value::Null,
                            Value::Null,
                            json!({ "mailCode": mail_code }),
                        ),
                    };
                    json!({
                        "program": case.program.graphql(),
                        "caseStatus": case.status.graphql(),
                        "openedOn": case.opened_on.to_string(),
                        "closedOn": case.closed_on.map(|date| date.to_string()),
                        "monthlyAmount": format!("{:.2}", case.monthly_amount),
                        "balanceDue": format!("{:.2}", case.balance_due),
                        "householdSize": case.household_size,
                        "payMethod": method,
                        "card": card,
                        "deposit": deposit,
                        "check": check,
                    })
                })
                .collect()
        }),
    );
    fields.insert(
        "benefitPayments".into(),
        case_number.map_or(Value::Null, |case_number| {
            benefits
                .payments(case_number)
                .iter()
                .map(|payment| {
                    json!({
                        "issuedOn": payment.issued_on.to_string(),
                        "amount": format!("{:.2}", payment.amount),
                        "status": payment.status.graphql(),
                    })
                })
                .collect()
        }),
    );
    Ok(())
}

fn print_context(
    settings: &Settings,
    setup: Duration,
    checked: &[(Scenario, Checked)],
    payments: &Payments,
) {
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
         one process, {runtimes}, all over 127.0.0.1 (the UI database: an SQLite file)"
    );
    println!(
        "- population: {} citizens, seed {} (agencies seeded and started, gateway loaded and \
         every citizen linked in its crosswalk in {:.0} ms)",
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
    if settings.scenarios.contains(&Scenario::FourAgency) {
        println!(
            "- the direct client read the benefit payments extract once, before measuring: {} \
             records on {} case numbers decoded into memory in {:.0} ms",
            payments.records,
            payments.case_numbers(),
            payments.load_time.as_secs_f64() * 1e3
        );
    }
    for (scenario, checked) in checked {
        let three_agency = match scenario {
            Scenario::Citizen => String::new(),
            Scenario::ThreeAgency => format!(
                ", {} licensed ({} with vehicles), {} claimants",
                checked.licensed, checked.with_vehicles, checked.claimants
            ),
            Scenario::FourAgency => format!(
                ", {} licensed ({} with vehicles), {} claimants, {} with benefit cases ({} with \
                 payments)",
                checked.licensed,
                checked.with_vehicles,
                checked.claimants,
                checked.with_cases,
                checked.with_payments
            ),
        };
        println!(
            "- checked before measuring, {}: {} gateway and direct answers ({} with a tax \
             account{three_agency}) equal the agencies' data",
            scenario.name(),
            checked.answers,
            checked.with_account,
        );
    }
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
    scenario: Scenario,
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
                let result = target.call(scenario, path, &id).await;
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

fn print_load_table(scenario: Scenario, rows: &[RunResult]) {
    let optional = |value: Option<f64>, decimals: usize| {
        value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
    };
    println!("## Throughput and latency: {}", scenario.title());
    println!();
    println!(
        "Query: `{}`. CPU µs/req and cores busy are the whole process's (load generator + \
         gateway + agencies) over the measured window, from /proc/self/task/*/schedstat.",
        scenario.query()
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

/// One backend call, timed in the breakdown through its connector and by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendCall {
    Person,
    Account,
    License,
    Vehicles,
    Claims,
    /// The benefits mainframe's online inquiry.
    Cases,
    /// The benefit payments: the gateway's store, where the extract connector loaded the
    /// nightly file, against the direct client's in-memory map of the same file.
    Payments,
}

impl BackendCall {
    /// The connector, its operation and the operation's one argument.
    fn binding(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Person => ("registry", "person", "id"),
            Self::Account => ("tax", "account", "tin"),
            Self::License => ("dmv", "license", "license_number"),
            Self::Vehicles => ("dmv", "vehicles", "license_number"),
            Self::Claims => ("ui", "claims", "claimant_id"),
            Self::Cases => ("benefits", "cases", "case_number"),
            Self::Payments => ("benefit_payments", "payments", "case_number"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Person => "registry `GET /v1/people/{id}` (JSON)",
            Self::Account => "tax `GET /v1/taxpayers/{tin}/account` (JSON)",
            Self::License => "DMV SOAP `GetLicense` (XML)",
            Self::Vehicles => "DMV SOAP `GetVehicles` (XML)",
            Self::Claims => "UI claims query (SQLite)",
            Self::Cases => "benefits mainframe `BNQ1` inquiry over TCP (EBCDIC records)",
            Self::Payments => {
                "benefit payments: store query (connector) / extract map in memory (by hand)"
            }
        }
    }

    /// The call by hand, as the direct path makes it (answer parsed).
    async fn by_hand(self, agencies: &Agencies, key: &str) -> Result<()> {
        match self {
            Self::Person => agencies.person(key).await.map(drop),
            Self::Account => agencies.tax_balance(key).await.map(drop),
            Self::License => agencies.soap(DmvOperation::GetLicense, key).await.map(drop),
            Self::Vehicles => agencies
                .soap(DmvOperation::GetVehicles, key)
                .await
                .map(drop),
            Self::Claims => agencies.claims(key).await.map(drop),
            Self::Cases => agencies.benefit_cases(key).await.map(drop),
            Self::Payments => {
                black_box(agencies.benefit_payments(key));
                Ok(())
            }
        }
    }
}

/// What the breakdown calls in-process besides the two HTTP paths.
struct Probes {
    /// The graph built the way `civicgraph check` builds it (its own connectors and pools,
    /// calling the same agencies, no HTTP server in front), given the gateway's crosswalk,
    /// consent ledger and audit trail.
    graph: Graph,
    /// The gateway's crosswalk, every citizen linked.
    crosswalk: Crosswalk,
    /// The shipped connectors, built once more, to call one operation at a time.
    connectors: Connectors,
    /// Keys that exist at each agency, to rotate over.
    tins: Vec<String>,
    licenses: Vec<String>,
    claimants: Vec<String>,
    case_numbers: Vec<String>,
}

impl Probes {
    async fn new(servers: &Servers) -> Result<Self> {
        let checked = civicgraph::server::check(&servers.config_path, &servers.vars)
            .map_err(|problems| anyhow!("the shipped configuration does not check:\n{problems}"))?;
        let (project, problems) = load_project(&servers.config_path, &servers.vars);
        ensure!(
            problems.is_empty(),
            "the shipped configuration does not load:\n{}",
            civicgraph::config::Diagnostics(problems)
        );
        let (connectors, problems) = build_connectors(&project.connectors);
        ensure!(
            problems.is_empty(),
            "the shipped connectors do not build:\n{}",
            civicgraph::config::Diagnostics(problems)
        );
        // The extract connector answers from a store, and the gateway's own is out of reach:
        // both sets of connectors get one opened from the same settings (an in-memory SQLite
        // database), into which they load the extract file, as `Gateway::load` does.
        let store = Store::connect(&checked.config.storage)
            .await
            .context("cannot open a store for the breakdown's connectors")?;
        checked.connectors.attach(&store).await;
        connectors.attach(&store).await;
        // The gateway's consent ledger and audit trail, as `Gateway::load` gives its graph:
        // every request's protected reads are appended to the gateway's audit chain before the
        // response is returned, so (2) pays for the audit as the handler does.
        let signing_key = checked.root.join(&checked.config.trust.signing_key);
        let services = TrustServices {
            ledger: servers.ledger.clone(),
            audit: servers.audit.clone(),
            writer: civicgraph::audit::AuditWriter::spawn(servers.audit.clone()),
            signing: SigningKey::load(&signing_key).with_context(|| {
                format!(
                    "cannot read the gateway's signing key {}",
                    signing_key.display()
                )
            })?,
        };
        let population = servers.population.as_ref();
        let people = population.people();
        Ok(Self {
            graph: checked
                .graph
                .with_crosswalk(servers.crosswalk.clone())
                .with_trust_services(services),
            crosswalk: servers.crosswalk.clone(),
            connectors,
            tins: people
                .iter()
                .filter_map(|p| population.account_of(p).map(|a| a.tin.clone()))
                .collect(),
            licenses: people
                .iter()
                .filter_map(|p| p.license_number.clone())
                .collect(),
            claimants: people
                .iter()
                .filter_map(|p| p.claimant_id.clone())
                .collect(),
            case_numbers: people
                .iter()
                .filter_map(|p| p.case_number.clone())
                .collect(),
        })
    }

    /// The key `call` takes at iteration `i`: the iteration's citizen for the registry, else
    /// one of the agency's keys, rotating; `None` when the population has none.
    fn key(&self, call: BackendCall, i: usize, id: &str) -> Option<String> {
        let keys = match call {
            BackendCall::Person => return Some(id.to_owned()),
            BackendCall::Account => &self.tins,
            BackendCall::License | BackendCall::Vehicles => &self.licenses,
            BackendCall::Claims => &self.claimants,
            BackendCall::Cases | BackendCall::Payments => &self.case_numbers,
        };
        (!keys.is_empty()).then(|| keys[i * 7 % keys.len()].clone())
    }

    /// `call` through its connector, as a resolver makes it.
    async fn through_connector(&self, call: BackendCall, key: &str) -> Result<Duration> {
        let (name, operation, argument) = call.binding();
        let connector = self
            .connectors
            .get(name)
            .with_context(|| format!("no `{name}` connector"))?;
        let mut args = Arguments::new();
        args.insert(argument.to_owned(), Value::String(key.to_owned()));
        let started = Instant::now();
        let value = connector
            .call(operation, &args)
            .await
            .map_err(|error| anyhow!("{name}.{operation}({key}) failed: {error}"))?;
        let elapsed = started.elapsed();
        ensure!(
            value.is_some(),
            "{name}.{operation}({key}) found nothing, but the population has it"
        );
        black_box(&value);
        Ok(elapsed)
    }
}

/// The stages of one request, measured at concurrency 1.
#[derive(Debug, Default)]
struct Breakdown {
    parse: Stage,
    clone_document: Stage,
    graph_execute: Stage,
    serialise: Stage,
    crosswalk: Stage,
    backends: Stage,
    http: Stage,
    /// Per backend call: through its connector, by hand.
    calls: Vec<(BackendCall, Stage, Stage)>,
    /// How many citizens the ids rotated over, and who they are.
    citizens: usize,
    who: &'static str,
}

/// Unmeasured iterations before the measured ones.
fn breakdown_warmup(iterations: usize) -> usize {
    (iterations / 10).max(10)
}

/// The steps of one breakdown iteration before the per-backend ones.
const BREAKDOWN_STEPS: usize = 5;

/// Times the stages of one request at concurrency 1. Every iteration runs every stage once for
/// the same id, and the order of the stages rotates from one iteration to the next: what runs
/// just before a call (computation or I/O, a thread parked or not) moves its time by tens of
/// µs, and the rotation spreads that over all stages instead of biasing their differences.
async fn breakdown(
    settings: &Settings,
    target: &Target,
    probes: &Probes,
    scenario: Scenario,
) -> Result<Breakdown> {
    let iterations = settings.breakdown_iterations;
    let warmup = breakdown_warmup(iterations);
    let elapsed = |started: Instant| started.elapsed().as_secs_f64() * 1e6;
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let graph = &probes.graph;
    let query = scenario.query();
    let document = async_graphql::parser::parse_query(query)
        .context("the benchmark's query does not parse")?;
    // As the handler builds it for a citizen asking for their own record.
    let context = |id: &str, i: usize| -> Result<RequestContext> {
        Ok(RequestContext {
            principal: Principal::Citizen(CitizenId::parse(id).context("a citizen id")?),
            purpose: None,
            request_id: format!("load-breakdown-{i}"),
        })
    };

    let (citizens, who) = scenario.probe_citizens(&target.agencies.population);
    let mut b = Breakdown {
        calls: scenario
            .calls()
            .iter()
            .map(|&call| (call, Stage::default(), Stage::default()))
            .collect(),
        citizens: citizens.len(),
        who,
        ..Breakdown::default()
    };
    let steps = BREAKDOWN_STEPS + b.calls.len();
    for i in 0..warmup + iterations {
        let measured = i >= warmup;
        let id = citizen_id(citizens[i * 7 % citizens.len()]);
        for step in 0..steps {
            match (i + step) % steps {
                // (1) Parse only, then the clone `Graph::execute` makes, alone.
                0 => {
                    let started = Instant::now();
                    let parsed = async_graphql::parser::parse_query(black_box(query))
                        .context("the benchmark's query does not parse")?;
                    b.parse.push(measured, elapsed(started));
                    black_box(&parsed);
                    let started = Instant::now();
                    let copy = black_box(&document).clone();
                    b.clone_document.push(measured, elapsed(started));
                    black_box(&copy);
                }
                // (2) What the HTTP handler calls with the document from its cache:
                // `Graph::execute` clones it, looks the keys up in the crosswalk, validates,
                // resolves (the backend calls through the connectors) and completes; then (4)
                // serialise the response.
                1 => {
                    let context = context(&id, i)?;
                    let started = Instant::now();
                    let outcome = graph
                        .execute(async_graphql::Request::new(query), &document, context)
                        .await;
                    b.graph_execute.push(measured, elapsed(started));
                    let response = match outcome {
                        Outcome::Executed(response) if response.errors.is_empty() => response,
                        other => bail!("`Graph::execute` for {id} failed: {other:?}"),
                    };
                    let started = Instant::now();
                    let bytes =
                        serde_json::to_vec(&response).context("cannot serialise a response")?;
                    b.serialise.push(measured, elapsed(started));
                    black_box(&bytes);
                }
                // (3x) The crosswalk lookup alone: one query on the gateway's store.
                2 => {
                    let citizen = CitizenId::parse(&id).context("a citizen id")?;
                    let started = Instant::now();
                    let links = probes
                        .crosswalk
                        .links(&citizen)
                        .await
                        .context("the crosswalk lookup failed")?;
                    b.crosswalk.push(measured, elapsed(started));
                    black_box(&links);
                }
                // (3) The backend calls alone, as in the direct runs.
                3 => {
                    let started = Instant::now();
                    let summary = target.direct(scenario, &id).await?;
                    b.backends.push(measured, elapsed(started));
                    black_box(&summary);
                }
                // (5) The full HTTP path, as in the gateway runs.
                4 => {
                    let started = Instant::now();
                    let citizen = target.gateway(scenario, &id).await?;
                    b.http.push(measured, elapsed(started));
                    black_box(&citizen);
                }
                // One backend call through its connector and by hand, in alternating order.
                k => {
                    let (call, through_connector, by_hand) = &mut b.calls[k - BREAKDOWN_STEPS];
                    let Some(key) = probes.key(*call, i, &id) else {
                        continue;
                    };
                    for half in [i % 2, 1 - i % 2] {
                        if half == 0 {
                            let took = probes.through_connector(*call, &key).await?;
                            through_connector.push(measured, micros(took));
                        } else {
                            let started = Instant::now();
                            call.by_hand(&target.agencies, &key).await?;
                            by_hand.push(measured, elapsed(started));
                        }
                    }
                }
            }
        }
    }
    Ok(b)
}

fn print_breakdown(settings: &Settings, scenario: Scenario, b: &Breakdown) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("## Where the time goes: {}", scenario.title());
    println!();
    println!(
        "Concurrency 1, wall-clock µs per call: {} measured iterations after {} unmeasured ones; each \
         iteration runs every stage once for the same id, in an order that rotates every iteration, \
         ids rotating over {} {}. Means on a noisy, shared {cores}-core machine: read small \
         differences as rough.",
        settings.breakdown_iterations,
        breakdown_warmup(settings.breakdown_iterations),
        b.citizens,
        b.who,
    );
    println!();
    println!("| stage | what is timed | mean µs | median µs |");
    println!("|-------|---------------|--------:|----------:|");
    let direct_calls = format!(
        "{}, every answer parsed (as `direct`)",
        scenario.direct_calls()
    );
    let rows: [(&str, &str, &Stage); 7] = [
        (
            "(1) parse",
            "`async_graphql::parser::parse_query(query)` (the handler's document cache skips it)",
            &b.parse,
        ),
        (
            "(2) execute",
            "`Graph::execute(request, &document, context)` as the handler calls it for the citizen: document clone + crosswalk lookup + validate + resolve + the backend calls through the connectors + the audit append + completion",
            &b.graph_execute,
        ),
        ("(3) backend calls", direct_calls.as_str(), &b.backends),
        (
            "(3x) crosswalk",
            "`Crosswalk::links(citizen)`: the store query (2) makes between the registry call and the agency calls",
            &b.crosswalk,
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
    println!();
    println!(
        "Each backend call alone, through its connector (`Connector::call`, answer turned into JSON) \
         and by hand (as the direct path, answer parsed):"
    );
    println!();
    println!(
        "| backend call | connector mean µs | by hand mean µs | connector − by hand µs | connector median µs | by hand median µs |"
    );
    println!(
        "|--------------|------------------:|----------------:|-----------------------:|--------------------:|------------------:|"
    );
    for (call, through_connector, by_hand) in &b.calls {
        println!(
            "| {} | {:.1} | {:.1} | {:+.1} | {:.1} | {:.1} |",
            call.describe(),
            through_connector.mean(),
            by_hand.mean(),
            through_connector.mean() - by_hand.mean(),
            through_connector.median(),
            by_hand.median(),
        );
    }

    let (parse, execute, backends, crosswalk, serialise, http) = (
        b.parse.mean(),
        b.graph_execute.mean(),
        b.backends.mean(),
        b.crosswalk.mean(),
        b.serialise.mean(),
        b.http.mean(),
    );
    let mean_of = |which: BackendCall, connector: bool| {
        b.calls
            .iter()
            .find(|(call, ..)| *call == which)
            .map_or(0.0, |(_, c, h)| if connector { c.mean() } else { h.mean() })
    };
    // The gateway's backend calls through their connectors, either one after another, or
    // the registry's and then all the others at once (as the direct path makes them).
    let one_by_one: f64 = b.calls.iter().map(|(_, c, _)| c.mean()).sum();
    let overlapped = mean_of(BackendCall::Person, true)
        + b.calls
            .iter()
            .filter(|(call, ..)| *call != BackendCall::Person)
            .map(|(_, c, _)| c.mean())
            .fold(0.0, f64::max);
    // The payments row compares a store query with a map lookup: not a connector's own work.
    let agency_calls = || {
        b.calls
            .iter()
            .filter(|(call, ..)| *call != BackendCall::Payments)
    };
    let summed: f64 = agency_calls().map(|(_, c, h)| c.mean() - h.mean()).sum();
    let store_lookup = b
        .calls
        .iter()
        .find(|(call, ..)| *call == BackendCall::Payments)
        .map(|(_, c, h)| c.mean() - h.mean());
    let executor = execute - backends;
    let calls_in_execute = execute - crosswalk;
    let serial_fits =
        (calls_in_execute - one_by_one).abs() <= (calls_in_execute - overlapped).abs();
    let calls = if serial_fits { one_by_one } else { overlapped };
    let graphql = calls_in_execute - calls;
    let outside = http - execute;
    println!();
    println!("Derived from the means (differences of noisy means: read ± 10 µs):");
    println!();
    println!(
        "- executor overhead as the handler runs it = (2) − (3) = {execute:.1} − {backends:.1} = **{executor:.1} µs** \
         (crosswalk lookup, validation, field policy, resolvers, the connectors' own work and scheduling of the calls, \
         the audit append, completion; the parse is served from the document cache, uncached it would add (1) = {parse:.1} µs)"
    );
    println!(
        "  - crosswalk lookup (3x): {crosswalk:.1} µs, on the critical path (the agency calls wait for the keys)"
    );
    println!(
        "  - connectors' own work: {summed:+.1} µs summed over the {} agency calls (connector − by hand, all of it CPU)",
        agency_calls().count()
    );
    if let Some(store_lookup) = store_lookup {
        println!(
            "  - benefit payments: the `benefit_payments` connector's store query costs {store_lookup:+.1} µs \
             more than the direct client's lookup in the extract it holds in memory"
        );
    }
    if b.calls.len() > 2 {
        let fit = if serial_fits {
            format!(
                "**one after another**: the agency calls do not overlap in the gateway as they do in the \
                 direct path, which costs {:.1} µs per request",
                one_by_one - overlapped
            )
        } else {
            "**the registry's, then the others at once**, as in the direct path".to_string()
        };
        println!(
            "  - the backend calls through their connectors take {one_by_one:.1} µs one after another, \
             {overlapped:.1} µs as the registry's then the others at once; (2) − (3x) = {calls_in_execute:.1} µs fits {fit}"
        );
    }
    println!(
        "  - the rest, GraphQL itself (validation, field policy, resolvers, completion, the request scope) and the \
         audit append ≈ (2) − (3x) − calls = \
         {execute:.1} − {crosswalk:.1} − {calls:.1} = **{graphql:.1} µs**"
    );
    println!(
        "- HTTP + serialisation overhead = (5) − (2) = {http:.1} − {execute:.1} = **{outside:.1} µs** \
         (serialising alone, (4): {serialise:.1} µs; the rest is the extra loopback round trip, both HTTP \
         ends and the handler's own work)"
    );
    if http > 0.0 {
        println!(
            "- shares of one gateway request over HTTP ({http:.1} µs): backend calls through the \
             connectors {:.0}%, crosswalk {:.0}%, GraphQL + audit {:.0}%, HTTP + serialisation {:.0}% (parse: cached)",
            calls / http * 100.0,
            crosswalk / http * 100.0,
            graphql / http * 100.0,
            outside / http * 100.0
        );
    }
    println!();
}
