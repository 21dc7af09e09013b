//! GraphiQL in a real browser: headless Chromium opens the demo's playground, served with
//! GraphiQL's files from the gateway itself (no CDN), a query is set in the editor, the run
//! button is clicked, and the result pane must show what `/graphql` answers for that caller.
//!
//! Chromium is driven over the DevTools protocol (CDP) on a WebSocket, with the WebSocket
//! client the subscription tests already use. GraphiQL's files come from the npm registry once
//! (pinned versions, checked against their sha512) into a cache under the target directory,
//! or from `CIVICGRAPH_TEST_GRAPHIQL_ASSETS` when that names a prepared directory. Skipped only
//! when Chromium is not installed (`/usr/bin/chromium`, or `CIVICGRAPH_TEST_CHROMIUM`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use civicgraph::demo::{self, DemoOptions};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{DEMO_SEED, repo_config};

/// How long a page may take to get where a step waits for it.
const WAIT: Duration = Duration::from_secs(30);

/// The query typed into GraphiQL.
const QUERY: &str = "{ me { id name address { city } } }";

/// One npm tarball and the files the gateway serves from it: (path in the tarball, name).
struct Package {
    url: &'static str,
    /// The registry's `dist.integrity` (sha512, base64).
    sha512: &'static str,
    files: &'static [(&'static str, &'static str)],
}

/// The versions the CDN page's ranges (`graphiql@3`, `react@18`) resolve to today.
const PACKAGES: [Package; 3] = [
    Package {
        url: "https://registry.npmjs.org/graphiql/-/graphiql-3.8.3.tgz",
        sha512: "cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        files: &[
            ("package/graphiql.min.js", "graphiql.min.js"),
            ("package/graphiql.min.css", "graphiql.min.css"),
        ],
    },
    Package {
        url: "https://registry.npmjs.org/react/-/react-18.3.1.tgz",
        sha512: "wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        files: &[(
            "package/umd/react.production.min.js",
            "react.production.min.js",
        )],
    },
    Package {
        url: "https://registry.npmjs.org/react-dom/-/react-dom-18.3.1.tgz",
        sha512: "5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        files: &[(
            "package/umd/react-dom.production.min.js",
            "react-dom.production.min.js",
        )],
    },
];

fn chromium_path() -> Option<PathBuf> {
    std::env::var_os("CIVICGRAPH_TEST_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")))
        .filter(|path| path.is_file())
}

/// A directory with GraphiQL's four files: the prepared one the environment names, else the
/// cache, filled from the npm registry the first time.
async fn graphiql_assets() -> PathBuf {
    if let Some(dir) = std::env::var_os("CIVICGRAPH_TEST_GRAPHIQL_ASSETS") {
        return PathBuf::from(dir);
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql-assets-3.8.3");
    if civicgraph::http::playground::GraphiqlAssets::missing(&cache).is_empty() {
        return cache;
    }
    // Unpacked beside the cache and renamed into place, so a concurrent run never sees half.
    let parent = cache.parent().expect("the cache has a parent");
    std::fs::create_dir_all(parent).expect("create the target's temporary directory");
    let staging = tempfile::tempdir_in(parent).expect("a staging directory");
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(120));
    // The system's CA bundle too: CI networks often re-sign TLS at an egress proxy whose CA
    // is installed there (the tarballs' sha512 is what vouches for the bytes).
    if let Ok(bundle) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
        for certificate in reqwest::Certificate::from_pem_bundle(&bundle).unwrap_or_default() {
            http = http.add_root_certificate(certificate);
        }
    }
    let http = http.build().expect("an HTTP client");
    for package in &PACKAGES {
        let tarball = http
            .get(package.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| {
                panic!(
                    "download {} (or set CIVICGRAPH_TEST_GRAPHIQL_ASSETS to a directory with GraphiQL's files): {e}",
                    package.url
                )
            })
            .bytes()
            .await
            .expect("read the tarball");
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball));
        assert_eq!(
            digest, package.sha512,
            "{} is not the pinned file",
            package.url
        );
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tarball[..]));
        for entry in archive.entries().expect("read the tarball's entries") {
            let mut entry = entry.expect("read a tarball entry");
            let path = entry.path().expect("an entry path").display().to_string();
            if let Some((_, name)) = package.files.iter().find(|(inside, _)| *inside == path) {
                entry
                    .unpack(staging.path().join(name))
                    .expect("unpack a GraphiQL file");
            }
        }
    }
    let staged = staging.keep();
    if std::fs::rename(&staged, &cache).is_err() {
        // Another run got there first; its copy is the same files.
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(
        civicgraph::http::playground::GraphiqlAssets::missing(&cache).is_empty(),
        "the cache {} lacks files",
        cache.display()
    );
    cache
}

/// Headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    child: tokio::process::Child,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: Option<String>,
    next_id: u64,
    /// Console errors, uncaught exceptions and every URL the page requested, for assertions
    /// and for the message when a step times out.
    errors: Vec<String>,
    requested: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(chromium: &Path) -> Self {
        let profile = tempfile::tempdir().expect("a fresh Chromium profile");
        let mut child = tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut seen = Vec::new();
        let endpoint = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_string());
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "chromium did not open its DevTools port:\n{}",
                seen.join("\n")
            )
        });
        // Keep reading so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("connect to chromium's DevTools socket");
        let mut browser = Self {
            child,
            socket,
            session: None,
            next_id: 0,
            errors: Vec::new(),
            requested: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().map(str::to_string);
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Network.enable",
            "Log.enable",
        ] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// Sends one command (to the page, once attached) and waits for its result, noting the
    /// events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send a DevTools command");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(message))) => message,
                other => panic!("no answer to {method}: {other:?}"),
            };
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                if let Some(url) = params["request"]["url"].as_str() {
                    self.requested.push(url.to_string());
                }
            }
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(format!("exception: {}", params["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors.push(format!("console: {}", params["args"]));
            }
            // Browsers ask every site for a favicon; the gateway has none.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && !params["entry"]["url"]
                        .as_str()
                        .is_some_and(|url| url.ends_with("/favicon.ico")) =>
            {
                self.errors.push(format!(
                    "log: {} ({})",
                    params["entry"]["text"], params["entry"]["url"]
                ));
            }
            _ => {}
        }
    }

    /// Evaluates a JavaScript expression in the page; its value as JSON.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it gives something other than `null`/`false`.
    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(expression).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText.slice(0, 800) : ''")
                    .await;
                panic!(
                    "{what}: not within {WAIT:?}.\npage text: {text}\nerrors: {:#?}\nrequested: {:#?}",
                    self.errors, self.requested
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real mouse click (press and release) in the middle of the element `element` (a
    /// JavaScript expression) evaluates to.
    async fn click(&mut self, element: &str) {
        let centre = self
            .wait_for(
                &format!("{element} on the page"),
                &format!(
                    "(() => {{ const e = {element}; if (!e) return null; \
                     const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
                ),
            )
            .await;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": centre[0], "y": centre[1], "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    async fn close(mut self) {
        self.session = None;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            self.next_id += 1;
            let command = json!({ "id": self.next_id, "method": "Browser.close" });
            let _ = self.socket.send(Message::text(command.to_string())).await;
            self.child.wait().await
        })
        .await;
        let _ = self.child.kill().await;
    }
}

/// GraphiQL's query editor (a CodeMirror 5 instance).
const EDITOR: &str = "document.querySelector('.graphiql-query-editor .CodeMirror')";

/// GraphiQL's run button.
const RUN_BUTTON: &str = "document.querySelector('.graphiql-execute-button')";

/// The response pane's JSON, once it holds a result other than `previous`.
async fn shown_result(browser: &mut Browser, previous: &str) -> Value {
    let text = browser
        .wait_for(
            "a result in GraphiQL's response pane",
            &format!(
                "(() => {{ const e = document.querySelector('.graphiql-response .CodeMirror'); \
                 const text = e && e.CodeMirror.getValue(); \
                 return text && text.includes('\"data\"') && text !== {} ? text : null; }})()",
                json!(previous)
            ),
        )
        .await;
    serde_json::from_str(text.as_str().expect("the pane's text")).expect("the pane holds JSON")
}

/// The error codes of a GraphQL response, in order.
fn codes(body: &Value) -> Vec<Value> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_in_headless_chromium_without_a_cdn() {
    let Some(chromium) = chromium_path() else {
        eprintln!(
            "skipped: chromium is not installed (/usr/bin/chromium or CIVICGRAPH_TEST_CHROMIUM)"
        );
        return;
    };
    let assets = graphiql_assets().await;
    let state = tempfile::tempdir().expect("a directory for the demo's state");
    let running = demo::start(&DemoOptions {
        citizens: 10,
        seed: DEMO_SEED,
        port: 0,
        config: repo_config(),
        state_dir: Some(state.path().to_path_buf()),
        graphiql_assets_dir: Some(assets),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts");
    let personas = running
        .personas
        .clone()
        .expect("the shipped configuration has the development issuer");

    let mut browser = Browser::launch(&chromium).await;
    browser
        .call("Page.navigate", json!({ "url": running.graphiql_url() }))
        .await;
    browser
        .wait_for("GraphiQL's query editor", &format!("!!{EDITOR}"))
        .await;
    // The first persona tab (the citizen, with their bearer token in its headers) is open;
    // the query replaces the tab's own.
    browser
        .eval(&format!("{EDITOR}.CodeMirror.setValue({})", json!(QUERY)))
        .await;
    browser.click(RUN_BUTTON).await;
    let shown = shown_result(&mut browser, "").await;

    let direct = crate::support::GatewayClient::new(running.gateway.addr)
        .post_with(
            json!({ "query": QUERY }),
            &[("Authorization", &format!("Bearer {}", personas.citizen))],
        )
        .await;
    assert_eq!(shown, direct.body, "GraphiQL shows what /graphql answers");
    assert_eq!(shown["data"]["me"]["id"], json!(personas.citizen_id));
    assert!(
        shown["data"]["me"]["name"]
            .as_str()
            .is_some_and(|name| !name.is_empty()),
        "{shown}"
    );
    assert!(shown.get("errors").is_none(), "{shown}");

    // The second tab is the benefits agency with its own token: switching to it and running
    // its query shows what that caller may read (and the consent it lacks).
    browser
        .click("document.querySelectorAll('.graphiql-tab')[1]?.querySelector('button')")
        .await;
    let agency_query = browser
        .wait_for(
            "the agency tab's query in the editor",
            &format!(
                "(() => {{ const q = {EDITOR}.CodeMirror.getValue(); return q !== {} && q; }})()",
                json!(QUERY)
            ),
        )
        .await;
    browser.click(RUN_BUTTON).await;
    let first = serde_json::to_string_pretty(&shown).expect("JSON prints");
    let agency_shown = shown_result(&mut browser, &first).await;
    let agency_direct = crate::support::GatewayClient::new(running.gateway.addr)
        .post_with(
            json!({ "query": agency_query }),
            &[("Authorization", &format!("Bearer {}", personas.agency))],
        )
        .await;
    assert_eq!(agency_shown["data"], agency_direct.body["data"]);
    assert_eq!(codes(&agency_shown), codes(&agency_direct.body));
    assert_ne!(
        agency_shown["data"], shown["data"],
        "the tabs act as different callers"
    );

    let served_locally = |file: &str| {
        browser
            .requested
            .iter()
            .any(|url| url.ends_with(&format!("/graphiql/{file}")))
    };
    for (file, _) in civicgraph::http::playground::ASSET_FILES {
        assert!(
            served_locally(file),
            "{file} was not loaded from the gateway"
        );
    }
    let elsewhere: Vec<&String> = browser
        .requested
        .iter()
        .filter(|url| !url.starts_with(&running.gateway.url()) && !url.starts_with("data:"))
        .collect();
    assert!(elsewhere.is_empty(), "the page reached out: {elsewhere:?}");
    assert!(browser.errors.is_empty(), "{:#?}", browser.errors);

    browser.close().await;
    running.shutdown().await.expect("the demo stops cleanly");
}

/// Four small stand-ins for GraphiQL's files, by name.
fn fake_assets() -> Vec<(String, String)> {
    civicgraph::http::playground::ASSET_FILES
        .iter()
        .map(|(file, _)| (format!("graphiql/{file}"), format!("/* {file} */")))
        .collect()
}

#[test]
fn a_graphiql_assets_dir_missing_a_file_is_named_at_its_line() {
    let mut project = crate::support::citizen_project("http://127.0.0.1:9", "http://127.0.0.1:9")
        .server(r#"graphiql_assets_dir = "graphiql""#);
    for (path, contents) in fake_assets()
        .into_iter()
        .filter(|(path, _)| !path.ends_with(".css"))
    {
        project = project.file(&path, contents);
    }
    let project = project.write();
    let problems = match crate::support::check(&project) {
        Ok(_) => panic!("a directory without the stylesheet passed the check"),
        Err(problems) => problems.to_string(),
    };
    assert!(problems.contains("civicgraph.toml:3:"), "{problems}");
    assert!(problems.contains("lacks `graphiql.min.css`"), "{problems}");
    assert!(!problems.contains("graphiql.min.js`"), "{problems}");
}

#[tokio::test]
async fn the_gateway_serves_only_graphiqls_files_from_its_directory() {
    let registry = crate::support::ada_registry().await;
    let mut project = crate::support::citizen_project(&registry.url(), &registry.url())
        .server(r#"graphiql_assets_dir = "graphiql""#)
        .file("graphiql/notes.txt", "not for browsers");
    for (path, contents) in fake_assets() {
        project = project.file(&path, contents);
    }
    let gateway = project.build().await;

    let script = gateway.get("/graphiql/graphiql.min.js", &[]).await;
    assert_eq!(script.status.as_u16(), 200);
    assert_eq!(script.text, "/* graphiql.min.js */");
    assert!(script.content_type().starts_with("text/javascript"));
    let stylesheet = gateway.get("/graphiql/graphiql.min.css", &[]).await;
    assert!(stylesheet.content_type().starts_with("text/css"));
    for path in [
        "/graphiql/notes.txt",
        "/graphiql/..%2Fcivicgraph.toml",
        "/graphiql/",
    ] {
        assert_eq!(gateway.get(path, &[]).await.status.as_u16(), 404, "{path}");
    }
    let page = gateway.get("/", &[]).await;
    assert!(page.text.contains(r#"src="/graphiql/graphiql.min.js""#));
    assert!(!page.text.contains("unpkg.com"), "{}", page.text);
}

#[tokio::test]
async fn without_a_directory_the_page_uses_the_cdn_and_nothing_is_served() {
    let registry = crate::support::ada_registry().await;
    let gateway = crate::support::citizen_project(&registry.url(), &registry.url())
        .build()
        .await;
    let page = gateway.get("/", &[]).await;
    assert!(
        page.text
            .contains("https://unpkg.com/graphiql@3/graphiql.min.js")
    );
    let script = gateway.get("/graphiql/graphiql.min.js", &[]).await;
    assert_eq!(script.status.as_u16(), 404);
}
