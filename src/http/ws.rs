//! `/graphql` over WebSocket: the `graphql-transport-ws` protocol (and the legacy `graphql-ws`
//! one, which async-graphql speaks too), for subscriptions, and for queries and mutations.
//!
//! A socket is authenticated exactly as an HTTP request: the upgrade request's headers
//! (`Authorization: Bearer …`, `X-Purpose`, the demo headers when they are on) name the caller,
//! and a refused token there is a 401 before any socket exists. Browsers cannot set headers on
//! a WebSocket, so the `connection_init` payload may carry them instead
//! (`{"Authorization": "Bearer …", "X-Purpose": "…"}`); they then win over the upgrade's, and a
//! refusal closes the socket with 4403 (4400 for a missing or unknown purpose), as the protocol
//! asks. Every operation on the socket runs for that caller, through the same [`Graph`] entry
//! points as a POST, so policy, consent and the audit trail apply unchanged.
//!
//! [`Graph`]: crate::graph::Graph

use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::stream::BoxStream;
use futures::{SinkExt as _, StreamExt as _};

use super::AppState;
use super::graphql::{self, Format, GetParams};
use crate::error::ErrorCode;
use crate::graph::{Outcome, RequestContext};

/// The longest close reason a close frame carries (RFC 6455: 125 bytes less the code).
const MAX_CLOSE_REASON: usize = 123;

/// `GET /graphql`: a WebSocket upgrade, else the HTTP GET (GraphiQL or a query in the URL).
pub(crate) async fn get(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> HttpResponse {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) if asks_for_websocket(&headers) => return rejection.into_response(),
        Err(_) => return graphql::get(State(state), headers, params).await,
    };
    if let Err(rejection) = super::csrf::check_socket_origin(&state.edge, &headers) {
        return graphql::request_error(Format::Json, rejection.code, rejection.message);
    }
    let upgrade = upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS);
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.parse::<WebSocketProtocols>().ok())
    else {
        return graphql::request_error(
            Format::Json,
            ErrorCode::BadRequest,
            "A GraphQL WebSocket must offer the `graphql-transport-ws` subprotocol (Sec-WebSocket-Protocol).",
        );
    };
    let context = match graphql::identify(&state, &headers).await {
        Ok(context) => context,
        Err(refusal) => return refusal.into_response(Format::Json),
    };
    let limit = state.server.max_body_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(socket, protocol, state, headers, context))
}

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Runs the protocol on one socket until either side closes it or the gateway stops.
async fn serve(
    socket: WebSocket,
    protocol: WebSocketProtocols,
    state: AppState,
    headers: HeaderMap,
    context: RequestContext,
) {
    let (mut sink, source) = socket.split();
    let input = source
        .take_while(|message| {
            std::future::ready(matches!(message, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(Bytes::from(text)),
                Ok(Message::Binary(bytes)) => Some(bytes),
                _ => None,
            })
        });
    // async-graphql closes a refused `connection_init` with 1002; the refusal's own code
    // replaces it on the way out.
    let refused = Arc::new(AtomicU16::new(0));
    let on_init = {
        let (state, refused) = (state.clone(), Arc::clone(&refused));
        move |payload: serde_json::Value| async move {
            let context = match init_headers(&headers, &payload) {
                None => context,
                Some(headers) => match graphql::identify(&state, &headers).await {
                    Ok(context) => context,
                    Err(refusal) => {
                        refused.store(close_code(refusal.code), Ordering::Release);
                        return Err(async_graphql::Error::new(refusal.message));
                    }
                },
            };
            let mut data = Data::default();
            data.insert(context);
            Ok(data)
        }
    };
    let executor = SocketExecutor {
        state: state.clone(),
    };
    let mut output =
        async_graphql::http::WebSocket::new(executor, input, protocol).on_connection_init(on_init);
    let feed = state.graph.event_feed().cloned();
    let stopped = async move {
        match feed {
            Some(feed) => feed.stopped().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    loop {
        let message = tokio::select! {
            message = output.next() => message,
            () = &mut stopped => {
                let _ = sink.send(close(1001, "The gateway is shutting down.")).await;
                break;
            }
        };
        match message {
            Some(WsMessage::Text(text)) => {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            Some(WsMessage::Close(code, reason)) => {
                let code = match refused.load(Ordering::Acquire) {
                    0 => code,
                    refusal => refusal,
                };
                let _ = sink.send(close(code, &reason)).await;
                break;
            }
            None => break,
        }
    }
}

/// The headers a `connection_init` payload names (string values only), over the upgrade
/// request's; `None` when it names none, and the upgrade's caller stands.
fn init_headers(upgrade: &HeaderMap, payload: &serde_json::Value) -> Option<HeaderMap> {
    let entries = payload.as_object()?;
    let mut headers = upgrade.clone();
    let mut named = false;
    for (name, value) in entries {
        let (Some(value), Ok(name)) = (value.as_str(), HeaderName::from_bytes(name.as_bytes()))
        else {
            continue;
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
            named = true;
        }
    }
    named.then_some(headers)
}

/// The close code for a refused `connection_init`: 4403 Forbidden for the caller's token or
/// purpose rights, 4400 Bad Request for a purpose missing or unknown.
fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::PurposeRequired | ErrorCode::UnknownPurpose => 4400,
        _ => 4403,
    }
}

fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

/// Runs the socket's operations for its caller: subscriptions through
/// [`crate::graph::Graph::subscribe`], queries and mutations through
/// [`crate::graph::Graph::execute`], each parsed with the gateway's document cache.
#[derive(Clone)]
struct SocketExecutor {
    state: AppState,
}

impl Executor for SocketExecutor {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        let mut responses = self.execute_stream(request, None);
        async move { responses.next().await.unwrap_or_default() }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let context = session_data
            .as_deref()
            .and_then(|data| data.get(&TypeId::of::<RequestContext>()))
            .and_then(|any| (**any).downcast_ref::<RequestContext>())
            .cloned()
            .unwrap_or_default();
        let state = self.state.clone();
        let refuse = |error: ServerError| {
            let response = Response::from_errors(vec![error]);
            futures::stream::once(std::future::ready(response)).boxed()
        };
        if let Some(refusal) = socket_limits(&state, &request.query, &context) {
            return refuse(refusal);
        }
        let mut request = request;
        if let Some(allowance) = state.quotas.citizen_allowance(&context.principal) {
            request = request.data(allowance);
        }
        let document = match state.documents.parse(&request.query) {
            Ok(document) => document,
            Err(error) => return refuse(error.to_server_error()),
        };
        // The same request limits as over HTTP, before validation and any backend call.
        if let Err(error) = state.graph.check_limits(
            &document,
            request.operation_name.as_deref(),
            &request.variables,
        ) {
            return refuse(error.to_server_error());
        }
        let operation = graphql::selected_type(&document, request.operation_name.as_deref());
        if operation == Some(OperationType::Subscription) {
            return state
                .graph
                .subscribe(request, &document, context)
                .map(|mut response| {
                    // Errors before any event (validation) are request errors, as over HTTP.
                    if response.data == async_graphql::Value::Null {
                        for error in response.errors.iter_mut().filter(|e| e.path.is_empty()) {
                            graphql::set_code(error, ErrorCode::GraphqlValidationFailed);
                        }
                    }
                    response
                })
                .boxed();
        }
        futures::stream::once(async move {
            match state.graph.execute(request, &document, context).await {
                Outcome::Executed(response) => response,
                Outcome::Rejected(mut errors) => {
                    for error in &mut errors {
                        graphql::set_code(error, ErrorCode::GraphqlValidationFailed);
                    }
                    Response::from_errors(errors)
                }
                Outcome::Denied(errors) => Response::from_errors(errors),
            }
        })
        .boxed()
    }
}

/// The safelist and the caller's rate, as over HTTP: an operation on a socket is refused
/// (with the code, and `retryAfter` when waiting helps) before it is parsed. Its cost is the
/// fallback of one per operation, since the document is not parsed yet.
fn socket_limits(state: &AppState, query: &str, context: &RequestContext) -> Option<ServerError> {
    let coded = |code: ErrorCode, message: &str| {
        let mut error = ServerError::new(message, None);
        graphql::set_code(&mut error, code);
        error
    };
    if !state.persisted.allows_text(query, &context.principal) {
        state
            .graph
            .shields()
            .metrics()
            .request_rejected("persisted_not_allowed");
        return Some(coded(
            ErrorCode::PersistedQueryNotAllowed,
            "This operation is not in the persisted-operation list this caller may run.",
        ));
    }
    match state.quotas.charge(&context.principal, 1) {
        Ok(()) => None,
        Err(limited) => {
            let mut error = coded(
                ErrorCode::RateLimited,
                "Too many requests from this client.",
            );
            if let crate::quota::Limited::Rate { retry_after_s } = limited {
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("retryAfter", retry_after_s);
            }
            Some(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_payload_headers_override_the_upgrade_and_ignore_non_text() {
        let mut upgrade = HeaderMap::new();
        upgrade.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer old"),
        );
        upgrade.insert("x-request-id", HeaderValue::from_static("req-1"));
        let payload = serde_json::json!({
            "Authorization": "Bearer new",
            "X-Purpose": "benefit-eligibility",
            "nested": {"a": 1},
            "bad name": "x",
        });
        let headers = init_headers(&upgrade, &payload).unwrap();
        assert_eq!(headers[header::AUTHORIZATION], "Bearer new");
        assert_eq!(headers["x-purpose"], "benefit-eligibility");
        assert_eq!(headers["x-request-id"], "req-1");
        assert_eq!(headers.len(), 3);
        assert!(init_headers(&upgrade, &serde_json::json!({})).is_none());
        assert!(init_headers(&upgrade, &serde_json::Value::Null).is_none());
    }

    #[test]
    fn close_reasons_fit_a_close_frame_on_a_character_boundary() {
        let long = "é".repeat(100);
        let Message::Close(Some(frame)) = close(4403, &long) else {
            panic!("a close frame");
        };
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(frame.reason.as_str().chars().all(|c| c == 'é'));
        assert_eq!(close_code(ErrorCode::Unauthenticated), 4403);
        assert_eq!(close_code(ErrorCode::PurposeNotAllowed), 4403);
        assert_eq!(close_code(ErrorCode::PurposeRequired), 4400);
    }
}
