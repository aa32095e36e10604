//! The `billmirror` command line: parsing, wiring and start-up.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, RawStripeKeys};
use crate::domain::secret::Secret;
use crate::domain::Role;
use crate::http;
use crate::storage::{tokens, Db};
use crate::telemetry;
use crate::{app, auth, people};

#[derive(Parser)]
#[command(
    name = "billmirror",
    version,
    about = "Keeps a billing ledger in sync with Stripe.",
    long_about = "Keeps a billing ledger in sync with Stripe: verified webhooks into a durable \
                  inbox, applied exactly once to a local ledger on SQLite or PostgreSQL.",
    after_help = "Settings come from the environment or a .env file in the working directory; \
                  `billmirror serve --help` lists them with their defaults.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the HTTP API, webhooks and background workers until SIGTERM or
    /// SIGINT (both let in-flight requests finish).
    #[command(after_long_help = settings_help())]
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check Stripe keys, check by check, without saving them; exit code 1 when a check fails.
    ///
    /// Keys not given as options come from STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and
    /// STRIPE_WEBHOOK_SECRET, exactly as set (a stray space is reported, not trimmed). `-` reads
    /// a value from standard input, which keeps it out of the shell history.
    CheckKeys {
        /// Secret (sk_…) or restricted (rk_…) key; `-` reads it from standard input
        /// [env: STRIPE_SECRET_KEY].
        #[arg(long, value_name = "KEY")]
        secret_key: Option<String>,
        /// Publishable key (pk_…) [env: STRIPE_PUBLISHABLE_KEY].
        #[arg(long, value_name = "KEY")]
        publishable_key: Option<String>,
        /// Webhook signing secret (whsec_…); repeat it for a rotation
        /// [env: STRIPE_WEBHOOK_SECRET, comma-separated].
        #[arg(long, value_name = "SECRET")]
        webhook_secret: Vec<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fill the ledger from Stripe's lists (backfill), or with `--events` recover missed
    /// webhooks from Stripe's Events API. An interrupted backfill resumes where it stopped; exit
    /// code 1 when a resource was not completed.
    Sync {
        /// The connection's id: `env` for the one configured from STRIPE_SECRET_KEY, else as
        /// printed when it was made (GET /api/connections).
        #[arg(long, value_name = "ID")]
        connection: String,
        /// Only these resources (comma-separated, or repeat the option); default: all.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "RESOURCE")]
        only: Vec<Resource>,
        /// Only objects (or events) created since: a date (2026-11-01) or a span back (3d, 12h).
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// List events (at most 30 days back; default 3d) instead of objects.
        #[arg(long)]
        events: bool,
    },
    /// Compare the ledger with Stripe's lists (customers, subscriptions, invoices, payments,
    /// disputes) and print every difference; exit code 1 when there is drift.
    ///
    /// `--repair` feeds Stripe's current object for each difference through the inbox, as a
    /// backfill does, and folds it before exiting. `POST /api/connections/{id}/reconcile` does the
    /// same as a background job.
    Reconcile {
        /// The connection's id: `env` for the one configured from STRIPE_SECRET_KEY.
        #[arg(long, value_name = "ID")]
        connection: String,
        /// Bring the ledger back in step with what Stripe lists.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, list or revoke API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Create, list, disable or reset the password of the people who sign in to the web UI.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Copy a SQLite database, consistently, while `serve` runs (PostgreSQL: use pg_dump).
    ///
    /// The copy holds Stripe secrets sealed with the master key: keep the key (the database's
    /// `.key` file or BILLMIRROR_MASTER_KEY) as well, apart from the copy.
    Backup {
        /// Where to write the copy; it must not exist yet.
        file: std::path::PathBuf,
    },
    /// Print a shell completion script: `billmirror completions bash > /etc/bash_completion.d/billmirror`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it once (on standard output).
    Create {
        /// A name to recognise it by: 1 to 64 letters, digits, '.', '_' or '-'.
        #[arg(long)]
        name: String,
        /// What it may do; each role includes the ones before it.
        #[arg(long, value_parser = parse_role, value_name = "support|finance|ops|admin")]
        role: Role,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's id (tok_…) or name.
        id_or_name: String,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user; prints a generated password once (on standard output).
    Create {
        /// The email they sign in with.
        #[arg(long)]
        email: String,
        /// What they may do; each role includes the ones before it.
        #[arg(long, value_parser = parse_role, value_name = "support|finance|ops|admin")]
        role: Role,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (never their passwords).
    List,
    /// Disable a user at once, ending their sessions (`--enable` undoes it).
    Disable {
        /// The user's email (letter case does not matter).
        email: String,
        /// Enable the user again instead.
        #[arg(long)]
        enable: bool,
    },
    /// Set a new password (generated and printed once, or read with --password-stdin) and end
    /// the user's sessions.
    ResetPassword {
        /// The user's email (letter case does not matter).
        email: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// What `sync --only` accepts: Stripe's list endpoints, in the order the backfill fills them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum Resource {
    Customers,
    Products,
    Prices,
    Subscriptions,
    Invoices,
    Charges,
    PaymentIntents,
    Refunds,
    Disputes,
}

impl Resource {
    /// The name the backfill knows it by (`RESOURCES`).
    fn name(self) -> &'static str {
        match self {
            Resource::Customers => "customers",
            Resource::Products => "products",
            Resource::Prices => "prices",
            Resource::Subscriptions => "subscriptions",
            Resource::Invoices => "invoices",
            Resource::Charges => "charges",
            Resource::PaymentIntents => "payment_intents",
            Resource::Refunds => "refunds",
            Resource::Disputes => "disputes",
        }
    }
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

/// `serve --help`: every setting with its default, from `.env.example` (a test keeps that file
/// in step with what the code reads).
fn settings_help() -> String {
    let mut help = String::from(
        "Settings (environment variables, or a .env file in the working directory; real \
         environment variables win). Default values shown; see .env.example for each one's meaning:\n",
    );
    for line in include_str!("../.env.example").lines() {
        let Some((name, default)) = line.trim_start_matches('#').trim().split_once('=') else {
            continue;
        };
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            let default = if default.is_empty() {
                "(unset)"
            } else {
                default
            };
            help.push_str(&format!("\n  {name:<26} {default}"));
        }
    }
    help
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "billmirror",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    // `check-keys` reports on the STRIPE_* keys as they are; every other command refuses to
    // start on a bad one.
    let loaded = match cli.command {
        Command::CheckKeys { .. } => Config::from_env_with_raw_keys(),
        _ => Config::from_env().map(|config| (config, RawStripeKeys::default())),
    };
    let (config, raw_keys) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("billmirror: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(config.log_format, &config.log_level);
    let json_logs = config.log_format == crate::config::LogFormat::Json;
    if matches!(
        cli.command,
        Command::Serve | Command::Sync { .. } | Command::Reconcile { .. }
    ) {
        if let Err(error) = config.check_for_serve() {
            eprintln!("billmirror: {error}");
            return ExitCode::from(2);
        }
    }
    let outcome = match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::Token { action } => token(&config, action),
        Command::User { action } => user(&config, action),
        Command::Sync {
            connection,
            only,
            since,
            events,
        } => sync(&config, &connection, &only, since, events),
        Command::CheckKeys {
            secret_key,
            publishable_key,
            webhook_secret,
            json,
        } => check_keys(
            &config,
            raw_keys,
            secret_key,
            publishable_key,
            webhook_secret,
            json,
        ),
        Command::Reconcile {
            connection,
            repair,
            json,
        } => reconcile(&config, &connection, repair, json),
        Command::Backup { file } => backup(&config, &file),
        Command::Completions { .. } => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once, on standard error; JSON logs also get it as a log line for their pipeline.
            if json_logs {
                tracing::error!("{error:#}");
            }
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
        print_first_user(&state).await?;
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

/// Makes the first admin user of the web UI when no user exists, and prints its password once,
/// on standard output, never into the log.
async fn print_first_user(state: &http::AppState) -> anyhow::Result<()> {
    let email = state.config.admin_email.clone();
    let created = state
        .db
        .run(move |conn| Ok(people::ensure_initial_admin(conn, &email)))
        .await??;
    if let Some(created) = created {
        println!(
            "\nCreated the first admin user of the web UI. Its password is shown only this once:\n\n    \
             email:    {}\n    password: {}\n\nSign in at {}/login; `billmirror user create` adds \
             people, `billmirror user reset-password` sets a new password.\n",
            created.info.email,
            created.password.expose(),
            state.config.public_url.trim_end_matches('/'),
        );
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> anyhow::Result<Option<Secret>> {
    if !from_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(Some(Secret::new(line.trim_end_matches(['\r', '\n']))))
}

fn user(config: &Config, action: UserAction) -> anyhow::Result<()> {
    let db = open_database(config)?;
    let mut conn = db.blocking()?;
    match action {
        UserAction::Create {
            email,
            role,
            password_stdin,
        } => {
            let given = read_password(password_stdin)?;
            let generated = given.is_none();
            let created = people::create_user(&mut conn, &email, role, given, "cli")?;
            if generated {
                println!("{}", created.password.expose());
            }
            eprintln!(
                "Created user `{}` ({role}){}.",
                created.info.email,
                if generated {
                    "; the password is shown only this once"
                } else {
                    ""
                }
            );
        }
        UserAction::List => {
            println!("{:<38} {:<32} {:<8} STATE", "ID", "EMAIL", "ROLE");
            for user in people::list(&mut conn)? {
                let state = if user.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<32} {:<8} {state}",
                    user.id, user.email, user.role
                );
            }
        }
        UserAction::Disable { email, enable } => {
            let user = people::set_disabled(&mut conn, &email, !enable, "cli")?;
            let state = if enable { "enabled" } else { "disabled" };
            println!("{state} {} ({})", user.email, user.id);
        }
        UserAction::ResetPassword {
            email,
            password_stdin,
        } => {
            let given = read_password(password_stdin)?;
            let generated = given.is_none();
            let password = people::reset_password(&mut conn, &email, given, "cli")?;
            if generated {
                println!("{}", password.expose());
            }
            eprintln!("Set a new password for `{email}` and ended their sessions.");
        }
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

fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    use crate::storage::DatabaseTarget;
    let DatabaseTarget::Sqlite(source) = &config.database else {
        anyhow::bail!(
            "billmirror backup copies SQLite databases; back up PostgreSQL with its own tools, \
             e.g. `pg_dump --format=custom --file=billmirror.dump \"$DATABASE_URL\"` (restore with \
             pg_restore), and keep BILLMIRROR_MASTER_KEY safe apart from the dump"
        );
    };
    if !std::path::Path::new(source).exists() {
        anyhow::bail!("there is no database at {source} (DATABASE_URL)");
    }
    if file.exists() {
        anyhow::bail!("{} exists already: name a new file", file.display());
    }
    let path = file
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", file.display()))?;
    // The pool is opened without migrating: the copy is the database as it stands.
    let db = Db::connect(&config.database, 1)
        .map_err(|e| anyhow::anyhow!("cannot open the database at {source}: {e}"))?;
    crate::storage::backup::sqlite_copy(&mut *db.blocking()?, path)?;
    println!("Copied {source} to {path}.");
    let key = match &config.master_key {
        Some(_) => "BILLMIRROR_MASTER_KEY".to_owned(),
        None => format!("the key file {source}.key"),
    };
    eprintln!(
        "The Stripe keys and webhook secrets in the copy are sealed with the master key: without \
         {key} they cannot be read. Keep the key backed up too, apart from the copy."
    );
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
    env: RawStripeKeys,
    secret_key: Option<String>,
    publishable_key: Option<String>,
    webhook_secrets: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::domain::Secret;
    use crate::stripe::report::{KeyInput, Status};
    let keys = KeyInput {
        secret_key: match secret_key {
            Some(key) => Some(Secret::new(from_stdin_if_dash(key)?)),
            None => env.secret_key,
        },
        publishable_key: match publishable_key {
            Some(key) => Some(from_stdin_if_dash(key)?),
            None => env.publishable_key,
        },
        webhook_secrets: if webhook_secrets.is_empty() {
            env.webhook_secrets
        } else {
            webhook_secrets
                .into_iter()
                .map(|s| from_stdin_if_dash(s).map(Secret::new))
                .collect::<anyhow::Result<_>>()?
        },
    };
    if crate::connections::will_ask_stripe(&keys) {
        // Before the network call, which may take up to STRIPE_TIMEOUT_SECS per attempt.
        eprintln!("checking with Stripe…");
    }
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
fn parse_since(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let span = crate::domain::time::parse_duration(value)
        .map_err(|e| format!("{e}; or give a date such as 2026-11-01"))?;
    let span = chrono::Duration::from_std(span).map_err(|e| e.to_string())?;
    Ok(chrono::Utc::now() - span)
}

/// The drift report, run here rather than as a job; exit code 1 when drift is found.
fn reconcile(config: &Config, connection: &str, repair: bool, json: bool) -> anyhow::Result<()> {
    use crate::sync::reconcile;
    let db = open_database(config)?;
    let connections = app::connections(config, &db, crate::webhook::Endpoints::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let run = reconcile::new_run(&db, connection, repair, false)
            .await
            .map_err(|e| match e {
                reconcile::ReconcileError::Connection(
                    crate::connections::ConnectionError::NotFound,
                ) => anyhow::anyhow!(
                    "no active connection has the id `{connection}` (GET /api/connections lists \
                     them; `env` is the one configured from STRIPE_SECRET_KEY)"
                ),
                other => anyhow::anyhow!("{other}"),
            })?;
        let report = reconcile::run(&db, &connections, &run.id, |resource, drift| {
            if !json {
                eprintln!(
                    "{resource:<14} {:>7} in Stripe {:>7} here {:>5} differences",
                    drift.in_stripe,
                    drift.in_ledger,
                    drift.differences.len()
                );
            }
        })
        .await
        .map_err(|outcome| anyhow::anyhow!("the drift report stopped: {outcome:?}"))?;
        reconcile::finish(&db, &run.id, &report).await?;
        if repair {
            // Fold what the repair stored before exiting, as `serve` would.
            let stored = std::sync::Arc::new(tokio::sync::Notify::new());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let worker = tokio::spawn(crate::ledger::worker::run(
                db.clone(),
                stored.clone(),
                (&config.webhooks).into(),
                stopped,
            ));
            crate::ledger::worker::wait_until_applied(&db, &stored, None).await?;
            let _ = stop.send(true);
            let _ = worker.await;
        }
        Ok::<_, anyhow::Error>(report)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (resource, drift) in &report.resources {
            if let Some(message) = &drift.message {
                println!("{resource}: {message}");
            }
            for d in &drift.differences {
                let fields: Vec<String> = d
                    .fields
                    .iter()
                    .map(|f| format!("{}: here {} / Stripe {}", f.field, f.ledger, f.stripe))
                    .collect();
                println!("{resource} {} {:?} {}", d.id, d.kind, fields.join("; "));
            }
        }
        let repaired = if repair {
            ", repaired where Stripe has the object"
        } else {
            ""
        };
        println!("{} difference(s){repaired}", report.differences());
    }
    if report.differences() > 0 && !repair {
        anyhow::bail!("the ledger and Stripe differ (see above)");
    }
    Ok(())
}

fn sync(
    config: &Config,
    connection: &str,
    only: &[Resource],
    since: Option<chrono::DateTime<chrono::Utc>>,
    events: bool,
) -> anyhow::Result<()> {
    let db = open_database(config)?;
    // Known and active before anything starts, so a typo ends here with one sentence.
    let id = connection.to_owned();
    match crate::storage::connections::find(&mut *db.blocking()?, &id)? {
        None => anyhow::bail!(
            "no connection has the id `{connection}` (GET /api/connections lists them; `env` is \
             the one configured from STRIPE_SECRET_KEY)"
        ),
        Some(row) if row.status == crate::storage::connections::status::DISCONNECTED => {
            anyhow::bail!("the connection `{connection}` is disconnected")
        }
        Some(_) => {}
    }
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
            crate::sync::catch_up(&db, &connections, connection, since)
                .await
                .map(|report| {
                    println!(
                        "events: {} listed, {} new, {} already stored, {} unreadable",
                        report.listed, report.new, report.duplicates, report.unreadable
                    );
                    true
                })
                .map_err(anyhow::Error::from)
        } else {
            let options = crate::sync::BackfillOptions {
                only: only.iter().map(|r| r.name().to_owned()).collect(),
                since: since.map(|s| s.timestamp()),
            };
            let mut progress = crate::sync::progress::ProgressDisplay::new();
            let reports = crate::sync::backfill(&db, &connections, connection, &options, |p| {
                stored.notify_one();
                progress.update(p);
            })
            .await;
            progress.finish();
            reports
                .map(|reports| {
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
                    complete
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        // Whatever the outcome: apply what was stored, then stop the worker.
        crate::ledger::worker::wait_until_applied(&db, &stored, None).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_sync_resource_is_one_the_backfill_knows() {
        use clap::ValueEnum;
        let names: Vec<&str> = Resource::value_variants()
            .iter()
            .map(|r| r.name())
            .collect();
        assert_eq!(names, crate::sync::RESOURCES);
        for resource in Resource::value_variants() {
            let value = resource.to_possible_value().unwrap();
            assert_eq!(value.get_name(), resource.name());
        }
    }

    /// Every flag, argument and subcommand says what it is for in `--help`.
    #[test]
    fn every_flag_and_subcommand_has_a_help_line() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help line");
            }
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help line",
                    sub.get_name()
                );
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "billmirror");
    }

    #[test]
    fn serve_help_lists_every_setting() {
        let help = settings_help();
        for name in [
            "BIND",
            "DATABASE_URL",
            "PUBLIC_URL",
            "BILLMIRROR_MASTER_KEY",
            "SHUTDOWN_TIMEOUT_SECS",
        ] {
            assert!(
                help.contains(&format!("\n  {name} ")),
                "{name} missing: {help}"
            );
        }
    }
}
