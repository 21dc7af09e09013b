//! `kind = "mainframe"`: fixed-width records described by a COBOL copybook, in EBCDIC, read
//! online (a transaction over TCP) or from nightly extract files.
//!
//! ```toml
//! name = "benefits"
//! kind = "mainframe"
//! identifier = "case_number"
//! copybook = "copybooks/BENEFIT-INQUIRY.cpy"   # relative to this file
//! code_page = "037"                             # or "1047"
//! strip_prefixes = ["BNQ-"]                     # BNQ-OPENED-ON -> openedOn
//!
//! [online]
//! address = "127.0.0.1:7104"
//! framing = "length4"                           # length4[-inclusive], length2[-inclusive], llzz
//! max_connections = 4
//! timeout_ms = 2000
//!
//! [fields.BNQ-OPENED-ON]
//! date = "%Y%m%d"
//!
//! [operations.cases]
//! request = "BNQ-REQUEST"
//! response = "BNQ-RESPONSE"
//! transaction = { field = "BNQ-TRAN-CODE", code = "BNQ1" }
//! set = { BNQ-CASE-NUMBER = "{case_number}" }
//! status = { ok = ["BNQ-RC-OK"], not_found = ["BNQ-RC-NOT-FOUND"] }
//! select = "BNQ-CASES"
//! returns = "many"
//!
//! [operations.cases.batch]                      # optional: a multi-key transaction
//! request = "BNQ-MULTI-REQUEST"
//! transaction = { field = "BNQ-M-TRAN-CODE", code = "BNQ2" }
//! keys = "BNQ-M-CASE-NUMBERS"
//! response = "BNQ-MULTI-RESPONSE"
//! count = "BNQ-M-RESULT-COUNT"
//! match = "BNQ-RESP-CASE-NUMBER"
//! ```
//!
//! An online operation's `batch` names a multi-key transaction (see `online`); an extract
//! operation whose `key` is one placeholder batches on its own, reading every key of a batch in
//! one store query with each answer's as-of time.
//!
//! The pieces, each in its own module and usable alone: [`copybook`] parses the layout,
//! [`ebcdic`] and [`codec`] turn records into JSON and back, [`transport`] carries records
//! over TCP, and `extract` loads extract files into the gateway's store.

pub mod codec;
pub mod copybook;
pub mod ebcdic;
mod extract;
mod numeric;
mod online;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use toml::Spanned;

pub use codec::{
    CodePage, CodecOptions, ConditionCheck, DecodeError, DecodeProblem, EncodeError, FieldDecode,
    FieldOptions, JsonPath, NullWhen, Overflow, Pad, RecordCodec,
};
pub use copybook::{
    Condition, ConditionValue, Copybook, CopybookError, Item, ItemKind, Literal, Occurs, PicClass,
    Picture, Position, Sign, Usage,
};

use super::{Arguments, BatchSpec, CallError, Connector, ConnectorSpec, OperationSpec, Reply};
use crate::config::{Diagnostic, Location, MainframeConfig, Returns, TomlFile};
use crate::store::Store;

/// A mainframe reached online or through extract files.
#[derive(Debug)]
pub struct MainframeConnector {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Online(online::Online),
    Extract(Arc<extract::Extract>),
}

/// What building one part of the connector needs: the file for locations, the copybook, and
/// the connector-wide codec options.
pub(super) struct BuildContext<'a> {
    pub(super) file: &'a TomlFile,
    pub(super) copybook: &'a Copybook,
    pub(super) copybook_path: &'a str,
    pub(super) options: &'a CodecOptions,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl BuildContext<'_> {
    pub(super) fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::at(self.file.location(&span), message));
    }

    /// The copybook record called `name`, or a diagnostic listing the records there are.
    pub(super) fn record(&mut self, name: &Spanned<String>) -> Option<&Item> {
        let copybook = self.copybook;
        match copybook.record(Some(name.get_ref())) {
            Some(record) => Some(record),
            None => {
                let names = record_names(copybook);
                self.error(
                    name.span(),
                    format!(
                        "`{}` is not a record of `{}`; its records are {names}",
                        name.get_ref(),
                        self.copybook_path
                    ),
                );
                None
            }
        }
    }

    /// A codec for `record` with the connector's options narrowed to the record's own fields.
    pub(super) fn codec(
        &mut self,
        record: &Item,
        span: std::ops::Range<usize>,
    ) -> Option<RecordCodec> {
        match RecordCodec::new(record, self.options.for_record(record)) {
            Ok(codec) => Some(codec),
            Err(message) => {
                self.error(
                    span,
                    format!("record `{}`: {message}", record.display_name()),
                );
                None
            }
        }
    }
}

impl MainframeConnector {
    /// Loads the copybook and compiles every operation, collecting every problem with its line
    /// (a copybook problem points into the copybook itself).
    pub(crate) fn build(
        config: &MainframeConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn Connector>, ConnectorSpec), Vec<Diagnostic>> {
        let base = file.source.path.parent().unwrap_or(Path::new(""));
        let copybook_path = base.join(config.copybook.get_ref());
        let copybook = match Copybook::load(&copybook_path) {
            Ok(copybook) => copybook,
            Err(error) => {
                let location = Location::at(
                    Path::new(&error.path),
                    error.position.line,
                    error.position.column,
                );
                return Err(vec![Diagnostic::at(
                    location,
                    format!(
                        "{} (copybook of connector `{}`)",
                        error.message,
                        config.name.get_ref()
                    ),
                )]);
            }
        };
        let copybook_text = config.copybook.get_ref().clone();
        let options = codec_options(config);
        let mut context = BuildContext {
            file,
            copybook: &copybook,
            copybook_path: &copybook_text,
            options: &options,
            diagnostics: Vec::new(),
        };
        check_fields(config, &mut context);

        let mut specs = BTreeMap::new();
        let backend = match (&config.online, &config.extract) {
            (Some(online), None) => {
                online::Online::build(config, online, &mut context, &mut specs).map(Backend::Online)
            }
            (None, Some(extract)) => {
                extract::Extract::build(config, extract, base, &mut context, &mut specs)
                    .map(|extract| Backend::Extract(Arc::new(extract)))
            }
            (Some(online), Some(_)) => {
                context.error(
                    online.span(),
                    "a mainframe connector has either `[online]` or `[extract]`, not both; write two connector files",
                );
                None
            }
            (None, None) => {
                context.error(
                    config.name.span(),
                    "a mainframe connector needs `[online]` (transactions over TCP) or `[extract]` (a directory of extract files)",
                );
                None
            }
        };
        let diagnostics = context.diagnostics;
        match backend {
            Some(backend) if diagnostics.is_empty() => {
                let spec = ConnectorSpec {
                    kind: "mainframe",
                    identifier: None,
                    location: file.location(&config.name.span()),
                    operations: specs,
                };
                Ok((Arc::new(Self { backend }), spec))
            }
            _ => Err(diagnostics),
        }
    }
}

impl Connector for MainframeConnector {
    fn call<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Option<Value>, CallError>> {
        Box::pin(async move {
            self.call_with_freshness(operation, args)
                .await
                .map(|reply| reply.value)
        })
    }

    fn call_with_freshness<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            match &self.backend {
                Backend::Online(online) => Ok(Reply {
                    value: online.call(operation, args).await?,
                    as_of: None,
                }),
                Backend::Extract(extract) => extract.call(operation, args).await,
            }
        })
    }

    fn call_batch<'a>(
        &'a self,
        operation: &'a str,
        args: &'a [Arguments],
    ) -> BoxFuture<'a, Result<Vec<Reply>, CallError>> {
        Box::pin(async move {
            match &self.backend {
                Backend::Online(online) => Ok(online
                    .call_batch(operation, args)
                    .await?
                    .into_iter()
                    .map(|value| Reply { value, as_of: None })
                    .collect()),
                Backend::Extract(extract) => extract.call_batch(operation, args).await,
            }
        })
    }

    fn attach<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Backend::Extract(extract) = &self.backend {
                extract::Extract::attach(extract, store.clone()).await;
            }
        })
    }
}

/// The codec options a connector file gives (`code_page`, `strip_prefixes`, `[encoding]`,
/// `[fields]`), for every record of its copybook; narrow them with
/// [`CodecOptions::for_record`].
pub fn codec_options(config: &MainframeConfig) -> CodecOptions {
    let fields = config
        .fields
        .iter()
        .map(|(name, field)| {
            let decode = match (
                &field.date,
                field.decode.as_ref().map(|d| d.get_ref().as_str()),
            ) {
                (Some(format), _) => FieldDecode::Date(format.clone()),
                (None, Some("raw")) => FieldDecode::Raw,
                _ => FieldDecode::Auto,
            };
            let options = FieldOptions {
                name: field.name.clone(),
                skip: field.skip,
                decode,
                null_when: field.null_when,
                when: field.when.as_ref().map(|w| w.to_ascii_uppercase()),
                overflow: field.overflow,
            };
            (name.get_ref().to_ascii_uppercase(), options)
        })
        .collect();
    CodecOptions {
        code_page: config.code_page,
        strip_prefixes: config
            .strip_prefixes
            .iter()
            .map(|p| p.to_ascii_uppercase())
            .collect(),
        fields,
        text_overflow: config.encoding.text_overflow,
        text_pad: config.encoding.text_pad,
    }
}

/// Every `[fields.X]` must name an item of the copybook, with options that make sense together.
fn check_fields(config: &MainframeConfig, context: &mut BuildContext<'_>) {
    for (name, field) in &config.fields {
        let found = context
            .copybook
            .records
            .iter()
            .any(|record| find_item(record, name.get_ref()).is_some());
        if !found {
            context.error(
                name.span(),
                format!(
                    "`[fields.{}]` names no item of `{}`",
                    name.get_ref(),
                    context.copybook_path
                ),
            );
        }
        if let Some(decode) = &field.decode {
            match decode.get_ref().as_str() {
                "raw" | "auto" if field.date.is_some() => context.error(
                    decode.span(),
                    "`decode` and `date` cannot both be set: `date` already says how to read the field",
                ),
                "raw" | "auto" => {}
                other => context.error(
                    decode.span(),
                    format!("`decode` must be \"auto\" or \"raw\", not \"{other}\""),
                ),
            }
        }
        if let Some(format) = &field.date
            && !valid_chrono_format(format)
        {
            context.error(
                name.span(),
                format!("`date` format `{format}` is not a valid chrono format (e.g. \"%Y%m%d\")"),
            );
        }
    }
}

/// Whether chrono understands every `%` specifier of `format`.
pub(super) fn valid_chrono_format(format: &str) -> bool {
    !format.is_empty()
        && chrono::format::StrftimeItems::new(format)
            .all(|item| !matches!(item, chrono::format::Item::Error))
}

/// The item called `name` (case-insensitive) anywhere under `item`, including `item` itself.
pub(super) fn find_item<'a>(item: &'a Item, name: &str) -> Option<&'a Item> {
    if item
        .name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
    {
        return Some(item);
    }
    match &item.kind {
        ItemKind::Group(children) => children.iter().find_map(|child| find_item(child, name)),
        ItemKind::Field(_) => None,
    }
}

/// The 88-level condition called `name` under `item`, with the field it belongs to.
pub(super) fn find_condition<'a>(item: &'a Item, name: &str) -> Option<(&'a Item, &'a Condition)> {
    if let Some(condition) = item
        .conditions
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
    {
        return Some((item, condition));
    }
    match &item.kind {
        ItemKind::Group(children) => children
            .iter()
            .find_map(|child| find_condition(child, name)),
        ItemKind::Field(_) => None,
    }
}

/// Whether `name` lies inside an OCCURS table of `record` (or is one), so has no single value.
pub(super) fn repeats(record: &Item, name: &str) -> bool {
    fn walk(item: &Item, name: &str, inside: bool) -> Option<bool> {
        let inside = inside || item.occurs.is_some();
        if item
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return Some(inside);
        }
        match &item.kind {
            ItemKind::Group(children) => children.iter().find_map(|c| walk(c, name, inside)),
            ItemKind::Field(_) => None,
        }
    }
    walk(record, name, false).unwrap_or(false)
}

fn record_names(copybook: &Copybook) -> String {
    let names: BTreeSet<&str> = copybook.records.iter().map(Item::display_name).collect();
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An operation's `select`, resolved once against its codec: `None` inside when the item has
/// no single value in a decoded record, so the operation reads null.
#[derive(Debug)]
pub(super) struct Selected(pub(super) Option<JsonPath>);

/// The operation spec the graph binder sees.
pub(super) fn operation_spec(
    file: &TomlFile,
    name: &Spanned<String>,
    required: Vec<String>,
    description: Option<String>,
    batch: Option<BatchSpec>,
) -> OperationSpec {
    OperationSpec {
        required,
        optional: Vec::new(),
        location: file.location(&name.span()),
        page: None,
        description,
        batch,
    }
}

/// Shapes a selected value for `returns`: `many` is always a list, `one` never is.
pub(super) fn shape(value: Value, returns: Returns) -> Result<Option<Value>, CallError> {
    match (returns, value) {
        (_, Value::Null) => Ok(None),
        (Returns::Many, Value::Array(items)) => Ok(Some(Value::Array(items))),
        (Returns::Many, other) => Ok(Some(Value::Array(vec![other]))),
        (Returns::One, Value::Array(mut items)) => match items.len() {
            0 => Ok(None),
            1 => Ok(items.pop()),
            n => Err(CallError::BadResponse {
                reason: format!("`returns = \"one\"` but the answer holds {n} entries"),
            }),
        },
        (Returns::One, other) => Ok(Some(other)),
    }
}
