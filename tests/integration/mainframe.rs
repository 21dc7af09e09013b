//! The mainframe connector end to end: a gateway in front of a simulated mainframe speaking
//! EBCDIC records over TCP, and a directory of extract files; answers are compared with the
//! synthetic data they were built from, never with the codec's own output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use civicgraph::connectors::mainframe::transport::Framing;
use civicgraph::demo::Population;
use civicgraph::demo::benefits::{
    BenefitsCodecs, BenefitsRecords, CASE_COPYBOOK, PAYMENT_COPYBOOK, Payment, write_extract,
};
use civicgraph::demo::mainframe_server::{Misbehaviour, RecordHandler, RecordServer};
use serde_json::{Value, json};

use crate::support::{TestGateway, TestGatewayBuilder, check, start_demo};

const BENEFITS_TOML: &str = include_str!("../../connectors/benefits.toml");
const PAYMENTS_TOML: &str = include_str!("../../connectors/benefit_payments.toml");

/// Benefit cases and payments looked up by case number.
const SDL: &str = r#"scalar Date
scalar Money

type Query {
  benefitCases(caseNumber: String!): [BenefitCase!]
    @connect(connector: "benefits", operation: "cases", args: {case_number: "$args.caseNumber"}) @public
  benefitPayments(caseNumber: String!): [BenefitPayment!]
    @connect(connector: "benefit_payments", operation: "payments", args: {case_number: "$args.caseNumber"}) @public
}

type BenefitCase {
  program: String!
  caseStatus: String!
  openedOn: Date!
  closedOn: Date
  monthlyAmount: Money!
  balanceDue: Money!
  householdSize: Int!
  payMethod: String!
  deposit: Deposit
  card: Card
  check: Check
}

type Deposit { accountLast4: String! }
type Card { last4: String! issuedOn: Date! }
type Check { mailCode: Int! }

type BenefitPayment {
  paymentId: ID!
  caseNumber: String!
  program: String!
  issuedOn: Date!
  amount: Money!
  status: String!
}
"#;

const CASES_QUERY: &str = "query($n: String!) { benefitCases(caseNumber: $n) { program caseStatus openedOn closedOn monthlyAmount balanceDue householdSize payMethod deposit { accountLast4 } card { last4 issuedOn } check { mailCode } } }";
const PAYMENTS_QUERY: &str = "query($n: String!) { benefitPayments(caseNumber: $n) { paymentId caseNumber program issuedOn amount status } }";

fn population() -> Population {
    Population::generate(200, 42)
}

/// The simulated mainframe's answers for `records`.
fn handler(records: BenefitsRecords) -> RecordHandler {
    let codecs = BenefitsCodecs::new().expect("the shipped copybooks build");
    Arc::new(move |request: &[u8]| codecs.answer(&records, request))
}

async fn mainframe(records: BenefitsRecords) -> RecordServer {
    RecordServer::start(
        Framing::Length4 {
            includes_prefix: false,
        },
        handler(records),
    )
    .await
    .expect("start the simulated mainframe")
}

/// A project with the shipped `benefits` connector (its file edited by `edit`) pointed at `addr`.
fn online_project(addr: &str, edit: impl Fn(String) -> String) -> TestGatewayBuilder {
    TestGateway::builder()
        .schema("benefits.graphql", SDL)
        .connector("benefits.toml", &edit(BENEFITS_TOML.to_string()))
        .file("connectors/copybooks/BENEFIT-CASE.cpy", CASE_COPYBOOK)
        .file("connectors/copybooks/BENEFIT-PAYMENT.cpy", PAYMENT_COPYBOOK)
        .connector(
            "benefit_payments.toml",
            &PAYMENTS_TOML.replace("poll_ms = 5000", "poll_ms = 50"),
        )
        .var("BENEFITS_MAINFRAME_ADDR", addr)
        // An empty extract directory inside the project (relative to `connectors/`); tests of
        // extracts point the variable at their own.
        .file("connectors/extracts/.keep", "")
        .var("BENEFITS_EXTRACT_DIR", "extracts")
}

fn codes(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What the gateway must answer for one case, written from the generated data.
fn expected_case(case: &civicgraph::demo::benefits::BenefitCase) -> Value {
    let (method, deposit, card, check) = match &case.payment {
        Payment::Deposit { account_last4 } => (
            "DEPOSIT",
            json!({"accountLast4": account_last4}),
            Value::Null,
            Value::Null,
        ),
        Payment::Card { last4, issued_on } => (
            "CARD",
            Value::Null,
            json!({"last4": last4, "issuedOn": issued_on.to_string()}),
            Value::Null,
        ),
        Payment::Check { mail_code } => (
            "CHECK",
            Value::Null,
            Value::Null,
            json!({"mailCode": mail_code}),
        ),
    };
    json!({
        "program": case.program.graphql(),
        "caseStatus": case.status.graphql(),
        "openedOn": case.opened_on.to_string(),
        "closedOn": case.closed_on.map(|d| d.to_string()),
        "monthlyAmount": format!("{:.2}", case.monthly_amount),
        "balanceDue": format!("{:.2}", case.balance_due),
        "householdSize": case.household_size,
        "payMethod": method,
        "deposit": deposit,
        "card": card,
        "check": check,
    })
}

#[tokio::test]
async fn online_cases_match_the_mainframe_records_exactly() {
    let population = population();
    let records = population.benefits().clone();
    let server = mainframe(records.clone()).await;
    let gateway = online_project(&server.addr().to_string(), |t| t)
        .build()
        .await;
    let mut compared = 0;
    let mut negative_balances = 0;
    for (_, case_number) in records.holders().iter().take(25) {
        let answer = gateway
            .post_with(
                json!({"query": CASES_QUERY, "variables": {"n": case_number}}),
                &[],
            )
            .await;
        assert_eq!(answer.body.get("errors"), None, "{}", answer.body);
        let expected: Vec<Value> = records
            .cases(case_number)
            .iter()
            .map(expected_case)
            .collect();
        assert_eq!(
            answer.body["data"]["benefitCases"],
            Value::Array(expected),
            "case {case_number}"
        );
        compared += 1;
        negative_balances += records
            .cases(case_number)
            .iter()
            .filter(|c| c.balance_due.is_sign_negative())
            .count();
    }
    assert_eq!(compared, 25);
    // The sample must exercise the negative zoned decimals, not only positive ones.
    assert!(negative_balances > 0, "no negative balance in the sample");
    // Sequential calls reuse one pooled connection.
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn an_unknown_case_is_null_and_a_refused_transaction_is_a_fault_with_its_return_code() {
    let server = mainframe(population().benefits().clone()).await;
    let gateway = online_project(&server.addr().to_string(), |t| t)
        .build()
        .await;
    let answer = gateway
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": "BC99999999"}}),
            &[],
        )
        .await;
    assert_eq!(answer.body, json!({"data": {"benefitCases": null}}));

    // The simulated mainframe answers return code 08 to a transaction code it does not know.
    let wrong_code = online_project(&server.addr().to_string(), |t| {
        t.replace("code = \"BNQ1\"", "code = \"BNQ9\"")
    })
    .build()
    .await;
    let answer = wrong_code
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": "BC00000042"}}),
            &[],
        )
        .await;
    assert_eq!(codes(&answer.body), ["BACKEND_FAULT"], "{}", answer.body);
    assert_eq!(
        answer.body["errors"][0]["extensions"]["faultCode"],
        "RC_BAD_REQUEST"
    );
    assert_eq!(answer.body["errors"][0]["path"], json!(["benefitCases"]));
}

#[tokio::test]
async fn a_case_number_longer_than_its_field_is_refused_before_anything_is_sent() {
    let server = mainframe(BenefitsRecords::default()).await;
    let gateway = online_project(&server.addr().to_string(), |t| t)
        .build()
        .await;
    let answer = gateway
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": "BC000000001234"}}),
            &[],
        )
        .await;
    assert_eq!(codes(&answer.body), ["BAD_USER_INPUT"], "{}", answer.body);
    let message = answer.body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("BNQ-CASE-NUMBER"), "{message}");
    assert!(
        !message.contains("BC000000001234"),
        "the value leaked: {message}"
    );
    assert_eq!(server.accepted(), 0, "nothing may reach the mainframe");

    // With `text_overflow = "truncate"` the same value is cut to the field, as COBOL MOVE does.
    let truncating = online_project(&server.addr().to_string(), |t| {
        t.replace("text_overflow = \"error\"", "text_overflow = \"truncate\"")
    })
    .build()
    .await;
    let answer = truncating
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": "BC000000001234"}}),
            &[],
        )
        .await;
    assert_eq!(answer.body, json!({"data": {"benefitCases": null}}));
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_mainframe_that_closes_mid_record_fails_fast_and_one_that_stalls_times_out() {
    let population = population();
    let case_number = population.benefits().holders()[0].1.clone();

    let closing = RecordServer::start_faulty(
        Framing::Length4 {
            includes_prefix: false,
        },
        handler(population.benefits().clone()),
        Misbehaviour::CloseMidRecord,
        usize::MAX,
    )
    .await
    .expect("start");
    let gateway = online_project(&closing.addr().to_string(), |t| t)
        .build()
        .await;
    let started = Instant::now();
    let answer = gateway
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": case_number}}),
            &[],
        )
        .await;
    assert_eq!(
        codes(&answer.body),
        ["BACKEND_UNAVAILABLE"],
        "{}",
        answer.body
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a closed connection must not wait for the 2 s timeout: {:?}",
        started.elapsed()
    );

    let stalling = RecordServer::start_faulty(
        Framing::Length4 {
            includes_prefix: false,
        },
        handler(population.benefits().clone()),
        Misbehaviour::StallMidRecord,
        usize::MAX,
    )
    .await
    .expect("start");
    let gateway = online_project(&stalling.addr().to_string(), |t| {
        t.replace("timeout_ms = 2000", "timeout_ms = 300")
    })
    .build()
    .await;
    let started = Instant::now();
    let answer = gateway
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": case_number}}),
            &[],
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(codes(&answer.body), ["BACKEND_TIMEOUT"], "{}", answer.body);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_corrupt_response_record_is_a_bad_response_not_a_wrong_number() {
    let population = population();
    let records = population.benefits().clone();
    let case_number = records.holders()[0].1.clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    // Header: tran code 4 + return code 2 + case number 10 + count 2 = 18 bytes; in the first
    // case, program 4 + status 1 + opened 8 + closed 8 put the packed amount at byte 39.
    let corrupt: RecordHandler = Arc::new(move |request: &[u8]| {
        let mut answer = codecs.answer(&records, request);
        if let Some(byte) = answer.get_mut(39) {
            *byte = 0xAB; // digit nibble A is not a decimal digit
        }
        answer
    });
    let server = RecordServer::start(
        Framing::Length4 {
            includes_prefix: false,
        },
        corrupt,
    )
    .await
    .expect("start");
    let gateway = online_project(&server.addr().to_string(), |t| t)
        .build()
        .await;
    let answer = gateway
        .post_with(
            json!({"query": CASES_QUERY, "variables": {"n": case_number}}),
            &[],
        )
        .await;
    assert_eq!(answer.body["data"]["benefitCases"], Value::Null);
    assert_eq!(
        codes(&answer.body),
        ["BACKEND_BAD_RESPONSE"],
        "{}",
        answer.body
    );
}

/// Log output collected in memory, for asserting on what an operator would read.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Collects this thread's INFO-and-above logs until the guard drops. The gateway runs on
    /// the test's one thread, so it logs here.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        );
        (logs, guard)
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Polls `query` until `done` holds on the answer, for up to 10 s.
async fn eventually(gateway: &TestGateway, body: Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = gateway.post_with(body.clone(), &[]).await.body;
        if done(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn payments_json(records: &BenefitsRecords, case_number: &str) -> Value {
    Value::Array(
        records
            .payments(case_number)
            .iter()
            .map(|p| {
                json!({
                    "paymentId": p.payment_id.to_string(),
                    "caseNumber": p.case_number,
                    "program": p.program.graphql(),
                    "issuedOn": p.issued_on.to_string(),
                    "amount": format!("{:.2}", p.amount),
                    "status": p.status.graphql(),
                })
            })
            .collect(),
    )
}

fn as_of(year: i32, month: u32, day: u32, hour: u32) -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .expect("a valid time")
}

#[tokio::test]
async fn extract_files_are_loaded_whole_served_with_their_as_of_time_and_bad_ones_rejected() {
    let (logs, _guard) = LogCapture::install();
    let population = population();
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let extracts = tempfile::tempdir().expect("extract directory");
    let dir = extracts.path();
    let (_, case_number) = records
        .holders()
        .iter()
        .find(|(_, case)| !records.payments(case).is_empty())
        .cloned()
        .expect("someone was paid");

    // Before any file: the field fails as unavailable, and says so.
    let gateway = online_project("127.0.0.1:9", |t| t)
        .var("BENEFITS_EXTRACT_DIR", &dir.display().to_string())
        .build()
        .await;
    let body = json!({"query": PAYMENTS_QUERY, "variables": {"n": case_number}});
    let answer = gateway.post_with(body.clone(), &[]).await.body;
    assert_eq!(codes(&answer), ["BACKEND_UNAVAILABLE"], "{answer}");

    // A complete file with its READY marker is loaded.
    write_extract(dir, &records, &codecs, as_of(2026, 11, 20, 2)).expect("write the extract");
    let answer = eventually(&gateway, body.clone(), |a| a.get("errors").is_none()).await;
    assert_eq!(
        answer["data"]["benefitPayments"],
        payments_json(&records, &case_number)
    );
    assert_eq!(
        answer["extensions"]["freshness"],
        json!({"benefit_payments": {"asOf": "2026-11-20T02:00:00Z"}})
    );

    // A newer file without its marker is not touched; nor is a half-written one (not a whole
    // number of 48-byte records), nor one with a record that does not decode.
    let record_len = codecs.payment_record_len();
    assert_eq!(record_len, 48);
    let mut newer = Vec::new();
    for payment in records.all_payments() {
        newer.extend_from_slice(&codecs.payment_record(payment));
    }
    std::fs::write(dir.join("BENPAY.D20261121.T020000.DAT"), &newer).expect("write");
    let half = &newer[..newer.len() - 7];
    std::fs::write(dir.join("BENPAY.D20261122.T020000.DAT"), half).expect("write");
    std::fs::write(dir.join("BENPAY.D20261122.T020000.DAT.READY"), b"").expect("write");
    let mut corrupt = newer.clone();
    // The packed amount of the second record: case 10 + program 4 + date 8 = byte 22.
    corrupt[record_len + 22] = 0x0A;
    std::fs::write(dir.join("BENPAY.D20261123.T020000.DAT"), &corrupt).expect("write");
    std::fs::write(dir.join("BENPAY.D20261123.T020000.DAT.READY"), b"").expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await; // several polls
    let answer = gateway.post_with(body.clone(), &[]).await.body;
    assert_eq!(
        answer["extensions"]["freshness"]["benefit_payments"]["asOf"], "2026-11-20T02:00:00Z",
        "rejected files must leave the previous extract serving: {answer}"
    );
    assert_eq!(
        answer["data"]["benefitPayments"],
        payments_json(&records, &case_number)
    );
    // Each rejection is one clear log line naming the file and what is wrong with it (the
    // record, field and byte for a corrupt one), however many times the directory is read.
    let text = logs.text();
    let rejected: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("Rejected extract file"))
        .collect();
    assert_eq!(rejected.len(), 2, "{text}");
    assert!(
        rejected
            .iter()
            .any(|line| line.contains("BENPAY.D20261122.T020000.DAT")
                && line.contains("not a whole number of 48-byte records")),
        "{text}"
    );
    assert!(
        rejected
            .iter()
            .any(|line| line.contains("BENPAY.D20261123.T020000.DAT")
                && line.contains("record 2")
                && line.contains("BPY-AMOUNT at byte 22")),
        "{text}"
    );
    assert!(
        !text.contains(&case_number),
        "no case number in the logs: {text}"
    );

    // When the marker of the good newer file appears, it replaces the old one.
    std::fs::write(dir.join("BENPAY.D20261121.T020000.DAT.READY"), b"").expect("write");
    let answer = eventually(&gateway, body.clone(), |a| {
        a["extensions"]["freshness"]["benefit_payments"]["asOf"] == "2026-11-21T02:00:00Z"
    })
    .await;
    assert_eq!(
        answer["extensions"]["freshness"]["benefit_payments"]["asOf"], "2026-11-21T02:00:00Z",
        "{answer}"
    );

    // An unknown case number is an empty list, still with the extract's freshness.
    let answer = gateway
        .post_with(
            json!({"query": PAYMENTS_QUERY, "variables": {"n": "BC99999999"}}),
            &[],
        )
        .await
        .body;
    assert_eq!(answer["data"]["benefitPayments"], json!([]));
    assert!(answer["extensions"]["freshness"]["benefit_payments"].is_object());
}

#[tokio::test]
async fn the_demo_citizen_query_joins_benefit_cases_and_payments() {
    let demo = start_demo(60).await;
    let person = demo
        .population
        .person("C0000001")
        .expect("C0000001")
        .clone();
    let case_number = person.case_number.clone().expect("C0000001 has a case");
    let benefits = demo.population.benefits();
    // C0000001 reads their own record, every personal field allowed.
    let answer = demo
        .post_as_citizen(
            "C0000001",
            r#"{ me { name taxAccount { balance } benefitCases { program caseStatus monthlyAmount payMethod card { last4 } deposit { accountLast4 } check { mailCode } } benefitPayments { issuedOn amount status } } }"#,
        )
        .await;
    assert_eq!(answer.body.get("errors"), None, "{}", answer.body);
    let cases = answer.body["data"]["me"]["benefitCases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cases.len(), benefits.cases(&case_number).len());
    assert_eq!(cases.len(), 3, "C0000001 shows every payment method");
    let methods: Vec<&str> = cases
        .iter()
        .map(|c| c["payMethod"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(methods, ["CARD", "DEPOSIT", "CHECK"]);
    for (got, case) in cases.iter().zip(benefits.cases(&case_number)) {
        assert_eq!(got["monthlyAmount"], format!("{:.2}", case.monthly_amount));
        assert_eq!(got["program"], case.program.graphql());
    }
    let payments = answer.body["data"]["me"]["benefitPayments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(payments.len(), benefits.payments(&case_number).len());
    assert!(!payments.is_empty());
    assert_eq!(
        answer.body["extensions"]["freshness"]["benefit_payments"]["asOf"],
        "2025-12-31T02:00:00Z"
    );
}

#[test]
fn check_reports_copybook_and_connector_mistakes_at_their_lines() {
    // A copybook error points into the copybook itself.
    let broken = CASE_COPYBOOK.replacen("PIC X(4).", "PIC X(4", 1);
    let project = online_project("127.0.0.1:7104", |t| t)
        .file("connectors/copybooks/BENEFIT-CASE.cpy", broken)
        .write();
    let errors = check(&project).expect_err("a broken copybook").to_string();
    // Line 7 lost its period; the parser notices at the next entry's level number.
    assert!(
        errors.contains("BENEFIT-CASE.cpy:8:13: missing period before level number 05"),
        "the copybook's line and column are named: {errors}"
    );

    // Connector mistakes, each at its line of benefits.toml.
    let project = online_project("127.0.0.1:7104", |t| {
        t.replace("framing = \"length4\"", "framing = \"length3\"")
            .replace("BNQ-CASE-NUMBER = ", "BNQ-CASE-NUMBR = ")
            .replace("select = \"BNQ-CASES\"", "select = \"BNQ-KASES\"")
            .replace("[fields.BNQ-OPENED-ON]", "[fields.BNQ-OPENED]")
            .replace("ok = [\"BNQ-RC-OK\"]", "ok = [\"BNQ-RC-FINE\"]")
    })
    .write();
    let errors = check(&project).expect_err("mistakes").to_string();
    for expected in [
        "`framing` must be",
        "`set` names `BNQ-CASE-NUMBR`",
        "`select` names `BNQ-KASES`",
        "`[fields.BNQ-OPENED]` names no item",
        "`BNQ-RC-FINE` is not an 88-level condition",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(errors.contains("benefits.toml:"), "{errors}");

    // The status field must keep its 88-levels.
    let project = online_project("127.0.0.1:7104", |t| {
        format!("{t}\n[fields.BNQ-RETURN-CODE]\ndecode = \"raw\"\n")
    })
    .write();
    let errors = check(&project).expect_err("a raw status field").to_string();
    assert!(
        errors.contains("`status` reads the 88-levels of `BNQ-RETURN-CODE`"),
        "{errors}"
    );

    // Both access modes at once is refused.
    let project = online_project("127.0.0.1:7104", |t| {
        format!("{t}\n[extract]\ndirectory = \"x\"\npattern = \"*\"\nkey = \"BNQ-CASE-NUMBER\"\n")
    })
    .write();
    let errors = check(&project).expect_err("two modes").to_string();
    assert!(
        errors.contains("either `[online]` or `[extract]`"),
        "{errors}"
    );
}

/// Two gateway instances sharing one PostgreSQL store: each serves the extract, a file loaded
/// once is not loaded again on every look, and a newer file reaches both.
#[tokio::test]
async fn extracts_on_postgres_are_shared_by_gateway_instances() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
        return;
    };
    // A connector name of its own, so runs and other tests never share rows.
    let name = format!(
        "payments_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    let population = population();
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let extracts = tempfile::tempdir().expect("extract directory");
    let dir = extracts.path();
    write_extract(dir, &records, &codecs, as_of(2026, 11, 20, 2)).expect("write");
    let (_, case_number) = records
        .holders()
        .iter()
        .find(|(_, case)| !records.payments(case).is_empty())
        .cloned()
        .expect("someone was paid");
    let sdl = SDL.replace(
        "connector: \"benefit_payments\"",
        &format!("connector: \"{name}\""),
    );
    let connector = PAYMENTS_TOML
        .replace("name = \"benefit_payments\"", &format!("name = \"{name}\""))
        .replace("poll_ms = 5000", "poll_ms = 50");
    let instance = || {
        online_project("127.0.0.1:9", |t| t)
            .schema("benefits.graphql", &sdl)
            .connector("benefit_payments.toml", &connector)
            .gateway_toml(&format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"{url}\"\n"
            ))
            .var("BENEFITS_EXTRACT_DIR", &dir.display().to_string())
    };
    let first = instance().build().await;
    let second = instance().build().await;
    let body = json!({"query": PAYMENTS_QUERY, "variables": {"n": case_number}});
    for gateway in [&first, &second] {
        let answer = gateway.post_with(body.clone(), &[]).await.body;
        assert_eq!(
            answer["data"]["benefitPayments"],
            payments_json(&records, &case_number),
            "{answer}"
        );
        assert_eq!(
            answer["extensions"]["freshness"][name.as_str()]["asOf"],
            "2026-11-20T02:00:00Z"
        );
    }

    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let loaded_at = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT loaded_at FROM mainframe_extracts WHERE connector = $1",
        )
        .bind(&name)
        .fetch_one(&pool)
        .await
        .expect("the extract row")
    };
    let before = loaded_at().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // several looks by both instances
    assert_eq!(
        loaded_at().await,
        before,
        "an unchanged file must not be reloaded"
    );

    write_extract(dir, &records, &codecs, as_of(2026, 11, 21, 2)).expect("write");
    for gateway in [&first, &second] {
        let answer = eventually(gateway, body.clone(), |a| {
            a["extensions"]["freshness"][name.as_str()]["asOf"] == "2026-11-21T02:00:00Z"
        })
        .await;
        assert_eq!(
            answer["extensions"]["freshness"][name.as_str()]["asOf"],
            "2026-11-21T02:00:00Z",
            "{answer}"
        );
        assert_eq!(
            answer["data"]["benefitPayments"],
            payments_json(&records, &case_number)
        );
    }
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mainframe_extract_rows WHERE connector = $1")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        rows,
        records.all_payments().count() as i64,
        "one copy, not two"
    );
    for table in ["mainframe_extract_rows", "mainframe_extracts"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE connector = $1"))
            .bind(&name)
            .execute(&pool)
            .await
            .expect("clean up");
    }
}

/// A directory that does not exist yet is logged once, not on every look, and the extract is
/// loaded as soon as the directory and a file appear.
#[tokio::test]
async fn a_missing_extract_directory_is_logged_once_and_picked_up_when_it_appears() {
    let (logs, _guard) = LogCapture::install();
    let population = population();
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let parent = tempfile::tempdir().expect("a directory");
    let dir = parent.path().join("not-yet");
    let gateway = online_project("127.0.0.1:9", |t| t)
        .var("BENEFITS_EXTRACT_DIR", &dir.display().to_string())
        .build()
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await; // several looks
    let missing = logs
        .text()
        .lines()
        .filter(|line| line.contains("Cannot list the extract directory"))
        .count();
    assert_eq!(missing, 1, "{}", logs.text());

    std::fs::create_dir(&dir).expect("create the directory");
    write_extract(&dir, &records, &codecs, as_of(2026, 11, 20, 2)).expect("write");
    let (_, case_number) = records.holders()[0].clone();
    let body = json!({"query": PAYMENTS_QUERY, "variables": {"n": case_number}});
    let answer = eventually(&gateway, body, |a| a.get("errors").is_none()).await;
    assert_eq!(
        answer["extensions"]["freshness"]["benefit_payments"]["asOf"], "2026-11-20T02:00:00Z",
        "{answer}"
    );
    assert!(
        logs.text()
            .contains("The extract directory can be listed again."),
        "{}",
        logs.text()
    );
}

/// A file larger than `max_file_bytes` is rejected without being read into memory.
#[tokio::test]
async fn an_extract_file_over_the_size_limit_is_rejected_unread() {
    let (logs, _guard) = LogCapture::install();
    let population = population();
    let records = population.benefits().clone();
    let codecs = BenefitsCodecs::new().expect("codecs");
    let extracts = tempfile::tempdir().expect("extract directory");
    write_extract(extracts.path(), &records, &codecs, as_of(2026, 11, 20, 2)).expect("write");
    let gateway = online_project("127.0.0.1:9", |t| t)
        .connector(
            "benefit_payments.toml",
            &PAYMENTS_TOML.replace("poll_ms = 5000", "poll_ms = 50\nmax_file_bytes = 4800"),
        )
        .var(
            "BENEFITS_EXTRACT_DIR",
            &extracts.path().display().to_string(),
        )
        .build()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, case_number) = records.holders()[0].clone();
    let answer = gateway
        .post_with(
            json!({"query": PAYMENTS_QUERY, "variables": {"n": case_number}}),
            &[],
        )
        .await
        .body;
    assert_eq!(codes(&answer), ["BACKEND_UNAVAILABLE"], "{answer}");
    let text = logs.text();
    let rejected: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("Rejected extract file"))
        .collect();
    assert_eq!(rejected.len(), 1, "{text}");
    assert!(
        rejected[0].contains("more than `max_file_bytes` (4800)"),
        "{text}"
    );
}
