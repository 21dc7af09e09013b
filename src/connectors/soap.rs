//! The `soap` connector: XML envelopes (SOAP 1.1 or 1.2) POSTed over HTTP with reqwest
//! (rustls, pooled connections), answers mapped to JSON by element paths.
//!
//! # Connector file
//!
//! ```toml
//! name = "dmv"
//! kind = "soap"
//! identifier = "license_number"
//! endpoint = "${DMV_URL:-http://127.0.0.1:7102}/dmv/soap"
//! soap_version = "1.1"                      # or "1.2"
//! timeout_ms = 2000
//! namespaces = { dmv = "urn:civicgraph:demo:dmv:v1" }
//! wsdl = "dmv.wsdl"                         # optional, relative to this file
//! ws_security = { username = "${DMV_USER}", password = "${DMV_PASSWORD}", password_type = "digest" }
//!
//! [operations.license]
//! action = "urn:civicgraph:demo:dmv:v1#GetLicense"
//! body = "<dmv:GetLicense><dmv:licenseNumber>{license_number}</dmv:licenseNumber></dmv:GetLicense>"
//! select = "dmv:GetLicenseResponse/dmv:license"
//! lists = ["dmv:restrictions/dmv:restriction"]
//! ```
//!
//! # Requests
//!
//! - SOAP 1.1: `Content-Type: text/xml; charset=utf-8` and `SOAPAction: "<action>"`; SOAP 1.2:
//!   `Content-Type: application/soap+xml; charset=utf-8; action="<action>"`.
//! - The envelope (prefix `soap`) declares every prefix of `namespaces`, so `body` can use them.
//!   `body` is the content of `soap:Body`; each `{placeholder}` is XML-escaped, so a value is
//!   always text and never markup. Every placeholder is required: a null value skips the call
//!   (the field is `null`); a list or object value is `BAD_USER_INPUT`.
//! - `ws_security` adds a WS-Security UsernameToken to `soap:Header`: `text` sends the password,
//!   `digest` sends Base64(SHA-1(nonce + created + password)) with a fresh 16-byte Base64 nonce
//!   and `wsu:Created`. Credentials come from `${VAR}`s and are never logged.
//!
//! # Answers
//!
//! - The envelope may be either SOAP version. A `Fault` in `Body` (with any HTTP status) is
//!   `BACKEND_FAULT` with `extensions.faultCode`; the fault string only reaches the log. The
//!   fault code is SOAP 1.1 `faultcode`, or for SOAP 1.2 the most specific `Subcode/Value`
//!   (else `Code/Value`), because the subcode is the application's own reason. A code whose
//!   prefix resolves to a namespace of `namespaces` is rewritten with that file's prefix, and
//!   one in either envelope namespace as `soap:<local>`, so clients see stable codes whatever
//!   prefixes the backend picks.
//! - Otherwise HTTP 5xx is `BACKEND_UNAVAILABLE`, other non-2xx `BACKEND_BAD_RESPONSE`, and an
//!   answer that is not a SOAP envelope (or unsafe XML, see [`super::xml`]) too.
//! - `select` is an element path (`prefix:local` steps joined by `/`, an unprefixed step names
//!   an element in no namespace) from inside `soap:Body`. Elements match by namespace URI and
//!   local name, never by prefix. When the path leads nowhere the field is `null`; several
//!   matching siblings at its end become a list. The element becomes JSON as described in
//!   [`super::xml::to_json`]: attributes are `@name` keys on elements with children and dropped
//!   on leaves, an empty element is `""`, `xsi:nil="true"` is `null`, and `lists` (paths relative
//!   to `select`) are always arrays, `[]` when absent.
//!
//! # Batches
//!
//! An operation may name the service's list operation, which answers many keys in one
//! envelope; the graph then sends the keys a list of parents asks for in one call
//! ([`super::Connector::call_batch`]) instead of one call each:
//!
//! ```toml
//! [operations.license.batch]
//! action = "urn:civicgraph:demo:dmv:v1#GetLicenses"
//! body = "<dmv:GetLicenses>{each}</dmv:GetLicenses>"
//! each = "<dmv:licenseNumber>{license_number}</dmv:licenseNumber>"
//! items = "dmv:GetLicensesResponse/dmv:license"
//! match = "dmv:number"
//! max = 100
//!
//! [operations.vehicles.batch]                # returns = "many": one wrapper per key
//! action = "urn:civicgraph:demo:dmv:v1#GetVehicleLists"
//! body = "<dmv:GetVehicleLists>{each}</dmv:GetVehicleLists>"
//! each = "<dmv:licenseNumber>{license_number}</dmv:licenseNumber>"
//! items = "dmv:GetVehicleListsResponse/dmv:holder"
//! match = "dmv:licenseNumber"
//! select = "dmv:vehicles/dmv:vehicle"
//! ```
//!
//! - `key` (default: the operation's only placeholder) is the placeholder that varies. `each`
//!   is rendered once per distinct key (duplicates are asked once) and the results replace
//!   `{each}` in `body`; other placeholders must be the operation's own and are the same for
//!   every key.
//! - `items` is an element path from inside `soap:Body`; `match` a path from an item to the
//!   element whose text (trimmed) is the key the item answers, so the service may answer in any
//!   order. Without `select` each item is one element the operation's `select` would have
//!   found (several items with one key make its list, for `returns = "many"`); with `select`,
//!   an item wraps one key's answer and `select` leads from it to those elements. Either way a
//!   key's elements become JSON exactly as the single call's would, with the operation's
//!   `lists` and `returns`, so a key without items answers as a single call that found
//!   nothing: `null`, or `[]` for `returns = "many"`.
//! - Faults, HTTP statuses and unusable answers fail the whole batch with the same codes as a
//!   single call; so does an item without its `match` element, or (for `returns = "one"`) a key
//!   with several items. More than `max` distinct keys are sent in several envelopes.
//!
//! # Check time
//!
//! `body` is rendered with dummy values and parsed, so a malformed template, a placeholder
//! outside text or an attribute value, or an undeclared prefix is reported at its line; so are
//! undeclared prefixes in `select` and `lists`. A batch's `body` must hold `{each}` once and be
//! well-formed with two keys in it, `each` must hold the key, and every placeholder must be one
//! of the operation's. With `wsdl`, each operation and batch is verified against the WSDL as
//! described in [`super::wsdl`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sha1::{Digest as _, Sha1};
use toml::Spanned;

use super::http_client::{build_client, classify, read_limited, static_headers};
use super::xml::{self, Element, Name};
use super::{
    Arguments, BatchSpec, CallError, ConnectorSpec, OperationSpec, RenderError, Reply, Template,
    wsdl,
};
use crate::config::{
    Diagnostic, PasswordType, Returns, Secret, SoapBatch, SoapConfig, SoapOperation, SoapVersion,
    TomlFile,
};

/// The SOAP 1.1 envelope namespace.
pub(crate) const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The SOAP 1.2 envelope namespace.
pub(crate) const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security extensions (`wsse:`).
const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security utility (`wsu:Created`).
const WSU_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// The UsernameToken profile's password types.
const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
/// The encoding of `wsse:Nonce`.
const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// The prefix of the envelope's own elements.
const ENVELOPE_PREFIX: &str = "soap";

/// What stands in for every placeholder when `body` is checked: a space makes a placeholder in
/// an element or attribute name malformed, so only text and attribute values pass.
const DUMMY_VALUE: &str = "x x";

/// Where a batch body takes the repeated part.
const EACH: &str = "{each}";

/// A batch's `max` when the file does not say, and the most it may say.
const DEFAULT_BATCH_MAX: usize = 100;
const MAX_BATCH_MAX: usize = 1_000;

/// Fault codes and strings longer than this are cut: one goes to clients, one to the log.
const MAX_FAULT_CODE_CHARS: usize = 200;
const MAX_FAULT_STRING_CHARS: usize = 2_000;

/// A built SOAP backend: one pooled client, the envelope's fixed parts, compiled operations.
#[derive(Debug)]
pub struct SoapConnector {
    client: reqwest::Client,
    endpoint: String,
    version: SoapVersion,
    timeout: Duration,
    /// `<?xml …?><soap:Envelope xmlns:…>` with every declared namespace.
    envelope_open: String,
    /// Prefix → URI from the file, to name fault codes with the file's prefixes.
    namespaces: Vec<(String, String)>,
    security: Option<UsernameToken>,
    operations: HashMap<String, CompiledOperation>,
}

#[derive(Debug)]
struct CompiledOperation {
    content_type: HeaderValue,
    soap_action: Option<HeaderValue>,
    body: Template,
    placeholders: Vec<String>,
    select: Vec<Name>,
    lists: Vec<Vec<Name>>,
    returns: Returns,
    batch: Option<CompiledBatch>,
}

/// An operation's list operation, compiled.
#[derive(Debug)]
struct CompiledBatch {
    /// The placeholder that varies across one batch.
    key: String,
    /// Renders the key as text, to compare with the items' keys.
    key_text: Template,
    max: usize,
    content_type: HeaderValue,
    soap_action: Option<HeaderValue>,
    /// `body` before `{each}`.
    open: Template,
    /// `body` after `{each}`.
    close: Template,
    each: Template,
    items: Vec<Name>,
    key_path: Vec<Name>,
    /// `None`: each item is one selected element.
    select: Option<Vec<Name>>,
}

/// WS-Security credentials; `Secret` keeps them out of `Debug` output.
#[derive(Debug)]
struct UsernameToken {
    username: Secret,
    password: Secret,
    password_type: PasswordType,
}

impl SoapConnector {
    /// Builds the client and compiles every operation (verifying it against the WSDL when one
    /// is named), collecting every problem with its line.
    pub(crate) fn build(
        config: &SoapConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn super::Connector>, ConnectorSpec), Vec<Diagnostic>> {
        let mut diagnostics = Vec::new();
        let at = |span: std::ops::Range<usize>, message: String| {
            Diagnostic::at(file.location(&span), message)
        };
        let endpoint = config.endpoint.get_ref().clone();
        match reqwest::Url::parse(&endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(url) => diagnostics.push(at(
                config.endpoint.span(),
                format!(
                    "`endpoint` must be an http:// or https:// URL with a host, not `{}:`",
                    url.scheme()
                ),
            )),
            Err(error) => diagnostics.push(at(
                config.endpoint.span(),
                format!("`endpoint` `{endpoint}` is not a URL: {error}"),
            )),
        }
        if config.timeout_ms == 0 {
            diagnostics.push(at(
                config.name.span(),
                "`timeout_ms` must be greater than 0".to_string(),
            ));
        }

        let envelope_ns = envelope_namespace(config.soap_version);
        let mut namespaces = Vec::new();
        let mut declared = BTreeMap::new();
        for (prefix, uri) in &config.namespaces {
            let problem = if !is_ncname(prefix) {
                Some(format!(
                    "namespace prefix `{prefix}` is not a valid XML prefix (letters, digits, `-`, `_`, `.`, not starting with a digit)"
                ))
            } else if prefix.to_ascii_lowercase().starts_with("xml") {
                Some(format!(
                    "namespace prefix `{prefix}` is reserved by XML (prefixes starting with `xml`)"
                ))
            } else if uri.get_ref().trim().is_empty() {
                Some(format!("namespace `{prefix}` needs a non-empty URI"))
            } else if prefix == ENVELOPE_PREFIX && uri.get_ref() != envelope_ns {
                Some(format!(
                    "prefix `{ENVELOPE_PREFIX}` is the envelope's own: for SOAP {} it is `{envelope_ns}`; choose another prefix for `{}`",
                    version_text(config.soap_version),
                    uri.get_ref()
                ))
            } else if uri.get_ref().chars().any(|c| !xml::is_xml_char(c)) {
                Some(format!(
                    "namespace `{prefix}` has a URI with characters XML cannot carry"
                ))
            } else {
                None
            };
            match problem {
                Some(message) => diagnostics.push(at(uri.span(), message)),
                None => {
                    namespaces.push((prefix.clone(), uri.get_ref().clone()));
                    declared.insert(prefix.clone(), uri.get_ref().clone());
                }
            }
        }
        let envelope_open = envelope_open(envelope_ns, &namespaces);

        let headers = static_headers(&config.headers, |message| {
            diagnostics.push(at(config.name.span(), message));
        });
        let security = config.ws_security.as_ref().map(|ws| {
            if [&ws.username, &ws.password]
                .iter()
                .any(|s| s.expose().chars().any(|c| !xml::is_xml_char(c)))
            {
                diagnostics.push(at(
                    config.name.span(),
                    "`ws_security` credentials contain characters XML cannot carry (the values are not shown)"
                        .to_string(),
                ));
            }
            UsernameToken {
                username: ws.username.clone(),
                password: ws.password.clone(),
                password_type: ws.password_type,
            }
        });

        let wsdl = config.wsdl.as_ref().and_then(|path| {
            let base = file.source.path.parent().unwrap_or(Path::new(""));
            match wsdl::Wsdl::load(&base.join(path.get_ref())) {
                Ok(wsdl) => Some(wsdl),
                Err(message) => {
                    diagnostics.push(at(
                        path.span(),
                        format!("`wsdl` `{}`: {message}", path.get_ref()),
                    ));
                    None
                }
            }
        });

        let mut operations = HashMap::new();
        let mut specs = BTreeMap::new();
        for (name, op) in &config.operations {
            let context = OperationContext {
                file,
                version: config.soap_version,
                envelope_open: &envelope_open,
                declared: &declared,
                wsdl: wsdl
                    .as_ref()
                    .zip(config.wsdl.as_ref())
                    .map(|(wsdl, path)| (wsdl, path.get_ref().as_str())),
            };
            match compile_operation(name, op, &context) {
                Ok(compiled) => {
                    let spec = OperationSpec {
                        required: compiled.placeholders.clone(),
                        optional: Vec::new(),
                        location: file.location(&name.span()),
                        page: None,
                        description: op.description.clone(),
                        batch: compiled.batch.as_ref().map(|batch| BatchSpec {
                            key: batch.key.clone(),
                            max: batch.max,
                        }),
                    };
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
            vec![at(
                config.name.span(),
                format!("cannot build the HTTP client: {error}"),
            )]
        })?;
        let spec = ConnectorSpec {
            kind: "soap",
            identifier: None,
            location: file.location(&config.name.span()),
            operations: specs,
        };
        let connector = Self {
            client,
            endpoint,
            version: config.soap_version,
            timeout: Duration::from_millis(config.timeout_ms),
            envelope_open,
            namespaces,
            security,
            operations,
        };
        Ok((Arc::new(connector), spec))
    }

    async fn call_operation(
        &self,
        op: &CompiledOperation,
        args: &Arguments,
    ) -> Result<Option<Value>, CallError> {
        for name in &op.placeholders {
            match args.get(name) {
                None | Some(Value::Null) => return Ok(None),
                Some(value) => check_argument(name, value)?,
            }
        }
        let Some(body) = op.body.render(args, xml::escape)? else {
            return Ok(None);
        };
        let (status, bytes) = self
            .post(&op.content_type, op.soap_action.as_ref(), &body)
            .await?;
        read_answer(
            status,
            &bytes,
            &op.select,
            &op.lists,
            op.returns,
            &self.namespaces,
        )
    }

    /// POSTs `body` in an envelope; the status and the answer's bytes.
    async fn post(
        &self,
        content_type: &HeaderValue,
        soap_action: Option<&HeaderValue>,
        body: &str,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let envelope = self.envelope(body);
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, content_type.clone());
        if let Some(action) = soap_action {
            request = request.header("SOAPAction", action.clone());
        }
        for (name, value) in super::context::outbound_headers() {
            request = request.header(name, value);
        }
        let response = request
            .body(envelope)
            .send()
            .await
            .map_err(|e| classify(e, self.timeout))?;
        let status = response.status();
        match read_limited(response, self.timeout, xml::MAX_XML_BYTES).await {
            Ok(bytes) => Ok((status.as_u16(), bytes)),
            Err(CallError::BadResponse { .. }) if !status.is_success() => {
                Err(status_error(status.as_u16()))
            }
            Err(error) => Err(error),
        }
    }

    /// Answers every entry of `args` through the list operation: each distinct key once, at
    /// most `max` keys per envelope.
    async fn call_list(
        &self,
        op: &CompiledOperation,
        batch: &CompiledBatch,
        args: &[Arguments],
    ) -> Result<Vec<Reply>, CallError> {
        // The key each entry asks for (trimmed, as items are matched), or `None` where the
        // single call would be skipped; and the first entry of each distinct key.
        let mut wanted: Vec<Option<String>> = Vec::with_capacity(args.len());
        let mut distinct: Vec<(String, &Arguments)> = Vec::new();
        for entry in args {
            let mut skipped = false;
            for name in &op.placeholders {
                match entry.get(name) {
                    None | Some(Value::Null) => {
                        skipped = true;
                        break;
                    }
                    Some(value) => check_argument(name, value)?,
                }
            }
            let key = match skipped {
                true => None,
                false => batch
                    .key_text
                    .render(entry, str::to_string)?
                    .map(|key| key.trim().to_string()),
            };
            if let Some(key) = &key
                && !distinct.iter().any(|(seen, _)| seen == key)
            {
                distinct.push((key.clone(), entry));
            }
            wanted.push(key);
        }
        let answers = futures::future::try_join_all(
            distinct
                .chunks(batch.max.max(1))
                .map(|chunk| self.call_chunk(op, batch, chunk)),
        )
        .await?;
        let answers: HashMap<String, Option<Value>> = answers.into_iter().flatten().collect();
        Ok(wanted
            .into_iter()
            .map(|key| Reply {
                value: key.and_then(|key| answers.get(&key).cloned().flatten()),
                as_of: None,
            })
            .collect())
    }

    /// One envelope of the list operation for `keys` (distinct, with an entry asking for each).
    async fn call_chunk(
        &self,
        op: &CompiledOperation,
        batch: &CompiledBatch,
        keys: &[(String, &Arguments)],
    ) -> Result<Vec<(String, Option<Value>)>, CallError> {
        let Some((_, shared)) = keys.first() else {
            return Ok(Vec::new());
        };
        let missing = || CallError::BadResponse {
            reason: "a placeholder of the batch body has no value".to_string(),
        };
        let mut body = batch
            .open
            .render(shared, xml::escape)?
            .ok_or_else(missing)?;
        for (_, entry) in keys {
            body.push_str(&batch.each.render(entry, xml::escape)?.ok_or_else(missing)?);
        }
        body.push_str(
            &batch
                .close
                .render(shared, xml::escape)?
                .ok_or_else(missing)?,
        );
        let (status, bytes) = self
            .post(&batch.content_type, batch.soap_action.as_ref(), &body)
            .await?;
        let root = read_envelope(status, &bytes, &self.namespaces)?;
        let body = envelope_body(&root).ok_or_else(|| CallError::BadResponse {
            reason: "not a SOAP envelope with a Body".to_string(),
        })?;
        let mut found: HashMap<String, Vec<&Element>> = HashMap::new();
        for item in xml::select(body, &batch.items) {
            let key = xml::select(item, &batch.key_path)
                .first()
                .map(|element| element.text().trim().to_string())
                .ok_or_else(|| CallError::BadResponse {
                    reason: "an item of the list operation's answer has no `match` element"
                        .to_string(),
                })?;
            let elements = match &batch.select {
                Some(select) => xml::select(item, select),
                None => vec![item],
            };
            found.entry(key).or_default().extend(elements);
        }
        keys.iter()
            .map(|(key, _)| {
                let elements = found.get(key).map_or(&[][..], Vec::as_slice);
                Ok((key.clone(), answer_of(elements, &op.lists, op.returns)?))
            })
            .collect()
    }

    /// The whole envelope around a rendered body, with a fresh security header if configured.
    fn envelope(&self, body: &str) -> String {
        let mut out = String::with_capacity(self.envelope_open.len() + body.len() + 1024);
        out.push_str(&self.envelope_open);
        if let Some(token) = &self.security {
            let mut nonce = [0u8; 16];
            nonce.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            let created = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            out.push_str(&format!("<{ENVELOPE_PREFIX}:Header>"));
            token.write(&mut out, self.version, &nonce, &created);
            out.push_str(&format!("</{ENVELOPE_PREFIX}:Header>"));
        }
        out.push_str(&format!("<{ENVELOPE_PREFIX}:Body>"));
        out.push_str(body);
        out.push_str(&format!(
            "</{ENVELOPE_PREFIX}:Body></{ENVELOPE_PREFIX}:Envelope>"
        ));
        out
    }
}

impl super::Connector for SoapConnector {
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
            let Some(batch) = &op.batch else {
                return futures::future::try_join_all(
                    args.iter()
                        .map(|args| super::Connector::call_with_freshness(self, operation, args)),
                )
                .await;
            };
            tokio::time::timeout(self.timeout, self.call_list(op, batch, args))
                .await
                .unwrap_or(Err(CallError::Timeout {
                    timeout_ms: self.timeout.as_millis() as u64,
                }))
        })
    }
}

impl UsernameToken {
    /// Writes `wsse:Security` with the UsernameToken; `nonce` and `created` are the caller's so
    /// tests can pin them.
    fn write(&self, out: &mut String, version: SoapVersion, nonce: &[u8], created: &str) {
        let must_understand = match version {
            SoapVersion::V11 => "1",
            SoapVersion::V12 => "true",
        };
        out.push_str(&format!(
            "<wsse:Security xmlns:wsse=\"{WSSE_NS}\" xmlns:wsu=\"{WSU_NS}\" {ENVELOPE_PREFIX}:mustUnderstand=\"{must_understand}\"><wsse:UsernameToken><wsse:Username>{}</wsse:Username>",
            xml::escape(self.username.expose())
        ));
        match self.password_type {
            PasswordType::Text => out.push_str(&format!(
                "<wsse:Password Type=\"{PASSWORD_TEXT}\">{}</wsse:Password>",
                xml::escape(self.password.expose())
            )),
            PasswordType::Digest => {
                let digest = password_digest(nonce, created, self.password.expose());
                let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
                out.push_str(&format!(
                    "<wsse:Password Type=\"{PASSWORD_DIGEST}\">{digest}</wsse:Password><wsse:Nonce EncodingType=\"{BASE64_BINARY}\">{nonce}</wsse:Nonce>"
                ));
            }
        }
        out.push_str(&format!(
            "<wsu:Created>{}</wsu:Created></wsse:UsernameToken></wsse:Security>",
            xml::escape(created)
        ));
    }
}

/// The UsernameToken profile's PasswordDigest: Base64(SHA-1(nonce + created + password)).
pub(crate) fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(nonce);
    hasher.update(created.as_bytes());
    hasher.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// Refuses what cannot become XML text: lists, objects, and text with characters XML 1.0
/// cannot carry at all (even as references).
fn check_argument(name: &str, value: &Value) -> Result<(), RenderError> {
    let found = match value {
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::String(s) if s.chars().any(|c| !xml::is_xml_char(c)) => {
            "text with control characters XML cannot carry"
        }
        _ => return Ok(()),
    };
    Err(RenderError {
        name: name.to_string(),
        found,
    })
}

/// Turns a backend's answer into the selected JSON, a fault, or the reason it is unusable.
pub(crate) fn read_answer(
    status: u16,
    bytes: &[u8],
    select: &[Name],
    lists: &[Vec<Name>],
    returns: Returns,
    namespaces: &[(String, String)],
) -> Result<Option<Value>, CallError> {
    let root = read_envelope(status, bytes, namespaces)?;
    let body = envelope_body(&root).ok_or_else(|| CallError::BadResponse {
        reason: "not a SOAP envelope with a Body".to_string(),
    })?;
    answer_of(&xml::select(body, select), lists, returns)
}

/// A successful answer's envelope (with a `Body` and no fault); otherwise the fault, or why it
/// is unusable.
fn read_envelope(
    status: u16,
    bytes: &[u8],
    namespaces: &[(String, String)],
) -> Result<Element, CallError> {
    let parsed = xml::parse(bytes);
    let success = (200..300).contains(&status);
    if !success {
        if let Ok(root) = &parsed
            && let Some(body) = envelope_body(root)
            && let Some(fault) = fault(body, namespaces)
        {
            return Err(fault);
        }
        return Err(status_error(status));
    }
    let root = parsed.map_err(|error| CallError::BadResponse {
        reason: format!("not usable XML: {error}"),
    })?;
    let body = envelope_body(&root).ok_or_else(|| CallError::BadResponse {
        reason: "not a SOAP envelope with a Body".to_string(),
    })?;
    if let Some(fault) = fault(body, namespaces) {
        return Err(fault);
    }
    Ok(root)
}

/// The operation's answer from the elements its `select` found: a list for `many`; for `one`
/// the element, or `None` when there is none (or it is nil).
fn answer_of(
    selected: &[&Element],
    lists: &[Vec<Name>],
    returns: Returns,
) -> Result<Option<Value>, CallError> {
    if returns == Returns::Many {
        let items = selected.iter().map(|e| xml::to_json(e, lists)).collect();
        return Ok(Some(Value::Array(items)));
    }
    let value = match selected {
        [] => return Ok(None),
        [one] => xml::to_json(one, lists),
        _ => {
            return Err(CallError::BadResponse {
                reason: format!(
                    "`select` matched {} elements; set `returns = \"many\"` for a list",
                    selected.len()
                ),
            });
        }
    };
    Ok((!value.is_null()).then_some(value))
}

fn status_error(status: u16) -> CallError {
    if status >= 500 {
        CallError::ServerError { status }
    } else {
        CallError::Rejected { status }
    }
}

/// `Body` of a SOAP 1.1 or 1.2 envelope (in the envelope's own namespace).
fn envelope_body(root: &Element) -> Option<&Element> {
    let namespace = [SOAP11_NS, SOAP12_NS]
        .into_iter()
        .find(|ns| root.name.is(ns, "Envelope"))?;
    root.child(&Name::new(Some(namespace), "Body"))
}

/// The `Fault` in a Body, as a [`CallError::Fault`].
fn fault(body: &Element, namespaces: &[(String, String)]) -> Option<CallError> {
    let fault = body
        .elements()
        .find(|e| e.name.is(SOAP11_NS, "Fault") || e.name.is(SOAP12_NS, "Fault"))?;
    let (code, text) = if let Some(mut code) = fault.child_local("Code") {
        // SOAP 1.2: the most specific subcode names the application's reason.
        let mut value = code.child_local("Value");
        while let Some(subcode) = code.child_local("Subcode") {
            if let Some(sub_value) = subcode.child_local("Value") {
                value = Some(sub_value);
            }
            code = subcode;
        }
        let reason = fault
            .child_local("Reason")
            .and_then(|r| r.child_local("Text"))
            .map(Element::text);
        (value, reason)
    } else {
        (
            fault.child_local("faultcode"),
            fault.child_local("faultstring").map(Element::text),
        )
    };
    let fault_code = code
        .map(|element| fault_code(element, namespaces))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    Some(CallError::Fault {
        fault_code: truncate(&fault_code, MAX_FAULT_CODE_CHARS),
        fault_string: truncate(text.as_deref().unwrap_or("").trim(), MAX_FAULT_STRING_CHARS),
    })
}

/// A fault code QName with stable prefixes: the file's prefix for a namespace it declares,
/// `soap:` for either envelope namespace, otherwise as sent.
fn fault_code(element: &Element, namespaces: &[(String, String)]) -> String {
    let text = element.text();
    let text = text.trim();
    let Some(Name {
        namespace: Some(namespace),
        local,
    }) = element.resolve_qname(text)
    else {
        return text.to_string();
    };
    if namespace == SOAP11_NS || namespace == SOAP12_NS {
        return format!("{ENVELOPE_PREFIX}:{local}");
    }
    match namespaces.iter().find(|(_, uri)| *uri == namespace) {
        Some((prefix, _)) => format!("{prefix}:{local}"),
        None => text.to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn envelope_namespace(version: SoapVersion) -> &'static str {
    match version {
        SoapVersion::V11 => SOAP11_NS,
        SoapVersion::V12 => SOAP12_NS,
    }
}

fn version_text(version: SoapVersion) -> &'static str {
    match version {
        SoapVersion::V11 => "1.1",
        SoapVersion::V12 => "1.2",
    }
}

/// The XML declaration and the envelope's start tag declaring every namespace.
fn envelope_open(envelope_ns: &str, namespaces: &[(String, String)]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><{ENVELOPE_PREFIX}:Envelope xmlns:{ENVELOPE_PREFIX}=\"{envelope_ns}\""
    );
    for (prefix, uri) in namespaces {
        if prefix != ENVELOPE_PREFIX {
            out.push_str(&format!(" xmlns:{prefix}=\"{}\"", xml::escape(uri)));
        }
    }
    out.push('>');
    out
}

/// An XML name without a colon (a prefix or a local name).
fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c == '-' || c == '.' || c.is_alphanumeric())
}

/// What compiling one operation needs from the connector around it.
struct OperationContext<'a> {
    file: &'a TomlFile,
    version: SoapVersion,
    envelope_open: &'a str,
    declared: &'a BTreeMap<String, String>,
    wsdl: Option<(&'a wsdl::Wsdl, &'a str)>,
}

fn compile_operation(
    name: &Spanned<String>,
    op: &SoapOperation,
    context: &OperationContext<'_>,
) -> Result<CompiledOperation, Vec<Diagnostic>> {
    let file = context.file;
    let mut diagnostics = Vec::new();
    let at = |span: std::ops::Range<usize>, message: String| {
        Diagnostic::at(file.location(&span), message)
    };
    let operation = name.get_ref();

    let action = op.action.as_deref();
    let (content_type, soap_action) = match action {
        Some(action) if !is_header_safe(action) => {
            diagnostics.push(at(
                name.span(),
                format!(
                    "operation `{operation}`: `action` must be a non-empty URI of visible ASCII characters without `\"` or `\\`"
                ),
            ));
            (HeaderValue::from_static("text/xml"), None)
        }
        _ => headers_for(context.version, action),
    };

    let body = match Template::parse(op.body.get_ref()) {
        Ok(template) => Some(template),
        Err((offset, message)) => {
            let mut span = op.body.span();
            // +1 skips the opening quote of the TOML string.
            span.start += offset + 1;
            diagnostics.push(at(
                span,
                format!("operation `{operation}`: `body`: {message}"),
            ));
            None
        }
    };
    let mut body_root = None;
    if let Some(template) = &body {
        match check_body(template, context.envelope_open) {
            Ok(root) => body_root = root,
            Err(message) => diagnostics.push(at(
                op.body.span(),
                format!("operation `{operation}`: `body` {message}"),
            )),
        }
    }

    let select = match parse_path(op.select.get_ref(), context.declared) {
        Ok(path) => Some(path),
        Err(message) => {
            diagnostics.push(at(
                op.select.span(),
                format!("operation `{operation}`: `select` {message}"),
            ));
            None
        }
    };
    let mut lists = Vec::new();
    for list in &op.lists {
        match parse_path(list.get_ref(), context.declared) {
            Ok(path) => lists.push(path),
            Err(message) => diagnostics.push(at(
                list.span(),
                format!("operation `{operation}`: `lists` entry {message}"),
            )),
        }
    }
    let (Some(body), Some(select), true) = (body, select, diagnostics.is_empty()) else {
        return Err(diagnostics);
    };

    if let Some((wsdl, wsdl_path)) = context.wsdl {
        let names = |name: &Name| display_name(name, context.declared);
        let check = wsdl::OperationCheck {
            name: operation,
            action,
            body_root: body_root.as_ref(),
            select: &select,
            lists: &lists,
        };
        for problem in wsdl.verify(&check, &names) {
            let span = match problem.target {
                wsdl::Target::Operation => name.span(),
                wsdl::Target::Body => op.body.span(),
                wsdl::Target::Select => op.select.span(),
                wsdl::Target::List(i) => op.lists.get(i).map_or(name.span(), Spanned::span),
                wsdl::Target::Items | wsdl::Target::Match => name.span(),
            };
            diagnostics.push(at(
                span,
                format!(
                    "operation `{operation}` does not match `{wsdl_path}`: {}",
                    problem.message
                ),
            ));
        }
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }
    }

    let placeholders: Vec<String> = body.placeholders().into_iter().map(String::from).collect();
    let batch = match &op.batch {
        Some(batch) => Some(compile_batch(name, batch, &placeholders, &lists, context)?),
        None => None,
    };
    Ok(CompiledOperation {
        content_type,
        soap_action,
        body,
        placeholders,
        select,
        lists,
        returns: op.returns,
        batch,
    })
}

/// Whether an action can go into a header as it is.
fn is_header_safe(action: &str) -> bool {
    !action.is_empty()
        && action
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

/// Compiles `[operations.<name>.batch]` against the operation's placeholders and `lists`,
/// reporting every problem at its line.
fn compile_batch(
    name: &Spanned<String>,
    spanned: &Spanned<SoapBatch>,
    placeholders: &[String],
    lists: &[Vec<Name>],
    context: &OperationContext<'_>,
) -> Result<CompiledBatch, Vec<Diagnostic>> {
    let file = context.file;
    let batch = spanned.get_ref();
    let operation = name.get_ref();
    let mut diagnostics = Vec::new();
    let at = |span: std::ops::Range<usize>, message: String| {
        Diagnostic::at(
            file.location(&span),
            format!("operation `{operation}`: `batch`: {message}"),
        )
    };
    // A template of `text`, found `offset` bytes into the TOML string at `span` (whose
    // content starts after its opening quote).
    let parse = |text: &str, span: std::ops::Range<usize>, offset: usize, what: &str| {
        Template::parse(text).map_err(|(position, message)| {
            let start = span.start + 1 + offset + position;
            at(start..start + 1, format!("`{what}`: {message}"))
        })
    };
    let path = |text: &Spanned<String>, what: &str| {
        parse_path(text.get_ref(), context.declared)
            .map_err(|message| at(text.span(), format!("`{what}` {message}")))
    };

    let key = keep(
        &mut diagnostics,
        match (&batch.key, placeholders) {
            (Some(key), _) if placeholders.contains(key.get_ref()) => Ok(key.get_ref().clone()),
            (Some(key), _) => Err(at(
                key.span(),
                format!(
                    "`key` `{}` is not a placeholder of the operation's `body` (it has {})",
                    key.get_ref(),
                    placeholder_list(placeholders)
                ),
            )),
            (None, [only]) => Ok(only.clone()),
            (None, _) => Err(at(
                spanned.span(),
                format!(
                    "say which placeholder varies with `key`: the operation's `body` has {}",
                    placeholder_list(placeholders)
                ),
            )),
        },
    );

    let action = batch.action.as_ref().map(|a| a.get_ref().as_str());
    let headers = keep(
        &mut diagnostics,
        match &batch.action {
            Some(action) if !is_header_safe(action.get_ref()) => Err(at(
                action.span(),
                "`action` must be a non-empty URI of visible ASCII characters without `\"` or `\\`"
                    .to_string(),
            )),
            _ => Ok(headers_for(context.version, action)),
        },
    );

    let body_text = batch.body.get_ref();
    let (open, close) = match body_text.find(EACH) {
        Some(split) if body_text.matches(EACH).count() == 1 => {
            let after = split + EACH.len();
            (
                keep(
                    &mut diagnostics,
                    parse(&body_text[..split], batch.body.span(), 0, "body"),
                ),
                keep(
                    &mut diagnostics,
                    parse(&body_text[after..], batch.body.span(), after, "body"),
                ),
            )
        }
        _ => {
            keep::<()>(
                &mut diagnostics,
                Err(at(
                    batch.body.span(),
                    format!(
                        "`body` must hold `{EACH}` exactly once, where the part repeated per key goes; it holds it {} times",
                        body_text.matches(EACH).count()
                    ),
                )),
            );
            (None, None)
        }
    };
    let each = keep(
        &mut diagnostics,
        parse(batch.each.get_ref(), batch.each.span(), 0, "each"),
    );
    let items = keep(&mut diagnostics, path(&batch.items, "items"));
    let key_path = keep(&mut diagnostics, path(&batch.key_element, "match"));
    let select = match &batch.select {
        Some(select) => keep(&mut diagnostics, path(select, "select")).map(Some),
        None => Some(None),
    };
    let max = keep(
        &mut diagnostics,
        match &batch.max {
            None => Ok(DEFAULT_BATCH_MAX),
            Some(max) if (1..=MAX_BATCH_MAX).contains(max.get_ref()) => Ok(*max.get_ref()),
            Some(max) => Err(at(
                max.span(),
                format!(
                    "`max` is {}; it must be 1 to {MAX_BATCH_MAX} keys per envelope",
                    max.get_ref()
                ),
            )),
        },
    );

    let mut body_root = None;
    if let (Some(open), Some(close), Some(each), Some(key)) = (&open, &close, &each, &key) {
        for (template, span, what) in [
            (open, batch.body.span(), "body"),
            (close, batch.body.span(), "body"),
            (each, batch.each.span(), "each"),
        ] {
            let unknown: Vec<String> = template
                .placeholders()
                .into_iter()
                .filter(|p| !placeholders.iter().any(|known| known == p))
                .map(String::from)
                .collect();
            if !unknown.is_empty() {
                keep::<()>(
                    &mut diagnostics,
                    Err(at(
                        span,
                        format!(
                            "`{what}` uses {}, which the operation's `body` does not have (it has {}): a batch gets only the operation's arguments",
                            placeholder_list(&unknown),
                            placeholder_list(placeholders)
                        ),
                    )),
                );
            }
        }
        if !each.placeholders().contains(&key.as_str()) {
            keep::<()>(
                &mut diagnostics,
                Err(at(
                    batch.each.span(),
                    format!(
                        "`each` must hold the key `{{{key}}}`: it is the part repeated per key"
                    ),
                )),
            );
        }
        if open.placeholders().contains(&key.as_str())
            || close.placeholders().contains(&key.as_str())
        {
            keep::<()>(
                &mut diagnostics,
                Err(at(
                    batch.body.span(),
                    format!(
                        "`body` holds the key `{{{key}}}` outside `{EACH}`; the key goes in `each`, which is repeated per key"
                    ),
                )),
            );
        }
        let rendered = [open, each, each, close]
            .into_iter()
            .map(render_dummies)
            .collect::<Result<String, String>>();
        match rendered.and_then(|body| check_rendered(&body, context.envelope_open)) {
            Ok(root) => body_root = root,
            Err(message) => {
                keep::<()>(
                    &mut diagnostics,
                    Err(at(
                        batch.body.span(),
                        format!("`body` with two keys in `{EACH}` {message}"),
                    )),
                );
            }
        }
    }

    let (
        Some(key),
        Some((content_type, soap_action)),
        Some(open),
        Some(close),
        Some(each),
        Some(items),
        Some(key_path),
        Some(select),
        Some(max),
        true,
    ) = (
        key,
        headers,
        open,
        close,
        each,
        items,
        key_path,
        select,
        max,
        diagnostics.is_empty(),
    )
    else {
        return Err(diagnostics);
    };

    if let Some((wsdl, wsdl_path)) = context.wsdl {
        let names = |name: &Name| display_name(name, context.declared);
        let check = wsdl::BatchCheck {
            name: operation,
            action,
            body_root: body_root.as_ref(),
            items: &items,
            key: &key_path,
            select: select.as_deref().unwrap_or(&[]),
            lists,
        };
        let problems: Vec<Diagnostic> = wsdl
            .verify_batch(&check, &names)
            .into_iter()
            .map(|problem| {
                let span = match problem.target {
                    wsdl::Target::Operation => {
                        batch.action.as_ref().map_or(spanned.span(), Spanned::span)
                    }
                    wsdl::Target::Body => batch.body.span(),
                    wsdl::Target::Items => batch.items.span(),
                    wsdl::Target::Match => batch.key_element.span(),
                    // The operation's `lists` hold for its own `select`, so a list the
                    // batch's item does not have is the batch `select`'s (or `items`') doing.
                    wsdl::Target::Select | wsdl::Target::List(_) => batch
                        .select
                        .as_ref()
                        .map_or(batch.items.span(), Spanned::span),
                };
                at(
                    span,
                    format!("does not match `{wsdl_path}`: {}", problem.message),
                )
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
    }

    let key_text = Template::parse(&format!("{{{key}}}"))
        .map_err(|(_, message)| vec![at(spanned.span(), message)])?;
    Ok(CompiledBatch {
        key,
        key_text,
        max,
        content_type,
        soap_action,
        open,
        close,
        each,
        items,
        key_path,
        select,
    })
}

/// The value of `result`, or `None` with its diagnostic kept.
fn keep<T>(diagnostics: &mut Vec<Diagnostic>, result: Result<T, Diagnostic>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            None
        }
    }
}

/// `` `{a}`, `{b}` ``, or "none".
fn placeholder_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{{{n}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `Content-Type` and (SOAP 1.1) `SOAPAction` values for an action already checked to be
/// header-safe.
fn headers_for(version: SoapVersion, action: Option<&str>) -> (HeaderValue, Option<HeaderValue>) {
    let value = |text: String| {
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("text/xml"))
    };
    match version {
        SoapVersion::V11 => (
            HeaderValue::from_static("text/xml; charset=utf-8"),
            Some(value(format!("\"{}\"", action.unwrap_or("")))),
        ),
        SoapVersion::V12 => (
            match action {
                Some(action) => value(format!(
                    "application/soap+xml; charset=utf-8; action=\"{action}\""
                )),
                None => HeaderValue::from_static("application/soap+xml; charset=utf-8"),
            },
            None,
        ),
    }
}

/// Renders `body` with dummy values inside the envelope and parses it; returns the name of
/// the body's first element (for the WSDL check) or a message saying what is wrong.
fn check_body(template: &Template, envelope_open: &str) -> Result<Option<Name>, String> {
    check_rendered(&render_dummies(template)?, envelope_open)
}

/// `template` with every placeholder filled with [`DUMMY_VALUE`].
fn render_dummies(template: &Template) -> Result<String, String> {
    let dummies: Arguments = template
        .placeholders()
        .into_iter()
        .map(|name| (name.to_string(), Value::from(DUMMY_VALUE)))
        .collect();
    Ok(template
        .render(&dummies, str::to_string)
        .map_err(|e| e.to_string())?
        .unwrap_or_default())
}

/// Parses a rendered body inside the envelope; see [`check_body`].
fn check_rendered(rendered: &str, envelope_open: &str) -> Result<Option<Name>, String> {
    let document = format!(
        "{envelope_open}<{ENVELOPE_PREFIX}:Body>{rendered}</{ENVELOPE_PREFIX}:Body></{ENVELOPE_PREFIX}:Envelope>"
    );
    let root = xml::parse(document.as_bytes()).map_err(|error| match error {
        xml::ParseXmlError::UndeclaredPrefix(prefix) => format!(
            "uses prefix `{prefix}:`, which `namespaces` does not declare"
        ),
        error => format!(
            "is not well-formed XML once its placeholders are filled ({{placeholders}} may only stand in text or attribute values): {error}"
        ),
    })?;
    let body = envelope_body(&root)
        .ok_or_else(|| format!("closes the envelope's `{ENVELOPE_PREFIX}:Body` early"))?;
    if root.elements().count() != 1 || !body.text().trim().is_empty() {
        return Err(
            "must be elements only: text outside an element, or markup that closes `soap:Body`, is not allowed"
                .to_string(),
        );
    }
    Ok(body.elements().next().map(|e| e.name.clone()))
}

/// Parses `prefix:local/prefix:local` into names, with prefixes from `namespaces`.
fn parse_path(text: &str, declared: &BTreeMap<String, String>) -> Result<Vec<Name>, String> {
    if text.trim().is_empty() {
        return Err("must name at least one element, e.g. `dmv:GetLicenseResponse`".to_string());
    }
    text.split('/')
        .map(|step| {
            let (prefix, local) = match step.split_once(':') {
                Some((prefix, local)) => (Some(prefix), local),
                None => (None, step),
            };
            if !is_ncname(local) || prefix.is_some_and(|p| !is_ncname(p)) {
                return Err(format!(
                    "`{text}`: step `{step}` is not `prefix:name` (steps are joined by `/`)"
                ));
            }
            match prefix {
                None => Ok(Name::new(None, local)),
                Some(prefix) => match declared.get(prefix) {
                    Some(uri) => Ok(Name::new(Some(uri), local)),
                    None => Err(format!(
                        "`{text}`: prefix `{prefix}:` in step `{step}` is not declared in `namespaces`{}",
                        if declared.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (declared: {})",
                                declared
                                    .keys()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    )),
                },
            }
        })
        .collect()
}

/// A name as the connector file would write it: its prefix when the namespace is declared,
/// `{uri}local` otherwise.
fn display_name(name: &Name, declared: &BTreeMap<String, String>) -> String {
    match &name.namespace {
        None => name.local.clone(),
        Some(uri) => match declared.iter().find(|(_, u)| *u == uri) {
            Some((prefix, _)) => format!("{prefix}:{}", name.local),
            None => format!("{{{uri}}}{}", name.local),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use crate::error::ErrorCode;
    use serde_json::json;

    const DMV: &str = "urn:civicgraph:demo:dmv:v1";

    fn config_text(extra: &str, operation: &str) -> String {
        format!(
            "name = \"dmv\"\nkind = \"soap\"\nendpoint = \"http://127.0.0.1:9/dmv/soap\"\n\
             namespaces = {{ dmv = \"{DMV}\" }}\n{extra}\n[operations.license]\n{operation}"
        )
    }

    const LICENSE: &str = "action = \"urn:civicgraph:demo:dmv:v1#GetLicense\"\n\
        body = \"<dmv:GetLicense><dmv:licenseNumber>{license_number}</dmv:licenseNumber></dmv:GetLicense>\"\n\
        select = \"dmv:GetLicenseResponse/dmv:license\"\n\
        lists = [\"dmv:restrictions/dmv:restriction\"]\n";

    fn build(text: &str) -> Result<(Arc<dyn super::super::Connector>, ConnectorSpec), Vec<String>> {
        let file = TomlFile::from_text("dmv.toml", text, &Vars::default()).expect("valid toml");
        let config: SoapConfig = file.parse().expect("valid connector");
        SoapConnector::build(&config, &file)
            .map_err(|ds| ds.iter().map(ToString::to_string).collect())
    }

    fn errors(text: &str) -> Vec<String> {
        match build(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(errors) => errors,
        }
    }

    fn namespaces() -> Vec<(String, String)> {
        vec![("dmv".to_string(), DMV.to_string())]
    }

    fn answer(status: u16, body: &str) -> Result<Option<Value>, CallError> {
        let select = vec![
            Name::new(Some(DMV), "GetLicenseResponse"),
            Name::new(Some(DMV), "license"),
        ];
        let lists = vec![vec![
            Name::new(Some(DMV), "restrictions"),
            Name::new(Some(DMV), "restriction"),
        ]];
        read_answer(
            status,
            body.as_bytes(),
            &select,
            &lists,
            Returns::One,
            &namespaces(),
        )
    }

    #[test]
    fn the_demo_shape_builds_with_every_placeholder_required() {
        let (_, spec) = build(&config_text("", LICENSE)).expect("builds");
        let op = &spec.operations["license"];
        assert_eq!(
            (op.required.clone(), op.optional.len(), spec.kind),
            (vec!["license_number".to_string()], 0, "soap")
        );
        assert_eq!(op.location.line, 6);
    }

    #[test]
    fn reads_a_response_with_other_prefixes_and_a_default_namespace() {
        let body = format!(
            "<S:Envelope xmlns:S=\"{SOAP11_NS}\"><S:Body><GetLicenseResponse xmlns=\"{DMV}\">\
             <license><number>D1</number><restrictions><restriction>LENSES</restriction></restrictions></license>\
             </GetLicenseResponse></S:Body></S:Envelope>"
        );
        assert_eq!(
            answer(200, &body).expect("an answer"),
            Some(json!({"number": "D1", "restrictions": {"restriction": ["LENSES"]}}))
        );
    }

    #[test]
    fn returns_many_always_gives_a_list_and_one_refuses_several() {
        let select = vec![
            Name::new(Some(DMV), "GetVehiclesResponse"),
            Name::new(Some(DMV), "vehicle"),
        ];
        let envelope = |vehicles: &str| {
            format!(
                "<e:Envelope xmlns:e=\"{SOAP11_NS}\"><e:Body><d:GetVehiclesResponse xmlns:d=\"{DMV}\">\
                 {vehicles}</d:GetVehiclesResponse></e:Body></e:Envelope>"
            )
        };
        let read = |body: &str, returns| {
            read_answer(200, body.as_bytes(), &select, &[], returns, &namespaces())
        };
        let one = "<d:vehicle><d:vin>V1</d:vin></d:vehicle>";
        let two = format!("{one}<d:vehicle><d:vin>V2</d:vin></d:vehicle>");
        assert_eq!(read(&envelope(""), Returns::Many).unwrap(), Some(json!([])));
        assert_eq!(
            read(&envelope(one), Returns::Many).unwrap(),
            Some(json!([{"vin": "V1"}]))
        );
        assert_eq!(
            read(&envelope(&two), Returns::Many).unwrap(),
            Some(json!([{"vin": "V1"}, {"vin": "V2"}]))
        );
        assert_eq!(
            read(&envelope(one), Returns::One).unwrap(),
            Some(json!({"vin": "V1"}))
        );
        assert!(matches!(
            read(&envelope(&two), Returns::One),
            Err(CallError::BadResponse { .. })
        ));
    }

    #[test]
    fn an_absent_or_nil_selection_is_none() {
        let absent =
            format!("<e:Envelope xmlns:e=\"{SOAP12_NS}\"><e:Body><x/></e:Body></e:Envelope>");
        assert!(matches!(answer(200, &absent), Ok(None)));
        let nil = format!(
            "<e:Envelope xmlns:e=\"{SOAP12_NS}\"><e:Body><d:GetLicenseResponse xmlns:d=\"{DMV}\">\
             <d:license xmlns:i=\"{}\" i:nil=\"true\"/></d:GetLicenseResponse></e:Body></e:Envelope>",
            xml::XSI_NS
        );
        assert!(matches!(answer(200, &nil), Ok(None)));
    }

    #[test]
    fn reads_soap_11_faults_with_stable_prefixes() {
        let body = format!(
            "<s:Envelope xmlns:s=\"{SOAP11_NS}\"><s:Body><s:Fault xmlns:a=\"{DMV}\">\
             <faultcode>a:LicenseNotFound</faultcode><faultstring>No licence for D123</faultstring>\
             </s:Fault></s:Body></s:Envelope>"
        );
        match answer(500, &body) {
            Err(CallError::Fault {
                fault_code,
                fault_string,
            }) => assert_eq!(
                (fault_code.as_str(), fault_string.as_str()),
                ("dmv:LicenseNotFound", "No licence for D123")
            ),
            other => panic!("not a fault: {other:?}"),
        }
        let client = format!(
            "<x:Envelope xmlns:x=\"{SOAP11_NS}\"><x:Body><x:Fault><faultcode>x:Client</faultcode>\
             <faultstring>bad</faultstring></x:Fault></x:Body></x:Envelope>"
        );
        assert!(matches!(
            answer(200, &client),
            Err(CallError::Fault { fault_code, .. }) if fault_code == "soap:Client"
        ));
    }

    #[test]
    fn reads_soap_12_faults_taking_the_most_specific_subcode() {
        let fault = |code: &str| {
            format!(
                "<env:Envelope xmlns:env=\"{SOAP12_NS}\" xmlns:d=\"{DMV}\"><env:Body><env:Fault>\
                 <env:Code>{code}</env:Code>\
                 <env:Reason><env:Text xml:lang=\"en\">No licence for D123</env:Text></env:Reason>\
                 </env:Fault></env:Body></env:Envelope>"
            )
        };
        let nested = fault(
            "<env:Value>env:Sender</env:Value><env:Subcode><env:Value>d:Lookup</env:Value>\
             <env:Subcode><env:Value>d:LicenseNotFound</env:Value></env:Subcode></env:Subcode>",
        );
        let plain = fault("<env:Value>env:Receiver</env:Value>");
        for (body, expected) in [(nested, "dmv:LicenseNotFound"), (plain, "soap:Receiver")] {
            match answer(400, &body) {
                Err(CallError::Fault {
                    fault_code,
                    fault_string,
                }) => assert_eq!(
                    (fault_code.as_str(), fault_string.as_str()),
                    (expected, "No licence for D123")
                ),
                other => panic!("not a fault: {other:?}"),
            }
        }
    }

    #[test]
    fn sorts_unusable_answers_by_status_and_content() {
        let codes: Vec<ErrorCode> = [
            (500, "<html>down</html>"),
            (503, ""),
            (400, "nope"),
            (200, "not xml"),
            (200, "<a/>"),
            (
                200,
                "<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><x>&xxe;</x>",
            ),
        ]
        .into_iter()
        .map(|(status, body)| answer(status, body).expect_err("unusable").code())
        .collect();
        assert_eq!(
            codes,
            [
                ErrorCode::BackendUnavailable,
                ErrorCode::BackendUnavailable,
                ErrorCode::BackendBadResponse,
                ErrorCode::BackendBadResponse,
                ErrorCode::BackendBadResponse,
                ErrorCode::BackendBadResponse,
            ]
        );
        let dtd = answer(200, "<!DOCTYPE x><x/>").expect_err("refused");
        assert!(dtd.to_string().contains("DTDs are not accepted"), "{dtd}");
    }

    #[test]
    fn the_password_digest_follows_the_username_token_profile() {
        // Base64(SHA-1(nonce + created + password)), computed independently with
        // `printf 'nonce2024-01-01T00:00:00Zsecret' | openssl sha1 -binary | base64`.
        assert_eq!(
            password_digest(b"nonce", "2024-01-01T00:00:00Z", "secret"),
            "kU35KuRv4ZlxdhDRm6st1m5t85U="
        );
    }

    #[test]
    fn the_security_header_is_well_formed_and_escaped() {
        let token = UsernameToken {
            username: serde_json::from_value(json!("ada<&>")).expect("a secret"),
            password: serde_json::from_value(json!("pw\"'")).expect("a secret"),
            password_type: PasswordType::Text,
        };
        let mut out = format!("<soap:Envelope xmlns:soap=\"{SOAP11_NS}\">");
        token.write(
            &mut out,
            SoapVersion::V11,
            b"0123456789abcdef",
            "2024-01-01T00:00:00Z",
        );
        out.push_str("</soap:Envelope>");
        let root = xml::parse(out.as_bytes()).expect("well-formed");
        let security = root
            .child(&Name::new(Some(WSSE_NS), "Security"))
            .expect("Security");
        let token = security
            .child(&Name::new(Some(WSSE_NS), "UsernameToken"))
            .expect("UsernameToken");
        let text = |local: &str| {
            token
                .child(&Name::new(Some(WSSE_NS), local))
                .map(Element::text)
        };
        assert_eq!(
            (text("Username"), text("Password")),
            (Some("ada<&>".into()), Some("pw\"'".into()))
        );
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let text = config_text(
            "ws_security = { username = \"ada-user\", password = \"hunter2\", password_type = \"digest\" }",
            LICENSE,
        );
        let (dmv, _) = build(&text).expect("builds");
        let debug = format!("{dmv:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("ada-user"),
            "{debug}"
        );
    }

    #[test]
    fn a_null_placeholder_skips_and_a_list_is_a_bad_argument() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (dmv, _) = build(&config_text("", LICENSE)).expect("builds");
        let null = Arguments::from([("license_number".to_string(), Value::Null)]);
        assert!(matches!(
            runtime.block_on(dmv.call("license", &null)),
            Ok(None)
        ));
        for value in [json!(["a"]), json!({"a": 1}), json!("a\u{1}b")] {
            let args = Arguments::from([("license_number".to_string(), value)]);
            let error = runtime
                .block_on(dmv.call("license", &args))
                .expect_err("refused");
            assert_eq!(error.code(), ErrorCode::BadUserInput);
        }
    }

    #[test]
    fn check_reports_a_malformed_body_at_its_line() {
        let broken = LICENSE.replace("</dmv:GetLicense>\"", "\"");
        let errors = errors(&config_text("", &broken));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("dmv.toml:8:8: operation `license`: `body` is not well-formed"),
            "{errors:?}"
        );
    }

    #[test]
    fn check_reports_undeclared_prefixes_in_body_select_and_lists() {
        let op = LICENSE
            .replace("<dmv:GetLicense>", "<dmx:GetLicense>")
            .replace("</dmv:GetLicense>", "</dmx:GetLicense>")
            .replace("dmv:GetLicenseResponse/", "other:GetLicenseResponse/")
            .replace("[\"dmv:restrictions", "[\"zz:restrictions");
        let errors = errors(&config_text("", &op));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains(":8:8:") && errors[0].contains("prefix `dmx:`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains(":9:10:") && errors[1].contains("prefix `other:`"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains(":10:10:") && errors[2].contains("prefix `zz:`"),
            "{errors:?}"
        );
    }

    #[test]
    fn check_refuses_placeholders_in_names_and_markup_leaving_the_body() {
        for body in [
            "<dmv:{tag}>x</dmv:{tag}>",
            "<dmv:A {attr}=\\\"1\\\"/>",
            "</soap:Body><soap:Body><dmv:A/>",
            "text<dmv:A/>",
        ] {
            let op = format!("body = \"{body}\"\nselect = \"dmv:A\"\n");
            let errors = errors(&config_text("", &op));
            assert_eq!(errors.len(), 1, "{body}: {errors:?}");
        }
        let attribute = "body = \"<dmv:A id=\\\"{id}\\\">{text}</dmv:A>\"\nselect = \"dmv:A\"\n";
        assert!(build(&config_text("", attribute)).is_ok());
    }

    #[test]
    fn check_reports_bad_namespaces_endpoint_and_action() {
        let errors = errors(
            &config_text("", LICENSE)
                .replace("http://127.0.0.1:9/dmv/soap", "ftp://x")
                .replace(
                    &format!("dmv = \"{DMV}\""),
                    &format!("dmv = \"{DMV}\", soap = \"urn:x\", \"1x\" = \"urn:y\""),
                )
                .replace("#GetLicense\"", "#Get License\""),
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    const BATCH: &str = "action = \"urn:civicgraph:demo:dmv:v1#GetLicenses\"\n\
        body = \"<dmv:GetLicenses>{each}</dmv:GetLicenses>\"\n\
        each = \"<dmv:licenseNumber>{license_number}</dmv:licenseNumber>\"\n\
        items = \"dmv:GetLicensesResponse/dmv:license\"\n\
        match = \"dmv:number\"\n\
        max = 100\n";

    /// The demo's licence operation with `batch` (its lines start at 12), and `extra` on
    /// line 5.
    fn batch_text(extra: &str, batch: &str) -> String {
        config_text(
            extra,
            &format!("{LICENSE}[operations.license.batch]\n{batch}"),
        )
    }

    #[test]
    fn a_batch_form_gives_the_graph_its_key_and_size() {
        let (_, spec) = build(&batch_text("", BATCH)).expect("builds");
        assert_eq!(
            spec.operations["license"].batch,
            Some(BatchSpec {
                key: "license_number".to_string(),
                max: 100
            })
        );
        let (_, spec) = build(&batch_text("", &BATCH.replace("max = 100\n", ""))).expect("builds");
        assert_eq!(
            spec.operations["license"].batch.as_ref().map(|b| b.max),
            Some(DEFAULT_BATCH_MAX)
        );
        let (_, spec) = build(&config_text("", LICENSE)).expect("builds");
        assert_eq!(spec.operations["license"].batch, None);
    }

    #[test]
    fn check_reports_each_batch_mistake_at_its_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "body = \"<dmv:GetLicenses>{each}</dmv:GetLicenses>\"",
                "body = \"<dmv:GetLicenses/>\"",
                "dmv.toml:13:8: operation `license`: `batch`: ",
                "must hold `{each}` exactly once",
            ),
            (
                "{each}</dmv:GetLicenses>",
                "{each}{each}</dmv:GetLicenses>",
                "dmv.toml:13:8: ",
                "it holds it 2 times",
            ),
            (
                "<dmv:GetLicenses>{each}",
                "<dmv:GetLicenses id=\\\"{license_number}\\\">{each}",
                "dmv.toml:13:8: ",
                "`body` holds the key `{license_number}` outside `{each}`",
            ),
            (
                "{license_number}</dmv:licenseNumber>",
                "x</dmv:licenseNumber>",
                "dmv.toml:14:8: ",
                "`each` must hold the key `{license_number}`",
            ),
            (
                "{license_number}</dmv:licenseNumber>",
                "{license_number}{zone}</dmv:licenseNumber>",
                "dmv.toml:14:8: ",
                "`each` uses `{zone}`, which the operation's `body` does not have",
            ),
            (
                "{license_number}</dmv:licenseNumber>",
                "{license_number</dmv:licenseNumber>",
                "dmv.toml:14:28: ",
                "`each`: `{` is never closed",
            ),
            (
                "{license_number}</dmv:licenseNumber>\"",
                "{license_number}\"",
                "dmv.toml:13:8: ",
                "`body` with two keys in `{each}` is not well-formed XML",
            ),
            (
                "#GetLicenses\"",
                "#Get Licenses\"",
                "dmv.toml:12:10: ",
                "`action` must be a non-empty URI",
            ),
            (
                "items = \"dmv:",
                "items = \"x:",
                "dmv.toml:15:9: ",
                "`items` `x:GetLicensesResponse/dmv:license`: prefix `x:`",
            ),
            (
                "match = \"dmv:number\"",
                "match = \"\"",
                "dmv.toml:16:9: ",
                "`match` must name at least one element",
            ),
            (
                "max = 100",
                "max = 0",
                "dmv.toml:17:7: ",
                "`max` is 0; it must be 1 to 1000",
            ),
            (
                "max = 100",
                "max = 1001",
                "dmv.toml:17:7: ",
                "`max` is 1001",
            ),
            (
                "max = 100",
                "max = 100\nkey = \"tin\"",
                "dmv.toml:18:7: ",
                "`key` `tin` is not a placeholder of the operation's `body` (it has `{license_number}`)",
            ),
            (
                "max = 100",
                "max = 100\nselect = \"dmv:x/y:z\"",
                "dmv.toml:18:10: ",
                "`select` `dmv:x/y:z`: prefix `y:`",
            ),
        ];
        for (from, to, at, message) in cases {
            let batch = BATCH.replacen(from, to, 1);
            assert_ne!(batch, BATCH, "{from} is in the batch");
            let errors = errors(&batch_text("", &batch));
            assert_eq!(errors.len(), 1, "{to}: {errors:?}");
            assert!(
                errors[0].starts_with(at) && errors[0].contains(message),
                "{to}: expected {at}…{message}, got {errors:?}"
            );
        }
    }

    #[test]
    fn a_batch_of_an_operation_with_two_placeholders_must_name_its_key() {
        let op = LICENSE.replace(
            "{license_number}</dmv:licenseNumber>",
            "{license_number}</dmv:licenseNumber><dmv:zone>{zone}</dmv:zone>",
        );
        let text = config_text("", &format!("{op}[operations.license.batch]\n{BATCH}"));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("dmv.toml:1")
                && errors[0].contains(
                    "say which placeholder varies with `key`: the operation's `body` has `{license_number}`, `{zone}`"
                ),
            "{errors:?}"
        );
        // Named, the other placeholder may stand in the body, the same for every key.
        let named = BATCH
            .replace(
                "<dmv:GetLicenses>",
                "<dmv:GetLicenses><dmv:zone>{zone}</dmv:zone>",
            )
            .replace("max = 100\n", "max = 100\nkey = \"license_number\"\n");
        let text = config_text("", &format!("{op}[operations.license.batch]\n{named}"));
        assert!(build(&text).is_ok(), "{:?}", build(&text).err());
    }

    #[test]
    fn an_unknown_batch_key_is_refused_at_its_line() {
        let text = batch_text("", &format!("{BATCH}itemz = \"x\"\n"));
        let file = TomlFile::from_text("dmv.toml", &text, &Vars::default()).expect("valid toml");
        let error = file.parse::<SoapConfig>().expect_err("an unknown key");
        assert!(
            error
                .to_string()
                .starts_with("dmv.toml:18:1: unknown key `itemz`"),
            "{error}"
        );
    }

    #[test]
    fn the_batch_is_checked_against_the_wsdl() {
        let wsdl = "wsdl = \"connectors/dmv.wsdl\"";
        assert!(build(&batch_text(wsdl, BATCH)).is_ok());
        let cases = [
            (
                "match = \"dmv:number\"",
                "match = \"dmv:numbr\"",
                "dmv.toml:16:9: ",
                "`match` (relative to `items`): step 1 `dmv:numbr` is not a child",
            ),
            (
                "dmv:GetLicensesResponse/dmv:license",
                "dmv:GetLicensesResponse/dmv:licence",
                "dmv.toml:15:9: ",
                "`items`: step 2 `dmv:licence` is not a child of `dmv:GetLicensesResponse`",
            ),
            (
                "#GetLicenses",
                "#GetLicencez",
                "dmv.toml:12:10: ",
                "no binding operation has `soapAction` `urn:civicgraph:demo:dmv:v1#GetLicencez`",
            ),
            (
                "<dmv:GetLicenses>{each}</dmv:GetLicenses>",
                "<dmv:GetVehicleLists>{each}</dmv:GetVehicleLists>",
                "dmv.toml:13:8: ",
                "the body's root element `dmv:GetVehicleLists` is not the input of WSDL operation `GetLicenses`",
            ),
            (
                "max = 100",
                "max = 100\nselect = \"dmv:restrictions\"",
                "dmv.toml:18:10: ",
                "`lists` entry (relative to `select`): step 1 `dmv:restrictions` is not a child",
            ),
        ];
        for (from, to, at, message) in cases {
            let errors = errors(&batch_text(wsdl, &BATCH.replacen(from, to, 1)));
            assert_eq!(errors.len(), 1, "{to}: {errors:?}");
            assert!(
                errors[0].starts_with(at)
                    && errors[0].contains("does not match `connectors/dmv.wsdl`")
                    && errors[0].contains(message),
                "{to}: expected {at}…{message}, got {errors:?}"
            );
        }
    }

    #[test]
    fn soap_12_puts_the_action_in_the_content_type() {
        let (content_type, action) = headers_for(SoapVersion::V12, Some("urn:a#B"));
        assert_eq!(
            (content_type.to_str().ok(), action),
            (
                Some("application/soap+xml; charset=utf-8; action=\"urn:a#B\""),
                None
            )
        );
        let (content_type, action) = headers_for(SoapVersion::V11, Some("urn:a#B"));
        assert_eq!(
            (
                content_type.to_str().ok(),
                action.as_ref().and_then(|a| a.to_str().ok())
            ),
            (Some("text/xml; charset=utf-8"), Some("\"urn:a#B\""))
        );
    }
}
