//! The language model behind one trait.
//!
//! [`Llm`] streams a chat completion as [`Event`]s: text as it is decoded, tool calls,
//! and a final [`Usage`]. Two backends implement it:
//!
//! - [`local::Local`] (feature `local`, on by default): mistral.rs in this process,
//!   one GGUF file from a local folder, on the CPU (or an NVIDIA GPU with `cuda`);
//! - [`remote::Remote`]: any server that speaks the OpenAI chat-completions protocol
//!   (mistral.rs's own server, vLLM, or `shopgraph serve`), for shops whose traffic
//!   needs GPU hosts.
//!
//! [`resilient::Resilient`] puts timeouts, retries and a circuit breaker around a model
//! behind a network.
//!
//! Everything above this crate (the assistant, the surfaces) sees only `dyn Llm`.
//! Prompts are files in `prompts/`, rendered by [`prompt::Prompts`].

#[cfg(feature = "local")]
pub mod local;
pub mod prompt;
pub mod remote;
pub mod resilient;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

pub use prompt::{PromptError, Prompts};

/// Who wrote a message of the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role, content: content.into() }
    }
}

/// A function the model may call, described by a JSON schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as the model wrote them (JSON text, not yet checked).
    pub arguments: String,
}

/// One generation.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// The most tokens to decode.
    pub max_tokens: usize,
    /// When set, the output is a JSON value of this schema (the decoder is constrained
    /// where the backend can; the caller parses and checks it either way).
    pub json_schema: Option<Value>,
    /// Functions the model may call (where the model's chat template supports them).
    pub tools: Vec<ToolSpec>,
    /// `None` decodes greedily, so the same prompt gives the same answer.
    pub temperature: Option<f64>,
}

impl ChatRequest {
    pub fn new(messages: Vec<ChatMessage>, max_tokens: usize) -> ChatRequest {
        ChatRequest {
            messages,
            max_tokens,
            json_schema: None,
            tools: Vec::new(),
            temperature: None,
        }
    }

    pub fn with_json_schema(mut self, schema: Value) -> ChatRequest {
        self.json_schema = Some(schema);
        self
    }
}

/// Token counts and the backend's own timings of one generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Seconds spent reading the prompt, and decoding (0 where the backend does not say).
    pub prompt_seconds: f32,
    pub decode_seconds: f32,
}

/// What a generation streams.
#[derive(Debug)]
pub enum Event {
    /// Decoded text, in order.
    Text(String),
    ToolCall(ToolCall),
    /// The generation ended normally; nothing follows.
    Done(Usage),
    /// The generation failed; nothing follows.
    Failed(LlmError),
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the language model could not be loaded: {0}")]
    Load(String),
    #[error("the language model refused the request: {0}")]
    Request(String),
    #[error("the language model failed while generating: {0}")]
    Generation(String),
    #[error("the language model server is unreachable or answered badly: {0}")]
    Transport(String),
    #[error("the language model took longer than {0:?}")]
    Timeout(Duration),
    #[error("the language model's output is not the JSON asked for: {0}")]
    BadOutput(String),
    /// The circuit breaker refused the call: the model server kept failing.
    #[error("the language model is unavailable: {0}")]
    Unavailable(String),
}

/// A chat model. Implementations start the generation and return at once; the events
/// arrive on the channel as the model produces them. Dropping the receiver cancels.
pub trait Llm: Send + Sync {
    /// The model's name, for logs and reports.
    fn name(&self) -> &str;

    /// Starts a generation. Must be called within a tokio runtime.
    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Event>;
}

/// A finished generation, with the times a caller's user felt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// From the call to the first text (or tool call); the whole generation if none.
    pub first_token: Duration,
    pub total: Duration,
}

/// Runs `request` to its end, calling `on_text` with each piece of text as it arrives.
/// Gives up with [`LlmError::Timeout`] when the whole generation takes longer than
/// `timeout` (the generation is cancelled).
pub async fn complete_with(
    llm: &dyn Llm,
    request: ChatRequest,
    timeout: Duration,
    mut on_text: impl FnMut(&str),
) -> Result<Completion, LlmError> {
    let started = Instant::now();
    let mut rx = llm.stream(request);
    let mut out = Completion::default();
    let mut first: Option<Duration> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Err(LlmError::Generation("the generation ended without a result".into()));
            }
            Err(_) => return Err(LlmError::Timeout(timeout)),
        };
        match event {
            Event::Text(text) => {
                first.get_or_insert_with(|| started.elapsed());
                on_text(&text);
                out.text.push_str(&text);
            }
            Event::ToolCall(call) => {
                first.get_or_insert_with(|| started.elapsed());
                out.tool_calls.push(call);
            }
            Event::Done(usage) => {
                out.usage = usage;
                out.total = started.elapsed();
                out.first_token = first.unwrap_or(out.total);
                return Ok(out);
            }
            Event::Failed(e) => return Err(e),
        }
    }
}

/// [`complete_with`] without watching the text.
pub async fn complete(
    llm: &dyn Llm,
    request: ChatRequest,
    timeout: Duration,
) -> Result<Completion, LlmError> {
    complete_with(llm, request, timeout, |_| {}).await
}

/// Runs a request with a JSON schema and parses its output as `T`. Small models can
/// wrap the JSON in prose or a code fence; the first `{ … }` object is taken.
pub async fn complete_json<T: serde::de::DeserializeOwned>(
    llm: &dyn Llm,
    request: ChatRequest,
    timeout: Duration,
) -> Result<(T, Completion), LlmError> {
    let done = complete(llm, request, timeout).await?;
    let parsed = parse_json_object(&done.text)?;
    Ok((parsed, done))
}

/// The first JSON object in `text`, parsed as `T`.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LlmError> {
    let start = text.find('{').ok_or_else(|| LlmError::BadOutput(excerpt(text)))?;
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<T>();
    match stream.next() {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(LlmError::BadOutput(format!("{e} in {}", excerpt(text)))),
        None => Err(LlmError::BadOutput(excerpt(text))),
    }
}

fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(120).collect();
    if cut.len() < text.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
}

/// Adds what the JSON-schema decoders need to keep a small model from writing
/// whitespace forever (llguidance reads `x-guidance`; others ignore it).
pub fn strict_schema(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("x-guidance".into(), serde_json::json!({ "whitespace_flexible": false }));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Intent {
        intent: String,
    }

    #[test]
    fn json_is_found_inside_prose_and_fences() {
        let parsed: Intent =
            parse_json_object("Sure!\n```json\n{\"intent\": \"price\"}\n```").unwrap();
        assert_eq!(parsed, Intent { intent: "price".into() });
    }

    #[test]
    fn malformed_json_is_an_error_that_quotes_the_output() {
        let err = parse_json_object::<Intent>("{\"intent\": ").unwrap_err();
        assert!(matches!(err, LlmError::BadOutput(_)), "{err}");
        let err = parse_json_object::<Intent>("no json here").unwrap_err();
        assert!(err.to_string().contains("no json here"), "{err}");
    }

    /// A model that says what it is told, token by token, or never finishes.
    struct Scripted(Option<Vec<&'static str>>);

    impl Llm for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn stream(&self, _request: ChatRequest) -> mpsc::Receiver<Event> {
            let (tx, rx) = mpsc::channel(8);
            let script = self.0.clone();
            tokio::spawn(async move {
                let Some(tokens) = script else {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                };
                for t in tokens {
                    let _ = tx.send(Event::Text(t.to_owned())).await;
                }
                let _ = tx.send(Event::Done(Usage::default())).await;
            });
            rx
        }
    }

    #[tokio::test]
    async fn completion_collects_text_and_times_out() {
        let llm = Scripted(Some(vec!["It costs ", "9.99", " EUR."]));
        let mut seen = Vec::new();
        let done = complete_with(&llm, ChatRequest::new(vec![], 10), Duration::from_secs(5), |t| {
            seen.push(t.to_owned())
        })
        .await
        .unwrap();
        assert_eq!(done.text, "It costs 9.99 EUR.");
        assert_eq!(seen.len(), 3);
        assert!(done.first_token <= done.total);

        let stuck = Scripted(None);
        let err = complete(&stuck, ChatRequest::new(vec![], 10), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Timeout(_)), "{err}");
    }
}
