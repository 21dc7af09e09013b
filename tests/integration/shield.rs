//! The shield through the whole gateway: HTTP in, a real backend on loopback behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{TestGateway, TestGatewayBuilder};

/// A tax agency that answers each TIN with its own account, counting calls; `fail` makes it
/// answer 503, `delay` slows it down.
#[derive(Debug, Default)]
struct Tax {
    calls: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    delay_ms: std::sync::atomic::AtomicU64,
}

struct RunningTax {
    url: String,
    state: Arc<Tax>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningTax {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningTax {
    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

async fn tax() -> RunningTax {
    async fn account(
        State(tax): State<Arc<Tax>>,
        Path(tin): Path<String>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        tax.calls.fetch_add(1, Ordering::SeqCst);
        let delay = tax.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if tax.fail.load(Ordering::SeqCst) {
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        axum::Json(json!({"account": {"tin": tin, "balance": "10.00"}})).into_response()
    }
    async fn person(Path(id): Path<String>) -> axum::Json<Value> {
        axum::Json(json!({"person": {"id": id, "tin": format!("T-{id}")}}))
    }
    let state = Arc::new(Tax::default());
    let router = Router::new()
        .route("/v1/taxpayers/{tin}/account", get(account))
        .route("/v1/people/{id}", get(person))
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    RunningTax { url, state, task }
}

const SDL: &str = r#"scalar DateTime

type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
}

type Citizen {
  id: ID!
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}

type TaxAccount {
  tin: String!
  balance: String
}
"#;

fn project(backend: &RunningTax, tax_shield: &str) -> TestGatewayBuilder {
    project_with_timeout(backend, tax_shield, 400)
}

/// The test project with the tax backend's `timeout_ms`: tests about keys rather than timing
/// use a long one, so a loaded machine cannot turn their answers into timeouts.
fn project_with_timeout(
    backend: &RunningTax,
    tax_shield: &str,
    timeout_ms: u64,
) -> TestGatewayBuilder {
    TestGateway::builder()
        .gateway_toml(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"sqlite::memory:\"\n\n[auth]\ndemo_headers = true\n",
        )
        .schema("citizen.graphql", SDL)
        .schema("identity.graphql", include_str!("../../schema/identity.graphql"))
        .schema("shield.graphql", include_str!("../../schema/shield.graphql"))
        .connector(
            "registry.toml",
            "name = \"registry\"\nkind = \"rest\"\nbase_url = \"${URL}\"\n\n[operations.person]\npath = \"/v1/people/{id}\"\nselect = \"/person\"\n",
        )
        .connector(
            "tax.toml",
            &format!(
                "name = \"tax\"\nkind = \"rest\"\nbase_url = \"${{URL}}\"\ntimeout_ms = {timeout_ms}\n{tax_shield}\n\n[operations.account]\npath = \"/v1/taxpayers/{{tin}}/account\"\nselect = \"/account\"\n"
            ),
        )
        .var("URL", &backend.url)
}

const CACHED: &str =
    "cache = { ttl_s = 1, serve_stale_on_error_s = 600 }\nretry = { attempts = 1 }";

#[tokio::test]
async fn answers_are_cached_and_served_stale_marked_when_the_backend_fails() {
    let backend = tax().await;
    let gateway = project(&backend, CACHED).build().await;
    let query = r#"{ citizen(id: "C0000001") { taxAccount { tin } } }"#;
    let first = gateway.post(query).await;
    assert_eq!(
        first.body["data"]["citizen"]["taxAccount"]["tin"],
        json!("T-C0000001")
    );
    gateway.post(query).await;
    assert_eq!(backend.calls(), 1, "the second read came from the cache");
    assert!(
        first.body.get("extensions").is_none(),
        "a live answer is not marked: {}",
        first.text
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    backend.state.fail.store(true, Ordering::SeqCst);
    let stale = gateway.post(query).await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(
        stale.body["data"]["citizen"]["taxAccount"]["tin"],
        json!("T-C0000001")
    );
    let freshness = &stale.body["extensions"]["freshness"]["tax"];
    assert_eq!(freshness["stale"], json!(true), "{}", stale.text);
    assert!(freshness["ageSeconds"].as_u64().unwrap() >= 1);
    assert_eq!(freshness["reason"], json!("BACKEND_UNAVAILABLE"));
    assert!(freshness["fetchedAt"].is_string());
    assert_eq!(backend.calls(), 2, "the backend was asked first");

    // Another citizen has no stale copy: an error, not someone else's account.
    let other = gateway
        .post(r#"{ citizen(id: "C0000002") { taxAccount { tin } } }"#)
        .await;
    assert_eq!(other.body["data"]["citizen"]["taxAccount"], Value::Null);
    assert_eq!(
        other.body["errors"][0]["extensions"]["code"],
        json!("BACKEND_UNAVAILABLE")
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_citizens_data_is_never_served_for_another() {
    let backend = tax().await;
    backend.state.delay_ms.store(20, Ordering::SeqCst);
    let gateway = project_with_timeout(&backend, "cache = { ttl_s = 60 }", 10_000)
        .build()
        .await;
    let asks = (0..200).map(|n| {
        let citizen = format!("C{:07}", n % 13 + 1);
        let gateway = &gateway;
        async move {
            let answer = gateway
                .post_as_citizen(&citizen, "{ me { id taxAccount { tin } } }")
                .await;
            (citizen, answer)
        }
    });
    for (citizen, answer) in futures::future::join_all(asks).await {
        assert_eq!(
            answer.body["data"]["me"]["id"],
            json!(citizen),
            "{}",
            answer.text
        );
        assert_eq!(
            answer.body["data"]["me"]["taxAccount"]["tin"],
            json!(format!("T-{citizen}")),
            "{}",
            answer.text
        );
    }
    assert!(
        backend.calls() <= 13,
        "one load per citizen: {}",
        backend.calls()
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_bulkhead_sheds_with_503_and_retry_after() {
    let backend = tax().await;
    backend.state.delay_ms.store(2_000, Ordering::SeqCst);
    let gateway = project(
        &backend,
        "max_concurrency = 1\nqueue_timeout_ms = 20\nretry = { attempts = 1 }",
    )
    .build()
    .await;
    let ask = |id: &'static str| {
        let gateway = &gateway;
        async move {
            gateway
                .post(&format!(
                    r#"{{ citizen(id: "{id}") {{ id taxAccount {{ tin }} }} }}"#
                ))
                .await
        }
    };
    let (slow, shed) = tokio::join!(ask("C0000001"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        (ask("C0000002").await, started.elapsed())
    });
    let (shed, took) = shed;
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(shed.header("retry-after"), "1");
    assert!(took < Duration::from_millis(300), "shed fast: {took:?}");
    assert_eq!(
        shed.body["data"]["citizen"]["id"],
        json!("C0000002"),
        "the rest still arrives"
    );
    assert_eq!(
        shed.body["errors"][0]["extensions"]["code"],
        json!("BACKEND_BUSY")
    );
    assert_eq!(shed.body["errors"][0]["extensions"]["retryAfter"], json!(1));
    // The slow one timed out at the connector's deadline.
    assert_eq!(
        slow.body["errors"][0]["extensions"]["code"],
        json!("BACKEND_TIMEOUT"),
        "{}",
        slow.text
    );

    let metrics = gateway.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .content_type()
            .starts_with("application/openmetrics-text"),
        "{}",
        metrics.content_type()
    );
    assert!(
        metrics
            .text
            .contains("civicgraph_backend_rejected_busy_total{connector=\"tax\"} 1"),
        "{}",
        metrics.text
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn operators_invalidate_a_backends_cached_answers_and_no_one_else_may() {
    let backend = tax().await;
    let gateway = project(&backend, "cache = { ttl_s = 600 }").build().await;
    let query = r#"{ citizen(id: "C0000001") { taxAccount { tin } } }"#;
    gateway.post(query).await;
    gateway.post(query).await;
    assert_eq!(backend.calls(), 1);

    let invalidate = r#"mutation { invalidateCache(connector: "tax", operation: "account") { connector operation dropped } }"#;
    let refused = gateway.post_as_citizen("C0000001", invalidate).await;
    assert_eq!(
        refused.body["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN"),
        "{}",
        refused.text
    );
    let done = gateway.post_as_operator("ops", invalidate).await;
    assert_eq!(
        done.body["data"]["invalidateCache"],
        json!({"connector": "tax", "operation": "account", "dropped": 1}),
        "{}",
        done.text
    );
    gateway.post(query).await;
    assert_eq!(backend.calls(), 2, "the next read went to the backend");

    for (bad, expected) in [
        (
            r#"mutation { invalidateCache(connector: "nope") { dropped } }"#,
            "no backend connector `nope`",
        ),
        (
            r#"mutation { invalidateCache(connector: "tax", operation: "nope") { dropped } }"#,
            "has no operation `nope`",
        ),
    ] {
        let answer = gateway.post_as_operator("ops", bad).await;
        assert_eq!(
            answer.body["errors"][0]["extensions"]["code"],
            json!("BAD_USER_INPUT"),
            "{}",
            answer.text
        );
        assert!(answer.text.contains(expected), "{}", answer.text);
    }
    gateway.shutdown().await.unwrap();
}

/// `civicgraph_backend_calls_total` per `connector/operation`, read from `/metrics`.
async fn backend_calls(
    gateway: &crate::support::GatewayClient,
) -> std::collections::BTreeMap<String, f64> {
    let metrics = gateway.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let mut calls = std::collections::BTreeMap::new();
    for line in metrics.text.lines() {
        let Some(rest) = line.strip_prefix("civicgraph_backend_calls_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("a sample line");
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        *calls
            .entry(format!("{}/{}", label("connector"), label("operation")))
            .or_insert(0.0) += value.trim().parse::<f64>().expect("a number");
    }
    calls
}

/// The demo with 100 citizens, each of whom consented to the benefits agency reading their
/// tax account, licence and unemployment claims; and that agency's token.
async fn hundred_citizens() -> (crate::support::DemoStack, String) {
    use civicgraph::consent::NewConsent;
    use civicgraph::identity::CitizenId;

    let demo = crate::support::start_demo(100).await;
    let now = chrono::Utc::now();
    for person in demo.population.people() {
        demo.ledger
            .grant(
                NewConsent {
                    citizen: CitizenId::parse(&person.id).unwrap(),
                    grantee: "benefits".into(),
                    categories: ["tax.account", "dmv.license", "ui.claims"]
                        .map(String::from)
                        .into_iter()
                        .collect(),
                    purpose: "benefit-eligibility".into(),
                    valid_from: now,
                    valid_until: now + chrono::Duration::days(30),
                },
                now,
            )
            .await
            .expect("a consent");
    }
    let token = demo.agency_token(
        "benefits",
        &[
            "citizen:list",
            "tax:read",
            "dmv:read",
            "ui:read",
            "benefits:read",
        ],
        "benefit-eligibility",
    );
    (demo, token)
}

/// Runs `query` and returns the backend calls it made, per `connector/operation`.
async fn calls_of(
    demo: &crate::support::DemoStack,
    token: &str,
    query: &str,
) -> (Value, std::collections::BTreeMap<String, f64>) {
    let before = backend_calls(demo).await;
    let answer = demo
        .post_with(
            json!({ "query": query }),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    let after = backend_calls(demo).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.body.get("errors").is_none(), "{}", answer.text);
    let made = after
        .into_iter()
        .map(|(operation, count)| {
            let earlier = before.get(&operation).copied().unwrap_or(0.0);
            (operation, count - earlier)
        })
        .filter(|(_, count)| *count > 0.0)
        .collect();
    (answer.body, made)
}

#[tokio::test]
async fn a_list_of_a_hundred_citizens_costs_one_call_per_batch_of_each_operation() {
    let (demo, token) = hundred_citizens().await;
    // Every operation's batch form takes up to 100 keys.
    for (field, operation, max) in [
        ("taxAccount { tin }", "tax/account", 100.0),
        ("driverLicense { number }", "dmv/license", 100.0),
        ("unemploymentClaims { claimId }", "ui/claims", 100.0),
        ("benefitCases { program }", "benefits/cases", 100.0),
    ] {
        let query = format!("{{ citizens(first: 100) {{ edges {{ node {{ id {field} }} }} }} }}");
        let (body, made) = calls_of(&demo, &token, &query).await;
        let edges = body["data"]["citizens"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 100);
        let name = field.split_whitespace().next().unwrap();
        let with = edges.iter().filter(|e| !e["node"][name].is_null()).count() as f64;
        assert!(with > 0.0, "some citizens have {name}");
        assert_eq!(
            made.get(operation).copied(),
            Some((with / max).ceil()),
            "{operation}: one call per {max} keys for {with} citizens: {made:?}"
        );
        assert_eq!(made.get("registry/people").copied(), Some(1.0), "{made:?}");
        assert_eq!(made.len(), 2, "no other call: {made:?}");
    }
}

#[tokio::test]
async fn four_agencies_across_a_hundred_citizens_cost_one_batch_per_operation() {
    let (demo, token) = hundred_citizens().await;
    let query = "{ citizens(first: 100) { edges { node { id taxAccount { tin } driverLicense { number } unemploymentClaims { claimId } benefitCases { program } } } } }";
    let (body, made) = calls_of(&demo, &token, query).await;
    let edges = body["data"]["citizens"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 100);
    // One batch per operation: 100 citizens × 4 agencies cost 4 calls (and the page).
    let with = |field: &str| {
        edges
            .iter()
            .filter(|edge| !edge["node"][field].is_null())
            .count() as f64
    };
    for (field, operation, max) in [
        ("taxAccount", "tax/account", 100.0),
        ("driverLicense", "dmv/license", 100.0),
        ("unemploymentClaims", "ui/claims", 100.0),
        ("benefitCases", "benefits/cases", 100.0),
    ] {
        assert_eq!(
            made.get(operation).copied(),
            Some((with(field) / max).ceil()),
            "{operation}: {made:?}"
        );
    }
    assert_eq!(made.get("registry/people").copied(), Some(1.0), "{made:?}");
    assert_eq!(made.len(), 5, "no other call: {made:?}");
}
