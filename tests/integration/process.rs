//! The real `civicgraph` binary as an operator runs it: `serve` with JSON logs, a failing
//! backend, then SIGTERM. Its logs must carry the request id and never a citizen's data, a
//! credential or a backend URL; SIGTERM must end it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    BACKEND_SECRET, GatewayClient, Reply, ada_registry, citizen_project, tax_agency,
};

/// A credential that must never appear in a log line.
const API_KEY: &str = "sk-test-9f1c2e-NEVER-LOG";

struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines already read while waiting for the listener; they are checked too.
    seen: Vec<String>,
}

impl Served {
    /// Waits for the JSON log line announcing the listener and returns its address.
    fn wait_for_listener(&mut self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            self.seen.push(line.clone());
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["message"] == "CivicGraph is listening."
                && let Some(addr) = event["addr"].as_str()
            {
                return addr.parse().expect("the logged address parses");
            }
        }
        panic!("civicgraph serve did not log its address within 20 s");
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status and every log line.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("poll the child") {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("civicgraph serve did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = std::mem::take(&mut self.seen);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
        (exit, lines)
    }
}

fn serve(project: &crate::support::Project) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(project.config_path())
        .env_clear()
        .envs(project.env())
        .env("TAX_API_KEY", API_KEY)
        .env(
            "CIVICGRAPH_LOG",
            "trace,hyper=info,hyper_util=info,h2=info,reqwest=info",
        )
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
    Served {
        child,
        lines,
        seen: Vec::new(),
    }
}

#[tokio::test]
async fn logs_carry_the_request_id_and_no_personal_data_and_sigterm_exits_cleanly() {
    let registry = ada_registry().await;
    let tax = tax_agency(Reply::json(
        500,
        serde_json::json!({"error": BACKEND_SECRET}),
    ))
    .await;
    let project = citizen_project(&registry.url(), &tax.url()).write();
    let mut served = serve(&project);
    let client = GatewayClient::new(served.wait_for_listener());

    let answer = client
        .post(r#"{ citizen(id: "C0000001") { name taxAccount { balance } } }"#)
        .await;
    assert_eq!(answer.body["data"]["citizen"]["name"], "Ada Lovelace");
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        "BACKEND_UNAVAILABLE"
    );
    let request_id = answer.header("x-request-id").to_string();
    let by_get = client
        .get_query(r#"{ citizen(id: "C0000001") { name } }"#)
        .await;
    assert_eq!(by_get.status, 200);

    let (exit, lines) = served.terminate();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");

    let text = lines.join("\n");
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    let failure = lines
        .iter()
        .find(|l| l.contains("Backend call failed."))
        .unwrap_or_else(|| panic!("no backend failure logged:\n{text}"));
    assert!(
        failure.contains(&request_id),
        "the failure log line lacks the request id {request_id}: {failure}"
    );
    assert!(failure.contains("\"connector\":\"tax\""), "{failure}");
    for forbidden in [
        "123456789", // Ada's TIN, in the tax backend's URL path
        "Ada",       // her name, in the registry's answer
        "Lovelace",
        "C0000001",     // the citizen id, in the query text and the GET query string
        API_KEY,        // the connector's credential
        BACKEND_SECRET, // the backend's own error text
        "/v1/taxpayers",
    ] {
        assert!(
            !text.contains(forbidden),
            "`{forbidden}` appears in the logs:\n{text}"
        );
    }
    assert!(
        text.contains("Shutdown signal received"),
        "SIGTERM not logged:\n{text}"
    );
}

/// `civicgraph check --layout` prints a copybook's layout, and a broken copybook's error names
/// its line and column, with a failing exit status.
#[test]
fn check_layout_prints_a_copybook_and_names_the_line_of_an_error() {
    let copybook = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("connectors/copybooks/BENEFIT-CASE.cpy");
    let output = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["check", "--layout"])
        .arg(&copybook)
        .output()
        .expect("run civicgraph check --layout");
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("Record BNQ-RESPONSE: 402 bytes"), "{table}");
    let amount = table
        .lines()
        .find(|line| line.contains("BNQ-MONTHLY-AMOUNT"))
        .expect("the amount's row");
    let cells: Vec<&str> = amount.split_whitespace().collect();
    // level, name, picture, usage, offset, length
    assert_eq!(
        cells,
        ["10", "BNQ-MONTHLY-AMOUNT", "S9(7)V99", "COMP-3", "39", "5"]
    );

    let dir = tempfile::tempdir().expect("a directory");
    let broken = dir.path().join("BROKEN.cpy");
    std::fs::write(&broken, "       01  REC.\n           05  A  PIC 9(3)PP.\n")
        .expect("write the copybook");
    let output = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["check", "--layout"])
        .arg(&broken)
        .output()
        .expect("run civicgraph check --layout");
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("BROKEN.cpy:2:"), "{error}");
    assert!(error.contains("P scaling is not supported"), "{error}");
}
