//! `[quotas]` over HTTP with signed agency tokens: a client over its request rate gets 429
//! with `Retry-After` and its backends see nothing, an operation costlier than the whole
//! budget is refused outright, the distinct-citizen cap refuses new citizens' fields while
//! already-seen ones stay readable, and load shedding answers 503 at once instead of queueing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use civicgraph::auth::dev_tokens::{Persona, mint};
use civicgraph::config::GatewayConfig;
use serde_json::{Value, json};

use crate::support::{Answer, FakeAgency, Reply, RunningAgency, TestGateway};

const SDL: &str = r#"type Query {
  citizen(id: ID!): Citizen
    @connect(connector: "registry", operation: "person")
    @requiresScopes(scopes: [["citizen:lookup"]])
  notice: Notice @connect(connector: "registry", operation: "notice") @public
  other: Notice @connect(connector: "registry", operation: "notice") @public
  third: Notice @connect(connector: "registry", operation: "notice") @public
}

type Notice { text: String }

type Citizen {
  id: ID!
  license: License
    @connect(connector: "dmv", operation: "license", args: {number: "$parent.license"})
    @consent(category: "dmv.license") @owner(agency: "dmv") @requiresScopes(scopes: [["dmv:read"]])
}

type License { number: String! status: String! }
"#;

const REGISTRY_TOML: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"

[operations.person]
path = "/v1/people/{id}"
select = "/person"

[operations.notice]
path = "/v1/notice"
select = "/notice"
"#;

const DMV_TOML: &str = r#"name = "dmv"
kind = "rest"
base_url = "${DMV_URL}"

[operations.license]
path = "/v1/licenses/{number}"
select = "/license"
"#;

pub(crate) const NOTICE_ROUTE: &str = "/v1/notice";
const LICENSE_ROUTE: &str = "/v1/licenses/{number}";
const PURPOSE: &str = "benefit-eligibility";

/// A gateway with a development token issuer, a fake registry (three citizens and a public
/// notice) and a fake DMV, configured with `extra` (`[quotas]`, `[persisted]`) and `files`
/// written beside `civicgraph.toml`.
pub(crate) struct LimitsWorld {
    pub(crate) gateway: TestGateway,
    pub(crate) registry: RunningAgency,
    pub(crate) dmv: RunningAgency,
    config: GatewayConfig,
    _dir: tempfile::TempDir,
}

impl LimitsWorld {
    pub(crate) async fn start(extra: &str, files: &[(&str, &str)], notice: Reply) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the keys");
        let mut registry = FakeAgency::new().route(NOTICE_ROUTE, notice);
        for n in 1..=3 {
            registry = registry.route(
                &format!("/v1/people/C000000{n}"),
                Reply::json(
                    200,
                    json!({"person": {"id": format!("C000000{n}"), "license": format!("D{n}")}}),
                ),
            );
        }
        let registry = registry.run().await;
        let dmv = FakeAgency::new()
            .route(
                LICENSE_ROUTE,
                Reply::json(200, json!({"license": {"number": "D", "status": "VALID"}})),
            )
            .run()
            .await;
        let keys = dir.path().display();
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:0"

[storage]
url = "sqlite::memory:"

[[auth.issuers]]
name = "local-dev"
issuer = "urn:civicgraph:test"
audience = "civicgraph"
role = "claim"
keys = {{ dev_key = "{keys}/dev-issuer.pem" }}

[trust]
signing_key = "{keys}/signing.pem"

[trust.purposes]
benefit-eligibility = "checking your eligibility for benefits"

[trust.categories]
"dmv.license" = "your driver's licence"

[trust.agencies.dmv]
name = "the Motor Vehicle Agency"
legal_basis = "Motor Vehicle Act §21"

[trust.agencies.benefits]
name = "the Benefits Agency"

{extra}
"#
        );
        let config: GatewayConfig = toml::from_str(&toml).expect("the test configuration parses");
        let mut builder = TestGateway::builder()
            .gateway_toml(&toml)
            .schema("citizen.graphql", SDL)
            .connector("registry.toml", REGISTRY_TOML)
            .connector("dmv.toml", DMV_TOML)
            .var("REGISTRY_URL", &registry.url())
            .var("DMV_URL", &dmv.url());
        for (path, text) in files {
            builder = builder.file(path, text.as_bytes());
        }
        Self {
            gateway: builder.build().await,
            registry,
            dmv,
            config,
            _dir: dir,
        }
    }

    /// A token for the agency client `client_id` of `agency`.
    pub(crate) fn agency_token(&self, client_id: &str, agency: &str, scopes: &[&str]) -> String {
        let persona = Persona::Agency {
            client_id: client_id.to_string(),
            agency: agency.to_string(),
            scopes: scopes
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
            purpose: PURPOSE.to_string(),
        };
        mint(
            &self.config,
            Path::new("/"),
            &persona,
            Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("mint a test token")
    }

    /// `POST /graphql` with `body`, as `token`'s caller (anonymous without one).
    pub(crate) async fn post(&self, token: Option<&str>, body: Value) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        self.gateway.post_with(body, &headers).await
    }

    pub(crate) fn notice_calls(&self) -> usize {
        self.registry.calls(NOTICE_ROUTE)
    }
}

pub(crate) fn notice_reply() -> Reply {
    Reply::json(200, json!({"notice": {"text": "Offices close at noon."}}))
}

pub(crate) fn code(answer: &Answer) -> &str {
    answer.body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

fn metrics_line(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_no_backend_call() {
    let world = LimitsWorld::start(
        "[quotas.agency]\nrequests_per_s = 1\n\n[quotas.clients.\"fast-portal\"]\nrequests_per_s = 100\n",
        &[],
        notice_reply(),
    )
    .await;
    let slow = world.agency_token("slow-portal", "benefits", &[]);
    let query = json!({"query": "{ notice { text } }"});
    let first = world.post(Some(&slow), query.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(world.notice_calls(), 1);

    let refused = world.post(Some(&slow), query.clone()).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(code(&refused), "RATE_LIMITED");
    let retry_after: u64 = refused
        .header("retry-after")
        .parse()
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
    assert!(
        !refused.text.contains("requests_per_s"),
        "no limit values in the message: {}",
        refused.text
    );
    assert_eq!(
        world.notice_calls(),
        1,
        "a refused request calls no backend"
    );

    // Another client has its own bucket, and a larger rate of its own.
    let fast = world.agency_token("fast-portal", "benefits", &[]);
    for _ in 0..3 {
        let answer = world.post(Some(&fast), query.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let metrics = world.gateway.get("/metrics", &[]).await.text;
    assert_eq!(
        metrics_line(
            &metrics,
            "civicgraph_requests_rejected_total{reason=\"rate\"}"
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_operation_costing_more_than_the_whole_budget_is_refused_without_retry_after() {
    let world = LimitsWorld::start(
        "[quotas.anonymous]\ncost_per_s = 1\ncost_burst = 20\n",
        &[],
        notice_reply(),
    )
    .await;
    // The request limits' estimate: each root field calls a backend (10) and selects one
    // field (1), so three cost 33 > 20.
    let answer = world
        .post(
            None,
            json!({"query": "{ notice { text } other { text } third { text } }"}),
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_eq!(code(&answer), "RATE_LIMITED");
    assert_eq!(answer.header("retry-after"), "", "waiting would not help");
    assert_eq!(world.notice_calls(), 0);
    // A cheaper one fits (11 ≤ 20).
    let cheap = world
        .post(None, json!({"query": "{ notice { text } }"}))
        .await;
    assert_eq!(cheap.status, 200, "{}", cheap.text);
}

#[tokio::test]
async fn the_distinct_citizen_cap_refuses_new_citizens_and_keeps_seen_ones() {
    let world = LimitsWorld::start(
        "[quotas.agency]\nmax_distinct_citizens = 2\ncitizen_window_s = 3600\n",
        &[],
        notice_reply(),
    )
    .await;
    let token = world.agency_token("dmv-portal", "dmv", &["citizen:lookup", "dmv:read"]);
    let ask = |id: &str| json!({"query": format!("{{ citizen(id: \"{id}\") {{ id license {{ status }} }} }}")});
    for id in ["C0000001", "C0000002"] {
        let answer = world.post(Some(&token), ask(id)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(
            answer.body["data"]["citizen"]["license"]["status"], "VALID",
            "{}",
            answer.text
        );
    }
    assert_eq!(world.dmv.calls(LICENSE_ROUTE), 2);

    let third = world.post(Some(&token), ask("C0000003")).await;
    assert_eq!(third.status, 200, "partial data: {}", third.text);
    assert_eq!(third.body["data"]["citizen"]["id"], "C0000003");
    assert_eq!(third.body["data"]["citizen"]["license"], Value::Null);
    let error = &third.body["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "RATE_LIMITED",
        "{}",
        third.text
    );
    assert_eq!(error["path"], json!(["citizen", "license"]));
    assert!(error["extensions"]["retryAfter"].as_u64().unwrap_or(0) >= 1);
    assert!(!third.text.contains("C0000001"), "no other citizen named");
    assert_eq!(
        world.dmv.calls(LICENSE_ROUTE),
        2,
        "the refused citizen's license was not fetched"
    );

    // A citizen already seen in the window is still readable.
    let again = world.post(Some(&token), ask("C0000001")).await;
    assert_eq!(again.body["data"]["citizen"]["license"]["status"], "VALID");
    assert_eq!(world.dmv.calls(LICENSE_ROUTE), 3);

    // Another client has its own count.
    let other = world.agency_token("dmv-desk", "dmv", &["citizen:lookup", "dmv:read"]);
    let answer = world.post(Some(&other), ask("C0000003")).await;
    assert_eq!(answer.body["data"]["citizen"]["license"]["status"], "VALID");
    let metrics = world.gateway.get("/metrics", &[]).await.text;
    assert_eq!(
        metrics_line(
            &metrics,
            "civicgraph_requests_rejected_total{reason=\"citizens\"}"
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_at_once_with_503() {
    let world = LimitsWorld::start(
        "[quotas]\nmax_in_flight = 1\noverloaded_retry_after_s = 2\n",
        &[],
        notice_reply().after(Duration::from_millis(1500)),
    )
    .await;
    let client: crate::support::GatewayClient = (*world.gateway).clone();
    let slow = tokio::spawn(async move { client.post("{ notice { text } }").await });
    world.registry.wait_for_calls(NOTICE_ROUTE, 1).await;

    let shed = world
        .post(None, json!({"query": "{ notice { text } }"}))
        .await;
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(code(&shed), "OVERLOADED");
    assert_eq!(shed.header("retry-after"), "2");
    assert_eq!(
        world.notice_calls(),
        1,
        "the shed request called no backend"
    );

    let first = slow.await.expect("the slow request finishes");
    assert_eq!(first.status, 200, "{}", first.text);
    let after = world
        .post(None, json!({"query": "{ notice { text } }"}))
        .await;
    assert_eq!(after.status, 200, "room again once the first finished");
    let metrics = world.gateway.get("/metrics", &[]).await.text;
    assert_eq!(
        metrics_line(
            &metrics,
            "civicgraph_requests_rejected_total{reason=\"overloaded\"}"
        ),
        Some(1),
        "{metrics}"
    );
}
