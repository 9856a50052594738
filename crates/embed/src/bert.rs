//! The BERT forward pass of all-MiniLM-L6-v2, on plain `f32` rows.
//!
//! Weights are read with candle (its safetensors loader) and kept as flat vectors; the
//! linear layers and attention's two products go through OpenBLAS ([`crate::blas`]),
//! softmax, layer norms and GELU are written out here, and sequences are spread over
//! threads with rayon. A batch is packed, not padded (see [`Bert::forward`]). The
//! arithmetic is BERT's as Hugging Face defines it (post-norm layers, erf GELU), and
//! the encoder's tests hold the result to an independent PyTorch run within 1e-5.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

use crate::EmbedError;
use crate::blas::{Layout, add_a_wt, gemm};

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Config {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) type_vocab_size: usize,
    pub(crate) layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub(crate) hidden_act: String,
}

fn gelu() -> String {
    "gelu".into()
}

struct Linear {
    /// out × in, as stored.
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// `rows × inputs` → `rows × outputs`.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.outputs);
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        add_a_wt(rows, self.outputs, self.inputs, x, &self.weight, &mut out);
        out
    }
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn apply(&self, x: &mut [f32]) {
        let dim = self.weight.len();
        x.par_chunks_mut(dim).for_each(|row| {
            let mean = lane_sum(row, |v| v) / dim as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        });
    }
}

struct Layer {
    /// Query, key and value in one product: (3 · hidden) × hidden.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub(crate) struct Bert {
    config: Config,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

struct Weights {
    tensors: HashMap<String, Tensor>,
    path: std::path::PathBuf,
}

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
        let bad = |reason: String| EmbedError::Format { path: self.path.clone(), reason };
        let tensor = self.tensors.remove(name).ok_or_else(|| bad(format!("no tensor {name}")))?;
        if tensor.dims() != shape {
            return Err(bad(format!("{name} has shape {:?}, expected {shape:?}", tensor.dims())));
        }
        let tensor = tensor.to_dtype(candle_core::DType::F32)?;
        Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
    }

    fn linear(
        &mut self,
        prefix: &str,
        outputs: usize,
        inputs: usize,
    ) -> Result<Linear, EmbedError> {
        Ok(Linear {
            weight: self.take(&format!("{prefix}.weight"), &[outputs, inputs])?,
            bias: self.take(&format!("{prefix}.bias"), &[outputs])?,
            inputs,
            outputs,
        })
    }

    fn norm(&mut self, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm, EmbedError> {
        Ok(LayerNorm {
            weight: self.take(&format!("{prefix}.weight"), &[dim])?,
            bias: self.take(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }
}

impl Bert {
    pub(crate) fn load(
        config: Config,
        safetensors: &[u8],
        path: &Path,
    ) -> Result<Bert, EmbedError> {
        if config.hidden_act != "gelu"
            || !config.hidden_size.is_multiple_of(config.num_attention_heads)
        {
            return Err(EmbedError::Format {
                path: path.to_owned(),
                reason: "expected a BERT with erf GELU and a hidden size divisible by its heads"
                    .into(),
            });
        }
        let mut tensors = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)?;
        // Some exports prefix every name with the model type.
        if tensors.keys().any(|k| k.starts_with("bert.")) {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches("bert.").to_owned(), v))
                .collect();
        }
        let mut w = Weights { tensors, path: path.to_owned() };
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        let word = w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position =
            w.take("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let token_type =
            w.take("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let embedding_norm = w.norm("embeddings.LayerNorm", h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            let q = w.linear(&format!("{p}.attention.self.query"), h, h)?;
            let k = w.linear(&format!("{p}.attention.self.key"), h, h)?;
            let v = w.linear(&format!("{p}.attention.self.value"), h, h)?;
            let qkv = Linear {
                weight: [q.weight, k.weight, v.weight].concat(),
                bias: [q.bias, k.bias, v.bias].concat(),
                inputs: h,
                outputs: 3 * h,
            };
            layers.push(Layer {
                qkv,
                attention_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: w.linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: w.linear(&format!("{p}.output.dense"), h, i)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert { config, word, position, token_type, embedding_norm, layers })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub(crate) fn max_positions(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The last hidden states of every token of every sequence, one row of `hidden`
    /// floats each, the sequences one after another.
    ///
    /// Nothing is padded: BERT mixes tokens only in attention, which runs per sequence,
    /// so the linear layers, norms and GELU run on the real tokens of the whole batch as
    /// one matrix. The result is what padding to the batch's longest text and masking
    /// computes for the real tokens, without the padded rows (four tenths of the work on
    /// catalog texts sorted by length).
    pub(crate) fn forward(&self, sequences: &[&[u32]]) -> Result<Vec<f32>, EmbedError> {
        let h = self.config.hidden_size;
        let rows: usize = sequences.iter().map(|s| s.len()).sum();
        let vocab = self.config.vocab_size;
        let mut x = vec![0f32; rows * h];
        let mut out_rows = x.chunks_exact_mut(h);
        for sequence in sequences {
            if sequence.len() > self.config.max_position_embeddings {
                return Err(EmbedError::Tokenize(format!(
                    "{} tokens, the model reads at most {}",
                    sequence.len(),
                    self.max_positions()
                )));
            }
            for (pos, &id) in sequence.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(EmbedError::Tokenize(format!(
                        "token id {id} is outside the vocabulary"
                    )));
                }
                let row = out_rows.next().expect("a row per token");
                let (word, position, kind) = (
                    &self.word[id * h..(id + 1) * h],
                    &self.position[pos * h..(pos + 1) * h],
                    &self.token_type[..h],
                );
                for d in 0..h {
                    row[d] = word[d] + position[d] + kind[d];
                }
            }
        }
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        self.embedding_norm.apply(&mut x);
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, rows);
            let context = self.attention(&qkv, &lengths);
            let mut attended = layer.attention_out.forward(&context, rows);
            add_into(&mut attended, &x);
            layer.attention_norm.apply(&mut attended);
            x = attended;
            let mut inner = layer.intermediate.forward(&x, rows);
            inner
                .par_chunks_mut(4096)
                .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = gelu_erf(*v)));
            let mut out = layer.output.forward(&inner, rows);
            add_into(&mut out, &x);
            layer.output_norm.apply(&mut out);
            x = out;
        }
        Ok(x)
    }

    /// Scaled dot-product attention per sequence and head, over the sequences' rows of
    /// `qkv` (`lengths` of them each, one after another). Both products run through
    /// BLAS on the heads' column blocks of `qkv` in place.
    fn attention(&self, qkv: &[f32], lengths: &[usize]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let rows: usize = lengths.iter().sum();
        let mut context = vec![0f32; rows * h];
        // One task per sequence: its rows of the context are written by it alone.
        let mut tasks = Vec::with_capacity(lengths.len());
        let (mut rest, mut start) = (context.as_mut_slice(), 0);
        for &len in lengths {
            let (out, tail) = rest.split_at_mut(len * h);
            tasks.push((start, len, out));
            rest = tail;
            start += len;
        }
        tasks.into_par_iter().for_each(|(start, len, out)| {
            if len == 0 {
                return;
            }
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let block = Layout { rows: len, cols: dh, stride: 3 * h };
            let mut scores = vec![0f32; len * len];
            for head in 0..heads {
                let (q, k, v) =
                    (&rows[head * dh..], &rows[h + head * dh..], &rows[2 * h + head * dh..]);
                gemm(
                    scale,
                    (q, block),
                    (k, block),
                    true,
                    0.0,
                    (&mut scores, Layout::dense(len, len)),
                );
                scores.chunks_exact_mut(len).for_each(softmax);
                gemm(
                    1.0,
                    (&scores, Layout::dense(len, len)),
                    (v, block),
                    false,
                    0.0,
                    (&mut out[head * dh..], Layout { rows: len, cols: dh, stride: h }),
                );
            }
        });
        context
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |max, &s| max.max(s));
    let mut sum = 0f32;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

/// `Σ f(v)` in eight lanes, so that it vectorises (a plain float sum may not be
/// reordered, and ran one element at a time: a tenth of the encoder's time in perf).
#[inline]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for i in 0..LANES {
            acc[i] += f(chunk[i]);
        }
    }
    acc.iter().sum::<f32>() + rest
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// GELU as BERT defines it: x · Φ(x), with Φ from the error function.
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function in single precision: a rational approximation on [-4, 4]
/// (beyond which erf is ±1 in f32), with the coefficients Eigen and XLA use; a few
/// units in the last place, and only multiplications and additions, so the loop
/// vectorises.
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906e-4);
    p = p.mul_add(x2, -2.954_6e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    p / q
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.5, -0.966_105_1),
            (6.0, 1.0),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {} not {want}", erf(x));
        }
    }
}
