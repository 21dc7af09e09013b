//! The response side of the HTTP edge: CORS for the origins `[http.cors]` lists, the standard
//! security headers on every answer, and a Content-Security-Policy for the GraphiQL page that
//! allows exactly the scripts, styles and hosts that page uses.
//!
//! JSON answers get `default-src 'none'` (nothing in them may ever run) and `no-store` (they
//! carry personal data, which no shared or browser cache should keep).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::HttpEdgeConfig;

/// The policy of every answer that is not the GraphiQL page.
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Headers a cross-origin page may send beyond the CSRF gate's own.
const CORS_REQUEST_HEADERS: [&str; 5] = [
    "content-type",
    "authorization",
    crate::connectors::context::PURPOSE_HEADER,
    super::REQUEST_ID_HEADER,
    "idempotency-key",
];

/// Wraps the router in CORS (only when origins are listed) and the security headers, outermost
/// so that every answer — preflights, 404s and 413s included — carries them.
pub(crate) fn apply(router: Router, edge: &HttpEdgeConfig) -> Router {
    let mut router = router;
    if let Some(cors) = cors_layer(edge) {
        router = router.layer(cors);
    }
    if edge.hsts_max_age_s > 0 {
        let value = format!("max-age={}; includeSubDomains", edge.hsts_max_age_s);
        if let Ok(value) = HeaderValue::from_str(&value) {
            router = router.layer(SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                value,
            ));
        }
    }
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

/// tower-http's CORS for the listed origins; `None` when none are, so no CORS header is ever
/// sent and browsers keep other sites out.
fn cors_layer(edge: &HttpEdgeConfig) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = edge
        .cors
        .allow_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.as_str()).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let headers: Vec<HeaderName> = CORS_REQUEST_HEADERS
        .iter()
        .copied()
        .chain(edge.csrf.required_headers.iter().map(|h| h.as_str()))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(headers)
            .expose_headers([
                HeaderName::from_static(super::REQUEST_ID_HEADER),
                header::RETRY_AFTER,
            ])
            .allow_credentials(edge.cors.allow_credentials)
            .max_age(Duration::from_secs(edge.cors.max_age_s)),
    )
}

/// The GraphiQL page with a policy made for it.
pub(crate) fn graphiql_page(html: &str) -> Response {
    let mut response = Html(html.to_string()).into_response();
    if let Ok(policy) = HeaderValue::from_str(&page_csp(html)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// A Content-Security-Policy allowing the page's own inline scripts and styles by their
/// SHA-256 hashes, and its external scripts, stylesheets and icon by their origins: nothing an
/// injected `<script>` or a look-alike CDN path could use. Requests go to the gateway itself
/// (`'self'` covers its WebSocket too).
pub(crate) fn page_csp(html: &str) -> String {
    let mut scripts = BTreeSet::new();
    let mut styles = BTreeSet::new();
    let mut images = BTreeSet::from(["'self'".to_string(), "data:".to_string()]);
    let mut fonts = BTreeSet::from(["data:".to_string()]);
    for element in elements(html, "script") {
        match attribute(element.open_tag, "src") {
            Some(src) => scripts.extend(origin_of(src)),
            None if is_javascript(element.open_tag) => {
                scripts.insert(hash(element.content));
            }
            None => {}
        }
    }
    for element in elements(html, "style") {
        styles.insert(hash(element.content));
    }
    for link in open_tags(html, "link") {
        let (Some(rel), Some(href)) = (attribute(link, "rel"), attribute(link, "href")) else {
            continue;
        };
        match rel.to_ascii_lowercase().as_str() {
            "stylesheet" => {
                if let Some(origin) = origin_of(href) {
                    styles.insert(origin.clone());
                    fonts.insert(origin);
                }
            }
            "icon" | "shortcut icon" => images.extend(origin_of(href)),
            _ => {}
        }
    }
    let list = |set: &BTreeSet<String>| {
        if set.is_empty() {
            "'none'".to_string()
        } else {
            set.iter().cloned().collect::<Vec<_>>().join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src {}; font-src {}; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        list(&scripts),
        list(&styles),
        list(&images),
        list(&fonts),
    )
}

struct Element<'a> {
    open_tag: &'a str,
    content: &'a str,
}

/// Every `<name …>content</name>` in `html` (lower-case tags, as the pages are written).
fn elements<'a>(html: &'a str, name: &str) -> Vec<Element<'a>> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        if !after.starts_with([' ', '>', '\n', '\t', '\r']) {
            rest = after;
            continue;
        }
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let body = &after[tag_end + 1..];
        let Some(content_end) = body.find(&close) else {
            break;
        };
        found.push(Element {
            open_tag: &after[..tag_end],
            content: &body[..content_end],
        });
        rest = &body[content_end + close.len()..];
    }
    found
}

/// The attribute text of every `<name …>` tag.
fn open_tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    html.match_indices(&open)
        .filter_map(|(start, _)| {
            let after = &html[start + open.len()..];
            after
                .starts_with([' ', '\n', '\t', '\r'])
                .then(|| after.find('>').map(|end| &after[..end]))
                .flatten()
        })
        .collect()
}

/// A double-quoted attribute's value.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let mut search = tag;
    loop {
        let at = search.find(&needle)?;
        let preceded_by_space = at == 0
            || search[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
        let value = &search[at + needle.len()..];
        if preceded_by_space {
            return value.find('"').map(|end| &value[..end]);
        }
        search = value;
    }
}

/// Whether an inline `<script>` runs (a JSON data block does not, and needs no hash).
fn is_javascript(open_tag: &str) -> bool {
    attribute(open_tag, "type").is_none_or(|t| {
        matches!(
            t.to_ascii_lowercase().as_str(),
            "text/javascript" | "application/javascript" | "module"
        )
    })
}

/// `https://host[:port]` of an absolute or protocol-relative URL; relative URLs are `'self'`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest)
    } else if let Some(rest) = url.strip_prefix("//") {
        ("https", rest)
    } else {
        return Some("'self'".to_string());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

fn hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_playground_page_policy_names_its_hashes_and_cdn() {
        let html = super::super::playground::page(
            "/graphql",
            &[],
            super::super::playground::AssetSource::Cdn,
        );
        let csp = page_csp(&html);
        let inline = elements(&html, "script")
            .into_iter()
            .find(|e| e.open_tag.trim().is_empty())
            .expect("the inline boot script");
        assert!(csp.contains(&hash(inline.content)), "{csp}");
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(csp.contains("https://unpkg.com"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        // One hash for the boot script, none for the JSON data block.
        assert_eq!(
            csp.split("script-src ")
                .nth(1)
                .and_then(|s| s.split(';').next())
                .map(|s| s.matches("'sha256-").count()),
            Some(1),
            "{csp}"
        );
    }

    #[test]
    fn the_stock_graphiql_page_policy_allows_its_icon_host() {
        let html = async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish();
        let csp = page_csp(&html);
        assert!(csp.contains("img-src"), "{csp}");
        assert!(csp.contains("https://graphql.org"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn origins_are_taken_from_absolute_and_protocol_relative_urls() {
        assert_eq!(
            origin_of("https://unpkg.com/graphiql@3/x.js").as_deref(),
            Some("https://unpkg.com")
        );
        assert_eq!(
            origin_of("//unpkg.com/x.js").as_deref(),
            Some("https://unpkg.com")
        );
        assert_eq!(origin_of("/static/x.js").as_deref(), Some("'self'"));
    }
}
