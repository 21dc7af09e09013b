//! The `rest` connector: JSON over HTTP with reqwest (rustls, pooled connections).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use super::http_client::{
    MAX_RESPONSE_BYTES, build_client, classify, read_limited, static_headers,
};
use super::{Arguments, CallError, ConnectorSpec, OperationSpec, Template};
use crate::config::{
    Diagnostic, HttpMethod, NotFound, RestAuth, RestConfig, RestOperation, TomlFile,
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
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND && op.not_found == NotFound::Null {
            return Ok(None);
        }
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
        let mut value: Value =
            serde_json::from_slice(&body).map_err(|error| CallError::BadResponse {
                reason: format!("not JSON: {error}"),
            })?;
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
}

fn compile_operation(
    op: &RestOperation,
    file: &TomlFile,
) -> Result<(CompiledOperation, OperationSpec), Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let template_at = |text: &toml::Spanned<String>,
                       what: &str,
                       diagnostics: &mut Vec<Diagnostic>|
     -> Option<Template> {
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
    };
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
    let spec = OperationSpec {
        required: required.clone(),
        optional,
        location: file.location(&op.path.span()),
        page: op.page.clone(),
        description: op.description.clone(),
        batch: None,
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
    };
    Ok((compiled, spec))
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

    #[tokio::test]
    async fn a_null_path_placeholder_skips_the_call() {
        let tax = connector("http://127.0.0.1:9");
        let args = Arguments::from([("tin".to_string(), Value::Null)]);
        assert!(matches!(tax.call("account", &args).await, Ok(None)));
    }
}
