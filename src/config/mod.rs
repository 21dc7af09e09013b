//! Configuration: `civicgraph.toml`, `connectors/*.toml` and `schema/*.graphql` → typed,
//! validated values whose errors carry `file:line:column`.
//!
//! Loading never stops at the first problem: every file is read and every error collected, so
//! `civicgraph check` can list them all at once.

mod connector;
mod gateway;
mod http_edge;
mod interpolate;
mod limits;
mod mainframe;
mod persisted;
mod quotas;
mod reload;
mod shield;
mod soap;
mod source;
mod sql;
mod telemetry;
mod trust;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use connector::{
    CONNECTOR_KINDS, ConnectorConfig, DEFAULT_BATCH_MAX, HttpMethod, MAX_BATCH_MAX, NotFound,
    PageConfig, RestAuth, RestBatch, RestConfig, RestOperation, Returns, Secret,
};
pub use gateway::{
    AuthConfig, CacheTierConfig, EventsConfig, GatewayConfig, IssuerConfig, IssuerRole, KeysConfig,
    PathsConfig, ServerConfig, ShieldSettings, StorageConfig,
};
pub use http_edge::{
    CorsConfig, CsrfConfig, DEFAULT_PREFLIGHT_HEADERS, HeaderBytes, HeaderName, HttpEdgeConfig,
    MIN_HEADER_BYTES, Origin,
};
pub use interpolate::{Interpolated, Vars, interpolate_toml};
pub use limits::{LimitsConfig, Profile};
pub use mainframe::{
    EncodingConfig, ExtractConfig, FieldConfig, MainframeBatch, MainframeConfig,
    MainframeOperation, OnlineConfig, StatusConfig, TransactionConfig,
};
pub use persisted::{PersistedConfig, PersistedMode};
pub use quotas::{ClientLimits, Limits, QuotasConfig};
pub use reload::ReloadConfig;
pub use shield::{
    BreakerConfig, CacheConfig, DEFAULT_MAX_CONCURRENCY, DEFAULT_QUEUE_TIMEOUT_MS,
    MaintenanceWindow, RetryConfig, ShieldConfig, ShieldKeys,
};
pub use soap::{PasswordType, SoapBatch, SoapConfig, SoapOperation, SoapVersion, WsSecurity};
pub use source::{Diagnostic, Diagnostics, Location, SourceFile};
pub use sql::{SqlBatch, SqlConfig, SqlOperation};
pub use telemetry::{LogFormat, SamplingRatio, TelemetryConfig};
pub use trust::{AgencyConfig, AuditConfig, OnDenied, TrustConfig, is_code};

use connector::KindProbe;

/// A TOML file after interpolation, able to turn a span of the parsed text into a location.
#[derive(Debug, Clone)]
pub struct TomlFile {
    /// The file as written.
    pub source: SourceFile,
    interpolated: Interpolated,
}

impl TomlFile {
    /// The location of a span start reported by the TOML parser.
    pub fn location(&self, span: &std::ops::Range<usize>) -> Location {
        self.source
            .location(self.interpolated.original_offset(span.start))
    }

    /// Interpolates `text` as if read from `path`; for tests and embedded configuration.
    pub fn from_text(
        path: impl Into<PathBuf>,
        text: &str,
        vars: &Vars,
    ) -> Result<Self, Vec<Diagnostic>> {
        let source = SourceFile::new(path, text.to_string());
        match interpolate_toml(&source.text, vars) {
            Ok(interpolated) => Ok(Self {
                source,
                interpolated,
            }),
            Err(errors) => Err(errors
                .into_iter()
                .map(|e| Diagnostic::at(source.location(e.offset), e.message))
                .collect()),
        }
    }

    /// Deserialises the interpolated text; a failure points at the original line and column.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        toml::from_str(&self.interpolated.text).map_err(|error| {
            let location = match error.span() {
                Some(span) => self.location(&span),
                None => self.source.location(0),
            };
            Diagnostic::at(location, toml_message(error.message()))
        })
    }
}

/// Rephrases serde's messages where they would puzzle a newcomer.
fn toml_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    message.to_string()
}

/// A connector file and what it configures.
#[derive(Debug, Clone)]
pub struct LoadedConnector {
    /// The typed configuration.
    pub config: ConnectorConfig,
    /// The file it came from, for locations in later checks.
    pub file: TomlFile,
}

/// Everything the gateway is configured from, loaded and syntax-checked.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory of `civicgraph.toml`; relative paths in it are relative to here.
    pub root: PathBuf,
    /// `civicgraph.toml`.
    pub gateway: GatewayConfig,
    /// Every connector file that parsed.
    pub connectors: Vec<LoadedConnector>,
    /// Names of connectors whose files did not parse, so later checks don't pile on.
    pub broken_connectors: HashSet<String>,
    /// Every `schema/*.graphql`, in file-name order.
    pub schema_files: Vec<SourceFile>,
    /// `schema/life-events.toml`, when there is one (checked against the graph later).
    pub life_events: Option<TomlFile>,
    /// The bearer-token validator built from `[[auth.issuers]]` (empty when they have errors),
    /// built once here so key files are read once and bad ones reported at their lines.
    pub tokens: crate::auth::TokenValidator,
}

/// Loads `civicgraph.toml` and the directories it names. Problems come back together with
/// whatever did load, so the graph can still be checked and report its own problems too.
pub fn load_project(config_path: &Path, vars: &Vars) -> (Project, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut tokens = crate::auth::TokenValidator::default();
    let root = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let gateway = match read_toml_file(config_path, vars) {
        Ok(Some(file)) => match file.parse::<GatewayConfig>() {
            Ok(gateway) => {
                // Key files and URLs are checked now so a bad one is reported at its line.
                match crate::auth::TokenValidator::new(&root, &gateway.auth.issuers) {
                    Ok(validator) => tokens = validator,
                    Err(errors) => diagnostics.extend(
                        errors
                            .into_iter()
                            .map(|e| Diagnostic::at(file.location(&e.span), e.message)),
                    ),
                }
                for (span, message) in gateway.trust.problems() {
                    let location = file.location(&span.unwrap_or(0..0));
                    diagnostics.push(Diagnostic::at(location, message));
                }
                if let Some(dir) = &gateway.server.graphiql_assets_dir
                    && !dir.get_ref().trim().is_empty()
                {
                    let path = root.join(dir.get_ref().trim());
                    let missing = crate::http::playground::GraphiqlAssets::missing(&path);
                    if !missing.is_empty() {
                        let message = format!(
                            "`graphiql_assets_dir` {} lacks {}; put GraphiQL's browser files there (see the README's \"GraphiQL without a CDN\") or remove the setting",
                            path.display(),
                            missing
                                .iter()
                                .map(|f| format!("`{f}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        diagnostics.push(Diagnostic::at(file.location(&dir.span()), message));
                    }
                }
                gateway
            }
            Err(d) => {
                diagnostics.push(d);
                GatewayConfig::default()
            }
        },
        Ok(None) => {
            diagnostics.push(Diagnostic::file(
                config_path,
                "this file does not exist; create it (an empty file uses the defaults) or pass --config",
            ));
            GatewayConfig::default()
        }
        Err(mut ds) => {
            diagnostics.append(&mut ds);
            GatewayConfig::default()
        }
    };

    let connectors_dir = root.join(&gateway.paths.connectors);
    let mut connectors = Vec::new();
    let mut broken_connectors = HashSet::new();
    for path in list_files(&connectors_dir, "toml", &mut diagnostics) {
        match read_toml_file(&path, vars) {
            Ok(Some(file)) => match parse_connector(&file) {
                Ok(config) => connectors.push(LoadedConnector { config, file }),
                Err(d) => {
                    if let Some(name) = probe_name(&file) {
                        broken_connectors.insert(name);
                    }
                    diagnostics.push(d);
                }
            },
            Ok(None) => {}
            Err(mut ds) => {
                broken_connectors.extend(file_stem(&path));
                diagnostics.append(&mut ds);
            }
        }
    }
    check_duplicate_connectors(&connectors, &mut diagnostics);

    let schema_dir = root.join(&gateway.paths.schema);
    let mut schema_files = Vec::new();
    for path in list_files(&schema_dir, "graphql", &mut diagnostics) {
        match std::fs::read_to_string(&path) {
            Ok(text) => schema_files.push(SourceFile::new(display_path(&path), text)),
            Err(error) => diagnostics.push(Diagnostic::file(
                &display_path(&path),
                format!("cannot read this file: {error}"),
            )),
        }
    }
    let rules_path = schema_dir.join(crate::events::rules::RULES_FILE);
    let life_events = if rules_path.is_file() {
        match std::fs::read_to_string(&rules_path) {
            Ok(text) => match TomlFile::from_text(display_path(&rules_path), &text, vars) {
                Ok(file) => Some(file),
                Err(mut problems) => {
                    diagnostics.append(&mut problems);
                    None
                }
            },
            Err(error) => {
                diagnostics.push(Diagnostic::file(
                    &display_path(&rules_path),
                    format!("cannot read this file: {error}"),
                ));
                None
            }
        }
    } else {
        None
    };
    if schema_files.is_empty() && schema_dir.is_dir() {
        diagnostics.push(Diagnostic::file(
            &display_path(&schema_dir),
            "no `*.graphql` files here; the graph needs at least a `type Query`",
        ));
    }

    (
        Project {
            root,
            gateway,
            connectors,
            broken_connectors,
            schema_files,
            life_events,
            tokens,
        },
        diagnostics,
    )
}

fn file_stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// `civicgraph.toml` alone, with the directory its relative paths start from: for the tools
/// that need the gateway's settings (keys, store, catalogues) but not its graph, such as
/// `civicgraph token`, `consent verify` and `audit verify`.
pub fn load_gateway_config(
    config_path: &Path,
    vars: &Vars,
) -> Result<(GatewayConfig, PathBuf), Diagnostics> {
    let root = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    match read_toml_file(config_path, vars).map_err(Diagnostics)? {
        Some(file) => {
            let gateway = file.parse().map_err(|d| Diagnostics(vec![d]))?;
            Ok((gateway, root))
        }
        None => Err(Diagnostics(vec![Diagnostic::file(
            config_path,
            "this file does not exist; pass --config",
        )])),
    }
}

/// Reads and interpolates a TOML file; `Ok(None)` when it does not exist.
fn read_toml_file(path: &Path, vars: &Vars) -> Result<Option<TomlFile>, Vec<Diagnostic>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(vec![Diagnostic::file(
                &display_path(path),
                format!("cannot read this file: {error}"),
            )]);
        }
    };
    TomlFile::from_text(display_path(path), &text, vars).map(Some)
}

fn parse_connector(file: &TomlFile) -> Result<ConnectorConfig, Diagnostic> {
    let probe: KindProbe = file.parse()?;
    let Some(kind) = probe.kind else {
        return Err(Diagnostic::at(
            file.source.location(0),
            format!(
                "missing required key `kind`; say which protocol this backend speaks: {}",
                quoted_list(CONNECTOR_KINDS)
            ),
        ));
    };
    match kind.get_ref().as_str() {
        "rest" => file.parse().map(ConnectorConfig::Rest),
        "soap" => file.parse().map(ConnectorConfig::Soap),
        "sql" => file.parse().map(ConnectorConfig::Sql),
        "mainframe" => file
            .parse()
            .map(|config| ConnectorConfig::Mainframe(Box::new(config))),
        other => Err(Diagnostic::at(
            file.location(&kind.span()),
            format!(
                "unknown connector kind `{other}`; expected one of {}",
                quoted_list(CONNECTOR_KINDS)
            ),
        )),
    }
}

/// The `name` of a connector file that failed to parse, when it can still be read.
fn probe_name(file: &TomlFile) -> Option<String> {
    let table: toml::Table = toml::from_str(&file.interpolated.text).ok()?;
    table.get("name")?.as_str().map(str::to_string)
}

fn check_duplicate_connectors(connectors: &[LoadedConnector], diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: Vec<&LoadedConnector> = Vec::new();
    for connector in connectors {
        let name = connector.config.name();
        if crate::connectors::is_built_in(name.get_ref()) {
            diagnostics.push(Diagnostic::at(
                connector.file.location(&name.span()),
                format!(
                    "the connector name `{}` is reserved for a connector built into the gateway; choose another",
                    name.get_ref()
                ),
            ));
            continue;
        }
        if let Some(first) = seen
            .iter()
            .find(|c| c.config.name().get_ref() == name.get_ref())
        {
            diagnostics.push(Diagnostic::at(
                connector.file.location(&name.span()),
                format!(
                    "duplicate connector name `{}`: {} already uses it; connector names must be unique",
                    name.get_ref(),
                    first.file.location(&first.config.name().span())
                ),
            ));
        } else {
            seen.push(connector);
        }
    }
}

/// Files with the given extension in `dir`, sorted by name so the load order is reproducible.
fn list_files(dir: &Path, extension: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            diagnostics.push(Diagnostic::file(
                &display_path(dir),
                format!("cannot read this directory: {error}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// A path as the user would type it: relative to the working directory when it is below it.
fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// `"a", "b" or "c"` for messages.
pub fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_toml_block_in_the_readme_loads() {
        let readme = include_str!("../../README.md");
        let mut blocks = 0;
        for (i, block) in readme.split("```toml\n").skip(1).enumerate() {
            let text = block.split("```").next().expect("a closed code block");
            let file = TomlFile::from_text(format!("README.md block {i}"), text, &Vars::default())
                .unwrap_or_else(|e| panic!("README toml block {i}: {e:?}"));
            if text.contains("[services.") {
                let trust: TrustConfig =
                    toml::from_str("[agencies.ui]\nname = \"the Unemployment Insurance Agency\"")
                        .expect("a trust section");
                let types = ["JobLost".to_string()].into_iter().collect();
                let (_, problems) =
                    crate::events::services::Catalogue::parse(&file, None, &trust, &types);
                assert!(
                    problems.is_empty(),
                    "README services block {i}: {problems:?}"
                );
            } else if text.contains("[[events]]") {
                crate::events::rules::check_syntax(&file)
                    .unwrap_or_else(|e| panic!("README rules block {i}: {e}"));
            } else if text.contains("kind = ") {
                parse_connector(&file)
                    .unwrap_or_else(|e| panic!("README connector block {i}: {e}"));
            } else {
                file.parse::<GatewayConfig>()
                    .unwrap_or_else(|e| panic!("README gateway block {i}: {e}"));
            }
            blocks += 1;
        }
        assert!(blocks >= 2, "the README documents both file kinds");
    }

    #[test]
    fn a_misspelt_key_names_its_line_and_column() {
        let file = TomlFile::from_text(
            "connectors/tax.toml",
            "name = \"tax\"\nkind = \"rest\"\nbase_url = \"${URL:-http://h}\"\ntmeout_ms = 5\n[operations.a]\npath = \"/\"\n",
            &Vars::default(),
        )
        .expect("interpolates");
        let diagnostic = parse_connector(&file).expect_err("misspelt key");
        assert_eq!(
            diagnostic.to_string(),
            "connectors/tax.toml:4:1: unknown key `tmeout_ms`, expected one of `name`, `kind`, `description`, `identifier`, `base_url`, `timeout_ms`, `pool_max_idle`, `headers`, `auth`, `max_concurrency`, `queue_timeout_ms`, `cache`, `retry`, `breaker`, `maintenance`, `operations`"
        );
    }

    #[test]
    fn errors_after_an_interpolated_value_keep_their_original_column() {
        let vars = Vars::default().set("LONG", "a-much-longer-value-than-the-reference");
        let file = TomlFile::from_text("g.toml", "[server]\nlisten = \"${LONG}\" x\n", &vars)
            .expect("interpolates");
        let diagnostic = file.parse::<GatewayConfig>().expect_err("trailing garbage");
        let location = diagnostic.location.expect("located");
        assert_eq!(
            (location.line, location.column),
            (2, 20),
            "the `x` after the value"
        );
    }
}
