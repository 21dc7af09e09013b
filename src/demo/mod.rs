//! Simulated agency backends.
//!
//! CivicGraph exists to join legacy agency systems, but nobody can run the
//! real person registry, tax agency, motor vehicle agency or unemployment
//! insurance on a laptop or in CI. This module stands in for them: a
//! deterministic synthetic population ([`data`]) served by small REST
//! servers that mimic the registry's and the tax agency's APIs
//! ([`agencies`]), a SOAP 1.1 service for the motor vehicle agency
//! ([`dmv`]), and a real SQL database for unemployment insurance ([`ui`]).
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
pub mod data;
pub mod dmv;
pub mod mainframe_server;
pub mod ui;

pub use agencies::SimulatedAgencies;
pub use data::Population;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Vars;
use crate::identity::{AnyKey, CitizenId, Crosswalk, CrosswalkError};
use crate::server::{Gateway, RunningGateway, StartGatewayError};

/// The query the demo prints for a newcomer to paste into GraphiQL.
pub const FIRST_QUERY: &str = r#"{
  citizen(id: "C0000001") {
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
}

/// The unemployment insurance database behind a running demo.
pub struct UiDatabase {
    /// The URL the gateway reads it with (`mode=ro` for SQLite). It may hold
    /// a password: show [`UiDatabase::display_url`] instead.
    pub url: String,
    /// What seeding wrote.
    pub seeded: ui::SeedSummary,
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

    /// Stops the gateway first (so no request reaches a stopped agency), then the agencies,
    /// then lets go of the unemployment insurance database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.gateway.shutdown().await;
        self.agencies.shutdown().await;
        // Last, so no backend call can find the database gone; removes a temporary SQLite file.
        drop(self.ui_database);
        result
    }
}

/// Starts the agencies on loopback, seeds the unemployment insurance
/// database, and starts the gateway configured by the shipped files, with
/// the backends' addresses passed in as `${REGISTRY_URL}`, `${TAX_URL}`,
/// `${DMV_URL}` and `${UI_DATABASE_URL}`, and an in-memory store.
pub async fn start(options: &DemoOptions) -> Result<RunningDemo, StartDemoError> {
    if options.citizens == 0 || options.citizens > data::MAX_POPULATION {
        return Err(StartDemoError::Citizens {
            max: data::MAX_POPULATION,
            got: options.citizens,
        });
    }
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
    let vars = Vars::from_env()
        .set("REGISTRY_URL", &agencies.registry_url)
        .set("TAX_URL", &agencies.tax_url)
        .set("DMV_URL", &agencies.dmv_url)
        .set("BENEFITS_MAINFRAME_ADDR", &agencies.benefits_addr)
        .set(
            "BENEFITS_EXTRACT_DIR",
            agencies.benefits_extract_dir.display().to_string(),
        )
        .set("UI_DATABASE_URL", &ui_database.url)
        .set("CIVICGRAPH_STORAGE_URL", "sqlite::memory:")
        // Lets GraphiQL users try `me` and the operator mutations with a header.
        .set("CIVICGRAPH_DEMO_HEADERS", "true");
    let gateway = match Gateway::load(&options.config, &vars).await {
        Ok(gateway) => gateway,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error.into());
        }
    };
    if let Err(error) = link_population(&gateway.crosswalk(), &population).await {
        agencies.shutdown().await;
        return Err(error.into());
    }
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
    Ok(RunningDemo {
        gateway: bound.spawn(),
        agencies,
        ui_database,
    })
}

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
                _directory: None,
            })
        }
        None => {
            let directory = tempfile::Builder::new()
                .prefix("civicgraph-demo-ui-")
                .tempdir()
                .map_err(StartDemoError::UiDirectory)?;
            let path = directory.path().join("ui.db");
            let seeded = ui::seed(&ui::sqlite_url(&path, "rwc"), population).await?;
            Ok(UiDatabase {
                url: ui::sqlite_url(&path, "ro"),
                seeded,
                _directory: Some(directory),
            })
        }
    }
}
