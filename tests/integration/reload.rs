//! Hot reload: a serving gateway picks up edited files (watched) or a SIGHUP, keeps serving
//! its graph when the new one is invalid, and lets requests already running finish on the
//! graph they started on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use civicgraph::server::{Gateway, RunningGateway};
use serde_json::{Value, json};

use crate::support::{
    ACCOUNT_ROUTE, CITIZEN_SDL, FakeAgency, GatewayClient, PERSON_ROUTE, Project, Reply,
    ada_account, ada_registry, citizen_project, serve_on_loopback,
};

/// The longest a reload may take to show, counted from the edit (debounce included).
const RELOAD_DEADLINE: Duration = Duration::from_secs(15);

/// A quick debounce, so the tests wait less for each reload.
const GATEWAY_TOML: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"sqlite::memory:\"\n\n[reload]\ndebounce_ms = 100\n";

/// [`CITIZEN_SDL`] with `Citizen.tin` added: the field a reload brings.
fn sdl_with_tin() -> String {
    CITIZEN_SDL.replace(
        "  name: String @map(from: \"full_name\")\n",
        "  name: String @map(from: \"full_name\")\n  tin: String\n",
    )
}

fn schema_file(project: &Project) -> PathBuf {
    project_dir(project).join("schema").join("citizen.graphql")
}

fn project_dir(project: &Project) -> PathBuf {
    project
        .config_path()
        .parent()
        .expect("the config file has a directory")
        .to_path_buf()
}

/// Writes `text` the way editors do: to a temporary file, then renamed over the original.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp-edit");
    std::fs::write(&temporary, text).expect("write the edited file");
    std::fs::rename(&temporary, path).expect("rename the edit into place");
}

async fn serve(project: &Project) -> (RunningGateway, GatewayClient) {
    let gateway = match Gateway::load(&project.config_path(), &project.vars()).await {
        Ok(gateway) => gateway,
        Err(error) => panic!("the test project does not load:\n{error}"),
    };
    let running = serve_on_loopback(gateway).await;
    let client = GatewayClient::new(running.addr);
    (running, client)
}

/// Asks until `done` accepts the answer's body; panics with the last body after the deadline.
async fn ask_until(client: &GatewayClient, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let body = client.post(query).await.body;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no reload within {RELOAD_DEADLINE:?}; last answer: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `/metrics` until it contains `line`.
async fn metrics_until(client: &GatewayClient, line: &str) -> String {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let text = client.get("/metrics", &[]).await.text;
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{line}` not in /metrics within {RELOAD_DEADLINE:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_edited_schema_is_served_and_unchanged_connectors_keep_their_cache() {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
        .run()
        .await;
    let project = citizen_project(&registry.url(), &tax.url())
        .gateway_toml(GATEWAY_TOML)
        .connector(
            "registry.toml",
            "name = \"registry\"\nkind = \"rest\"\nbase_url = \"${REGISTRY_URL}\"\ncache = { ttl_s = 600 }\n\n[operations.person]\npath = \"/v1/people/{id}\"\nselect = \"/person\"\n",
        )
        .write();
    let (running, client) = serve(&project).await;
    let name = client
        .post(r#"{ citizen(id: "C0000001") { name } }"#)
        .await
        .body;
    assert_eq!(name, json!({"data": {"citizen": {"name": "Ada Lovelace"}}}));
    let unknown = client
        .post(r#"{ citizen(id: "C0000001") { tin } }"#)
        .await
        .body;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{unknown}"
    );

    replace_file(&schema_file(&project), &sdl_with_tin());
    let body = ask_until(&client, r#"{ citizen(id: "C0000001") { tin } }"#, |body| {
        body.get("errors").is_none()
    })
    .await;
    assert_eq!(body, json!({"data": {"citizen": {"tin": "123456789"}}}));
    let metrics = metrics_until(
        &client,
        r#"civicgraph_graph_reloads_total{outcome="success"} 1"#,
    )
    .await;
    assert!(
        metrics.lines().any(|l| l == "civicgraph_graph_reload_ok 1"),
        "{metrics}"
    );
    // The registry's file did not change, so its cache came through the reload: both the
    // first question and the new field were answered from one backend call.
    assert_eq!(registry.calls(PERSON_ROUTE), 1);
    // The reload's own reads of the files are not changes: no second reload follows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    metrics_until(
        &client,
        r#"civicgraph_graph_reloads_total{outcome="success"} 1"#,
    )
    .await;
    running.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn an_invalid_schema_keeps_the_old_graph_serving_until_it_is_fixed() {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
        .run()
        .await;
    let project = citizen_project(&registry.url(), &tax.url())
        .gateway_toml(GATEWAY_TOML)
        .write();
    let (running, client) = serve(&project).await;
    let query = r#"{ citizen(id: "C0000001") { name } }"#;
    let served = json!({"data": {"citizen": {"name": "Ada Lovelace"}}});

    // A type that does not exist: `civicgraph check` would refuse this file.
    let broken = sdl_with_tin().replace("  tin: String\n", "  tin: Strin\n");
    replace_file(&schema_file(&project), &broken);
    let metrics = metrics_until(
        &client,
        r#"civicgraph_graph_reloads_total{outcome="failure"} 1"#,
    )
    .await;
    assert!(
        metrics.lines().any(|l| l == "civicgraph_graph_reload_ok 0"),
        "{metrics}"
    );
    assert_eq!(client.post(query).await.body, served);
    let tin = client
        .post(r#"{ citizen(id: "C0000001") { tin } }"#)
        .await
        .body;
    assert_eq!(
        tin["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "the broken graph must not have replaced the old one: {tin}"
    );

    replace_file(&schema_file(&project), &sdl_with_tin());
    let body = ask_until(
        &client,
        r#"{ citizen(id: "C0000001") { name tin } }"#,
        |body| body.get("errors").is_none(),
    )
    .await;
    assert_eq!(
        body,
        json!({"data": {"citizen": {"name": "Ada Lovelace", "tin": "123456789"}}})
    );
    metrics_until(&client, "civicgraph_graph_reload_ok 1").await;
    running.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_request_in_flight_during_a_reload_finishes_on_the_graph_it_started_on() {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(
            ACCOUNT_ROUTE,
            Reply::json(200, ada_account()).after(Duration::from_secs(4)),
        )
        .run()
        .await;
    let project = citizen_project(&registry.url(), &tax.url())
        .gateway_toml(GATEWAY_TOML)
        .var("TAX_TIMEOUT_MS", "20000")
        .write();
    let (running, client) = serve(&project).await;

    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(r#"{ citizen(id: "C0000001") { name taxAccount { tin } } }"#)
                .await
                .body
        })
    };
    tax.wait_for_calls(ACCOUNT_ROUTE, 1).await;

    // The new graph reads `name` from another backend field, so its answer differs.
    let renamed = CITIZEN_SDL.replace("@map(from: \"full_name\")", "@map(from: \"tin\")");
    replace_file(&schema_file(&project), &renamed);
    ask_until(&client, r#"{ citizen(id: "C0000001") { name } }"#, |body| {
        body["data"]["citizen"]["name"] == "123456789"
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow request must still be running when the new graph serves"
    );

    let old = slow.await.expect("the slow request's task");
    assert_eq!(
        old,
        json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": {"tin": "123456789"}}}})
    );
    running.shutdown().await.expect("a clean shutdown");
}

/// `civicgraph serve` as a child process with JSON logs on a pipe.
struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Child {
    fn serve(project: &Project) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(project.config_path())
            .env_clear()
            .envs(project.env())
            .env("TAX_API_KEY", API_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start civicgraph serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line whose `message` starts with `prefix`; returns it parsed.
    fn wait_for(&mut self, prefix: &str) -> Value {
        let deadline = Instant::now() + RELOAD_DEADLINE;
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            self.seen.push(line.clone());
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            {
                return event;
            }
        }
        panic!(
            "no log line starting `{prefix}` within {RELOAD_DEADLINE:?}; seen:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A credential from the environment that must never reach a log line.
const API_KEY: &str = "sk-reload-7d1e-NEVER-LOG";

#[tokio::test]
async fn sighup_reloads_the_real_binary_and_a_failed_reload_is_logged_with_its_line() {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
        .run()
        .await;
    // Not watching: only SIGHUP reloads.
    let project = citizen_project(&registry.url(), &tax.url())
        .gateway_toml(&GATEWAY_TOML.replace("[reload]\n", "[reload]\nwatch = false\n"))
        .write();
    let mut child = Child::serve(&project);
    let listening = child.wait_for("CivicGraph is listening.");
    let addr = listening["addr"]
        .as_str()
        .expect("the listener's address")
        .parse()
        .expect("an address");
    let client = GatewayClient::new(addr);

    std::fs::write(
        schema_file(&project),
        sdl_with_tin().replace("  tin: String\n", "  tin: Strin\n"),
    )
    .expect("write a broken schema");
    child.signal("HUP");
    let failed = child.wait_for("graph reload failed");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("citizen.graphql:") && message.contains("Strin"),
        "the failure names the file, line and problem: {failed}"
    );
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert_eq!(
        client
            .post(r#"{ citizen(id: "C0000001") { name } }"#)
            .await
            .body,
        json!({"data": {"citizen": {"name": "Ada Lovelace"}}})
    );

    std::fs::write(schema_file(&project), sdl_with_tin()).expect("write the fixed schema");
    child.signal("HUP");
    let reloaded = child.wait_for("graph reloaded");
    assert_eq!(reloaded["trigger"], "SIGHUP", "{reloaded}");
    assert_eq!(
        client
            .post(r#"{ citizen(id: "C0000001") { tin } }"#)
            .await
            .body,
        json!({"data": {"citizen": {"tin": "123456789"}}})
    );
    for line in &child.seen {
        assert!(!line.contains(API_KEY), "a credential was logged: {line}");
        assert!(
            !line.contains("Ada Lovelace"),
            "a citizen's data was logged: {line}"
        );
    }
}
