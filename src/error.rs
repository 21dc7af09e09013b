//! The stable error codes a client sees in `extensions.code`.
//!
//! Clients branch on these strings, so a code is never renamed: add a new one instead. Each
//! code also decides the HTTP status when an error ends a request before execution.

use std::fmt;

/// Every `extensions.code` the gateway emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The backend could not be reached (refused, reset, DNS) or answered with a server error.
    BackendUnavailable,
    /// The backend did not answer within the connector's `timeout_ms`.
    BackendTimeout,
    /// The backend answered with a fault of its own (a SOAP Fault); `extensions.faultCode`
    /// carries the backend's fault code.
    BackendFault,
    /// The backend answered, but not with something the connector can use.
    BackendBadResponse,
    /// The backend already has `max_concurrency` calls in flight and no slot freed within
    /// `queue_timeout_ms`: the call was not made. `extensions.retryAfter` says when to retry.
    BackendBusy,
    /// A write to a backend timed out, so whether it happened is unknown; it is never retried
    /// by the gateway. Retry with the same `Idempotency-Key` if the backend honours one.
    OutcomeUnknown,
    /// An argument value cannot be sent to the backend (e.g. an object where a path needs text).
    BadUserInput,
    /// The HTTP request is not a well-formed GraphQL request (bad JSON, no `query`).
    BadRequest,
    /// The query text is not valid GraphQL syntax.
    GraphqlParseFailed,
    /// The query does not fit the schema.
    GraphqlValidationFailed,
    /// A JSON array of operations was sent; batching is off.
    BatchNotAllowed,
    /// GET may not run a mutation.
    MethodNotAllowed,
    /// The body is larger than `server.max_body_bytes`.
    PayloadTooLarge,
    /// The request's `Content-Type` is not one this endpoint accepts.
    UnsupportedMediaType,
    /// The client accepts no media type the endpoint can produce.
    NotAcceptable,
    /// The field needs a known caller (e.g. `me` without a signed-in citizen).
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The change conflicts with the current state (an agency key linked to someone else).
    Conflict,
    /// The field is personal data the calling agency may read only with the citizen's live
    /// consent for this category and purpose; `extensions.category` and `.purpose` say which.
    ConsentRequired,
    /// An agency request states no purpose, or several are allowed and none was chosen.
    PurposeRequired,
    /// The stated purpose is not one the caller's token allows.
    PurposeNotAllowed,
    /// The stated purpose is not in the gateway's purpose catalogue.
    UnknownPurpose,
    /// The thing named does not exist, or is not the caller's to see.
    NotFound,
    /// The consent ledger could not be read, so what only a consent allows is withheld.
    ConsentUnavailable,
    /// The audit trail could not record the read in time, so personal data is withheld.
    AuditUnavailable,
    /// An inbound webhook's signature, timestamp or id headers did not verify (a forgery, a
    /// replay past the tolerance, or the wrong secret). Nothing was recorded.
    SignatureInvalid,
    /// The event outbox could not be read or written; nothing was recorded, so the sender
    /// should retry.
    EventsUnavailable,
    /// A subscription read events more slowly than they were recorded and the gateway moved
    /// on: it ends here, and `extensions.afterSeq` / `.missed` name the events it did not get.
    SubscriptionLagged,
    /// A bug or an unexpected state in the gateway; details are only in the log.
    InternalError,
    /// The request named a persisted operation by hash that this gateway does not know: send
    /// the query text with the hash to register it (the APQ protocol). The message is
    /// `PersistedQueryNotFound`, which Apollo clients also match on.
    PersistedQueryNotFound,
    /// The request's `sha256Hash` is not the SHA-256 of its query text; nothing was stored.
    PersistedQueryHashMismatch,
    /// `[persisted] mode = "safelist"`: the operation is not in the caller's manifest, so it
    /// was not run.
    PersistedQueryNotAllowed,
    /// `[persisted] mode = "off"`: operations cannot be sent by hash; send the query text.
    PersistedQueryNotSupported,
    /// The caller is over its request rate, cost budget or distinct-citizen cap;
    /// `Retry-After` (or `extensions.retryAfter` on a field) says when to come back.
    RateLimited,
    /// The instance has `[quotas] max_in_flight` requests under way and sheds load instead of
    /// queueing; retry after `Retry-After` seconds (another instance may answer sooner).
    Overloaded,
    /// The query text has more tokens than `[limits] max_tokens`; refused before parsing.
    TooManyTokens,
    /// The query text nests brackets deeper than the parser accepts; refused before parsing.
    ParserRecursionLimit,
    /// A selection is nested deeper than `[server] max_depth` (fragments expanded).
    QueryTooDeep,
    /// The operation uses more aliases than `[limits] max_aliases` (fragments expanded).
    TooManyAliases,
    /// The operation selects more root fields than `[limits] max_root_fields`.
    TooManyRootFields,
    /// The operation carries more directives than `[limits] max_directives`.
    TooManyDirectives,
    /// Expanding the operation's fragments gives more fields than `[limits] max_fields`.
    TooManyFields,
    /// A list in the variables or in an argument is longer than `[limits] max_list_length`.
    ListTooLong,
    /// The variables are larger than `[limits] max_variables_bytes`.
    VariablesTooLarge,
    /// The estimated cost (fields, backend calls, list sizes) exceeds `[limits] max_cost`.
    QueryTooComplex,
    /// A batch holds more operations than `[limits] max_batch_operations`; none ran.
    BatchLimitExceeded,
    /// `__schema` / `__type` asked of a gateway whose introspection is off.
    IntrospectionDisabled,
    /// The request could have been forged by another web site: its `Content-Type` is one an
    /// HTML form can send (or absent) and it carries none of `[http.csrf] required_headers`.
    /// Nothing ran. Send `Content-Type: application/json` or one of those headers.
    CsrfRejected,
    /// A WebSocket was opened from a web page whose origin is neither the gateway's own nor in
    /// `[http.cors] allow_origins` (cross-site WebSocket hijacking). No socket was opened.
    OriginNotAllowed,
}

impl ErrorCode {
    /// The string in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackendUnavailable => "BACKEND_UNAVAILABLE",
            Self::BackendTimeout => "BACKEND_TIMEOUT",
            Self::BackendBadResponse => "BACKEND_BAD_RESPONSE",
            Self::BackendFault => "BACKEND_FAULT",
            Self::BackendBusy => "BACKEND_BUSY",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::BadRequest => "BAD_REQUEST",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BatchNotAllowed => "BATCH_NOT_ALLOWED",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::NotAcceptable => "NOT_ACCEPTABLE",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::Conflict => "CONFLICT",
            Self::ConsentRequired => "CONSENT_REQUIRED",
            Self::PurposeRequired => "PURPOSE_REQUIRED",
            Self::PurposeNotAllowed => "PURPOSE_NOT_ALLOWED",
            Self::UnknownPurpose => "UNKNOWN_PURPOSE",
            Self::NotFound => "NOT_FOUND",
            Self::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Self::ConsentUnavailable => "CONSENT_UNAVAILABLE",
            Self::SignatureInvalid => "SIGNATURE_INVALID",
            Self::EventsUnavailable => "EVENTS_UNAVAILABLE",
            Self::SubscriptionLagged => "SUBSCRIPTION_LAGGED",
            Self::InternalError => "INTERNAL_SERVER_ERROR",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Self::PersistedQueryNotAllowed => "PERSISTED_QUERY_NOT_ALLOWED",
            Self::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            Self::RateLimited => "RATE_LIMITED",
            Self::Overloaded => "OVERLOADED",
            Self::TooManyTokens => "TOO_MANY_TOKENS",
            Self::ParserRecursionLimit => "PARSER_RECURSION_LIMIT",
            Self::QueryTooDeep => "QUERY_TOO_DEEP",
            Self::TooManyAliases => "TOO_MANY_ALIASES",
            Self::TooManyRootFields => "TOO_MANY_ROOT_FIELDS",
            Self::TooManyDirectives => "TOO_MANY_DIRECTIVES",
            Self::TooManyFields => "TOO_MANY_FIELDS",
            Self::ListTooLong => "LIST_TOO_LONG",
            Self::VariablesTooLarge => "VARIABLES_TOO_LARGE",
            Self::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Self::BatchLimitExceeded => "BATCH_LIMIT_EXCEEDED",
            Self::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            Self::CsrfRejected => "CSRF_REJECTED",
            Self::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
        }
    }

    /// The HTTP status for a request that this error stops before execution.
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::BadRequest
            | Self::GraphqlParseFailed
            | Self::GraphqlValidationFailed
            | Self::BadUserInput
            | Self::BatchNotAllowed
            | Self::PurposeRequired
            | Self::UnknownPurpose
            | Self::SignatureInvalid => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::BackendUnavailable | Self::BackendBadResponse | Self::BackendFault => {
                StatusCode::BAD_GATEWAY
            }
            Self::BackendTimeout | Self::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            Self::BackendBusy | Self::SubscriptionLagged => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ConsentRequired | Self::PurposeNotAllowed => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AuditUnavailable | Self::ConsentUnavailable | Self::EventsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Conflict => StatusCode::CONFLICT,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::PersistedQueryNotFound => StatusCode::NOT_FOUND,
            Self::PersistedQueryHashMismatch | Self::PersistedQueryNotSupported => {
                StatusCode::BAD_REQUEST
            }
            Self::PersistedQueryNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyTokens
            | Self::ParserRecursionLimit
            | Self::QueryTooDeep
            | Self::TooManyAliases
            | Self::TooManyRootFields
            | Self::TooManyDirectives
            | Self::TooManyFields
            | Self::ListTooLong
            | Self::VariablesTooLarge
            | Self::QueryTooComplex
            | Self::BatchLimitExceeded
            | Self::IntrospectionDisabled => StatusCode::BAD_REQUEST,
            Self::CsrfRejected => StatusCode::BAD_REQUEST,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
        }
    }
}

/// `text` with its first letter upper-case: error types display lower-case phrases (Rust's
/// convention), while messages shown to people start a sentence.
pub(crate) fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
