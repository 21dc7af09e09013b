//! The hand-written client the `direct` path of the load benchmark uses: what an application
//! that skips the gateway has to do to fetch one citizen from the agencies itself.
//!
//! It keeps its own crosswalk (the [`Population`], in memory) so it knows every citizen's TIN,
//! licence number, claimant id and benefits case number without asking anyone, and it parses
//! every answer: JSON with `serde_json`, SOAP with a full `quick-xml` pass, SQL rows decoded
//! column by column, mainframe records with the library's own copybook codec
//! ([`RecordCodec`], with the options of the shipped connector files), so that the codec
//! costs both paths the same.
//!
//! The benefits mainframe is reached as any program talking to it would: a small pool of TCP
//! connections (as many as the `benefits` connector's), one request record out and one
//! response record back per inquiry, each framed by a 4-byte big-endian length
//! ([`write_frame`] / [`read_frame`]). Benefit payments have no online access: the client
//! holds the mainframe's nightly extract file, decoded once at start-up into a map by case
//! number ([`Payments`]), and looks a citizen's payments up there.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use civicgraph::connectors::mainframe::transport::{
    Framing, TransportError, read_frame, write_frame,
};
use civicgraph::connectors::mainframe::{ConditionCheck, JsonPath, RecordCodec};
use civicgraph::demo::Population;
use civicgraph::demo::benefits::{
    CASE_CONNECTOR, CASE_COPYBOOK, PAYMENT_CONNECTOR, PAYMENT_COPYBOOK, TRANSACTION,
    connector_codec,
};
use civicgraph::demo::dmv::{GET_LICENSE_ACTION, GET_VEHICLES_ACTION};
use quick_xml::events::Event;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The opening of every envelope, as the `soap` connector writes it for `connectors/dmv.toml`
/// (SOAP 1.1, the `dmv` prefix declared on the envelope).
const ENVELOPE_OPEN: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope \
                             xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                             xmlns:dmv=\"urn:civicgraph:demo:dmv:v1\"><soap:Body>";
const ENVELOPE_CLOSE: &str = "</soap:Body></soap:Envelope>";

/// `connectors/ui.toml`'s `claims` query, with SQLite's positional marker for `:claimant_id`.
const CLAIMS_SQL: &str = "SELECT claim_id, status, filed_on, separation_reason, last_employer, \
                          weekly_benefit, weeks_paid, benefit_end_date, updated_at FROM ui_claims \
                          WHERE claimant_id = ?1 ORDER BY filed_on DESC";

/// One row of [`CLAIMS_SQL`], every column decoded.
type ClaimRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    String,
);

/// As many connections as the `ui` connector's pool (`max_connections = 8`).
const UI_CONNECTIONS: u32 = 8;

/// As many connections as the `benefits` connector's pool (`connectors/benefits.toml`,
/// `max_connections = 4`): the mainframe sees no more transactions at once from this client
/// than from the gateway.
const MAINFRAME_CONNECTIONS: usize = 4;

/// `connectors/benefits.toml`'s `framing = "length4"`.
const MAINFRAME_FRAMING: Framing = Framing::Length4 {
    includes_prefix: false,
};

/// `connectors/benefits.toml`'s `timeout_ms`: one whole inquiry, waiting for a connection
/// included.
const MAINFRAME_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest response record accepted (the connector's default `max_record_bytes`).
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The nightly payment extract's file names (`connectors/benefit_payments.toml`'s
/// `pattern = "BENPAY.D*.DAT"`) and the marker written once a file is complete.
const EXTRACT_PREFIX: &str = "BENPAY.D";
const EXTRACT_SUFFIX: &str = ".DAT";
const READY_SUFFIX: &str = ".READY";

/// What a citizen's answer holds, reduced to what the benchmark checks: the same for the
/// population, a gateway answer and a direct fetch. `None` where the citizen has no record
/// at that agency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) balance: Option<Value>,
    pub(crate) license: Option<String>,
    pub(crate) vehicles: Option<usize>,
    pub(crate) claims: Option<usize>,
    /// Benefit cases as (program, monthly amount), in the mainframe's order.
    pub(crate) cases: Option<Vec<(String, String)>>,
    /// Benefit payments as (issue date, amount), oldest first.
    pub(crate) payments: Option<Vec<(String, String)>>,
}

/// A citizen's agency keys, from the client's own crosswalk (the population).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keys<'a> {
    pub(crate) tin: Option<&'a str>,
    pub(crate) license: Option<&'a str>,
    pub(crate) claimant: Option<&'a str>,
    pub(crate) case_number: Option<&'a str>,
}

/// The agencies, called without the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Agencies {
    pub(crate) client: reqwest::Client,
    pub(crate) registry_url: String,
    pub(crate) tax_url: String,
    pub(crate) soap_url: String,
    pub(crate) ui: SqlitePool,
    pub(crate) mainframe: Arc<Mainframe>,
    pub(crate) payments: Arc<Payments>,
    pub(crate) population: Arc<Population>,
}

/// A SOAP operation of the motor vehicle agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DmvOperation {
    GetLicense,
    GetVehicles,
}

impl DmvOperation {
    fn element(self) -> &'static str {
        match self {
            Self::GetLicense => "GetLicense",
            Self::GetVehicles => "GetVehicles",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::GetLicense => GET_LICENSE_ACTION,
            Self::GetVehicles => GET_VEHICLES_ACTION,
        }
    }
}

/// What a SOAP answer held, after a full parse.
#[derive(Debug, Default)]
pub(crate) struct SoapAnswer {
    /// Every leaf element as (local name, decoded text), in document order.
    pub(crate) leaves: Vec<(String, String)>,
    /// How many `vehicle` elements there were.
    pub(crate) vehicles: usize,
}

impl Agencies {
    /// Opens a read-only pool on the unemployment insurance database at `ui_url`.
    pub(crate) async fn open_ui(ui_url: &str) -> Result<SqlitePool> {
        let options = SqliteConnectOptions::from_str(ui_url)
            .with_context(|| format!("`{ui_url}` is not an SQLite URL"))?
            .read_only(true);
        SqlitePoolOptions::new()
            .max_connections(UI_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("cannot open the unemployment insurance database read-only")
    }

    /// The keys the client's own crosswalk holds for `id`: a TIN only for people with a tax
    /// account, exactly as the gateway's crosswalk is loaded (`Population::links`).
    pub(crate) fn keys(&self, id: &str) -> Result<Keys<'_>> {
        let population = self.population.as_ref();
        let person = population
            .person(id)
            .with_context(|| format!("the client's crosswalk has no {id}"))?;
        Ok(Keys {
            tin: population
                .account_of(person)
                .map(|account| account.tin.as_str()),
            license: person.license_number.as_deref(),
            claimant: person.claimant_id.as_deref(),
            case_number: person.case_number.as_deref(),
        })
    }

    /// `GET {registry}/v1/people/{id}`, parsed; the `person` object.
    pub(crate) async fn person(&self, id: &str) -> Result<Value> {
        let url = format!("{}/v1/people/{id}", self.registry_url);
        let mut answer = self.get_json(&url).await?;
        let person = answer
            .get_mut("person")
            .map(Value::take)
            .unwrap_or(Value::Null);
        ensure!(
            person.get("id").and_then(Value::as_str) == Some(id),
            "the registry answered {id} with {person}"
        );
        Ok(person)
    }

    /// `GET {tax}/v1/taxpayers/{tin}/account`, parsed; the account's balance.
    pub(crate) async fn tax_balance(&self, tin: &str) -> Result<Value> {
        let url = format!("{}/v1/taxpayers/{tin}/account", self.tax_url);
        let mut answer = self.get_json(&url).await?;
        match answer.pointer_mut("/account/balance").map(Value::take) {
            Some(balance @ Value::String(_)) => Ok(balance),
            _ => bail!("the tax agency's account for {tin} has no balance: {answer}"),
        }
    }

    /// One SOAP 1.1 call to the motor vehicle agency, its whole answer parsed.
    pub(crate) async fn soap(&self, operation: DmvOperation, license: &str) -> Result<SoapAnswer> {
        let element = operation.element();
        let mut envelope = String::with_capacity(ENVELOPE_OPEN.len() + ENVELOPE_CLOSE.len() + 96);
        envelope.push_str(ENVELOPE_OPEN);
        envelope.push_str(&format!(
            "<dmv:{element}><dmv:licenseNumber>{}</dmv:licenseNumber></dmv:{element}>",
            quick_xml::escape::escape(license)
        ));
        envelope.push_str(ENVELOPE_CLOSE);
        let response = self
            .client
            .post(&self.soap_url)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{}\"", operation.action()))
            .body(envelope)
            .send()
            .await
            .with_context(|| format!("{element} for {license}: the DMV did not answer"))?;
        let status = response.status();
        // The body is always read, so that the connection goes back to the pool.
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{element} for {license}: cannot read the DMV's answer"))?;
        ensure!(
            status == StatusCode::OK,
            "{element} for {license}: the DMV answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        parse_soap(&body).with_context(|| format!("{element} for {license}"))
    }

    /// The licence number in a `GetLicense` answer.
    pub(crate) async fn license_number(&self, license: &str) -> Result<String> {
        let answer = self.soap(DmvOperation::GetLicense, license).await?;
        answer
            .leaves
            .into_iter()
            .find_map(|(name, text)| (name == "number").then_some(text))
            .with_context(|| format!("the DMV's licence {license} has no number"))
    }

    /// How many vehicles a `GetVehicles` answer lists.
    pub(crate) async fn vehicle_count(&self, license: &str) -> Result<usize> {
        Ok(self
            .soap(DmvOperation::GetVehicles, license)
            .await?
            .vehicles)
    }

    /// The claimant's claims from the unemployment insurance database, every column decoded.
    pub(crate) async fn claims(&self, claimant: &str) -> Result<Vec<ClaimRow>> {
        sqlx::query_as(CLAIMS_SQL)
            .bind(claimant)
            .fetch_all(&self.ui)
            .await
            .with_context(|| format!("the claims query for {claimant} failed"))
    }

    /// The citizen query's registry + tax part: the person, then the account by the TIN
    /// the client knows (no call for a citizen without one, as in the gateway).
    pub(crate) async fn citizen(&self, id: &str) -> Result<Summary> {
        let person = self.person(id).await?;
        std::hint::black_box(&person);
        let keys = self.keys(id)?;
        let balance = match keys.tin {
            Some(tin) => Some(self.tax_balance(tin).await?),
            None => None,
        };
        Ok(Summary {
            balance,
            ..Summary::default()
        })
    }

    /// The three-agency query by hand: the person, then the tax account, both DMV operations
    /// and the claims query at once, each only where the client's crosswalk has a key.
    pub(crate) async fn three_agency(&self, id: &str) -> Result<Summary> {
        self.agency_calls(id, false).await
    }

    /// The four-agency query by hand: the three-agency calls and, at the same time, the
    /// benefits mainframe's inquiry; then the payments from the extract the client holds.
    /// Neither benefits step happens for a citizen without a case number, as in the gateway.
    pub(crate) async fn four_agency(&self, id: &str) -> Result<Summary> {
        self.agency_calls(id, true).await
    }

    /// The person, then every agency call the client's crosswalk has a key for, at once;
    /// `benefits` adds the mainframe inquiry and the payments lookup.
    async fn agency_calls(&self, id: &str, benefits: bool) -> Result<Summary> {
        let person = self.person(id).await?;
        std::hint::black_box(&person);
        let keys = self.keys(id)?;
        let case_number = keys.case_number.filter(|_| benefits);
        let (balance, license, vehicles, claims, cases) = tokio::join!(
            async {
                match keys.tin {
                    Some(tin) => self.tax_balance(tin).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match keys.license {
                    Some(number) => self.license_number(number).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match keys.license {
                    Some(number) => self.vehicle_count(number).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match keys.claimant {
                    Some(claimant) => self.claims(claimant).await.map(|rows| Some(rows.len())),
                    None => Ok(None),
                }
            },
            async {
                match case_number {
                    Some(case_number) => self.benefit_cases(case_number).await,
                    None => Ok(None),
                }
            },
        );
        let payments = case_number.map(|case_number| self.payments.summary(case_number));
        Ok(Summary {
            balance: balance?,
            license: license?,
            vehicles: vehicles?,
            claims: claims?,
            cases: cases?.map(|cases| case_summary(&cases)).transpose()?,
            payments: payments.transpose()?,
        })
    }

    /// The mainframe's `BNQ1` inquiry for `case_number`, its response record decoded; the
    /// cases it lists, or `None` when the mainframe does not know the case number.
    pub(crate) async fn benefit_cases(&self, case_number: &str) -> Result<Option<Vec<Value>>> {
        self.mainframe.cases(case_number).await
    }

    /// The payments on `case_number` from the extract the client decoded at start-up.
    pub(crate) fn benefit_payments(&self, case_number: &str) -> &[Map<String, Value>] {
        self.payments.of(case_number)
    }

    async fn get_json(&self, url: &str) -> Result<Value> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url} failed"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("cannot read the answer to GET {url}"))?;
        ensure!(status == StatusCode::OK, "GET {url} answered {status}");
        serde_json::from_slice(&body).with_context(|| format!("GET {url} did not answer JSON"))
    }
}

/// Reads a whole SOAP answer: every event, text decoded, end tags checked. A `Fault` anywhere
/// is an error.
pub(crate) fn parse_soap(bytes: &[u8]) -> Result<SoapAnswer> {
    let text = std::str::from_utf8(bytes).context("the SOAP answer is not UTF-8")?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut answer = SoapAnswer::default();
    // The innermost open element while it has no child element yet, and its text so far.
    let mut leaf: Option<String> = None;
    let mut content = String::new();
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .with_context(|| format!("the SOAP answer is not XML: {text}"))?;
        match event {
            Event::Start(start) | Event::Empty(start)
                if start.local_name().as_ref() == b"Fault" =>
            {
                bail!("the DMV answered a SOAP fault: {text}");
            }
            Event::Start(start) => {
                depth += 1;
                if start.local_name().as_ref() == b"vehicle" {
                    answer.vehicles += 1;
                }
                let name = std::str::from_utf8(start.local_name().into_inner())
                    .context("an element name is not UTF-8")?;
                leaf = Some(name.to_owned());
                content.clear();
            }
            Event::Empty(start) => {
                if start.local_name().as_ref() == b"vehicle" {
                    answer.vehicles += 1;
                }
                let name = std::str::from_utf8(start.local_name().into_inner())
                    .context("an element name is not UTF-8")?;
                answer.leaves.push((name.to_owned(), String::new()));
                leaf = None;
            }
            Event::Text(text) => content.push_str(&text.xml10_content()?),
            Event::CData(data) => content.push_str(&data.xml10_content()?),
            Event::GeneralRef(reference) => match reference.resolve_char_ref()? {
                Some(c) => content.push(c),
                None => {
                    let name = reference.decode()?;
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                        .with_context(|| format!("unknown entity `&{name};`"))?;
                    content.push_str(resolved);
                }
            },
            Event::End(_) => {
                depth = depth
                    .checked_sub(1)
                    .context("a closing tag without an opening tag")?;
                if let Some(name) = leaf.take() {
                    answer.leaves.push((name, std::mem::take(&mut content)));
                }
                content.clear();
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    ensure!(depth == 0, "the SOAP answer ends inside an element");
    Ok(answer)
}

/// A benefits case reduced to what the benchmark checks: (program, monthly amount).
fn case_summary(cases: &[Value]) -> Result<Vec<(String, String)>> {
    cases
        .iter()
        .map(|case| {
            let text = |name: &str| {
                case.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("a benefits case without `{name}`: {case}"))
            };
            Ok((text("program")?, text("monthlyAmount")?))
        })
        .collect()
}

/// The benefits mainframe's online inquiry, called by hand: the shipped copybook's request
/// and response records, built and read with the library's codec, over a small pool of TCP
/// connections.
#[derive(Debug)]
pub(crate) struct Mainframe {
    address: String,
    request: RecordCodec,
    response: RecordCodec,
    /// The response's return code conditions and the places read, resolved once.
    ok: ConditionCheck,
    not_found: ConditionCheck,
    cases: JsonPath,
    /// One permit per connection the mainframe may see at once.
    permits: Semaphore,
    /// Connections that completed an inquiry, ready for the next one.
    idle: Mutex<Vec<TcpStream>>,
}

impl Mainframe {
    /// A client for the mainframe at `address` (`host:port`); connects on first use.
    pub(crate) fn new(address: &str) -> Result<Self> {
        let response = codec(CASE_CONNECTOR, CASE_COPYBOOK, "BNQ-RESPONSE")?;
        let condition = |name: &str| {
            response
                .condition(name)
                .with_context(|| format!("the response has no condition {name}"))
        };
        let (ok, not_found) = (condition("BNQ-RC-OK")?, condition("BNQ-RC-NOT-FOUND")?);
        let cases = response
            .locate("BNQ-CASES")
            .context("the response has no case table")?;
        Ok(Self {
            address: address.to_owned(),
            request: codec(CASE_CONNECTOR, CASE_COPYBOOK, "BNQ-REQUEST")?,
            response,
            ok,
            not_found,
            cases,
            permits: Semaphore::new(MAINFRAME_CONNECTIONS),
            idle: Mutex::new(Vec::with_capacity(MAINFRAME_CONNECTIONS)),
        })
    }

    /// One `BNQ1` inquiry: the request record, the exchange, the response record decoded
    /// whole, its return code checked; the `BNQ-CASES` table, or `None` for an unknown case.
    pub(crate) async fn cases(&self, case_number: &str) -> Result<Option<Vec<Value>>> {
        let mut values = Map::new();
        values.insert("BNQ-TRAN-CODE".into(), Value::from(TRANSACTION));
        values.insert("BNQ-CASE-NUMBER".into(), Value::from(case_number));
        let request = self
            .request
            .encode(&values)
            .map_err(|error| anyhow!("cannot build the inquiry for {case_number}: {error}"))?;
        let answer = tokio::time::timeout(MAINFRAME_TIMEOUT, self.exchange(&request))
            .await
            .map_err(|_| {
                anyhow!(
                    "the mainframe did not answer the inquiry for {case_number} within {} ms",
                    MAINFRAME_TIMEOUT.as_millis()
                )
            })?
            .with_context(|| format!("the inquiry for {case_number} failed"))?;
        let decoded = self.response.decode(&answer).map_err(|error| {
            anyhow!("the mainframe's answer for {case_number} does not decode: {error}")
        })?;
        if !self.ok.holds(&decoded) {
            if self.not_found.holds(&decoded) {
                return Ok(None);
            }
            bail!(
                "the mainframe refused the inquiry for {case_number}: return code {}",
                self.ok.field().get(&decoded).unwrap_or(&Value::Null)
            );
        }
        match self.cases.get(&decoded) {
            Some(Value::Array(cases)) => Ok(Some(cases.clone())),
            other => bail!("the mainframe's answer for {case_number} has no case table: {other:?}"),
        }
    }

    /// Sends one framed request record and reads one framed response record, on a pooled
    /// connection when there is one. A pooled connection the mainframe closed while it sat
    /// idle fails before any answer byte: the inquiry (read-only) is then sent once more on a
    /// new connection. A connection goes back to the pool only after a whole exchange.
    async fn exchange(&self, request: &[u8]) -> Result<Vec<u8>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the mainframe connection pool is closed")?;
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(stream) = pooled {
            match self.attempt(stream, request).await {
                Ok(answer) => return Ok(answer),
                Err(error) if stale(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let stream = TcpStream::connect(self.address.as_str())
            .await
            .with_context(|| format!("cannot connect to the mainframe at {}", self.address))?;
        stream
            .set_nodelay(true)
            .context("cannot turn Nagle's algorithm off")?;
        Ok(self.attempt(stream, request).await?)
    }

    async fn attempt(
        &self,
        mut stream: TcpStream,
        request: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        write_frame(&mut stream, MAINFRAME_FRAMING, request)
            .await
            .map_err(TransportError::Io)?;
        let answer = read_frame(&mut stream, MAINFRAME_FRAMING, MAX_RECORD_BYTES).await?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stream);
        Ok(answer)
    }
}

/// Whether a failed exchange looks like a connection the peer closed while it was idle:
/// nothing of the answer came, and the socket was found closed or reset.
fn stale(error: &TransportError) -> bool {
    match error {
        TransportError::Closed { received, .. } => *received == 0,
        TransportError::Io(error) => matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

/// The mainframe's nightly payment extract, decoded once, by case number: what a client that
/// receives the file keeps in memory.
#[derive(Debug, Default)]
pub(crate) struct Payments {
    by_case: HashMap<String, Vec<Map<String, Value>>>,
    /// Records in the file.
    pub(crate) records: usize,
    /// How long reading and decoding the file took.
    pub(crate) load_time: Duration,
}

impl Payments {
    /// Reads the newest complete extract (`BENPAY.D….DAT` with its `.READY` marker) in
    /// `directory`, every fixed-width record decoded with the shipped copybook.
    pub(crate) fn load(directory: &Path) -> Result<Self> {
        let started = std::time::Instant::now();
        let mut newest: Option<String> = None;
        for entry in std::fs::read_dir(directory)
            .with_context(|| format!("cannot list the extract directory {}", directory.display()))?
        {
            let entry = entry.context("cannot read the extract directory")?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let complete = name.starts_with(EXTRACT_PREFIX)
                && name.ends_with(EXTRACT_SUFFIX)
                && directory.join(format!("{name}{READY_SUFFIX}")).exists();
            // The names hold the as-of time as `Dyyyymmdd.Thhmmss`: newest sorts last.
            if complete && newest.as_ref().is_none_or(|newest| name > *newest) {
                newest = Some(name);
            }
        }
        let name = newest
            .with_context(|| format!("no complete payment extract in {}", directory.display()))?;
        let bytes = std::fs::read(directory.join(&name))
            .with_context(|| format!("cannot read the payment extract {name}"))?;
        let codec = codec(PAYMENT_CONNECTOR, PAYMENT_COPYBOOK, "BENEFIT-PAYMENT")?;
        let slot = codec.record_len();
        ensure!(
            slot > 0 && bytes.len() % slot == 0,
            "{name} is {} bytes, not a whole number of {slot}-byte records",
            bytes.len()
        );
        let key = codec
            .locate("BPY-CASE-NUMBER")
            .context("the payment record has no case number")?;
        let mut payments = Self::default();
        for (index, record) in bytes.chunks_exact(slot).enumerate() {
            let decoded = codec
                .decode(record)
                .map_err(|error| anyhow!("{name}, record {}: {error}", index + 1))?;
            let case_number = key
                .get(&decoded)
                .and_then(Value::as_str)
                .with_context(|| format!("{name}, record {}: no case number", index + 1))?
                .trim()
                .to_owned();
            payments
                .by_case
                .entry(case_number)
                .or_default()
                .push(decoded);
            payments.records += 1;
        }
        payments.load_time = started.elapsed();
        Ok(payments)
    }

    /// How many case numbers the file lists.
    pub(crate) fn case_numbers(&self) -> usize {
        self.by_case.len()
    }

    /// The payments on `case_number`, in the file's order (oldest first); none for a case
    /// number the file does not list.
    pub(crate) fn of(&self, case_number: &str) -> &[Map<String, Value>] {
        self.by_case.get(case_number).map_or(&[], Vec::as_slice)
    }

    /// The payments on `case_number` as (issue date, amount).
    fn summary(&self, case_number: &str) -> Result<Vec<(String, String)>> {
        self.of(case_number)
            .iter()
            .map(|payment| {
                let text = |name: &str| {
                    payment
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .with_context(|| format!("a payment on {case_number} without `{name}`"))
                };
                Ok((text("issuedOn")?, text("amount")?))
            })
            .collect()
    }
}

/// The codec the shipped connector file decodes `record` with, so both paths pay the same
/// codec cost.
fn codec(connector: &str, copybook: &str, record: &str) -> Result<RecordCodec> {
    connector_codec(connector, copybook, record)
        .map_err(|error| anyhow!("record {record} of the shipped benefits connector: {error}"))
}
