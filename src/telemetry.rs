//! Logs and traces: the `tracing` subscriber (text or JSON lines), the OpenTelemetry bridge
//! with OTLP/HTTP export, and W3C `traceparent` in (continuing a caller's trace) and out (so a
//! backend's own traces join the gateway's).
//!
//! Two spans carry the request path: `request` (one per HTTP request, with its request id,
//! method, path and status) and `backend_call` (one per call through the shield, with the
//! connector, operation, the calling agency and client, the purpose, the cache outcome and the
//! call's outcome). Neither ever carries an argument, a citizen id, an agency key, a query
//! string or a token: only names of things the gateway's configuration defines.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, TelemetryConfig};
use crate::shield::{CacheScope, CallKind};

/// The environment variables that turn trace export on when `otlp_endpoint` is not set, as
/// every OpenTelemetry SDK reads them.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The filter when `CIVICGRAPH_LOG` is unset: lifecycle lines and warnings, and the spans that
/// traces are made of (both are `info`).
const DEFAULT_FILTER: &str = "info,tower_http=warn,sqlx=warn";

/// Why logging or tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitTelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint, most often).
    #[error("[telemetry] otlp_endpoint `{endpoint}`: {reason}")]
    Exporter {
        /// The endpoint as configured (a URL of the collector, no secret).
        endpoint: String,
        /// What the exporter said.
        reason: String,
    },
    /// A global subscriber was already installed (only in tests that start twice).
    #[error("logging was already set up: {0}")]
    AlreadySet(String),
}

/// Keeps the trace pipeline alive; dropping it flushes the spans not yet sent.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "Spans could not all be sent before exit.");
        }
    }
}

/// Installs the process-wide subscriber: `format` lines on stderr filtered by `CIVICGRAPH_LOG`,
/// plus span export when an OTLP endpoint is configured or in the environment. An exporter
/// that cannot be built (a malformed endpoint variable) is logged as an error and logging
/// goes on without traces: losing the logs too would help no one.
pub fn init(
    format: LogFormat,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, InitTelemetryError> {
    let filter = EnvFilter::try_from_env("CIVICGRAPH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (provider, problem) = match tracer_provider(config, &|name| std::env::var(name).ok()) {
        Ok(provider) => (provider, None),
        Err(error) => (None, Some(error)),
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("civicgraph")));
    tracing_subscriber::registry()
        .with(log_layer(format, std::io::stderr))
        .with(otel)
        .with(filter)
        .try_init()
        .map_err(|error| InitTelemetryError::AlreadySet(error.to_string()))?;
    if let Some(error) = problem {
        tracing::error!(%error, "Traces are not exported.");
    }
    Ok(TelemetryGuard { provider })
}

/// The log lines' layer. JSON lines carry the event's fields flat and every enclosing span's
/// fields under `spans`, so each line of a request has its `request_id`.
pub fn log_layer<W>(format: LogFormat, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    }
}

/// The trace pipeline when an endpoint is configured (`otlp_endpoint`, else one of
/// [`OTLP_ENDPOINT_VARS`] read with `env`), else `None`: spans then cost only `tracing`'s own
/// bookkeeping.
pub fn tracer_provider(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SdkTracerProvider>, InitTelemetryError> {
    let configured = config
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let from_env = OTLP_ENDPOINT_VARS
        .iter()
        .find_map(|name| env(name).filter(|v| !v.trim().is_empty()));
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(Duration::from_secs(5));
    let shown = match (configured, from_env) {
        (Some(endpoint), _) => {
            let url = traces_url(endpoint);
            builder = builder.with_endpoint(url.clone());
            url
        }
        // The exporter reads the variables itself, with their documented precedence.
        (None, Some(endpoint)) => endpoint,
        (None, None) => return Ok(None),
    };
    let exporter = builder
        .build()
        .map_err(|error| InitTelemetryError::Exporter {
            endpoint: shown,
            reason: error.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio.get(),
            ))))
            .with_resource(resource)
            .build(),
    ))
}

/// `{base}/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read; a URL already ending in
/// `/v1/traces` is kept.
pub fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The span of one HTTP request: the path without its query string (which can carry personal
/// data), the request id, and the caller's trace as parent when it sent a `traceparent`.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let id = request
        .headers()
        .get(crate::http::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
        status = Empty,
        otel.kind = "server",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
    );
    if request.headers().contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // Without the OpenTelemetry layer (no export) there is nothing to attach to.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the response status on the request span (the `TraceLayer`'s `on_response`).
pub fn record_status<B>(response: &Response<B>, _latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
}

/// The span of one call through the shield. Only configuration names and the caller's kind are
/// recorded: never the arguments or who the citizen is.
pub fn backend_span(connector: &str, operation: &str, scope: &CacheScope, kind: CallKind) -> Span {
    let context = crate::connectors::context::current().unwrap_or_default();
    let (caller, agency, client) = match scope {
        CacheScope::Shared => ("shared", None, None),
        CacheScope::Anonymous => ("anonymous", None, None),
        CacheScope::Citizen(_) => ("citizen", None, None),
        CacheScope::Agency { agency, client, .. } => {
            ("agency", Some(agency.as_str()), Some(client.as_str()))
        }
        CacheScope::Operator(_) => ("operator", None, None),
    };
    tracing::info_span!(
        "backend_call",
        connector = %connector,
        operation = %operation,
        kind = match kind { CallKind::Read => "read", CallKind::Write => "write" },
        caller,
        agency = agency.unwrap_or_default(),
        client_id = client.unwrap_or_default(),
        purpose = context.purpose.as_deref().unwrap_or_default(),
        request_id = context.request_id.as_deref().unwrap_or_default(),
        cache = Empty,
        keys = Empty,
        outcome = Empty,
        otel.kind = "client",
        otel.name = %format_args!("{connector}.{operation}"),
        otel.status_code = Empty,
    )
}

/// Records how a backend call ended: `ok`, or its error code (which also marks the span as
/// failed for trace viewers).
pub fn record_outcome(span: &Span, code: Option<&str>) {
    match code {
        None => {
            span.record("outcome", "ok");
        }
        Some(code) => {
            span.record("outcome", code);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The `traceparent` (and `tracestate`) of the current span, for a backend request: empty when
/// spans are not exported or the trace is not sampled in.
pub fn outbound_trace_headers() -> Vec<(&'static str, String)> {
    let context = Span::current().context();
    let mut headers = TraceHeaders(Vec::new());
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    headers.0
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Only the two W3C headers are ever injected; anything else is dropped.
struct TraceHeaders(Vec<(&'static str, String)>);

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        if HeaderValue::from_str(&value).is_ok() {
            self.0.push((name, value));
        }
    }
}

/// A layer that keeps every span's name and fields, for tests of what spans carry.
#[cfg(test)]
pub(crate) mod capture {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// One span: its name and every field recorded on it, as text.
    #[derive(Debug, Clone)]
    pub(crate) struct CapturedSpan {
        pub(crate) name: String,
        pub(crate) fields: BTreeMap<String, String>,
    }

    /// The spans seen, in the order they were created.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Spans(Arc<Mutex<Vec<(u64, CapturedSpan)>>>);

    impl Spans {
        pub(crate) fn named(&self, name: &str) -> Vec<CapturedSpan> {
            let spans = self.0.lock().expect("spans");
            spans
                .iter()
                .filter(|(_, span)| span.name == name)
                .map(|(_, span)| span.clone())
                .collect()
        }

        fn record(&self, id: &Id, fields: BTreeMap<String, String>) {
            let mut spans = self.0.lock().expect("spans");
            if let Some((_, span)) = spans
                .iter_mut()
                .rev()
                .find(|(key, _)| *key == id.into_u64())
            {
                span.fields.extend(fields);
            }
        }
    }

    struct Fields(BTreeMap<String, String>);

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(
                field.name().to_string(),
                format!("{value:?}").trim_matches('"').to_string(),
            );
        }
    }

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
            let mut fields = Fields(BTreeMap::new());
            attrs.record(&mut fields);
            self.0.lock().expect("spans").push((
                id.into_u64(),
                CapturedSpan {
                    name: attrs.metadata().name().to_string(),
                    fields: fields.0,
                },
            ));
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            let mut fields = Fields(BTreeMap::new());
            values.record(&mut fields);
            self.record(id, fields.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn no_endpoint_means_no_export() {
        let provider = tracer_provider(&TelemetryConfig::default(), &|_| None).expect("no error");
        assert!(provider.is_none());
    }

    #[test]
    fn an_incoming_traceparent_is_continued_and_sent_on() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let request = Request::builder()
                .uri("/graphql?secret=1")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(())
                .expect("a request");
            let span = request_span(&request);
            let headers = span.in_scope(outbound_trace_headers);
            let (name, value) = headers.first().expect("a traceparent");
            assert_eq!(*name, "traceparent");
            assert!(
                value.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{value}"
            );
            assert!(value.ends_with("-01"), "sampled by the parent: {value}");
            assert!(
                !value.contains("00f067aa0ba902b7"),
                "the gateway's own span id: {value}"
            );
        });
    }

    #[test]
    fn without_the_bridge_nothing_is_sent() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("backend_call");
            assert!(span.in_scope(outbound_trace_headers).is_empty());
        });
    }

    #[test]
    fn the_request_span_has_the_path_without_its_query() {
        let spans = capture::Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        tracing::subscriber::with_default(subscriber, || {
            let request = Request::builder()
                .method("POST")
                .uri("/graphql?citizen=C0000001")
                .header(crate::http::REQUEST_ID_HEADER, "r-42")
                .body(())
                .expect("a request");
            let _span = request_span(&request);
        });
        let request = &spans.named("request")[0];
        assert_eq!(request.fields["path"], "/graphql");
        assert_eq!(request.fields["request_id"], "r-42");
        assert!(!format!("{:?}", request.fields).contains("C0000001"));
    }
}
