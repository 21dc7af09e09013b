//! GraphiQL with one tab per persona: the same query as a citizen, as an agency client and as
//! an operator, each tab carrying its own `Authorization` header, so a developer sees what each
//! caller may read and why (the denials name the category and purpose).
//!
//! Subscriptions run over a WebSocket on the same endpoint (`ws://` or `wss://`, from the page's
//! own address); a tab's headers travel in the socket's `connection_init` payload, since a
//! browser cannot set headers on a WebSocket.
//!
//! Without tabs the gateway serves async-graphql's stock GraphiQL page (subscriptions there
//! run anonymously unless the caller's headers are sent by other means).

use serde::Serialize;

/// One GraphiQL tab: a query and the headers it is sent with.
#[derive(Debug, Clone, Serialize)]
pub struct PlaygroundTab {
    /// The query text (a leading `#` comment names the persona).
    pub query: String,
    /// Request headers, e.g. `Authorization: Bearer …`.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The GraphiQL page for `endpoint` with `tabs` open.
pub fn page(endpoint: &str, tabs: &[PlaygroundTab]) -> String {
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
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
<script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
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
      defaultTabs: settings.tabs,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false,
    }})
  );
</script>
</body>
</html>
"#
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
        let html = page("/graphql", &[tab]);
        assert!(!html.contains("</script><script>alert"));
        assert_eq!(html.matches("</script>").count(), 5);
        assert!(html.contains("Bearer abc"));
        assert!(html.contains("subscriptionUrl: socket.href"));
        assert!(html.contains("wsConnectionParams: headers"));
    }
}
