//! The HTTP client that delivers webhooks, and the checks that keep it from being turned against
//! the gateway's own network (server-side request forgery).
//!
//! A subscriber chooses the URL the gateway posts to, so a hostile or careless one could point it
//! at the cloud metadata service (169.254.169.254), an admin port on loopback, or a private
//! address behind the firewall. Two layers stop that:
//!
//! - [`check_endpoint`], at registration: an absolute `https` URL with no credentials whose host
//!   is neither a non-public literal address nor a local-only name such as `localhost`.
//! - [`Egress`], at every delivery: literal addresses are classified before sending, and host
//!   names go through a resolver that drops every non-public address. The address checked is the
//!   address connected to, so a name that resolves to a public address at registration and to
//!   `127.0.0.1` later (DNS rebinding) is still refused. No redirect is followed and no proxy is
//!   used, since either would connect somewhere that was never checked.
//!
//! `allow_private` turns both layers off for tests and the demo, whose receivers listen on
//! `http://127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue};

/// The longest endpoint URL accepted; longer ones are more likely abuse than configuration.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// How much of a receiver's answer is read: enough to let the connection be reused for a
/// typical reply, bounded so a receiver cannot make the gateway read without end.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What kind of address an IP is. Only [`AddressClass::Public`] may be connected to unless
/// private endpoints are allowed; the other classes name why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routable unicast address.
    Public,
    /// `0.0.0.0` or `::`: "this host", which connects to the gateway itself.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16` (where cloud metadata services listen) or `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, the carrier-grade NAT range shared inside a provider's network.
    SharedCgnat,
    /// `fc00::/7`, IPv6's private range.
    UniqueLocal,
    /// `224/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Ranges reserved for documentation and examples (`192.0.2/24`, `2001:db8::/32`, …).
    Documentation,
    /// Any other special-purpose or unallocated range (`0/8`, `240/4`, benchmarking, Teredo, …).
    Reserved,
}

impl AddressClass {
    /// Whether an address of this class may be connected to when private endpoints are not allowed.
    pub fn is_public(self) -> bool {
        self == Self::Public
    }

    /// A short name for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedCgnat => "shared (carrier-grade NAT)",
            Self::UniqueLocal => "unique-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        }
    }
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an address for the SSRF guard. IPv4 is a list of the special-purpose ranges
/// (IANA's registry); IPv6 is public only inside `2000::/3`, the global unicast space, less its
/// special ranges, and the forms that embed an IPv4 address (mapped, NAT64, 6to4) take the
/// embedded address's class.
pub fn classify_address(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    ip & mask == u32::from_be_bytes(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let n = u32::from(ip);
    let ranges: &[([u8; 4], u32, AddressClass)] = &[
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, Reserved),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    ranges
        .iter()
        .find(|(net, len, _)| in_v4(n, *net, *len))
        .map_or(Public, |(_, _, class)| *class)
}

fn in_v6(ip: u128, net: u128, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    ip & mask == net & mask
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let n = u128::from(ip);
    if n == 0 {
        return Unspecified;
    }
    if n == 1 {
        return Loopback;
    }
    // `::ffff:a.b.c.d` (IPv4-mapped) and `64:ff9b::a.b.c.d` (NAT64) reach the embedded address.
    if in_v6(n, 0xffff_0000_0000, 96) || in_v6(n, 0x0064_ff9b << 96, 96) {
        // The low 32 bits are the embedded address.
        return classify_v4(Ipv4Addr::from((n & 0xffff_ffff) as u32));
    }
    // 6to4 `2002:aabb:ccdd::/48` routes to the IPv4 address aa.bb.cc.dd.
    if in_v6(n, 0x2002 << 112, 16) {
        return classify_v4(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    let ranges: &[(u128, u32, AddressClass)] = &[
        (0xff00 << 112, 8, Multicast),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfc00 << 112, 7, UniqueLocal),
        (0x2001_0db8 << 96, 32, Documentation),
        (0x3fff << 112, 20, Documentation),
        // IETF protocol assignments, Teredo (which tunnels to any IPv4 address) among them.
        (0x2001 << 112, 23, Reserved),
    ];
    if let Some((_, _, class)) = ranges.iter().find(|(net, len, _)| in_v6(n, *net, *len)) {
        return *class;
    }
    if in_v6(n, 0x2000 << 112, 3) {
        Public
    } else {
        Reserved
    }
}

/// The address in a URL whose host is a literal IP (`http://10.0.0.1/`, `http://[::1]/`); the
/// URL parser has already normalised forms such as `http://2130706433/` to dotted quads.
fn literal_address(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Host names that only ever mean something inside the gateway's own network: loopback names,
/// the reserved local suffixes, and single labels (which the resolver completes with the
/// machine's search domains).
fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    const LOCAL_SUFFIXES: [&str; 5] = [
        ".localhost",
        ".internal",
        ".local",
        ".localdomain",
        ".home.arpa",
    ];
    host == "localhost"
        || !host.contains('.')
        || LOCAL_SUFFIXES.iter().any(|suffix| host.ends_with(suffix))
}

/// Why an endpoint URL was refused at registration. The messages name the rule broken, never
/// the URL itself, whose path may hold a receiver's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Longer than [`MAX_ENDPOINT_LEN`].
    #[error("the endpoint URL is {len} characters long, beyond the {MAX_ENDPOINT_LEN} allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not an absolute URL.
    #[error("the endpoint is not an absolute URL: {reason}")]
    Malformed {
        /// What the URL parser said.
        reason: String,
    },
    /// A scheme other than `http` and `https`.
    #[error("the endpoint URL's scheme `{scheme}` is not http or https")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// `user:password@` in the URL: credentials belong in the signing secret, not the address.
    #[error("the endpoint URL must not carry a user name or password")]
    UserInfo,
    /// No host (cannot happen for http(s) URLs the parser accepts, but is checked anyway).
    #[error("the endpoint URL has no host")]
    MissingHost,
    /// Plain `http` where private endpoints are not allowed: events must travel encrypted.
    #[error("the endpoint URL must use https")]
    HttpsRequired,
    /// A literal address that is not public.
    #[error("the endpoint's address is {class}, not public")]
    NonPublicAddress {
        /// The address's class.
        class: AddressClass,
    },
    /// A host name that only resolves inside the gateway's own network.
    #[error("the endpoint's host `{host}` is a local name, not a public one")]
    LocalHostName {
        /// The host given.
        host: String,
    },
}

/// Checks an endpoint URL when a subscriber is registered, so that a bad one is refused with a
/// reason instead of failing at every delivery. `allow_private` (tests, the demo) accepts
/// plain `http` and local hosts.
pub fn check_endpoint(url: &str, allow_private: bool) -> Result<Url, EndpointError> {
    if url.len() > MAX_ENDPOINT_LEN {
        return Err(EndpointError::TooLong { len: url.len() });
    }
    let parsed = Url::parse(url.trim()).map_err(|error| EndpointError::Malformed {
        reason: error.to_string(),
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(EndpointError::HttpsRequired),
        other => {
            return Err(EndpointError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::UserInfo);
    }
    let host = parsed.host_str().ok_or(EndpointError::MissingHost)?;
    if allow_private {
        return Ok(parsed);
    }
    if let Some(ip) = literal_address(&parsed) {
        let class = classify_address(ip);
        if !class.is_public() {
            return Err(EndpointError::NonPublicAddress { class });
        }
    } else if is_local_name(host) {
        return Err(EndpointError::LocalHostName {
            host: host.to_owned(),
        });
    }
    Ok(parsed)
}

/// Why a webhook delivery attempt failed. No variant carries the URL, the body or a header
/// value, so the error can be logged and stored as a delivery's last error as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The endpoint is refused by policy (a non-public address, directly or through DNS; a
    /// scheme other than http(s); credentials in the URL). Retrying will not help: the
    /// dispatcher flags the subscriber instead.
    #[error("webhook endpoint blocked: {reason}")]
    Blocked {
        /// Which rule refused it.
        reason: String,
    },
    /// No answer within the delivery timeout.
    #[error("the webhook endpoint did not answer within the delivery timeout")]
    Timeout,
    /// The name did not resolve, or the connection (TCP or TLS) could not be made.
    #[error("could not connect to the webhook endpoint: {reason}")]
    Connect {
        /// The cause, from the network stack.
        reason: String,
    },
    /// Anything else: a malformed header, a broken HTTP exchange, a client that did not build.
    #[error("webhook delivery failed: {reason}")]
    Other {
        /// The cause.
        reason: String,
    },
}

impl EgressError {
    /// Whether the endpoint itself is refused (so the subscriber should be flagged rather than
    /// the attempt retried).
    pub fn is_blocked(&self) -> bool {
        matches!(self, Self::Blocked { .. })
    }
}

/// The resolver's refusal, recognised again (by downcasting) in the error reqwest returns.
#[derive(Debug)]
struct BlockedHost {
    host: String,
    class: AddressClass,
}

impl std::fmt::Display for BlockedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host `{}` resolves only to non-public addresses ({})",
            self.host, self.class
        )
    }
}

impl std::error::Error for BlockedHost {}

/// Resolves with the operating system, then keeps only the addresses that may be connected to.
/// reqwest connects to exactly what this returns, which closes the DNS rebinding window.
#[derive(Debug)]
struct PublicOnlyResolver {
    allow_private: bool,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| {
                    let class = classify_address(addr.ip());
                    let keep = allow_private || class.is_public();
                    if !keep {
                        refused.get_or_insert(class);
                    }
                    keep
                })
                .collect();
            if kept.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(class) => Box::new(BlockedHost { host, class }),
                    None => format!("host `{host}` resolved to no address").into(),
                };
                return Err(error);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The webhook client: one connection pool for every subscriber, with the SSRF guard built into
/// name resolution. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Egress {
    client: reqwest::Client,
    allow_private: bool,
}

impl Egress {
    /// Builds the client. `timeout` bounds a whole attempt, from connecting to the end of the
    /// answer, so one slow receiver cannot hold a delivery slot for long.
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, EgressError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would connect to an address that was never checked, and a receiver
            // that moved should be re-registered.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, behind the resolver's back.
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnlyResolver { allow_private }))
            .user_agent(concat!("civicgraph-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| EgressError::Other {
                reason: format!("building the webhook client: {}", error_chain(&error)),
            })?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// Whether private endpoints are allowed (tests, the demo).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Posts one webhook and returns the receiver's status. Any status is `Ok`: a 3xx (not
    /// followed), 4xx or 5xx is for the dispatcher to judge. `headers` are sent as given, with
    /// `content-type: application/json` added unless present. At most 64 KiB of the answer is
    /// read, then the rest is dropped.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, EgressError> {
        self.check_target(url)?;
        let mut request = self.client.post(url.clone());
        let mut has_content_type = false;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| EgressError::Other {
                reason: format!("header `{name}` holds characters a header cannot carry"),
            })?;
            has_content_type |= name.eq_ignore_ascii_case(CONTENT_TYPE.as_str());
            request = request.header(*name, value);
        }
        if !has_content_type {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let mut response = request.body(body).send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let mut read = 0usize;
        while read < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                // The status has arrived, so the receiver has the event; a broken answer body
                // does not undo that.
                Err(error) => {
                    tracing::debug!(status, error = %error.without_url(), "Webhook answer body unread.");
                    break;
                }
            }
        }
        Ok(status)
    }

    /// The checks the resolver cannot make: the scheme, credentials in the URL, and a literal
    /// address (which reqwest connects to without resolving).
    fn check_target(&self, url: &Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Blocked {
                reason: format!("scheme `{}` is not http or https", url.scheme()),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Blocked {
                reason: "the URL carries a user name or password".to_owned(),
            });
        }
        if !self.allow_private
            && let Some(ip) = literal_address(url)
        {
            let class = classify_address(ip);
            if !class.is_public() {
                return Err(EgressError::Blocked {
                    reason: format!("address {ip} is {class}, not public"),
                });
            }
        }
        Ok(())
    }
}

/// The error's sources joined, without the URL reqwest puts in its own message.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        text = if error.is_builder() {
            "the request could not be built".to_owned()
        } else {
            "unknown error".to_owned()
        };
    }
    text
}

/// Sorts a reqwest error into the variants the dispatcher acts on, walking its sources for the
/// resolver's refusal.
fn classify(error: reqwest::Error) -> EgressError {
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<BlockedHost>() {
            return EgressError::Blocked {
                reason: blocked.to_string(),
            };
        }
        source = cause.source();
    }
    if error.is_timeout() {
        EgressError::Timeout
    } else if error.is_connect() {
        EgressError::Connect {
            reason: error_chain(&error),
        }
    } else {
        EgressError::Other {
            reason: error_chain(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::{get, post};
    use tokio::sync::Mutex;

    #[test]
    fn classifies_addresses() {
        use AddressClass::*;
        let table: &[(&str, AddressClass)] = &[
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("93.184.216.34", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.169.254", LinkLocal),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456:789a::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", Reserved),
            ("fec0::1", Reserved),
            ("100::1", Reserved),
            ("::127.0.0.1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:8.8.8.8", Public),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Public),
            ("2002:7f00:1::1", Loopback),
            ("2002:c0a8:101::1", Private),
            ("2002:808:808::1", Public),
        ];
        for (text, expected) in table {
            let ip: IpAddr = text.parse().expect("a test address");
            assert_eq!(classify_address(ip), *expected, "{text}");
        }
    }

    #[test]
    fn checks_endpoints_at_registration() {
        let ok = |url: &str, allow| check_endpoint(url, allow).map(|u| u.to_string());
        assert_eq!(
            ok("https://hooks.agency.example/life-events", false),
            Ok("https://hooks.agency.example/life-events".to_owned())
        );
        assert_eq!(
            ok("https://8.8.8.8:8443/hook", false),
            Ok("https://8.8.8.8:8443/hook".to_owned())
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/hook", true),
            Ok("http://127.0.0.1:8080/hook".to_owned())
        );
        assert_eq!(
            ok("http://localhost:8080/hook", true),
            Ok("http://localhost:8080/hook".to_owned())
        );

        let err = |url: &str, allow| check_endpoint(url, allow).unwrap_err();
        assert_eq!(
            err("http://hooks.agency.example/", false),
            EndpointError::HttpsRequired
        );
        assert_eq!(
            err("ftp://hooks.agency.example/", true),
            EndpointError::UnsupportedScheme {
                scheme: "ftp".into()
            }
        );
        assert_eq!(
            err("file:///etc/passwd", true),
            EndpointError::UnsupportedScheme {
                scheme: "file".into()
            }
        );
        assert!(matches!(
            err("/relative/hook", true),
            EndpointError::Malformed { .. }
        ));
        assert!(matches!(
            err("not a url", false),
            EndpointError::Malformed { .. }
        ));
        assert_eq!(
            err("https://user:pw@hooks.agency.example/", false),
            EndpointError::UserInfo
        );
        assert_eq!(err("http://user@127.0.0.1/", true), EndpointError::UserInfo);
        let long = format!("https://hooks.agency.example/{}", "a".repeat(2048));
        assert_eq!(
            err(&long, false),
            EndpointError::TooLong { len: long.len() }
        );
        for (url, class) in [
            (
                "https://169.254.169.254/latest/meta-data",
                AddressClass::LinkLocal,
            ),
            ("https://10.0.0.5/hook", AddressClass::Private),
            ("https://127.0.0.1/hook", AddressClass::Loopback),
            // The URL parser turns these spellings into 127.0.0.1 before the check sees them.
            ("https://2130706433/hook", AddressClass::Loopback),
            ("https://0x7f.1/hook", AddressClass::Loopback),
            ("https://[::1]/hook", AddressClass::Loopback),
            ("https://[::ffff:a9fe:a9fe]/hook", AddressClass::LinkLocal),
            ("https://[fd00::1]/hook", AddressClass::UniqueLocal),
            ("https://0.0.0.0/hook", AddressClass::Unspecified),
        ] {
            assert_eq!(
                err(url, false),
                EndpointError::NonPublicAddress { class },
                "{url}"
            );
        }
        for (url, host) in [
            ("https://localhost/hook", "localhost"),
            ("https://LOCALHOST./hook", "localhost."),
            ("https://api.localhost/hook", "api.localhost"),
            (
                "https://metadata.google.internal/x",
                "metadata.google.internal",
            ),
            ("https://printer.local/", "printer.local"),
            ("https://router.home.arpa/", "router.home.arpa"),
            ("https://intranet/hook", "intranet"),
        ] {
            assert_eq!(
                err(url, false),
                EndpointError::LocalHostName {
                    host: host.to_owned()
                },
                "{url}"
            );
        }
    }

    #[test]
    fn endpoint_errors_do_not_repeat_the_url() {
        let url = "http://hooks.agency.example/token-abc123";
        let message = check_endpoint(url, false).unwrap_err().to_string();
        assert!(!message.contains("token-abc123"), "{message}");
    }

    /// A receiver on 127.0.0.1:0 that records what reaches it.
    #[derive(Default)]
    struct Received {
        hits: AtomicUsize,
        last: Mutex<Option<(HeaderMap, Bytes)>>,
    }

    async fn receiver() -> (SocketAddr, Arc<Received>) {
        let received = Arc::new(Received::default());
        let hook = {
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                received.hits.fetch_add(1, Ordering::SeqCst);
                *received.last.lock().await = Some((headers, body));
                StatusCode::NO_CONTENT
            }
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .route(
                "/moved",
                post(|| async { Redirect::temporary("/hook").into_response() }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    StatusCode::OK
                }),
            )
            .route(
                "/endless",
                post(|| async {
                    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
                    let stream = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    Body::from_stream(stream)
                }),
            )
            .route("/health", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, received)
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a test URL")
    }

    #[tokio::test]
    async fn delivers_to_a_private_endpoint_when_allowed() {
        let (addr, received) = receiver().await;
        let egress = Egress::new(true, Duration::from_secs(5)).expect("client");
        let headers = [("webhook-id", "evt_1".to_owned())];
        let body = Bytes::from_static(br#"{"type":"JobLost"}"#);
        for host in [addr.to_string(), format!("localhost:{}", addr.port())] {
            let status = egress
                .post(&url(&format!("http://{host}/hook")), &headers, body.clone())
                .await
                .expect("delivered");
            assert_eq!(status, 204);
        }
        assert_eq!(received.hits.load(Ordering::SeqCst), 2);
        let (headers, got) = received.last.lock().await.clone().expect("a request");
        assert_eq!(got, body);
        assert_eq!(headers["webhook-id"], "evt_1");
        assert_eq!(headers["content-type"], "application/json");
    }

    #[tokio::test]
    async fn blocks_loopback_literals_and_names_resolving_to_loopback() {
        let (addr, received) = receiver().await;
        let egress = Egress::new(false, Duration::from_secs(5)).expect("client");
        for target in [
            format!("http://{addr}/hook"),
            format!("http://[::ffff:127.0.0.1]:{}/hook", addr.port()),
            // A name: refused by the resolver, after DNS, not by its spelling.
            format!("http://localhost:{}/hook", addr.port()),
        ] {
            let error = egress
                .post(&url(&target), &[], Bytes::from_static(b"{}"))
                .await
                .unwrap_err();
            assert!(error.is_blocked(), "{target}: {error}");
            let message = error.to_string();
            assert!(message.contains("loopback"), "{message}");
            if target.contains("localhost") {
                assert!(message.contains("resolves only to"), "{message}");
            }
        }
        assert_eq!(received.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_resolver_drops_non_public_addresses() {
        let resolver = PublicOnlyResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().expect("a name");
        let error = match resolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let blocked = error
            .downcast_ref::<BlockedHost>()
            .expect("refused as blocked");
        assert_eq!(blocked.class, AddressClass::Loopback);

        let permissive = PublicOnlyResolver {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = permissive
            .resolve("localhost".parse().expect("a name"))
            .await
            .expect("resolved")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[tokio::test]
    async fn does_not_follow_redirects() {
        let (addr, received) = receiver().await;
        let egress = Egress::new(true, Duration::from_secs(5)).expect("client");
        let status = egress
            .post(
                &url(&format!("http://{addr}/moved")),
                &[],
                Bytes::from_static(b"{}"),
            )
            .await
            .expect("an answer");
        assert_eq!(status, 307);
        assert_eq!(received.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn times_out_on_a_slow_receiver() {
        let (addr, _) = receiver().await;
        let egress = Egress::new(true, Duration::from_millis(300)).expect("client");
        let started = Instant::now();
        let error = egress
            .post(
                &url(&format!("http://{addr}/slow")),
                &[],
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap_err();
        assert_eq!(error, EgressError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn reads_a_bounded_part_of_an_endless_answer() {
        let (addr, _) = receiver().await;
        let egress = Egress::new(true, Duration::from_secs(10)).expect("client");
        let started = Instant::now();
        let status = egress
            .post(
                &url(&format!("http://{addr}/endless")),
                &[],
                Bytes::from_static(b"{}"),
            )
            .await
            .expect("an answer");
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn errors_do_not_carry_the_url_or_body() {
        // Port 1 on loopback: nothing listens, so the connection is refused at once.
        let egress = Egress::new(true, Duration::from_secs(5)).expect("client");
        let error = egress
            .post(
                &url("http://127.0.0.1:1/hook/secret-path-token"),
                &[("webhook-signature", "v1,c2VjcmV0".to_owned())],
                Bytes::from_static(b"{\"citizenId\":\"C0000001\"}"),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, EgressError::Connect { .. }), "{error:?}");
        let message = error.to_string();
        for secret in ["secret-path-token", "c2VjcmV0", "C0000001", "127.0.0.1:1"] {
            assert!(!message.contains(secret), "{message}");
        }

        let bad_header = egress
            .post(
                &url("http://127.0.0.1:1/hook"),
                &[("webhook-id", "evt\n1".to_owned())],
                Bytes::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(bad_header, EgressError::Other { .. }));
        assert!(!bad_header.is_blocked());
    }
}
