//! The `billmirror` command line: parsing, wiring and start-up.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::domain::Role;
use crate::http;
use crate::storage::{tokens, Db};
use crate::telemetry;
use crate::{app, auth};

#[derive(Parser)]
#[command(
    name = "billmirror",
    version,
    about = "Keeps a billing ledger in sync with Stripe."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the HTTP API, webhooks and background workers.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create, list or revoke API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it once.
    Create {
        #[arg(long)]
        name: String,
        /// support, finance, ops or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id or name.
    Revoke { id_or_name: String },
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("billmirror: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(config.log_format, &config.log_level);
    let outcome = match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::Token { action } => token(&config, action),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("billmirror: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_database(config: &Config) -> anyhow::Result<Db> {
    let cannot_open = |e| {
        anyhow::anyhow!(
            "cannot open the database at {} (DATABASE_URL): {e}",
            config.database
        )
    };
    let db = Db::connect(&config.database, config.database_pool_size).map_err(cannot_open)?;
    for name in db.migrate().map_err(cannot_open)? {
        tracing::info!(migration = %name, "applied migration");
    }
    Ok(db)
}

fn migrate(config: &Config) -> anyhow::Result<()> {
    open_database(config)?;
    println!("migrations are current on {}", config.database);
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let db = open_database(&config)?;
    if let Some(issued) =
        auth::ensure_initial_admin(&mut *db.blocking()?, config.admin_token.clone())?
    {
        if config.admin_token.is_some() {
            println!("Created the admin token `initial-admin` from BILLMIRROR_ADMIN_TOKEN.");
        } else {
            // Printed once, on standard output, never into the log.
            println!(
                "\nCreated the first admin API token. It is shown only this once:\n\n    {}\n\n\
                 Use it as `Authorization: Bearer <token>`; `billmirror token create` makes more.\n",
                issued.token.expose()
            );
        }
    }
    let listener = TcpListener::bind(config.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (BIND): {e}", config.bind))?;
    tracing::info!(bind = %config.bind, database = %config.database, "billmirror is serving");
    let state = app::state(config, db)?;
    actix_web::rt::System::new().block_on(async move {
        let workers = app::Workers::start(&state);
        // Returns once SIGTERM/SIGINT arrived and in-flight requests finished.
        let served = http::server(state, listener)?.await;
        workers.stop().await;
        served?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn token(config: &Config, action: TokenAction) -> anyhow::Result<()> {
    let db = open_database(config)?;
    let mut conn = db.blocking()?;
    match action {
        TokenAction::Create { name, role } => {
            let issued = auth::create_token(&mut conn, &name, role, "cli", None)?;
            println!("{}", issued.token.expose());
            eprintln!(
                "Created token `{}` ({role}); it is shown only this once.",
                issued.info.name
            );
        }
        TokenAction::List => {
            println!(
                "{:<38} {:<24} {:<8} {:<12} STATE",
                "ID", "NAME", "ROLE", "HINT"
            );
            for row in tokens::list(&mut conn)? {
                let state = if row.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<24} {:<8} {:<12} {state}",
                    row.id, row.name, row.role, row.token_hint
                );
            }
        }
        TokenAction::Revoke { id_or_name } => {
            match auth::revoke_token(&mut conn, &id_or_name, "cli")? {
                Some(info) => println!("revoked {} ({})", info.name, info.id),
                None => anyhow::bail!("no token has the id or name `{id_or_name}`"),
            }
        }
    }
    Ok(())
}
