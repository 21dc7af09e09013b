//! The `rest` connector: JSON over HTTP with reqwest (rustls, pooled connections).
//!
//! # Batch calls
//!
//! A `GET` operation may declare a `batch` form (see [`crate::config::RestBatch`]), which
//! [`Connector::call_batch`](super::Connector::call_batch) uses to answer many keys with one
//! request per `batch.max` distinct keys:
//!
//! - the key placeholder in the batch `path`/`query` becomes the distinct keys, each
//!   percent-encoded, joined with `,`; every other placeholder has its one value;
//! - the items at `batch.items` are matched back to keys by their value at `batch.match`
//!   (text equality; a number matches its decimal text), so the backend may answer in any
//!   order, leave unknown keys out, or add items for keys nobody asked for (ignored);
//! - a key reads what the single call would answer: the item (or its `batch.select`), and
//!   `null` when no item is for it, as a 404 reads `null`;
//! - a key containing `,` (or empty, null, a list or an object) cannot be told apart from
//!   other keys in a comma-joined list by a backend that splits after decoding (as most
//!   do), so it is neither refused nor sent in the list: the single call answers it;
//! - a failure of the batch call (transport, 5xx, any other non-2xx including 404, an
//!   answer that is not JSON, has no array at `batch.items`, an item without a key, or two
//!   items for one key) fails the whole batch with the single call's error kinds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use super::http_client::{
    MAX_RESPONSE_BYTES, build_client, classify, read_limited, static_headers,
};
use super::{Arguments, BatchSpec, CallError, ConnectorSpec, OperationSpec, Reply, Template};
use crate::config::{
    DEFAULT_BATCH_MAX, Diagnostic, HttpMethod, MAX_BATCH_MAX, NotFound, RestAuth, RestBatch,
    RestConfig, RestOperation, TomlFile,
};

/// Characters escaped in a path segment: everything that could end or restructure the path.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Characters escaped in a batch call's query names and values: everything but the
/// unreserved characters and `,`, which separates the keys of the list.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',');

/// A built REST backend: one pooled client and its compiled operations.
#[derive(Debug)]
pub struct RestConnector {
    client: reqwest::Client,
    base_url: String,
    timeout: Duration,
    operations: HashMap<String, CompiledOperation>,
}

#[derive(Debug)]
struct CompiledOperation {
    method: reqwest::Method,
    path: Template,
    query: Vec<(String, Template)>,
    body: Option<BodyTemplate>,
    select: Option<String>,
    not_found: NotFound,
    batch: Option<CompiledBatch>,
}

/// An operation's batch form, checked against the single call it stands in for.
#[derive(Debug)]
struct CompiledBatch {
    /// The placeholder whose values vary.
    key: String,
    path: Template,
    query: Vec<(String, Template)>,
    /// JSON pointers: the items array, an item's key, and what of an item is the answer.
    items: String,
    key_at: String,
    select: Option<String>,
    max: usize,
    /// The single call's other path placeholders: a null one skips the single call.
    required: Vec<String>,
    /// The single call's other query placeholders: a null one leaves its parameter out.
    optional: Vec<String>,
}

/// A JSON body whose strings may be placeholders.
#[derive(Debug)]
enum BodyTemplate {
    Placeholder(String),
    Text(Template),
    Literal(Value),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
}

impl RestConnector {
    /// Builds the client and compiles every operation, collecting every problem with its line.
    pub(crate) fn build(
        config: &RestConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn super::Connector>, ConnectorSpec), Vec<Diagnostic>> {
        let mut diagnostics = Vec::new();
        let base_url = config.base_url.get_ref().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(url) => diagnostics.push(Diagnostic::at(
                file.location(&config.base_url.span()),
                format!(
                    "`base_url` must be an http:// or https:// URL with a host, not `{}:`",
                    url.scheme()
                ),
            )),
            Err(error) => diagnostics.push(Diagnostic::at(
                file.location(&config.base_url.span()),
                format!("`base_url` `{base_url}` is not a URL: {error}"),
            )),
        }
        if config.timeout_ms == 0 {
            diagnostics.push(Diagnostic::at(
                file.location(&config.name.span()),
                "`timeout_ms` must be greater than 0",
            ));
        }

        let mut headers = static_headers(&config.headers, |message| {
            diagnostics.push(Diagnostic::at(file.location(&config.name.span()), message));
        });
        if let Some(auth) = &config.auth {
            let value = match auth {
                RestAuth::Bearer { token } => format!("Bearer {}", token.expose()),
                RestAuth::Basic { username, password } => {
                    use base64::Engine as _;
                    let pair = format!("{username}:{}", password.expose());
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    )
                }
            };
            match HeaderValue::from_str(&value) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
                Err(_) => diagnostics.push(Diagnostic::at(
                    file.location(&config.name.span()),
                    "`auth` credentials contain characters not allowed in a header",
                )),
            }
        }

        let mut operations = HashMap::new();
        let mut specs = BTreeMap::new();
        for (name, op) in &config.operations {
            match compile_operation(op, file) {
                Ok((compiled, mut spec)) => {
                    spec.location = file.location(&name.span());
                    operations.insert(name.get_ref().clone(), compiled);
                    specs.insert(name.get_ref().clone(), spec);
                }
                Err(mut errors) => diagnostics.append(&mut errors),
            }
        }
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }

        let client = build_client(
            headers,
            config.pool_max_idle,
            Duration::from_millis(config.timeout_ms),
        )
        .map_err(|error| {
            vec![Diagnostic::at(
                file.location(&config.name.span()),
                format!("cannot build the HTTP client: {error}"),
            )]
        })?;
        let spec = ConnectorSpec {
            kind: "rest",
            identifier: None,
            location: file.location(&config.name.span()),
            operations: specs,
        };
        let connector = Self {
            client,
            base_url,
            timeout: Duration::from_millis(config.timeout_ms),
            operations,
        };
        Ok((Arc::new(connector), spec))
    }

    async fn call_operation(
        &self,
        op: &CompiledOperation,
        args: &Arguments,
    ) -> Result<Option<Value>, CallError> {
        let Some(path) = op
            .path
            .render(args, |s| utf8_percent_encode(s, PATH_SEGMENT).to_string())?
        else {
            return Ok(None);
        };
        let mut query = Vec::with_capacity(op.query.len());
        for (name, template) in &op.query {
            if let Some(value) = template.render(args, str::to_string)? {
                query.push((name.as_str(), value));
            }
        }
        let mut request = self
            .client
            .request(op.method.clone(), format!("{}{}", self.base_url, path));
        if !query.is_empty() {
            request = request.query(&query);
        }
        for (name, value) in super::context::outbound_headers() {
            request = request.header(name, value);
        }
        if let Some(body) = &op.body {
            let body = serde_json::to_vec(&body.render(args)?).map_err(|error| {
                CallError::BadResponse {
                    reason: format!("cannot encode the request body: {error}"),
                }
            })?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| classify(e, self.timeout))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND && op.not_found == NotFound::Null {
            return Ok(None);
        }
        let mut value = self.read_json(response).await?;
        let selected = match &op.select {
            None => value,
            Some(pointer) => value.pointer_mut(pointer).map(Value::take).ok_or_else(|| {
                CallError::BadResponse {
                    reason: format!("the answer has nothing at `{pointer}`"),
                }
            })?,
        };
        Ok((!selected.is_null()).then_some(selected))
    }

    /// A successful answer's body as JSON; any other status is the failure it means.
    async fn read_json(&self, response: reqwest::Response) -> Result<Value, CallError> {
        let status = response.status();
        if status.is_server_error() {
            return Err(CallError::ServerError {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(CallError::Rejected {
                status: status.as_u16(),
            });
        }
        let body = read_limited(response, self.timeout, MAX_RESPONSE_BYTES).await?;
        serde_json::from_slice(&body).map_err(|error| CallError::BadResponse {
            reason: format!("not JSON: {error}"),
        })
    }

    /// Answers every entry of `args` as the single call would: the distinct keys that fit in
    /// a comma-joined list with one request per `batch.max` of them, the others alone.
    async fn call_batch_operation(
        &self,
        op: &CompiledOperation,
        batch: &CompiledBatch,
        args: &[Arguments],
    ) -> Result<Vec<Reply>, CallError> {
        let Some(shared) = args.first() else {
            return Ok(Vec::new());
        };
        let given = |args: &'_ Arguments, name: &str| -> Option<Value> {
            args.get(name).filter(|value| !value.is_null()).cloned()
        };
        let others = || batch.required.iter().chain(&batch.optional);
        // The batch call renders the other placeholders once, from the first entry; when the
        // entries disagree on them (against the contract), or one is a value only the single
        // call knows how to render or skip, each entry is answered alone instead.
        let fits = batch
            .required
            .iter()
            .all(|name| shared.get(name).is_some_and(|v| scalar_text(v).is_some()))
            && batch
                .optional
                .iter()
                .all(|name| given(shared, name).is_none_or(|value| scalar_text(&value).is_some()))
            && args
                .iter()
                .all(|entry| others().all(|name| given(entry, name) == given(shared, name)));
        if !fits {
            return super::each_alone(args, |args| self.call_operation(op, args)).await;
        }

        let mut keys: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let slots: Vec<Option<usize>> = args
            .iter()
            .map(|entry| {
                let text = entry.get(&batch.key).and_then(list_text)?;
                Some(*index.entry(text).or_insert_with_key(|text| {
                    keys.push(text.clone());
                    keys.len() - 1
                }))
            })
            .collect();
        let listed = futures::future::try_join_all(
            keys.chunks(batch.max)
                .map(|chunk| self.fetch_batch(batch, shared, chunk)),
        );
        let alone = futures::future::try_join_all(
            args.iter()
                .zip(&slots)
                .filter(|(_, slot)| slot.is_none())
                .map(|(entry, _)| self.call_operation(op, entry)),
        );
        let (listed, alone) = futures::try_join!(listed, alone)?;
        let listed: Vec<Option<Value>> = listed.into_iter().flatten().collect();
        let mut alone = alone.into_iter();
        Ok(slots
            .iter()
            .map(|slot| Reply {
                value: match slot {
                    Some(index) => listed.get(*index).cloned().flatten(),
                    None => alone.next().flatten(),
                },
                as_of: None,
            })
            .collect())
    }

    /// One batch request for `keys` (distinct, none containing `,`); the answer for each key,
    /// in the order of `keys`.
    async fn fetch_batch(
        &self,
        batch: &CompiledBatch,
        shared: &Arguments,
        keys: &[String],
    ) -> Result<Vec<Option<Value>>, CallError> {
        let mut path_args = Arguments::new();
        for name in batch.path.placeholders() {
            let text = if name == batch.key {
                keys.iter()
                    .map(|key| utf8_percent_encode(key, PATH_SEGMENT).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                match shared.get(name).and_then(scalar_text) {
                    Some(text) => utf8_percent_encode(&text, PATH_SEGMENT).to_string(),
                    // Checked by the caller; a null path placeholder skips the call.
                    None => return Ok(vec![None; keys.len()]),
                }
            };
            path_args.insert(name.to_string(), Value::String(text));
        }
        let Some(path) = batch.path.render(&path_args, str::to_string)? else {
            return Ok(vec![None; keys.len()]);
        };
        let mut url = format!("{}{path}", self.base_url);
        let mut query_args = shared.clone();
        query_args.insert(batch.key.clone(), Value::String(keys.join(",")));
        let mut separator = '?';
        for (name, template) in &batch.query {
            if let Some(value) = template.render(&query_args, str::to_string)? {
                url.push(separator);
                url.extend(utf8_percent_encode(name, QUERY_COMPONENT));
                url.push('=');
                url.extend(utf8_percent_encode(&value, QUERY_COMPONENT));
                separator = '&';
            }
        }

        let mut request = self.client.get(url);
        for (name, value) in super::context::outbound_headers() {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| classify(e, self.timeout))?;
        let mut answer = self.read_json(response).await?;
        let items = match answer.pointer_mut(&batch.items).map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(CallError::BadResponse {
                    reason: format!("the batch answer has no array at `{}`", batch.items),
                });
            }
        };
        let wanted: HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(index, key)| (key.as_str(), index))
            .collect();
        // `None` until an item for the key is seen; then the answer, which may be null.
        let mut answers: Vec<Option<Option<Value>>> = vec![None; keys.len()];
        for (position, mut item) in items.into_iter().enumerate() {
            // The key is personal data (a TIN): messages name the item's position only.
            let key = item
                .pointer(&batch.key_at)
                .and_then(scalar_text)
                .ok_or_else(|| CallError::BadResponse {
                    reason: format!(
                        "item {position} of the batch answer has no text, number or boolean at `{}`",
                        batch.key_at
                    ),
                })?;
            let Some(&index) = wanted.get(key.as_str()) else {
                continue; // a key nobody asked for
            };
            if answers[index].is_some() {
                return Err(CallError::BadResponse {
                    reason: format!(
                        "item {position} of the batch answer is for a key an earlier item already answered"
                    ),
                });
            }
            let value = match &batch.select {
                None => item,
                Some(pointer) => item.pointer_mut(pointer).map(Value::take).ok_or_else(|| {
                    CallError::BadResponse {
                        reason: format!(
                            "item {position} of the batch answer has nothing at `{pointer}`"
                        ),
                    }
                })?,
            };
            answers[index] = Some((!value.is_null()).then_some(value));
        }
        Ok(answers.into_iter().map(Option::flatten).collect())
    }
}

/// A scalar argument or item key as text: strings as they are, numbers and booleans as
/// JSON writes them (so a number key matches its decimal text).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A key as it goes into a comma-joined list, or `None` for one the single call must answer:
/// an empty key or one containing `,` would read as other keys, and null, lists and objects
/// are rendered (or skipped, or refused) only by the single call.
fn list_text(value: &Value) -> Option<String> {
    scalar_text(value).filter(|text| !text.is_empty() && !text.contains(','))
}

impl super::Connector for RestConnector {
    fn call<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Option<Value>, CallError>> {
        Box::pin(async move {
            let op = self
                .operations
                .get(operation)
                .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
            tokio::time::timeout(self.timeout, self.call_operation(op, args))
                .await
                .unwrap_or(Err(CallError::Timeout {
                    timeout_ms: self.timeout.as_millis() as u64,
                }))
        })
    }

    /// One request per `batch.max` distinct keys (see the module's "Batch calls"), all under
    /// one deadline: the connector's `timeout_ms`, as for a single call.
    fn call_batch<'a>(
        &'a self,
        operation: &'a str,
        args: &'a [Arguments],
    ) -> BoxFuture<'a, Result<Vec<Reply>, CallError>> {
        Box::pin(async move {
            let op = self
                .operations
                .get(operation)
                .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
            let answered: BoxFuture<'_, _> = match &op.batch {
                Some(batch) => Box::pin(self.call_batch_operation(op, batch, args)),
                None => Box::pin(super::each_alone(args, |args| {
                    self.call_operation(op, args)
                })),
            };
            tokio::time::timeout(self.timeout, answered)
                .await
                .unwrap_or(Err(CallError::Timeout {
                    timeout_ms: self.timeout.as_millis() as u64,
                }))
        })
    }
}

fn compile_operation(
    op: &RestOperation,
    file: &TomlFile,
) -> Result<(CompiledOperation, OperationSpec), Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let template_at = |text: &toml::Spanned<String>,
                       what: &str,
                       diagnostics: &mut Vec<Diagnostic>|
     -> Option<Template> { parse_template(text, what, file, diagnostics) };
    let path = template_at(&op.path, "`path`", &mut diagnostics);
    if !op.path.get_ref().starts_with('/') {
        diagnostics.push(Diagnostic::at(
            file.location(&op.path.span()),
            "`path` must start with `/` (it is appended to `base_url`)",
        ));
    }
    let mut query = Vec::new();
    for (name, value) in &op.query {
        if let Some(template) = template_at(
            value,
            &format!("query parameter `{name}`"),
            &mut diagnostics,
        ) {
            query.push((name.clone(), template));
        }
    }
    let body = op.body.as_ref().map(|body| {
        compile_body(body.get_ref()).unwrap_or_else(|message| {
            diagnostics.push(Diagnostic::at(file.location(&body.span()), message));
            BodyTemplate::Literal(Value::Null)
        })
    });
    for (what, pointer) in
        [("select", op.select.as_ref())]
            .into_iter()
            .chain(op.page.iter().flat_map(|page| {
                [
                    ("page.items", Some(&page.items)),
                    ("page.next_cursor", Some(&page.next_cursor)),
                    ("page.edge_cursor", page.edge_cursor.as_ref()),
                ]
            }))
    {
        if let Some(pointer) = pointer
            && !pointer.get_ref().is_empty()
            && !pointer.get_ref().starts_with('/')
        {
            diagnostics.push(Diagnostic::at(
                file.location(&pointer.span()),
                format!(
                    "`{what}` must be a JSON pointer starting with `/` (e.g. `/account`), not `{}`",
                    pointer.get_ref()
                ),
            ));
        }
    }
    if op.body.is_some() && op.method == HttpMethod::Get {
        diagnostics.push(Diagnostic::at(
            file.location(&op.path.span()),
            "a `body` needs `method = \"POST\"`, `\"PUT\"` or `\"PATCH\"`; GET requests carry none",
        ));
    }
    let (Some(path), true) = (path, diagnostics.is_empty()) else {
        return Err(diagnostics);
    };

    let required: Vec<String> = path.placeholders().into_iter().map(String::from).collect();
    let mut optional: Vec<String> = Vec::new();
    let mut add_optional = |name: &str| {
        if !required.iter().any(|r| r == name) && !optional.iter().any(|o| o == name) {
            optional.push(name.to_string());
        }
    };
    for (_, template) in &query {
        template
            .placeholders()
            .into_iter()
            .for_each(&mut add_optional);
    }
    if let Some(body) = &body {
        body.placeholders(&mut add_optional);
    }
    let batch = match &op.batch {
        Some(batch) => Some(
            compile_batch(op, batch, &required, &optional, file, &mut diagnostics)
                .ok_or_else(|| diagnostics.clone())?,
        ),
        None => None,
    };
    let spec = OperationSpec {
        required: required.clone(),
        optional,
        location: file.location(&op.path.span()),
        page: op.page.clone(),
        description: op.description.clone(),
        batch: batch.as_ref().map(|batch| BatchSpec {
            key: batch.key.clone(),
            max: batch.max,
        }),
    };
    let compiled = CompiledOperation {
        method: op.method.as_reqwest(),
        path,
        query,
        body,
        select: op
            .select
            .as_ref()
            .map(|s| s.get_ref().clone())
            .filter(|s| !s.is_empty()),
        not_found: op.not_found,
        batch,
    };
    Ok((compiled, spec))
}

/// Parses a template, reporting a malformed brace at its own column.
fn parse_template(
    text: &toml::Spanned<String>,
    what: &str,
    file: &TomlFile,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Template> {
    match Template::parse(text.get_ref()) {
        Ok(template) => Some(template),
        Err((offset, message)) => {
            let mut span = text.span();
            // +1 skips the opening quote of the TOML string.
            span.start += offset + 1;
            diagnostics.push(Diagnostic::at(
                file.location(&span),
                format!("{what}: {message}"),
            ));
            None
        }
    }
}

/// Why `pointer` is not a JSON pointer (RFC 6901): it must be empty (the whole value, where
/// `whole` allows it) or start with `/`, and `~` may only be written `~0` or `~1`.
fn pointer_problem(what: &str, pointer: &str, whole: bool) -> Option<String> {
    let example = "e.g. `/account`";
    if pointer.is_empty() {
        return (!whole).then(|| {
            format!(
                "`{what}` must be a JSON pointer to a value inside the item ({example}), not empty"
            )
        });
    }
    if !pointer.starts_with('/') {
        return Some(format!(
            "`{what}` must be a JSON pointer starting with `/` ({example}), not `{pointer}`"
        ));
    }
    let bytes = pointer.as_bytes();
    let bad_tilde = bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
    bad_tilde.then(|| {
        format!(
            "`{what}` `{pointer}` is not a JSON pointer: `~` must be written `~0`, and `/` inside a name `~1`"
        )
    })
}

/// Checks a `batch` form against the single call it stands in for: the same placeholders,
/// the key among them, pointers that are pointers.
fn compile_batch(
    op: &RestOperation,
    batch: &toml::Spanned<RestBatch>,
    required: &[String],
    optional: &[String],
    file: &TomlFile,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<CompiledBatch> {
    let before = diagnostics.len();
    let at_batch = file.location(&batch.span());
    let config = batch.get_ref();
    if op.method != HttpMethod::Get {
        diagnostics.push(Diagnostic::at(
            at_batch.clone(),
            "`batch` is only for `GET` operations: a batch call repeats a read, never a change",
        ));
    }
    if op.page.is_some() {
        diagnostics.push(Diagnostic::at(
            at_batch.clone(),
            "an operation with `page` cannot have a `batch` form: a batch answers one entity per key, not pages",
        ));
    }
    if op.not_found == NotFound::Error {
        diagnostics.push(Diagnostic::at(
            at_batch.clone(),
            "`batch` reads a key the backend leaves out as null, as a 404 reads with `not_found = \"null\"`; it cannot be used with `not_found = \"error\"`",
        ));
    }
    let path_text = config.path.get_ref();
    if !path_text.starts_with('/') {
        diagnostics.push(Diagnostic::at(
            file.location(&config.path.span()),
            "`batch.path` must start with `/` (it is appended to `base_url`)",
        ));
    }
    if path_text.contains(['?', '#']) {
        diagnostics.push(Diagnostic::at(
            file.location(&config.path.span()),
            "`batch.path` must not contain `?` or `#`; put query parameters in `batch.query`",
        ));
    }
    let path = parse_template(&config.path, "`batch.path`", file, diagnostics);
    let mut query = Vec::new();
    for (name, value) in &config.query {
        if let Some(template) = parse_template(
            value,
            &format!("`batch.query` parameter `{name}`"),
            file,
            diagnostics,
        ) {
            query.push((name.clone(), template, value.span()));
        }
    }
    for (what, pointer, whole) in [
        ("batch.items", Some(&config.items), true),
        ("batch.match", Some(&config.key_at), false),
        ("batch.select", config.select.as_ref(), true),
    ] {
        if let Some(pointer) = pointer
            && let Some(message) = pointer_problem(what, pointer.get_ref(), whole)
        {
            diagnostics.push(Diagnostic::at(file.location(&pointer.span()), message));
        }
    }
    let max = config
        .max
        .as_ref()
        .map_or(DEFAULT_BATCH_MAX, |max| *max.get_ref());
    if let Some(spanned) = &config.max
        && !(1..=MAX_BATCH_MAX).contains(&max)
    {
        diagnostics.push(Diagnostic::at(
            file.location(&spanned.span()),
            format!("`batch.max` must be between 1 and {MAX_BATCH_MAX}, not {max}"),
        ));
    }
    let path = path?;

    let is_single = |name: &str| required.iter().chain(optional).any(|p| p == name);
    // Every placeholder of the batch call must be one the single call is given.
    let mut used: Vec<String> = Vec::new();
    let unknown = |name: &str, span: std::ops::Range<usize>, diagnostics: &mut Vec<Diagnostic>| {
        if !is_single(name) {
            diagnostics.push(Diagnostic::at(
                file.location(&span),
                format!(
                    "`batch` uses `{{{name}}}`, which is not a placeholder of the operation's `path` or `query`, so nothing would fill it"
                ),
            ));
        }
    };
    for name in path.placeholders() {
        unknown(name, config.path.span(), diagnostics);
        used.push(name.to_string());
    }
    for (_, template, span) in &query {
        for name in template.placeholders() {
            unknown(name, span.clone(), diagnostics);
            if !used.iter().any(|u| u == name) {
                used.push(name.to_string());
            }
        }
    }
    let key = match &config.key {
        Some(key) => {
            let name = key.get_ref();
            if !is_single(name) {
                diagnostics.push(Diagnostic::at(
                    file.location(&key.span()),
                    format!(
                        "`batch.key` `{name}` is not a placeholder of the operation's `path` or `query`"
                    ),
                ));
            } else if !used.iter().any(|u| u == name) {
                diagnostics.push(Diagnostic::at(
                    file.location(&config.path.span()),
                    format!(
                        "`batch` must use its key `{{{name}}}` in `batch.path` or `batch.query`, where it becomes the comma-joined list of keys"
                    ),
                ));
            }
            name.clone()
        }
        None => match used.as_slice() {
            [only] => only.clone(),
            [] => {
                diagnostics.push(Diagnostic::at(
                    at_batch.clone(),
                    "`batch` must use the key placeholder (e.g. `{tin}`) in `batch.path` or `batch.query`, where it becomes the comma-joined list of keys",
                ));
                String::new()
            }
            several => {
                let names: Vec<String> = several.iter().map(|n| format!("`{{{n}}}`")).collect();
                diagnostics.push(Diagnostic::at(
                    at_batch.clone(),
                    format!(
                        "`batch` uses {}: name the one whose values vary with `key = \"…\"`",
                        names.join(", ")
                    ),
                ));
                String::new()
            }
        },
    };
    // A single-call query placeholder may be null, which a path cannot express.
    for name in path.placeholders() {
        if name != key && optional.iter().any(|o| o == name) {
            diagnostics.push(Diagnostic::at(
                file.location(&config.path.span()),
                format!(
                    "`{{{name}}}` is a query placeholder of the single call, which may be null; use it in `batch.query`, not in `batch.path`"
                ),
            ));
        }
    }
    let left_out: Vec<String> = required
        .iter()
        .chain(optional)
        .filter(|name| !used.contains(name))
        .map(|name| format!("`{{{name}}}`"))
        .collect();
    if !left_out.is_empty() {
        diagnostics.push(Diagnostic::at(
            at_batch,
            format!(
                "`batch` leaves out {}, which the single call sends; use every placeholder of the single call in `batch.path` or `batch.query`, so both ask the same question",
                left_out.join(", ")
            ),
        ));
    }
    if diagnostics.len() > before {
        return None;
    }
    let others = |from: &[String]| -> Vec<String> {
        from.iter().filter(|name| **name != key).cloned().collect()
    };
    Some(CompiledBatch {
        required: others(required),
        optional: others(optional),
        key,
        path,
        query: query
            .into_iter()
            .map(|(name, template, _)| (name, template))
            .collect(),
        items: config.items.get_ref().clone(),
        key_at: config.key_at.get_ref().clone(),
        select: config
            .select
            .as_ref()
            .map(|s| s.get_ref().clone())
            .filter(|s| !s.is_empty()),
        max,
    })
}

fn compile_body(value: &toml::Value) -> Result<BodyTemplate, String> {
    Ok(match value {
        toml::Value::String(text) => {
            let template =
                Template::parse(text).map_err(|(_, message)| format!("`body`: {message}"))?;
            match template.sole_placeholder() {
                Some(name) => BodyTemplate::Placeholder(name.to_string()),
                None if template.placeholders().is_empty() => {
                    BodyTemplate::Literal(Value::String(text.clone()))
                }
                None => BodyTemplate::Text(template),
            }
        }
        toml::Value::Array(items) => {
            BodyTemplate::Array(items.iter().map(compile_body).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => BodyTemplate::Object(
            table
                .iter()
                .map(|(k, v)| compile_body(v).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            BodyTemplate::Literal(serde_json::to_value(other).map_err(|e| format!("`body`: {e}"))?)
        }
    })
}

impl BodyTemplate {
    fn placeholders(&self, add: &mut impl FnMut(&str)) {
        match self {
            Self::Placeholder(name) => add(name),
            Self::Text(template) => template.placeholders().into_iter().for_each(add),
            Self::Literal(_) => {}
            Self::Array(items) => items.iter().for_each(|i| i.placeholders(add)),
            Self::Object(fields) => fields.iter().for_each(|(_, v)| v.placeholders(add)),
        }
    }

    fn render(&self, args: &Arguments) -> Result<Value, CallError> {
        Ok(match self {
            Self::Placeholder(name) => args.get(name).cloned().unwrap_or(Value::Null),
            Self::Text(template) => template
                .render(args, str::to_string)?
                .map_or(Value::Null, Value::String),
            Self::Literal(value) => value.clone(),
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(args))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| v.render(args).map(|v| (k.clone(), v)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;

    fn connector(base_url: &str) -> Arc<dyn super::super::Connector> {
        let text = format!(
            "name = \"tax\"\nkind = \"rest\"\nbase_url = \"{base_url}\"\ntimeout_ms = 500\n\
             [operations.account]\npath = \"/v1/taxpayers/{{tin}}/account\"\n"
        );
        let file = TomlFile::from_text("tax.toml", &text, &Vars::default()).expect("valid toml");
        let config: RestConfig = file.parse().expect("valid connector");
        RestConnector::build(&config, &file).expect("builds").0
    }

    #[tokio::test]
    async fn transport_errors_never_carry_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let tax = connector(&format!("http://127.0.0.1:{port}"));
        let args = Arguments::from([("tin".to_string(), Value::from("123456789"))]);
        let error = tax
            .call("account", &args)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code(), crate::error::ErrorCode::BackendUnavailable);
        let text = format!("{error} {error:?}");
        assert!(
            !text.contains("123456789"),
            "personal data in an error: {text}"
        );
    }

    /// `line:column message` of every problem building `operations` (which start on line 4).
    fn problems(operations: &str) -> Vec<String> {
        let text = format!(
            "name = \"tax\"\nkind = \"rest\"\nbase_url = \"http://127.0.0.1:9\"\n{operations}"
        );
        let file = TomlFile::from_text("tax.toml", &text, &Vars::default()).expect("valid toml");
        let config: RestConfig = file.parse().expect("valid connector");
        match RestConnector::build(&config, &file) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .into_iter()
                .map(|d| {
                    let at = d.location.expect("located");
                    format!("{}:{} {}", at.line, at.column, d.message)
                })
                .collect(),
        }
    }

    fn spec_of(operations: &str) -> ConnectorSpec {
        let text = format!(
            "name = \"tax\"\nkind = \"rest\"\nbase_url = \"http://127.0.0.1:9\"\n{operations}"
        );
        let file = TomlFile::from_text("tax.toml", &text, &Vars::default()).expect("valid toml");
        let config: RestConfig = file.parse().expect("valid connector");
        RestConnector::build(&config, &file).expect("builds").1
    }

    const ACCOUNT: &str =
        "[operations.account]\npath = \"/v1/taxpayers/{tin}/account\"\nselect = \"/account\"\n";

    #[test]
    fn a_batch_form_sets_the_batch_spec_with_its_key_and_max() {
        let spec = spec_of(&format!(
            "{ACCOUNT}batch = {{ path = \"/v1/taxpayers/accounts\", query = {{ tins = \"{{tin}}\" }}, items = \"/accounts\", match = \"/tin\" }}\n"
        ));
        assert_eq!(
            spec.operations["account"].batch,
            Some(BatchSpec {
                key: "tin".to_string(),
                max: DEFAULT_BATCH_MAX
            })
        );
        // An explicit key, other placeholders shared by both calls, the key in the path, a
        // table of its own.
        let spec = spec_of(
            "[operations.account]\npath = \"/v1/{agency}/taxpayers/{tin}\"\nquery = { year = \"{year}\" }\n\
             [operations.account.batch]\nkey = \"tin\"\npath = \"/v1/{agency}/taxpayers/{tin}/all\"\n\
             query = { year = \"{year}\" }\nitems = \"\"\nmatch = \"/tin\"\nmax = 7\n",
        );
        assert_eq!(
            spec.operations["account"].batch,
            Some(BatchSpec {
                key: "tin".to_string(),
                max: 7
            })
        );
        assert_eq!(spec_of(ACCOUNT).operations["account"].batch, None);
    }

    #[test]
    fn a_batch_on_a_write_a_page_or_a_strict_404_is_refused_at_the_batch() {
        let batch = "batch = { path = \"/v1/all\", query = { tins = \"{tin}\" }, items = \"/a\", match = \"/tin\" }\n";
        let found = problems(&format!(
            "[operations.save]\nmethod = \"POST\"\npath = \"/v1/{{tin}}\"\n{batch}\
             [operations.list]\npath = \"/v1/{{tin}}\"\npage = {{ items = \"/a\", next_cursor = \"/n\" }}\n{batch}\
             [operations.strict]\npath = \"/v1/{{tin}}\"\nnot_found = \"error\"\n{batch}"
        ));
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:9 ") && f.contains("only for `GET`")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("11:9 ") && f.contains("with `page`")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("15:9 ") && f.contains("`not_found = \"error\"`")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_batch_that_does_not_use_its_key_is_refused() {
        // An explicit key the batch templates never mention.
        let found = problems(&format!(
            "{ACCOUNT}batch = {{ key = \"tin\", path = \"/v1/accounts\", items = \"/a\", match = \"/tin\" }}\n"
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("7:31 ") && found[0].contains("must use its key `{tin}`"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("7:9 ") && found[1].contains("leaves out `{tin}`"),
            "{found:#?}"
        );
        // No placeholder at all.
        let found = problems(&format!(
            "{ACCOUNT}batch = {{ path = \"/v1/accounts\", items = \"/a\", match = \"/tin\" }}\n"
        ));
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:9 ") && f.contains("must use the key placeholder")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_batch_key_must_be_a_placeholder_of_the_single_call() {
        let found = problems(&format!(
            "{ACCOUNT}batch = {{ key = \"ssn\", path = \"/v1/accounts\", query = {{ ssns = \"{{ssn}}\", tins = \"{{tin}}\" }}, items = \"/a\", match = \"/tin\" }}\n"
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found.iter().any(|f| f.starts_with("7:64 ")
                && f.contains("`{ssn}`, which is not a placeholder of the operation")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:17 ")
                    && f.contains("`batch.key` `ssn` is not a placeholder")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_batch_must_ask_what_the_single_call_asks() {
        let single = "[operations.account]\npath = \"/v1/{agency}/taxpayers/{tin}\"\nquery = { year = \"{year}\" }\n";
        // `{agency}` left out; `{year}` (nullable) in the path; two placeholders, no key.
        let found = problems(&format!(
            "{single}batch = {{ path = \"/v1/taxpayers/{{year}}\", query = {{ tins = \"{{tin}}\" }}, items = \"/a\", match = \"/tin\" }}\n"
        ));
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found.iter().any(
                |f| f.starts_with("7:9 ") && f.contains("uses `{year}`, `{tin}`: name the one")
            ),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.starts_with("7:18 ")
                && f.contains("`{year}` is a query placeholder of the single call")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:9 ") && f.contains("leaves out `{agency}`")),
            "{found:#?}"
        );
    }

    #[test]
    fn bad_batch_pointers_paths_and_max_are_reported_at_their_values() {
        let found = problems(&format!(
            "{ACCOUNT}[operations.account.batch]\npath = \"v1/accounts?x=1\"\nquery = {{ tins = \"{{tin}}\" }}\n\
             items = \"accounts\"\nmatch = \"\"\nselect = \"/a~2b\"\nmax = 0\n"
        ));
        assert_eq!(found.len(), 6, "{found:#?}");
        for (at, text) in [
            ("8:8 ", "`batch.path` must start with `/`"),
            ("8:8 ", "must not contain `?` or `#`"),
            (
                "10:9 ",
                "`batch.items` must be a JSON pointer starting with `/`",
            ),
            (
                "11:9 ",
                "`batch.match` must be a JSON pointer to a value inside the item",
            ),
            ("12:10 ", "`~` must be written `~0`"),
            ("13:7 ", "`batch.max` must be between 1 and 1000, not 0"),
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(at) && f.contains(text)),
                "{at}{text}: {found:#?}"
            );
        }
        let found = problems(&format!(
            "{ACCOUNT}batch = {{ path = \"/v1/{{tin\", items = \"/a\", match = \"/tin\", max = 5000 }}\n"
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:23 ") && f.contains("`batch.path`: `{` is never closed")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("7:66 ") && f.contains("not 5000")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_misspelt_batch_key_is_reported_at_its_line() {
        let text = format!(
            "name = \"tax\"\nkind = \"rest\"\nbase_url = \"http://h\"\n{ACCOUNT}[operations.account.batch]\npath = \"/v1/a\"\nitems = \"/a\"\nmatch = \"/tin\"\nmax_keys = 5\n"
        );
        let file = TomlFile::from_text("tax.toml", &text, &Vars::default()).expect("valid toml");
        let error = file.parse::<RestConfig>().expect_err("misspelt");
        let at = error.location.as_ref().expect("located");
        assert_eq!(at.line, 11, "{error}");
        assert!(error.message.contains("unknown key `max_keys`"), "{error}");
    }

    #[test]
    fn list_keys_are_text_without_commas() {
        assert_eq!(list_text(&Value::from("123")), Some("123".to_string()));
        assert_eq!(list_text(&Value::from(42)), Some("42".to_string()));
        for refused in [
            Value::from("a,b"),
            Value::from(""),
            Value::Null,
            serde_json::json!(["a"]),
            serde_json::json!({"a": 1}),
        ] {
            assert_eq!(list_text(&refused), None, "{refused}");
        }
    }

    #[tokio::test]
    async fn a_null_path_placeholder_skips_the_call() {
        let tax = connector("http://127.0.0.1:9");
        let args = Arguments::from([("tin".to_string(), Value::Null)]);
        assert!(matches!(tax.call("account", &args).await, Ok(None)));
    }
}
