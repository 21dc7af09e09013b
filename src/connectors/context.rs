//! What every backend call of one request carries besides its arguments: the purpose the
//! caller stated and the request id, sent as headers so an agency's own logs can say why
//! and for which gateway request its data was read (as X-Road does).
//!
//! The graph sets the context once around a request's execution (a task-local, since every
//! resolver of a request runs on that request's task); HTTP connectors read it when they
//! build a request. Connectors with no headers to send (SQL, mainframe) ignore it.

use std::future::Future;

/// The header naming the purpose of use, inbound (an agency narrowing its token's purposes)
/// and outbound (to backends).
pub const PURPOSE_HEADER: &str = "x-purpose";
/// The header carrying the gateway's request id to backends.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request-wide facts sent with every backend call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The purpose the caller stated, if any.
    pub purpose: Option<String>,
    /// The gateway's id for the request.
    pub request_id: Option<String>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

/// Runs `future` with `context` as the current call context.
pub async fn scope<F: Future>(context: CallContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The context of the request being served now, to carry into work that outlives one
/// resolver (a backend call other requests join).
pub fn current() -> Option<CallContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The headers to add to a backend request made now: the purpose and request id inside a
/// request, and the W3C `traceparent` of the current backend-call span when traces are on.
pub fn outbound_headers() -> Vec<(&'static str, String)> {
    let mut headers = CURRENT
        .try_with(|context| {
            let mut headers = Vec::with_capacity(4);
            if let Some(purpose) = &context.purpose {
                headers.push((PURPOSE_HEADER, purpose.clone()));
            }
            if let Some(id) = &context.request_id {
                headers.push((REQUEST_ID_HEADER, id.clone()));
            }
            headers
        })
        .unwrap_or_default();
    headers.extend(crate::telemetry::outbound_trace_headers());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_exist_only_inside_a_scope() {
        assert!(outbound_headers().is_empty());
        let context = CallContext {
            purpose: Some("tax-assessment".into()),
            request_id: Some("r-1".into()),
        };
        let inside = scope(context, async { outbound_headers() }).await;
        assert_eq!(
            inside,
            vec![
                (PURPOSE_HEADER, "tax-assessment".to_string()),
                (REQUEST_ID_HEADER, "r-1".to_string())
            ]
        );
    }
}
