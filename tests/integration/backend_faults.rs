//! What a client sees when a backend fails: the failing field is null, an error with a stable
//! code points at it, the rest of the answer survives, and nothing the backend said leaks.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    ACCOUNT_ROUTE, Answer, BACKEND_SECRET, FakeAgency, PERSON_ROUTE, Reply, RunningAgency,
    ada_account, ada_registry, citizen_project, outcome, refused_url, tax_agency,
};

const QUERY: &str =
    r#"{ citizen(id: "C0000001") { name taxAccount { tin balance filingStatus } } }"#;

/// A backend error body carrying details that must stay inside the gateway.
fn secret_body() -> Value {
    json!({"error": format!("{BACKEND_SECRET}: NullPointerException at TaxLedger.java:42")})
}

/// Asks [`QUERY`] of a gateway whose tax backend answers `reply` (or refuses connections
/// when `reply` is `None`), with extra variables; returns how long the query took.
async fn ask_with_tax(
    reply: Option<Reply>,
    vars: &[(&str, &str)],
) -> (Answer, Duration, Option<RunningAgency>) {
    let registry = ada_registry().await;
    let tax = match reply {
        Some(reply) => Some(tax_agency(reply).await),
        None => None,
    };
    let tax_url = tax.as_ref().map_or_else(refused_url, RunningAgency::url);
    let mut project = citizen_project(&registry.url(), &tax_url);
    for (name, value) in vars {
        project = project.var(name, value);
    }
    let gateway = project.build().await;
    let started = Instant::now();
    let answer = gateway.post(QUERY).await;
    (answer, started.elapsed(), tax)
}

/// What a client relies on when the tax account fails: the status, the citizen's name, the
/// account read as null, each error's code and connector, and whether the backend's own text
/// leaked. A missing key reads as null here; the exact shape (null *and* `path`) is pinned by
/// the `BUG` tests at the end of this file.
fn fault_view(answer: &Answer) -> Value {
    let errors: Vec<Value> = answer.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    json!({
                        "code": e["extensions"]["code"],
                        "connector": e["extensions"]["connector"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "status": answer.status.as_u16(),
        "name": answer.body["data"]["citizen"]["name"],
        "taxAccount": answer.body["data"]["citizen"]["taxAccount"],
        "errors": errors,
        "leaks": answer.text.contains(BACKEND_SECRET),
    })
}

/// [`fault_view`] of an answer whose tax account failed with `code`.
fn tax_failed(code: &str) -> Value {
    json!({
        "status": 200,
        "name": "Ada Lovelace",
        "taxAccount": null,
        "errors": [{"code": code, "connector": "tax"}],
        "leaks": false,
    })
}

#[tokio::test]
async fn a_tax_backend_answering_500_gives_backend_unavailable_and_keeps_the_citizen() {
    let (answer, _, _tax) = ask_with_tax(Some(Reply::json(500, secret_body())), &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_UNAVAILABLE"));
}

#[tokio::test]
async fn a_tax_backend_slower_than_timeout_ms_gives_backend_timeout_well_before_it_answers() {
    let slow = Reply::json(200, ada_account()).after(Duration::from_secs(2));

    let (answer, took, _tax) = ask_with_tax(Some(slow), &[("TAX_TIMEOUT_MS", "200")]).await;

    assert_eq!(
        (fault_view(&answer), took < Duration::from_millis(1000)),
        (tax_failed("BACKEND_TIMEOUT"), true),
        "the answer took {took:?}"
    );
}

#[tokio::test]
async fn a_tax_backend_that_never_answers_gives_backend_timeout() {
    let (answer, _, _tax) = ask_with_tax(Some(Reply::hang()), &[("TAX_TIMEOUT_MS", "200")]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_TIMEOUT"));
}

#[tokio::test]
async fn a_body_that_is_not_json_gives_backend_bad_response() {
    let garbage = Reply::raw(200, format!("<html>{BACKEND_SECRET} Service Temporarily"));

    let (answer, _, _tax) = ask_with_tax(Some(garbage), &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_BAD_RESPONSE"));
}

#[tokio::test]
async fn an_answer_without_the_selected_object_gives_backend_bad_response() {
    let (answer, _, _tax) = ask_with_tax(Some(Reply::json(200, secret_body())), &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_BAD_RESPONSE"));
}

#[tokio::test]
async fn an_answer_over_the_size_limit_gives_backend_bad_response() {
    let huge = format!(
        "{{\"account\": \"{BACKEND_SECRET}{}\"}}",
        " ".repeat(9 << 20)
    );

    let (answer, _, _tax) = ask_with_tax(Some(Reply::raw(200, huge)), &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_BAD_RESPONSE"));
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_gives_backend_bad_response() {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(
            ACCOUNT_ROUTE,
            Reply::json(302, secret_body()).header("location", "/elsewhere"),
        )
        .route("/elsewhere", Reply::json(200, ada_account()))
        .run()
        .await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (fault_view(&answer), tax.calls("/elsewhere")),
        (tax_failed("BACKEND_BAD_RESPONSE"), 0)
    );
}

#[tokio::test]
async fn a_refused_connection_gives_backend_unavailable() {
    let (answer, _, _) = ask_with_tax(None, &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_UNAVAILABLE"));
}

#[tokio::test]
async fn a_404_means_no_account_and_is_not_an_error() {
    let (answer, _, tax) = ask_with_tax(Some(Reply::json(404, secret_body())), &[]).await;

    assert_eq!(
        (
            answer.body,
            answer.text.contains(BACKEND_SECRET),
            tax.map(|t| t.calls(ACCOUNT_ROUTE))
        ),
        (
            json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": null}}}),
            false,
            Some(1)
        )
    );
}

#[tokio::test]
async fn a_404_is_a_bad_response_when_the_operation_says_not_found_is_an_error() {
    let (answer, _, _tax) = ask_with_tax(
        Some(Reply::json(404, secret_body())),
        &[("TAX_NOT_FOUND", "error")],
    )
    .await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_BAD_RESPONSE"));
}

#[tokio::test]
async fn a_400_from_the_backend_gives_backend_bad_response() {
    let (answer, _, _tax) = ask_with_tax(Some(Reply::json(400, secret_body())), &[]).await;

    assert_eq!(fault_view(&answer), tax_failed("BACKEND_BAD_RESPONSE"));
}

/// What a client relies on when one value in the account does not fit the schema: the
/// citizen's name, that value (missing reads as null), the error codes, and no leak.
fn data_fault_view(answer: &Answer, field: &str) -> Value {
    let codes: Vec<Value> = answer.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].clone())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": answer.body["data"]["citizen"]["name"],
        field: answer.body["data"]["citizen"]["taxAccount"][field],
        "codes": codes,
        "leaks": answer.text.contains(BACKEND_SECRET),
    })
}

fn account_with(balance: &str, filing_status: &str) -> Reply {
    Reply::json(
        200,
        json!({"account": {"tin": "123456789", "balance": balance, "filing_status": filing_status}}),
    )
}

#[tokio::test]
async fn a_money_value_that_is_not_a_decimal_gives_backend_bad_response() {
    let (answer, _, _tax) = ask_with_tax(Some(account_with(BACKEND_SECRET, "FILED")), &[]).await;

    assert_eq!(
        data_fault_view(&answer, "balance"),
        json!({
            "name": "Ada Lovelace",
            "balance": null,
            "codes": ["BACKEND_BAD_RESPONSE"],
            "leaks": false,
        })
    );
}

#[tokio::test]
async fn an_enum_value_outside_the_enum_gives_backend_bad_response() {
    let (answer, _, _tax) = ask_with_tax(Some(account_with("-120.50", BACKEND_SECRET)), &[]).await;

    assert_eq!(
        data_fault_view(&answer, "filingStatus"),
        json!({
            "name": "Ada Lovelace",
            "filingStatus": null,
            "codes": ["BACKEND_BAD_RESPONSE"],
            "leaks": false,
        })
    );
}

#[tokio::test]
async fn a_working_tax_backend_fills_the_account() {
    let (answer, _, _tax) = ask_with_tax(Some(Reply::json(200, ada_account())), &[]).await;

    assert_eq!(
        answer.body,
        json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": {
            "tin": "123456789", "balance": "-120.50", "filingStatus": "FILED",
        }}}})
    );
}

#[tokio::test]
async fn path_placeholder_values_are_percent_encoded_into_one_segment() {
    let registry = FakeAgency::new()
        .route(
            PERSON_ROUTE,
            Reply::json(
                200,
                json!({"person": {"id": "a/b?c#d", "full_name": "Odd Id", "tin": "12/3?4"}}),
            ),
        )
        .run()
        .await;
    let tax = tax_agency(Reply::json(404, json!({}))).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;

    gateway
        .post(r#"{ citizen(id: "a/b?c#d") { name taxAccount { tin } } }"#)
        .await;

    let seen = |agency: &RunningAgency| -> Vec<(String, String, Option<String>)> {
        agency
            .requests()
            .into_iter()
            .map(|r| (r.route, r.path, r.query))
            .collect()
    };
    assert_eq!(
        (seen(&registry), seen(&tax)),
        (
            vec![(
                PERSON_ROUTE.to_string(),
                "/v1/people/a%2Fb%3Fc%23d".to_string(),
                None
            )],
            vec![(
                ACCOUNT_ROUTE.to_string(),
                "/v1/taxpayers/12%2F3%3F4/account".to_string(),
                None
            )],
        )
    );
}

#[tokio::test]
async fn a_citizen_without_a_tin_has_no_account_and_the_tax_backend_is_not_called() {
    let registry = FakeAgency::new()
        .route(
            PERSON_ROUTE,
            Reply::json(
                200,
                json!({"person": {"id": "C0000002", "full_name": "No Tin"}}),
            ),
        )
        .run()
        .await;
    let tax = tax_agency(Reply::json(200, ada_account())).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;

    let answer = gateway
        .post(r#"{ citizen(id: "C0000002") { name taxAccount { tin } } }"#)
        .await;

    assert_eq!(
        (answer.body, tax.requests().len()),
        (
            json!({"data": {"citizen": {"name": "No Tin", "taxAccount": null}}}),
            0
        )
    );
}

#[tokio::test]
async fn static_headers_from_the_connector_file_reach_the_backend() {
    let (_answer, _, tax) = ask_with_tax(
        Some(Reply::json(200, ada_account())),
        &[("TAX_API_KEY", "k-7f3a")],
    )
    .await;

    let keys: Vec<String> = tax
        .expect("a tax agency")
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("<missing>")
                .to_string()
        })
        .collect();
    assert_eq!(keys, vec!["k-7f3a".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// The exact shape of a field error: the field present as `null` and the error's `path` naming
// it. async-graphql 7's dynamic executor alone would drop the field and leave `path` empty;
// `src/graph/complete.rs` completes the response as the GraphQL spec requires.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_backend_fault_nulls_the_field_and_puts_its_path_in_the_error() {
    struct Fault {
        label: &'static str,
        reply: Option<Reply>,
        vars: &'static [(&'static str, &'static str)],
        code: &'static str,
    }
    let fault = |label, reply, vars, code| Fault {
        label,
        reply,
        vars,
        code,
    };
    let faults = [
        fault(
            "500",
            Some(Reply::json(500, secret_body())),
            &[],
            "BACKEND_UNAVAILABLE",
        ),
        fault("refused", None, &[], "BACKEND_UNAVAILABLE"),
        fault(
            "hang",
            Some(Reply::hang()),
            &[("TAX_TIMEOUT_MS", "200")],
            "BACKEND_TIMEOUT",
        ),
        fault(
            "garbage",
            Some(Reply::raw(200, BACKEND_SECRET)),
            &[],
            "BACKEND_BAD_RESPONSE",
        ),
        fault(
            "400",
            Some(Reply::json(400, secret_body())),
            &[],
            "BACKEND_BAD_RESPONSE",
        ),
        fault(
            "404 as error",
            Some(Reply::json(404, secret_body())),
            &[("TAX_NOT_FOUND", "error")],
            "BACKEND_BAD_RESPONSE",
        ),
    ];
    let mut seen = Vec::new();
    let mut expected = Vec::new();
    for Fault {
        label,
        reply,
        vars,
        code,
    } in faults
    {
        let (answer, _, _tax) = ask_with_tax(reply, vars).await;
        seen.push((label, outcome(&answer.body)));
        expected.push((
            label,
            json!({
                "data": {"citizen": {"name": "Ada Lovelace", "taxAccount": null}},
                "errors": [{
                    "path": ["citizen", "taxAccount"],
                    "extensions": {"code": code, "connector": "tax"},
                }],
            }),
        ));
    }

    assert_eq!(seen, expected);
}

#[tokio::test]
async fn data_that_does_not_fit_is_null_and_its_error_names_the_field() {
    let (bad_money, _, _tax) = ask_with_tax(Some(account_with(BACKEND_SECRET, "FILED")), &[]).await;
    let (bad_enum, _, _tax) =
        ask_with_tax(Some(account_with("-120.50", BACKEND_SECRET)), &[]).await;

    assert_eq!(
        (outcome(&bad_money.body), outcome(&bad_enum.body)),
        (
            json!({
                "data": {"citizen": {"name": "Ada Lovelace", "taxAccount": null}},
                "errors": [{
                    "path": ["citizen", "taxAccount", "balance"],
                    "extensions": {"code": "BACKEND_BAD_RESPONSE"},
                }],
            }),
            json!({
                "data": {"citizen": {"name": "Ada Lovelace", "taxAccount": {
                    "tin": "123456789", "balance": "-120.50", "filingStatus": null,
                }}},
                "errors": [{
                    "path": ["citizen", "taxAccount", "filingStatus"],
                    "extensions": {"code": "BACKEND_BAD_RESPONSE"},
                }],
            }),
        )
    );
}

#[tokio::test]
async fn a_failing_root_field_is_a_field_error_not_a_request_error() {
    let registry = FakeAgency::new()
        .route(PERSON_ROUTE, Reply::json(500, secret_body()))
        .run()
        .await;
    let tax = tax_agency(Reply::json(200, ada_account())).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;

    let answer = gateway
        .post_with(
            json!({"query": QUERY}),
            &[("accept", "application/graphql-response+json")],
        )
        .await;

    assert_eq!(
        (answer.status.as_u16(), outcome(&answer.body)),
        (
            200,
            json!({
                "data": {"citizen": null},
                "errors": [{
                    "path": ["citizen"],
                    "extensions": {"code": "BACKEND_UNAVAILABLE", "connector": "registry"},
                }],
            })
        )
    );
}
