//! Batch forms of the `soap` and `mainframe` connectors, built from the shipped connector files
//! against the demo's simulated agencies on loopback: a batch of keys is one backend call
//! (counted at the server), and each position equals what the single call answers for that
//! key alone (unknown keys, duplicates and null keys included); a failure of the batch is the
//! single call's error. Extract batches answer from the store with each answer's as-of time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::post;
use chrono::{NaiveDate, NaiveDateTime};
use civicgraph::config::{ConnectorConfig, LoadedConnector, StorageConfig, TomlFile, Vars};
use civicgraph::connectors::mainframe::transport::Framing;
use civicgraph::connectors::{
    Arguments, CallError, Connector, Connectors, Reply, build_connectors,
};
use civicgraph::demo::Population;
use civicgraph::demo::benefits::{BenefitsCodecs, BenefitsRecords, write_extract};
use civicgraph::demo::dmv::dmv_router;
use civicgraph::demo::mainframe_server::RecordServer;
use civicgraph::error::ErrorCode;
use civicgraph::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const DMV_NS: &str = "urn:civicgraph:demo:dmv:v1";
const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

// ---------------------------------------------------------------------------------------------
// Connectors from the shipped files
// ---------------------------------------------------------------------------------------------

/// `connectors/<name>` of the repository: where it is (so `wsdl` and `copybook` resolve) and
/// its text.
fn shipped(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("connectors")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("a shipped connector file");
    (path, text)
}

/// Builds connector file `text` (read as if at `path`) with only `vars`, exactly as the
/// gateway does; the connectors (to attach a store) and the one built.
fn build(path: &Path, text: &str, vars: &[(&str, &str)]) -> (Connectors, Arc<dyn Connector>) {
    let vars = Vars::only(
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect::<HashMap<_, _>>(),
    );
    let file = TomlFile::from_text(path, text, &vars).expect("valid TOML");
    let config = if text.contains("kind = \"soap\"") {
        ConnectorConfig::Soap(file.parse().expect("a soap connector file"))
    } else {
        ConnectorConfig::Mainframe(Box::new(file.parse().expect("a mainframe connector file")))
    };
    let name = config.name().get_ref().clone();
    let (connectors, problems) = build_connectors(&[LoadedConnector { config, file }]);
    assert!(problems.is_empty(), "{problems:?}");
    let connector = Arc::clone(connectors.get(&name).expect("the connector"));
    (connectors, connector)
}

/// One call's arguments: `key` = `value`.
fn args(key: &str, value: Value) -> Arguments {
    Arguments::from([(key.to_string(), value)])
}

/// Asserts that `batch` holds, at each position, exactly what the single call answers for
/// that position's arguments alone.
async fn assert_each_equals_the_single_call(
    connector: &Arc<dyn Connector>,
    operation: &str,
    batch: &[Arguments],
    answers: &[Reply],
) {
    assert_eq!(answers.len(), batch.len(), "one answer per entry");
    for (entry, answer) in batch.iter().zip(answers) {
        let single = connector
            .call_with_freshness(operation, entry)
            .await
            .expect("the single call answers");
        assert_eq!(*answer, single, "{operation} for {entry:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The motor vehicle agency (SOAP)
// ---------------------------------------------------------------------------------------------

/// The simulated DMV on loopback, counting the envelopes it is sent.
struct Dmv {
    url: String,
    population: Arc<Population>,
    posts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Dmv {
    async fn start() -> Dmv {
        let population = Arc::new(Population::generate(300, 11));
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&posts);
        let router = dmv_router(Arc::clone(&population)).layer(middleware::from_fn(
            move |request: Request, next: Next| {
                let counter = Arc::clone(&counter);
                async move {
                    if request.method() == axum::http::Method::POST {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    next.run(request).await
                }
            },
        ));
        let (url, task) = serve(router).await;
        Dmv {
            url,
            population,
            posts,
            task,
        }
    }

    /// The shipped `dmv` connector pointed at this server.
    fn connector(&self) -> Arc<dyn Connector> {
        let (path, text) = shipped("dmv.toml");
        build(&path, &text, &[("DMV_URL", &self.url)]).1
    }

    fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    /// Licence numbers of holders with and without vehicles, `count` of each.
    fn holders(&self, count: usize) -> (Vec<String>, Vec<String>) {
        let numbers = self
            .population
            .people()
            .iter()
            .filter_map(|person| person.license_number.clone());
        let (with, without): (Vec<String>, Vec<String>) =
            numbers.partition(|n| !self.population.vehicles_of(n).is_empty());
        (
            with.into_iter().take(count).collect(),
            without.into_iter().take(count).collect(),
        )
    }
}

impl Drop for Dmv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a free loopback port until the task is aborted.
async fn serve(router: Router) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the server serves");
    });
    (format!("http://{addr}"), task)
}

/// The keys of a realistic batch: known numbers (in an order the service does not keep), an
/// unknown but well-formed number, a duplicate and a null.
fn licence_batch(known: &[String]) -> Vec<Arguments> {
    let mut batch: Vec<Arguments> = known
        .iter()
        .rev()
        .map(|n| args("license_number", json!(n)))
        .collect();
    batch.insert(1, args("license_number", json!("D9999999")));
    batch.push(args("license_number", json!(known[0])));
    batch.push(args("license_number", Value::Null));
    batch
}

#[tokio::test]
async fn a_licence_batch_is_one_envelope_and_each_answer_is_the_single_calls() {
    let dmv = Dmv::start().await;
    let dmv_connector = dmv.connector();
    let (with, without) = dmv.holders(3);
    let known = [with, without].concat();
    let batch = licence_batch(&known);

    let answers = dmv_connector
        .call_batch("license", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(
        dmv.posts(),
        1,
        "one GetLicenses envelope for the whole batch"
    );
    assert!(
        answers.iter().filter(|a| a.value.is_some()).count() == known.len() + 1,
        "every known number (one twice) has its licence: {answers:?}"
    );
    assert_eq!(answers[1].value, None, "an unknown number is null");
    assert_eq!(answers[batch.len() - 1].value, None, "a null key is null");
    assert_eq!(
        answers[0].value.as_ref().map(|l| l["number"].clone()),
        Some(json!(known[known.len() - 1])),
        "answers follow the entries, not the service's order"
    );
    assert_each_equals_the_single_call(&dmv_connector, "license", &batch, &answers).await;
}

#[tokio::test]
async fn a_vehicle_batch_groups_each_holders_vehicles_like_the_single_call() {
    let dmv = Dmv::start().await;
    let dmv_connector = dmv.connector();
    let (with, without) = dmv.holders(3);
    let batch = licence_batch(&[with, without].concat());

    let answers = dmv_connector
        .call_batch("vehicles", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(
        dmv.posts(),
        1,
        "one GetVehicleLists envelope for the whole batch"
    );
    assert!(
        answers[0]
            .value
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty),
        "a holder without vehicles has `[]`: {:?}",
        answers[0]
    );
    assert_eq!(
        answers[1].value,
        Some(json!([])),
        "an unknown number is `[]`, as the single call answers"
    );
    assert!(
        answers
            .iter()
            .filter_map(|a| a.value.as_ref().and_then(Value::as_array))
            .any(|vehicles| !vehicles.is_empty()),
        "the sample has vehicles: {answers:?}"
    );
    assert_each_equals_the_single_call(&dmv_connector, "vehicles", &batch, &answers).await;
}

#[tokio::test]
async fn a_soap_fault_fails_the_batch_with_the_single_calls_error() {
    let dmv = Dmv::start().await;
    let dmv_connector = dmv.connector();
    let (known, _) = dmv.holders(2);
    let mut batch: Vec<Arguments> = known
        .iter()
        .map(|n| args("license_number", json!(n)))
        .collect();
    let malformed = args("license_number", json!("D12"));
    batch.push(malformed.clone());

    let batch_error = dmv_connector
        .call_batch("license", &batch)
        .await
        .expect_err("the service refuses the malformed number");
    let single_error = dmv_connector
        .call("license", &malformed)
        .await
        .expect_err("the service refuses it alone too");
    match (&batch_error, &single_error) {
        (
            CallError::Fault {
                fault_code: batch_code,
                ..
            },
            CallError::Fault {
                fault_code: single_code,
                ..
            },
        ) => assert_eq!(
            (batch_code.as_str(), single_code.as_str()),
            ("soap:Client", "soap:Client")
        ),
        other => panic!("not two faults: {other:?}"),
    }
    assert_eq!(batch_error.code(), ErrorCode::BackendFault);
    assert_eq!(batch_error.code(), single_error.code());

    // A key the connector refuses before sending refuses the batch the same way, unsent.
    let before = dmv.posts();
    let mut refused = batch[..1].to_vec();
    refused.push(args("license_number", json!(["D1234567"])));
    let error = dmv_connector
        .call_batch("license", &refused)
        .await
        .expect_err("a list is no licence number");
    assert_eq!(error.code(), ErrorCode::BadUserInput);
    assert_eq!(dmv.posts(), before, "nothing was sent");
}

#[tokio::test]
async fn more_keys_than_max_take_one_envelope_per_max_keys() {
    let dmv = Dmv::start().await;
    let (path, text) = shipped("dmv.toml");
    let text = text.replacen("max = 100", "max = 2", 1);
    let (_, dmv_connector) = build(&path, &text, &[("DMV_URL", &dmv.url)]);
    let (with, without) = dmv.holders(3);
    let batch: Vec<Arguments> = [with, without]
        .concat()
        .iter()
        .map(|n| args("license_number", json!(n)))
        .collect();
    assert_eq!(batch.len(), 6);

    let answers = dmv_connector
        .call_batch("license", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(dmv.posts(), 3, "six keys, two per envelope");
    assert_each_equals_the_single_call(&dmv_connector, "license", &batch, &answers).await;
}

/// A SOAP service on loopback answering every envelope with `reply`, counting them.
async fn scripted(reply: String) -> (String, Arc<AtomicUsize>, JoinHandle<()>) {
    let posts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&posts);
    let router = Router::new().route(
        "/dmv/soap",
        post(move |_body: Bytes| {
            counter.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            async move { ([("content-type", "text/xml; charset=utf-8")], reply) }
        }),
    );
    let (url, task) = serve(router).await;
    (url, posts, task)
}

fn envelope(body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP11_NS}\"><s:Body><x:GetLicensesResponse xmlns:x=\"{DMV_NS}\">{body}</x:GetLicensesResponse></s:Body></s:Envelope>"
    )
}

/// The shipped `dmv` connector pointed at `url`.
fn scripted_connector(url: &str) -> Arc<dyn Connector> {
    let (path, text) = shipped("dmv.toml");
    build(&path, &text, &[("DMV_URL", url)]).1
}

#[tokio::test]
async fn items_are_matched_by_key_and_an_item_without_its_key_fails_the_batch() {
    // Items in another order, one key padded with spaces, an item for a key not asked for.
    let items = envelope(
        "<x:license><x:number>D0000002</x:number><x:class>B</x:class></x:license>\
         <x:license><x:number>D0000009</x:number><x:class>C</x:class></x:license>\
         <x:license><x:number> D0000001 </x:number><x:class>A</x:class>\
         <x:restrictions><x:restriction>LENSES</x:restriction></x:restrictions></x:license>",
    );
    let (url, posts, task) = scripted(items).await;
    let dmv_connector = scripted_connector(&url);
    let batch = [
        args("license_number", json!("D0000001")),
        args("license_number", json!("D0000003")),
        args("license_number", json!("D0000002")),
    ];
    let answers = dmv_connector
        .call_batch("license", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(posts.load(Ordering::SeqCst), 1);
    let values: Vec<Option<Value>> = answers.into_iter().map(|a| a.value).collect();
    assert_eq!(
        values,
        [
            Some(
                json!({"number": " D0000001 ", "class": "A", "restrictions": {"restriction": ["LENSES"]}})
            ),
            None,
            Some(json!({"number": "D0000002", "class": "B"})),
        ]
    );
    task.abort();

    let (url, _, task) = scripted(envelope("<x:license><x:class>A</x:class></x:license>")).await;
    let error = scripted_connector(&url)
        .call_batch("license", &batch)
        .await
        .expect_err("an item that names no key");
    assert!(
        matches!(&error, CallError::BadResponse { reason } if reason.contains("no `match` element")),
        "{error}"
    );
    assert_eq!(error.code(), ErrorCode::BackendBadResponse);
    task.abort();

    // Two items for one key of a `returns = "one"` operation, as a single call with two.
    let two = envelope(
        "<x:license><x:number>D0000001</x:number></x:license>\
         <x:license><x:number>D0000001</x:number></x:license>",
    );
    let (url, _, task) = scripted(two).await;
    let error = scripted_connector(&url)
        .call_batch("license", &batch[..1])
        .await
        .expect_err("two licences for one number");
    assert_eq!(error.code(), ErrorCode::BackendBadResponse);
    task.abort();
}

// ---------------------------------------------------------------------------------------------
// The benefits mainframe (online)
// ---------------------------------------------------------------------------------------------

/// The simulated mainframe on loopback, counting the transactions it answers.
async fn mainframe(records: BenefitsRecords) -> (RecordServer, Arc<AtomicUsize>) {
    let codecs = BenefitsCodecs::new().expect("the shipped copybooks build");
    let transactions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&transactions);
    let server = RecordServer::start(
        Framing::Length4 {
            includes_prefix: false,
        },
        Arc::new(move |request: &[u8]| {
            counter.fetch_add(1, Ordering::SeqCst);
            codecs.answer(&records, request)
        }),
    )
    .await
    .expect("start the simulated mainframe");
    (server, transactions)
}

/// The shipped `benefits` connector, edited by `edit`, pointed at `server`.
fn benefits(server: &RecordServer, edit: impl Fn(String) -> String) -> Arc<dyn Connector> {
    let (path, text) = shipped("benefits.toml");
    build(
        &path,
        &edit(text),
        &[("BENEFITS_MAINFRAME_ADDR", &server.addr().to_string())],
    )
    .1
}

/// Case numbers with cases, an unknown one, a duplicate and a null.
fn case_batch(records: &BenefitsRecords, count: usize) -> Vec<Arguments> {
    let mut batch: Vec<Arguments> = records
        .holders()
        .iter()
        .take(count)
        .map(|(_, case)| args("case_number", json!(case)))
        .collect();
    batch.insert(2, args("case_number", json!("BC99999999")));
    batch.push(batch[0].clone());
    batch.push(args("case_number", Value::Null));
    batch
}

#[tokio::test]
async fn a_case_batch_is_one_transaction_and_each_answer_is_the_single_calls() {
    let population = Population::generate(200, 42);
    let records = population.benefits().clone();
    let (server, transactions) = mainframe(records.clone()).await;
    let cases = benefits(&server, |t| t);
    let batch = case_batch(&records, 12);

    let answers = cases
        .call_batch("cases", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(
        transactions.load(Ordering::SeqCst),
        1,
        "one BNQ2 transaction for the whole batch"
    );
    assert_eq!(answers[2].value, None, "an unknown case number is null");
    assert_eq!(answers[batch.len() - 1].value, None, "a null key is null");
    for (answer, (_, case_number)) in answers.iter().zip(records.holders()).take(2) {
        let expected = records.cases(case_number).len();
        assert_eq!(
            answer
                .value
                .as_ref()
                .and_then(Value::as_array)
                .map(Vec::len),
            Some(expected),
            "{case_number} has all its cases"
        );
    }
    assert_each_equals_the_single_call(&cases, "cases", &batch, &answers).await;
    assert_eq!(
        transactions.load(Ordering::SeqCst),
        1 + batch.len() - 1,
        "the single calls were one transaction each (the null key is not sent)"
    );
}

#[tokio::test]
async fn more_case_numbers_than_max_take_one_transaction_per_max_keys() {
    let population = Population::generate(200, 42);
    let records = population.benefits().clone();
    let (server, transactions) = mainframe(records.clone()).await;
    let cases = benefits(&server, |t| t.replace("max = 100", "max = 4"));
    let batch: Vec<Arguments> = records
        .holders()
        .iter()
        .take(9)
        .map(|(_, case)| args("case_number", json!(case)))
        .collect();
    assert_eq!(batch.len(), 9, "enough holders in the sample");

    let answers = cases
        .call_batch("cases", &batch)
        .await
        .expect("the batch answers");
    assert_eq!(
        transactions.load(Ordering::SeqCst),
        3,
        "nine keys, four per transaction"
    );
    assert_each_equals_the_single_call(&cases, "cases", &batch, &answers).await;
}

#[tokio::test]
async fn a_refused_transaction_fails_the_batch_like_the_single_call() {
    let population = Population::generate(200, 42);
    let records = population.benefits().clone();
    let (server, transactions) = mainframe(records.clone()).await;
    // The mainframe answers return code 08 to transaction codes it does not know.
    let wrong = benefits(&server, |t| {
        t.replace("code = \"BNQ1\"", "code = \"BNQ9\"")
            .replace("code = \"BNQ2\"", "code = \"BNQ8\"")
    });
    let batch = case_batch(&records, 3);
    let batch_error = wrong
        .call_batch("cases", &batch)
        .await
        .expect_err("the transaction is refused");
    let single_error = wrong
        .call("cases", &batch[0])
        .await
        .expect_err("the transaction is refused alone too");
    assert_eq!(transactions.load(Ordering::SeqCst), 2);
    match (&batch_error, &single_error) {
        (
            CallError::Fault {
                fault_code: batch_code,
                ..
            },
            CallError::Fault {
                fault_code: single_code,
                ..
            },
        ) => assert_eq!(
            (batch_code.as_str(), single_code.as_str()),
            ("M_RC_BAD_REQUEST", "RC_BAD_REQUEST")
        ),
        other => panic!("not two faults: {other:?}"),
    }
    assert_eq!(batch_error.code(), ErrorCode::BackendFault);
    assert_eq!(batch_error.code(), single_error.code());

    // A key the single call refuses before sending refuses the batch the same way, unsent.
    let cases = benefits(&server, |t| t);
    let mut too_long = batch[..2].to_vec();
    too_long.push(args("case_number", json!("BC000000001234")));
    let batch_error = cases
        .call_batch("cases", &too_long)
        .await
        .expect_err("a case number longer than its field");
    let single_error = cases
        .call("cases", &too_long[2])
        .await
        .expect_err("refused alone too");
    assert_eq!(batch_error.to_string(), single_error.to_string());
    assert_eq!(batch_error.code(), ErrorCode::BadUserInput);
    assert_eq!(
        transactions.load(Ordering::SeqCst),
        2,
        "nothing more was sent"
    );
}

#[tokio::test]
async fn a_result_the_mainframe_leaves_out_is_null_and_a_short_answer_is_a_bad_response() {
    let population = Population::generate(200, 42);
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let (_, known) = records.holders()[0].clone();
    // The answer to [known] alone, served for [known, unknown]: the unknown key is left out.
    let left_out = codecs.answer(&records, &codecs.multi_request("BNQ2", &[&known]));
    // The answer to [known, unknown] with a header announcing a third result that never
    // comes: the answer is short.
    let mut short = codecs.answer(
        &records,
        &codecs.multi_request("BNQ2", &[&known, "BC99999999"]),
    );
    assert_eq!(short.get(6..8), Some(&[0u8, 2][..]), "the header's count");
    short[7] = 3;
    for (answer, expect_ok) in [(left_out, true), (short, false)] {
        let server = RecordServer::start(
            Framing::Length4 {
                includes_prefix: false,
            },
            Arc::new(move |_: &[u8]| answer.clone()),
        )
        .await
        .expect("a scripted mainframe");
        let cases = benefits(&server, |t| t);
        let batch = [
            args("case_number", json!(known)),
            args("case_number", json!("BC99999999")),
        ];
        let result = cases.call_batch("cases", &batch).await;
        if expect_ok {
            let answers = result.expect("the batch answers");
            assert_eq!(
                answers[0]
                    .value
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(Vec::len),
                Some(records.cases(&known).len())
            );
            assert_eq!(answers[1].value, None, "left out: null, as not found");
        } else {
            let error = result.expect_err("a result record is missing");
            assert!(
                matches!(&error, CallError::BadResponse { reason } if reason.contains("result record 3 of 3")),
                "{error}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benefit payments (extract)
// ---------------------------------------------------------------------------------------------

fn as_of(year: i32, month: u32, day: u32, hour: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .expect("a valid time")
}

/// The shipped `benefit_payments` connector (named `name`) over `directory`, attached to
/// `store` (which loads the newest file).
async fn payments(name: &str, directory: &Path, store: &Store) -> Arc<dyn Connector> {
    let (path, text) = shipped("benefit_payments.toml");
    let text = text.replace("name = \"benefit_payments\"", &format!("name = \"{name}\""));
    let directory = directory.display().to_string();
    let (connectors, connector) = build(&path, &text, &[("BENEFITS_EXTRACT_DIR", &directory)]);
    connectors.attach(store).await;
    connector
}

/// A batch of payment lookups answers, at each position, what the single lookup answers, with
/// the extract's as-of time; before any file is loaded both fail alike.
async fn extract_batch_equals_single_lookups(store: Store, name: &str) {
    let population = Population::generate(200, 42);
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let extracts = tempfile::tempdir().expect("an extract directory");

    let empty = payments(name, extracts.path(), &store).await;
    let lookup = [args("case_number", json!("BC00000001"))];
    let batch_error = empty
        .call_batch("payments", &lookup)
        .await
        .expect_err("nothing loaded yet");
    let single_error = empty
        .call_with_freshness("payments", &lookup[0])
        .await
        .expect_err("nothing loaded yet");
    assert_eq!(batch_error.code(), ErrorCode::BackendUnavailable);
    assert_eq!(batch_error.to_string(), single_error.to_string());
    drop(empty);

    write_extract(extracts.path(), &records, &codecs, as_of(2026, 11, 20, 2)).expect("write");
    let connector = payments(name, extracts.path(), &store).await;
    let mut batch: Vec<Arguments> = records
        .holders()
        .iter()
        .take(10)
        .map(|(_, case)| args("case_number", json!(case)))
        .collect();
    batch.insert(3, args("case_number", json!("BC99999999")));
    batch.push(args(
        "case_number",
        json!(format!("  {}  ", records.holders()[0].1)),
    ));
    batch.push(batch[1].clone());
    batch.push(args("case_number", Value::Null));

    let answers = connector
        .call_batch("payments", &batch)
        .await
        .expect("the batch answers");
    let as_of = chrono::DateTime::parse_from_rfc3339("2026-11-20T02:00:00Z")
        .expect("a time")
        .to_utc();
    assert_eq!(
        answers[3],
        Reply {
            value: Some(json!([])),
            as_of: Some(as_of)
        }
    );
    assert_eq!(
        answers[batch.len() - 1],
        Reply {
            value: None,
            as_of: None
        }
    );
    let (_, first) = &records.holders()[0];
    assert_eq!(
        answers[0]
            .value
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(records.payments(first).len())
    );
    assert!(
        answers.iter().any(|a| a
            .value
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|p| p.len() > 1)),
        "the sample has payments: {answers:?}"
    );
    assert_each_equals_the_single_call(&connector, "payments", &batch, &answers).await;
}

#[tokio::test]
async fn an_extract_batch_equals_single_lookups_with_their_as_of_time_on_sqlite() {
    let dir = tempfile::tempdir().expect("a store directory");
    let store = Store::connect(&StorageConfig {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        ),
        max_connections: 4,
    })
    .await
    .expect("an SQLite store");
    extract_batch_equals_single_lookups(store, "benefit_payments").await;
}

#[tokio::test]
async fn an_extract_batch_equals_single_lookups_with_their_as_of_time_on_postgres() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
        return;
    };
    let store = Store::connect(&StorageConfig {
        url,
        max_connections: 4,
    })
    .await
    .expect("PostgreSQL from CIVICGRAPH_TEST_POSTGRES_URL");
    // A connector name of its own, so runs and other tests never share rows.
    let name = format!("payments_batch_{}", uuid::Uuid::new_v4().simple());
    extract_batch_equals_single_lookups(store, &name).await;
}
