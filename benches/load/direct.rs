//! The hand-written client the `direct` path of the load benchmark uses: what an application
//! that skips the gateway has to do to fetch one citizen from the agencies itself.
//!
//! It keeps its own crosswalk (the [`Population`], in memory) so it knows every citizen's TIN,
//! licence number and claimant id without asking anyone, and it parses every answer: JSON with
//! `serde_json`, SOAP with a full `quick-xml` pass, SQL rows decoded column by column.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use civicgraph::demo::Population;
use civicgraph::demo::dmv::{GET_LICENSE_ACTION, GET_VEHICLES_ACTION};
use quick_xml::events::Event;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

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

/// What a citizen's answer holds, reduced to what the benchmark checks: the same for the
/// population, a gateway answer and a direct fetch. `None` where the citizen has no record
/// at that agency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) balance: Option<Value>,
    pub(crate) license: Option<String>,
    pub(crate) vehicles: Option<usize>,
    pub(crate) claims: Option<usize>,
}

/// A citizen's agency keys, from the client's own crosswalk (the population).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keys<'a> {
    pub(crate) tin: Option<&'a str>,
    pub(crate) license: Option<&'a str>,
    pub(crate) claimant: Option<&'a str>,
}

/// The agencies, called without the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Agencies {
    pub(crate) client: reqwest::Client,
    pub(crate) registry_url: String,
    pub(crate) tax_url: String,
    pub(crate) soap_url: String,
    pub(crate) ui: SqlitePool,
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
        let person = self.person(id).await?;
        std::hint::black_box(&person);
        let keys = self.keys(id)?;
        let (balance, license, vehicles, claims) = tokio::join!(
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
        );
        Ok(Summary {
            balance: balance?,
            license: license?,
            vehicles: vehicles?,
            claims: claims?,
        })
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
