//! Simulated agency backends.
//!
//! CivicGraph exists to join legacy agency systems, but nobody can run the
//! real person registry, tax agency, motor vehicle agency or unemployment
//! insurance on a laptop or in CI. This module stands in for them: a
//! deterministic synthetic population ([`data`]) served by small REST
//! servers that mimic the registry's and the tax agency's APIs
//! ([`agencies`]), a SOAP 1.1 service for the motor vehicle agency
//! ([`dmv`]), and a real SQL database for unemployment insurance ([`ui`]).
//! With `events_per_minute` set, their data also changes over time
//! ([`changes`]): people lose jobs, move and have children, so the gateway
//! has life events to detect ([`registry`] keeps the registry's changes).
//!
//! The same code backs three users, which is why it lives in the library
//! rather than under `tests/`:
//!
//! * the `civicgraph demo` command, which starts the agencies on loopback and
//!   points the gateway at them;
//! * the integration tests, which need known citizens (`C0000001` always
//!   exists) and reproducible payloads;
//! * the load benchmark, which needs fast backends so that it measures the
//!   gateway rather than the simulation, and which compares the gateway's
//!   answers against [`agencies::person_json`] / [`agencies::account_json`].

pub mod agencies;
pub mod benefits;
pub mod changes;
pub mod data;
pub mod dmv;
pub mod inbox;
pub mod mainframe_server;
pub mod registry;
pub mod ui;

pub use agencies::SimulatedAgencies;
pub use data::Population;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Vars;
use crate::events::signature::WebhookSecret;
use crate::identity::{AnyKey, CitizenId, Crosswalk, CrosswalkError};
use crate::server::{Gateway, RunningGateway, StartGatewayError};

/// The query the demo prints for a newcomer to paste into GraphiQL: a signed-in citizen's own
/// record, joined across every agency (send it with the printed citizen token).
pub const FIRST_QUERY: &str = r#"{
  me {
    id
    name
    birthDate
    address { street city postalCode }
    taxAccount {
      balance
      filingStatus
      assessments { year assessed paid }
    }
    driverLicense { number class status expiresOn }
    vehicles { plate make model year }
    unemploymentClaims { status filedOn weeklyBenefit }
    benefitCases { program caseStatus monthlyAmount balanceDue payMethod card { last4 } }
    benefitPayments { issuedOn amount status }
  }
}"#;

/// What `civicgraph demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How many synthetic citizens the agencies hold.
    pub citizens: usize,
    /// Seed for the synthetic data; the same seed gives the same people.
    pub seed: u64,
    /// The gateway's port on 127.0.0.1.
    pub port: u16,
    /// `civicgraph.toml` whose `schema/` and `connectors/` the demo serves.
    pub config: PathBuf,
    /// The unemployment insurance database to seed and serve (`postgres://…`,
    /// `mysql://…`, `mariadb://…` or `sqlite:…`); `None` seeds an SQLite file in
    /// a temporary directory that lives as long as the demo. Its tables
    /// (`ui_claimants`, `ui_claims`) are dropped and recreated.
    pub ui_database_url: Option<String>,
    /// Where the gateway's database and audit checkpoints go (emptied first); `None` is
    /// `.civicgraph/demo` beside the configuration.
    pub state_dir: Option<PathBuf>,
    /// How many changes a minute the simulated agencies make (job losses, moves, births);
    /// 0 keeps their data as generated. At most [`changes::MAX_EVENTS_PER_MINUTE`].
    pub events_per_minute: u32,
    /// The secret the registry signs its birth webhooks with (`whsec_…`), which the gateway
    /// sees as `${REGISTRY_WEBHOOK_SECRET}`; `None` takes `REGISTRY_WEBHOOK_SECRET` from the
    /// environment, or else makes a fresh one.
    pub registry_webhook_secret: Option<String>,
    /// A directory with GraphiQL's browser files for the gateway to serve (the shipped
    /// configuration's `${CIVICGRAPH_GRAPHIQL_ASSETS}`), so the playground works offline;
    /// `None` leaves that variable to the environment (unset: the CDN).
    pub graphiql_assets_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    /// What `civicgraph demo` runs with no flags (port 4000, the
    /// `civicgraph.toml` in the working directory), so callers can write
    /// `DemoOptions { port: 0, ..DemoOptions::default() }`.
    fn default() -> Self {
        Self {
            citizens: 1000,
            seed: 42,
            port: 4000,
            config: PathBuf::from("civicgraph.toml"),
            ui_database_url: None,
            state_dir: None,
            events_per_minute: 0,
            registry_webhook_secret: None,
            graphiql_assets_dir: None,
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartDemoError {
    /// `--citizens` is out of range.
    #[error("--citizens must be between 1 and {max}, not {got}")]
    Citizens {
        /// The largest population the simulation supports.
        max: usize,
        /// What was asked for.
        got: usize,
    },
    /// A simulated agency could not bind its port.
    #[error("cannot start the simulated agencies: {0}")]
    Agencies(#[source] std::io::Error),
    /// No temporary directory for the default SQLite database.
    #[error("cannot create a directory for the unemployment insurance database: {0}")]
    UiDirectory(#[source] std::io::Error),
    /// The unemployment insurance database could not be seeded.
    #[error(transparent)]
    UiDatabase(#[from] ui::SeedUiDatabaseError),
    /// The gateway did not start.
    #[error(transparent)]
    Gateway(#[from] StartGatewayError),
    /// The citizens' agency keys could not be written to the identity crosswalk.
    #[error("cannot link the demo citizens in the identity crosswalk: {0}")]
    Crosswalk(#[from] CrosswalkError),
    /// The demo's state directory could not be prepared.
    #[error("cannot prepare the demo's state directory: {0}")]
    State(#[source] std::io::Error),
    /// The persona tokens could not be minted.
    #[error("cannot mint the demo's tokens: {0}")]
    Tokens(String),
    /// `--events-per-minute` is out of range.
    #[error("--events-per-minute must be at most {max}, not {got}")]
    EventsPerMinute {
        /// The fastest rate the simulator runs at.
        max: u32,
        /// What was asked for.
        got: u32,
    },
    /// The registry's webhook secret is not a Standard Webhooks secret.
    #[error("REGISTRY_WEBHOOK_SECRET: {0}")]
    WebhookSecret(#[source] crate::events::signature::SignatureError),
    /// The change simulator could not start (its database connection, its HTTP client).
    #[error("cannot start the change simulator: {0}")]
    Simulator(String),
}

/// Writes every citizen's agency keys (TIN, licence number, claimant id) to the identity
/// crosswalk, so connectors with an `identifier` can be called for them. The demo, the
/// integration tests and the benchmark all start from this.
pub async fn link_population(
    crosswalk: &Crosswalk,
    population: &Population,
) -> Result<usize, CrosswalkError> {
    let mut links = Vec::new();
    for (citizen, kind, key) in population.links() {
        links.push((CitizenId::parse(citizen)?, AnyKey::parse(kind, key)?));
    }
    crosswalk.link_many(links, "demo").await
}

/// A running demo: the agencies and the gateway in front of them.
#[derive(Debug)]
pub struct RunningDemo {
    /// The gateway.
    pub gateway: RunningGateway,
    /// The simulated agencies.
    pub agencies: SimulatedAgencies,
    /// The seeded unemployment insurance database.
    pub ui_database: UiDatabase,
    /// Signed tokens for the demo's citizen, agency client and operator; `None` when the
    /// configuration has no local development issuer.
    pub personas: Option<Personas>,
    /// Where the gateway's database and audit checkpoints are.
    pub state: DemoState,
    /// The secret the registry signs its webhooks with, as the gateway sees it in
    /// `${REGISTRY_WEBHOOK_SECRET}`.
    pub registry_webhook_secret: WebhookSecret,
    /// The change simulator, when `events_per_minute` is above 0.
    pub simulator: Option<changes::RunningSimulator>,
    /// The agencies' webhook inboxes, subscribed to life events.
    pub inboxes: Option<inbox::AgencyInboxes>,
}

/// The unemployment insurance database behind a running demo.
pub struct UiDatabase {
    /// The URL the gateway reads it with (`mode=ro` for SQLite). It may hold
    /// a password: show [`UiDatabase::display_url`] instead.
    pub url: String,
    /// What seeding wrote.
    pub seeded: ui::SeedSummary,
    /// The URL the agency itself writes with (`mode=rwc` for SQLite); may hold a password.
    write_url: String,
    /// Keeps the default SQLite file's directory until the demo ends.
    _directory: Option<tempfile::TempDir>,
}

impl UiDatabase {
    /// The URL with any password hidden, for the terminal.
    pub fn display_url(&self) -> String {
        ui::redacted_url(&self.url)
    }
}

impl fmt::Debug for UiDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiDatabase")
            .field("url", &self.display_url())
            .field("seeded", &self.seeded)
            .finish_non_exhaustive()
    }
}

impl RunningDemo {
    /// Where a browser opens GraphiQL.
    pub fn graphiql_url(&self) -> String {
        format!("{}/graphql", self.gateway.url())
    }

    /// Stops the change simulator first (so no webhook reaches a stopped gateway), then the
    /// gateway (so no request reaches a stopped agency), then the agencies, then lets go of
    /// the unemployment insurance database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        if let Some(simulator) = self.simulator {
            simulator.shutdown().await;
        }
        let result = self.gateway.shutdown().await;
        if let Some(inboxes) = self.inboxes {
            inboxes.shutdown();
        }
        self.agencies.shutdown().await;
        // Last, so no backend call can find the database gone; removes a temporary SQLite file.
        drop(self.ui_database);
        result
    }
}

/// Starts the agencies on loopback, seeds the unemployment insurance
/// database, and starts the gateway configured by the shipped files, with
/// the backends' addresses passed in as `${REGISTRY_URL}`, `${TAX_URL}`,
/// `${DMV_URL}` and `${UI_DATABASE_URL}`, the registry's webhook secret as
/// `${REGISTRY_WEBHOOK_SECRET}`, and an in-memory store. With
/// `events_per_minute` above 0, the change simulator then starts changing
/// the agencies' data and sends the registry's webhooks to the gateway.
pub async fn start(options: &DemoOptions) -> Result<RunningDemo, StartDemoError> {
    if options.citizens == 0 || options.citizens > data::MAX_POPULATION {
        return Err(StartDemoError::Citizens {
            max: data::MAX_POPULATION,
            got: options.citizens,
        });
    }
    if options.events_per_minute > changes::MAX_EVENTS_PER_MINUTE {
        return Err(StartDemoError::EventsPerMinute {
            max: changes::MAX_EVENTS_PER_MINUTE,
            got: options.events_per_minute,
        });
    }
    let from_env = Vars::from_env();
    let registry_webhook_secret = match options
        .registry_webhook_secret
        .clone()
        .or_else(|| from_env.get("REGISTRY_WEBHOOK_SECRET"))
        .filter(|secret| !secret.trim().is_empty())
    {
        Some(secret) => WebhookSecret::parse(&secret),
        None => WebhookSecret::generate(),
    }
    .map_err(StartDemoError::WebhookSecret)?;
    let population = Arc::new(Population::generate(options.citizens, options.seed));
    let agencies = SimulatedAgencies::start(Arc::clone(&population))
        .await
        .map_err(StartDemoError::Agencies)?;
    let ui_database = match seed_ui_database(options, &population).await {
        Ok(database) => database,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error);
        }
    };
    let state = match DemoState::prepare(options) {
        Ok(state) => state,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error);
        }
    };
    let vars = from_env
        .set("REGISTRY_URL", &agencies.registry_url)
        .set("REGISTRY_WEBHOOK_SECRET", registry_webhook_secret.expose())
        .set("TAX_URL", &agencies.tax_url)
        .set("DMV_URL", &agencies.dmv_url)
        .set("BENEFITS_MAINFRAME_ADDR", &agencies.benefits_addr)
        .set(
            "BENEFITS_EXTRACT_DIR",
            agencies.benefits_extract_dir.display().to_string(),
        )
        .set("UI_DATABASE_URL", &ui_database.url)
        .set("CIVICGRAPH_STORAGE_URL", &state.storage_url)
        .set(
            "CIVICGRAPH_AUDIT_CHECKPOINTS",
            state.checkpoints.display().to_string(),
        )
        .set("CIVICGRAPH_AUDIT_CHECKPOINT_S", "5")
        .set(
            "CIVICGRAPH_SIGNING_KEY",
            state.signing_key.display().to_string(),
        )
        .set("CIVICGRAPH_DEV_KEY", state.dev_key.display().to_string())
        // The local development issuer: the personas below are real signed tokens.
        .set("CIVICGRAPH_DEV_TOKENS", "true")
        // Lets GraphiQL users also act with a plain header.
        .set("CIVICGRAPH_DEMO_HEADERS", "true")
        // The agencies' webhook inboxes are on loopback.
        .set("CIVICGRAPH_EVENTS_ALLOW_PRIVATE", "true");
    let vars = match &options.graphiql_assets_dir {
        Some(dir) => vars.set("CIVICGRAPH_GRAPHIQL_ASSETS", dir.display().to_string()),
        None => vars,
    };
    let gateway = match Gateway::load(&options.config, &vars).await {
        Ok(gateway) => gateway,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error.into());
        }
    };
    let personas = match Personas::mint(&options.config, &vars, &population) {
        Ok(personas) => personas,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error);
        }
    };
    let gateway = match &personas {
        Some(personas) => gateway.with_playground(&personas.tabs()),
        None => gateway,
    };
    if let Err(error) = link_population(&gateway.crosswalk(), &population).await {
        agencies.shutdown().await;
        return Err(error.into());
    }
    let inboxes = match inbox::AgencyInboxes::start().await {
        Ok(inboxes) => match inboxes.subscribe(&gateway.outbox()).await {
            Ok(()) => Some(inboxes),
            Err(error) => {
                tracing::warn!(%error, "The demo's agency inboxes could not subscribe.");
                inboxes.shutdown();
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "The demo's agency inboxes could not start.");
            None
        }
    };
    let bound = match gateway
        .with_listen_addr(SocketAddr::from(([127, 0, 0, 1], options.port)))
        .bind()
        .await
    {
        Ok(bound) => bound,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error.into());
        }
    };
    let gateway = bound.spawn();
    let simulator = if options.events_per_minute > 0 {
        match start_simulator(
            options,
            &agencies,
            &ui_database,
            &gateway.url(),
            &registry_webhook_secret,
        )
        .await
        {
            Ok(simulator) => Some(simulator),
            Err(error) => {
                // Best effort: the start failed anyway, and the error says why.
                let _ = gateway.shutdown().await;
                agencies.shutdown().await;
                return Err(error);
            }
        }
    } else {
        None
    };
    Ok(RunningDemo {
        gateway,
        agencies,
        ui_database,
        personas,
        state,
        registry_webhook_secret,
        simulator,
        inboxes,
    })
}

/// The change simulator over the running agencies, writing claims to the demo's database and
/// posting the registry's webhooks to the gateway at `gateway_url`.
async fn start_simulator(
    options: &DemoOptions,
    agencies: &SimulatedAgencies,
    ui_database: &UiDatabase,
    gateway_url: &str,
    secret: &WebhookSecret,
) -> Result<changes::RunningSimulator, StartDemoError> {
    let writer = ui::UiWriter::connect(&ui_database.write_url, &ui::UiTables::default())
        .await
        .map_err(|error| StartDemoError::Simulator(error.to_string()))?;
    let webhook = changes::RegistryWebhook::new(
        format!("{}/events/registry", gateway_url.trim_end_matches('/')),
        secret.clone(),
        std::time::Duration::from_millis(500),
    )
    .map_err(|error| StartDemoError::Simulator(error.to_string()))?;
    let simulator = changes::ChangeSimulator::new(
        Arc::clone(&agencies.registry),
        Some(writer),
        Some(webhook),
        options.seed,
    );
    Ok(simulator.spawn(options.events_per_minute))
}

/// Where the demo keeps its gateway database and audit checkpoints: files, not memory, so
/// `civicgraph audit verify` can check the demo's audit trail from another terminal.
#[derive(Debug, Clone)]
pub struct DemoState {
    /// The directory (emptied of the previous run's files at start).
    pub dir: PathBuf,
    /// `sqlite://…/gateway.db?mode=rwc`.
    pub storage_url: String,
    /// The audit checkpoint file.
    pub checkpoints: PathBuf,
    /// The key signing receipts and checkpoints: `.civicgraph/` beside the configuration (so
    /// `civicgraph consent verify` finds it), or inside an explicit `state_dir`.
    pub signing_key: PathBuf,
    /// The local development issuer's key, placed like `signing_key` (so tokens minted by
    /// `civicgraph token` in another terminal work against the demo).
    pub dev_key: PathBuf,
}

impl DemoState {
    fn prepare(options: &DemoOptions) -> Result<Self, StartDemoError> {
        let beside_config = options
            .config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join(".civicgraph");
        let (dir, keys) = match &options.state_dir {
            Some(dir) => (dir.clone(), dir.clone()),
            None => (beside_config.join("demo"), beside_config),
        };
        std::fs::create_dir_all(&dir).map_err(StartDemoError::State)?;
        let dir = dir.canonicalize().map_err(StartDemoError::State)?;
        for name in [
            "gateway.db",
            "gateway.db-wal",
            "gateway.db-shm",
            "audit-checkpoints.jsonl",
        ] {
            match std::fs::remove_file(dir.join(name)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StartDemoError::State(error));
                }
                _ => {}
            }
        }
        Ok(Self {
            storage_url: format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
            checkpoints: dir.join("audit-checkpoints.jsonl"),
            signing_key: keys.join("signing-key.pem"),
            dev_key: keys.join("dev-issuer-key.pem"),
            dir,
        })
    }
}

/// The demo's client id for its agency persona.
pub const DEMO_AGENCY_CLIENT: &str = "benefits-eligibility-portal";
/// The purpose the agency persona states.
pub const DEMO_PURPOSE: &str = "benefit-eligibility";

/// One signed token per kind of caller, minted with the local development key.
#[derive(Debug, Clone)]
pub struct Personas {
    /// The citizen the demo acts as.
    pub citizen_id: String,
    /// Their token.
    pub citizen: String,
    /// A benefits-agency client checking eligibility.
    pub agency: String,
    /// A gateway operator.
    pub operator: String,
}

impl Personas {
    fn mint(
        config: &std::path::Path,
        vars: &Vars,
        population: &Population,
    ) -> Result<Option<Self>, StartDemoError> {
        use crate::auth::dev_tokens::{MintError, Persona, dev_issuer, mint};
        let (gateway, root) = crate::config::load_gateway_config(config, vars)
            .map_err(|e| StartDemoError::Tokens(e.to_string()))?;
        match dev_issuer(&gateway) {
            Err(MintError::NoDevIssuer) => return Ok(None),
            Err(error) => return Err(StartDemoError::Tokens(error.to_string())),
            Ok(_) => {}
        }
        let citizen_id = population
            .people()
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_else(|| "C0000001".to_string());
        let citizen =
            CitizenId::parse(&citizen_id).map_err(|e| StartDemoError::Tokens(e.to_string()))?;
        let now = chrono::Utc::now();
        let ttl = chrono::Duration::hours(12);
        let token = |persona: &Persona| {
            mint(&gateway, &root, persona, now, ttl)
                .map_err(|e| StartDemoError::Tokens(e.to_string()))
        };
        let scopes = [
            "citizen:lookup",
            "registry:read",
            "tax:read",
            "dmv:read",
            "ui:read",
            "benefits:read",
        ];
        Ok(Some(Self {
            citizen: token(&Persona::Citizen(citizen))?,
            agency: token(&Persona::Agency {
                client_id: DEMO_AGENCY_CLIENT.to_string(),
                agency: "benefits".to_string(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                purpose: DEMO_PURPOSE.to_string(),
            })?,
            operator: token(&Persona::Operator {
                name: "demo-operator".to_string(),
            })?,
            citizen_id,
        }))
    }

    /// GraphiQL tabs: the demo's story, one persona per tab.
    pub fn tabs(&self) -> Vec<crate::http::playground::PlaygroundTab> {
        use crate::http::playground::PlaygroundTab;
        let bearer = |token: &str| {
            std::collections::BTreeMap::from([(
                "Authorization".to_string(),
                format!("Bearer {token}"),
            )])
        };
        let id = &self.citizen_id;
        vec![
            PlaygroundTab {
                query: format!("# As citizen {id}: your own record, all of it.\n{FIRST_QUERY}"),
                headers: bearer(&self.citizen),
            },
            PlaygroundTab {
                query: agency_query(id),
                headers: bearer(&self.agency),
            },
            PlaygroundTab {
                query: format!(
                    "# As citizen {id}: let the benefits agency read your licence.\n{GRANT_MUTATION}"
                ),
                headers: bearer(&self.citizen),
            },
            PlaygroundTab {
                query: format!(
                    "# As citizen {id}: who read your data, when and why.\n{ACCESS_LOG_QUERY}"
                ),
                headers: bearer(&self.citizen),
            },
            PlaygroundTab {
                query: format!(
                    "# As an operator: identity links, but no personal data.\n{{\n  citizen(id: \"{id}\") {{\n    id\n    name\n    identityLinks {{ kind key linkedBy }}\n  }}\n}}"
                ),
                headers: bearer(&self.operator),
            },
            PlaygroundTab {
                query: format!(
                    "# As an operator: life events as the agencies' backends change.\n{LIFE_EVENTS_SUBSCRIPTION}"
                ),
                headers: bearer(&self.operator),
            },
            PlaygroundTab {
                query: format!(
                    "# As citizen {id}: what you may be entitled to, and the offers life events made you.\n{SERVICES_QUERY}"
                ),
                headers: bearer(&self.citizen),
            },
        ]
    }
}

/// The agency persona's query: a lookup, then personal fields it needs consent for.
pub fn agency_query(citizen_id: &str) -> String {
    format!(
        "# As the benefits agency's eligibility portal (purpose: {DEMO_PURPOSE}).\n# Without the citizen's consent the personal fields are CONSENT_REQUIRED.\n{{\n  citizen(id: \"{citizen_id}\") {{\n    id\n    name\n    driverLicense {{ class status expiresOn }}\n  }}\n}}"
    )
}

/// Life events as they are detected (run it, then wait: the simulated agencies change).
pub const LIFE_EVENTS_SUBSCRIPTION: &str = r#"subscription {
  lifeEvents {
    type
    citizenId
    citizenSequence
    subject { name id }
    recordedAt
  }
}"#;

/// The citizen's suggested services and offers.
pub const SERVICES_QUERY: &str = r#"{
  me {
    suggestedServices { service { name agency { name } } reason }
    serviceOffers { id state service { name } event { type recordedAt } }
  }
}"#;

/// The citizen consents to the demo agency reading their licence.
pub const GRANT_MUTATION: &str = r#"mutation {
  grantConsent(
    grantee: "benefits"
    categories: ["dmv.license"]
    purpose: "benefit-eligibility"
  ) {
    consent { handle status validUntil }
    receipt
  }
}"#;

/// The citizen's data tracker.
pub const ACCESS_LOG_QUERY: &str = r#"{
  me {
    consents { handle grantee { name } categories { description } purpose { description } status }
    accessLog(first: 10) {
      edges { node { at summary decision purpose { code } } }
    }
  }
}"#;

/// Seeds the database named in the options, or else a fresh SQLite file in
/// a temporary directory that the returned value keeps alive.
async fn seed_ui_database(
    options: &DemoOptions,
    population: &Population,
) -> Result<UiDatabase, StartDemoError> {
    match &options.ui_database_url {
        Some(url) => {
            let seeded = ui::seed(url, population).await?;
            Ok(UiDatabase {
                url: ui::read_only_url(url),
                seeded,
                write_url: url.clone(),
                _directory: None,
            })
        }
        None => {
            let directory = tempfile::Builder::new()
                .prefix("civicgraph-demo-ui-")
                .tempdir()
                .map_err(StartDemoError::UiDirectory)?;
            let path = directory.path().join("ui.db");
            let write_url = ui::sqlite_url(&path, "rwc");
            let seeded = ui::seed(&write_url, population).await?;
            Ok(UiDatabase {
                url: ui::sqlite_url(&path, "ro"),
                seeded,
                write_url,
                _directory: Some(directory),
            })
        }
    }
}
