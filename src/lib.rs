//! CivicGraph: a GraphQL gateway that joins legacy agency systems into one citizen graph.
//!
//! # Layout
//!
//! Modules in the order a request meets them; data flows one way, down this list.
//!
//! - [`http`]: axum router — `/graphql` (GraphQL-over-HTTP, and subscriptions over WebSocket),
//!   GraphiQL, health, metrics, request ids, and `/events/{connector}` for inbound webhooks;
//!   the edge before them: listener limits, CSRF, CORS, security headers.
//! - [`auth`]: who is asking — the request's `Principal`.
//! - [`graph`]: `schema/*.graphql` + bindings → async-graphql dynamic schema and resolvers.
//! - [`identity`]: the crosswalk of citizen id ↔ each agency's key (one newtype per key kind),
//!   which resolvers consult before calling an agency.
//! - [`consent`]: the consent ledger (who may read which categories of a citizen's data, for
//!   what purpose, until when) and the signed receipts citizens keep of each change.
//! - [`connectors`]: the `Connector` trait and its kinds (`rest`, `soap`, `sql`), called with
//!   plain JSON.
//! - [`audit`]: the append-only, hash-chained record of every protected read, its signed
//!   checkpoints and `civicgraph audit verify`; citizens read their own records from it.
//! - [`store`]: the gateway's own database (SQLite, PostgreSQL) and its migrations.
//!
//! Beside the request path, [`events`] turns backend changes into life events: change sources
//! → rules → the outbox in the store → signed webhooks, NATS JetStream, the subscription feed,
//! and proactive service offers.
//!
//! Around them:
//!
//! - [`config`]: `civicgraph.toml`, `connectors/*.toml`, `${VAR}` interpolation, diagnostics
//!   with `file:line:column`.
//! - [`server`]: load → check → bind → serve → graceful shutdown.
//! - [`reload`]: hot reload on file changes or SIGHUP — check, then swap the served graph.
//! - [`error`]: the stable `extensions.code` values.
//! - [`quota`]: per-caller request rates, cost budgets, the distinct-citizen cap, load shedding.
//! - [`metrics`]: the Prometheus (OpenMetrics text) metrics the shield and the HTTP layer record.
//! - [`telemetry`]: text or JSON logs, OpenTelemetry spans exported over OTLP, `traceparent`.
//! - [`cache_tier`]: the optional shared Redis tier under the shield's in-memory cache.
//! - [`signing`]: the gateway's Ed25519 keys and the JWS it signs (receipts, checkpoints).
//! - `fuzzing` (hidden): the few entry points the cargo-fuzz targets in `fuzz/` need.
//! - [`demo`]: simulated agencies with synthetic citizens for the demo, tests and benchmarks.

pub mod audit;
pub mod auth;
pub mod cache_tier;
pub mod config;
pub mod connectors;
pub mod consent;
pub mod demo;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod quota;
pub mod reload;
pub mod server;
pub mod shield;
pub mod signing;
pub mod store;
pub mod telemetry;
