//! Broken projects: every problem is reported, each at the `file:line:column` a person must
//! open, with a message that says what is wrong.

use std::process::Command;

use civicgraph::config::Diagnostics;

use crate::support::{Project, TestGateway, TestGatewayBuilder, check, repo_config};

const SCHEMA: &str = r#"scalar Money
type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
}
type Citizen {
  id: ID!
  name: String
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}
type TaxAccount {
  tin: String!
  balance: Money!
}
"#;

const REGISTRY: &str = r#"name = "registry"
kind = "rest"
base_url = "http://127.0.0.1:9"

[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

const TAX: &str = r#"name = "tax"
kind = "rest"
base_url = "${TAX_URL}"
timeout_ms = 1500

[operations.account]
path = "/v1/taxpayers/{tin}/account"
select = "/account"
"#;

/// A valid project; each test breaks one thing in it.
fn valid() -> TestGatewayBuilder {
    TestGateway::builder()
        .schema("a.graphql", SCHEMA)
        .connector("registry.toml", REGISTRY)
        .connector("tax.toml", TAX)
        .var("TAX_URL", "http://127.0.0.1:9")
}

/// `SCHEMA` with `old` replaced by `new` (which must occur).
fn schema_with(old: &str, new: &str) -> String {
    assert!(SCHEMA.contains(old), "`{old}` is not in the test schema");
    SCHEMA.replacen(old, new, 1)
}

/// `TAX` with `old` replaced by `new` (which must occur).
fn tax_with(old: &str, new: &str) -> String {
    assert!(
        TAX.contains(old),
        "`{old}` is not in the test tax connector"
    );
    TAX.replacen(old, new, 1)
}

fn diagnostics(project: &Project) -> Diagnostics {
    match check(project) {
        Ok(checked) => panic!(
            "the project was expected to be rejected, but it checks:\n{}",
            checked.graph.summary
        ),
        Err(diagnostics) => diagnostics,
    }
}

/// Asserts the project reports exactly these problems: for each, `file:line:column` (the
/// file's name only) and a phrase its message contains. Order does not matter.
#[track_caller]
fn assert_reports(project: &Project, expected: &[(&str, &str)]) {
    let diagnostics = diagnostics(project);
    let found: Vec<(String, String)> = diagnostics
        .0
        .iter()
        .map(|d| {
            let at = d.location.as_ref().map_or_else(
                || "<no location>".to_string(),
                |l| {
                    let file = l.path.file_name().map_or_else(
                        || l.path.display().to_string(),
                        |f| f.to_string_lossy().into_owned(),
                    );
                    format!("{file}:{}:{}", l.line, l.column)
                },
            );
            (at, d.message.clone())
        })
        .collect();
    let matches = |(at, phrase): &(&str, &str)| {
        found
            .iter()
            .any(|(f_at, f_message)| f_at == at && f_message.contains(phrase))
    };
    let missing: Vec<&(&str, &str)> = expected.iter().filter(|e| !matches(e)).collect();
    assert!(
        missing.is_empty() && found.len() == expected.len(),
        "expected exactly {expected:#?}\nmissing {missing:#?}\nfound {found:#?}"
    );
}

#[test]
fn the_valid_base_project_checks_clean() {
    let project = valid().write();
    assert!(check(&project).is_ok(), "{:?}", check(&project).err());
}

#[test]
fn a_misspelt_connector_key_is_reported_at_its_line() {
    let project = valid()
        .connector("tax.toml", &tax_with("timeout_ms", "tmeout_ms"))
        .write();
    assert_reports(&project, &[("tax.toml:4:1", "unknown key `tmeout_ms`")]);
}

#[test]
fn a_misspelt_key_in_civicgraph_toml_is_reported_at_its_line() {
    let project = valid()
        .gateway_toml("[server]\nlisten = \"127.0.0.1:0\"\nmax_body_byte = 10\n")
        .write();
    assert_reports(
        &project,
        &[("civicgraph.toml:3:1", "unknown key `max_body_byte`")],
    );
}

#[test]
fn a_value_of_the_wrong_toml_type_is_reported_at_the_value() {
    let project = valid()
        .connector("tax.toml", &tax_with("1500", "\"fast\""))
        .write();
    assert_reports(
        &project,
        &[("tax.toml:4:14", "invalid type: string \"fast\"")],
    );
}

#[test]
fn a_connector_without_kind_is_reported_with_the_kinds_to_choose_from() {
    let project = valid()
        .connector("tax.toml", &tax_with("kind = \"rest\"\n", ""))
        .write();
    assert_reports(
        &project,
        &[(
            "tax.toml:1:1",
            "missing required key `kind`; say which protocol",
        )],
    );
}

#[test]
fn an_unknown_connector_kind_is_reported_at_the_kind() {
    let project = valid()
        .connector("tax.toml", &tax_with("\"rest\"", "\"corba\""))
        .write();
    assert_reports(
        &project,
        &[(
            "tax.toml:2:8",
            "unknown connector kind `corba`; expected one of `rest`, `soap`, `sql` or `mainframe`",
        )],
    );
}

#[test]
fn an_unset_variable_without_default_is_reported_at_its_dollar() {
    let project = TestGateway::builder()
        .schema("a.graphql", SCHEMA)
        .connector("registry.toml", REGISTRY)
        .connector("tax.toml", TAX)
        .write();
    assert_reports(
        &project,
        &[("tax.toml:3:13", "environment variable `TAX_URL` is not set")],
    );
}

#[test]
fn connect_naming_an_unknown_connector_is_reported_at_the_directive() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("connector: \"tax\"", "connector: \"taxes\""),
        )
        .write();
    assert_reports(
        &project,
        &[(
            "a.graphql:8:26",
            "unknown connector `taxes`; the connectors are",
        )],
    );
}

#[test]
fn connect_naming_an_unknown_operation_lists_the_operations() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("operation: \"account\"", "operation: \"acount\""),
        )
        .write();
    assert_reports(
        &project,
        &[(
            "a.graphql:8:26",
            "has no operation `acount`; it has `account`",
        )],
    );
}

#[test]
fn a_directive_argument_of_the_wrong_type_is_reported() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("connector: \"tax\"", "connector: 5"),
        )
        .write();
    assert_reports(
        &project,
        &[(
            "a.graphql:8:26",
            "argument `connector` must be a String, not the number 5",
        )],
    );
}

#[test]
fn an_unknown_directive_is_reported_with_the_known_ones() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("name: String", "name: String @mask"),
        )
        .write();
    assert_reports(
        &project,
        &[(
            "a.graphql:7:16",
            "unknown directive `@mask`; this gateway understands",
        )],
    );
}

#[test]
fn a_path_placeholder_with_no_source_is_reported() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with(", args: {tin: \"$parent.tin\"}", ""),
        )
        .write();
    assert_reports(
        &project,
        &[(
            "a.graphql:8:26",
            "placeholder `{tin}` of operation `tax.account`",
        )],
    );
}

#[test]
fn a_root_field_without_connect_cannot_be_resolved() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("type Query {\n", "type Query {\n  version: String\n"),
        )
        .write();
    assert_reports(
        &project,
        &[("a.graphql:3:3", "nothing can resolve `Query.version`")],
    );
}

#[test]
fn a_type_defined_twice_is_reported_at_the_second_definition() {
    let project = valid()
        .schema("b.graphql", "\ntype TaxAccount {\n  year: Int\n}\n")
        .write();
    assert_reports(
        &project,
        &[(
            "b.graphql:2:1",
            "duplicate type `TaxAccount`: it is already defined at",
        )],
    );
}

#[test]
fn two_connectors_with_one_name_are_reported_at_the_second() {
    let project = valid()
        .connector("tax2.toml", &TAX.replace("TAX_URL", "TAX2_URL"))
        .var("TAX2_URL", "http://127.0.0.1:9")
        .write();
    assert_reports(
        &project,
        &[("tax2.toml:1:8", "duplicate connector name `tax`")],
    );
}

#[test]
fn a_reference_to_an_unknown_type_is_reported_at_the_field() {
    let project = valid()
        .schema(
            "a.graphql",
            &schema_with("balance: Money!", "balance: Mony!"),
        )
        .write();
    assert_reports(&project, &[("a.graphql:12:3", "unknown type `Mony`")]);
}

#[test]
fn a_graphql_syntax_error_is_reported_in_its_file() {
    let project = valid()
        .schema(
            "b.graphql",
            "type Broken {\n  ok: String\n  missing Int\n}\n",
        )
        .write();
    assert_reports(&project, &[("b.graphql:3:11", "GraphQL syntax error")]);
}

#[test]
fn an_unclosed_brace_in_a_path_is_reported_at_the_brace() {
    let project = valid()
        .connector("tax.toml", &tax_with("{tin}", "{tin"))
        .write();
    let diagnostics = diagnostics(&project);
    let at_brace = diagnostics.0.iter().find(|d| {
        d.message.contains("`{` is never closed")
            && d.location
                .as_ref()
                .is_some_and(|l| l.path.ends_with("tax.toml") && (l.line, l.column) == (7, 23))
    });
    assert!(at_brace.is_some(), "{diagnostics}");
}

#[test]
fn a_connector_that_fails_to_build_is_not_also_called_unknown() {
    let project = valid()
        .connector("tax.toml", &tax_with("{tin}", "{tin"))
        .write();
    assert_reports(
        &project,
        &[("tax.toml:7:23", "`path`: `{` is never closed with `}`")],
    );
}

#[test]
fn every_problem_in_a_project_is_reported_together() {
    let schema = schema_with("name: String", "name: String @mask")
        .replacen("balance: Money!", "balance: Mony!", 1)
        .replacen("type Query {\n", "type Query {\n  version: String\n", 1);
    let project = valid()
        .schema("a.graphql", &schema)
        .connector("tax.toml", &tax_with("timeout_ms", "tmeout_ms"))
        .connector(
            "registry.toml",
            &REGISTRY.replace("http://127.0.0.1:9", "${REGISTRY_URL}"),
        )
        .write();
    assert_reports(
        &project,
        &[
            ("registry.toml:3:13", "`REGISTRY_URL` is not set"),
            ("tax.toml:4:1", "unknown key `tmeout_ms`"),
            ("a.graphql:3:3", "nothing can resolve `Query.version`"),
            ("a.graphql:8:16", "unknown directive `@mask`"),
            ("a.graphql:13:3", "unknown type `Mony`"),
        ],
    );
}

#[test]
fn the_shipped_configuration_and_connector_files_check_clean() {
    let checked = civicgraph::server::check(&repo_config(), &civicgraph::config::Vars::default())
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let summary = checked.graph.summary.to_string();
    assert!(
        summary.contains("Citizen.taxAccount <- account")
            && summary.contains("Query.citizen <- person"),
        "{summary}"
    );
}

fn civicgraph_check(config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_clear()
        .output()
        .expect("run the civicgraph binary")
}

#[test]
fn civicgraph_check_exits_1_and_names_the_line_of_a_broken_connector() {
    let project = valid()
        .connector(
            "tax.toml",
            &tax_with("timeout_ms", "tmeout_ms").replace("${TAX_URL}", "http://127.0.0.1:9"),
        )
        .write();

    let output = civicgraph_check(&project.config_path());

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        (
            output.status.code(),
            stderr.contains("tax.toml:4:1: unknown key `tmeout_ms`")
        ),
        (Some(1), true),
        "{stderr}"
    );
}

#[test]
fn civicgraph_check_accepts_the_shipped_configuration_and_prints_the_bindings() {
    let output = civicgraph_check(&repo_config());

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        (
            output.status.code(),
            stdout.contains("is valid."),
            stdout.contains("Citizen.taxAccount <- account"),
        ),
        (Some(0), true, true),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
