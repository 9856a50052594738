//! The server's settings: a TOML file (`shopgraph serve --config FILE`), then
//! environment variables, then these defaults. `config.example.toml` beside this
//! crate's manifest lists every setting with its default.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::auth::ApiKey;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    pub rate_limit: RateLimit,
    /// Who may call: names, roles and the SHA-256 of each key.
    pub api_keys: Vec<ApiKey>,
    /// Signs customers' session tokens (hex, at least 32 bytes). Without it a random
    /// secret is drawn at start, and tokens end with the process.
    pub session_secret: Option<String>,
    /// Seconds one chat turn's generation may take.
    pub llm_timeout_secs: u64,
    /// Every this many seconds the recommender is fitted again if events arrived
    /// (requests go on meanwhile); 0: only at start.
    pub refit_secs: u64,
    /// The Telegram bot, which runs when `TELOXIDE_TOKEN` is set.
    pub telegram: TelegramConfig,
    /// An experiment on customers' recommendations: each customer gets one arm's
    /// strategy, by a stable hash of their id, and the answer names the arm.
    pub experiment: Option<ExperimentConfig>,
    /// Every this many milliseconds the store is read for what other replicas wrote
    /// (products, users, interests, events, segments, rules) and this replica's graph,
    /// search index and caches take it in: the bound on how stale a replica is. 0: never
    /// (one server alone, which sees its own writes at once anyway).
    pub follow_ms: u64,
    /// This replica's name in the job runs (default: its address and process id).
    pub replica: Option<String>,
    /// Background jobs that run once for all replicas.
    pub jobs: JobsConfig,
}

/// Jobs that write the store for every replica, each run by one replica per period
/// (see `shopgraph_store::Store::claim_job`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Seconds between segmentations of the shoppers; 0: only when asked.
    pub segments_every_secs: u64,
    /// Seconds between minings of the association rules; 0: only when asked.
    pub rules_every_secs: u64,
}

/// A split of customers between recommendation strategies.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Names the experiment in reports; it salts the hash, so a new name reshuffles.
    pub name: String,
    /// `STRATEGY=WEIGHT`, the control first. Strategies: `personal` (the customer's
    /// history and interests) and `popular` (what sells, ordered by their interests).
    pub arms: Vec<String>,
}

/// The strategies an experiment's arms may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Personal,
    Popular,
}

impl Strategy {
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "personal" => Some(Strategy::Personal),
            "popular" => Some(Strategy::Popular),
            _ => None,
        }
    }
}

/// How the Telegram bot reaches the Bot API and talks to chats. Its token is never in
/// the file: it comes from `TELOXIDE_TOKEN`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The Bot API server (a local one, `telegram-bot-api`, or a test's); Telegram's own
    /// when not given. `TELOXIDE_API_URL` overrides it.
    pub api_url: Option<String>,
    /// `polling` (long polling, the default) or `webhook`.
    pub mode: TelegramMode,
    /// Webhook mode: the public HTTPS address Telegram posts updates to. Its path is
    /// served on this server's own listener.
    pub webhook_url: Option<String>,
    /// Webhook mode: Telegram sends it with every update and updates without it are
    /// refused (1 to 256 of `A-Z a-z 0-9 _ -`). Required, and the same for every
    /// replica behind the address.
    pub webhook_secret: Option<String>,
    /// Messages a second to one chat (Telegram asks bots for about one), in bursts of
    /// at most `chat_burst`.
    pub chat_rate: f64,
    pub chat_burst: u32,
    /// Messages a second to all chats together (Telegram's limit is about 30).
    pub global_rate: f64,
    /// How often agents' answers are looked for and delivered, in milliseconds.
    pub delivery_ms: u64,
    /// How many times one message is tried when the Bot API says "retry after" or the
    /// network fails.
    pub send_attempts: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Requests per second for each API key (bursts of twice that); 0: no limit.
    pub per_key: u32,
    /// Requests per second for each address without a key (customers' chat pages,
    /// anonymous calls).
    pub per_ip: u32,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 1024 * 1024,
            rate_limit: RateLimit::default(),
            api_keys: Vec::new(),
            session_secret: None,
            llm_timeout_secs: 60,
            refit_secs: 600,
            telegram: TelegramConfig::default(),
            experiment: None,
            follow_ms: 1000,
            replica: None,
            jobs: JobsConfig::default(),
        }
    }
}

impl Default for TelegramConfig {
    fn default() -> TelegramConfig {
        TelegramConfig {
            api_url: None,
            mode: TelegramMode::Polling,
            webhook_url: None,
            webhook_secret: None,
            chat_rate: 1.0,
            chat_burst: 3,
            global_rate: 30.0,
            delivery_ms: 1000,
            send_attempts: 4,
        }
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit { per_key: 10_000, per_ip: 20 }
    }
}

impl ServerConfig {
    /// Reads a TOML file; unknown settings are refused, so a typo is not silently ignored.
    pub fn from_file(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The experiment, checked: at least two arms, each a known strategy.
    pub(crate) fn experiment(
        &self,
    ) -> Result<Option<(shopgraph_insight::experiments::Experiment, Vec<Strategy>)>, String> {
        let Some(e) = &self.experiment else { return Ok(None) };
        let arms = crate::insight::arms(&e.arms).map_err(|e| format!("experiment: {e}"))?;
        let strategies = arms
            .iter()
            .map(|a| {
                Strategy::parse(&a.name).ok_or_else(|| {
                    format!("experiment arm {:?}: the strategies are personal and popular", a.name)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let experiment = shopgraph_insight::experiments::Experiment::new(&e.name, arms)
            .map_err(|e| format!("experiment: {e}"))?;
        Ok(Some((experiment, strategies)))
    }

    /// The session secret's bytes, or a fresh random one.
    pub(crate) fn secret(&self) -> Result<Vec<u8>, String> {
        match &self.session_secret {
            None => Ok(rand::random::<[u8; 32]>().to_vec()),
            Some(hex) => {
                let hex = hex.trim();
                if hex.len() < 64 || hex.len() % 2 != 0 {
                    return Err("session_secret must be at least 64 hex digits".into());
                }
                (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| "session_secret must be hex digits".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_a_typo_is_refused() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = ServerConfig::from_file(&example).unwrap();
        assert_eq!(config.api_keys.len(), 2);
        assert!(config.secret().unwrap().len() >= 32);
        let bad: Result<ServerConfig, _> = toml::from_str("adress = \"127.0.0.1:1\"");
        assert!(bad.unwrap_err().to_string().contains("adress"));
    }
}
