//! Online access: one request record out, one response record back, per call; or, for an
//! operation with a batch form, one multi-key transaction for many keys.
//!
//! # Batches
//!
//! ```toml
//! [operations.cases.batch]
//! request = "BNQ-MULTI-REQUEST"
//! transaction = { field = "BNQ-M-TRAN-CODE", code = "BNQ2" }
//! keys = "BNQ-M-CASE-NUMBERS"        # PIC X(10) OCCURS 1 TO 100 TIMES DEPENDING ON …
//! response = "BNQ-MULTI-RESPONSE"
//! count = "BNQ-M-RESULT-COUNT"
//! status = { ok = ["BNQ-M-RC-OK"] }
//! match = "BNQ-RESP-CASE-NUMBER"
//! max = 100
//! ```
//!
//! The request record carries every distinct key in the `keys` table (its `DEPENDING ON`
//! count is set from their number), plus `transaction` and `set` as for a single call. The
//! answer is the `response` record, whose `count` field says how many result records follow
//! it back to back, each a record of the operation's own `response` (as long as its tables
//! make it) naming its key in `match`. Each result is read exactly as a single call's answer
//! (its `status`, `select` and `returns`), so each key's answer equals the single call's; a
//! key without a result is `null`, as a single call answered "not found". The keys may be
//! answered in any order.
//!
//! Each key is first checked by encoding the single call's request, so a key the single call
//! would refuse refuses the batch with the same error. A `status` that does not hold on the
//! header, a result whose own status is a fault, or a malformed answer fail the whole batch.
//! Copybook rules forbid a `DEPENDING ON` count inside a table, so a result with a variable
//! list (the cases of one case number) cannot sit in a table of the header record: that is
//! why the results are records of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Map, Value};
use toml::Spanned;

use super::transport::{Framing, TcpTransport, TransportConfig, TransportError};
use super::{
    BuildContext, ConditionCheck, FieldDecode, Item, ItemKind, JsonPath, PicClass, RecordCodec,
    Selected, find_condition, find_item, operation_spec, repeats, shape,
};
use crate::config::{
    MainframeBatch, MainframeConfig, MainframeOperation, OnlineConfig, Returns, StatusConfig,
    TransactionConfig,
};
use crate::connectors::{Arguments, BatchSpec, CallError, OperationSpec, Template};

/// A mainframe reached by transactions over TCP.
#[derive(Debug)]
pub(super) struct Online {
    transport: TcpTransport,
    operations: HashMap<String, Operation>,
    timeout_ms: u64,
}

#[derive(Debug)]
struct Operation {
    request: RecordCodec,
    response: RecordCodec,
    /// Request fields by COBOL name and where their values come from.
    set: Vec<(String, Source)>,
    status: Option<Status>,
    /// Where `select` is in the answer; `None` without `select` (the whole record).
    select: Option<Selected>,
    returns: Returns,
    batch: Option<Batch>,
}

/// An operation's multi-key transaction, compiled.
#[derive(Debug)]
struct Batch {
    /// The placeholder that varies.
    key: String,
    /// The single request's field the key fills (upper-case COBOL name).
    key_field: String,
    max: usize,
    request: RecordCodec,
    /// The transaction code and further fields of the request.
    set: Vec<(String, Source)>,
    /// The request table the keys go into (upper-case COBOL name).
    keys_field: String,
    /// Where that table is in the decoded request, to read the keys as they were sent.
    keys_path: JsonPath,
    header: RecordCodec,
    count_path: JsonPath,
    status: Option<Status>,
    /// Where each result record names its key.
    match_path: JsonPath,
}

#[derive(Debug)]
enum Source {
    Fixed(Value),
    Template(Template),
}

#[derive(Debug)]
struct Status {
    /// The response field the conditions test, for the fault message.
    field: String,
    /// Where that field is in the answer, for the fault code.
    field_path: JsonPath,
    ok: Vec<ConditionCheck>,
    not_found: Vec<ConditionCheck>,
}

/// The status conditions as the file names them, before the response codec resolves them.
struct StatusNames {
    field: String,
    ok: Vec<String>,
    not_found: Vec<String>,
}

/// The framings a connector file may name.
const FRAMINGS: &str =
    "\"length4\", \"length4-inclusive\", \"length2\", \"length2-inclusive\" or \"llzz\"";

fn framing(name: &str) -> Option<Framing> {
    Some(match name {
        "length4" => Framing::Length4 {
            includes_prefix: false,
        },
        "length4-inclusive" => Framing::Length4 {
            includes_prefix: true,
        },
        "length2" => Framing::Length2 {
            includes_prefix: false,
        },
        "length2-inclusive" => Framing::Length2 {
            includes_prefix: true,
        },
        "llzz" => Framing::Llzz,
        _ => return None,
    })
}

impl Online {
    pub(super) fn build(
        config: &MainframeConfig,
        online: &Spanned<OnlineConfig>,
        context: &mut BuildContext<'_>,
        specs: &mut BTreeMap<String, OperationSpec>,
    ) -> Option<Self> {
        let settings = online.get_ref();
        let framing = framing(settings.framing.get_ref());
        if framing.is_none() {
            context.error(
                settings.framing.span(),
                format!(
                    "`framing` must be {FRAMINGS}, not \"{}\"",
                    settings.framing.get_ref()
                ),
            );
        }
        let address = settings.address.get_ref();
        if address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            context.error(
                settings.address.span(),
                format!("`address` must be `host:port`, not `{address}`"),
            );
        }
        if settings.max_connections == 0 {
            context.error(online.span(), "`max_connections` must be at least 1");
        }
        if settings.timeout_ms == 0 {
            context.error(online.span(), "`timeout_ms` must be greater than 0");
        }

        let mut operations = HashMap::new();
        for (name, op) in &config.operations {
            if let Some(operation) = compile(name, op, context) {
                let required = placeholders(&operation.set).into_iter().collect();
                let batch = operation.batch.as_ref().map(|batch| BatchSpec {
                    key: batch.key.clone(),
                    max: batch.max,
                });
                specs.insert(
                    name.get_ref().clone(),
                    operation_spec(context.file, name, required, op.description.clone(), batch),
                );
                operations.insert(name.get_ref().clone(), operation);
            }
        }
        let framing = framing?;
        Some(Self {
            transport: TcpTransport::new(TransportConfig {
                address: address.clone(),
                framing,
                max_connections: settings.max_connections.max(1),
                timeout: Duration::from_millis(settings.timeout_ms),
                max_record_bytes: settings.max_record_bytes,
            }),
            operations,
            timeout_ms: settings.timeout_ms,
        })
    }

    pub(super) async fn call(
        &self,
        operation: &str,
        args: &Arguments,
    ) -> Result<Option<Value>, CallError> {
        let op = self
            .operations
            .get(operation)
            .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
        let Some(values) = request_values(&op.set, args)? else {
            return Ok(None);
        };
        let request = op.request.encode(&values).map_err(invalid_argument)?;
        let answer = self
            .transport
            .exchange(&request)
            .await
            .map_err(|error| self.transport_error(error))?;
        let decoded = op
            .response
            .decode(&answer)
            .map_err(|error| CallError::BadResponse {
                reason: format!("response record: {error}"),
            })?;
        op.answer(decoded, operation)
    }

    /// Answers every entry of `args`: through the operation's multi-key transaction (each
    /// distinct key once, at most `max` per transaction), or one call per entry for an
    /// operation without one.
    pub(super) async fn call_batch(
        &self,
        operation: &str,
        args: &[Arguments],
    ) -> Result<Vec<Option<Value>>, CallError> {
        let op = self
            .operations
            .get(operation)
            .ok_or_else(|| CallError::UnknownOperation(operation.to_string()))?;
        let Some(batch) = &op.batch else {
            return futures::future::try_join_all(
                args.iter().map(|args| self.call(operation, args)),
            )
            .await;
        };
        // The key value each entry asks for (`None` where the single call would be
        // skipped), each checked as the single call's request would be; and the first entry
        // of each distinct value, whose arguments fill the rest of the request.
        let mut wanted: Vec<Option<String>> = Vec::with_capacity(args.len());
        let mut distinct: Vec<(String, Value, &Arguments)> = Vec::new();
        for entry in args {
            let Some(values) = request_values(&op.set, entry)? else {
                wanted.push(None);
                continue;
            };
            op.request.encode(&values).map_err(invalid_argument)?;
            let value = values.get(&batch.key_field).cloned().unwrap_or(Value::Null);
            let id = value.to_string();
            if !distinct.iter().any(|(seen, _, _)| *seen == id) {
                distinct.push((id.clone(), value, entry));
            }
            wanted.push(Some(id));
        }
        let answers = futures::future::try_join_all(
            distinct
                .chunks(batch.max.max(1))
                .map(|chunk| self.call_chunk(op, batch, chunk, operation)),
        )
        .await?;
        let answers: HashMap<String, Option<Value>> = answers.into_iter().flatten().collect();
        Ok(wanted
            .into_iter()
            .map(|id| id.and_then(|id| answers.get(&id).cloned().flatten()))
            .collect())
    }

    /// One multi-key transaction for `keys` (distinct key values, with an entry asking for
    /// each); the answer for each, by the key value's JSON text.
    async fn call_chunk(
        &self,
        op: &Operation,
        batch: &Batch,
        keys: &[(String, Value, &Arguments)],
        operation: &str,
    ) -> Result<Vec<(String, Option<Value>)>, CallError> {
        let Some((_, _, shared)) = keys.first() else {
            return Ok(Vec::new());
        };
        let mut values = request_values(&batch.set, shared)?.unwrap_or_default();
        values.insert(
            batch.keys_field.clone(),
            Value::Array(keys.iter().map(|(_, value, _)| value.clone()).collect()),
        );
        let request = batch.request.encode(&values).map_err(invalid_argument)?;
        // The keys as the mainframe reads them (trimmed, truncated as configured), in order.
        let sent = batch
            .request
            .decode(&request)
            .ok()
            .and_then(|decoded| batch.keys_path.get(&decoded).cloned());
        let sent: Vec<String> = match sent {
            Some(Value::Array(sent)) if sent.len() == keys.len() => {
                sent.iter().map(key_text).collect()
            }
            _ => {
                return Err(CallError::InvalidArgument {
                    name: batch.keys_field.clone(),
                    reason: "cannot be read back from the request record".to_string(),
                });
            }
        };
        let answer = self
            .transport
            .exchange(&request)
            .await
            .map_err(|error| self.transport_error(error))?;
        let bad = |reason: String| CallError::BadResponse { reason };
        let (header, mut offset) = batch
            .header
            .decode_prefix(&answer)
            .map_err(|error| bad(format!("batch response record: {error}")))?;
        if let Some(status) = &batch.status
            && !status.verdict(&header, operation)?
        {
            return Ok(keys.iter().map(|(id, _, _)| (id.clone(), None)).collect());
        }
        let count = batch
            .count_path
            .get(&header)
            .and_then(|count| key_text(count).parse::<usize>().ok())
            .ok_or_else(|| bad("the batch response record's count is not a number".to_string()))?;
        let mut results: HashMap<String, Option<Value>> = HashMap::new();
        for index in 0..count {
            let rest = answer.get(offset..).unwrap_or_default();
            let (result, used) = op
                .response
                .decode_prefix(rest)
                .map_err(|error| bad(format!("result record {} of {count}: {error}", index + 1)))?;
            offset += used;
            let key = batch
                .match_path
                .get(&result)
                .map(key_text)
                .ok_or_else(|| bad(format!("result record {} names no key", index + 1)))?;
            if results.contains_key(&key) || !sent.contains(&key) {
                continue; // a key answered twice keeps its first result; one not asked is ignored
            }
            let value = op.answer(result, operation)?;
            results.insert(key, value);
        }
        Ok(keys
            .iter()
            .zip(&sent)
            .map(|((id, _, _), key)| (id.clone(), results.get(key).cloned().flatten()))
            .collect())
    }

    fn transport_error(&self, error: TransportError) -> CallError {
        match error {
            TransportError::Timeout { .. } => CallError::Timeout {
                timeout_ms: self.timeout_ms,
            },
            TransportError::Frame(reason) => CallError::BadResponse {
                reason: format!("bad frame: {reason}"),
            },
            other => CallError::Unreachable(Box::new(other)),
        }
    }
}

impl Operation {
    /// The operation's answer from its decoded response record: the status, then `select`
    /// and `returns`. A batch reads each result record with this too, so each key's answer
    /// is the single call's.
    fn answer(
        &self,
        decoded: Map<String, Value>,
        operation: &str,
    ) -> Result<Option<Value>, CallError> {
        if let Some(status) = &self.status
            && !status.verdict(&decoded, operation)?
        {
            return Ok(None);
        }
        let selected = match &self.select {
            Some(Selected(path)) => path
                .as_ref()
                .and_then(|path| path.get(&decoded))
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Object(decoded),
        };
        shape(selected, self.returns)
    }
}

impl Status {
    /// `true` when an `ok` condition holds, `false` for "not found", a fault otherwise.
    fn verdict(&self, decoded: &Map<String, Value>, operation: &str) -> Result<bool, CallError> {
        let holds = |checks: &[ConditionCheck]| checks.iter().any(|c| c.holds(decoded));
        if holds(&self.ok) {
            return Ok(true);
        }
        if holds(&self.not_found) {
            return Ok(false);
        }
        let code = self
            .field_path
            .get(decoded)
            .map_or_else(String::new, |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        Err(CallError::Fault {
            fault_string: format!(
                "transaction `{operation}` answered `{}` = `{code}`",
                self.field
            ),
            fault_code: code,
        })
    }
}

/// The request fields `set` fills from `args`, by COBOL name; `None` when a placeholder is
/// null or absent (the call is skipped and answers null).
fn request_values(
    set: &[(String, Source)],
    args: &Arguments,
) -> Result<Option<Map<String, Value>>, CallError> {
    let mut values = Map::new();
    for (field, source) in set {
        let value = match source {
            Source::Fixed(value) => value.clone(),
            Source::Template(template) => match template.sole_placeholder() {
                Some(name) => match args.get(name) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(value) => value.clone(),
                },
                None => match template.render(args, str::to_string)? {
                    Some(text) => Value::String(text),
                    None => return Ok(None),
                },
            },
        };
        values.insert(field.clone(), value);
    }
    Ok(Some(values))
}

/// A request the codec refuses, named by field (never by value).
fn invalid_argument(error: super::EncodeError) -> CallError {
    CallError::InvalidArgument {
        name: error.field.clone(),
        reason: error.problem.clone(),
    }
}

/// A decoded key as text, to compare what was sent with what came back.
fn key_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.trim().to_string(),
        other => other.to_string(),
    }
}

/// Every placeholder the fields of `set` take, sorted.
fn placeholders(set: &[(String, Source)]) -> BTreeSet<String> {
    set.iter()
        .filter_map(|(_, source)| match source {
            Source::Template(template) => Some(template.placeholders()),
            Source::Fixed(_) => None,
        })
        .flatten()
        .map(str::to_string)
        .collect()
}

fn compile(
    name: &Spanned<String>,
    op: &MainframeOperation,
    context: &mut BuildContext<'_>,
) -> Option<Operation> {
    let operation = name.get_ref();
    if let Some(key) = &op.key {
        context.error(
            key.span(),
            format!(
                "operation `{operation}`: `key` is for extract connectors; online operations fill request fields with `set`"
            ),
        );
    }
    let (Some(request_name), Some(response_name)) = (&op.request, &op.response) else {
        context.error(
            name.span(),
            format!(
                "operation `{operation}` needs `request` and `response`: the copybook records sent and received"
            ),
        );
        return None;
    };
    let request_record = context.record(request_name)?.clone();
    let response_record = context.record(response_name)?.clone();

    let set = compile_set(
        &request_record,
        request_name,
        op.transaction.as_ref(),
        &op.set,
        context,
    );
    let status = op
        .status
        .as_ref()
        .and_then(|status| status_names(status, &response_record, response_name, context));
    if let Some(select) = &op.select
        && find_item(&response_record, select.get_ref()).is_none()
    {
        context.error(
            select.span(),
            format!(
                "`select` names `{}`, which is not an item of record `{}`",
                select.get_ref(),
                response_name.get_ref()
            ),
        );
    }
    let request = context.codec(&request_record, request_name.span())?;
    let response = context.codec(&response_record, response_name.span())?;
    let status = match status {
        Some((names, span)) => Some(resolve_status(&response, names, span, context)?),
        None => None,
    };
    let select = op
        .select
        .as_ref()
        .map(|name| Selected(response.locate(name.get_ref())));
    let mut operation = Operation {
        request,
        response,
        set,
        status,
        select,
        returns: op.returns.unwrap_or(Returns::One),
        batch: None,
    };
    if let Some(batch) = &op.batch {
        let records = Records {
            request: &request_record,
            response: &response_record,
        };
        operation.batch = Some(compile_batch(name, batch, &operation, records, context)?);
    }
    Some(operation)
}

/// The fields a request record gets: the transaction code, then `set`.
fn compile_set(
    record: &Item,
    record_name: &Spanned<String>,
    transaction: Option<&Spanned<TransactionConfig>>,
    fields: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    context: &mut BuildContext<'_>,
) -> Vec<(String, Source)> {
    let mut set = Vec::new();
    if let Some(transaction) = transaction {
        let tx = transaction.get_ref();
        match find_item(record, &tx.field) {
            Some(item) if !matches!(item.kind, ItemKind::Field(_)) => context.error(
                transaction.span(),
                format!("`transaction.field` `{}` is a group, not a field", tx.field),
            ),
            Some(_) => set.push((
                tx.field.to_ascii_uppercase(),
                Source::Fixed(Value::String(tx.code.clone())),
            )),
            None => context.error(
                transaction.span(),
                format!(
                    "`transaction.field` `{}` is not a field of record `{}`",
                    tx.field,
                    record_name.get_ref()
                ),
            ),
        }
    }
    for (field, value) in fields {
        if find_item(record, field.get_ref()).is_none() {
            context.error(
                field.span(),
                format!(
                    "`set` names `{}`, which is not a field of record `{}`",
                    field.get_ref(),
                    record_name.get_ref()
                ),
            );
            continue;
        }
        if repeats(record, field.get_ref()) {
            context.error(
                field.span(),
                format!(
                    "`set` names `{}`, which is inside an OCCURS table",
                    field.get_ref()
                ),
            );
            continue;
        }
        let source = match value.get_ref() {
            toml::Value::String(text) => match Template::parse(text) {
                Ok(template) if template.placeholders().is_empty() => {
                    Source::Fixed(Value::String(text.clone()))
                }
                Ok(template) => Source::Template(template),
                Err((_, message)) => {
                    context.error(value.span(), message);
                    continue;
                }
            },
            toml::Value::Integer(n) => Source::Fixed(Value::from(*n)),
            other => {
                context.error(
                    value.span(),
                    format!(
                        "`set` values are text or integers, not {}",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        set.push((field.get_ref().to_ascii_uppercase(), source));
    }
    set
}

/// The status conditions of `status` checked against `record`: they must be 88-levels of one
/// field outside any table, decoded as conditions.
fn status_names(
    status: &Spanned<StatusConfig>,
    record: &Item,
    record_name: &Spanned<String>,
    context: &mut BuildContext<'_>,
) -> Option<(StatusNames, std::ops::Range<usize>)> {
    let mut field: Option<String> = None;
    for condition in status
        .get_ref()
        .ok
        .iter()
        .chain(&status.get_ref().not_found)
    {
        match find_condition(record, condition) {
            Some((item, _)) if repeats(record, item.display_name()) => {
                context.error(
                    status.span(),
                    format!(
                        "status condition `{condition}` belongs to a field inside an OCCURS table"
                    ),
                );
            }
            Some((item, _)) => {
                let owner = item.display_name().to_string();
                match &field {
                    Some(existing) if *existing != owner => context.error(
                        status.span(),
                        format!(
                            "status conditions must belong to one field; `{condition}` is on `{owner}`, others on `{existing}`"
                        ),
                    ),
                    _ => field = Some(owner),
                }
            }
            None => context.error(
                status.span(),
                format!(
                    "`{condition}` is not an 88-level condition of record `{}`",
                    record_name.get_ref()
                ),
            ),
        }
    }
    if let Some(owner) = &field
        && context
            .options
            .fields
            .get(owner)
            .is_some_and(|f| f.decode != FieldDecode::Auto || f.skip)
    {
        context.error(
            status.span(),
            format!(
                "`status` reads the 88-levels of `{owner}`, so `[fields.{owner}]` must not set `decode`, `date` or `skip`"
            ),
        );
    }
    if status.get_ref().ok.is_empty() {
        context.error(status.span(), "`status.ok` needs at least one condition");
    }
    field.map(|field| {
        let names = status.get_ref();
        (
            StatusNames {
                field,
                ok: names.ok.clone(),
                not_found: names.not_found.clone(),
            },
            status.span(),
        )
    })
}

/// The single operation's records, which a batch is checked against.
#[derive(Clone, Copy)]
struct Records<'a> {
    request: &'a Item,
    response: &'a Item,
}

/// Compiles `[operations.<name>.batch]` against the compiled single operation, reporting
/// every problem at its line.
fn compile_batch(
    name: &Spanned<String>,
    spanned: &Spanned<MainframeBatch>,
    single: &Operation,
    records: Records<'_>,
    context: &mut BuildContext<'_>,
) -> Option<Batch> {
    let batch = spanned.get_ref();
    let operation = name.get_ref();
    let error = |context: &mut BuildContext<'_>, span: std::ops::Range<usize>, message: String| {
        context.error(span, format!("operation `{operation}`: `batch`: {message}"));
    };
    let list = |names: &BTreeSet<String>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("`{{{n}}}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };

    // The key, and the single request's field it fills.
    let known = placeholders(&single.set);
    let key = match &batch.key {
        Some(key) if known.contains(key.get_ref()) => Some(key.get_ref().clone()),
        Some(key) => {
            error(
                context,
                key.span(),
                format!(
                    "`key` `{}` is not a placeholder of the operation's `set` (it has {})",
                    key.get_ref(),
                    list(&known)
                ),
            );
            None
        }
        None if known.len() == 1 => known.iter().next().cloned(),
        None => {
            error(
                context,
                spanned.span(),
                format!(
                    "say which placeholder varies with `key`: the operation's `set` has {}",
                    list(&known)
                ),
            );
            None
        }
    }?;
    let filled: Vec<&String> = single
        .set
        .iter()
        .filter(|(_, source)| {
            matches!(source, Source::Template(t) if t.placeholders().contains(&key.as_str()))
        })
        .map(|(field, _)| field)
        .collect();
    let [key_field] = filled.as_slice() else {
        error(
            context,
            spanned.span(),
            format!(
                "the key `{{{key}}}` must fill exactly one field of the operation's `set`; it fills {}",
                filled.len()
            ),
        );
        return None;
    };
    let key_field = (*key_field).clone();
    let key_picture = match find_item(records.request, &key_field).map(|item| &item.kind) {
        Some(ItemKind::Field(picture)) => Some(picture.clone()),
        _ => None,
    };

    // The request record, its fields and the keys table.
    let request_record = context.record(&batch.request)?.clone();
    let set = compile_set(
        &request_record,
        &batch.request,
        batch.transaction.as_ref(),
        &batch.set,
        context,
    );
    let keys_name = batch.keys.get_ref();
    let table = match find_item(&request_record, keys_name) {
        None => {
            error(
                context,
                batch.keys.span(),
                format!(
                    "`keys` `{keys_name}` is not an item of record `{}`",
                    batch.request.get_ref()
                ),
            );
            None
        }
        Some(item) => match (&item.kind, &item.occurs) {
            (ItemKind::Field(picture), Some(occurs))
                if occurs.depending_on.is_some() && !inside_table(&request_record, keys_name) =>
            {
                Some((picture.clone(), occurs.clone()))
            }
            _ => {
                error(
                    context,
                    batch.keys.span(),
                    format!(
                        "`keys` `{keys_name}` must be an elementary field with `OCCURS … DEPENDING ON` (one entry per key), outside any other table"
                    ),
                );
                None
            }
        },
    };
    if let (Some((picture, _)), Some(key_picture)) = (&table, &key_picture)
        && (picture.class != key_picture.class || picture.usage != key_picture.usage)
    {
        error(
            context,
            batch.keys.span(),
            format!(
                "`keys` `{keys_name}` is PIC {} but `{key_field}`, which the key fills in a single request, is PIC {}; a key must be sent as a single call sends it",
                picture.text, key_picture.text
            ),
        );
    }
    let keys_upper = keys_name.to_ascii_uppercase();
    if let Some((_, occurs)) = &table {
        let counted = occurs
            .depending_on
            .as_deref()
            .unwrap_or_default()
            .to_ascii_uppercase();
        for field in set.iter().map(|(field, _)| field) {
            if *field == keys_upper || *field == counted {
                error(
                    context,
                    batch.keys.span(),
                    format!("`set` names `{field}`, which the keys fill (the table, or its count)"),
                );
            }
        }
    }
    for (field, source) in &set {
        if let Source::Template(template) = source {
            for placeholder in template.placeholders() {
                if placeholder == key || !known.contains(placeholder) {
                    error(
                        context,
                        spanned.span(),
                        format!(
                            "`set` field `{field}` takes `{{{placeholder}}}`; batch fields take only the operation's other placeholders (the key goes in `keys`)"
                        ),
                    );
                }
            }
        }
    }
    let max = table.as_ref().and_then(|(_, occurs)| match &batch.max {
        None => Some(occurs.max),
        Some(max) if (1..=occurs.max).contains(max.get_ref()) => Some(*max.get_ref()),
        Some(max) => {
            error(
                context,
                max.span(),
                format!(
                    "`max` is {}; it must be 1 to {}, the entries of `{keys_name}`",
                    max.get_ref(),
                    occurs.max
                ),
            );
            None
        }
    });

    // The header record and its count and status; the results' key.
    let header_record = context.record(&batch.response)?.clone();
    let count_name = batch.count.get_ref();
    match find_item(&header_record, count_name) {
        Some(item)
            if matches!(&item.kind, ItemKind::Field(p) if matches!(p.class, PicClass::Numeric { scale: 0, .. }))
                && !repeats(&header_record, count_name)
                && (item.conditions.is_empty()
                    || context
                        .options
                        .fields
                        .get(&count_name.to_ascii_uppercase())
                        .is_some_and(|f| f.decode == FieldDecode::Raw)) => {}
        _ => error(
            context,
            batch.count.span(),
            format!(
                "`count` `{count_name}` must be an integer field of record `{}` outside any table, read as a number (no 88-levels)",
                batch.response.get_ref()
            ),
        ),
    }
    let before = context.diagnostics.len();
    let status = batch
        .status
        .as_ref()
        .and_then(|status| status_names(status, &header_record, &batch.response, context));
    // A condition already reported is not reported again as unreadable.
    let status_named = context.diagnostics.len() == before;
    let match_name = batch.key_field.get_ref();
    match find_item(records.response, match_name) {
        Some(item)
            if matches!(item.kind, ItemKind::Field(_))
                && !repeats(records.response, match_name) => {}
        _ => error(
            context,
            batch.key_field.span(),
            format!(
                "`match` `{match_name}` must be a field of the operation's response record `{}` outside any table: it names the key a result answers",
                records.response.display_name()
            ),
        ),
    }

    // The codecs: the keys are encoded as the single request encodes its key field.
    let mut options = context.options.for_record(&request_record);
    if let Some(key_options) = context.options.fields.get(&key_field) {
        let entry = options.fields.entry(keys_upper.clone()).or_default();
        if entry.overflow.is_none() {
            entry.overflow = key_options.overflow;
        }
    }
    let request = match RecordCodec::new(&request_record, options) {
        Ok(codec) => Some(codec),
        Err(message) => {
            error(
                context,
                batch.request.span(),
                format!("record `{}`: {message}", batch.request.get_ref()),
            );
            None
        }
    };
    let header = context.codec(&header_record, batch.response.span());
    let (Some(request), Some(header), Some(max), Some(_)) = (request, header, max, table) else {
        return None;
    };
    let status = match status {
        Some((names, span)) if status_named => Some(resolve_status(&header, names, span, context)?),
        Some(_) => return None,
        None => None,
    };
    let keys_path = request.locate(keys_name);
    let count_path = header.locate(count_name);
    let match_path = single.response.locate(match_name);
    let (Some(keys_path), Some(count_path), Some(match_path)) = (keys_path, count_path, match_path)
    else {
        error(
            context,
            spanned.span(),
            "`keys`, `count` and `match` must be fields the codec reads (not `skip`ped)"
                .to_string(),
        );
        return None;
    };
    Some(Batch {
        key,
        key_field,
        max,
        request,
        set,
        keys_field: keys_upper,
        keys_path,
        header,
        count_path,
        status,
        match_path,
    })
}

/// Whether an item enclosing `name` (not the item itself) repeats.
fn inside_table(record: &Item, name: &str) -> bool {
    fn walk(item: &Item, name: &str, inside: bool) -> Option<bool> {
        if item
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return Some(inside);
        }
        let inside = inside || item.occurs.is_some();
        match &item.kind {
            ItemKind::Group(children) => children.iter().find_map(|c| walk(c, name, inside)),
            ItemKind::Field(_) => None,
        }
    }
    walk(record, name, false).unwrap_or(false)
}

/// The status conditions resolved against the response codec, once.
fn resolve_status(
    response: &RecordCodec,
    names: StatusNames,
    span: std::ops::Range<usize>,
    context: &mut BuildContext<'_>,
) -> Option<Status> {
    let mut resolve = |conditions: &[String]| -> Option<Vec<ConditionCheck>> {
        conditions
            .iter()
            .map(|name| {
                let check = response.condition(name);
                if check.is_none() {
                    context.error(
                        span.clone(),
                        format!("status condition `{name}` cannot be read from the answer"),
                    );
                }
                check
            })
            .collect()
    };
    let ok = resolve(&names.ok)?;
    let not_found = resolve(&names.not_found)?;
    let field_path = ok.first().map(|check| check.field().clone())?;
    Some(Status {
        field: names.field,
        field_path,
        ok,
        not_found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TomlFile, Vars};
    use crate::connectors::ConnectorSpec;
    use crate::connectors::mainframe::MainframeConnector;

    const CASES: &str = include_str!("../../../connectors/benefits.toml");
    const PAYMENTS: &str = include_str!("../../../connectors/benefit_payments.toml");
    const CASE_COPYBOOK: &str = include_str!("../../../connectors/copybooks/BENEFIT-CASE.cpy");
    const PAYMENT_COPYBOOK: &str =
        include_str!("../../../connectors/copybooks/BENEFIT-PAYMENT.cpy");

    /// Builds connector file `text` as `<dir>/benefits.toml` next to the shipped copybooks
    /// (the case copybook edited by `copybook`); the diagnostics as text.
    fn build(text: &str, copybook: impl Fn(&str) -> String) -> Result<ConnectorSpec, Vec<String>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let copybooks = dir.path().join("copybooks");
        std::fs::create_dir(&copybooks).expect("the copybook directory");
        std::fs::write(copybooks.join("BENEFIT-CASE.cpy"), copybook(CASE_COPYBOOK))
            .expect("the case copybook");
        std::fs::write(copybooks.join("BENEFIT-PAYMENT.cpy"), PAYMENT_COPYBOOK)
            .expect("the payment copybook");
        let path = dir.path().join("benefits.toml");
        let file = TomlFile::from_text(&path, text, &Vars::default()).expect("valid TOML");
        let config = file.parse().expect("a mainframe connector file");
        MainframeConnector::build(&config, &file)
            .map(|(_, spec)| spec)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_shipped_connectors_declare_their_batch_forms() {
        let spec = build(CASES, str::to_string).expect("the shipped online connector");
        assert_eq!(
            spec.operations["cases"].batch,
            Some(BatchSpec {
                key: "case_number".to_string(),
                max: 100
            })
        );
        // Without `max`, as many keys as the request table holds.
        let spec = build(&CASES.replace("max = 100\n", ""), str::to_string).expect("builds");
        assert_eq!(
            spec.operations["cases"].batch.as_ref().map(|b| b.max),
            Some(100)
        );
        // Extract operations batch on their own.
        let spec = build(PAYMENTS, str::to_string).expect("the shipped extract connector");
        assert_eq!(
            spec.operations["payments"].batch,
            Some(BatchSpec {
                key: "case_number".to_string(),
                max: 500
            })
        );
    }

    #[test]
    fn check_reports_each_batch_mistake_at_its_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "request = \"BNQ-MULTI-REQUEST\"",
                "request = \"BNQ-MULTI-REQ\"",
                "benefits.toml:61:11: ",
                "`BNQ-MULTI-REQ` is not a record of `copybooks/BENEFIT-CASE.cpy`",
            ),
            (
                "field = \"BNQ-M-TRAN-CODE\"",
                "field = \"BNQ-M-TRAN\"",
                "benefits.toml:62:15: ",
                "`transaction.field` `BNQ-M-TRAN` is not a field of record `BNQ-MULTI-REQUEST`",
            ),
            (
                "keys = \"BNQ-M-CASE-NUMBERS\"",
                "keys = \"BNQ-M-KEY-COUNT\"",
                "benefits.toml:63:8: ",
                "`keys` `BNQ-M-KEY-COUNT` must be an elementary field with `OCCURS … DEPENDING ON`",
            ),
            (
                "response = \"BNQ-MULTI-RESPONSE\"",
                "response = \"BNQ-MULTI-RESP\"",
                "benefits.toml:64:12: ",
                "`BNQ-MULTI-RESP` is not a record",
            ),
            (
                "count = \"BNQ-M-RESULT-COUNT\"",
                "count = \"BNQ-M-RETURN-CODE\"",
                "benefits.toml:65:9: ",
                "`count` `BNQ-M-RETURN-CODE` must be an integer field of record `BNQ-MULTI-RESPONSE` outside any table, read as a number (no 88-levels)",
            ),
            (
                "ok = [\"BNQ-M-RC-OK\"]",
                "ok = [\"BNQ-RC-OK\"]",
                "benefits.toml:66:10: ",
                "`BNQ-RC-OK` is not an 88-level condition of record `BNQ-MULTI-RESPONSE`",
            ),
            (
                "match = \"BNQ-RESP-CASE-NUMBER\"",
                "match = \"BNQ-CASES\"",
                "benefits.toml:67:9: ",
                "`match` `BNQ-CASES` must be a field of the operation's response record `BNQ-RESPONSE`",
            ),
            (
                "max = 100",
                "max = 101",
                "benefits.toml:68:7: ",
                "`max` is 101; it must be 1 to 100, the entries of `BNQ-M-CASE-NUMBERS`",
            ),
            (
                "max = 100",
                "max = 100\nkey = \"tin\"",
                "benefits.toml:69:7: ",
                "`key` `tin` is not a placeholder of the operation's `set` (it has `{case_number}`)",
            ),
            (
                "max = 100",
                "max = 100\nset = { BNQ-M-KEY-COUNT = 3 }",
                "benefits.toml:63:8: ",
                "`set` names `BNQ-M-KEY-COUNT`, which the keys fill",
            ),
            (
                "max = 100",
                "max = 100\nset = { BNQ-M-REQUESTED-BY = \"{case_number}\" }",
                "benefits.toml:60:",
                "batch fields take only the operation's other placeholders",
            ),
        ];
        for (from, to, at, message) in cases {
            let batch = CASES.replacen(from, to, 1);
            assert_ne!(batch, CASES, "{from} is in the file");
            let errors = build(&batch, str::to_string).expect_err("a mistake");
            assert_eq!(errors.len(), 1, "{to}: {errors:?}");
            assert!(
                errors[0].contains(at) && errors[0].contains(message),
                "{to}: expected {at}…{message}, got {errors:?}"
            );
        }
    }

    #[test]
    fn the_keys_must_be_sent_as_a_single_call_sends_its_key() {
        let errors = build(CASES, |copybook| {
            copybook.replace(
                "BNQ-M-CASE-NUMBERS      PIC X(10)",
                "BNQ-M-CASE-NUMBERS      PIC X(12)",
            )
        })
        .expect_err("a wider keys table");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("benefits.toml:63:8: ")
                && errors[0].contains(
                    "`keys` `BNQ-M-CASE-NUMBERS` is PIC X(12) but `BNQ-CASE-NUMBER`, which the key fills in a single request, is PIC X(10)"
                ),
            "{errors:?}"
        );
    }

    #[test]
    fn extract_operations_take_no_batch_table() {
        let text = format!(
            "{PAYMENTS}\n[operations.payments.batch]\nrequest = \"R\"\nkeys = \"K\"\nresponse = \"R\"\ncount = \"C\"\nmatch = \"M\"\n"
        );
        let errors = build(&text, str::to_string).expect_err("a batch on an extract");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`batch` is for online connectors"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_key_fills_exactly_one_request_field() {
        let text = CASES.replace(
            "set = { BNQ-CASE-NUMBER = \"{case_number}\" }",
            "set = { BNQ-CASE-NUMBER = \"{case_number}\", BNQ-REQUESTED-BY = \"{case_number}\" }",
        );
        let errors = build(&text, str::to_string).expect_err("a key in two fields");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("benefits.toml:60:")
                && errors[0]
                    .contains("the key `{case_number}` must fill exactly one field of the operation's `set`; it fills 2"),
            "{errors:?}"
        );
    }
}
