//! mistral.rs in this process: one GGUF file from a local folder. The tokenizer and
//! the chat template come from the file's metadata; nothing is fetched from a hub.
//!
//! mistral.rs keeps the KV cache of recent prompts (its prefix cache), so a request
//! whose messages start like an earlier one's (the same system prompt) reads only the
//! new tokens: the prompts in `prompts/` put everything fixed first for that reason.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mistralrs::{
    Constraint, Function, GgufModelBuilder, Model, RequestBuilder, Response, StopTokens,
    TextMessageRole, Tool, ToolChoice, ToolType,
};
use tokio::sync::mpsc;

use crate::{ChatRequest, Event, Llm, LlmError, Role, ToolCall, Usage, strict_schema};

/// A loaded GGUF model.
pub struct Local {
    name: String,
    model: Arc<Model>,
}

impl Local {
    /// Loads `path` (a `.gguf` file) on the CPU, or with the `cuda` feature on the first
    /// GPU. mistral.rs creates `HF_HOME` even for a local file: the caller points it at
    /// a writable folder (the CLI does).
    pub async fn load(path: &Path) -> Result<Local, LlmError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| LlmError::Load(format!("{} is not a file name", path.display())))?;
        if !path.is_file() {
            return Err(LlmError::Load(format!(
                "{} does not exist; scripts/setup.sh fetches the models",
                path.display()
            )));
        }
        let started = Instant::now();
        let builder = GgufModelBuilder::new(dir.display().to_string(), vec![file])
            .with_token_source(mistralrs::TokenSource::None)
            .with_max_num_seqs(4);
        #[cfg(not(feature = "cuda"))]
        let builder = builder.with_force_cpu();
        let model = builder.build().await.map_err(|e| LlmError::Load(format!("{file}: {e:#}")))?;
        tracing::info!(model = file, seconds = started.elapsed().as_secs_f32(), "model loaded");
        let name = file.trim_end_matches(".gguf").to_owned();
        Ok(Local { name, model: Arc::new(model) })
    }
}

impl Llm for Local {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(64);
        let model = Arc::clone(&self.model);
        tokio::spawn(async move {
            if let Err(e) = run(&model, request, &tx).await {
                let _ = tx.send(Event::Failed(e)).await;
            }
        });
        rx
    }
}

/// The end-of-text tokens the grammar may force once the JSON value is complete.
/// llguidance takes its EOS from the tokenizer by name (the first of these it finds),
/// while mistral.rs stops on the GGUF's end-of-turn token (`<|im_end|>` for Qwen and
/// SmolLM2). Without these as stop tokens a finished JSON value is followed by forced
/// `<|endoftext|>` tokens, invisible, until `max_tokens`: 40 wasted decode steps on a
/// 60-token intent call. A name the model lacks encodes to several tokens and becomes
/// a stop string, which a JSON value never contains.
const GRAMMAR_EOS: &[&str] = &["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"];

fn builder(request: ChatRequest) -> RequestBuilder {
    let mut b = RequestBuilder::new();
    for m in request.messages {
        let role = match m.role {
            Role::System => TextMessageRole::System,
            Role::User => TextMessageRole::User,
            Role::Assistant => TextMessageRole::Assistant,
            Role::Tool => TextMessageRole::Tool,
        };
        b = b.add_message(role, m.content);
    }
    // The deterministic sampler clears max_len: set it first.
    b = match request.temperature {
        None => b.set_deterministic_sampler(),
        Some(t) => b.set_sampler_temperature(t),
    };
    b = b.set_sampler_max_len(request.max_tokens);
    if let Some(schema) = request.json_schema {
        b = b.set_constraint(Constraint::JsonSchema(strict_schema(schema))).set_sampler_stop_toks(
            StopTokens::Seqs(GRAMMAR_EOS.iter().map(|s| (*s).to_owned()).collect()),
        );
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .into_iter()
            .map(|t| Tool {
                tp: ToolType::Function,
                function: Function {
                    description: Some(t.description),
                    name: t.name,
                    parameters: serde_json::from_value(t.parameters).ok(),
                },
            })
            .collect();
        b = b.set_tools(tools).set_tool_choice(ToolChoice::Auto);
    }
    b
}

async fn run(
    model: &Model,
    request: ChatRequest,
    tx: &mpsc::Sender<Event>,
) -> Result<(), LlmError> {
    let mut stream = model
        .stream_chat_request(builder(request))
        .await
        .map_err(|e| LlmError::Request(e.to_string()))?;
    while let Some(response) = stream.next().await {
        match response {
            Response::Chunk(chunk) => {
                for choice in &chunk.choices {
                    if let Some(text) = &choice.delta.content
                        && !text.is_empty()
                        && tx.send(Event::Text(text.clone())).await.is_err()
                    {
                        return Ok(()); // the caller went away: stop
                    }
                    for call in choice.delta.tool_calls.iter().flatten() {
                        let call = ToolCall {
                            name: call.function.name.clone(),
                            arguments: call.function.arguments.clone(),
                        };
                        if tx.send(Event::ToolCall(call)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                let finished = chunk.choices.iter().any(|c| c.finish_reason.is_some());
                if finished || chunk.usage.is_some() {
                    let usage = chunk.usage.as_ref().map(|u| Usage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                        prompt_seconds: u.total_prompt_time_sec,
                        decode_seconds: u.total_completion_time_sec,
                    });
                    if finished {
                        let _ = tx.send(Event::Done(usage.unwrap_or_default())).await;
                        return Ok(());
                    }
                }
            }
            Response::Done(done) => {
                let u = &done.usage;
                let _ = tx
                    .send(Event::Done(Usage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                        prompt_seconds: u.total_prompt_time_sec,
                        decode_seconds: u.total_completion_time_sec,
                    }))
                    .await;
                return Ok(());
            }
            Response::ModelError(e, _) => return Err(LlmError::Generation(e)),
            Response::InternalError(e) => return Err(LlmError::Generation(e.to_string())),
            Response::ValidationError(e) => return Err(LlmError::Request(e.to_string())),
            _ => return Err(LlmError::Generation("an unexpected kind of response".into())),
        }
    }
    Err(LlmError::Generation("the model stopped without finishing".into()))
}
