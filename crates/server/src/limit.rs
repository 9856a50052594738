//! Rate limits: a token bucket per key or per address, refilled continuously at the
//! allowed rate, holding up to two seconds' worth (a burst).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets not touched for this long are forgotten.
const IDLE: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// Takes one request from `name`'s bucket, allowed `per_second` on average; when
    /// it is empty, how long until it is not. A rate of 0 means no limit.
    pub(crate) fn take(&self, name: &str, per_second: u32) -> Result<(), Duration> {
        if per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(per_second);
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
        }
        let bucket = match buckets.get_mut(name) {
            Some(b) => b,
            None => buckets.entry(name.to_owned()).or_insert(Bucket { tokens: burst, at: now }),
        };
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_and_says_how_long_to_wait() {
        let limiter = Limiter::default();
        for _ in 0..10 {
            assert!(limiter.take("ip:1", 5).is_ok());
        }
        let wait = limiter.take("ip:1", 5).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        // Another caller has a bucket of its own; no limit is no limit.
        assert!(limiter.take("ip:2", 5).is_ok());
        for _ in 0..1000 {
            assert!(limiter.take("key:bench", 0).is_ok());
        }
    }
}
