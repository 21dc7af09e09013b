//! The simulated benefits mainframe: program cases served online as EBCDIC records over TCP
//! (transaction `BNQ1`, framed by a 4-byte length), and a nightly extract file of payments.
//!
//! Records are built from the same copybooks the shipped connectors read
//! (`connectors/copybooks/`), so the demo exercises exactly what a real mainframe would send.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::data::{Person, REFERENCE_DATE, SplitMix64};
use super::mainframe_server::RecordServer;
use crate::config::{MainframeConfig, TomlFile, Vars};
use crate::connectors::mainframe::transport::Framing;
use crate::connectors::mainframe::{
    CodePage, CodecOptions, Copybook, RecordCodec, codec_options, ebcdic,
};

/// The online inquiry's copybook, as shipped.
pub const CASE_COPYBOOK: &str = include_str!("../../connectors/copybooks/BENEFIT-CASE.cpy");
/// The payment extract's copybook, as shipped.
pub const PAYMENT_COPYBOOK: &str = include_str!("../../connectors/copybooks/BENEFIT-PAYMENT.cpy");
/// The online connector file, as shipped.
pub const CASE_CONNECTOR: &str = include_str!("../../connectors/benefits.toml");
/// The extract connector file, as shipped.
pub const PAYMENT_CONNECTOR: &str = include_str!("../../connectors/benefit_payments.toml");
/// The transaction code the inquiry answers to.
pub const TRANSACTION: &str = "BNQ1";
/// The transaction code of the multi-key inquiry (up to [`MAX_MULTI_KEYS`] case numbers).
pub const MULTI_TRANSACTION: &str = "BNQ2";
/// Most case numbers one multi-key inquiry takes (the copybook's `OCCURS 1 TO 100`).
pub const MAX_MULTI_KEYS: usize = 100;
/// Most cases one inquiry answers with (the copybook's `OCCURS 0 TO 8`).
const MAX_CASES: usize = 8;

/// A benefit program, with the code the mainframe stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// Food assistance.
    Snap,
    /// Cash assistance.
    Tanf,
    /// Energy assistance.
    Liheap,
    /// Child care assistance.
    ChildCare,
}

impl Program {
    /// The 4-character code in `BNQ-PROGRAM` / `BPY-PROGRAM`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Snap => "SNAP",
            Self::Tanf => "TANF",
            Self::Liheap => "LIHP",
            Self::ChildCare => "CCAP",
        }
    }

    /// The GraphQL enum value (the 88-level name).
    pub fn graphql(self) -> &'static str {
        match self {
            Self::Snap => "SNAP",
            Self::Tanf => "TANF",
            Self::Liheap => "LIHEAP",
            Self::ChildCare => "CHILD_CARE",
        }
    }

    /// Monthly amount range in cents.
    fn range(self) -> (u64, u64) {
        match self {
            Self::Snap => (2_300, 175_100),
            Self::Tanf => (20_000, 110_000),
            Self::Liheap => (5_000, 40_000),
            Self::ChildCare => (30_000, 150_000),
        }
    }
}

const PROGRAMS: [Program; 4] = [
    Program::Snap,
    Program::Tanf,
    Program::Liheap,
    Program::ChildCare,
];

/// Where a case stands, with the code the mainframe stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    /// Paying.
    Open,
    /// Not decided.
    Pending,
    /// Paused.
    Suspended,
    /// Ended.
    Closed,
    /// Refused.
    Denied,
}

impl CaseStatus {
    /// The 1-character code in `BNQ-CASE-STATUS`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Open => "O",
            Self::Pending => "P",
            Self::Suspended => "S",
            Self::Closed => "C",
            Self::Denied => "D",
        }
    }

    /// The GraphQL enum value.
    pub fn graphql(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Pending => "PENDING",
            Self::Suspended => "SUSPENDED",
            Self::Closed => "CLOSED",
            Self::Denied => "DENIED",
        }
    }
}

/// How a case's benefit is paid, with the details the mainframe keeps in a REDEFINES area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// Direct deposit.
    Deposit {
        /// Last four digits of the account.
        account_last4: String,
    },
    /// EBT card.
    Card {
        /// Last four digits of the card.
        last4: String,
        /// When the card was issued.
        issued_on: NaiveDate,
    },
    /// Mailed check.
    Check {
        /// Mailing route code (5 digits, packed).
        mail_code: u32,
    },
}

/// One program case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitCase {
    /// The program.
    pub program: Program,
    /// Where it stands.
    pub status: CaseStatus,
    /// When it was opened.
    pub opened_on: NaiveDate,
    /// When it closed (closed and denied cases only).
    pub closed_on: Option<NaiveDate>,
    /// Monthly benefit.
    pub monthly_amount: Decimal,
    /// Overpayment owed by the household (negative: owed to it).
    pub balance_due: Decimal,
    /// Household size.
    pub household_size: u8,
    /// How it is paid.
    pub payment: Payment,
}

/// Whether a payment was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Issued, not used yet.
    Issued,
    /// Used.
    Redeemed,
    /// Cancelled.
    Voided,
    /// Returned.
    Returned,
}

impl PaymentStatus {
    /// The code in `BPY-STATUS`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Issued => "I",
            Self::Redeemed => "R",
            Self::Voided => "V",
            Self::Returned => "X",
        }
    }

    /// The GraphQL enum value.
    pub fn graphql(self) -> &'static str {
        match self {
            Self::Issued => "ISSUED",
            Self::Redeemed => "REDEEMED",
            Self::Voided => "VOIDED",
            Self::Returned => "RETURNED",
        }
    }
}

/// One payment in the nightly extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitPayment {
    /// Unique payment id.
    pub payment_id: u64,
    /// The case number it was paid on.
    pub case_number: String,
    /// The program that paid.
    pub program: Program,
    /// Issue date.
    pub issued_on: NaiveDate,
    /// Amount.
    pub amount: Decimal,
    /// What happened to it.
    pub status: PaymentStatus,
}

/// Every household's cases and payments, keyed by case number.
#[derive(Debug, Clone, Default)]
pub struct BenefitsRecords {
    cases: HashMap<String, Vec<BenefitCase>>,
    payments: HashMap<String, Vec<BenefitPayment>>,
    /// Case numbers in citizen order, with their citizen id.
    holders: Vec<(String, String)>,
}

impl BenefitsRecords {
    /// Generates cases for about a quarter of adults (always for `C0000001`), deterministic
    /// for a seed.
    pub fn generate(people: &[Person], seed: u64) -> Self {
        let mut records = Self::default();
        let mut next_payment_id = 1_000_000_u64;
        for (index, person) in people.iter().enumerate() {
            let mut rng =
                SplitMix64::new(seed ^ 0xBE4E_F175 ^ (index as u64).wrapping_mul(0x9E37_79B9));
            let adult = person.age() >= 18;
            if !(index == 0 || (adult && rng.chance(25))) {
                continue;
            }
            let case_number = case_number(index, seed);
            let mut programs = PROGRAMS.to_vec();
            let count = if index == 0 { 3 } else { 1 + rng.index(3) };
            let mut cases = Vec::new();
            for slot in 0..count.min(MAX_CASES) {
                let program = programs.remove(rng.index(programs.len()));
                // C0000001 always has an open SNAP-like case paid by card, one by deposit and
                // one by check, so the demo's first query shows every shape.
                let case = generate_case(&mut rng, program, (index == 0).then_some(slot));
                cases.push(case);
            }
            let mut payments = Vec::new();
            for case in &cases {
                for issued_on in payment_dates(case) {
                    let status = if issued_on == last_payment_day() {
                        PaymentStatus::Issued
                    } else if rng.chance(3) {
                        PaymentStatus::Voided
                    } else if rng.chance(2) {
                        PaymentStatus::Returned
                    } else {
                        PaymentStatus::Redeemed
                    };
                    payments.push(BenefitPayment {
                        payment_id: next_payment_id,
                        case_number: case_number.clone(),
                        program: case.program,
                        issued_on,
                        amount: case.monthly_amount,
                        status,
                    });
                    next_payment_id += 1;
                }
            }
            payments.sort_by_key(|p| (p.issued_on, p.payment_id));
            records
                .holders
                .push((person.id.clone(), case_number.clone()));
            records.payments.insert(case_number.clone(), payments);
            records.cases.insert(case_number, cases);
        }
        records
    }

    /// The cases on a case number (empty for an unknown one).
    pub fn cases(&self, case_number: &str) -> &[BenefitCase] {
        self.cases.get(case_number).map_or(&[], Vec::as_slice)
    }

    /// The payments on a case number, oldest first.
    pub fn payments(&self, case_number: &str) -> &[BenefitPayment] {
        self.payments.get(case_number).map_or(&[], Vec::as_slice)
    }

    /// `(citizen id, case number)` for everyone with a case, in citizen order.
    pub fn holders(&self) -> &[(String, String)] {
        &self.holders
    }

    /// Every payment, in citizen order then date order: the extract's record order.
    pub fn all_payments(&self) -> impl Iterator<Item = &BenefitPayment> {
        self.holders
            .iter()
            .flat_map(|(_, case)| self.payments(case).iter())
    }
}

/// `BC` and eight digits; injective in `index` (7919 is coprime with 10^8).
fn case_number(index: usize, seed: u64) -> String {
    let value = (index as u64)
        .wrapping_mul(7_919)
        .wrapping_add(seed % 1_000)
        % 100_000_000;
    format!("BC{value:08}")
}

fn generate_case(rng: &mut SplitMix64, program: Program, showcase: Option<usize>) -> BenefitCase {
    let status = match showcase {
        Some(_) => CaseStatus::Open,
        None => match rng.below(100) {
            0..50 => CaseStatus::Open,
            50..60 => CaseStatus::Pending,
            60..65 => CaseStatus::Suspended,
            65..90 => CaseStatus::Closed,
            _ => CaseStatus::Denied,
        },
    };
    let opened_on =
        REFERENCE_DATE - Duration::days(30 + i64::try_from(rng.below(6 * 365)).unwrap_or(0));
    let closed_on = matches!(status, CaseStatus::Closed | CaseStatus::Denied).then(|| {
        let open_days = (REFERENCE_DATE - opened_on).num_days().max(2);
        opened_on + Duration::days(1 + i64::try_from(rng.below(open_days as u64 - 1)).unwrap_or(0))
    });
    let (low, high) = program.range();
    let cents = if status == CaseStatus::Denied {
        0
    } else {
        low + rng.below(high - low + 1)
    };
    let monthly_amount = Decimal::new(i64::try_from(cents).unwrap_or(0), 2);
    let balance_due = match rng.below(100) {
        0..15 => Decimal::new(i64::try_from(rng.below(250_000)).unwrap_or(0) + 1, 2),
        15..20 => -Decimal::new(i64::try_from(rng.below(50_000)).unwrap_or(0) + 1, 2),
        _ => Decimal::new(0, 2),
    };
    let payment = match (showcase, program) {
        (Some(0), _) | (None, Program::Snap) => Payment::Card {
            last4: format!("{:04}", rng.below(10_000)),
            issued_on: opened_on + Duration::days(7),
        },
        (Some(1), _) => Payment::Deposit {
            account_last4: format!("{:04}", rng.below(10_000)),
        },
        (Some(_), _) => Payment::Check {
            mail_code: u32::try_from(10_000 + rng.below(90_000)).unwrap_or(10_000),
        },
        (None, _) => match rng.below(3) {
            0 => Payment::Deposit {
                account_last4: format!("{:04}", rng.below(10_000)),
            },
            1 => Payment::Card {
                last4: format!("{:04}", rng.below(10_000)),
                issued_on: opened_on + Duration::days(7),
            },
            _ => Payment::Check {
                mail_code: u32::try_from(10_000 + rng.below(90_000)).unwrap_or(10_000),
            },
        },
    };
    BenefitCase {
        program,
        status,
        opened_on,
        closed_on,
        monthly_amount,
        balance_due,
        household_size: u8::try_from(1 + rng.below(8)).unwrap_or(1),
        payment,
    }
}

/// The first of the month before the reference date: the newest payment in the extract.
fn last_payment_day() -> NaiveDate {
    let previous = REFERENCE_DATE - Duration::days(1);
    previous.with_day(1).unwrap_or(previous)
}

/// Payments on the first of each month the case was paying, the last twelve at most.
fn payment_dates(case: &BenefitCase) -> Vec<NaiveDate> {
    if case.monthly_amount.is_zero()
        || matches!(case.status, CaseStatus::Pending | CaseStatus::Denied)
    {
        return Vec::new();
    }
    let mut dates = Vec::new();
    let mut day = last_payment_day();
    while dates.len() < 12 && day > case.opened_on {
        if case.closed_on.is_none_or(|closed| day <= closed) {
            dates.push(day);
        }
        let previous = day - Duration::days(1);
        day = previous.with_day(1).unwrap_or(previous);
    }
    dates.reverse();
    dates
}

/// A codec for `record` of `copybook` with the options the connector file `connector` gives:
/// what the gateway decodes with, for benchmarks and tools that must match it exactly.
pub fn connector_codec(
    connector: &str,
    copybook: &str,
    record: &str,
) -> Result<RecordCodec, String> {
    let file = TomlFile::from_text("connector.toml", connector, &Vars::default())
        .map_err(|errors| format!("{errors:?}"))?;
    let config: MainframeConfig = file.parse().map_err(|e| e.to_string())?;
    let copybook = Copybook::parse(record, copybook).map_err(|e| e.to_string())?;
    let item = copybook
        .record(Some(record))
        .ok_or_else(|| format!("the copybook has no record {record}"))?;
    RecordCodec::new(item, codec_options(&config).for_record(item))
}

/// Builds and reads the mainframe's records with the shipped copybooks.
#[derive(Debug)]
pub struct BenefitsCodecs {
    request: RecordCodec,
    response: RecordCodec,
    multi_request: RecordCodec,
    multi_response: RecordCodec,
    payment: RecordCodec,
}

/// Why the simulated mainframe could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartMainframeError {
    /// A shipped copybook does not parse or build (a bug in the repository).
    #[error("the shipped copybook is invalid: {0}")]
    Copybook(String),
    /// The TCP server could not bind.
    #[error("cannot start the simulated mainframe: {0}")]
    Io(#[from] std::io::Error),
}

impl BenefitsCodecs {
    /// Parses the shipped copybooks; raw codecs (no names, no dates) since the simulation
    /// writes COBOL names directly.
    pub fn new() -> Result<Self, StartMainframeError> {
        let case = Copybook::parse("BENEFIT-CASE.cpy", CASE_COPYBOOK)
            .map_err(|e| StartMainframeError::Copybook(e.to_string()))?;
        let payment = Copybook::parse("BENEFIT-PAYMENT.cpy", PAYMENT_COPYBOOK)
            .map_err(|e| StartMainframeError::Copybook(e.to_string()))?;
        let codec = |copybook: &Copybook, record: &str| {
            let item = copybook
                .record(Some(record))
                .ok_or_else(|| StartMainframeError::Copybook(format!("no record {record}")))?;
            RecordCodec::new(item, CodecOptions::default()).map_err(StartMainframeError::Copybook)
        };
        Ok(Self {
            request: codec(&case, "BNQ-REQUEST")?,
            response: codec(&case, "BNQ-RESPONSE")?,
            multi_request: codec(&case, "BNQ-MULTI-REQUEST")?,
            multi_response: codec(&case, "BNQ-MULTI-RESPONSE")?,
            payment: codec(&payment, "BENEFIT-PAYMENT")?,
        })
    }

    /// The multi-key request record the gateway would send for `case_numbers` (1 to
    /// [`MAX_MULTI_KEYS`]; empty bytes otherwise).
    pub fn multi_request(&self, transaction: &str, case_numbers: &[&str]) -> Vec<u8> {
        let mut values = Map::new();
        values.insert("BNQ-M-TRAN-CODE".into(), json!(transaction));
        values.insert("BNQ-M-CASE-NUMBERS".into(), json!(case_numbers));
        self.multi_request.encode(&values).unwrap_or_default()
    }

    /// The request record the gateway would send for `case_number`.
    pub fn request(&self, transaction: &str, case_number: &str) -> Vec<u8> {
        let mut values = Map::new();
        values.insert("BNQ-TRAN-CODE".into(), json!(transaction));
        values.insert("BNQ-CASE-NUMBER".into(), json!(case_number));
        self.request.encode(&values).unwrap_or_default()
    }

    /// The mainframe's answer to one request record. The region tells the two inquiries
    /// apart by their records (a `BNQ-REQUEST` is 40 bytes; a `BNQ-MULTI-REQUEST` of 1 to 100
    /// case numbers never is) and answers each in its own response record, with return code
    /// 08 for a transaction code it does not know.
    pub fn answer(&self, records: &BenefitsRecords, request: &[u8]) -> Vec<u8> {
        if request.len() == self.request.record_len() {
            self.single_answer(records, request)
        } else {
            self.multi_answer(records, request)
        }
    }

    /// The answer to a multi-key request: a `BNQ-MULTI-RESPONSE` header, then one
    /// `BNQ-RESPONSE` per distinct case number, in the reverse of the order asked (a real
    /// region answers in whatever order its lookups finish; clients match by case number).
    fn multi_answer(&self, records: &BenefitsRecords, request: &[u8]) -> Vec<u8> {
        let fields = self.multi_request.decode(request).ok();
        let code = request
            .get(..4)
            .map(|code| ebcdic::decode(CodePage::Cp037, code));
        let case_numbers = fields
            .filter(|_| code.as_deref() == Some(MULTI_TRANSACTION))
            .and_then(|fields| {
                fields
                    .get("bnqMCaseNumbers")
                    .and_then(Value::as_array)
                    .map(|numbers| {
                        numbers
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|n| n.trim().to_string())
                            .collect::<Vec<_>>()
                    })
            });
        let mut header = Map::new();
        header.insert("BNQ-M-RESP-TRAN-CODE".into(), json!(MULTI_TRANSACTION));
        let Some(mut case_numbers) = case_numbers else {
            header.insert("BNQ-M-RETURN-CODE".into(), json!(8));
            header.insert("BNQ-M-RESULT-COUNT".into(), json!(0));
            return self.multi_response.encode(&header).unwrap_or_default();
        };
        let mut seen = std::collections::HashSet::new();
        case_numbers.retain(|n| seen.insert(n.clone()));
        case_numbers.reverse();
        header.insert("BNQ-M-RETURN-CODE".into(), json!(0));
        header.insert("BNQ-M-RESULT-COUNT".into(), json!(case_numbers.len()));
        let mut answer = self.multi_response.encode(&header).unwrap_or_default();
        for case_number in &case_numbers {
            let cases = records.cases(case_number);
            let code = if cases.is_empty() { 4 } else { 0 };
            answer.extend(self.response_record(MULTI_TRANSACTION, code, case_number, cases));
        }
        answer
    }

    /// The answer to one `BNQ1` request record.
    fn single_answer(&self, records: &BenefitsRecords, request: &[u8]) -> Vec<u8> {
        let (code, case_number, cases) = match self.request.decode(request) {
            Err(_) => (8, String::new(), &[][..]),
            Ok(fields) => {
                let text = |name: &str| {
                    fields
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                };
                let (transaction, case_number) = (text("bnqTranCode"), text("bnqCaseNumber"));
                let cases = records.cases(&case_number);
                if transaction != TRANSACTION {
                    (8, case_number, &[][..])
                } else if cases.is_empty() {
                    (4, case_number, &[][..])
                } else {
                    (0, case_number, cases)
                }
            }
        };
        self.response_record(TRANSACTION, code, &case_number, cases)
    }

    /// One `BNQ-RESPONSE` record.
    fn response_record(
        &self,
        transaction: &str,
        code: u8,
        case_number: &str,
        cases: &[BenefitCase],
    ) -> Vec<u8> {
        let mut values = Map::new();
        values.insert("BNQ-RESP-TRAN-CODE".into(), json!(transaction));
        values.insert("BNQ-RETURN-CODE".into(), json!(code));
        values.insert("BNQ-RESP-CASE-NUMBER".into(), json!(case_number));
        values.insert("BNQ-CASE-COUNT".into(), json!(cases.len()));
        let rows: Vec<Value> = cases.iter().map(case_values).collect();
        values.insert("BNQ-CASES".into(), Value::Array(rows));
        self.response.encode(&values).unwrap_or_default()
    }

    /// One extract record.
    pub fn payment_record(&self, payment: &BenefitPayment) -> Vec<u8> {
        let mut values = Map::new();
        values.insert("BPY-CASE-NUMBER".into(), json!(payment.case_number));
        values.insert("BPY-PROGRAM".into(), json!(payment.program.code()));
        values.insert("BPY-ISSUED-ON".into(), json!(yyyymmdd(payment.issued_on)));
        values.insert("BPY-AMOUNT".into(), json!(payment.amount.to_string()));
        values.insert("BPY-STATUS".into(), json!(payment.status.code()));
        values.insert("BPY-PAYMENT-ID".into(), json!(payment.payment_id));
        self.payment.encode(&values).unwrap_or_default()
    }

    /// The payment record length (the extract's slot size).
    pub fn payment_record_len(&self) -> usize {
        self.payment.record_len()
    }
}

fn yyyymmdd(date: NaiveDate) -> u64 {
    u64::try_from(date.year()).unwrap_or(0) * 10_000
        + u64::from(date.month()) * 100
        + u64::from(date.day())
}

fn case_values(case: &BenefitCase) -> Value {
    let mut row = Map::new();
    row.insert("BNQ-PROGRAM".into(), json!(case.program.code()));
    row.insert("BNQ-CASE-STATUS".into(), json!(case.status.code()));
    row.insert("BNQ-OPENED-ON".into(), json!(yyyymmdd(case.opened_on)));
    row.insert(
        "BNQ-CLOSED-ON".into(),
        json!(case.closed_on.map_or(0, yyyymmdd)),
    );
    row.insert(
        "BNQ-MONTHLY-AMOUNT".into(),
        json!(case.monthly_amount.to_string()),
    );
    row.insert(
        "BNQ-BALANCE-DUE".into(),
        json!(case.balance_due.to_string()),
    );
    row.insert("BNQ-HOUSEHOLD-SIZE".into(), json!(case.household_size));
    match &case.payment {
        Payment::Deposit { account_last4 } => {
            row.insert("BNQ-PAY-METHOD".into(), json!("D"));
            row.insert("BNQ-ACCOUNT-LAST4".into(), json!(account_last4));
        }
        Payment::Card { last4, issued_on } => {
            row.insert("BNQ-PAY-METHOD".into(), json!("E"));
            row.insert("BNQ-CARD-LAST4".into(), json!(last4));
            let yymmdd = yyyymmdd(*issued_on) % 1_000_000;
            row.insert("BNQ-CARD-ISSUED".into(), json!(yymmdd));
        }
        Payment::Check { mail_code } => {
            row.insert("BNQ-PAY-METHOD".into(), json!("C"));
            row.insert("BNQ-MAIL-CODE".into(), json!(mail_code));
        }
    }
    Value::Object(row)
}

/// The simulated mainframe's online side.
#[derive(Debug)]
pub struct BenefitsMainframe {
    server: RecordServer,
}

impl BenefitsMainframe {
    /// Starts the inquiry server on 127.0.0.1 with an ephemeral port.
    pub async fn start(
        records: Arc<BenefitsRecords>,
        codecs: Arc<BenefitsCodecs>,
    ) -> Result<Self, StartMainframeError> {
        let handler = Arc::new(move |request: &[u8]| codecs.answer(&records, request));
        let server = RecordServer::start(
            Framing::Length4 {
                includes_prefix: false,
            },
            handler,
        )
        .await?;
        Ok(Self { server })
    }

    /// `host:port`, for `${BENEFITS_MAINFRAME_ADDR}`.
    pub fn address(&self) -> String {
        self.server.addr().to_string()
    }
}

/// Writes the nightly payment extract into `directory` as `BENPAY.D<date>.T<time>.DAT`, then its
/// `.READY` marker, the way the mainframe's batch job does; returns the file's path.
pub fn write_extract(
    directory: &Path,
    records: &BenefitsRecords,
    codecs: &BenefitsCodecs,
    as_of: chrono::NaiveDateTime,
) -> std::io::Result<PathBuf> {
    let name = format!("BENPAY.D{}.DAT", as_of.format("%Y%m%d.T%H%M%S"));
    let path = directory.join(&name);
    let mut bytes = Vec::new();
    for payment in records.all_payments() {
        bytes.extend_from_slice(&codecs.payment_record(payment));
    }
    std::fs::write(&path, &bytes)?;
    std::fs::write(directory.join(format!("{name}.READY")), b"")?;
    Ok(path)
}
