//! Command-line interface: `serve`, `demo`, `check`. `anyhow` lives only here.
#![allow(
    clippy::print_stdout,
    reason = "the CLI's output is for people at a terminal"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use civicgraph::config::Vars;
use civicgraph::connectors::mainframe::Copybook;
use civicgraph::demo::{self, DemoOptions};
use civicgraph::server::{self, Gateway};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "civicgraph",
    version,
    about = "A consent-aware GraphQL gateway over legacy agency systems."
)]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CIVICGRAPH_LOG_FORMAT")]
    log_format: LogFormat,
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
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Check {
            layout: Some(copybook),
            ..
        } => layout(&copybook),
        Command::Check { config, .. } => check(&config),
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

fn check(config: &std::path::Path) -> ExitCode {
    match server::check(config, &Vars::from_env()) {
        Ok(checked) => {
            println!("{} is valid.", config.display());
            print!("{}", checked.graph.summary);
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            ExitCode::FAILURE
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
            tracing::info!(addr = %bound.local_addr(), "CivicGraph is listening.");
            bound
                .serve(server::shutdown_signal())
                .await
                .context("serving HTTP")?;
            Ok(())
        }
        Command::Demo {
            citizens,
            seed,
            port,
            config,
            ui_database_url,
        } => {
            let demo = demo::start(&DemoOptions {
                citizens,
                seed,
                port,
                config,
                ui_database_url,
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
            println!();
            println!("Open GraphiQL: {}", demo.graphiql_url());
            println!("and paste this query:");
            println!();
            println!("{}", demo::FIRST_QUERY);
            println!();
            println!("Press Ctrl-C to stop.");
            server::shutdown_signal().await;
            demo.shutdown().await.context("stopping the demo")?;
            Ok(())
        }
        Command::Check { .. } => unreachable!("check runs without a runtime"),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CIVICGRAPH_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
