//! Command-line interface: `serve`, `demo`, `check`, `migrate`, `token`, `consent verify`,
//! `audit verify`. `anyhow` lives only here.
#![allow(
    clippy::print_stdout,
    reason = "the CLI's output is for people at a terminal"
)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use civicgraph::audit;
use civicgraph::config::{Vars, load_gateway_config};
use civicgraph::connectors::mainframe::Copybook;
use civicgraph::consent::receipt;
use civicgraph::demo::{self, DemoOptions};
use civicgraph::server::{self, Gateway};
use civicgraph::signing::{SigningError, SigningKey};
use civicgraph::store::Store;
use civicgraph::telemetry;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "civicgraph",
    version,
    about = "A consent-aware GraphQL gateway over legacy agency systems."
)]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors. Default: `[telemetry]
    /// log_format` of the configuration, else `text`.
    #[arg(long, global = true, value_enum, env = "CIVICGRAPH_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The gateway's configuration file.
        #[arg(long, default_value = "civicgraph.toml", env = "CIVICGRAPH_CONFIG")]
        config: PathBuf,
    },
    /// Bring the store's schema up to date (`serve` does this too at start) and exit.
    Migrate {
        /// The gateway's configuration file.
        #[arg(long, default_value = "civicgraph.toml", env = "CIVICGRAPH_CONFIG")]
        config: PathBuf,
    },
    /// Mint a development token with the local development key and print only the token.
    /// Refused unless the configuration's local development issuer is on.
    Token {
        /// The gateway's configuration file.
        #[arg(
            long,
            default_value = "civicgraph.toml",
            env = "CIVICGRAPH_CONFIG",
            global = true
        )]
        config: PathBuf,
        /// How long the token is valid, in minutes.
        #[arg(long, default_value_t = 60, global = true)]
        ttl_minutes: u32,
        #[command(subcommand)]
        persona: TokenPersona,
    },
    /// Start simulated agencies with synthetic citizens and the gateway in front of them.
    Demo {
        /// How many synthetic citizens.
        #[arg(long, default_value_t = 1000)]
        citizens: usize,
        /// Seed for the synthetic data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The gateway's port on 127.0.0.1.
        #[arg(long, default_value_t = 4000)]
        port: u16,
        /// The configuration whose schema/ and connectors/ the demo serves.
        #[arg(long, default_value = "civicgraph.toml")]
        config: PathBuf,
        /// Unemployment insurance database to seed and serve (postgres://, mysql://,
        /// mariadb:// or sqlite:); its ui_claimants and ui_claims tables are replaced.
        /// Default: an SQLite file in a temporary directory.
        #[arg(long, value_name = "URL", env = "CIVICGRAPH_DEMO_UI_DATABASE_URL")]
        ui_database_url: Option<String>,
        /// How many changes a minute the simulated agencies make (job losses, moves, births),
        /// for the gateway's life events; 0 keeps their data still. The registry signs its
        /// birth webhooks with REGISTRY_WEBHOOK_SECRET from the environment, or a fresh secret.
        #[arg(long, default_value_t = 30, value_name = "N")]
        events_per_minute: u32,
    },
    /// Validate the configuration, the schema and the connectors; print a summary.
    Check {
        /// The gateway's configuration file.
        #[arg(long, default_value = "civicgraph.toml", env = "CIVICGRAPH_CONFIG")]
        config: PathBuf,
        /// Instead, parse this COBOL copybook and print every record's layout: each field's
        /// offset, length, picture and usage.
        #[arg(long, value_name = "COPYBOOK")]
        layout: Option<PathBuf>,
    },
    /// Consent receipts.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Work with the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every record's hash and link and every signed checkpoint; exit 1 naming the
    /// first bad record, 2 when the check could not run.
    Verify {
        /// The gateway's configuration file (`[storage]`, `[trust] signing_key`, `[audit]`).
        #[arg(long, default_value = "civicgraph.toml", env = "CIVICGRAPH_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenPersona {
    /// A citizen acting for themself.
    Citizen {
        /// Their canonical id, e.g. C0000001.
        citizen_id: String,
    },
    /// An agency client acting for one purpose.
    Agency {
        /// The OAuth client id, e.g. benefits-eligibility-portal.
        client_id: String,
        /// Scopes, comma-separated, e.g. citizen:lookup,dmv:read.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The purpose code the token states, e.g. benefit-eligibility.
        #[arg(long)]
        purpose: String,
        /// The agency code; by default the client id's first word when it names an agency.
        #[arg(long)]
        agency: Option<String>,
    },
    /// A gateway operator.
    Operator {
        /// The operator's name.
        #[arg(default_value = "operator")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Check a consent receipt's signature with the gateway's key (`[trust] signing_key`) and
    /// say what it records. Exits 1 when the receipt is refused, 2 when it cannot be checked.
    Verify {
        /// The gateway's configuration file.
        #[arg(long, default_value = "civicgraph.toml", env = "CIVICGRAPH_CONFIG")]
        config: PathBuf,
        /// The receipt (a compact JWS); `-` or nothing reads standard input.
        #[arg(value_name = "RECEIPT")]
        receipt: Option<PathBuf>,
    },
}

/// The largest receipt read; real ones are a few kilobytes.
const MAX_RECEIPT_BYTES: u64 = 64 * 1024;

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    // Kept until the process ends: dropping it sends the spans not yet exported.
    let _telemetry = init_tracing(cli.log_format, &cli.command);
    match cli.command {
        Command::Check {
            layout: Some(copybook),
            ..
        } => layout(&copybook),
        Command::Check { config, .. } => check(&config),
        Command::Consent {
            command: ConsentCommand::Verify { config, receipt },
        } => verify_receipt(&config, receipt.as_deref()),
        Command::Token {
            config,
            ttl_minutes,
            persona,
        } => token(&config, ttl_minutes, persona),
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            if let Command::Audit {
                command: AuditCommand::Verify { config },
            } = &command
            {
                return runtime.block_on(audit_verify(config));
            }
            match runtime.block_on(run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `civicgraph token …`: the token alone on stdout, so `TOKEN=$(civicgraph token …)` works.
fn token(config: &Path, ttl_minutes: u32, persona: TokenPersona) -> ExitCode {
    use civicgraph::auth::dev_tokens::{self, Persona};
    let (gateway, root) = match load_gateway_config(config, &Vars::from_env()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let persona = match persona {
        TokenPersona::Citizen { citizen_id } => {
            match civicgraph::identity::CitizenId::parse(citizen_id.trim()) {
                Ok(id) => Persona::Citizen(id),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            }
        }
        TokenPersona::Agency {
            client_id,
            scopes,
            purpose,
            agency,
        } => {
            let agency =
                agency.or_else(|| dev_tokens::agency_of_client(&client_id, &gateway.trust));
            let Some(agency) = agency else {
                eprintln!(
                    "error: `{client_id}` does not start with an agency code; pass --agency <CODE>"
                );
                return ExitCode::from(2);
            };
            Persona::Agency {
                client_id,
                agency,
                scopes: scopes
                    .into_iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                purpose,
            }
        }
        TokenPersona::Operator { name } => Persona::Operator { name },
    };
    let ttl = chrono::Duration::minutes(i64::from(ttl_minutes.max(1)));
    match dev_tokens::mint(&gateway, &root, &persona, chrono::Utc::now(), ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    match server::check(config, &Vars::from_env()) {
        Ok(checked) => {
            println!("{} is valid.", config.display());
            print!("{}", checked.graph.summary);
            let events = checked.rules.summary();
            if !events.is_empty() {
                println!("life events ({} rules):", events.len());
                for line in events {
                    println!("  {line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            ExitCode::FAILURE
        }
    }
}

/// `audit verify`: 0 when the chain and its checkpoints hold, 1 when they do not, 2 when they
/// could not be checked (a bad configuration, an unreachable store, a missing key).
async fn audit_verify(config: &std::path::Path) -> ExitCode {
    match verify_audit_chain(config).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn verify_audit_chain(config_path: &std::path::Path) -> anyhow::Result<bool> {
    let (config, root) = load_gateway_config(config_path, &Vars::from_env())?;
    let checkpoints = root.join(&config.audit.checkpoint_file);
    // Verifying must never make a key: a new one would call every checkpoint forged.
    // Errors are flattened to their text, which already includes their source's.
    let key = SigningKey::load(&root.join(&config.trust.signing_key)).map_err(|error| {
        anyhow::anyhow!(
            "the audit checkpoints are checked with the gateway's signing key (`[trust] signing_key`): {error}"
        )
    })?;
    let store = Store::connect(&config.storage)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let report = audit::verify(&store, &checkpoints, key.verifier()).await;
    store.close().await;
    let report = report.map_err(|error| anyhow::anyhow!("{error}"))?;
    if report.checkpoints == 0 && !checkpoints.exists() {
        println!(
            "note: there is no checkpoint file at {}, so a cut-off tail of the chain could go unnoticed",
            checkpoints.display()
        );
    }
    match &report.problem {
        None => {
            println!(
                "audit chain OK: {} records, {} checkpoints, head {} {}",
                report.records,
                report.checkpoints,
                report.head.seq,
                report.head.hash.get(..16).unwrap_or(&report.head.hash)
            );
            Ok(true)
        }
        Some(problem) => {
            let place = match (problem.record(), problem.line()) {
                (Some(seq), _) => format!("record {seq}"),
                (None, Some(line)) => {
                    format!("checkpoint line {line} of {}", checkpoints.display())
                }
                (None, None) => "the chain head".to_string(),
            };
            println!("audit chain BROKEN at {place}: {problem}");
            Ok(false)
        }
    }
}

fn layout(path: &std::path::Path) -> ExitCode {
    match Copybook::load(path) {
        Ok(copybook) => {
            for record in &copybook.records {
                println!("{}", copybook.layout_table(record));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn verify_receipt(config: &Path, receipt: Option<&Path>) -> ExitCode {
    let loaded = receipt_key(config).and_then(|key| Ok((key, read_receipt(receipt)?)));
    let (key, jws) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    match receipt::verify(key.verifier(), &jws) {
        Ok(claims) => {
            print!("{}", claims.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("receipt refused: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The signing key `[trust] signing_key` names, relative to the configuration file. Only an
/// existing key: verifying must never make one.
fn receipt_key(config: &Path) -> anyhow::Result<SigningKey> {
    let (gateway, root) = load_gateway_config(config, &Vars::from_env())?;
    let path = root.join(&gateway.trust.signing_key);
    match SigningKey::load(&path) {
        Err(SigningError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "the signing key {} does not exist; receipts are checked with the key that \
                 signed them (`[trust] signing_key` in {})",
                path.display(),
                config.display()
            )
        }
        loaded => Ok(loaded?),
    }
}

/// The receipt's text from a file, or standard input for `-` or no path.
fn read_receipt(path: Option<&Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    let (source, name): (Box<dyn std::io::Read>, String) = match path {
        None => (Box::new(std::io::stdin()), "standard input".into()),
        Some(path) if path == Path::new("-") => {
            (Box::new(std::io::stdin()), "standard input".into())
        }
        Some(path) => (
            Box::new(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            path.display().to_string(),
        ),
    };
    source
        .take(MAX_RECEIPT_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {name}"))?;
    if text.len() as u64 > MAX_RECEIPT_BYTES {
        anyhow::bail!("{name} is larger than 64 KiB; a consent receipt is a few kilobytes");
    }
    Ok(text)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let gateway = Gateway::load(&config, &Vars::from_env()).await?;
            let summary = gateway.summary();
            tracing::info!(
                types = summary.types.len(),
                fields = summary.fields,
                connectors = summary.connectors.len(),
                "Graph loaded."
            );
            let bound = gateway.bind().await?;
            let addr = bound.local_addr();
            // Logged once SIGHUP reloads (instead of ending the process) and edits are watched.
            let serving = bound.serve(server::shutdown_signal());
            tracing::info!(%addr, "CivicGraph is listening.");
            serving.await.context("serving HTTP")?;
            Ok(())
        }
        Command::Demo {
            citizens,
            seed,
            port,
            config,
            ui_database_url,
            events_per_minute,
        } => {
            let demo = demo::start(&DemoOptions {
                citizens,
                seed,
                port,
                config: config.clone(),
                ui_database_url,
                state_dir: None,
                events_per_minute,
                // Read from the environment by the demo, never from the command line.
                registry_webhook_secret: None,
                // `CIVICGRAPH_GRAPHIQL_ASSETS` in the environment, through the configuration.
                graphiql_assets_dir: None,
            })
            .await?;
            println!();
            println!("CivicGraph demo: {citizens} synthetic citizens (seed {seed})");
            println!("  person registry  {}", demo.agencies.registry_url);
            println!("  tax agency       {}", demo.agencies.tax_url);
            println!(
                "  motor vehicles   {}{} (SOAP 1.1)",
                demo.agencies.dmv_url,
                demo::dmv::SOAP_PATH
            );
            println!(
                "  unemployment     {} ({} claims)",
                demo.ui_database.display_url(),
                demo.ui_database.seeded.claims
            );
            println!(
                "  benefits         {} (mainframe: EBCDIC records over TCP, transaction BNQ1)",
                demo.agencies.benefits_addr
            );
            println!(
                "  benefit payments {} (nightly extract files)",
                demo.agencies.benefits_extract_dir.display()
            );
            match &demo.simulator {
                Some(simulator) => println!(
                    "  life changes     {} a minute: job losses, moves, births (births also POSTed, signed, to {}/events/registry)",
                    simulator.events_per_minute(),
                    demo.gateway.url()
                ),
                None => println!("  life changes     none (--events-per-minute 0)"),
            }
            if let Some(inboxes) = &demo.inboxes {
                println!(
                    "  agency inboxes   {} (the signed life-event webhooks each agency received)",
                    inboxes.url()
                );
            }
            println!();
            println!(
                "Open GraphiQL: {} (one tab per persona, tokens preset)",
                demo.graphiql_url()
            );
            println!();
            if let Some(personas) = &demo.personas {
                println!("Tokens (12 h; more with `civicgraph token`):");
                println!("  citizen {}  {}", personas.citizen_id, personas.citizen);
                println!(
                    "  agency {} (purpose {})  {}",
                    demo::DEMO_AGENCY_CLIENT,
                    demo::DEMO_PURPOSE,
                    personas.agency
                );
                println!("  operator  {}", personas.operator);
                println!();
            }
            println!("As the citizen (header `Authorization: Bearer <citizen token>`), paste:");
            println!();
            println!("{}", demo::FIRST_QUERY);
            println!();
            println!(
                "Then, as the agency, ask for the same citizen: personal fields are CONSENT_REQUIRED until the citizen runs grantConsent (see the GraphiQL tabs)."
            );
            println!();
            println!(
                "Watch life events arrive (GraphiQL, as the operator): subscription {{ lifeEvents {{ type citizenId subject {{ name id }} recordedAt }} }}"
            );
            println!();
            println!("Check the audit trail from another terminal:");
            println!(
                "  CIVICGRAPH_STORAGE_URL='{}' CIVICGRAPH_AUDIT_CHECKPOINTS='{}' cargo run --release -- audit verify --config {}",
                demo.state.storage_url,
                demo.state.checkpoints.display(),
                config.display()
            );
            println!();
            println!("Press Ctrl-C to stop.");
            server::shutdown_signal().await;
            demo.shutdown().await.context("stopping the demo")?;
            Ok(())
        }
        Command::Migrate { config } => {
            let checked = server::check(&config, &Vars::from_env())?;
            let store = civicgraph::store::Store::connect(&checked.config.storage)
                .await
                .context("opening the store")?;
            store.close().await;
            println!("The store's schema is up to date.");
            Ok(())
        }
        Command::Check { .. } | Command::Consent { .. } | Command::Token { .. } => {
            unreachable!("check, consent and token run without a runtime")
        }
        Command::Audit { .. } => unreachable!("audit verify has its own exit codes"),
    }
}

/// Logging and tracing per `[telemetry]` of the command's configuration (unreadable or absent:
/// the defaults; the command itself then reports the configuration's errors), with
/// `--log-format` winning over `log_format`.
fn init_tracing(format: Option<LogFormat>, command: &Command) -> telemetry::TelemetryGuard {
    let config_path = match command {
        Command::Serve { config } | Command::Migrate { config } | Command::Demo { config, .. } => {
            Some(config.as_path())
        }
        _ => None,
    };
    let config = config_path
        .and_then(|path| load_gateway_config(path, &Vars::from_env()).ok())
        .map(|(gateway, _)| gateway.telemetry)
        .unwrap_or_default();
    let format = match format {
        Some(LogFormat::Text) => civicgraph::config::LogFormat::Text,
        Some(LogFormat::Json) => civicgraph::config::LogFormat::Json,
        None => config.log_format,
    };
    telemetry::init(format, &config).unwrap_or_else(|error| {
        eprintln!("warning: {error}");
        telemetry::TelemetryGuard::default()
    })
}
