//! Simulated agency backends.
//!
//! CivicGraph exists to join legacy agency systems, but nobody can run the
//! real person registry or tax agency on a laptop or in CI. This module
//! stands in for them: a deterministic synthetic population ([`data`]) served
//! by small REST servers that mimic the agencies' APIs ([`agencies`]).
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
pub mod data;

pub use agencies::SimulatedAgencies;
pub use data::Population;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Vars;
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
    /// The gateway did not start.
    #[error(transparent)]
    Gateway(#[from] StartGatewayError),
}

/// A running demo: the agencies and the gateway in front of them.
#[derive(Debug)]
pub struct RunningDemo {
    /// The gateway.
    pub gateway: RunningGateway,
    /// The simulated agencies.
    pub agencies: SimulatedAgencies,
}

impl RunningDemo {
    /// Where a browser opens GraphiQL.
    pub fn graphiql_url(&self) -> String {
        format!("{}/graphql", self.gateway.url())
    }

    /// Stops the gateway first (so no request reaches a stopped agency), then the agencies.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let result = self.gateway.shutdown().await;
        self.agencies.shutdown().await;
        result
    }
}

/// Starts the agencies on loopback and the gateway configured by the shipped files, with
/// the agencies' addresses passed in as `${REGISTRY_URL}` / `${TAX_URL}` and an in-memory store.
pub async fn start(options: &DemoOptions) -> Result<RunningDemo, StartDemoError> {
    if options.citizens == 0 || options.citizens > data::MAX_POPULATION {
        return Err(StartDemoError::Citizens {
            max: data::MAX_POPULATION,
            got: options.citizens,
        });
    }
    let population = Arc::new(Population::generate(options.citizens, options.seed));
    let agencies = SimulatedAgencies::start(population)
        .await
        .map_err(StartDemoError::Agencies)?;
    let vars = Vars::from_env()
        .set("REGISTRY_URL", &agencies.registry_url)
        .set("TAX_URL", &agencies.tax_url)
        .set("CIVICGRAPH_STORAGE_URL", "sqlite::memory:");
    let gateway = match Gateway::load(&options.config, &vars).await {
        Ok(gateway) => gateway,
        Err(error) => {
            agencies.shutdown().await;
            return Err(error.into());
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
    Ok(RunningDemo {
        gateway: bound.spawn(),
        agencies,
    })
}
