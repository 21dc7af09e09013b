//! Servers that imitate the agencies: the person registry and the tax agency
//! (REST/JSON), and the motor vehicle agency (SOAP 1.1, see [`super::dmv`]).
//!
//! The gateway talks to agencies over HTTP, so the demo, the integration
//! tests and the load benchmark need real HTTP servers with the agencies'
//! URL layout, status codes and payload shapes. Handlers answer straight from
//! the in-memory [`Population`] with no artificial delay, so that load tests
//! measure the gateway rather than the simulation.
//!
//! The registry also changes (see [`super::registry`]): people move, by
//! `PUT /v1/people/{id}/address` or by the demo's change simulator, and
//! children are born; `GET /v1/changes?since=<seq>` lists those changes for
//! the gateway's poller, and `GET /v1/milestones/age` finds who just reached
//! an age (retirement, for a pension agency).
//!
//! | registry request | answer |
//! |---|---|
//! | `GET /v1/people/{id}`, `/v1/people?limit&cursor`, `/v1/people/batch?ids` | people, with their current address |
//! | `PUT /v1/people/{id}/address` `{street, city, postal_code}` | `{change_id, citizen_id, address}`; 400 `bad_body`, `bad_street`, `unknown_city`, `bad_postal_code`; 404 |
//! | `GET /v1/changes?since=<seq>&limit=<1..500>` | `{"changes": [...]}` after `since` (default 0), oldest first; 400 `bad_since`, `bad_limit` |
//! | `GET /v1/milestones/age?age=<0..150>&within_days=<0..366>[&on=YYYY-MM-DD]` | `{"people": [{citizen_id, reached_on}]}`, `on` defaulting to today (UTC); 400 `bad_age`, `bad_within_days`, `bad_date` |

use std::borrow::Cow;
use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, serve};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::benefits::{BenefitsCodecs, BenefitsMainframe, write_extract};
use super::data::{Person, Population, TaxAccount};
use super::dmv::dmv_router;
use super::registry::{ChangeAddressError, LiveRegistry, MAX_CHANGES_PAGE, NewAddress};

/// Page size when a listing request has no `limit`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest accepted `limit`, and largest number of keys in a batch request;
/// the real agencies cap requests, so the gateway must batch accordingly.
pub const MAX_PAGE_SIZE: usize = 100;

/// Serializes a person exactly as the registry serves it under `"person"`,
/// so the load benchmark and tests can compare gateway output against the
/// source of truth.
pub fn person_json(person: &Person) -> serde_json::Value {
    serde_json::to_value(person)
        .expect("a Person contains only strings, dates and string-keyed structs")
}

/// Serializes a tax account exactly as the tax agency serves it under
/// `"account"`, for the same comparisons as [`person_json`].
pub fn account_json(account: &TaxAccount) -> serde_json::Value {
    serde_json::to_value(account)
        .expect("a TaxAccount contains only strings, numbers and string-keyed structs")
}

/// Largest address change body accepted; a real one is under 200 bytes.
pub const MAX_ADDRESS_BODY_BYTES: usize = 4 * 1024;
/// Oldest age `/v1/milestones/age` answers for.
pub const MAX_MILESTONE_AGE: u32 = 150;
/// Longest look-back `/v1/milestones/age` answers for, in days.
pub const MAX_MILESTONE_DAYS: u32 = 366;

/// Builds the person registry API so it can be mounted in-process (e.g.
/// with `tower::ServiceExt::oneshot`) without opening a socket; its changes
/// start from none.
pub fn registry_router(population: Arc<Population>) -> Router {
    live_registry_router(Arc::new(LiveRegistry::new(population)))
}

/// The person registry API over a registry whose changes someone else also
/// makes (the demo's change simulator), so both see one state.
pub fn live_registry_router(registry: Arc<LiveRegistry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/people", get(list_people))
        // A static segment takes precedence over `{id}`, so "batch" is never
        // treated as a citizen id.
        .route("/v1/people/batch", get(batch_people))
        .route("/v1/people/{id}", get(get_person))
        .route(
            "/v1/people/{id}/address",
            put(put_address).layer(DefaultBodyLimit::max(MAX_ADDRESS_BODY_BYTES)),
        )
        .route("/v1/changes", get(list_changes))
        .route("/v1/milestones/age", get(age_milestones))
        .fallback(unknown_route)
        .with_state(registry)
}

/// Builds the tax agency API, for the same in-process use as
/// [`registry_router`].
pub fn tax_router(population: Arc<Population>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/taxpayers/accounts", get(batch_accounts))
        .route("/v1/taxpayers/{tin}/account", get(get_account))
        .fallback(unknown_route)
        .with_state(population)
}

/// Running simulated agencies on 127.0.0.1 ephemeral ports.
///
/// Tests and the demo need real listening servers whose URLs can be fed to
/// the gateway's connector configuration. Dropping the value also stops the
/// servers, but only [`SimulatedAgencies::shutdown`] waits for them to end.
#[derive(Debug)]
pub struct SimulatedAgencies {
    /// Base URL of the person registry, e.g. `http://127.0.0.1:40123`.
    pub registry_url: String,
    /// Base URL of the tax agency, e.g. `http://127.0.0.1:40124`.
    pub tax_url: String,
    /// Base URL of the motor vehicle agency, e.g. `http://127.0.0.1:40125`;
    /// its SOAP endpoint is this plus [`super::dmv::SOAP_PATH`].
    pub dmv_url: String,
    /// `host:port` of the benefits mainframe's inquiry transaction (EBCDIC records over TCP).
    pub benefits_addr: String,
    /// The directory the benefits mainframe's nightly payment extract was written to.
    pub benefits_extract_dir: std::path::PathBuf,
    /// The registry's changing state, which the registry server serves and the demo's
    /// change simulator changes.
    pub registry: Arc<LiveRegistry>,
    servers: Vec<RunningServer>,
    mainframe: super::benefits::BenefitsMainframe,
    /// Removed when the agencies stop.
    _extract_dir: tempfile::TempDir,
}

/// Where [`SimulatedAgencies::start_at`] binds each agency; the default is
/// an ephemeral loopback port for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgencyAddrs {
    /// The person registry (REST).
    pub registry: SocketAddr,
    /// The tax agency (REST).
    pub tax: SocketAddr,
    /// The motor vehicle agency (SOAP).
    pub dmv: SocketAddr,
}

impl Default for AgencyAddrs {
    fn default() -> Self {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            registry: loopback,
            tax: loopback,
            dmv: loopback,
        }
    }
}

#[derive(Debug)]
struct RunningServer {
    name: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl SimulatedAgencies {
    /// Starts every agency on loopback ephemeral ports, so that parallel
    /// tests never fight over a port.
    ///
    /// # Errors
    ///
    /// If a listening socket cannot be opened.
    pub async fn start(population: Arc<Population>) -> io::Result<SimulatedAgencies> {
        Self::start_at(population, AgencyAddrs::default()).await
    }

    /// Starts every agency on the given addresses, for a demo whose
    /// gateway configuration names fixed ports. Port 0 picks a free port.
    ///
    /// # Errors
    ///
    /// If an address cannot be bound (e.g. the port is taken).
    pub async fn start_at(
        population: Arc<Population>,
        addrs: AgencyAddrs,
    ) -> io::Result<SimulatedAgencies> {
        let registry_listener = TcpListener::bind(addrs.registry).await?;
        let tax_listener = TcpListener::bind(addrs.tax).await?;
        let dmv_listener = TcpListener::bind(addrs.dmv).await?;
        let registry_url = format!("http://{}", registry_listener.local_addr()?);
        let tax_url = format!("http://{}", tax_listener.local_addr()?);
        let dmv_url = format!("http://{}", dmv_listener.local_addr()?);

        let registry = Arc::new(LiveRegistry::new(Arc::clone(&population)));
        let servers = vec![
            spawn_server(
                "registry",
                registry_listener,
                live_registry_router(Arc::clone(&registry)),
            ),
            spawn_server("tax", tax_listener, tax_router(Arc::clone(&population))),
            spawn_server("dmv", dmv_listener, dmv_router(Arc::clone(&population))),
        ];
        let codecs = Arc::new(BenefitsCodecs::new().map_err(io::Error::other)?);
        let benefits = Arc::new(population.benefits().clone());
        let extract_dir = tempfile::Builder::new()
            .prefix("civicgraph-demo-extracts-")
            .tempdir()?;
        // Written "last night": the as-of time the gateway reports for payments.
        let as_of = (super::data::REFERENCE_DATE - chrono::Duration::days(1))
            .and_hms_opt(2, 0, 0)
            .unwrap_or_default();
        write_extract(extract_dir.path(), &benefits, &codecs, as_of)?;
        let mainframe = BenefitsMainframe::start(benefits, codecs)
            .await
            .map_err(io::Error::other)?;
        let benefits_addr = mainframe.address();
        tracing::debug!(%registry_url, %tax_url, %dmv_url, %benefits_addr, "Simulated agencies are listening.");
        Ok(SimulatedAgencies {
            registry_url,
            tax_url,
            dmv_url,
            benefits_addr,
            benefits_extract_dir: extract_dir.path().to_path_buf(),
            registry,
            servers,
            mainframe,
            _extract_dir: extract_dir,
        })
    }

    /// Stops accepting connections, lets in-flight requests finish and
    /// waits for both servers to end, so a test can assert on a clean stop
    /// and the demo can exit without dangling tasks.
    pub async fn shutdown(self) {
        drop(self.mainframe);
        // Signal every server first so they drain concurrently.
        let mut tasks = Vec::with_capacity(self.servers.len());
        for server in self.servers {
            // A send error means the server already stopped on its own.
            let _ = server.stop.send(());
            tasks.push((server.name, server.task));
        }
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => tracing::debug!(agency = name, "simulated agency stopped"),
                Ok(Err(error)) => {
                    tracing::warn!(agency = name, %error, "simulated agency failed");
                }
                Err(error) => {
                    tracing::warn!(agency = name, %error, "simulated agency task aborted");
                }
            }
        }
    }
}

fn spawn_server(name: &'static str, listener: TcpListener, router: Router) -> RunningServer {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, router)
            .with_graceful_shutdown(async move {
                // Resolves on an explicit stop and when the sender is dropped.
                let _ = stopped.await;
            })
            .await
    });
    RunningServer { name, stop, task }
}

/// Error answers, each a JSON body `{"error": "<code>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiError {
    NotFound,
    BadLimit,
    BadCursor,
    MissingKeys,
    TooManyKeys,
    BadRequest,
    BadSince,
    BadAge,
    BadWithinDays,
    BadDate,
    BadBody,
    Address(ChangeAddressError),
}

impl ApiError {
    fn status(self) -> StatusCode {
        match self {
            Self::NotFound | Self::Address(ChangeAddressError::UnknownPerson) => {
                StatusCode::NOT_FOUND
            }
            Self::BadLimit
            | Self::BadCursor
            | Self::MissingKeys
            | Self::TooManyKeys
            | Self::BadRequest
            | Self::BadSince
            | Self::BadAge
            | Self::BadWithinDays
            | Self::BadDate
            | Self::BadBody
            | Self::Address(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::BadLimit => "bad_limit",
            Self::BadCursor => "bad_cursor",
            Self::MissingKeys => "missing_keys",
            Self::TooManyKeys => "too_many_keys",
            Self::BadRequest => "bad_request",
            Self::BadSince => "bad_since",
            Self::BadAge => "bad_age",
            Self::BadWithinDays => "bad_within_days",
            Self::BadDate => "bad_date",
            Self::BadBody => "bad_body",
            Self::Address(error) => error.code(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorBody { error: self.code() })).into_response()
    }
}

#[derive(Serialize)]
struct PersonEnvelope<'a> {
    person: &'a Person,
}

#[derive(Serialize)]
struct PageEnvelope<'a> {
    people: Vec<Cow<'a, Person>>,
    next_cursor: Option<&'a str>,
}

#[derive(Serialize)]
struct PeopleEnvelope<'a> {
    people: Vec<Cow<'a, Person>>,
}

#[derive(Serialize)]
struct ChangesEnvelope {
    changes: Vec<super::registry::RegistryChange>,
}

#[derive(Serialize)]
struct Milestone<'a> {
    citizen_id: &'a str,
    /// `YYYY-MM-DD`.
    reached_on: String,
}

#[derive(Serialize)]
struct MilestonesEnvelope<'a> {
    people: Vec<Milestone<'a>>,
}

#[derive(Serialize)]
struct AccountEnvelope<'a> {
    account: &'a TaxAccount,
}

#[derive(Serialize)]
struct AccountsEnvelope<'a> {
    accounts: Vec<&'a TaxAccount>,
}

/// Query parameters are taken as strings so that malformed values get the
/// API's own error codes instead of the framework's plain-text rejection.
#[derive(Deserialize)]
struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct BatchPeopleParams {
    ids: Option<String>,
}

#[derive(Deserialize)]
struct ChangesParams {
    since: Option<String>,
    limit: Option<String>,
}

#[derive(Deserialize)]
struct MilestoneParams {
    age: Option<String>,
    within_days: Option<String>,
    on: Option<String>,
}

/// The body of an address change; anything else in it is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    street: String,
    city: String,
    postal_code: String,
}

#[derive(Deserialize)]
struct BatchAccountsParams {
    tins: Option<String>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound
}

async fn get_person(
    State(registry): State<Arc<LiveRegistry>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return ApiError::BadRequest.into_response();
    };
    match registry.person(&id) {
        Some(person) => Json(PersonEnvelope { person: &person }).into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn list_people(
    State(registry): State<Arc<LiveRegistry>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::BadRequest.into_response();
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => limit,
            _ => return ApiError::BadLimit.into_response(),
        },
    };
    let population = registry.population();
    // The cursor is the id of the last person on the previous page.
    let start = match params.cursor.as_deref() {
        None => 0,
        Some(cursor) => match population.index_of(cursor) {
            Some(index) => index + 1,
            None => return ApiError::BadCursor.into_response(),
        },
    };
    let people = population.people();
    let end = start.saturating_add(limit).min(people.len());
    let next_cursor = if end < people.len() && end > start {
        Some(people[end - 1].id.as_str())
    } else {
        None
    };
    Json(PageEnvelope {
        people: registry.people(start..end),
        next_cursor,
    })
    .into_response()
}

/// Splits a comma-separated key list, dropping blanks and duplicates while
/// keeping the caller's order.
fn parse_keys(raw: Option<&str>) -> Result<Vec<&str>, ApiError> {
    let raw = raw.ok_or(ApiError::MissingKeys)?;
    let keys: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .collect();
    if keys.len() > MAX_PAGE_SIZE {
        return Err(ApiError::TooManyKeys);
    }
    let mut seen = HashSet::with_capacity(keys.len());
    Ok(keys.into_iter().filter(|key| seen.insert(*key)).collect())
}

async fn batch_people(
    State(registry): State<Arc<LiveRegistry>>,
    params: Result<Query<BatchPeopleParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::BadRequest.into_response();
    };
    let ids = match parse_keys(params.ids.as_deref()) {
        Ok(ids) => ids,
        Err(error) => return error.into_response(),
    };
    let people = ids
        .into_iter()
        .filter_map(|id| registry.person(id))
        .collect();
    Json(PeopleEnvelope { people }).into_response()
}

async fn put_address(
    State(registry): State<Arc<LiveRegistry>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<AddressBody>, JsonRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return ApiError::BadRequest.into_response();
    };
    if registry.person(&id).is_none() {
        return ApiError::NotFound.into_response();
    }
    let Ok(Json(body)) = body else {
        return ApiError::BadBody.into_response();
    };
    let address = NewAddress {
        street: body.street,
        city: body.city,
        postal_code: body.postal_code,
    };
    match registry.change_address(&id, &address, chrono::Utc::now()) {
        Ok(change) => Json(change).into_response(),
        Err(error) => ApiError::Address(error).into_response(),
    }
}

async fn list_changes(
    State(registry): State<Arc<LiveRegistry>>,
    params: Result<Query<ChangesParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::BadRequest.into_response();
    };
    let since = match params.since.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(since)) => since,
        Some(Err(_)) => return ApiError::BadSince.into_response(),
    };
    let limit = match params.limit.as_deref().map(str::parse::<usize>) {
        None => MAX_CHANGES_PAGE,
        Some(Ok(limit)) if (1..=MAX_CHANGES_PAGE).contains(&limit) => limit,
        Some(_) => return ApiError::BadLimit.into_response(),
    };
    Json(ChangesEnvelope {
        changes: registry.changes_since(since, limit),
    })
    .into_response()
}

async fn age_milestones(
    State(registry): State<Arc<LiveRegistry>>,
    params: Result<Query<MilestoneParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::BadRequest.into_response();
    };
    let age = match params.age.as_deref().map(str::parse::<u32>) {
        Some(Ok(age)) if age <= MAX_MILESTONE_AGE => age,
        _ => return ApiError::BadAge.into_response(),
    };
    let within_days = match params.within_days.as_deref().map(str::parse::<u32>) {
        Some(Ok(days)) if days <= MAX_MILESTONE_DAYS => days,
        _ => return ApiError::BadWithinDays.into_response(),
    };
    let today = match params.on.as_deref() {
        None => chrono::Utc::now().date_naive(),
        Some(text) => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(date) => date,
            Err(_) => return ApiError::BadDate.into_response(),
        },
    };
    let people = registry
        .population()
        .reached_age(age, within_days, today)
        .into_iter()
        .map(|(person, reached_on)| Milestone {
            citizen_id: &person.id,
            reached_on: reached_on.to_string(),
        })
        .collect();
    Json(MilestonesEnvelope { people }).into_response()
}

async fn get_account(
    State(population): State<Arc<Population>>,
    tin: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(tin)) = tin else {
        return ApiError::BadRequest.into_response();
    };
    match population.account(&tin) {
        Some(account) => Json(AccountEnvelope { account }).into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

async fn batch_accounts(
    State(population): State<Arc<Population>>,
    params: Result<Query<BatchAccountsParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::BadRequest.into_response();
    };
    let tins = match parse_keys(params.tins.as_deref()) {
        Ok(tins) => tins,
        Err(error) => return error.into_response(),
    };
    let accounts = tins
        .into_iter()
        .filter_map(|tin| population.account(tin))
        .collect();
    Json(AccountsEnvelope { accounts }).into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::body::Body;
    use axum::http::{Request, header};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::demo::data::TAX_AGE;

    fn population() -> Arc<Population> {
        Arc::new(Population::generate(50, 7))
    }

    struct Answer {
        status: StatusCode,
        content_type: String,
        body: Vec<u8>,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("body is JSON")
        }
    }

    async fn get_from(router: &Router, uri: &str) -> Answer {
        let request = Request::get(uri)
            .body(Body::empty())
            .expect("valid request");
        send(router, request).await
    }

    async fn send(router: &Router, request: Request<Body>) -> Answer {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn assert_error(router: &Router, uri: &str, status: StatusCode, code: &str) {
        let answer = get_from(router, uri).await;
        assert_eq!(answer.status, status, "{uri}");
        assert_eq!(answer.content_type, "application/json", "{uri}");
        assert_eq!(answer.json(), json!({ "error": code }), "{uri}");
    }

    fn ids(value: &Value, key: &str) -> Vec<String> {
        value[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|person| person["id"].as_str().expect("id").to_owned())
            .collect()
    }

    fn adult_and_minor(population: &Population) -> (&Person, &Person) {
        let adult = population
            .people()
            .iter()
            .find(|person| person.age() >= TAX_AGE)
            .expect("an adult");
        let minor = population
            .people()
            .iter()
            .find(|person| person.age() < TAX_AGE)
            .expect("a minor");
        (adult, minor)
    }

    #[tokio::test]
    async fn person_is_served_with_the_documented_shape() {
        let population = population();
        let router = registry_router(Arc::clone(&population));
        let answer = get_from(&router, "/v1/people/C0000001").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, "application/json");
        let body = answer.json();
        let person = &population.people()[0];
        assert_eq!(body, json!({ "person": person_json(person) }));

        let served = &body["person"];
        let mut keys: Vec<&str> = served
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "address",
                "birth_date",
                "family_name",
                "full_name",
                "given_name",
                "id",
                "tin",
                "updated_at"
            ]
        );
        assert_eq!(served["id"], "C0000001");
        assert_eq!(served["full_name"], person.full_name.as_str());
        assert_eq!(served["birth_date"], person.birth_date.to_string().as_str());
        assert_eq!(
            served["address"]["postal_code"],
            person.address.postal_code.as_str()
        );
        assert_eq!(served["address"]["county"], person.address.county.as_str());
        assert_eq!(served["tin"], person.tin.as_str());
    }

    #[tokio::test]
    async fn unknown_person_is_404() {
        let router = registry_router(population());
        assert_error(
            &router,
            "/v1/people/C9999999",
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_error(
            &router,
            "/v1/people/nobody",
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }

    #[tokio::test]
    async fn undecodable_person_id_is_400() {
        let router = registry_router(population());
        assert_error(
            &router,
            "/v1/people/%FF",
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }

    #[tokio::test]
    async fn listing_defaults_to_twenty_people() {
        let router = registry_router(population());
        let answer = get_from(&router, "/v1/people").await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.json();
        let page = ids(&body, "people");
        assert_eq!(page.len(), DEFAULT_PAGE_SIZE);
        assert_eq!(page[0], "C0000001");
        assert_eq!(body["next_cursor"], "C0000020");
    }

    #[tokio::test]
    async fn paging_with_cursors_visits_everyone_once_and_ends_with_null() {
        let population = population();
        let router = registry_router(Arc::clone(&population));
        let mut seen = Vec::new();
        let mut uri = "/v1/people?limit=7".to_owned();
        let mut pages = 0;
        loop {
            let answer = get_from(&router, &uri).await;
            assert_eq!(answer.status, StatusCode::OK);
            let body = answer.json();
            seen.extend(ids(&body, "people"));
            pages += 1;
            match &body["next_cursor"] {
                Value::Null => break,
                Value::String(cursor) => uri = format!("/v1/people?limit=7&cursor={cursor}"),
                other => panic!("unexpected cursor {other}"),
            }
        }
        let expected: Vec<String> = population.people().iter().map(|p| p.id.clone()).collect();
        assert_eq!(seen, expected);
        assert_eq!(pages, 8);
    }

    #[tokio::test]
    async fn page_ending_exactly_at_the_last_person_has_null_cursor() {
        let router = registry_router(population());
        let body = get_from(&router, "/v1/people?limit=50").await.json();
        assert_eq!(ids(&body, "people").len(), 50);
        assert_eq!(body["next_cursor"], Value::Null);
        let body = get_from(&router, "/v1/people?cursor=C0000050").await.json();
        assert_eq!(body, json!({ "people": [], "next_cursor": null }));
    }

    #[tokio::test]
    async fn out_of_range_or_malformed_limit_is_400() {
        let router = registry_router(population());
        for limit in [
            "0",
            "101",
            "-1",
            "abc",
            "",
            "1.5",
            "99999999999999999999999",
        ] {
            let uri = format!("/v1/people?limit={limit}");
            assert_error(&router, &uri, StatusCode::BAD_REQUEST, "bad_limit").await;
        }
        let answer = get_from(&router, "/v1/people?limit=100").await;
        assert_eq!(answer.status, StatusCode::OK);
        let answer = get_from(&router, "/v1/people?limit=1").await;
        assert_eq!(ids(&answer.json(), "people"), ["C0000001"]);
    }

    #[tokio::test]
    async fn garbled_cursor_is_400() {
        let router = registry_router(population());
        for cursor in ["garbage", "", "C9999999", "%00"] {
            let uri = format!("/v1/people?cursor={cursor}");
            assert_error(&router, &uri, StatusCode::BAD_REQUEST, "bad_cursor").await;
        }
    }

    #[tokio::test]
    async fn batch_returns_only_found_people_in_request_order() {
        let router = registry_router(population());
        let answer = get_from(
            &router,
            "/v1/people/batch?ids=C0000003,C0009999,C0000001,C0000003,",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, "application/json");
        let body = answer.json();
        assert_eq!(ids(&body, "people"), ["C0000003", "C0000001"]);
        let encoded = get_from(&router, "/v1/people/batch?ids=C0000002%2CC0000004").await;
        assert_eq!(ids(&encoded.json(), "people"), ["C0000002", "C0000004"]);
    }

    #[tokio::test]
    async fn batch_route_is_not_mistaken_for_a_person_id() {
        let router = registry_router(population());
        assert_error(
            &router,
            "/v1/people/batch",
            StatusCode::BAD_REQUEST,
            "missing_keys",
        )
        .await;
        let body = get_from(&router, "/v1/people/batch?ids=").await.json();
        assert_eq!(body, json!({ "people": [] }));
    }

    #[tokio::test]
    async fn batch_of_more_than_100_ids_is_400() {
        let router = registry_router(population());
        let many: Vec<String> = (0..101).map(crate::demo::data::citizen_id).collect();
        let uri = format!("/v1/people/batch?ids={}", many.join(","));
        assert_error(&router, &uri, StatusCode::BAD_REQUEST, "too_many_keys").await;
        let uri = format!("/v1/people/batch?ids={}", many[..100].join(","));
        assert_eq!(
            ids(&get_from(&router, &uri).await.json(), "people").len(),
            50
        );
    }

    #[tokio::test]
    async fn account_is_served_with_decimal_strings() {
        let population = population();
        let (adult, _) = adult_and_minor(&population);
        let account = population.account_of(adult).expect("adults have accounts");
        let router = tax_router(Arc::clone(&population));
        let answer = get_from(&router, &format!("/v1/taxpayers/{}/account", adult.tin)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, "application/json");
        let body = answer.json();
        assert_eq!(body, json!({ "account": account_json(account) }));

        let served = &body["account"];
        assert_eq!(served["tin"], adult.tin.as_str());
        assert_eq!(served["currency"], "USD");
        assert!(served["last_assessed_year"].is_i64());
        let balance = served["balance"].as_str().expect("balance is a string");
        let (_, decimals) = balance.split_once('.').expect("has decimals");
        assert_eq!(decimals.len(), 2, "{balance}");
        let status = served["filing_status"].as_str().expect("status");
        assert!(["FILED", "OVERDUE", "EXTENSION", "EXEMPT"].contains(&status));
        for entry in served["assessments"].as_array().expect("assessments") {
            assert!(entry["year"].is_i64());
            assert!(entry["assessed"].is_string());
            assert!(entry["paid"].is_string());
            assert_eq!(entry["assessed_on"].as_str().map(str::len), Some(10));
        }
    }

    #[tokio::test]
    async fn minor_or_unknown_taxpayer_is_404() {
        let population = population();
        let (_, minor) = adult_and_minor(&population);
        let router = tax_router(Arc::clone(&population));
        let uri = format!("/v1/taxpayers/{}/account", minor.tin);
        assert_error(&router, &uri, StatusCode::NOT_FOUND, "not_found").await;
        let uri = "/v1/taxpayers/000000000/account";
        assert_error(&router, uri, StatusCode::NOT_FOUND, "not_found").await;
    }

    #[tokio::test]
    async fn account_batch_returns_only_existing_accounts() {
        let population = population();
        let (adult, minor) = adult_and_minor(&population);
        let router = tax_router(Arc::clone(&population));
        let uri = format!(
            "/v1/taxpayers/accounts?tins={},{},000000000",
            minor.tin, adult.tin
        );
        let answer = get_from(&router, &uri).await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.json();
        let tins: Vec<&str> = body["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .filter_map(|account| account["tin"].as_str())
            .collect();
        assert_eq!(tins, [adult.tin.as_str()]);
    }

    #[tokio::test]
    async fn account_batch_over_100_or_without_tins_is_400() {
        let router = tax_router(population());
        let many = vec!["123456789"; 101].join(",");
        let uri = format!("/v1/taxpayers/accounts?tins={many}");
        assert_error(&router, &uri, StatusCode::BAD_REQUEST, "too_many_keys").await;
        let uri = "/v1/taxpayers/accounts";
        assert_error(&router, uri, StatusCode::BAD_REQUEST, "missing_keys").await;
    }

    #[tokio::test]
    async fn both_agencies_answer_health_checks() {
        let population = population();
        for router in [
            registry_router(Arc::clone(&population)),
            tax_router(Arc::clone(&population)),
        ] {
            let answer = get_from(&router, "/healthz").await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.body, b"ok");
        }
    }

    async fn put_to(router: &Router, uri: &str, content_type: &str, body: &str) -> Answer {
        let request = Request::put(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .expect("valid request");
        send(router, request).await
    }

    fn live() -> (Arc<LiveRegistry>, Router) {
        let registry = Arc::new(LiveRegistry::new(population()));
        let router = live_registry_router(Arc::clone(&registry));
        (registry, router)
    }

    #[tokio::test]
    async fn a_move_is_served_everywhere_the_person_is() {
        let (registry, router) = live();
        let answer = put_to(
            &router,
            "/v1/people/C0000003/address",
            "application/json",
            r#"{"street": "12 Quarry Lane", "city": "Lakeside", "postal_code": "42211"}"#,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        let confirmed = answer.json();
        let address = json!({"street": "12 Quarry Lane", "city": "Lakeside",
            "postal_code": "42211", "county": "Hollis County"});
        assert_eq!(
            confirmed,
            json!({"change_id": "AC-00000001", "citizen_id": "C0000003", "address": address})
        );

        let one = get_from(&router, "/v1/people/C0000003").await.json();
        assert_eq!(one["person"]["address"], address);
        let page = get_from(&router, "/v1/people?limit=5").await.json();
        assert_eq!(page["people"][2]["address"], address);
        assert_eq!(page["next_cursor"], "C0000005");
        let batch = get_from(&router, "/v1/people/batch?ids=C0000004,C0000003")
            .await
            .json();
        assert_eq!(batch["people"][1]["address"], address);
        let unmoved = &registry.population().people()[3];
        assert_eq!(batch["people"][0], person_json(unmoved));

        let log = get_from(&router, "/v1/changes?since=0").await.json();
        assert_eq!(log["changes"][0]["change_id"], "AC-00000001");
        assert_eq!(log["changes"][0]["kind"], "address");
        assert_eq!(log["changes"][0]["citizen_id"], "C0000003");
        assert!(
            log["changes"][0].get("street").is_none(),
            "the log carries ids only"
        );
    }

    #[tokio::test]
    async fn bad_address_changes_are_400_and_change_nothing() {
        let (registry, router) = live();
        let cases = [
            ("application/json", "not json", "bad_body"),
            (
                "text/plain",
                r#"{"street":"1 Elm Road","city":"Upton","postal_code":"44100"}"#,
                "bad_body",
            ),
            (
                "application/json",
                r#"{"street":"1 Elm Road","city":"Upton"}"#,
                "bad_body",
            ),
            (
                "application/json",
                r#"{"street":1,"city":"Upton","postal_code":"44100"}"#,
                "bad_body",
            ),
            (
                "application/json",
                r#"{"street":"1 Elm Road","city":"Upton","postal_code":"44100","county":"X"}"#,
                "bad_body",
            ),
            (
                "application/json",
                r#"{"street":"","city":"Upton","postal_code":"44100"}"#,
                "bad_street",
            ),
            (
                "application/json",
                r#"{"street":"1 Elm Road","city":"Springfield","postal_code":"44100"}"#,
                "unknown_city",
            ),
            (
                "application/json",
                r#"{"street":"1 Elm Road","city":"Upton","postal_code":"4410"}"#,
                "bad_postal_code",
            ),
        ];
        for (content_type, body, code) in cases {
            let answer = put_to(&router, "/v1/people/C0000001/address", content_type, body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(answer.json(), json!({ "error": code }), "{body}");
        }
        let unknown = put_to(
            &router,
            "/v1/people/C0009999/address",
            "application/json",
            r#"{"street":"1 Elm Road","city":"Upton","postal_code":"44100"}"#,
        )
        .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.json(), json!({ "error": "not_found" }));
        let huge = format!(
            r#"{{"street":"{}","city":"Upton","postal_code":"44100"}}"#,
            "x".repeat(MAX_ADDRESS_BODY_BYTES)
        );
        let answer = put_to(
            &router,
            "/v1/people/C0000001/address",
            "application/json",
            &huge,
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(registry.change_count(), 0);
        let person = get_from(&router, "/v1/people/C0000001").await.json();
        assert_eq!(
            person["person"],
            person_json(&registry.population().people()[0])
        );
    }

    #[tokio::test]
    async fn the_change_log_pages_from_a_sequence_number() {
        let (registry, router) = live();
        let now = chrono::Utc::now();
        for n in 0..4 {
            let address = NewAddress {
                street: format!("{n} Mill Way"),
                city: "Upton".to_owned(),
                postal_code: "44101".to_owned(),
            };
            registry
                .change_address("C0000002", &address, now)
                .expect("valid");
        }
        registry
            .register_birth(&["C0000001"], now)
            .expect("a parent");
        let seqs = |body: Value| -> Vec<u64> {
            body["changes"]
                .as_array()
                .expect("changes")
                .iter()
                .filter_map(|change| change["seq"].as_u64())
                .collect()
        };
        assert_eq!(
            seqs(get_from(&router, "/v1/changes").await.json()),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            seqs(get_from(&router, "/v1/changes?since=3").await.json()),
            [4, 5]
        );
        assert_eq!(
            seqs(
                get_from(&router, "/v1/changes?since=1&limit=2")
                    .await
                    .json()
            ),
            [2, 3]
        );
        assert!(seqs(get_from(&router, "/v1/changes?since=5").await.json()).is_empty());
        let birth = &get_from(&router, "/v1/changes?since=4").await.json()["changes"][0];
        assert_eq!(birth["kind"], "birth");
        assert_eq!(birth["birth_id"], "B0000001");
        assert_eq!(birth["child_id"], "C9000001");
        for since in ["-1", "abc", "1.5", "", "99999999999999999999999"] {
            let uri = format!("/v1/changes?since={since}");
            assert_error(&router, &uri, StatusCode::BAD_REQUEST, "bad_since").await;
        }
        for limit in ["0", "501", "x"] {
            let uri = format!("/v1/changes?limit={limit}");
            assert_error(&router, &uri, StatusCode::BAD_REQUEST, "bad_limit").await;
        }
    }

    #[tokio::test]
    async fn age_milestones_list_who_reached_an_age() {
        let population = Arc::new(Population::generate(3_000, 7));
        let router = registry_router(Arc::clone(&population));
        let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
        let body = get_from(
            &router,
            "/v1/milestones/age?age=67&within_days=60&on=2026-11-23",
        )
        .await
        .json();
        let expected: Vec<Value> = population
            .reached_age(67, 60, on)
            .into_iter()
            .map(|(person, reached)| {
                json!({"citizen_id": person.id, "reached_on": reached.to_string()})
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(body, json!({ "people": expected }));
        let today = get_from(&router, "/v1/milestones/age?age=30&within_days=0").await;
        assert_eq!(today.status, StatusCode::OK);
        let cases = [
            ("within_days=30", "bad_age"),
            ("age=abc&within_days=30", "bad_age"),
            ("age=151&within_days=30", "bad_age"),
            ("age=67", "bad_within_days"),
            ("age=67&within_days=367", "bad_within_days"),
            ("age=67&within_days=-1", "bad_within_days"),
            ("age=67&within_days=30&on=23/11/2026", "bad_date"),
        ];
        for (query, code) in cases {
            let uri = format!("/v1/milestones/age?{query}");
            assert_error(&router, &uri, StatusCode::BAD_REQUEST, code).await;
        }
    }

    #[tokio::test]
    async fn unknown_route_is_json_404() {
        let population = population();
        let registry = registry_router(Arc::clone(&population));
        assert_error(&registry, "/v2/people", StatusCode::NOT_FOUND, "not_found").await;
        let tax = tax_router(population);
        assert_error(
            &tax,
            "/v1/people/C0000001",
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }

    /// Sends one HTTP/1.1 GET over a plain socket and returns the status
    /// code, the content type and the body.
    fn raw_get(base_url: &str, path: &str) -> io::Result<(u16, String, String)> {
        let authority = base_url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(authority)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let content_type = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default();
        Ok((status, content_type, body.to_owned()))
    }

    async fn raw_get_async(base_url: &str, path: &str) -> (u16, String, String) {
        let (base_url, path) = (base_url.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || raw_get(&base_url, &path))
            .await
            .expect("request task")
            .expect("request succeeds")
    }

    #[tokio::test]
    async fn started_agencies_serve_real_http_and_shut_down_cleanly() {
        let population = population();
        let agencies = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .expect("agencies start");
        assert!(agencies.registry_url.starts_with("http://127.0.0.1:"));
        assert!(agencies.tax_url.starts_with("http://127.0.0.1:"));
        assert_ne!(agencies.registry_url, agencies.tax_url);

        let (status, content_type, body) =
            raw_get_async(&agencies.registry_url, "/v1/people/C0000001").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["person"], person_json(&population.people()[0]));

        let (status, _, body) = raw_get_async(&agencies.registry_url, "/v1/people/C7654321").await;
        assert_eq!((status, body.as_str()), (404, r#"{"error":"not_found"}"#));
        let (status, _, body) = raw_get_async(&agencies.registry_url, "/v1/people?limit=0").await;
        assert_eq!((status, body.as_str()), (400, r#"{"error":"bad_limit"}"#));

        let (adult, _) = adult_and_minor(&population);
        let path = format!("/v1/taxpayers/{}/account", adult.tin);
        let (status, content_type, body) = raw_get_async(&agencies.tax_url, &path).await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let body: Value = serde_json::from_str(&body).expect("JSON");
        let account = population.account_of(adult).expect("account");
        assert_eq!(body["account"], account_json(account));

        let (status, _, body) = raw_get_async(&agencies.tax_url, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let registry_url = agencies.registry_url.clone();
        let tax_url = agencies.tax_url.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), agencies.shutdown())
            .await
            .expect("shutdown finishes");
        for url in [registry_url, tax_url] {
            let refused = tokio::task::spawn_blocking(move || raw_get(&url, "/healthz"))
                .await
                .expect("request task");
            assert!(refused.is_err(), "server still answering after shutdown");
        }
    }

    #[tokio::test]
    async fn agencies_on_separate_starts_do_not_collide() {
        let population = population();
        let first = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .expect("first start");
        let second = SimulatedAgencies::start(population)
            .await
            .expect("second start");
        assert_ne!(first.registry_url, second.registry_url);
        let (status, _, _) = raw_get_async(&second.registry_url, "/healthz").await;
        assert_eq!(status, 200);
        first.shutdown().await;
        second.shutdown().await;
    }
}
