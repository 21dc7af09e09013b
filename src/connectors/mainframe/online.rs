//! Online access: one request record out, one response record back, per call.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Map, Value};
use toml::Spanned;

use super::transport::{Framing, TcpTransport, TransportConfig, TransportError};
use super::{
    BuildContext, ConditionCheck, JsonPath, RecordCodec, Selected, find_condition, find_item,
    operation_spec, repeats, shape,
};
use crate::config::{MainframeConfig, MainframeOperation, OnlineConfig, Returns};
use crate::connectors::{Arguments, CallError, OperationSpec, Template};

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
                let required = operation
                    .set
                    .iter()
                    .filter_map(|(_, source)| match source {
                        Source::Template(template) => Some(template.placeholders()),
                        Source::Fixed(_) => None,
                    })
                    .flatten()
                    .map(str::to_string)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                specs.insert(
                    name.get_ref().clone(),
                    operation_spec(context.file, name, required, op.description.clone()),
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
        let mut values = Map::new();
        for (field, source) in &op.set {
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
        let request = op
            .request
            .encode(&values)
            .map_err(|error| CallError::InvalidArgument {
                name: error.field.clone(),
                reason: error.problem.clone(),
            })?;
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
        if let Some(status) = &op.status {
            let holds = |checks: &[ConditionCheck]| checks.iter().any(|c| c.holds(&decoded));
            if !holds(&status.ok) {
                if holds(&status.not_found) {
                    return Ok(None);
                }
                let code = status
                    .field_path
                    .get(&decoded)
                    .map_or_else(String::new, |v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                return Err(CallError::Fault {
                    fault_string: format!(
                        "transaction `{operation}` answered `{}` = `{code}`",
                        status.field
                    ),
                    fault_code: code,
                });
            }
        }
        let selected = match &op.select {
            Some(Selected(path)) => path
                .as_ref()
                .and_then(|path| path.get(&decoded))
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Object(decoded),
        };
        shape(selected, op.returns)
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

    let mut set = Vec::new();
    if let Some(transaction) = &op.transaction {
        let tx = transaction.get_ref();
        match find_item(&request_record, &tx.field) {
            Some(item) if !matches!(item.kind, super::ItemKind::Field(_)) => context.error(
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
                    request_name.get_ref()
                ),
            ),
        }
    }
    for (field, value) in &op.set {
        if find_item(&request_record, field.get_ref()).is_none() {
            context.error(
                field.span(),
                format!(
                    "`set` names `{}`, which is not a field of record `{}`",
                    field.get_ref(),
                    request_name.get_ref()
                ),
            );
            continue;
        }
        if repeats(&request_record, field.get_ref()) {
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

    let status = op.status.as_ref().and_then(|status| {
        let mut field: Option<String> = None;
        for condition in status.get_ref().ok.iter().chain(&status.get_ref().not_found) {
            match find_condition(&response_record, condition) {
                Some((item, _)) if repeats(&response_record, item.display_name()) => {
                    context.error(
                        status.span(),
                        format!("status condition `{condition}` belongs to a field inside an OCCURS table"),
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
                        response_name.get_ref()
                    ),
                ),
            }
        }
        if let Some(owner) = &field
            && context
                .options
                .fields
                .get(owner)
                .is_some_and(|f| f.decode != super::FieldDecode::Auto || f.skip)
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
    });
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
    Some(Operation {
        request,
        response,
        set,
        status,
        select,
        returns: op.returns.unwrap_or(Returns::One),
    })
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
