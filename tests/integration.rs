//! The integration suite: real gateways on `127.0.0.1` ephemeral ports, in front of real
//! (fake or simulated) agency servers, driven over HTTP.
//!
//! One binary, so the crate and its dependencies are linked once.
//!
//! - `support`: `FakeAgency`, `TestGateway`, the demo stack and small helpers.
//! - `end_to_end`: the shipped configuration against the simulated agencies.
//! - `config_errors`: broken projects and the `file:line:column` of every diagnostic.
//! - `backend_faults`: what a client sees when a backend fails, and never sees.
//! - `http_spec`: GraphQL-over-HTTP, the operational endpoints and graceful shutdown.
//! - `process`: the real binary: JSON logs without personal data, SIGTERM.
//! - `soap`: the `soap` connector against a real SOAP server: 1.1/1.2, faults, hostile XML,
//!   WS-Security, and its check-time errors.
//! - `sql`: the `sql` connector against SQLite, PostgreSQL and MariaDB (when configured).
//! - `identity`: the identity crosswalk, operator links, `Query.me`.
//! - `demo_agencies`: the simulated DMV over SOAP 1.1 and the seeded unemployment insurance
//!   database (SQLite, and PostgreSQL / MariaDB when configured).
//! - `tokens`: bearer tokens over HTTP (valid caller, 401 for bad tokens, config errors).
//! - `trust`: tokens → purpose → field policy → consent ledger → audit trail, end to end
//!   (the principal × category × consent matrix, revocation races, the audit store down).
//! - `audit_cli`: `civicgraph audit verify` on an intact and on a tampered audit chain.
//! - `consent_cli`: `civicgraph consent verify` on a real receipt, a tampered one and no key.
//! - `shield`: caching, stale answers, shed load, invalidation and batching through the gateway.
//! - `batch_rest_sql`, `batch_soap_mainframe`: each connector kind's batch form answers every key
//!   exactly as its single call does, in one backend call.
//! - `events`: life events from a change feed or a signed inbound webhook to signed webhooks and
//!   NATS: retries, dead letters and replay, 410, the consent filter, the SSRF guard.
//! - `subscriptions`: `Subscription.lifeEvents` over a real WebSocket: order, type filters, who
//!   sees which events, and sockets authenticated like HTTP requests.
//! - `services`: proactive services on the demo — suggestions read with the caller's rights,
//!   offers made from life events, accepting one tells the providing agency.
//! - `events_world`: a change feed, a webhook receiver and `civicgraph serve` as a child process.
//! - `events_crash`: `kill -9` between detection and delivery, then a restart on the same file.
//! - `bad_inputs`: the rows of the team's bad-input table, as data, against one gateway.
//! - `fuzz_corpus`: the cargo-fuzz targets' checks over their committed seed corpora.
//! - `events_scale`: two instances on one PostgreSQL outbox; a killed one's leases taken over.
//! - `browser`: GraphiQL in headless Chromium, its files served by the gateway (no CDN).
//! - `conformance`: the `graphql-http` audit suite (GraphQL over HTTP) against a running gateway.
//! - `quotas`: request rates and cost budgets (429 + `Retry-After`), the distinct-citizen cap,
//!   load shedding (503), all with zero backend calls for what is refused.
//! - `persisted`: APQ on POST and GET, hash mismatches, the safelist and per-partner manifests.
//! - `edge`: the HTTP edge — CSRF, CORS, security headers, GraphiQL's CSP, header limits,
//!   slowloris, the HTTP/2 CONTINUATION flood, WebSocket origins.
//! - `telemetry`: JSON logs without personal data, `traceparent` to backends, OTLP export,
//!   request metrics.
//! - `scale_out`: three instances on one PostgreSQL, Redis and NATS: revocations heard by
//!   every instance, the shared cache tier and outbox, a SIGKILLed instance losing nothing.
//! - `reload`: hot reload from edited files and SIGHUP; an invalid edit keeps the old graph;
//!   requests in flight finish on the graph they started on.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/end_to_end.rs"]
mod end_to_end;

#[path = "integration/config_errors.rs"]
mod config_errors;

#[path = "integration/backend_faults.rs"]
mod backend_faults;

#[path = "integration/http_spec.rs"]
mod http_spec;

#[path = "integration/process.rs"]
mod process;

#[path = "integration/identity.rs"]
mod identity;

#[path = "integration/sql.rs"]
mod sql;

#[path = "integration/batch_rest_sql.rs"]
mod batch_rest_sql;

#[path = "integration/soap.rs"]
mod soap;

#[path = "integration/demo_agencies.rs"]
mod demo_agencies;

#[path = "integration/mainframe.rs"]
mod mainframe;

#[path = "integration/mainframe_codec.rs"]
mod mainframe_codec;

#[path = "integration/tokens.rs"]
mod tokens;

#[path = "integration/audit_cli.rs"]
mod audit_cli;

#[path = "integration/trust.rs"]
mod trust;

#[path = "integration/consent_cli.rs"]
mod consent_cli;

#[path = "integration/shield.rs"]
mod shield;

#[path = "integration/batch_soap_mainframe.rs"]
mod batch_soap_mainframe;

#[path = "integration/subscriptions.rs"]
mod subscriptions;

/// The cargo-fuzz harness of the record decoder, so the seed corpus runs on every `cargo test`.
#[path = "../fuzz/harness/decode_record.rs"]
mod decode_record_harness;

#[path = "../fuzz/harness/copybook.rs"]
mod copybook_harness;
/// The other cargo-fuzz harnesses, for the same reason; `fuzz_corpus` replays their corpora.
#[path = "../fuzz/harness/graphql_request.rs"]
mod graphql_request_harness;
#[path = "../fuzz/harness/soap_answer.rs"]
mod soap_answer_harness;

#[path = "integration/fuzz_corpus.rs"]
mod fuzz_corpus;

#[path = "integration/bad_inputs.rs"]
mod bad_inputs;

#[path = "integration/events.rs"]
mod events;

#[path = "integration/events_world.rs"]
mod events_world;
#[path = "integration/services.rs"]
mod services;

#[path = "integration/events_crash.rs"]
mod events_crash;

#[path = "integration/events_scale.rs"]
mod events_scale;

#[path = "integration/browser.rs"]
mod browser;

#[path = "integration/conformance.rs"]
mod conformance;
#[path = "integration/quotas.rs"]
mod quotas;

#[path = "integration/edge.rs"]
mod edge;
#[path = "integration/limits.rs"]
mod limits;
#[path = "integration/persisted.rs"]
mod persisted;
#[path = "integration/reload.rs"]
mod reload;
#[path = "integration/scale_out.rs"]
mod scale_out;
#[path = "integration/telemetry.rs"]
mod telemetry;
