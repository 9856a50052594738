//! A model behind a network: timeouts, retries with backoff, and a circuit breaker.
//!
//! [`Resilient`] wraps any [`Llm`] (in practice [`crate::remote::Remote`]):
//!
//! - an attempt that produces nothing within `first_event` is abandoned;
//! - an attempt that fails before producing anything (the host unreachable, a 5xx, the
//!   first-event timeout) is tried again, up to `retries` times, after a backoff that
//!   doubles each time, with jitter so replicas do not retry in step; an attempt that
//!   already streamed text is never repeated (the caller has shown it), and a refusal
//!   of the request itself (4xx) is not either;
//! - after `trip_after` failed calls in a row the breaker opens: for `cool_down` every
//!   call fails at once, so a dead host costs the customer nothing but the fallback.
//!   Then one call is let through; its success closes the breaker, its failure opens
//!   it again.
//!
//! Callers see [`LlmError::Unavailable`] for a call the open breaker refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::{ChatRequest, Event, Llm, LlmError};

/// How hard to try.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The longest wait for an attempt's first event (text, tool call or end).
    pub first_event: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry; doubled for each next one.
    pub backoff: Duration,
    /// Failed calls in a row that open the breaker.
    pub trip_after: u32,
    /// How long the open breaker refuses calls.
    pub cool_down: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            first_event: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(200),
            trip_after: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The breaker's state, for logs and `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Refusing calls.
    Open,
    /// The cool-down is over: one trial call may go, or is out.
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_out: bool,
}

/// A model with timeouts, retries and a circuit breaker around it.
pub struct Resilient {
    inner: Arc<dyn Llm>,
    policy: Policy,
    breaker: Arc<Mutex<Breaker>>,
}

impl Resilient {
    pub fn new(inner: Arc<dyn Llm>, policy: Policy) -> Resilient {
        Resilient {
            inner,
            policy,
            breaker: Arc::new(Mutex::new(Breaker {
                failures: 0,
                open_until: None,
                trial_out: false,
            })),
        }
    }

    pub fn state(&self) -> BreakerState {
        let b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match b.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }
}

/// May a call go out now? Takes the half-open breaker's one trial.
fn admit(breaker: &Mutex<Breaker>) -> Result<(), LlmError> {
    let mut b = breaker.lock().unwrap_or_else(|e| e.into_inner());
    match b.open_until {
        None => Ok(()),
        Some(until) if Instant::now() < until => Err(LlmError::Unavailable(format!(
            "the model server failed {} calls in a row; trying again in {:.0?}",
            b.failures,
            until - Instant::now()
        ))),
        Some(_) if b.trial_out => {
            Err(LlmError::Unavailable("the model server is on trial after failing".into()))
        }
        Some(_) => {
            b.trial_out = true;
            Ok(())
        }
    }
}

fn record(breaker: &Mutex<Breaker>, policy: &Policy, ok: bool) {
    let mut b = breaker.lock().unwrap_or_else(|e| e.into_inner());
    b.trial_out = false;
    if ok {
        if b.open_until.is_some() {
            tracing::info!("the model server answers again: breaker closed");
        }
        b.failures = 0;
        b.open_until = None;
    } else {
        b.failures += 1;
        if b.failures >= policy.trip_after {
            if b.open_until.is_none_or(|until| Instant::now() >= until) {
                tracing::warn!(
                    failures = b.failures,
                    "the model server keeps failing: breaker open for {:?}",
                    policy.cool_down
                );
            }
            b.open_until = Some(Instant::now() + policy.cool_down);
        }
    }
}

/// Worth another attempt: the network or the server, not the request.
fn retryable(e: &LlmError) -> bool {
    matches!(e, LlmError::Transport(_) | LlmError::Timeout(_))
}

impl Llm for Resilient {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(64);
        let inner = Arc::clone(&self.inner);
        let policy = self.policy.clone();
        let breaker = Arc::clone(&self.breaker);
        tokio::spawn(async move {
            if let Err(e) = admit(&breaker) {
                let _ = tx.send(Event::Failed(e)).await;
                return;
            }
            let mut attempt = 0;
            loop {
                let mut events = inner.stream(request.clone());
                let first = tokio::time::timeout(policy.first_event, events.recv()).await;
                let failure = match first {
                    Err(_) => LlmError::Timeout(policy.first_event),
                    Ok(None) => LlmError::Transport("the model stream closed at once".into()),
                    Ok(Some(Event::Failed(e))) => e,
                    Ok(Some(event)) => {
                        // It answers: from here on, whatever comes is the caller's.
                        record(&breaker, &policy, true);
                        if tx.send(event).await.is_err() {
                            return;
                        }
                        while let Some(event) = events.recv().await {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                };
                drop(events);
                if !retryable(&failure) {
                    // The server is up and refused this request: not its health's fault.
                    record(&breaker, &policy, true);
                    let _ = tx.send(Event::Failed(failure)).await;
                    return;
                }
                record(&breaker, &policy, false);
                if attempt >= policy.retries || admit(&breaker).is_err() || tx.is_closed() {
                    let _ = tx.send(Event::Failed(failure)).await;
                    return;
                }
                attempt += 1;
                let base = policy.backoff * 2u32.pow(attempt - 1);
                let jitter = base.mul_f64(rand_unit() * 0.5);
                tracing::debug!(attempt, error = %failure, "retrying the model server");
                tokio::time::sleep(base + jitter).await;
            }
        });
        rx
    }
}

/// A number in [0, 1) that differs between calls and processes (for jitter only).
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{ChatMessage, Role, Usage, complete};

    /// Fails the first `fail` calls (with `error`), then answers "ok".
    struct Flaky {
        fail: u32,
        calls: AtomicU32,
        error: fn() -> LlmError,
    }

    impl Llm for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn stream(&self, _request: ChatRequest) -> mpsc::Receiver<Event> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel(4);
            let fails = n < self.fail;
            let error = (self.error)();
            tokio::spawn(async move {
                if fails {
                    let _ = tx.send(Event::Failed(error)).await;
                } else {
                    let _ = tx.send(Event::Text("ok".into())).await;
                    let _ = tx.send(Event::Done(Usage::default())).await;
                }
            });
            rx
        }
    }

    fn flaky(fail: u32, error: fn() -> LlmError) -> Arc<Flaky> {
        Arc::new(Flaky { fail, calls: AtomicU32::new(0), error })
    }

    fn request() -> ChatRequest {
        ChatRequest::new(vec![ChatMessage::new(Role::User, "hi")], 4)
    }

    fn quick() -> Policy {
        Policy {
            first_event: Duration::from_millis(200),
            retries: 2,
            backoff: Duration::from_millis(5),
            trip_after: 3,
            cool_down: Duration::from_millis(300),
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let inner = flaky(2, || LlmError::Transport("connection refused".into()));
        let llm = Resilient::new(inner.clone(), quick());
        let done = complete(&llm, request(), WAIT).await.unwrap();
        assert_eq!(done.text, "ok");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        assert_eq!(llm.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_refused_request_is_not_retried() {
        let inner = flaky(1, || LlmError::Request("400: bad schema".into()));
        let llm = Resilient::new(inner.clone(), quick());
        let err = complete(&llm, request(), WAIT).await.unwrap_err();
        assert!(matches!(err, LlmError::Request(_)), "{err}");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dead_server_opens_the_breaker_and_a_recovered_one_closes_it() {
        // Fails 3 attempts (one call with its two retries), then answers.
        let inner = flaky(3, || LlmError::Transport("503".into()));
        let llm = Resilient::new(inner.clone(), quick());
        let err = complete(&llm, request(), WAIT).await.unwrap_err();
        assert!(matches!(err, LlmError::Transport(_)), "{err}");
        assert_eq!(llm.state(), BreakerState::Open);
        // Open: refused without calling the server.
        let err = complete(&llm, request(), WAIT).await.unwrap_err();
        assert!(matches!(err, LlmError::Unavailable(_)), "{err}");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        // After the cool-down one trial goes out; it succeeds and closes the breaker.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(complete(&llm, request(), WAIT).await.unwrap().text, "ok");
        assert_eq!(llm.state(), BreakerState::Closed);
    }

    /// Never says anything.
    struct Silent;

    impl Llm for Silent {
        fn name(&self) -> &str {
            "silent"
        }
        fn stream(&self, _request: ChatRequest) -> mpsc::Receiver<Event> {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            });
            rx
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out_per_attempt() {
        let policy = Policy { retries: 1, ..quick() };
        let llm = Resilient::new(Arc::new(Silent), policy);
        let err = complete(&llm, request(), WAIT).await.unwrap_err();
        // The attempt's own limit gave up, not the caller's.
        assert!(matches!(err, LlmError::Timeout(d) if d == Duration::from_millis(200)), "{err}");
    }
}
