//! `[http]` in `civicgraph.toml`: what the gateway's HTTP edge accepts before any GraphQL runs —
//! the CSRF rule, CORS, security headers, and the connection limits that keep slow or
//! oversized clients from holding the listener.
//!
//! Values that would be unsafe or that the HTTP stack cannot honour are refused when the file
//! is read, so the error names `civicgraph.toml:line:column`.

use std::fmt;

use serde::Deserialize;

/// The smallest header buffer hyper accepts; smaller values would panic at start.
pub const MIN_HEADER_BYTES: usize = 8192;

/// The headers whose presence (any value) opens the CSRF gate by default: each forces a
/// browser to send a CORS preflight, so a cross-site page cannot add it unnoticed. Apollo's
/// clients send the last two already.
pub const DEFAULT_PREFLIGHT_HEADERS: [&str; 3] = [
    "x-civicgraph-preflight",
    "apollo-require-preflight",
    "x-apollo-operation-name",
];

/// `[http]`: the HTTP edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpEdgeConfig {
    /// A client that has not sent a request's complete header block within this time is
    /// disconnected (slowloris). It also bounds how long an idle keep-alive connection waits
    /// for its next request.
    pub header_read_timeout_ms: u64,
    /// Most headers one HTTP/1.1 request may carry; more get 431.
    pub max_headers: usize,
    /// Largest request head (request line plus headers) in bytes; larger gets 431 on
    /// HTTP/1.1, and HTTP/2 applies it to the decoded header list. At least 8192.
    pub max_header_bytes: HeaderBytes,
    /// Most requests one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// `Strict-Transport-Security: max-age=…` on every response; 0 sends none. Set it only
    /// when every client reaches the gateway over HTTPS (a TLS proxy in front).
    pub hsts_max_age_s: u64,
    /// Cross-site request forgery prevention (`[http.csrf]`).
    pub csrf: CsrfConfig,
    /// Which other web origins may call the gateway from a browser (`[http.cors]`).
    pub cors: CorsConfig,
}

impl Default for HttpEdgeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            max_headers: 100,
            max_header_bytes: HeaderBytes(32 * 1024),
            http2_max_concurrent_streams: 100,
            hsts_max_age_s: 0,
            csrf: CsrfConfig::default(),
            cors: CorsConfig::default(),
        }
    }
}

/// `[http.csrf]`: a request may run an operation only if a browser would have asked first
/// (a CORS preflight) before sending it cross-site. That holds when its `Content-Type` is not
/// one a plain HTML form can send, or when it carries one of `required_headers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsrfConfig {
    /// Off runs form-like requests too. Only for gateways no browser can reach.
    pub enabled: bool,
    /// Header names any one of which (with any value) lets a request with a simple or absent
    /// `Content-Type` (a GET, say) through.
    pub required_headers: Vec<HeaderName>,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            required_headers: DEFAULT_PREFLIGHT_HEADERS
                .iter()
                .map(|name| HeaderName((*name).to_string()))
                .collect(),
        }
    }
}

/// `[http.cors]`: cross-origin browser access. With no origins listed the gateway sends no
/// CORS headers at all, so only pages it serves itself (GraphiQL) can call it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.gov`) whose pages may call the gateway and open
    /// its WebSocket.
    pub allow_origins: Vec<Origin>,
    /// Let those pages send cookies and read answers to requests carrying them. The gateway
    /// authenticates with bearer tokens, so this stays off unless a proxy in front uses cookies.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_credentials: false,
            max_age_s: 600,
        }
    }
}

/// A web origin, `scheme://host[:port]`, checked when the file is read.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Origin(String);

impl Origin {
    /// The origin as browsers send it in the `Origin` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Origin {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let problem = |why: &str| {
            format!(
                "`{text}` is not an origin ({why}); write `scheme://host` or `scheme://host:port`, e.g. `https://app.example.gov`"
            )
        };
        if text == "*" || text.contains('*') {
            return Err(problem("wildcards are not allowed; list each origin"));
        }
        let Some((scheme, authority)) = text.split_once("://") else {
            return Err(problem("no scheme"));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(problem("the scheme must be `http` or `https`"));
        }
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@'])
            || !authority.is_ascii()
            || authority.bytes().any(|b| b.is_ascii_whitespace())
        {
            return Err(problem(
                "only a host and an optional port may follow the scheme",
            ));
        }
        if authority.bytes().any(|b| b.is_ascii_uppercase()) || scheme != scheme.to_lowercase() {
            return Err(problem("browsers send origins in lower case"));
        }
        Ok(Self(text))
    }
}

/// An HTTP header name, checked and lower-cased when the file is read.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderName(String);

impl HeaderName {
    /// The lower-case name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for HeaderName {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!("`{text}` is not a valid HTTP header name"));
        }
        // A header a browser may set without a preflight would let forged requests through.
        const SAFELISTED: [&str; 5] = [
            "accept",
            "accept-language",
            "content-language",
            "content-type",
            "range",
        ];
        if SAFELISTED.contains(&lower.as_str()) {
            return Err(format!(
                "`{text}` cannot open the CSRF gate: browsers send it cross-site without a preflight"
            ));
        }
        Ok(Self(lower))
    }
}

/// A header-size limit, at least [`MIN_HEADER_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct HeaderBytes(usize);

impl HeaderBytes {
    /// The limit in bytes.
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<u64> for HeaderBytes {
    type Error = String;

    fn try_from(bytes: u64) -> Result<Self, String> {
        // HTTP/2 carries the limit as a u32 setting.
        let max = u64::from(u32::MAX);
        if bytes < MIN_HEADER_BYTES as u64 || bytes > max {
            return Err(format!(
                "max_header_bytes must be between {MIN_HEADER_BYTES} and {max}, not {bytes}"
            ));
        }
        Ok(Self(bytes as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpEdgeConfig, String> {
        #[derive(Deserialize)]
        struct File {
            http: HttpEdgeConfig,
        }
        toml::from_str::<File>(text)
            .map(|file| file.http)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn an_empty_section_has_safe_defaults() {
        let config = parse("[http]\n").expect("valid");
        assert_eq!(
            (
                config.header_read_timeout_ms,
                config.csrf.enabled,
                config.cors.allow_origins.len(),
                config.hsts_max_age_s,
                config
                    .csrf
                    .required_headers
                    .iter()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>(),
            ),
            (10_000, true, 0, 0, DEFAULT_PREFLIGHT_HEADERS.to_vec())
        );
    }

    #[test]
    fn origins_must_be_exact_scheme_host_port() {
        let ok = parse("[http.cors]\nallow_origins = [\"https://app.example.gov\", \"http://127.0.0.1:3000\"]\n")
            .expect("valid origins");
        assert_eq!(ok.cors.allow_origins.len(), 2);
        for bad in [
            "*",
            "https://*.example.gov",
            "app.example.gov",
            "ftp://app.example.gov",
            "https://app.example.gov/",
            "https://App.example.gov",
            "https://",
        ] {
            let error =
                parse(&format!("[http.cors]\nallow_origins = [\"{bad}\"]\n")).expect_err(bad);
            assert!(error.contains("is not an origin"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_safelisted_or_malformed_header_cannot_open_the_csrf_gate() {
        for (bad, why) in [
            ("content-type", "cannot open the CSRF gate"),
            ("Accept", "cannot open the CSRF gate"),
            ("bad header", "not a valid HTTP header name"),
        ] {
            let error =
                parse(&format!("[http.csrf]\nrequired_headers = [\"{bad}\"]\n")).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
        let ok = parse("[http.csrf]\nrequired_headers = [\"X-Requested-With\"]\n").expect("valid");
        assert_eq!(ok.csrf.required_headers[0].as_str(), "x-requested-with");
    }

    #[test]
    fn header_bytes_below_hypers_minimum_are_refused() {
        let error = parse("[http]\nmax_header_bytes = 1024\n").expect_err("too small");
        assert!(error.contains("between 8192"), "{error}");
    }
}
