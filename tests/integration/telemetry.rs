//! Observability end to end: JSON log lines of real requests (request id on each, no token,
//! citizen id, agency key or name), W3C `traceparent` continued to the backends, spans exported
//! over OTLP/HTTP protobuf to a collector on loopback, and the request metrics on `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use civicgraph::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider as _;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::support::{Reply, ada_registry, citizen_project, tax_agency};
use crate::trust::{ADA, Db, PURPOSE, World, agency, citizen};

/// The caller's trace, as a W3C `traceparent` header (sampled).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Log lines written in memory, one `Vec<u8>` for the whole run.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes)
            .expect("log lines are UTF-8")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

/// Every request's span ids, so each line can be matched to a request.
fn request_ids(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|span| span["request_id"].as_str().map(str::to_string))
        .collect()
}

/// The gateway's JSON log lines, with the OpenTelemetry bridge on (as with an OTLP endpoint),
/// for a request of each kind of caller: every line is JSON and names its request, and none
/// carries the bearer token, the citizen id, the agency key the backend is called with, a
/// TIN-like argument or the citizen's name. The purpose is a configured code, and may appear
/// only as the backend call's `purpose` field. The backends hear the caller's trace.
#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_token_or_personal_data() {
    let world = World::start(&Db::Sqlite).await;
    let dmv_token = world.token(&agency("dmv", &["citizen:lookup", "dmv:read"], PURPOSE));
    let citizen_token = world.token(&citizen(ADA));
    let tin = "987654321";

    let captured = Captured::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(civicgraph::telemetry::log_layer(
            LogFormat::Json,
            captured.clone(),
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_subscriber::EnvFilter::new(
            // Connection-level lines (`axum::serve`) come before any request exists.
            "trace,hyper=info,hyper_util=info,h2=info,reqwest=info,sqlx=info,tower=info,axum::serve=info",
        ));
    // The gateway runs on this test's one thread, so a thread-wide subscriber sees it all.
    let guard = tracing::subscriber::set_default(subscriber);

    let mut ids = Vec::new();
    let agency_answer = world
        .ask(
            Some(&dmv_token),
            &format!(r#"{{ citizen(id: "{ADA}") {{ name license {{ number status }} }} }}"#),
            &[("x-purpose", PURPOSE), ("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(
        agency_answer.body["data"]["citizen"]["license"]["status"], "VALID",
        "{}",
        agency_answer.text
    );
    ids.push(agency_answer.header("x-request-id").to_string());
    let me = world
        .ask(Some(&citizen_token), "{ me { name } }", &[])
        .await;
    assert_eq!(me.body["data"]["me"]["name"], "Ada Lovelace", "{}", me.text);
    ids.push(me.header("x-request-id").to_string());
    let by_tin = world
        .ask(
            Some(&dmv_token),
            &format!(r#"{{ citizen(id: "{tin}") {{ name }} }}"#),
            &[("x-purpose", PURPOSE)],
        )
        .await;
    ids.push(by_tin.header("x-request-id").to_string());
    let forged = format!("{citizen_token}x");
    let refused = world.ask(Some(&forged), "{ me { name } }", &[]).await;
    assert_eq!(refused.status, 401);
    ids.push(refused.header("x-request-id").to_string());
    drop(guard);

    let lines = captured.lines();
    let text = lines.join("\n");
    assert!(!lines.is_empty(), "nothing was logged");
    for line in &lines {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
        let named = request_ids(&event);
        assert!(
            named.iter().any(|id| ids.contains(id)),
            "a line without its request id ({ids:?}): {line}"
        );
        let purpose_field = format!("\"purpose\":\"{PURPOSE}\"");
        assert!(
            !line.replace(&purpose_field, "").contains(PURPOSE),
            "the purpose outside a purpose field: {line}"
        );
    }
    for forbidden in [
        dmv_token.as_str(),
        citizen_token.as_str(),
        ADA,        // the citizen id, in the query text and the registry's URL
        "D1234567", // the licence number, the DMV's key in its URL
        tin,
        "Ada",
        "Lovelace",
        "/v1/people",
        "/v1/licenses",
    ] {
        assert!(
            !text.contains(forbidden),
            "`{forbidden}` appears in the logs:\n{text}"
        );
    }
    // The agency's request continued the caller's trace, and each backend heard it.
    for backend in [&world.registry, &world.dmv] {
        let heard = backend
            .requests()
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .collect::<Vec<_>>();
        assert!(
            heard
                .iter()
                .any(|tp| tp.starts_with(&format!("00-{TRACE_ID}-"))
                    && !tp.contains("00f067aa0ba902b7")),
            "the backend did not hear the caller's trace through a span of the gateway: {heard:?}"
        );
    }
}

/// What the fake collector received on `/v1/traces`.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn start_collector() -> (std::net::SocketAddr, Collector) {
    let received = Collector::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                store.0.lock().expect("collector").push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// With `otlp_endpoint` set, the spans of a request reach the collector as a non-empty
/// protobuf POST to `/v1/traces`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http_protobuf() {
    let (addr, collector) = start_collector().await;
    let config = TelemetryConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        service_name: "civicgraph-test".to_string(),
        ..TelemetryConfig::default()
    };
    let provider = civicgraph::telemetry::tracer_provider(&config, &|_| None)
        .expect("the exporter builds")
        .expect("an endpoint turns export on");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("backend_call", connector = "tax", operation = "account");
        span.in_scope(|| tracing::info!("Inside a span."));
    });
    // Flushing blocks on the exporter's own thread, which POSTs to the collector on this runtime.
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    })
    .await
    .expect("the flush thread");
    assert!(flushed.is_ok(), "{flushed:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.0.lock().expect("collector").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = collector.0.lock().expect("collector").clone();
    let (headers, body) = received.first().expect("the collector received a POST");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    assert!(!body.is_empty());
    // The protobuf carries the service name and the span name as plain strings.
    let bytes = body.to_vec();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("civicgraph-test") && has("backend_call"), "{body:?}");
}

/// A malformed endpoint from the environment is a clear error, not a panic or silent loss.
#[test]
fn a_malformed_endpoint_variable_is_an_exporter_error() {
    let env =
        |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "::not a url::".to_string());
    match civicgraph::telemetry::tracer_provider(&TelemetryConfig::default(), &env) {
        Ok(Some(_)) => {
            // The exporter may defer the URL check; then it must not have panicked either.
        }
        Ok(None) => panic!("a set endpoint variable must turn export on"),
        Err(error) => assert!(error.to_string().contains("otlp_endpoint"), "{error}"),
    }
    assert!(
        civicgraph::telemetry::tracer_provider(&TelemetryConfig::default(), &|_| None)
            .expect("no endpoint is no error")
            .is_none(),
        "no endpoint, no export"
    );
}

/// `/metrics` counts GraphQL requests by operation name (a safe name, `anonymous`, or `other`
/// for one that could carry an id), HTTP status and first error code, with a latency histogram
/// and an in-flight gauge back at zero.
#[tokio::test]
async fn metrics_count_requests_by_operation_status_and_code() {
    let registry = ada_registry().await;
    let tax = tax_agency(Reply::json(200, crate::support::ada_account())).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;
    let named = gateway
        .post_with(
            json!({"query": "query CitizenName { citizen(id: \"C0000001\") { name } }"}),
            &[],
        )
        .await;
    assert_eq!(named.status, 200, "{}", named.text);
    gateway
        .post(r#"{ citizen(id: "C0000001") { name } }"#)
        .await;
    gateway
        .post_with(
            json!({"query": "query Lookup_C0000001 { citizen(id: \"C0000001\") { name } }"}),
            &[],
        )
        .await;
    let broken = gateway
        .post_with(
            json!({"query": "query Broken { citizen(id: \"C0000001\") { nam } }"}),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(broken.status, 400);

    let metrics = gateway.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text;
    for expected in [
        r#"civicgraph_requests_total{operation="CitizenName",status="200",code="none"} 1"#,
        r#"civicgraph_requests_total{operation="anonymous",status="200",code="none"} 1"#,
        r#"civicgraph_requests_total{operation="other",status="200",code="none"} 1"#,
        r#"civicgraph_requests_total{operation="Broken",status="400",code="GRAPHQL_VALIDATION_FAILED"} 1"#,
        r#"civicgraph_request_duration_seconds_count{operation="CitizenName"} 1"#,
        r#"civicgraph_request_duration_seconds_bucket{le="+Inf",operation="CitizenName"} 1"#,
        "civicgraph_requests_in_flight 0",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains("C0000001"), "{text}");
}
