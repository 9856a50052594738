//! Sending to chats within Telegram's limits: a message is at most 4,096 characters
//! (longer answers are split at paragraph, line or word boundaries), a chat gets about
//! one message a second and all chats together about thirty, and a "retry after" from
//! the Bot API is waited out before the message is tried again.

use std::collections::HashMap;
use std::time::Duration;

use teloxide::payloads::SendMessageSetters;
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InlineKeyboardMarkup};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Telegram's longest message, in UTF-16 code units (what its limit counts).
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// Splits `text` into messages of at most `limit` UTF-16 units, preferring to cut
/// between paragraphs, then lines, then words; a word longer than a message is cut
/// where it must be. Nothing is lost but the whitespace at a cut.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    assert!(limit > 0, "a message limit of 0");
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if units(rest) <= limit {
            parts.push(rest.to_owned());
            break;
        }
        // The longest prefix that fits, in bytes, on a char boundary.
        let mut fit = 0;
        let mut used = 0;
        for (i, c) in rest.char_indices() {
            used += c.len_utf16();
            if used > limit {
                break;
            }
            fit = i + c.len_utf8();
        }
        let head = &rest[..fit];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| head.rfind(sep).filter(|&at| at > 0))
            .unwrap_or(fit);
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = rest[cut..].trim_start();
    }
    parts
}

fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// How long to wait before trying a message again after `error` (the `attempt`th), or
/// `None` when trying again would fail the same way (a blocked bot, a bad request).
fn retry_in(error: &RequestError, attempt: u32) -> Option<Duration> {
    let backoff = Duration::from_millis(500 * 2u64.pow(attempt.min(6)));
    match error {
        // Telegram's flood control says how long; wait that, then try again.
        RequestError::RetryAfter(after) => Some(after.duration()),
        RequestError::Network(_) | RequestError::Io(_) => Some(backoff),
        // A proxy's error page instead of the Bot API's JSON.
        RequestError::InvalidJson { .. } => Some(backoff),
        // The Bot API's own server errors (teloxide has already waited 10 s on them).
        RequestError::Api(ApiError::Unknown(what))
            if [
                "Internal Server Error",
                "Bad Gateway",
                "Gateway Timeout",
                "Service Unavailable",
            ]
            .iter()
            .any(|e| what.starts_with(e)) =>
        {
            Some(backoff)
        }
        _ => None,
    }
}

/// A token bucket: `rate` a second, at most `burst` at once.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token; how long to wait first when there is none.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Why a message did not reach a chat.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the Bot API refused the message: {0}")]
    Refused(RequestError),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: RequestError },
}

/// Limits for [`Outbox`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub chat_rate: f64,
    pub chat_burst: u32,
    pub global_rate: f64,
    pub attempts: u32,
}

/// Every message the bot sends goes through here.
pub struct Outbox {
    bot: Bot,
    limits: Limits,
    chats: Mutex<HashMap<i64, Bucket>>,
    global: Mutex<Bucket>,
}

/// Chats whose buckets are kept before idle ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl Outbox {
    pub fn new(bot: Bot, limits: Limits) -> Outbox {
        let limits = Limits {
            chat_rate: limits.chat_rate.max(0.01),
            chat_burst: limits.chat_burst.max(1),
            global_rate: limits.global_rate.max(0.01),
            attempts: limits.attempts.max(1),
        };
        let global = Bucket { tokens: limits.global_rate, at: Instant::now() };
        Outbox { bot, limits, chats: Mutex::default(), global: Mutex::new(global) }
    }

    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// Sends `text` to `chat`, split as Telegram needs; `buttons` go under the last part.
    pub async fn send(
        &self,
        chat: i64,
        text: &str,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<(), SendError> {
        let parts = split_message(text, MAX_MESSAGE_UNITS);
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            let markup = if i == last { buttons.clone() } else { None };
            self.send_one(chat, part, markup).await?;
        }
        Ok(())
    }

    async fn send_one(
        &self,
        chat: i64,
        text: &str,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<(), SendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_turn(chat).await;
            let mut request = self.bot.send_message(ChatId(chat), text);
            if let Some(b) = &buttons {
                request = request.reply_markup(b.clone());
            }
            let Err(error) = request.await else { return Ok(()) };
            let Some(wait) = retry_in(&error, attempt) else {
                return Err(SendError::Refused(error));
            };
            if attempt >= self.limits.attempts {
                return Err(SendError::GaveUp { attempts: attempt, last: error });
            }
            tracing::warn!(
                chat,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "telegram: {error}; trying again"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until both the chat's and the bot's buckets allow one more message.
    async fn wait_turn(&self, chat: i64) {
        let now = Instant::now();
        let chat_wait = {
            let mut chats = self.chats.lock().await;
            if chats.len() >= MAX_BUCKETS {
                let rate = self.limits.chat_rate;
                let burst = f64::from(self.limits.chat_burst);
                // Idle long enough to be full again: nothing to remember.
                chats.retain(|_, b| {
                    now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
                });
            }
            let bucket = chats
                .entry(chat)
                .or_insert(Bucket { tokens: f64::from(self.limits.chat_burst), at: now });
            bucket.take(self.limits.chat_rate, f64::from(self.limits.chat_burst), now)
        };
        let global_wait = self.global.lock().await.take(
            self.limits.global_rate,
            self.limits.global_rate.max(1.0),
            now,
        );
        let wait = chat_wait.max(global_wait);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("  hello  ", 4096), vec!["hello"]);
        assert!(split_message("   ", 4096).is_empty());
    }

    #[test]
    fn long_text_is_cut_at_paragraphs_then_lines_then_words() {
        let text = "aaaa bbbb\n\ncccc dddd\neeee";
        assert_eq!(split_message(text, 12), vec!["aaaa bbbb", "cccc dddd", "eeee"]);
        assert_eq!(split_message("one two three", 8), vec!["one two", "three"]);
    }

    #[test]
    fn a_word_longer_than_a_message_is_cut_anyway() {
        assert_eq!(split_message("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn limits_count_utf16_units_and_never_split_a_character() {
        // Each emoji is two UTF-16 units: three of them do not fit in five.
        let parts = split_message("😀😀😀", 5);
        assert_eq!(parts, vec!["😀😀", "😀"]);
        let chinese = "书".repeat(5000);
        let parts = split_message(&chinese, MAX_MESSAGE_UNITS);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| units(p) <= MAX_MESSAGE_UNITS));
        assert_eq!(parts.concat(), chinese);
    }

    #[test]
    fn every_part_fits_and_only_whitespace_is_lost() {
        let text: String = (0..3000).map(|i| format!("word{i} ")).collect();
        let parts = split_message(&text, MAX_MESSAGE_UNITS);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| units(p) <= MAX_MESSAGE_UNITS));
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squeeze(&parts.join(" ")), squeeze(&text));
    }

    #[test]
    fn retry_after_is_honoured_and_refusals_are_final() {
        use teloxide::types::Seconds;
        let after = RequestError::RetryAfter(Seconds::from_seconds(7));
        assert_eq!(retry_in(&after, 1), Some(Duration::from_secs(7)));
        let down = RequestError::Api(ApiError::Unknown("Internal Server Error".into()));
        assert_eq!(retry_in(&down, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry_in(&down, 3), Some(Duration::from_secs(4)));
        for refused in [
            RequestError::Api(ApiError::BotBlocked),
            RequestError::Api(ApiError::MessageIsTooLong),
            RequestError::Api(ApiError::Unknown("Bad Request: chat not found".into())),
        ] {
            assert_eq!(retry_in(&refused, 1), None, "{refused}");
        }
    }

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Bucket { tokens: 3.0, at: start };
        for _ in 0..3 {
            assert_eq!(b.take(1.0, 3.0, start), Duration::ZERO);
        }
        let wait = b.take(1.0, 3.0, start);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Two seconds later the debt is paid and one token is back.
        let later = start + Duration::from_secs(2);
        assert_eq!(b.take(1.0, 3.0, later), Duration::ZERO);
    }
}
