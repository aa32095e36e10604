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
    /// Check Stripe keys, check by check, without saving them. Keys not given as options come
    /// from STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET. `-` reads a value
    /// from standard input (keeps it out of the shell history). Exits 1 when a check fails.
    CheckKeys {
        #[arg(long)]
        secret_key: Option<String>,
        #[arg(long)]
        publishable_key: Option<String>,
        /// May be given several times (a rotation).
        #[arg(long)]
        webhook_secret: Vec<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fill the ledger from Stripe's history (backfill), or with `--events` recover missed
    /// webhooks from Stripe's Events API. An interrupted backfill resumes where it stopped.
    Sync {
        /// The connection's id (`billmirror` prints it when it is created; GET /api/connections).
        #[arg(long)]
        connection: String,
        /// Only these resources, comma-separated: customers, products, prices, subscriptions,
        /// invoices, charges, payment_intents, refunds, disputes.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Only objects (or events) created since: a date (2026-11-01) or a span back (3d, 12h).
        #[arg(long)]
        since: Option<String>,
        /// List events (at most 30 days back) instead of objects.
        #[arg(long)]
        events: bool,
    },
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
    if matches!(cli.command, Command::Serve | Command::Sync { .. }) {
        if let Err(error) = config.check_for_serve() {
            eprintln!("billmirror: {error}");
            return ExitCode::from(2);
        }
    }
    let outcome = match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::Token { action } => token(&config, action),
        Command::Sync {
            connection,
            only,
            since,
            events,
        } => sync(&config, &connection, only, since.as_deref(), events),
        Command::CheckKeys {
            secret_key,
            publishable_key,
            webhook_secret,
            json,
        } => check_keys(&config, secret_key, publishable_key, webhook_secret, json),
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

/// Checks what it can before it touches anything: the configuration (in `main`), then the port,
/// then the database; the first admin token is printed only once the app could be built.
fn serve(config: Config) -> anyhow::Result<()> {
    if let Some(problem) = config.public_url_problem() {
        tracing::warn!(
            public_url = %config.public_url,
            "{problem}; set PUBLIC_URL to the https:// address Stripe reaches billmirror at \
             (webhook endpoints cannot be registered in Stripe until then)"
        );
    }
    let listener = TcpListener::bind(config.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (BIND): {e}", config.bind))?;
    let db = open_database(&config)?;
    actix_web::rt::System::new().block_on(async move {
        let signals = crate::shutdown::Signals::listen()?;
        let shutdown_timeout = config.shutdown_timeout.as_secs();
        let (bind, database) = (config.bind, config.database.to_string());
        let state = app::state(config, db).await?;
        print_first_token(&state).await?;
        let workers = app::Workers::start(&state);
        let server = http::server(state, listener)?;
        let stopper =
            actix_web::rt::spawn(signals.stop_on_signal(server.handle(), shutdown_timeout));
        tracing::info!(%bind, %database, "billmirror is serving");
        // Returns once a signal arrived and in-flight requests finished.
        let served = server.await;
        stopper.abort();
        workers.stop().await;
        served?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Makes the first admin token when no token exists, and prints it once, on standard output,
/// never into the log.
async fn print_first_token(state: &http::AppState) -> anyhow::Result<()> {
    let from_env = state.config.admin_token.clone();
    let given = from_env.is_some();
    let issued = state
        .db
        .run(move |conn| Ok(auth::ensure_initial_admin(conn, from_env)))
        .await??;
    if issued.is_some() && given {
        println!("Created the admin token `initial-admin` from BILLMIRROR_ADMIN_TOKEN.");
    } else if let Some(issued) = issued {
        println!(
            "\nCreated the first admin API token. It is shown only this once:\n\n    {}\n\n\
             Use it as `Authorization: Bearer <token>`; `billmirror token create` makes more.\n",
            issued.token.expose()
        );
    }
    Ok(())
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

/// A value given as `-` is read from standard input, one line, without its line break.
fn from_stdin_if_dash(value: String) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

fn check_keys(
    config: &Config,
    secret_key: Option<String>,
    publishable_key: Option<String>,
    webhook_secrets: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::domain::Secret;
    use crate::stripe::report::{KeyInput, Status};
    let env = config.env_connection.as_ref();
    let keys = KeyInput {
        secret_key: match secret_key {
            Some(key) => Some(Secret::new(from_stdin_if_dash(key)?)),
            None => env.and_then(|e| e.secret_key.clone()),
        },
        publishable_key: match publishable_key {
            Some(key) => Some(from_stdin_if_dash(key)?),
            None => env.and_then(|e| e.publishable_key.clone()),
        },
        webhook_secrets: if webhook_secrets.is_empty() {
            env.map(|e| e.webhook_secrets.clone()).unwrap_or_default()
        } else {
            webhook_secrets
                .into_iter()
                .map(|s| from_stdin_if_dash(s).map(Secret::new))
                .collect::<anyhow::Result<_>>()?
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crate::connections::check_keys(
        &config.stripe,
        &config.public_url,
        &keys,
    ));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            let status = match check.status {
                Status::Pass => "pass",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
            };
            let name = serde_json::to_value(check.name)?;
            println!(
                "{status:<5} {:<24} {}",
                name.as_str().unwrap_or_default(),
                check.message
            );
        }
        println!(
            "\n{}",
            if report.ok {
                "The keys are usable."
            } else {
                "The keys are not usable: fix the failing checks above."
            }
        );
    }
    if !report.ok {
        anyhow::bail!("the key report has failing checks");
    }
    Ok(())
}

/// `--since`: a date, or a span back from now.
fn parse_since(value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let span = crate::domain::time::parse_duration(value)
        .map_err(|e| anyhow::anyhow!("--since: {e}; or give a date such as 2026-11-01"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(span)?)
}

fn sync(
    config: &Config,
    connection: &str,
    only: Vec<String>,
    since: Option<&str>,
    events: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let since = since.map(parse_since).transpose()?;
    let db = open_database(config)?;
    let connections = app::connections(config, &db, crate::webhook::Endpoints::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Fold what is stored as it arrives, as `serve` would.
        let stored = std::sync::Arc::new(tokio::sync::Notify::new());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(crate::ledger::worker::run(
            db.clone(),
            stored.clone(),
            (&config.webhooks).into(),
            stopped,
        ));
        let outcome = if events {
            let since = since.unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::days(3));
            let report = crate::sync::catch_up(&db, &connections, connection, since).await?;
            println!(
                "events: {} listed, {} new, {} already stored, {} unreadable",
                report.listed, report.new, report.duplicates, report.unreadable
            );
            Ok(true)
        } else {
            let terminal = std::io::stderr().is_terminal();
            let options = crate::sync::BackfillOptions {
                only,
                since: since.map(|s| s.timestamp()),
            };
            let reports = crate::sync::backfill(&db, &connections, connection, &options, |p| {
                stored.notify_one();
                if terminal {
                    eprint!(
                        "\r{:<16} {:>9} objects {:>8} new  {:>7.0}/s   ",
                        p.resource, p.objects, p.new_events, p.objects_per_second
                    );
                } else {
                    tracing::info!(
                        resource = p.resource,
                        objects = p.objects,
                        new_events = p.new_events,
                        pages = p.pages,
                        rate = p.objects_per_second,
                        "backfill progress"
                    );
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if terminal {
                eprintln!();
            }
            let mut complete = true;
            for report in &reports {
                complete &= matches!(report.outcome, "complete" | "already_complete");
                println!(
                    "{:<16} {:<18} {:>9} objects {:>8} new{}",
                    report.resource,
                    report.outcome,
                    report.objects,
                    report.new_events,
                    report
                        .message
                        .as_deref()
                        .map(|m| format!("  {m}"))
                        .unwrap_or_default()
                );
            }
            Ok::<_, anyhow::Error>(complete)
        };
        // Wait until the worker has applied what was stored, then stop it.
        loop {
            stored.notify_one();
            let pending = db.run(crate::storage::events::count_pending).await?;
            if pending == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = stop.send(true);
        let _ = worker.await;
        match outcome? {
            true => Ok(()),
            false => {
                anyhow::bail!("the sync did not finish every resource; run it again to resume")
            }
        }
    })
}
