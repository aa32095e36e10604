//! Settings, read once at start from the environment and an optional `.env` file, typed and
//! validated together. Every variable is read here and nowhere else, and `.env.example` lists each
//! one with its default (a test holds the two in step).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::backoff::Backoff;
use crate::domain::secret::Secret;
use crate::storage::DatabaseTarget;

mod oauth;
pub use oauth::{OauthFlow, OauthMode, OauthSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database: DatabaseTarget,
    pub database_pool_size: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    pub admin_token: Option<Secret>,
    pub shutdown_timeout: Duration,
    /// How long an `/api` request's JSON body may take to arrive once its headers have.
    pub api_body_timeout: Duration,
    pub webhooks: WebhookSettings,
    /// The Stripe account configured from `STRIPE_*` variables, if any.
    pub env_connection: Option<EnvConnection>,
    pub stripe: StripeSettings,
    /// The address Stripe reaches billmirror at; webhook URLs are built from it.
    pub public_url: String,
    /// Whether `PUBLIC_URL` was set, or `public_url` is only `http://{BIND}`.
    pub public_url_set: bool,
    /// The key that encrypts Stripe secrets at rest; see `vault`.
    pub master_key: Option<Secret>,
    /// How often every connection's key report is run again; `None` turns it off.
    pub key_recheck_interval: Option<Duration>,
    /// How often `serve` lists recent events from Stripe to recover missed webhooks; off by default.
    pub events_catchup_interval: Option<Duration>,
    /// Background jobs (invoice pushes, reading invoice lines): their retry policy and attempts.
    pub jobs: JobSettings,
    /// Chat notifications about events older than this when their turn comes are summarised in
    /// a digest instead of announced one by one.
    pub notify_max_age: Duration,
    /// How often the ops alerts are checked; `None` turns them off.
    pub notify_alerts_interval: Option<Duration>,
    /// When each ops alert fires.
    pub notify_alerts: crate::notify::ops::Thresholds,
    /// The email of the admin user made at first start, when no user exists.
    pub admin_email: String,
    /// Who may frame `/sidebar` (the CSP `frame-ancestors` sources), e.g. the helpdesk's origin.
    pub sidebar_frame_ancestors: String,
    /// "Connect with Stripe" (OAuth), when `STRIPE_OAUTH_FLOW` is set.
    pub oauth: Option<OauthSettings>,
}

#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    pub backoff: Backoff,
    /// Attempts before a job that keeps failing with errors that might pass is `dead`.
    pub max_attempts: u32,
    /// How long a claimed job stays its runner's: a job whose instance died is taken up by
    /// another after this long.
    pub lease: Duration,
}

/// How billmirror calls Stripe's API.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub api_base: String,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// Between attempts of one call; `Retry-After` wins.
    pub backoff: Backoff,
    /// Requests per second per connection; `None` picks the mode's default, `Some(0)` means none.
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How far a signature's timestamp may lie from our clock, either way.
    pub tolerance: Duration,
    pub max_body_bytes: usize,
    /// How long a webhook's body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// Attempts before an event that cannot be applied is parked as `dead`.
    pub max_event_attempts: u32,
    /// Between attempts to apply an event.
    pub retry_backoff: Backoff,
}

/// The connection configured from the environment. Keys are checked for their kind here; the full
/// key report (permissions, account status) is the connections API's job.
#[derive(Debug, Clone)]
pub struct EnvConnection {
    pub secret_key: Option<Secret>,
    pub publishable_key: Option<String>,
    /// Every secret that may sign a webhook (several during a rotation), none empty.
    pub webhook_secrets: Vec<Secret>,
}

/// Every problem found in the environment, each a sentence naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads `.env` (when present; real environment variables win) and reads the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        load_dotenv()?;
        Config::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::read(vars).0
    }

    /// Reads every variable (always all of them, so the set of names read is fixed) and returns
    /// the result together with the names it read.
    pub fn read(
        vars: &HashMap<String, String>,
    ) -> (Result<Config, ConfigError>, BTreeSet<&'static str>) {
        let env = Reader {
            vars,
            read: RefCell::default(),
            errors: RefCell::default(),
        };

        let bind = env.parsed("BIND", "127.0.0.1:8080".parse().ok());
        let database = env.database_url("DATABASE_URL");
        let database_pool_size = env
            .ranged("DATABASE_POOL_SIZE", 8, 1..=256)
            .map(|n| n as u32);
        let log_format = env.with("LOG_FORMAT", "text", |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("use `text` or `json`".to_owned()),
        });
        let log_level = env.with("LOG_LEVEL", "info", |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|e| e.to_string())
        });
        let admin_token = env.optional("BILLMIRROR_ADMIN_TOKEN").map(Secret::new);
        if admin_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().len() < 16)
        {
            env.fail(
                "BILLMIRROR_ADMIN_TOKEN",
                "must be at least 16 characters long",
            );
        }
        let shutdown_timeout = env
            .ranged("SHUTDOWN_TIMEOUT_SECS", 30, 1..=3600)
            .map(Duration::from_secs);
        let api_body_timeout = env
            .ranged("API_BODY_TIMEOUT_SECS", 15, 1..=300)
            .map(Duration::from_secs);
        let webhooks = (|| {
            Some(WebhookSettings {
                tolerance: Duration::from_secs(env.ranged(
                    "WEBHOOK_TOLERANCE_SECS",
                    300,
                    1..=86_400,
                )?),
                max_body_bytes: env.ranged("WEBHOOK_MAX_BODY_BYTES", 1 << 20, 1024..=(64 << 20))?
                    as usize,
                body_timeout: Duration::from_secs(env.ranged(
                    "WEBHOOK_BODY_TIMEOUT_SECS",
                    15,
                    1..=300,
                )?),
                max_event_attempts: env.ranged("MAX_EVENT_ATTEMPTS", 8, 1..=100)? as u32,
                retry_backoff: Backoff {
                    base: Duration::from_secs(env.ranged(
                        "EVENT_RETRY_BACKOFF_SECS",
                        10,
                        1..=3600,
                    )?),
                    cap: Duration::from_secs(env.ranged(
                        "EVENT_RETRY_MAX_SECS",
                        3600,
                        1..=86_400,
                    )?),
                    jitter: false,
                },
            })
        })();
        let env_connection = env_connection(&env);
        let stripe = (|| {
            Some(StripeSettings {
                api_base: env.with("STRIPE_API_BASE", "https://api.stripe.com", http_url)?,
                timeout: Duration::from_secs(env.ranged("STRIPE_TIMEOUT_SECS", 30, 1..=600)?),
                max_attempts: env.ranged("STRIPE_MAX_ATTEMPTS", 5, 1..=20)? as u32,
                backoff: stripe_backoff(Duration::from_millis(env.ranged(
                    "STRIPE_RETRY_BACKOFF_MS",
                    500,
                    1..=60_000,
                )?)),
                rate_limit: match env.optional("STRIPE_RATE_LIMIT") {
                    None => Some(None),
                    Some(_) => env
                        .ranged("STRIPE_RATE_LIMIT", 0, 0..=10_000)
                        .map(|n| Some(n as u32)),
                }?,
            })
        })();
        let public_url_set = env.optional("PUBLIC_URL").is_some();
        let public_url = match env.optional("PUBLIC_URL") {
            Some(url) => http_url(&url).map_err(|p| env.fail("PUBLIC_URL", p)).ok(),
            None => bind.map(|b| format!("http://{b}")),
        };
        let master_key = env.optional("BILLMIRROR_MASTER_KEY").map(Secret::new);
        if master_key
            .as_ref()
            .is_some_and(|k| crate::vault::parse_master_key(k.expose()).is_none())
        {
            env.fail(
                "BILLMIRROR_MASTER_KEY",
                "must be 64 hexadecimal characters (32 bytes); `openssl rand -hex 32` makes one",
            );
        }
        let key_recheck_interval = env.with("KEY_RECHECK_INTERVAL", "1h", |v| {
            if v == "off" || v == "0" {
                return Ok(None);
            }
            crate::domain::time::parse_duration(v).map(Some)
        });
        let events_catchup_interval = env.with("EVENTS_CATCHUP_INTERVAL", "off", |v| {
            if v == "off" || v == "0" {
                return Ok(None);
            }
            crate::domain::time::parse_duration(v).map(Some)
        });

        let jobs = (|| {
            Some(JobSettings {
                backoff: Backoff {
                    base: Duration::from_millis(env.ranged(
                        "JOB_RETRY_BACKOFF_MS",
                        1000,
                        1..=600_000,
                    )?),
                    cap: Duration::from_secs(env.ranged("JOB_RETRY_MAX_SECS", 600, 1..=86_400)?),
                    jitter: true,
                },
                max_attempts: env.ranged("JOB_MAX_ATTEMPTS", 30, 1..=1000)? as u32,
                lease: Duration::from_secs(env.ranged("JOB_LEASE_SECS", 300, 1..=86_400)?),
            })
        })();

        let notify_max_age = env.with("NOTIFY_MAX_AGE", "1h", crate::domain::time::parse_duration);
        let notify_alerts_interval = env.with("NOTIFY_ALERTS_INTERVAL", "1m", |v| {
            if v == "off" || v == "0" {
                return Ok(None);
            }
            crate::domain::time::parse_duration(v).map(Some)
        });
        let notify_alerts = (|| {
            let parse = crate::domain::time::parse_duration;
            Some(crate::notify::ops::Thresholds {
                signature_failures: env.ranged(
                    "NOTIFY_ALERT_SIGNATURE_FAILURES",
                    10,
                    1..=1_000_000,
                )? as i64,
                signature_window: env.with("NOTIFY_ALERT_SIGNATURE_WINDOW", "15m", parse)?,
                dead_events: env.ranged("NOTIFY_ALERT_DEAD_EVENTS", 1, 1..=1_000_000)? as i64,
                push_stuck_after: env.with("NOTIFY_ALERT_PUSH_STUCK_AFTER", "15m", parse)?,
            })
        })();
        let admin_email = env.with(
            "BILLMIRROR_ADMIN_EMAIL",
            crate::people::DEFAULT_ADMIN_EMAIL,
            |v| {
                crate::domain::Email::parse(v)
                    .map(|e| e.normalized())
                    .map_err(|p| format!("the email {p}"))
            },
        );
        let sidebar_frame_ancestors = env.with("SIDEBAR_FRAME_ANCESTORS", "'none'", |v| {
            crate::web::csp::frame_ancestors(v)
        });

        let oauth = oauth::oauth_settings(&env);

        let read = env.read.take();
        let errors = env.errors.take();
        let config = (|| {
            Some(Config {
                bind: bind?,
                database: database?,
                database_pool_size: database_pool_size?,
                log_format: log_format?,
                log_level: log_level?,
                admin_token,
                shutdown_timeout: shutdown_timeout?,
                api_body_timeout: api_body_timeout?,
                webhooks: webhooks?,
                env_connection: env_connection?,
                stripe: stripe?,
                public_url: public_url?,
                public_url_set,
                master_key,
                key_recheck_interval: key_recheck_interval?,
                events_catchup_interval: events_catchup_interval?,
                jobs: jobs?,
                notify_max_age: notify_max_age?,
                notify_alerts_interval: notify_alerts_interval?,
                notify_alerts: notify_alerts?,
                admin_email: admin_email?,
                sidebar_frame_ancestors: sidebar_frame_ancestors?,
                oauth: oauth?,
            })
        })();
        let config = match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigError(errors)),
        };
        (config, read)
    }
}

impl Config {
    /// What `serve` (and `sync`, which opens the same sealed secrets) needs beyond what every
    /// command needs, checked before the database is touched or a port bound.
    pub fn check_for_serve(&self) -> Result<(), ConfigError> {
        if self.master_key.is_none()
            && matches!(self.database.backend(), crate::storage::Backend::Postgres)
        {
            return Err(ConfigError(vec![
                "BILLMIRROR_MASTER_KEY is not set: it is required with PostgreSQL, where no key \
                 file can sit beside the database. `openssl rand -hex 32` makes one; keep it \
                 with your backups."
                    .to_owned(),
            ]));
        }
        Ok(())
    }

    /// Why Stripe cannot reach `public_url`, when that is plain: unset (only `http://{BIND}`), or
    /// a loopback or unspecified address.
    pub fn public_url_problem(&self) -> Option<&'static str> {
        if !self.public_url_set {
            Some("PUBLIC_URL is not set, so webhook URLs are built from BIND, which Stripe cannot reach")
        } else if is_loopback_url(&self.public_url) {
            Some("PUBLIC_URL is a loopback address: Stripe cannot deliver webhooks there")
        } else {
            None
        }
    }

    /// Loads `.env` and reads the environment like [`Config::from_env`], except that the three
    /// `STRIPE_*` key variables are taken out as they are, untrimmed and unchecked: `check-keys`
    /// reports on them (a trailing space, keys of two modes) instead of refusing to start.
    pub fn from_env_with_raw_keys() -> Result<(Config, RawStripeKeys), ConfigError> {
        load_dotenv()?;
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let raw = RawStripeKeys::take_from(&mut vars);
        Ok((Config::from_vars(&vars)?, raw))
    }
}

/// `STRIPE_SECRET_KEY`, `STRIPE_PUBLISHABLE_KEY` and `STRIPE_WEBHOOK_SECRET` exactly as set.
#[derive(Debug, Default, Clone)]
pub struct RawStripeKeys {
    pub secret_key: Option<Secret>,
    pub publishable_key: Option<String>,
    pub webhook_secrets: Vec<Secret>,
}

impl RawStripeKeys {
    /// Removes the three variables from `vars`; an empty value counts as unset.
    fn take_from(vars: &mut HashMap<String, String>) -> RawStripeKeys {
        let mut take = |name: &str| vars.remove(name).filter(|v| !v.is_empty());
        let secret_key = take("STRIPE_SECRET_KEY").map(Secret::new);
        let publishable_key = take("STRIPE_PUBLISHABLE_KEY");
        let webhook_secrets = take("STRIPE_WEBHOOK_SECRET")
            .map(|list| {
                split_secret_list(&list)
                    .into_iter()
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        RawStripeKeys {
            secret_key,
            publishable_key,
            webhook_secrets,
        }
    }
}

/// Splits a comma-separated list of secrets. Spaces next to a comma separate; spaces at either
/// end of the whole value belong to the secret beside them, so the report can point them out.
fn split_secret_list(list: &str) -> Vec<String> {
    let pieces: Vec<&str> = list.split(',').collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(n, piece)| {
            let piece = if n > 0 { piece.trim_start() } else { piece };
            let piece = if n < last { piece.trim_end() } else { piece };
            piece.to_owned()
        })
        .collect()
}

/// Whether Stripe plainly cannot reach this URL: its host is `localhost`, a loopback address or
/// an unspecified one (`0.0.0.0`, `[::]`).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => false,
    }
}

fn load_dotenv() -> Result<(), ConfigError> {
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            return Err(ConfigError(vec![format!(
                "the .env file cannot be read: {e}"
            )]));
        }
    }
    Ok(())
}

/// A Stripe call's retries: from the first delay, doubling with jitter up to 64 times it.
pub fn stripe_backoff(base: Duration) -> Backoff {
    Backoff {
        base,
        cap: base * 64,
        jitter: true,
    }
}

/// Reads `STRIPE_SECRET_KEY`, `STRIPE_PUBLISHABLE_KEY` and `STRIPE_WEBHOOK_SECRET`. `Some(None)`
/// means none is set; `None` means a value was refused (the reader holds the reason).
fn env_connection(env: &Reader<'_>) -> Option<Option<EnvConnection>> {
    let secret_key = env.optional("STRIPE_SECRET_KEY");
    let publishable_key = env.optional("STRIPE_PUBLISHABLE_KEY");
    let webhook_secrets = env.optional("STRIPE_WEBHOOK_SECRET");
    let mut ok = true;
    let mut mode_of = Vec::new();
    if let Some(key) = &secret_key {
        match key_mode(key, &["sk_", "rk_"]) {
            Some(mode) => mode_of.push(("STRIPE_SECRET_KEY", mode)),
            None => {
                ok = false;
                env.fail(
                    "STRIPE_SECRET_KEY",
                    "must start with sk_live_, sk_test_, rk_live_ or rk_test_",
                );
            }
        }
    }
    if let Some(key) = &publishable_key {
        match key_mode(key, &["pk_"]) {
            Some(mode) => mode_of.push(("STRIPE_PUBLISHABLE_KEY", mode)),
            None => {
                ok = false;
                env.fail(
                    "STRIPE_PUBLISHABLE_KEY",
                    "must start with pk_live_ or pk_test_",
                );
            }
        }
    }
    if let [(first, a), (second, b)] = mode_of[..] {
        if a != b {
            ok = false;
            env.fail(
                first,
                format!("is a {a} key but {second} is a {b} key: use keys of one mode"),
            );
        }
    }
    let mut secrets = Vec::new();
    if let Some(list) = &webhook_secrets {
        for (n, secret) in list.split(',').map(str::trim).enumerate() {
            if secret.is_empty() {
                ok = false;
                env.fail(
                    "STRIPE_WEBHOOK_SECRET",
                    format!(
                        "has an empty secret at position {}: remove the extra comma",
                        n + 1
                    ),
                );
            } else if !secret.starts_with("whsec_") || secret.len() < 12 {
                ok = false;
                env.fail(
                    "STRIPE_WEBHOOK_SECRET",
                    format!(
                        "secret {} does not look like a webhook signing secret (whsec_…)",
                        n + 1
                    ),
                );
            } else {
                secrets.push(Secret::new(secret.to_owned()));
            }
        }
    }
    if !ok {
        return None;
    }
    if secret_key.is_none() && publishable_key.is_none() && secrets.is_empty() {
        return Some(None);
    }
    Some(Some(EnvConnection {
        secret_key: secret_key.map(Secret::new),
        publishable_key,
        webhook_secrets: secrets,
    }))
}

impl EnvConnection {
    /// `live` or `test`, from whichever key is set (they were checked to agree).
    pub fn mode(&self) -> Option<&'static str> {
        self.secret_key
            .as_ref()
            .and_then(|k| key_mode(k.expose(), &["sk_", "rk_"]))
            .or_else(|| {
                self.publishable_key
                    .as_deref()
                    .and_then(|k| key_mode(k, &["pk_"]))
            })
    }
}

/// An `http://` or `https://` base URL, kept without its trailing slash.
fn http_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("it must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err("it names no host".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// `live` or `test` for a key of one of the given kinds (`sk_`, …), else `None`.
fn key_mode(key: &str, kinds: &[&str]) -> Option<&'static str> {
    let rest = kinds.iter().find_map(|kind| key.strip_prefix(kind))?;
    if rest.starts_with("live_") {
        Some("live")
    } else if rest.starts_with("test_") {
        Some("test")
    } else {
        None
    }
}

/// Reads variables by name, remembering which it read and every error it met.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    read: RefCell<BTreeSet<&'static str>>,
    errors: RefCell<Vec<String>>,
}

impl Reader<'_> {
    fn optional(&self, name: &'static str) -> Option<String> {
        self.read.borrow_mut().insert(name);
        self.vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn fail(&self, name: &str, problem: impl Display) {
        self.errors.borrow_mut().push(format!("{name} {problem}"));
    }

    fn with<T>(
        &self,
        name: &'static str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.optional(name);
        match parse(raw.as_deref().unwrap_or(default)) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.fail(
                    name,
                    format!(
                        "has an invalid value `{}`: {problem}",
                        raw.unwrap_or_default()
                    ),
                );
                None
            }
        }
    }

    fn parsed<T: FromStr>(&self, name: &'static str, default: Option<T>) -> Option<T>
    where
        T::Err: Display,
    {
        match self.optional(name) {
            None => default,
            Some(raw) => match raw.parse() {
                Ok(value) => Some(value),
                Err(e) => {
                    self.fail(name, format!("has an invalid value `{raw}`: {e}"));
                    None
                }
            },
        }
    }

    fn ranged(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        let value = self.parsed::<u64>(name, Some(default))?;
        if !range.contains(&value) {
            self.fail(
                name,
                format!(
                    "must be between {} and {}, not {value}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        Some(value)
    }

    fn database_url(&self, name: &'static str) -> Option<DatabaseTarget> {
        DatabaseTarget::parse(self.optional(name).as_deref())
            .map_err(|problem| self.fail(name, problem))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_start_on_sqlite_at_localhost_8080() {
        let config = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database,
            DatabaseTarget::Sqlite("billmirror.db".into())
        );
        assert_eq!(config.log_format, LogFormat::Text);
    }

    /// Each retry policy's waits, pinned: retry number → the longest wait before it.
    #[test]
    fn every_retry_policy_waits_as_documented() {
        let config = Config::from_vars(&HashMap::new()).unwrap();
        let waits = |policy: Backoff| -> Vec<u64> {
            [1, 2, 3, 5, 8, 30]
                .iter()
                .map(|n| policy.ceiling(*n).as_millis() as u64)
                .collect()
        };
        // Stripe calls: 0.5 s doubling up to 64 times it (32 s), with jitter.
        assert!(config.stripe.backoff.jitter);
        assert_eq!(
            waits(config.stripe.backoff),
            [500, 1_000, 2_000, 8_000, 32_000, 32_000]
        );
        // Jobs: 1 s doubling up to 10 minutes, with jitter; dead after 30 attempts.
        assert!(config.jobs.backoff.jitter);
        assert_eq!(
            waits(config.jobs.backoff),
            [1_000, 2_000, 4_000, 16_000, 128_000, 600_000]
        );
        assert_eq!(config.jobs.max_attempts, 30);
        // Events: 10 s doubling up to an hour, exactly; dead after 8 attempts.
        assert!(!config.webhooks.retry_backoff.jitter);
        assert_eq!(
            waits(config.webhooks.retry_backoff),
            [10_000, 20_000, 40_000, 160_000, 1_280_000, 3_600_000]
        );
        assert_eq!(config.webhooks.max_event_attempts, 8);

        let tuned = Config::from_vars(&vars(&[
            ("JOB_RETRY_BACKOFF_MS", "5"),
            ("JOB_RETRY_MAX_SECS", "1"),
            ("EVENT_RETRY_BACKOFF_SECS", "1"),
            ("EVENT_RETRY_MAX_SECS", "4"),
        ]))
        .unwrap();
        assert_eq!(waits(tuned.jobs.backoff), [5, 10, 20, 80, 640, 1_000]);
        assert_eq!(
            waits(tuned.webhooks.retry_backoff),
            [1_000, 2_000, 4_000, 4_000, 4_000, 4_000]
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_variable_name() {
        let error = Config::from_vars(&vars(&[
            ("BIND", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_POOL_SIZE", "0"),
        ]))
        .unwrap_err()
        .to_string();
        for name in ["BIND", "DATABASE_URL", "LOG_FORMAT", "DATABASE_POOL_SIZE"] {
            assert!(
                error.contains(&format!("- {name} ")),
                "{name} missing from: {error}"
            );
        }
    }

    #[test]
    fn a_short_admin_token_is_refused_without_echoing_it() {
        let error = Config::from_vars(&vars(&[("BILLMIRROR_ADMIN_TOKEN", "abc123")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("BILLMIRROR_ADMIN_TOKEN") && !error.contains("abc123"),
            "{error}"
        );
    }

    #[test]
    fn stripe_settings_are_checked_for_kind_mode_and_empty_secrets() {
        let error = Config::from_vars(&vars(&[
            ("STRIPE_SECRET_KEY", "sk_live_abcdefabcdefabcdef"),
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_abcdefabcdefabcdef"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_abcdefabcdef,,whsec_x"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "STRIPE_SECRET_KEY is a live key but STRIPE_PUBLISHABLE_KEY is a test key"
            ),
            "{error}"
        );
        assert!(error.contains("empty secret at position 2"), "{error}");
        assert!(error.contains("secret 3 does not look like"), "{error}");
        assert!(!error.contains("abcdef"), "values are not echoed: {error}");

        let config = Config::from_vars(&vars(&[
            ("STRIPE_SECRET_KEY", "rk_test_abcdefabcdefabcdef"),
            (
                "STRIPE_WEBHOOK_SECRET",
                " whsec_new_0000000000 , whsec_old_0000000000 ",
            ),
        ]))
        .unwrap();
        let env = config.env_connection.unwrap();
        assert_eq!(env.mode(), Some("test"));
        assert_eq!(env.webhook_secrets.len(), 2);

        let wrong_field =
            Config::from_vars(&vars(&[("STRIPE_SECRET_KEY", "pk_test_abcdef")])).unwrap_err();
        assert!(wrong_field
            .to_string()
            .contains("STRIPE_SECRET_KEY must start with"));
    }

    #[test]
    fn connect_with_stripe_is_checked_as_a_whole_with_each_variable_named() {
        let errors = |pairs: &[(&str, &str)]| match Config::from_vars(&vars(pairs)) {
            Ok(_) => Vec::new(),
            Err(ConfigError(errors)) => errors,
        };
        assert!(errors(&[("STRIPE_CONNECT_CLIENT_ID", "ca_123")])[0]
            .starts_with("STRIPE_CONNECT_CLIENT_ID is set but STRIPE_OAUTH_FLOW is not"));
        assert!(errors(&[("STRIPE_OAUTH_FLOW", "oauth")])[0].contains("use `connect`"));
        let missing = errors(&[("STRIPE_OAUTH_FLOW", "connect")]);
        assert!(missing
            .iter()
            .any(|e| e.starts_with("STRIPE_CONNECT_CLIENT_ID is required")));
        assert!(missing
            .iter()
            .any(|e| e.starts_with("STRIPE_PLATFORM_SECRET_KEY is required")));
        let twice = errors(&[
            ("STRIPE_OAUTH_FLOW", "connect"),
            ("STRIPE_CONNECT_CLIENT_ID", "ca_123"),
            (
                "STRIPE_PLATFORM_SECRET_KEY",
                "sk_test_aaaaaaaa, sk_test_bbbbbbbb",
            ),
        ]);
        assert!(twice[0].contains("two test keys"), "{twice:?}");
        assert!(!twice[0].contains("aaaaaaaa"), "keys are never echoed");
        let app = errors(&[
            ("STRIPE_OAUTH_FLOW", "app"),
            ("STRIPE_PLATFORM_SECRET_KEY", "sk_test_aaaaaaaa"),
            (
                "STRIPE_APP_INSTALL_LINK_LIVE",
                "https://marketplace.stripe.com/x",
            ),
        ]);
        assert!(app[0].contains("has no live key"), "{app:?}");

        let config = Config::from_vars(&vars(&[
            ("STRIPE_OAUTH_FLOW", "app"),
            (
                "STRIPE_PLATFORM_SECRET_KEY",
                "sk_test_aaaaaaaa,sk_live_bbbbbbbb",
            ),
            (
                "STRIPE_APP_INSTALL_LINK_TEST",
                "https://marketplace.stripe.com/t",
            ),
            (
                "STRIPE_APP_INSTALL_LINK_LIVE",
                "https://marketplace.stripe.com/l",
            ),
            ("STRIPE_CONNECT_WEBHOOK_SECRET_TEST", "whsec_connect_test_1"),
        ]))
        .unwrap();
        let oauth = config.oauth.unwrap();
        assert_eq!(oauth.flow, OauthFlow::App);
        let modes: Vec<_> = oauth.modes.iter().map(|m| m.mode.as_str()).collect();
        assert_eq!(modes, ["live", "test"], "live first");
        assert_eq!(oauth.modes[1].webhook_secrets.len(), 1);
        assert!(Config::from_vars(&vars(&[])).unwrap().oauth.is_none());
    }

    #[test]
    fn loopback_and_unspecified_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/x",
            "https://LOCALHOST.",
            "http://app.localhost",
            "http://[::1]:8080",
            "http://0.0.0.0:8080",
            "http://user@127.0.0.2",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://billmirror.example.com",
            "http://10.0.0.5:8080",
            "https://localhost.example.com",
            "http://[2001:db8::1]:80",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn public_url_unset_or_loopback_is_a_problem_to_warn_about() {
        let unset = Config::from_vars(&HashMap::new()).unwrap();
        assert!(unset.public_url_problem().unwrap().contains("not set"));
        let loopback =
            Config::from_vars(&vars(&[("PUBLIC_URL", "http://localhost:8080")])).unwrap();
        assert!(loopback.public_url_problem().unwrap().contains("loopback"));
        let bound = Config::from_vars(&vars(&[("BIND", "0.0.0.0:8080")])).unwrap();
        assert!(bound.public_url_problem().is_some());
        let public = Config::from_vars(&vars(&[
            ("BIND", "10.1.2.3:8080"),
            ("PUBLIC_URL", "https://billing.example.com"),
        ]))
        .unwrap();
        assert_eq!(public.public_url_problem(), None);
    }

    #[test]
    fn raw_stripe_keys_keep_their_spaces_and_mixed_modes() {
        let mut all = vars(&[
            ("STRIPE_SECRET_KEY", "sk_live_abcdefabcdefabcdef "),
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_abcdefabcdefabcdef"),
            (
                "STRIPE_WEBHOOK_SECRET",
                " whsec_one_00000000 , whsec_two_00000000 ",
            ),
            ("LOG_LEVEL", "warn"),
        ]);
        let raw = RawStripeKeys::take_from(&mut all);
        assert_eq!(
            raw.secret_key.unwrap().expose(),
            "sk_live_abcdefabcdefabcdef "
        );
        let secrets: Vec<&str> = raw.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, [" whsec_one_00000000", "whsec_two_00000000 "]);
        // What is left reads as a valid configuration: mixed modes no longer stop it.
        assert!(Config::from_vars(&all).is_ok());
    }

    #[test]
    fn serve_needs_a_master_key_on_postgres_only() {
        let pg = Config::from_vars(&vars(&[("DATABASE_URL", "postgres://u@h/db")])).unwrap();
        let error = pg.check_for_serve().unwrap_err().to_string();
        assert!(
            error.contains("BILLMIRROR_MASTER_KEY is not set"),
            "{error}"
        );
        let sqlite = Config::from_vars(&HashMap::new()).unwrap();
        assert!(sqlite.check_for_serve().is_ok());
    }

    /// `.env.example` is the configuration manual: it must list exactly what the code reads.
    #[test]
    fn env_example_lists_exactly_the_variables_the_code_reads() {
        let (_, read) = Config::read(&HashMap::new());
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
        let documented: BTreeSet<&str> = example
            .lines()
            .map(|line| line.trim_start_matches('#').trim())
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            })
            .collect();
        assert_eq!(
            documented, read,
            "documented in .env.example (left) vs read by the code (right)"
        );
    }

    /// systemd must wait longer than billmirror lets in-flight requests run.
    #[test]
    fn the_systemd_unit_waits_longer_than_the_shutdown_timeout() {
        let unit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/billmirror.service"
        ))
        .unwrap();
        let stop: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .expect("TimeoutStopSec=Ns");
        let config = Config::from_vars(&HashMap::new()).unwrap();
        assert!(stop > config.shutdown_timeout.as_secs(), "{stop}");
        for option in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "KillSignal=SIGTERM",
        ] {
            assert!(unit.contains(option), "{option}");
        }
    }

    /// Reading the environment anywhere else would bypass the check above.
    #[test]
    fn no_module_but_config_reads_the_environment() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut stack = vec![std::path::PathBuf::from(root)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("config.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in ["env::var(", "env::vars(", "env::var_os(", "dotenv"] {
                    assert!(!text.contains(needle), "{} calls {needle}", path.display());
                }
            }
        }
    }
}
