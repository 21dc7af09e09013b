//! `/graphql` over HTTP, following the GraphQL-over-HTTP specification: POST and GET,
//! `application/graphql-response+json` and `application/json`, and the spec's status codes.

use std::collections::BTreeMap;

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerError, Value as GqlValue, Variables};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::auth::{Principal, PurposeError, TokenError};
use crate::connectors::context::PURPOSE_HEADER;
use crate::error::ErrorCode;
use crate::graph::Outcome;
use crate::graph::RequestContext;

/// The two response media types of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/graphql-response+json`: request errors get 4xx.
    GraphqlResponse,
    /// `application/json`: the legacy type; well-formed requests always get 200.
    Json,
}

impl Format {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// Picks the response type from `Accept`; `None` when the client accepts neither.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/graphql-response+json" => Format::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => Format::Json,
            _ => continue,
        };
        if quality <= 0.0 {
            continue;
        }
        // Highest quality wins; on a tie the spec's own media type wins.
        let better = best.is_none_or(|(q, f)| {
            quality > q || (quality == q && f == Format::Json && format == Format::GraphqlResponse)
        });
        if better {
            best = Some((quality, format));
        }
    }
    best.map(|(_, format)| format)
}

/// A GraphQL request as sent in a POST body or GET query string.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphqlRequest {
    query: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    /// `persistedQuery` (APQ and the safelist) is understood; others are ignored.
    #[serde(default)]
    extensions: Option<serde_json::Value>,
}

/// GET parameters: `variables` and `extensions` arrive as JSON text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a GqlValue>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, GqlValue>,
}

/// `GET /graphql`: GraphiQL for browsers, otherwise a query from the URL (never a mutation).
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let has_query = params.as_ref().is_ok_and(|p| p.query.is_some());
    if wants_html && !has_query && state.server.graphiql {
        return super::edge::graphiql_page(&state.graphiql);
    }
    let Some(format) = negotiate(&headers) else {
        return request_error(
            Format::Json,
            ErrorCode::NotAcceptable,
            "Accept must allow application/graphql-response+json or application/json.",
        );
    };
    if let Err(rejection) = super::csrf::check(&state.edge, &headers) {
        return request_error(format, rejection.code, rejection.message);
    }
    let Ok(Query(params)) = params else {
        return request_error(
            format,
            ErrorCode::BadRequest,
            "The query string is not valid.",
        );
    };
    let variables = match params
        .variables
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
    {
        Ok(variables) => variables,
        Err(_) => {
            return request_error(
                format,
                ErrorCode::BadRequest,
                "`variables` must be a JSON object.",
            );
        }
    };
    let extensions = match params
        .extensions
        .as_deref()
        .map(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>)
        .transpose()
    {
        Ok(extensions) => extensions.map(serde_json::Value::Object),
        Err(_) => {
            return request_error(
                format,
                ErrorCode::BadRequest,
                "`extensions` must be a JSON object.",
            );
        }
    };
    let request = GraphqlRequest {
        query: params.query,
        operation_name: params.operation_name,
        variables,
        extensions,
    };
    let principal = match caller(&state, &headers, format).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    execute(&state, request, format, true, principal).await
}

/// `POST /graphql` with a JSON body.
pub(crate) async fn post(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers();
    let Some(format) = negotiate(headers) else {
        return request_error(
            Format::Json,
            ErrorCode::NotAcceptable,
            "Accept must allow application/graphql-response+json or application/json.",
        );
    };
    if let Err(rejection) = super::csrf::check(&state.edge, headers)
        .and_then(|()| super::csrf::check_body_encoding(headers))
    {
        return request_error(format, rejection.code, rejection.message);
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if media_type.as_deref() != Some("application/json") {
        return request_error(
            format,
            ErrorCode::UnsupportedMediaType,
            "POST /graphql takes a JSON body with `Content-Type: application/json`.",
        );
    }
    let principal = match caller(&state, headers, format).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let limit = state.server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return request_error(
            format,
            ErrorCode::PayloadTooLarge,
            "The request body is too large.",
        );
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let mut response = request_error(
                format,
                ErrorCode::PayloadTooLarge,
                "The request body is too large.",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(_) => {
            return request_error(
                format,
                ErrorCode::BadRequest,
                "The request body could not be read.",
            );
        }
    };
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| body[i]);
    if trimmed == Some(b'[') {
        return batch(state, &body, format, principal).await;
    }
    let request: GraphqlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return request_error(
                format,
                ErrorCode::BadRequest,
                "The body is not a JSON object with a `query` string.",
            );
        }
    };
    execute(&state, request, format, false, principal).await
}

/// A JSON array of operations: refused unless `[limits] max_batch_operations` lets a partner
/// agency send this many (BAD_INPUTS row 19); then each runs in turn, every one checked as a
/// request of its own, and the answer is the array of their bodies.
async fn batch(state: AppState, body: &[u8], format: Format, context: RequestContext) -> Response {
    let allowed = state.graph.request_limits().limits.max_batch_operations;
    if allowed == 0 || !matches!(context.principal, Principal::Agency(_)) {
        return request_error(
            format,
            ErrorCode::BatchNotAllowed,
            "Batched requests are not accepted; send one operation per request.",
        );
    }
    let Ok(requests) = serde_json::from_slice::<Vec<GraphqlRequest>>(body) else {
        return request_error(
            format,
            ErrorCode::BadRequest,
            "The body is not a JSON array of objects with a `query` string.",
        );
    };
    if requests.is_empty() {
        return request_error(format, ErrorCode::BadRequest, "The batch is empty.");
    }
    if requests.len() > allowed {
        return request_error(
            format,
            ErrorCode::BatchLimitExceeded,
            "The batch holds more operations than this gateway accepts; none of them ran.",
        );
    }
    let mut answer = vec![b'['];
    for (i, request) in requests.into_iter().enumerate() {
        let response = execute(&state, request, format, false, context.clone()).await;
        let Ok(part) = axum::body::to_bytes(response.into_body(), usize::MAX).await else {
            return request_error(format, ErrorCode::InternalError, "Internal error.");
        };
        if i > 0 {
            answer.push(b',');
        }
        answer.extend_from_slice(&part);
    }
    answer.push(b']');
    let mut response = (StatusCode::OK, Body::from(answer)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, format.content_type());
    response
}

/// The one message a refused token gets: why it was refused is logged, never told, so a
/// forger learns nothing from trying.
pub(crate) const INVALID_TOKEN_MESSAGE: &str = "The bearer token is not valid.";

/// Who the request is from. An `Authorization` header must carry a valid bearer token (it
/// wins over the demo headers); without one the caller is anonymous, or whoever the demo
/// headers name when they are on. A refused token ends the request with 401.
async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let certificate = state
            .auth
            .client_cert_header
            .as_deref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(certificate_der);
        let result = match token {
            Some(token) if !token.is_empty() => {
                state
                    .tokens
                    .validate_presented(token, certificate.as_deref())
                    .await
            }
            _ => Err(TokenError::Malformed),
        };
        return result.map_err(|reason| {
            tracing::info!(%reason, "bearer token refused");
            Refusal {
                code: ErrorCode::Unauthenticated,
                message: INVALID_TOKEN_MESSAGE.to_string(),
            }
        });
    }
    if state.auth.demo_headers {
        Ok(Principal::from_demo_headers(headers))
    } else {
        Ok(Principal::Anonymous)
    }
}

/// The DER bytes of a URL-encoded PEM certificate as a TLS proxy forwards it; `None` when it
/// is not one (the token binding check then fails closed).
fn certificate_der(header: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let pem = percent_encoding::percent_decode_str(header)
        .decode_utf8()
        .ok()?;
    let body = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)?
        .split("-----END CERTIFICATE-----")
        .next()?;
    let text: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Why a caller could not be identified: the code and the message the client is told.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// `UNAUTHENTICATED`, or one of the purpose codes.
    pub(crate) code: ErrorCode,
    /// Safe to show: it never says why a token was refused.
    pub(crate) message: String,
}

impl Refusal {
    /// The HTTP answer: the code's status, and `WWW-Authenticate` for a refused token.
    pub(crate) fn into_response(self, format: Format) -> Response {
        let mut response = request_error(format, self.code, &self.message);
        if self.code == ErrorCode::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

/// Who the request is from and why, as an HTTP handler needs it: see [`identify`]. An agency
/// request without a usable purpose ends here: 400 when none or an unknown one is stated, 403
/// when the token does not allow it; a refused token ends it with 401.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    format: Format,
) -> Result<RequestContext, Response> {
    identify(state, headers)
        .await
        .map_err(|refusal| refusal.into_response(format))
}

/// Who the request is from and why: the principal, the purpose an agency states (its
/// `X-Purpose` header, else its token's), and the request id. HTTP requests and WebSocket
/// connections (their upgrade request, or their `connection_init` payload) both come here.
pub(crate) async fn identify(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<RequestContext, Refusal> {
    let principal = principal(state, headers).await?;
    let purpose = match &principal {
        Principal::Agency(client) => {
            let header = match headers.get(PURPOSE_HEADER).map(|v| v.to_str()) {
                None => None,
                Some(Ok(text)) => Some(text),
                Some(Err(_)) => {
                    return Err(Refusal {
                        code: ErrorCode::UnknownPurpose,
                        message: "The `X-Purpose` header is not readable text.".to_string(),
                    });
                }
            };
            match client.stated_purpose(header, state.graph.trust()) {
                Ok(purpose) => Some(purpose),
                Err(error) => {
                    let code = match error {
                        PurposeError::Missing => ErrorCode::PurposeRequired,
                        PurposeError::Unknown => ErrorCode::UnknownPurpose,
                        PurposeError::NotAllowed => ErrorCode::PurposeNotAllowed,
                    };
                    let message = format!(
                        "{}{}.",
                        crate::error::capitalised(&error.to_string()),
                        allowed(client)
                    );
                    return Err(Refusal { code, message });
                }
            }
        }
        _ => None,
    };
    let request_id = headers
        .get(super::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(RequestContext {
        principal,
        purpose,
        request_id,
    })
}

/// `; it allows `a`, `b`` — the client may know its own token's purposes.
fn allowed(client: &crate::auth::AgencyClient) -> String {
    if client.purposes.is_empty() {
        "; the token allows no purpose".to_string()
    } else {
        let names: Vec<String> = client.purposes.iter().map(|p| format!("`{p}`")).collect();
        format!("; the token allows {}", names.join(", "))
    }
}

async fn execute(
    state: &AppState,
    request: GraphqlRequest,
    format: Format,
    is_get: bool,
    context: RequestContext,
) -> Response {
    // Shed load before any work; the permit is held until the response is built.
    let _in_flight = match state.quotas.enter() {
        Ok(permit) => permit,
        Err(shed) => {
            return limited(
                format,
                ErrorCode::Overloaded,
                "The gateway is overloaded; retry shortly.",
                Some(shed.retry_after_s),
            );
        }
    };
    // Resolving checks `extensions` too: anything but an object (or null) is `BAD_REQUEST`.
    let resolved = match state.persisted.resolve(
        request.query,
        request.extensions.as_ref(),
        &context.principal,
    ) {
        Ok(resolved) => resolved,
        Err(refused) => return persisted_refusal(state, format, &refused),
    };
    let Some(query) = resolved.query else {
        return request_error(format, ErrorCode::BadRequest, "The request has no `query`.");
    };
    let variables = match request.variables {
        None | Some(serde_json::Value::Null) => Variables::default(),
        Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
        Some(_) => {
            return request_error(
                format,
                ErrorCode::BadRequest,
                "`variables` must be a JSON object.",
            );
        }
    };
    let document = match state.documents.parse(&query) {
        Ok(document) => document,
        Err(error) if error.code() == ErrorCode::GraphqlParseFailed => {
            return graphql_request_error(format, vec![error.to_server_error()]);
        }
        Err(error) => return limit_error(format, error.code(), error.to_server_error()),
    };
    super::observe::operation(&document, request.operation_name.as_deref());
    // Request limits (BAD_INPUTS rows 12-27), before validation and any backend call; the
    // estimate they make is what the caller's cost budget is charged.
    let estimate =
        match state
            .graph
            .check_limits(&document, request.operation_name.as_deref(), &variables)
        {
            Ok(estimate) => estimate,
            Err(error) => return limit_error(format, error.code(), error.to_server_error()),
        };
    if let Some(hash) = resolved.register {
        state.persisted.register(hash, &query);
    }
    if selected_type(&document, request.operation_name.as_deref())
        == Some(OperationType::Subscription)
    {
        return request_error(
            format,
            ErrorCode::BadRequest,
            "Subscriptions run over WebSocket: open /graphql with the `graphql-transport-ws` subprotocol.",
        );
    }
    if is_get && selects_mutation(&document, request.operation_name.as_deref()) {
        let mut response = request_error(
            format,
            ErrorCode::MethodNotAllowed,
            "Mutations are only accepted with POST.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }

    match state.quotas.charge(&context.principal, estimate.cost) {
        Ok(()) => {}
        Err(crate::quota::Limited::Rate { retry_after_s }) => {
            return limited(
                format,
                ErrorCode::RateLimited,
                "Too many requests from this client; retry after the time in `Retry-After`.",
                Some(retry_after_s),
            );
        }
        Err(crate::quota::Limited::TooCostly) => {
            return limited(
                format,
                ErrorCode::RateLimited,
                "This operation costs more than this client may spend at once; split it into smaller ones.",
                None,
            );
        }
    }

    let mut gql_request = async_graphql::Request::new(query).variables(variables);
    if let Some(name) = &request.operation_name {
        gql_request = gql_request.operation_name(name);
    }
    if let Some(allowance) = state.quotas.citizen_allowance(&context.principal) {
        gql_request = gql_request.data(allowance);
    }
    let response = match state.graph.execute(gql_request, &document, context).await {
        Outcome::Executed(response) => response,
        Outcome::Rejected(mut errors) => {
            for error in &mut errors {
                set_code(error, ErrorCode::GraphqlValidationFailed);
            }
            return graphql_request_error(format, errors);
        }
        Outcome::Denied(errors) => {
            let body = ResponseBody {
                data: None,
                errors: &errors,
                extensions: &BTreeMap::new(),
            };
            return json_response(StatusCode::FORBIDDEN, format, &body);
        }
    };
    let body = ResponseBody {
        data: Some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    let code_of = |error: &async_graphql::ServerError| -> Option<String> {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(GqlValue::String(code)) => Some(code.clone()),
            _ => None,
        }
    };
    let metrics = state.graph.shields().metrics();
    for error in &response.errors {
        if let Some(code) = code_of(error) {
            metrics.response_error(&code);
        }
    }
    // A backend shed load (its bulkhead was full): say when to come back, as a 503 would
    // (BAD_INPUTS row 48); whatever did resolve is still in the body.
    let busy_retry_after = response
        .errors
        .iter()
        .filter(|error| code_of(error).as_deref() == Some(ErrorCode::BackendBusy.as_str()))
        .map(
            |error| match error.extensions.as_ref().and_then(|e| e.get("retryAfter")) {
                Some(GqlValue::Number(seconds)) => seconds.as_u64().unwrap_or(1),
                _ => 1,
            },
        )
        .max();
    if let Some(seconds) = busy_retry_after {
        let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, format, &body);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // Personal data withheld because the audit trail is down: the instance cannot do its
    // job, which load balancers and clients should hear (public data is still in the body).
    let audit_down = response
        .errors
        .iter()
        .any(|error| code_of(error).as_deref() == Some(ErrorCode::AuditUnavailable.as_str()));
    if audit_down {
        let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, format, &body);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    json_response(StatusCode::OK, format, &body)
}

/// A refused persisted operation: counted, then answered with its code's status, except
/// that `PERSISTED_QUERY_NOT_FOUND` is 200 for `application/json`, as Apollo clients expect
/// before they retry with the text.
fn persisted_refusal(
    state: &AppState,
    format: Format,
    refused: &super::persisted::Refused,
) -> Response {
    state
        .graph
        .shields()
        .metrics()
        .request_rejected(refused.reason());
    let mut response = request_error(format, refused.code, refused.message);
    if refused.code == ErrorCode::PersistedQueryNotFound && format == Format::Json {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// A request refused by a limit, with `Retry-After` when waiting helps.
fn limited(format: Format, code: ErrorCode, message: &str, retry_after_s: Option<u64>) -> Response {
    let mut response = request_error(format, code, message);
    if let Some(value) = retry_after_s.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Whether the operation that would run is a mutation (an unknown name selects none).
fn selects_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    selected_type(document, operation_name) == Some(OperationType::Mutation)
}

/// The type of the operation that would run (`None` when the name selects none).
pub(crate) fn selected_type(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Sets `extensions.code` unless the error already has one.
pub(crate) fn set_code(error: &mut ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

/// A GraphQL request error (parse, validation): 400 for the new media type, 200 for legacy JSON.
fn graphql_request_error(format: Format, errors: Vec<ServerError>) -> Response {
    let status = match format {
        Format::GraphqlResponse => StatusCode::BAD_REQUEST,
        Format::Json => StatusCode::OK,
    };
    let body = ResponseBody {
        data: None,
        errors: &errors,
        extensions: &BTreeMap::new(),
    };
    json_response(status, format, &body)
}

/// A request refused by a limit: the code's status (400) whatever the media type, as for
/// `BATCH_NOT_ALLOWED` (a fragment cycle is a validation error, answered as one); the message
/// never states the limit.
fn limit_error(format: Format, code: ErrorCode, error: ServerError) -> Response {
    if code == ErrorCode::GraphqlValidationFailed {
        return graphql_request_error(format, vec![error]);
    }
    let body = ResponseBody {
        data: None,
        errors: std::slice::from_ref(&error),
        extensions: &BTreeMap::new(),
    };
    json_response(code.http_status(), format, &body)
}

/// An HTTP-level rejection with a GraphQL-shaped body and the code's status.
pub(crate) fn request_error(format: Format, code: ErrorCode, message: &str) -> Response {
    let mut error = ServerError::new(message, None);
    set_code(&mut error, code);
    let body = ResponseBody {
        data: None,
        errors: std::slice::from_ref(&error),
        extensions: &BTreeMap::new(),
    };
    json_response(code.http_status(), format, &body)
}

fn json_response(status: StatusCode, format: Format, body: &ResponseBody<'_>) -> Response {
    super::observe::response_errors(body.errors);
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, Body::from(bytes)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, format.content_type());
            response
        }
        Err(error) => {
            tracing::error!(%error, "Could not serialise a GraphQL response.");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_certificates_are_read_from_url_encoded_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";
        let encoded: String =
            percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(certificate_der(&encoded), Some(vec![0, 1, 2, 3, 4]));
        assert_eq!(certificate_der("garbage"), None);
    }

    fn accept(value: &str) -> Option<Format> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn negotiates_the_response_media_type() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Format::Json));
        assert_eq!(
            accept("application/graphql-response+json"),
            Some(Format::GraphqlResponse)
        );
        assert_eq!(accept("application/json"), Some(Format::Json));
        assert_eq!(
            accept("application/graphql-response+json, application/json;q=0.9"),
            Some(Format::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json;q=0.5, application/json"),
            Some(Format::Json)
        );
        assert_eq!(accept("*/*"), Some(Format::Json));
        assert_eq!(accept("text/html"), None);
    }
}
