//! Cross-site request forgery: which requests may run an operation at all.
//!
//! A web page on another site can make a browser send a "simple" request — a GET, or a POST
//! whose `Content-Type` is `text/plain`, `application/x-www-form-urlencoded` or
//! `multipart/form-data` — with the user's cookies and without asking the target first. The
//! page cannot read the answer, but the operation would still run. Any other `Content-Type`,
//! or any header outside the CORS safelist, makes the browser send a preflight first, which
//! `[http.cors]` answers. So an operation runs only when the request could not have been sent
//! without that preflight (the rule of Apollo Router's CSRF prevention).
//!
//! WebSockets have no preflight; a browser always sends `Origin` on their handshake, so that is
//! checked against the gateway's own origin and the CORS allow-list instead.

use axum::http::{HeaderMap, header};

use crate::config::HttpEdgeConfig;
use crate::error::ErrorCode;

/// The media types an HTML form (or `fetch` without a preflight) can send.
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// Form encodings: never a GraphQL request here (no uploads), so 415 whatever else they carry.
const FORM_CONTENT_TYPES: [&str; 2] = ["application/x-www-form-urlencoded", "multipart/form-data"];

/// Why a request was stopped before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The code (and so the status) the client gets.
    pub(crate) code: ErrorCode,
    /// The sentence the client reads.
    pub(crate) message: &'static str,
}

const FORGERY: Rejection = Rejection {
    code: ErrorCode::CsrfRejected,
    message: "This request has been blocked as a possible cross-site request forgery. Send it \
              with `Content-Type: application/json` or an `X-CivicGraph-Preflight: 1` header.",
};

const FORM: Rejection = Rejection {
    code: ErrorCode::UnsupportedMediaType,
    message: "Form and multipart bodies are not accepted; send JSON with \
              `Content-Type: application/json`.",
};

const CROSS_SITE_SOCKET: Rejection = Rejection {
    code: ErrorCode::OriginNotAllowed,
    message: "WebSockets may only be opened from this gateway's own pages or from an origin \
              in its CORS allow-list.",
};

const COMPRESSED: Rejection = Rejection {
    code: ErrorCode::UnsupportedMediaType,
    message: "Compressed request bodies are not accepted; send the JSON uncompressed.",
};

/// Whether a POST body comes as the bytes it says: a compressed one is refused rather than
/// inflated, so the body limit always applies to what is parsed (no zip bomb).
pub(crate) fn check_body_encoding(headers: &HeaderMap) -> Result<(), Rejection> {
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded { Err(COMPRESSED) } else { Ok(()) }
}

/// The essence (`type/subtype`, lower case) of each `Content-Type` header.
fn media_types(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers.get_all(header::CONTENT_TYPE).iter().map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// Whether a request to `/graphql` (GET or POST) may go on to run an operation.
pub(crate) fn check(edge: &HttpEdgeConfig, headers: &HeaderMap) -> Result<(), Rejection> {
    if media_types(headers).any(|media| FORM_CONTENT_TYPES.contains(&media.as_str())) {
        return Err(FORM);
    }
    if !edge.csrf.enabled {
        return Ok(());
    }
    let mut types = media_types(headers).peekable();
    let simple =
        types.peek().is_none() || types.any(|media| SIMPLE_CONTENT_TYPES.contains(&media.as_str()));
    let preflighted = edge
        .csrf
        .required_headers
        .iter()
        .any(|name| headers.contains_key(name.as_str()));
    if simple && !preflighted {
        return Err(FORGERY);
    }
    Ok(())
}

/// Whether a WebSocket handshake may proceed: without `Origin` (not a browser) or from the
/// gateway's own origin or an allowed one.
pub(crate) fn check_socket_origin(
    edge: &HttpEdgeConfig,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let Ok(origin) = origin.to_str() else {
        return Err(CROSS_SITE_SOCKET);
    };
    if edge
        .cors
        .allow_origins
        .iter()
        .any(|allowed| allowed.as_str().eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    // Same origin: the page came from the host the browser is now connecting to.
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(CROSS_SITE_SOCKET),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn code(pairs: &[(&'static str, &'static str)]) -> Option<ErrorCode> {
        check(&HttpEdgeConfig::default(), &headers(pairs))
            .err()
            .map(|r| r.code)
    }

    #[test]
    fn only_requests_a_browser_would_preflight_pass() {
        assert_eq!(code(&[("content-type", "application/json")]), None);
        assert_eq!(
            code(&[("content-type", "Application/JSON; charset=utf-8")]),
            None
        );
        assert_eq!(code(&[]), Some(ErrorCode::CsrfRejected));
        assert_eq!(
            code(&[("content-type", "text/plain;charset=UTF-8")]),
            Some(ErrorCode::CsrfRejected)
        );
        assert_eq!(
            code(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain")
            ]),
            Some(ErrorCode::CsrfRejected)
        );
        assert_eq!(code(&[("x-civicgraph-preflight", "")]), None);
        assert_eq!(code(&[("apollo-require-preflight", "true")]), None);
        assert_eq!(
            code(&[
                ("content-type", "text/plain"),
                ("x-apollo-operation-name", "Q")
            ]),
            None
        );
    }

    #[test]
    fn forms_are_415_even_with_a_preflight_header() {
        for form in [
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
        ] {
            let mut map = headers(&[("x-civicgraph-preflight", "1")]);
            map.insert(header::CONTENT_TYPE, HeaderValue::from_static(form));
            assert_eq!(
                check(&HttpEdgeConfig::default(), &map).map_err(|r| r.code),
                Err(ErrorCode::UnsupportedMediaType)
            );
        }
    }

    #[test]
    fn compressed_bodies_are_refused_and_identity_is_not() {
        let code = |value: &'static str| {
            check_body_encoding(&headers(&[("content-encoding", value)])).map_err(|r| r.code)
        };
        assert_eq!(code("gzip"), Err(ErrorCode::UnsupportedMediaType));
        assert_eq!(code("identity, br"), Err(ErrorCode::UnsupportedMediaType));
        assert_eq!(code("Identity"), Ok(()));
        assert_eq!(check_body_encoding(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn turning_csrf_off_lets_simple_requests_through() {
        let mut edge = HttpEdgeConfig::default();
        edge.csrf.enabled = false;
        assert_eq!(
            check(&edge, &headers(&[("content-type", "text/plain")])),
            Ok(())
        );
    }

    #[test]
    fn sockets_from_the_own_or_an_allowed_origin_pass() {
        let mut edge = HttpEdgeConfig::default();
        edge.cors.allow_origins = vec![
            crate::config::Origin::try_from("https://app.example.gov".to_string())
                .expect("an origin"),
        ];
        let origin = |origin: &'static str, host: &'static str| {
            check_socket_origin(&edge, &headers(&[("origin", origin), ("host", host)]))
                .map_err(|r| r.code)
        };
        assert_eq!(origin("http://127.0.0.1:4000", "127.0.0.1:4000"), Ok(()));
        assert_eq!(origin("https://app.example.gov", "gw.example.gov"), Ok(()));
        assert_eq!(
            origin("https://evil.example", "127.0.0.1:4000"),
            Err(ErrorCode::OriginNotAllowed)
        );
        assert_eq!(
            origin("null", "127.0.0.1:4000"),
            Err(ErrorCode::OriginNotAllowed)
        );
        assert_eq!(check_socket_origin(&edge, &HeaderMap::new()), Ok(()));
    }
}
