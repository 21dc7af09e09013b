//! GraphQL over HTTP conformance: the `graphql-http` audit suite (its `serverAudits`, run by
//! `tests/conformance/audit.mjs` under Node) against the shipped configuration, and the fixes
//! it asked for. Skipped when Node or the suite's `node_modules` (`npm ci` in
//! `tests/conformance/`) is missing; `.ci/run` installs both.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Reply, ada_account, ada_registry, citizen_project, start_demo, tax_agency};

/// Headers every audit request carries. When GET requests need a CSRF preflight header,
/// it goes here, e.g. `&["x-civicgraph-preflight: 1"]`.
const AUDIT_HEADERS: &[&str] = &[];

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_http_audit_passes_every_must() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    if !node_available() {
        eprintln!("skipped: node is not installed");
        return;
    }
    if !suite.join("node_modules/graphql-http").is_dir() {
        eprintln!("skipped: tests/conformance/node_modules is not installed (run `npm ci` there)");
        return;
    }
    let demo = start_demo(10).await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg("audit.mjs")
        .arg(demo.url("/graphql"))
        .arg("--json")
        .current_dir(&suite);
    for header in AUDIT_HEADERS {
        command.args(["--header", header]);
    }
    let output = command.output().await.expect("run node audit.mjs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit.mjs printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let failures: Vec<String> = report["results"]
        .as_array()
        .expect("a list of results")
        .iter()
        .filter(|r| r["status"] != "ok" && r["level"] != "MAY")
        .map(|r| format!("{} {}: {}", r["id"], r["name"], r["reason"]))
        .collect();
    assert_eq!(
        report["summary"]["MUST"]["failed"],
        json!(0),
        "{failures:#?}"
    );
    assert!(
        report["summary"]["MUST"]["passed"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report}"
    );
    assert!(
        output.status.success(),
        "a SHOULD failed that the README does not list as skipped: {failures:#?}"
    );
}

const CITIZEN_QUERY: &str = r#"{ citizen(id: "C0000001") { name } }"#;

/// The audit's `58B0`–`58B3` (MAY): `extensions` that is not a map is a bad request, on POST
/// as already on GET, and nothing runs.
#[tokio::test]
async fn rejects_extensions_that_are_not_a_map() {
    let registry = ada_registry().await;
    let tax = tax_agency(Reply::json(200, ada_account())).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;
    for extensions in [json!("x"), json!(1), json!(true), json!([])] {
        for accept in ["application/json", "application/graphql-response+json"] {
            let answer = gateway
                .post_with(
                    json!({ "query": CITIZEN_QUERY, "extensions": extensions }),
                    &[("Accept", accept)],
                )
                .await;
            assert_eq!(answer.status.as_u16(), 400, "{extensions} {accept}");
            assert_eq!(
                answer.body["errors"][0]["extensions"]["code"],
                json!("BAD_REQUEST")
            );
            assert!(answer.body.get("data").is_none(), "{}", answer.text);
        }
    }
    assert!(registry.requests().is_empty(), "nothing ran");
    for extensions in [json!(null), json!({}), json!({ "persistedQuery": null })] {
        let answer = gateway
            .post_with(
                json!({ "query": "{ __typename }", "extensions": extensions }),
                &[],
            )
            .await;
        assert_eq!(answer.body, json!({ "data": { "__typename": "Query" } }));
    }
}
