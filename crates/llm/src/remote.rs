//! Any server that speaks the OpenAI chat-completions protocol, streamed (server-sent
//! events). mistral.rs's server, vLLM and `shopgraph serve` all do.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{ChatRequest, Event, Llm, LlmError, ToolCall, Usage};

/// A remote chat model.
pub struct Remote {
    /// `http://host:port/v1`
    base: String,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl Remote {
    /// `base` is the API root, such as `http://127.0.0.1:8080/v1`; `model` is the name
    /// the server knows the model by.
    pub fn new(base: &str, model: &str, api_key: Option<String>) -> Result<Remote, LlmError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LlmError::Load(format!("{base:?} is not an http(s) address")));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LlmError::Load(e.to_string()))?;
        Ok(Remote {
            base: base.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key,
            client,
        })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
            "temperature": request.temperature.unwrap_or(0.0),
        });
        if let Some(schema) = &request.json_schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": "output", "schema": schema, "strict": true },
            });
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({ "type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    }})
                })
                .collect();
        }
        body
    }
}

impl Llm for Remote {
    fn name(&self) -> &str {
        &self.model
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(64);
        let mut call =
            self.client.post(format!("{}/chat/completions", self.base)).json(&self.body(&request));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        tokio::spawn(async move {
            if let Err(e) = run(call, &tx).await {
                let _ = tx.send(Event::Failed(e)).await;
            }
        });
        rx
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    /// A server that fails after the stream began says so in an event.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Default, Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

async fn run(call: reqwest::RequestBuilder, tx: &mpsc::Sender<Event>) -> Result<(), LlmError> {
    let response = call.send().await.map_err(|e| LlmError::Transport(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err(if status.is_client_error() {
            LlmError::Request(format!("{status}: {body}"))
        } else {
            LlmError::Transport(format!("{status}: {body}"))
        });
    }
    let mut bytes = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut calls: BTreeMap<usize, ToolCall> = BTreeMap::new();
    let mut usage = Usage::default();
    let mut finished = false;
    while let Some(piece) = bytes.next().await {
        let piece = piece.map_err(|e| LlmError::Transport(e.to_string()))?;
        buffer.extend_from_slice(&piece);
        // Server-sent events: one `data: …` line each, separated by blank lines.
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = std::str::from_utf8(&line)
                .map_err(|_| LlmError::Transport("the stream is not UTF-8".into()))?
                .trim();
            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                for (_, call) in std::mem::take(&mut calls) {
                    let _ = tx.send(Event::ToolCall(call)).await;
                }
                let _ = tx.send(Event::Done(usage)).await;
                return Ok(());
            }
            let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
                LlmError::Transport(format!("a stream event is not a completion chunk: {e}"))
            })?;
            if let Some(e) = chunk.error {
                let message = e["message"].as_str().map_or_else(|| e.to_string(), str::to_owned);
                return Err(LlmError::Generation(message));
            }
            if let Some(u) = chunk.usage {
                usage.prompt_tokens = u.prompt_tokens;
                usage.completion_tokens = u.completion_tokens;
            }
            for choice in chunk.choices {
                if let Some(text) = choice.delta.content
                    && !text.is_empty()
                    && tx.send(Event::Text(text)).await.is_err()
                {
                    return Ok(());
                }
                for part in choice.delta.tool_calls {
                    let call = calls.entry(part.index).or_insert_with(|| ToolCall {
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(name) = part.function.name {
                        call.name.push_str(&name);
                    }
                    if let Some(args) = part.function.arguments {
                        call.arguments.push_str(&args);
                    }
                }
                finished |= choice.finish_reason.is_some();
            }
        }
    }
    if finished {
        for (_, call) in calls {
            let _ = tx.send(Event::ToolCall(call)).await;
        }
        let _ = tx.send(Event::Done(usage)).await;
        return Ok(());
    }
    Err(LlmError::Transport("the stream ended before the completion did".into()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{ChatMessage, Role, complete};

    /// A one-shot HTTP server on loopback that answers any request with `status` and
    /// `body`, and hands back the request it read.
    async fn serve_once(
        status: &'static str,
        body: String,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and a body of the length it announces.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (format!("http://{addr}/v1"), handle)
    }

    fn request() -> ChatRequest {
        ChatRequest::new(vec![ChatMessage::new(Role::User, "How much is Dune?")], 20)
    }

    #[tokio::test]
    async fn streamed_text_tool_calls_and_usage_arrive() {
        let events = [
            r#"{"choices":[{"delta":{"role":"assistant","content":"It costs "},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":"9.99 EUR."},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"stock","arguments":"{\"sku\":"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"42\"}"}}]},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
            "[DONE]",
        ];
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let (base, server) = serve_once("200 OK", body).await;
        let remote = Remote::new(&base, "qwen", Some("secret".into())).unwrap();
        let done = complete(
            &remote,
            request().with_json_schema(serde_json::json!({"type": "object"})),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(done.text, "It costs 9.99 EUR.");
        assert_eq!(
            done.tool_calls,
            vec![ToolCall { name: "stock".into(), arguments: "{\"sku\":\"42\"}".into() }]
        );
        assert_eq!((done.usage.prompt_tokens, done.usage.completion_tokens), (12, 5));
        let sent = server.await.unwrap();
        assert!(sent.starts_with("POST /v1/chat/completions"), "{sent}");
        assert!(sent.to_ascii_lowercase().contains("authorization: bearer secret"), "{sent}");
        assert!(sent.contains("\"json_schema\""), "{sent}");
    }

    #[tokio::test]
    async fn server_errors_are_errors() {
        let (base, _server) = serve_once("500 Internal Server Error", "overloaded".into()).await;
        let err =
            complete(&Remote::new(&base, "m", None).unwrap(), request(), Duration::from_secs(10))
                .await
                .unwrap_err();
        assert!(matches!(err, LlmError::Transport(ref m) if m.contains("overloaded")), "{err}");

        let body = "data: {\"error\":{\"message\":\"out of memory\"}}\n\n".to_owned();
        let (base, _server) = serve_once("200 OK", body).await;
        let err =
            complete(&Remote::new(&base, "m", None).unwrap(), request(), Duration::from_secs(10))
                .await
                .unwrap_err();
        assert!(matches!(err, LlmError::Generation(ref m) if m == "out of memory"), "{err}");

        let (base, _server) = serve_once(
            "200 OK",
            "data: {\"choices\":[{\"delta\":{\"content\":\"cut\"}}]}\n\n".into(),
        )
        .await;
        let err =
            complete(&Remote::new(&base, "m", None).unwrap(), request(), Duration::from_secs(10))
                .await
                .unwrap_err();
        assert!(matches!(err, LlmError::Transport(_)), "{err}");

        assert!(Remote::new("ftp://x", "m", None).is_err());
        // Nothing listens on port 9 here: refused at once.
        let err = complete(
            &Remote::new("http://127.0.0.1:9/v1", "m", None).unwrap(),
            request(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, LlmError::Transport(_)), "{err}");
    }
}
