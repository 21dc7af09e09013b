//! GraphiQL with one tab per persona: the same query as a citizen, as an agency client and as
//! an operator, each tab carrying its own `Authorization` header, so a developer sees what each
//! caller may read and why (the denials name the category and purpose).
//!
//! Subscriptions run over a WebSocket on the same endpoint (`ws://` or `wss://`, from the page's
//! own address); a tab's headers travel in the socket's `connection_init` payload, since a
//! browser cannot set headers on a WebSocket.
//!
//! The page needs four browser files (React, ReactDOM, GraphiQL's script and stylesheet). By
//! default the browser fetches them from unpkg.com; where that is unreachable (an air-gapped
//! network, a locked-down CI) `[server] graphiql_assets_dir` names a local directory holding
//! them, and the gateway serves them itself on `/graphiql/{file}`, read once at start-up. They
//! are too large (about 4 MB) to embed in the binary or the repository.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

/// One GraphiQL tab: a query and the headers it is sent with.
#[derive(Debug, Clone, Serialize)]
pub struct PlaygroundTab {
    /// The query text (a leading `#` comment names the persona).
    pub query: String,
    /// Request headers, e.g. `Authorization: Bearer …`.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The files the page loads, under the names `/graphiql/{file}` serves them by (and a
/// `graphiql_assets_dir` must hold), with their media types. From the npm packages
/// `react@18` and `react-dom@18` (`umd/`) and `graphiql@3` (the package root).
pub const ASSET_FILES: [(&str, &str); 4] = [
    ("react.production.min.js", "text/javascript; charset=utf-8"),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    ("graphiql.min.js", "text/javascript; charset=utf-8"),
    ("graphiql.min.css", "text/css; charset=utf-8"),
];

/// Where the browser fetches GraphiQL's files from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetSource {
    /// unpkg.com: nothing to install, but the browser must reach the internet.
    Cdn,
    /// The gateway's own `/graphiql/{file}` (a `graphiql_assets_dir` is configured).
    Gateway,
}

impl AssetSource {
    /// The URL of one of [`ASSET_FILES`].
    fn url(self, file: &str) -> String {
        match self {
            Self::Gateway => format!("/graphiql/{file}"),
            Self::Cdn => match file {
                "react.production.min.js" => {
                    "https://unpkg.com/react@18/umd/react.production.min.js".to_string()
                }
                "react-dom.production.min.js" => {
                    "https://unpkg.com/react-dom@18/umd/react-dom.production.min.js".to_string()
                }
                other => format!("https://unpkg.com/graphiql@3/{other}"),
            },
        }
    }
}

/// GraphiQL's browser files, read from a `graphiql_assets_dir` once at start-up so serving
/// them touches no disk and a missing file stops the start, not a developer's page.
#[derive(Clone)]
pub struct GraphiqlAssets {
    files: Arc<HashMap<&'static str, Bytes>>,
}

impl std::fmt::Debug for GraphiqlAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: HashMap<_, _> = self.files.iter().map(|(k, v)| (*k, v.len())).collect();
        f.debug_struct("GraphiqlAssets")
            .field("bytes", &sizes)
            .finish()
    }
}

/// A `graphiql_assets_dir` file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read GraphiQL's `{file}` in {dir}: {source}")]
pub struct LoadGraphiqlAssetsError {
    /// The directory, as configured and resolved.
    pub dir: String,
    /// Which of [`ASSET_FILES`].
    pub file: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl GraphiqlAssets {
    /// Reads every one of [`ASSET_FILES`] from `dir`.
    pub fn load(dir: &Path) -> Result<Self, LoadGraphiqlAssetsError> {
        let mut files = HashMap::new();
        for (file, _) in ASSET_FILES {
            let bytes =
                std::fs::read(dir.join(file)).map_err(|source| LoadGraphiqlAssetsError {
                    dir: dir.display().to_string(),
                    file,
                    source,
                })?;
            files.insert(file, Bytes::from(bytes));
        }
        Ok(Self {
            files: Arc::new(files),
        })
    }

    /// Which of [`ASSET_FILES`] `dir` lacks, for `civicgraph check` to name them.
    pub fn missing(dir: &Path) -> Vec<&'static str> {
        ASSET_FILES
            .iter()
            .map(|(file, _)| *file)
            .filter(|file| !dir.join(file).is_file())
            .collect()
    }
}

/// `GET /graphiql/{file}`: one of GraphiQL's files, when the gateway serves them; 404 for
/// any other name (nothing else in the directory is reachable).
pub(crate) async fn asset(
    State(state): State<super::AppState>,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let found = state.graphiql_assets.as_ref().and_then(|assets| {
        let (name, media_type) = ASSET_FILES.iter().find(|(name, _)| *name == file)?;
        Some((assets.files.get(name)?.clone(), *media_type))
    });
    match found {
        Some((bytes, media_type)) if state.server.graphiql => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        _ => (StatusCode::NOT_FOUND, "Not found.").into_response(),
    }
}

/// The GraphiQL page for `endpoint` with `tabs` open (GraphiQL's own default tab when there
/// are none), loading its files from `assets`.
pub fn page(endpoint: &str, tabs: &[PlaygroundTab], assets: AssetSource) -> String {
    #[derive(Serialize)]
    struct Tab<'a> {
        query: &'a str,
        headers: String,
    }
    let tabs: Vec<Tab<'_>> = tabs
        .iter()
        .map(|tab| Tab {
            query: &tab.query,
            headers: serde_json::to_string_pretty(&tab.headers).unwrap_or_default(),
        })
        .collect();
    // Embedded as JSON data, with `<` escaped so no value can end the script element.
    let data = serde_json::json!({ "endpoint": endpoint, "tabs": tabs })
        .to_string()
        .replace('<', "\\u003c");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>CivicGraph</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="{css}">
<script crossorigin src="{react}"></script>
<script crossorigin src="{react_dom}"></script>
<script crossorigin src="{graphiql}"></script>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script id="civicgraph-playground" type="application/json">{data}</script>
<script>
  const settings = JSON.parse(document.getElementById("civicgraph-playground").textContent);
  const endpoint = new URL(settings.endpoint, window.location.href);
  const socket = new URL(endpoint);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  // Subscriptions go over a WebSocket, which a browser cannot give headers: each tab's headers
  // travel in `connection_init` instead, so one socket (and fetcher) per set of headers.
  const fetchers = new Map();
  const fetcherFor = (headers) => {{
    const key = JSON.stringify(headers || {{}});
    if (!fetchers.has(key)) {{
      fetchers.set(key, GraphiQL.createFetcher({{
        url: endpoint.href,
        subscriptionUrl: socket.href,
        wsConnectionParams: headers || {{}},
      }}));
    }}
    return fetchers.get(key);
  }};
  const fetcher = (params, options) => fetcherFor(options && options.headers)(params, options);
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {{
      fetcher,
      defaultTabs: settings.tabs.length ? settings.tabs : undefined,
      // GraphiQL 3 fills the first tab's headers editor from `headers`, not from the tab.
      headers: settings.tabs.length ? settings.tabs[0].headers : undefined,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false,
    }})
  );
</script>
</body>
</html>
"#,
        css = assets.url("graphiql.min.css"),
        react = assets.url("react.production.min.js"),
        react_dom = assets.url("react-dom.production.min.js"),
        graphiql = assets.url("graphiql.min.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_close_the_script_element() {
        let tab = PlaygroundTab {
            query: "# </script><script>alert(1)</script>\n{ me { id } }".into(),
            headers: [("Authorization".to_string(), "Bearer abc".to_string())].into(),
        };
        let html = page("/graphql", &[tab], AssetSource::Cdn);
        assert!(!html.contains("</script><script>alert"));
        assert_eq!(html.matches("</script>").count(), 5);
        assert!(html.contains("Bearer abc"));
        assert!(html.contains("subscriptionUrl: socket.href"));
        assert!(html.contains("wsConnectionParams: headers"));
    }

    #[test]
    fn a_gateway_served_page_names_no_cdn() {
        let html = page("/graphql", &[], AssetSource::Gateway);
        assert!(!html.contains("unpkg.com"), "{html}");
        for (file, _) in ASSET_FILES {
            assert!(html.contains(&format!("\"/graphiql/{file}\"")), "{file}");
        }
        let cdn = page("/graphql", &[], AssetSource::Cdn);
        assert!(cdn.contains("https://unpkg.com/graphiql@3/graphiql.min.js"));
        assert!(cdn.contains("https://unpkg.com/react@18/umd/react.production.min.js"));
    }

    #[test]
    fn loading_names_the_missing_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (file, _) in &ASSET_FILES[..3] {
            std::fs::write(dir.path().join(file), "x").expect("write an asset");
        }
        assert_eq!(
            GraphiqlAssets::missing(dir.path()),
            vec!["graphiql.min.css"]
        );
        let error = GraphiqlAssets::load(dir.path()).expect_err("a file is missing");
        assert_eq!(error.file, "graphiql.min.css");
        assert!(error.to_string().contains("graphiql.min.css"), "{error}");
        std::fs::write(dir.path().join("graphiql.min.css"), "y").expect("write the stylesheet");
        assert!(GraphiqlAssets::missing(dir.path()).is_empty());
        let assets = GraphiqlAssets::load(dir.path()).expect("all four are there");
        assert_eq!(assets.files.len(), 4);
    }
}
