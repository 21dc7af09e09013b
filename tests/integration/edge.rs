//! The HTTP edge, one test per BAD_INPUTS row it covers (4, 5, 6, 8, 9, 11 and the 431s), plus
//! CORS, the security headers, GraphiQL's Content-Security-Policy and the WebSocket origin check.
//! Every rejection is checked for its exact status and `extensions.code`, and for reaching no
//! backend.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::{
    Answer, PREFLIGHT_HEADER, Reply, RunningAgency, TestGateway, TestGatewayBuilder, ada_account,
    ada_registry, citizen_project, tax_agency,
};

const QUERY: &str = r#"{ citizen(id: "C0000001") { name taxAccount { balance } } }"#;

/// The longest any exchange here may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

/// Ada's registry and tax agency, which record every call, and a project over them.
async fn agencies() -> (RunningAgency, RunningAgency) {
    (
        ada_registry().await,
        tax_agency(Reply::json(200, ada_account())).await,
    )
}

fn project(registry: &RunningAgency, tax: &RunningAgency) -> TestGatewayBuilder {
    citizen_project(&registry.url(), &tax.url())
}

/// Calls the two agencies received.
fn backend_calls(registry: &RunningAgency, tax: &RunningAgency) -> usize {
    registry.requests().len() + tax.requests().len()
}

/// `(status, extensions.code of the first error)`.
fn rejection(answer: &Answer) -> (u16, Value) {
    (
        answer.status.as_u16(),
        answer.body["errors"][0]["extensions"]["code"].clone(),
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client")
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test]
async fn row_4_a_text_plain_post_with_a_cookie_is_a_csrf_rejection_and_runs_nothing() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;

    let answer = gateway
        .post_body(
            json!({ "query": QUERY }).to_string(),
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("cookie", "session=a-citizens-session"),
            ],
        )
        .await;

    assert_eq!(
        (rejection(&answer), backend_calls(&registry, &tax)),
        ((400, json!("CSRF_REJECTED")), 0)
    );
    assert!(
        answer.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cross-site request forgery")),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn row_5_multipart_and_form_posts_are_415_with_or_without_a_preflight_header() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;
    let body = json!({ "query": QUERY }).to_string();

    let mut outcomes = Vec::new();
    for content_type in [
        "multipart/form-data; boundary=----x",
        "application/x-www-form-urlencoded",
    ] {
        for extra in [None, Some((PREFLIGHT_HEADER, "1"))] {
            let mut headers = vec![("content-type", content_type)];
            headers.extend(extra);
            outcomes.push(rejection(&gateway.post_body(body.clone(), &headers).await));
        }
    }

    assert_eq!(
        (outcomes, backend_calls(&registry, &tax)),
        (vec![(415, json!("UNSUPPORTED_MEDIA_TYPE")); 4], 0)
    );
}

#[tokio::test]
async fn row_6_a_get_mutation_is_405_with_the_preflight_header_and_a_csrf_rejection_without() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;
    let mutation = r#"mutation { changeAddress(id: "C0000001") { id } }"#;

    let with_header = gateway.get_query(mutation).await;
    let without = answer(
        client()
            .get(gateway.url("/graphql"))
            .query(&[("query", mutation)]),
    )
    .await;

    assert_eq!(
        (
            rejection(&with_header),
            with_header.header("allow").to_string(),
            rejection(&without),
            backend_calls(&registry, &tax)
        ),
        (
            (405, json!("METHOD_NOT_ALLOWED")),
            "POST".to_string(),
            (400, json!("CSRF_REJECTED")),
            0
        )
    );
}

#[tokio::test]
async fn row_8_a_get_without_content_type_or_preflight_header_is_a_csrf_rejection() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;

    let mut outcomes = Vec::new();
    for accept in [None, Some("application/graphql-response+json")] {
        let mut request = client()
            .get(gateway.url("/graphql"))
            .query(&[("query", QUERY)]);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        outcomes.push(rejection(&answer(request).await));
    }
    let calls_before_the_allowed_get = backend_calls(&registry, &tax);
    let allowed = gateway.get_query(QUERY).await;

    assert_eq!(
        (outcomes, calls_before_the_allowed_get),
        (vec![(400, json!("CSRF_REJECTED")); 2], 0)
    );
    assert_eq!(
        allowed.body["data"]["citizen"]["name"], "Ada Lovelace",
        "the same GET with the preflight header runs: {}",
        allowed.text
    );
}

#[tokio::test]
async fn an_apollo_clients_preflight_headers_open_the_gate_too() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;

    let mut statuses = Vec::new();
    for header in ["apollo-require-preflight", "x-apollo-operation-name"] {
        let request = client()
            .get(gateway.url("/graphql"))
            .header(header, "Q")
            .query(&[("query", r#"{ citizen(id: "C0000001") { name } }"#)]);
        statuses.push(answer(request).await.status.as_u16());
    }

    assert_eq!(statuses, [200, 200]);
}

#[tokio::test]
async fn configured_preflight_headers_replace_the_defaults_and_csrf_can_be_turned_off() {
    let (registry, tax) = agencies().await;
    let custom = project(&registry, &tax)
        .http(r#"csrf.required_headers = ["X-Requested-With"]"#)
        .build()
        .await;
    let off = project(&registry, &tax)
        .http("csrf.enabled = false")
        .build()
        .await;
    let get = |gateway: &TestGateway, header: Option<&'static str>| {
        let mut request = client()
            .get(gateway.url("/graphql"))
            .query(&[("query", r#"{ citizen(id: "C0000001") { name } }"#)]);
        if let Some(header) = header {
            request = request.header(header, "1");
        }
        request
    };

    let outcomes = (
        rejection(&answer(get(&custom, Some(PREFLIGHT_HEADER))).await),
        answer(get(&custom, Some("x-requested-with")))
            .await
            .status
            .as_u16(),
        answer(get(&off, None)).await.status.as_u16(),
    );

    assert_eq!(outcomes, ((400, json!("CSRF_REJECTED")), 200, 200));
}

#[tokio::test]
async fn a_compressed_body_is_415_and_runs_nothing() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;

    let answer = gateway
        .post_body(
            // Not really gzip: the gateway must refuse it before looking.
            json!({ "query": QUERY }).to_string(),
            &[("content-encoding", "gzip")],
        )
        .await;

    assert_eq!(
        (rejection(&answer), backend_calls(&registry, &tax)),
        ((415, json!("UNSUPPORTED_MEDIA_TYPE")), 0)
    );
}

/// Reads from `stream` until the peer closes it (EOF or reset); what was read.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn row_9_a_slowloris_client_is_disconnected_at_the_header_read_timeout_while_others_are_served()
 {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax)
        .http("header_read_timeout_ms = 1000")
        .build()
        .await;
    let head =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: slowly-slowly-slowly\r\n\r\n";

    let mut stream = TcpStream::connect(gateway.addr())
        .await
        .expect("connect to the gateway");
    let (mut reader, mut writer) = stream.split();
    let mut sent = 0;
    let trickle = async {
        // One byte every 250 ms: the whole head would take about 18 s.
        for byte in head.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let closed = async {
        let mut buffer = [0_u8; 1024];
        let mut answer = Vec::new();
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return answer,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    };
    // A well-behaved client is served while the slow one is still trickling.
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway
            .post(r#"{ citizen(id: "C0000001") { name } }"#)
            .await
    };
    let (answer, served) = tokio::time::timeout(WAIT, async {
        tokio::select! {
            answer = closed => (answer, meanwhile.await),
            () = trickle => panic!("the whole head was sent without the connection closing"),
        }
    })
    .await
    .expect("the slow connection is closed within the test's wait");

    assert!(
        sent < head.len(),
        "closed only after the whole head: {sent} bytes"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 200 "),
        "the slow request was never served: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        served.body,
        json!({"data": {"citizen": {"name": "Ada Lovelace"}}})
    );
    drop(stream);
}

/// The status of the answer to a raw request, or 0 when the connection closed without one.
async fn raw_status(gateway: &TestGateway, request: &[u8]) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(gateway.addr()).await.expect("connect");
        let _ = stream.write_all(request).await;
        read_until_closed(&mut stream).await
    };
    let bytes = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the gateway answers in time");
    String::from_utf8_lossy(&bytes)
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn row_431_too_many_or_too_large_headers_are_refused_before_any_handler() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax)
        .http("max_headers = 20")
        .http("max_header_bytes = 8192")
        .build()
        .await;
    let body = json!({ "query": QUERY }).to_string();
    let request = |extra: &str| {
        format!(
            "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    let many: String = (0..30).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let large = format!("X-Large: {}\r\n", "a".repeat(9000));

    let too_many = raw_status(&gateway, request(&many).as_bytes()).await;
    let too_large = raw_status(&gateway, request(&large).as_bytes()).await;
    let normal = raw_status(&gateway, request("X-Small: 1\r\n").as_bytes()).await;

    assert_eq!(
        (too_many, too_large, normal, backend_calls(&registry, &tax)),
        (431, 431, 200, 2),
        "only the normal request reaches the registry and the tax agency"
    );
}

#[test]
fn row_11_the_locked_h2_is_patched_against_the_continuation_flood() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("read Cargo.lock");
    let lock: toml::Table = toml::from_str(&lock).expect("Cargo.lock is TOML");
    let versions: Vec<Vec<u64>> = lock["package"]
        .as_array()
        .expect("a package list")
        .iter()
        .filter(|package| package["name"].as_str() == Some("h2"))
        .map(|package| {
            package["version"]
                .as_str()
                .expect("a version")
                .split(['.', '-', '+'])
                .take(3)
                .map(|part| part.parse().expect("a numeric version part"))
                .collect()
        })
        .collect();

    assert!(!versions.is_empty(), "h2 is in the lock file");
    for version in versions {
        // RUSTSEC-2024-0332 is fixed in 0.4.4 (and 0.3.26 on the old line, which hyper 1 does
        // not use).
        assert!(
            version >= vec![0, 4, 4],
            "h2 {version:?} is older than 0.4.4"
        );
    }
}

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a small payload");
    let mut bytes = length.to_be_bytes()[1..].to_vec();
    bytes.push(kind);
    bytes.push(flags);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test]
async fn row_11_an_http2_continuation_flood_gets_goaway_and_the_connection_closes() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;
    // One literal header field (`x-a: a`, not indexed) per frame.
    let field = b"\x00\x03x-a\x01a";
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    flood.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    flood.extend(frame(0x1, 0x1, 1, field)); // HEADERS, END_STREAM, no END_HEADERS
    for _ in 0..50 {
        flood.extend(frame(0x9, 0, 1, field)); // CONTINUATION, never END_HEADERS
    }

    let exchange = async {
        let mut stream = TcpStream::connect(gateway.addr()).await.expect("connect");
        let _ = stream.write_all(&flood).await;
        read_until_closed(&mut stream).await
    };
    let bytes = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the gateway closes the connection");
    let mut goaway = None;
    let mut rest = bytes.as_slice();
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let Some(payload) = rest.get(9..9 + length) else {
            break;
        };
        if rest[3] == 0x7 && payload.len() >= 8 {
            goaway = Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
        rest = &rest[9 + length..];
    }

    // 0xb: ENHANCE_YOUR_CALM, h2's answer to too many CONTINUATION frames.
    assert_eq!((goaway, backend_calls(&registry, &tax)), (Some(0xb), 0));
    let still_serving = gateway
        .post(r#"{ citizen(id: "C0000001") { name } }"#)
        .await;
    assert_eq!(still_serving.status, 200);
}

async fn preflight(gateway: &TestGateway, origin: &str) -> Answer {
    answer(
        client()
            .request(reqwest::Method::OPTIONS, gateway.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization,x-purpose",
            ),
    )
    .await
}

#[tokio::test]
async fn cors_answers_preflights_for_listed_origins_only() {
    let (registry, tax) = agencies().await;
    let listed = project(&registry, &tax)
        .http(r#"cors.allow_origins = ["https://app.example.gov"]"#)
        .http("cors.max_age_s = 120")
        .build()
        .await;
    let unlisted = project(&registry, &tax).build().await;

    let allowed = preflight(&listed, "https://app.example.gov").await;
    let other_site = preflight(&listed, "https://evil.example").await;
    let no_list = preflight(&unlisted, "https://app.example.gov").await;
    let post = answer(
        client()
            .post(listed.url("/graphql"))
            .header("origin", "https://app.example.gov")
            .header("content-type", "application/json")
            .body(json!({ "query": r#"{ citizen(id: "C0000001") { name } }"# }).to_string()),
    )
    .await;

    let allow_headers = allowed.header("access-control-allow-headers").to_string();
    assert_eq!(
        (
            allowed.status.as_u16(),
            allowed.header("access-control-allow-origin"),
            allowed.header("access-control-allow-methods"),
            allowed.header("access-control-max-age"),
        ),
        (200, "https://app.example.gov", "GET,POST,OPTIONS", "120")
    );
    for header in [
        "content-type",
        "authorization",
        "x-purpose",
        PREFLIGHT_HEADER,
        "apollo-require-preflight",
        "x-request-id",
        "idempotency-key",
    ] {
        assert!(
            allow_headers.contains(header),
            "{header} in {allow_headers}"
        );
    }
    assert_eq!(
        (
            other_site.header("access-control-allow-origin"),
            no_list.header("access-control-allow-origin"),
            post.header("access-control-allow-origin"),
            post.status.as_u16(),
        ),
        ("", "", "https://app.example.gov", 200)
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_json_is_never_stored() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;
    let with_hsts = project(&registry, &tax)
        .http("hsts_max_age_s = 31536000")
        .build()
        .await;

    let answers = [
        gateway
            .post(r#"{ citizen(id: "C0000001") { name } }"#)
            .await,
        gateway
            .post_body("{}", &[("content-type", "text/plain")])
            .await,
        gateway.get("/healthz", &[]).await,
        gateway.get("/no-such-page", &[]).await,
    ];

    for answer in &answers {
        assert_eq!(
            (
                answer.header("x-content-type-options"),
                answer.header("referrer-policy"),
                answer.header("x-frame-options"),
                answer.header("cache-control"),
                answer.header("content-security-policy"),
                answer.header("strict-transport-security"),
            ),
            (
                "nosniff",
                "no-referrer",
                "DENY",
                "no-store",
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                "",
            ),
            "{} {}",
            answer.status,
            answer.text
        );
    }
    assert_eq!(
        with_hsts
            .get("/healthz", &[])
            .await
            .header("strict-transport-security"),
        "max-age=31536000; includeSubDomains"
    );
}

/// The SHA-256 CSP source of each inline JavaScript block in a page.
fn inline_script_hashes(html: &str) -> Vec<String> {
    html.split("<script")
        .skip(1)
        .filter_map(|rest| {
            let (tag, rest) = rest.split_once('>')?;
            if tag.contains("src=") || tag.contains("application/json") {
                return None;
            }
            let content = rest.split("</script>").next()?;
            let digest = Sha256::digest(content.as_bytes());
            Some(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ))
        })
        .collect()
}

#[tokio::test]
async fn graphiql_still_loads_with_a_policy_that_allows_exactly_its_scripts() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax).build().await;

    let on_root = gateway.get("/", &[("accept", "text/html")]).await;
    let on_graphql = gateway
        .get("/graphql", &[("accept", "text/html,application/xhtml+xml")])
        .await;

    for page in [&on_root, &on_graphql] {
        let csp = page.header("content-security-policy");
        let hashes = inline_script_hashes(&page.text);
        assert_eq!(
            (
                page.status.as_u16(),
                page.content_type().starts_with("text/html"),
                page.text.to_lowercase().contains("graphiql"),
                hashes.len(),
            ),
            (200, true, true, 1),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("script-src {} https://unpkg.com;", hashes[0]))
                || csp.contains(&format!("script-src https://unpkg.com {};", hashes[0])),
            "the boot script's hash and the CDN, nothing else: {csp}"
        );
        for part in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{part} in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(page.header("x-content-type-options"), "nosniff");
    }
}

/// The status of a WebSocket handshake on `/graphql` with these headers (101 when it opens).
async fn socket_status(gateway: &TestGateway, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = format!("ws://{}/graphql", gateway.addr())
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake is answered in time");
    match result {
        Ok((_, response)) => (response.status().as_u16(), Value::Null),
        Err(tungstenite::Error::Http(response)) => {
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (
                response.status().as_u16(),
                body["errors"][0]["extensions"]["code"].clone(),
            )
        }
        Err(other) => panic!("the handshake failed: {other}"),
    }
}

#[tokio::test]
async fn a_websocket_from_another_site_is_refused_and_from_the_own_or_a_listed_origin_opens() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax)
        .http(r#"cors.allow_origins = ["https://app.example.gov"]"#)
        .build()
        .await;
    let own = format!("http://{}", gateway.addr());

    let outcomes = [
        socket_status(&gateway, &[("origin", "https://evil.example")]).await,
        socket_status(&gateway, &[("origin", &own)]).await,
        socket_status(&gateway, &[("origin", "https://app.example.gov")]).await,
        socket_status(&gateway, &[]).await,
    ];

    assert_eq!(
        (outcomes, backend_calls(&registry, &tax)),
        (
            [
                (403, json!("ORIGIN_NOT_ALLOWED")),
                (101, Value::Null),
                (101, Value::Null),
                (101, Value::Null),
            ],
            0
        )
    );
}
