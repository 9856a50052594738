//! `shopgraph bench llm`: each GGUF model through mistral.rs in process, and the same
//! file through llama.cpp (llama-cpp-python, `scripts/peer_llm.py`) on the same
//! prompts in the same run: load time, prompt reading and decoding speed, and time to
//! the first token of the assistant's typical calls.
//!
//! The prompts are the assistant's own (`prompts/`), rendered for real turns over the
//! bookstore. Each kind runs twice: a first time (nothing of it cached) and a second
//! with another message (the fixed system prompt can come from the prefix cache, as in
//! a conversation). Generation is greedy, unconstrained, capped at the same length in
//! both engines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shopgraph_llm::{ChatMessage, ChatRequest, Llm, Prompts};

use crate::report;

pub(crate) struct Options {
    pub(crate) models: Vec<PathBuf>,
    pub(crate) peer_python: Option<PathBuf>,
    pub(crate) max_tokens: usize,
}

#[derive(Serialize)]
struct Probe {
    name: String,
    /// A repeat of an earlier probe's system prompt with another message.
    warm: bool,
    messages: Vec<ChatMessage>,
    max_tokens: usize,
}

/// One probe's timing, from either engine.
#[derive(Clone, Debug, Default, Deserialize)]
struct Timing {
    name: String,
    ttft_ms: f64,
    total_ms: f64,
    completion_tokens: usize,
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Default, Deserialize)]
struct Run {
    load_ms: f64,
    timings: Vec<Timing>,
}

fn probes(max_tokens: usize) -> anyhow::Result<Vec<Probe>> {
    let prompts = Prompts::bundled();
    let facts = "\"The Hobbit\" by J R R Tolkien, 1986, Ballantine Books, ISBN 9780345318589, price 7.99 EUR, 12 in stock";
    let facts2 = "\"Rebecca\" by Daphne Du Maurier, 1994, Avon, ISBN 9780380778553, price 14.99 EUR, out of stock";
    let mut out = Vec::new();
    let mut add = |name: &str, warm: bool, messages: Vec<ChatMessage>| {
        out.push(Probe { name: name.to_owned(), warm, messages, max_tokens });
    };
    add(
        "understand",
        false,
        prompts.render_messages("understand", &[("message", "How much is The Hobbit?")])?,
    );
    add(
        "understand",
        true,
        prompts.render_messages("understand", &[("message", "Is Rebecca in stock?")])?,
    );
    add(
        "answer",
        false,
        prompts.render_messages(
            "answer",
            &[
                ("language", "English"),
                ("context", "(none)"),
                ("facts", facts),
                ("message", "How much is The Hobbit?"),
            ],
        )?,
    );
    add(
        "answer",
        true,
        prompts.render_messages(
            "answer",
            &[
                ("language", "English"),
                ("context", "(none)"),
                ("facts", facts2),
                ("message", "Is Rebecca in stock?"),
            ],
        )?,
    );
    add(
        "extract",
        false,
        prompts.render_messages(
            "extract",
            &[("text", "I adore Tolkien and fantasy, but no horror please.")],
        )?,
    );
    add(
        "extract",
        true,
        prompts
            .render_messages("extract", &[("text", "Michael Crichton is my favourite author.")])?,
    );
    add(
        "answer-zh",
        false,
        prompts.render_messages(
            "answer",
            &[
                ("language", "Chinese"),
                ("context", "(none)"),
                ("facts", facts),
                ("message", "《The Hobbit》多少钱？"),
            ],
        )?,
    );
    Ok(out)
}

async fn ours(model: &Path, probes: &[Probe]) -> anyhow::Result<Run> {
    let started = Instant::now();
    let llm = shopgraph_llm::local::Local::load(model).await?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut timings = Vec::new();
    for p in probes {
        let request = ChatRequest::new(p.messages.clone(), p.max_tokens);
        let done =
            shopgraph_llm::complete(&llm as &dyn Llm, request, std::time::Duration::from_secs(300))
                .await?;
        timings.push(Timing {
            name: p.name.clone(),
            ttft_ms: done.first_token.as_secs_f64() * 1e3,
            total_ms: done.total.as_secs_f64() * 1e3,
            completion_tokens: done.usage.completion_tokens,
            prompt_tokens: done.usage.prompt_tokens,
            text: done.text,
        });
    }
    Ok(Run { load_ms, timings })
}

fn peer(python: &Path, model: &Path, probes_file: &Path) -> anyhow::Result<Run> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peer_llm.py");
    let out = tempfile::NamedTempFile::new()?;
    let status = std::process::Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(probes_file)
        .arg(out.path())
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(status.success(), "the llama.cpp peer failed ({status})");
    Ok(serde_json::from_str(&std::fs::read_to_string(out.path())?)?)
}

/// Prompt tokens a second (first-time probes: the whole prompt is read) and decode
/// tokens a second over a run's probes.
fn speeds(run: &Run, prompt_tokens: &[usize], probes: &[Probe]) -> (f64, f64) {
    let (mut read, mut read_ms, mut decoded, mut decode_ms) = (0.0, 0.0, 0.0, 0.0);
    for ((t, &n), p) in run.timings.iter().zip(prompt_tokens).zip(probes) {
        if !p.warm {
            read += n as f64;
            read_ms += t.ttft_ms;
        }
        if t.completion_tokens > 1 {
            decoded += (t.completion_tokens - 1) as f64;
            decode_ms += t.total_ms - t.ttft_ms;
        }
    }
    (read / (read_ms / 1e3), decoded / (decode_ms / 1e3))
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    let probes = probes(options.max_tokens)?;
    let probes_file = tempfile::NamedTempFile::new()?;
    std::fs::write(probes_file.path(), serde_json::to_string(&probes)?)?;
    let mut text = String::from(
        "LLM serving on this machine, greedy, the assistant's prompts (first time / prefix warm):\n",
    );
    for model in &options.models {
        let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let ours = ours(model, &probes).await?;
        let prompt_tokens: Vec<usize> = ours.timings.iter().map(|t| t.prompt_tokens).collect();
        let (ours_read, ours_decode) = speeds(&ours, &prompt_tokens, &probes);
        text.push_str(&format!("\n{name}\n  mistral.rs: load {:.0} ms, prompt {ours_read:.1} tok/s, decode {ours_decode:.1} tok/s\n", ours.load_ms));
        let theirs = match &options.peer_python {
            Some(python) => Some(peer(python, model, probes_file.path())?),
            None => None,
        };
        if let Some(theirs) = &theirs {
            let (read, decode) = speeds(theirs, &prompt_tokens, &probes);
            text.push_str(&format!(
                "  llama.cpp:  load {:.0} ms, prompt {read:.1} tok/s, decode {decode:.1} tok/s\n  ratio (mistral.rs / llama.cpp): prompt {:.2}x, decode {:.2}x\n",
                theirs.load_ms,
                ours_read / read,
                ours_decode / decode
            ));
        }
        text.push_str("  time to first token (ms), probe by probe:\n");
        for (k, (t, p)) in ours.timings.iter().zip(&probes).enumerate() {
            let peer = theirs.as_ref().and_then(|r| r.timings.get(k));
            text.push_str(&format!(
                "    {:<11} {:<5} prompt {:>4} tok  mistral.rs {:>6.0}{}\n",
                t.name,
                if p.warm { "warm" } else { "first" },
                t.prompt_tokens,
                t.ttft_ms,
                peer.map_or(String::new(), |q| format!(
                    "  llama.cpp {:>6.0}  ratio {:.2}x",
                    q.ttft_ms,
                    t.ttft_ms / q.ttft_ms
                )),
            ));
        }
        tracing::debug!(answers = ?ours.timings.iter().map(|t| &t.text).collect::<Vec<_>>(), "mistral.rs answers");
    }
    report(text.trim_end());
    Ok(())
}
