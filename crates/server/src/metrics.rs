//! Prometheus metrics, written in its text format at `/metrics`: requests and their
//! latency by route and status, tokens the language model read and wrote, chat turns,
//! and recommendations served.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shopgraph_llm::{ChatRequest, Event, Llm};
use tokio::sync::mpsc;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub(crate) recommendations: AtomicU64,
    pub(crate) chat_turns: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    generations: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub(crate) fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(requests);
        let seconds = took.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = latency.entry(route.to_owned()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP shopgraph_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE shopgraph_http_requests_total counter\n");
        for ((method, route, status), n) in
            self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "shopgraph_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP shopgraph_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE shopgraph_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "shopgraph_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "shopgraph_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "shopgraph_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "shopgraph_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let counters = [
            (
                "shopgraph_recommendations_served_total",
                "Products returned in recommendation lists.",
                &self.recommendations,
            ),
            ("shopgraph_chat_turns_total", "Customer chat turns answered.", &self.chat_turns),
            (
                "shopgraph_llm_generations_total",
                "Generations the language model finished.",
                &self.generations,
            ),
            (
                "shopgraph_llm_prompt_tokens_total",
                "Prompt tokens the language model read.",
                &self.prompt_tokens,
            ),
            (
                "shopgraph_llm_completion_tokens_total",
                "Tokens the language model generated.",
                &self.completion_tokens,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// A language model whose token counts go to [`Metrics`].
pub struct Metered {
    inner: Arc<dyn Llm>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Llm>, metrics: Arc<Metrics>) -> Metered {
        Metered { inner, metrics }
    }
}

impl Llm for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Event> {
        let mut from = self.inner.stream(request);
        let (to, rx) = mpsc::channel(64);
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            while let Some(event) = from.recv().await {
                if let Event::Done(usage) = &event {
                    metrics.generations.fetch_add(1, Ordering::Relaxed);
                    metrics.prompt_tokens.fetch_add(usage.prompt_tokens as u64, Ordering::Relaxed);
                    metrics
                        .completion_tokens
                        .fetch_add(usage.completion_tokens as u64, Ordering::Relaxed);
                }
                // The caller went away: dropping `from` cancels the generation.
                if to.send(event).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}
