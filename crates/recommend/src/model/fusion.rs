//! The fusion recommender: a self-attentive profile over items represented by their
//! behaviour, their BERT text vector and their knowledge-graph relations, trained in
//! candle. With the text and graph parts switched off it is the sequence generator
//! (SASRec, Kang & McAuley 2018, trained with a softmax loss).
//!
//! # Item representation
//!
//! For item `i` with BERT vector `x_i ∈ ℝ³⁸⁴` (unit length) and knowledge-graph edges
//! `N(i) = {(r, e)}` (categories, maker, publisher, decade, KG triples; see
//! [`ItemSide`]):
//!
//! ```text
//! q_i = E_i  +  T x_i  +  1/|N(i)| Σ_{(r,e) ∈ N(i)} R_r ⊙ F_e
//! ```
//!
//! `E ∈ ℝ^{n×d}` are the behaviour factors (one free vector per item), `T ∈ ℝ^{d×384}`
//! projects the text vector, and the relation-aware entity term is DistMult's: an
//! entity vector `F_e` seen through a diagonal relation `R_r`, so that "the same
//! director" and "the same genre" can pull in different directions. Items with no
//! interactions still get a representation from their text and relations.
//!
//! # Profile
//!
//! A shopper's events `j₁ … j_L` (the last `L`, oldest first) become tokens
//!
//! ```text
//! h⁰_t = √d · q_{j_t} + P_{L-t} + K_{kind(t)}
//! ```
//!
//! where `P` is a learned recency embedding (by position from the most recent event)
//! and `K` a learned embedding of the event's kind and rating (a 5-star rating, a
//! 1-star rating, a purchase are different evidence). Two causal self-attention blocks
//! (single head, pre-norm, ReLU feed-forward, dropout) mix them:
//!
//! ```text
//! a_t  = LN(h_t);  h'_t = a_t + softmax_{s ≤ t}(a_t W_Q · (h_s W_K)ᵀ / √d) h_s W_V
//! h''_t = LN(h'_t) + W₂ ReLU(W₁ LN(h'_t) + b₁) + b₂
//! ```
//!
//! so each event's weight in the profile is learned from its recency, kind and item
//! rather than fixed. The profile is `p_u = LN(h_L)`, and item `i` scores `p_u · q_i`.
//!
//! # Training
//!
//! Every prefix of every training sequence predicts its next item, with the softmax
//! cross-entropy over all items (`negatives = 0`) or over the true item and
//! `negatives` items sampled uniformly per batch (a sampled softmax, which is what
//! makes MovieLens-1M trainable on two cores), with Adam. The epoch count is chosen by
//! NDCG@10 on the validation split, evaluated every few epochs; the best weights are
//! kept. A fitted model scores any history ([`Fusion::with_histories`]) without
//! retraining, so the validation items join the profile for the test.
//!
//! Stated interests do not enter the network: a shopper with interests and no events
//! is served by the content generator from the interests' BERT vectors
//! ([`Content::profile_of`](super::Content::profile_of)).

use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW, ops};

use crate::data::Interactions;
use crate::eval::evaluate;
use crate::model::Recommender;
use crate::side::ItemSide;
use crate::split::{SplitMix, shuffle};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusionParams {
    pub dim: usize,
    pub blocks: usize,
    /// The most recent events a profile reads.
    pub max_len: usize,
    pub dropout: f32,
    /// The most epochs to train; fewer when validation stops improving.
    pub epochs: usize,
    /// Validate every this many epochs; stop after `patience` validations without a
    /// better NDCG@10.
    pub validate_every: usize,
    pub patience: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Sampled negatives per batch; 0 for the softmax over all items.
    pub negatives: usize,
    /// Whether items carry their BERT vector, their graph relations, and events their
    /// kind; all false is the sequence generator.
    pub text: bool,
    pub graph: bool,
    pub events: bool,
    pub objective: Objective,
    pub seed: u64,
}

/// What training asks the profile to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The next event from the ones before it (causal attention; the profile is the
    /// last position's state): what a shop's "next" is, and what leave-last-out tests.
    Next,
    /// A fifth of the events, drawn anew each epoch, from the others (attention over
    /// the whole history; the profile is the mean of the states): what a random
    /// holdout tests, where the held-out events are not the latest.
    HeldOut,
}

impl Default for FusionParams {
    fn default() -> Self {
        FusionParams {
            dim: 64,
            blocks: 2,
            max_len: 200,
            dropout: 0.2,
            epochs: 200,
            validate_every: 5,
            patience: 3,
            batch: 128,
            learning_rate: 1e-3,
            negatives: 0,
            text: true,
            graph: true,
            events: true,
            objective: Objective::Next,
            seed: 2026,
        }
    }
}

impl FusionParams {
    /// The sequence generator: item ids only.
    pub fn sequence() -> FusionParams {
        FusionParams { text: false, graph: false, events: false, ..FusionParams::default() }
    }
}

/// What items are besides their ids: BERT vectors (`n_items × text_dim`) and edges.
#[derive(Clone, Default)]
pub struct ItemFeatures {
    pub text: Option<(Arc<Vec<f32>>, usize)>,
    pub side: Option<Arc<ItemSide>>,
}

/// Edges kept per item for the graph term (the rarest first, so a film keeps its
/// director before its hundredth actor).
const MAX_EDGES: usize = 16;
/// Event kinds: 0 implicit, 1–5 rating stars (ratings on 1–10 are halved).
const KINDS: usize = 6;

pub struct Fusion {
    params: FusionParams,
    net: Option<Arc<Net>>,
    /// `n_items × dim`: `q_i`.
    items: Vec<f32>,
    /// `n_users × dim`: `p_u`.
    profiles: Vec<f32>,
    /// Epochs trained for the kept weights.
    pub epochs: usize,
}

impl Fusion {
    /// Trains on `train`; with `valid`, the epoch count is chosen on it.
    pub fn fit(
        train: &Interactions,
        valid: Option<&Interactions>,
        features: &ItemFeatures,
        params: FusionParams,
    ) -> candle_core::Result<Fusion> {
        let started = Instant::now();
        let device = Device::Cpu;
        let mut rng = SplitMix(params.seed);
        let net = Net::new(train.n_items(), features, &params, &mut rng, &device)?;
        let mut optimizer = AdamW::new(
            net.vars.clone(),
            ParamsAdamW { lr: params.learning_rate, weight_decay: 0.0, ..ParamsAdamW::default() },
        )?;
        let sequences: Vec<Vec<(u32, u8)>> =
            (0..train.n_users() as u32).map(|u| sequence(train, u, params.max_len + 1)).collect();
        let mut order: Vec<usize> =
            (0..sequences.len()).filter(|&u| sequences[u].len() >= 2).collect();

        let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
        let mut since_best = 0;
        let mut epochs = 0;
        for epoch in 1..=params.epochs {
            // Batches of similar lengths (attention costs the square of the longest),
            // in random order.
            shuffle(&mut order, &mut rng);
            for window in order.chunks_mut(params.batch * 16) {
                window.sort_by_key(|&u| sequences[u].len());
            }
            let mut chunks: Vec<&[usize]> = order.chunks(params.batch).collect();
            shuffle(&mut chunks, &mut rng);
            let mut loss_sum = 0.0;
            let mut batches = 0;
            for chunk in chunks {
                let batch: Vec<&[(u32, u8)]> =
                    chunk.iter().map(|&u| sequences[u].as_slice()).collect();
                let loss = net.loss(&batch, &params, &mut rng, &device)?;
                optimizer.backward_step(&loss)?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?);
                batches += 1;
            }
            epochs = epoch;
            tracing::debug!(
                "fusion epoch {epoch}: loss {:.4} ({:.0} s)",
                loss_sum / batches.max(1) as f64,
                started.elapsed().as_secs_f64()
            );
            let Some(valid) = valid else { continue };
            if epoch % params.validate_every != 0 && epoch != params.epochs {
                continue;
            }
            let snapshot = Fusion::score_with(Arc::new(net.clone()), params, train, epoch)?;
            let ndcg = evaluate(&snapshot, train, valid).ndcg10;
            tracing::info!(
                "{} epoch {epoch}: validation NDCG@10 {ndcg:.4} ({:.0} s)",
                snapshot.name(),
                started.elapsed().as_secs_f64()
            );
            if best.as_ref().is_none_or(|(b, _, _)| ndcg > *b) {
                let weights =
                    net.vars.iter().map(|v| v.as_tensor().copy()).collect::<Result<_, _>>()?;
                best = Some((ndcg, epoch, weights));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= params.patience {
                    break;
                }
            }
        }
        if let Some((_, epoch, weights)) = best {
            for (var, weight) in net.vars.iter().zip(&weights) {
                var.set(weight)?;
            }
            epochs = epoch;
        }
        Fusion::score_with(Arc::new(net), params, train, epochs)
    }

    /// The same weights, with profiles read from `histories` (the training part plus
    /// the validation items, for the test).
    pub fn with_histories(&self, histories: &Interactions) -> candle_core::Result<Fusion> {
        let net = self.net.clone().expect("a fitted model keeps its network");
        Fusion::score_with(net, self.params, histories, self.epochs)
    }

    fn score_with(
        net: Arc<Net>,
        params: FusionParams,
        histories: &Interactions,
        epochs: usize,
    ) -> candle_core::Result<Fusion> {
        let device = Device::Cpu;
        let items = net.item_matrix()?;
        let d = params.dim;
        let mut profiles = vec![0f32; histories.n_users() * d];
        let mut users: Vec<u32> =
            (0..histories.n_users() as u32).filter(|&u| !histories.user(u).is_empty()).collect();
        users.sort_by_key(|&u| histories.user(u).len());
        for chunk in users.chunks(256) {
            let batch: Vec<Vec<(u32, u8)>> =
                chunk.iter().map(|&u| sequence(histories, u, params.max_len)).collect();
            let refs: Vec<&[(u32, u8)]> = batch.iter().map(Vec::as_slice).collect();
            let len = refs.iter().map(|s| s.len()).max().unwrap_or(1);
            let (input, mask) = net.tokens(&refs, len, &items, None, &device)?;
            let hidden = net.encode(input, &mask, len, params.objective, None)?;
            let rows = pool(&hidden, &mask, params.objective)?.to_vec2::<f32>()?;
            for (&u, row) in chunk.iter().zip(rows) {
                profiles[u as usize * d..][..d].copy_from_slice(&row);
            }
        }
        let items = items.narrow(0, 0, net.n_items)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Fusion { params, net: Some(net), items, profiles, epochs })
    }

    /// The profile of a guest's items (implicit events), oldest first.
    pub fn profile_of_session(&self, session: &[u32]) -> candle_core::Result<Vec<f32>> {
        let net = self.net.as_ref().expect("a fitted model keeps its network");
        let d = self.params.dim;
        if session.is_empty() {
            return Ok(vec![0.0; d]);
        }
        let items = Tensor::from_slice(&self.items, (self.items.len() / d, d), &Device::Cpu)?;
        // The padding row the network expects after the items.
        let items = Tensor::cat(&[&items, &Tensor::zeros((1, d), DType::F32, &Device::Cpu)?], 0)?;
        let seq: Vec<(u32, u8)> = session
            .iter()
            .skip(session.len().saturating_sub(self.params.max_len))
            .map(|&i| (i, 0))
            .collect();
        let len = seq.len();
        let (input, mask) = net.tokens(&[&seq], len, &items, None, &Device::Cpu)?;
        let hidden = net.encode(input, &mask, len, self.params.objective, None)?;
        pool(&hidden, &mask, self.params.objective)?.flatten_all()?.to_vec1::<f32>()
    }

    fn scores_for(&self, profile: &[f32], out: &mut [f32]) {
        let d = self.params.dim;
        for (score, q) in out.iter_mut().zip(self.items.chunks_exact(d)) {
            *score = shopgraph_embed::exact::dot(profile, q);
        }
    }

    /// Item `i`'s representation `q_i`.
    pub fn item(&self, item: u32) -> &[f32] {
        &self.items[item as usize * self.params.dim..][..self.params.dim]
    }
}

impl Recommender for Fusion {
    fn name(&self) -> String {
        let p = &self.params;
        let mut parts = vec!["ids"];
        if p.text {
            parts.push("BERT");
        }
        if p.graph {
            parts.push("KG");
        }
        if p.events {
            parts.push("kinds");
        }
        let kind =
            if p.text || p.graph || p.events { "profile transformer" } else { "sequence: SASRec" };
        let objective = match p.objective {
            Objective::Next => "next",
            Objective::HeldOut => "held-out",
        };
        format!(
            "{kind} ({}; {objective}; d{} L{} drop {} {} ep)",
            parts.join("+"),
            p.dim,
            p.max_len,
            p.dropout,
            self.epochs
        )
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let d = self.params.dim;
        self.scores_for(&self.profiles[user as usize * d..][..d], out);
    }

    fn scores_for_session(&self, session: &[u32], out: &mut [f32]) -> bool {
        match self.profile_of_session(session) {
            Ok(profile) => {
                self.scores_for(&profile, out);
                true
            }
            Err(e) => {
                tracing::warn!("scoring a session: {e}");
                false
            }
        }
    }
}

/// The user's last `n` events as (item, kind), oldest first.
fn sequence(data: &Interactions, user: u32, n: usize) -> Vec<(u32, u8)> {
    let rows = data.user(user);
    rows[rows.len().saturating_sub(n)..].iter().map(|r| (r.item, kind(r.rating))).collect()
}

/// The event's kind for the kind embedding: the stars of a rating on a 1–5 scale
/// (1–10 ratings are halved), 0 for anything without a positive value.
fn kind(rating: f32) -> u8 {
    let stars = if rating > 5.0 { rating / 2.0 } else { rating };
    if stars > 0.0 { (stars.round() as u8).clamp(1, 5) } else { 0 }
}

fn normal(rng: &mut SplitMix, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = rng.unit().max(1e-7);
            let u2 = rng.unit();
            std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

struct Norm {
    gain: Tensor,
    bias: Tensor,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm_slow(x, &self.gain, &self.bias, 1e-8)
    }
}

struct Block {
    norm1: Norm,
    query: Linear,
    key: Linear,
    value: Linear,
    norm2: Norm,
    ff1: Linear,
    ff2: Linear,
}

struct GraphTerm {
    entity: Tensor,
    relation: Tensor,
    /// `(n_items + 1) * MAX_EDGES` entity and relation ids, and `(n_items + 1,
    /// MAX_EDGES, 1)` weights (`1/|N(i)|`, 0 for padding).
    edge_entity: Tensor,
    edge_relation: Tensor,
    edge_weight: Tensor,
}

/// The network. Its tensors are candle `Var`s (shared storage), so a clone shares
/// weights with the original.
#[derive(Clone)]
struct Net {
    n_items: usize,
    dim: usize,
    vars: Vec<Var>,
    item: Tensor,
    text: Option<(Tensor, Linear)>,
    graph: Option<Arc<GraphTerm>>,
    kinds: Option<Tensor>,
    position: Tensor,
    blocks: Arc<Vec<Block>>,
    last: Arc<Norm>,
}

impl Net {
    fn new(
        n_items: usize,
        features: &ItemFeatures,
        params: &FusionParams,
        rng: &mut SplitMix,
        device: &Device,
    ) -> candle_core::Result<Net> {
        let d = params.dim;
        let mut vars = Vec::new();
        let mut var = |values: Vec<f32>, shape: &[usize]| -> candle_core::Result<Tensor> {
            let v = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
            let t = v.as_tensor().clone();
            vars.push(v);
            Ok(t)
        };
        let std = (1.0 / d as f32).sqrt();
        // Row n_items is the padding token.
        let item = var(normal(rng, (n_items + 1) * d, std), &[n_items + 1, d])?;
        let text = match (&features.text, params.text) {
            (Some((vectors, text_dim)), true) => {
                let mut padded = vectors.as_ref().clone();
                padded.resize((n_items + 1) * text_dim, 0.0);
                let constant = Tensor::from_vec(padded, (n_items + 1, *text_dim), device)?;
                let w = var(normal(rng, d * text_dim, std), &[d, *text_dim])?;
                Some((constant, Linear::new(w, None)))
            }
            _ => None,
        };
        let graph = match (&features.side, params.graph) {
            (Some(side), true) => {
                let mut df = vec![0u32; side.entities.len()];
                side.links.iter().flatten().for_each(|&(_, e)| df[e as usize] += 1);
                let mut entity = vec![0u32; (n_items + 1) * MAX_EDGES];
                let mut relation = vec![0u32; (n_items + 1) * MAX_EDGES];
                let mut weight = vec![0f32; (n_items + 1) * MAX_EDGES];
                for (i, links) in side.links.iter().enumerate() {
                    // Entities of one item only join nothing; the rarest shared come first.
                    let mut kept: Vec<(u32, u32)> =
                        links.iter().copied().filter(|&(_, e)| df[e as usize] >= 2).collect();
                    kept.sort_by_key(|&(_, e)| df[e as usize]);
                    kept.truncate(MAX_EDGES);
                    for (k, &(r, e)) in kept.iter().enumerate() {
                        entity[i * MAX_EDGES + k] = e;
                        relation[i * MAX_EDGES + k] = r;
                        weight[i * MAX_EDGES + k] = 1.0 / kept.len() as f32;
                    }
                }
                let n_entities = side.entities.len().max(1);
                let n_relations = side.relations.len().max(1);
                Some(Arc::new(GraphTerm {
                    entity: var(normal(rng, n_entities * d, std), &[n_entities, d])?,
                    relation: var(vec![1.0; n_relations * d], &[n_relations, d])?,
                    edge_entity: Tensor::from_vec(entity, (n_items + 1) * MAX_EDGES, device)?,
                    edge_relation: Tensor::from_vec(relation, (n_items + 1) * MAX_EDGES, device)?,
                    edge_weight: Tensor::from_vec(weight, (n_items + 1, MAX_EDGES, 1), device)?,
                }))
            }
            _ => None,
        };
        // Zero at first, so that a kind the training data lacks (a guest's view, kind
        // 0, on a data set of ratings) adds nothing.
        let kinds =
            if params.events { Some(var(vec![0.0; KINDS * d], &[KINDS, d])?) } else { None };
        let position = var(normal(rng, params.max_len * d, std), &[params.max_len, d])?;
        let mut linear =
            |n_in: usize, n_out: usize, rng: &mut SplitMix| -> candle_core::Result<Linear> {
                let bound = (1.0 / n_in as f32).sqrt();
                let w = var(normal(rng, n_in * n_out, bound), &[n_out, n_in])?;
                let b = var(vec![0.0; n_out], &[n_out])?;
                Ok(Linear::new(w, Some(b)))
            };
        let mut blocks = Vec::new();
        for _ in 0..params.blocks {
            let query = linear(d, d, rng)?;
            let key = linear(d, d, rng)?;
            let value = linear(d, d, rng)?;
            let ff1 = linear(d, d, rng)?;
            let ff2 = linear(d, d, rng)?;
            blocks.push((query, key, value, ff1, ff2));
        }
        let mut norm = || -> candle_core::Result<Norm> {
            Ok(Norm { gain: var(vec![1.0; d], &[d])?, bias: var(vec![0.0; d], &[d])? })
        };
        let blocks = blocks
            .into_iter()
            .map(|(query, key, value, ff1, ff2)| {
                Ok(Block { norm1: norm()?, query, key, value, norm2: norm()?, ff1, ff2 })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let last = norm()?;
        Ok(Net {
            n_items,
            dim: d,
            vars,
            item,
            text,
            graph,
            kinds,
            position,
            blocks: Arc::new(blocks),
            last: Arc::new(last),
        })
    }

    /// `q_i` for every item and the padding row: `(n_items + 1, d)`.
    fn item_matrix(&self) -> candle_core::Result<Tensor> {
        let mut q = self.item.clone();
        if let Some((vectors, projection)) = &self.text {
            q = (q + projection.forward(vectors)?)?;
        }
        if let Some(g) = &self.graph {
            let e = g.entity.index_select(&g.edge_entity, 0)?;
            let r = g.relation.index_select(&g.edge_relation, 0)?;
            let edges = (e * r)?.reshape((self.n_items + 1, MAX_EDGES, self.dim))?;
            q = (q + edges.broadcast_mul(&g.edge_weight)?.sum(1)?)?;
        }
        Ok(q)
    }

    /// The input tokens of left-padded sequences, `(batch, len, d)`, and the mask of
    /// real tokens, `(batch, len, 1)`. With `rng`, dropout is applied.
    fn tokens(
        &self,
        batch: &[&[(u32, u8)]],
        len: usize,
        items: &Tensor,
        rng: Option<(&mut SplitMix, f32)>,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let b = batch.len();
        let mut ids = vec![self.n_items as u32; b * len];
        let mut kinds = vec![0u32; b * len];
        let mut mask = vec![0f32; b * len];
        for (row, seq) in batch.iter().enumerate() {
            let seq = &seq[seq.len().saturating_sub(len)..];
            let offset = row * len + len - seq.len();
            for (k, &(item, kind)) in seq.iter().enumerate() {
                ids[offset + k] = item;
                kinds[offset + k] = u32::from(kind);
                mask[offset + k] = 1.0;
            }
        }
        let d = self.dim;
        let ids = Tensor::from_vec(ids, b * len, device)?;
        let mut x = (items.index_select(&ids, 0)?.reshape((b, len, d))? * (d as f64).sqrt())?;
        x = x.broadcast_add(&self.position.narrow(0, self.position.dim(0)? - len, len)?)?;
        if let Some(table) = &self.kinds {
            let kinds = Tensor::from_vec(kinds, b * len, device)?;
            x = (x + table.index_select(&kinds, 0)?.reshape((b, len, d))?)?;
        }
        let mask = Tensor::from_vec(mask, (b, len, 1), device)?;
        if let Some((rng, p)) = rng {
            x = dropout(&x, p, rng)?;
        }
        Ok((x.broadcast_mul(&mask)?, mask))
    }

    /// Runs the blocks: `(batch, len, d)` hidden states after the last norm.
    fn encode(
        &self,
        mut x: Tensor,
        mask: &Tensor,
        len: usize,
        objective: Objective,
        mut rng: Option<(&mut SplitMix, f32)>,
    ) -> candle_core::Result<Tensor> {
        let device = x.device().clone();
        let b = x.dim(0)?;
        // Attention bias: -1e9 for padded keys, and for the future when predicting next.
        let mut causal = vec![0f32; len * len];
        if objective == Objective::Next {
            for t in 0..len {
                for s in t + 1..len {
                    causal[t * len + s] = -1e9;
                }
            }
        }
        let causal = Tensor::from_vec(causal, (1, len, len), &device)?;
        let keys = ((mask.reshape((b, 1, len))? - 1.0)? * 1e9)?;
        let bias = causal.broadcast_add(&keys)?;
        let scale = 1.0 / (self.dim as f64).sqrt();
        for block in self.blocks.iter() {
            let a = block.norm1.forward(&x)?;
            let q = block.query.forward(&a)?;
            let k = block.key.forward(&x)?;
            let v = block.value.forward(&x)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let attention = ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
            let mut attention = attention;
            if let Some((rng, p)) = rng.as_mut() {
                attention = dropout(&attention, *p, rng)?;
            }
            let h = (a + attention)?;
            let n = block.norm2.forward(&h)?;
            let mut f = block.ff1.forward(&n)?.relu()?;
            if let Some((rng, p)) = rng.as_mut() {
                f = dropout(&f, *p, rng)?;
            }
            let mut f = block.ff2.forward(&f)?;
            if let Some((rng, p)) = rng.as_mut() {
                f = dropout(&f, *p, rng)?;
            }
            x = (n + f)?.broadcast_mul(mask)?;
        }
        self.last.forward(&x)
    }

    /// The mean cross-entropy of one batch of sequences (each ≥ 2 events) for the
    /// objective's targets.
    fn loss(
        &self,
        batch: &[&[(u32, u8)]],
        params: &FusionParams,
        rng: &mut SplitMix,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let items = self.item_matrix()?;
        // The inputs, and per target: its row in the flattened states, and its item.
        let mut inputs: Vec<Vec<(u32, u8)>> = Vec::with_capacity(batch.len());
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let hidden = match params.objective {
            Objective::Next => {
                for seq in batch {
                    inputs.push(seq[..seq.len() - 1].to_vec());
                }
                let len = inputs.iter().map(Vec::len).max().unwrap_or(1).min(params.max_len);
                for (row, seq) in batch.iter().enumerate() {
                    let next = &seq[1..];
                    let next = &next[next.len().saturating_sub(len)..];
                    let offset = row * len + len - next.len();
                    for (k, &(item, _)) in next.iter().enumerate() {
                        positions.push((offset + k) as u32);
                        targets.push(item);
                    }
                }
                let refs: Vec<&[(u32, u8)]> = inputs.iter().map(Vec::as_slice).collect();
                let (x, mask) =
                    self.tokens(&refs, len, &items, Some((rng, params.dropout)), device)?;
                let hidden =
                    self.encode(x, &mask, len, params.objective, Some((rng, params.dropout)))?;
                hidden.reshape((batch.len() * len, self.dim))?
            }
            Objective::HeldOut => {
                for (row, seq) in batch.iter().enumerate() {
                    let held = (seq.len() / 5).max(1);
                    let mut order: Vec<usize> = (0..seq.len()).collect();
                    shuffle(&mut order, rng);
                    let (out, keep) = order.split_at(held);
                    let mut keep = keep.to_vec();
                    keep.sort_unstable();
                    inputs.push(keep.iter().map(|&k| seq[k]).collect());
                    for &k in out {
                        positions.push(row as u32);
                        targets.push(seq[k].0);
                    }
                }
                let len = inputs.iter().map(Vec::len).max().unwrap_or(1).min(params.max_len);
                let refs: Vec<&[(u32, u8)]> = inputs.iter().map(Vec::as_slice).collect();
                let (x, mask) =
                    self.tokens(&refs, len, &items, Some((rng, params.dropout)), device)?;
                let hidden =
                    self.encode(x, &mask, len, params.objective, Some((rng, params.dropout)))?;
                pool(&hidden, &mask, params.objective)?
            }
        };
        let m = positions.len();
        let hidden = hidden.index_select(&Tensor::from_vec(positions, m, device)?, 0)?;
        let real = items.narrow(0, 0, self.n_items)?;
        if params.negatives == 0 {
            let logits = hidden.matmul(&real.t()?)?;
            let targets = Tensor::from_vec(targets, m, device)?;
            return candle_nn::loss::cross_entropy(&logits, &targets);
        }
        let n = params.negatives;
        let negatives: Vec<u32> = (0..n).map(|_| rng.below(self.n_items) as u32).collect();
        // A sampled negative that is the target is not a negative.
        let mut hits = vec![0f32; m * n];
        for (row, &t) in targets.iter().enumerate() {
            for (col, &neg) in negatives.iter().enumerate() {
                if neg == t {
                    hits[row * n + col] = -1e9;
                }
            }
        }
        let targets = Tensor::from_vec(targets, m, device)?;
        let positive = (&hidden * real.index_select(&targets, 0)?)?.sum_keepdim(1)?;
        let negative_items = real.index_select(&Tensor::from_vec(negatives, n, device)?, 0)?;
        let negative =
            (hidden.matmul(&negative_items.t()?)? + Tensor::from_vec(hits, (m, n), device)?)?;
        let logits = Tensor::cat(&[&positive, &negative], 1)?;
        let zeros = Tensor::zeros(m, DType::U32, device)?;
        candle_nn::loss::cross_entropy(&logits, &zeros)
    }
}

/// The profile from the states `(batch, len, d)`: the last position's for next-item
/// prediction, the mean over the real tokens for held-out prediction.
fn pool(hidden: &Tensor, mask: &Tensor, objective: Objective) -> candle_core::Result<Tensor> {
    match objective {
        Objective::Next => hidden.narrow(1, hidden.dim(1)? - 1, 1)?.squeeze(1),
        Objective::HeldOut => {
            let count = mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
            hidden.broadcast_mul(mask)?.sum(1)?.broadcast_div(&count)
        }
    }
}

/// Inverted dropout with our own seeded generator (candle's CPU generator cannot be
/// seeded).
fn dropout(x: &Tensor, p: f32, rng: &mut SplitMix) -> candle_core::Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let keep: Vec<f32> =
        (0..x.elem_count()).map(|_| if rng.unit() < p { 0.0 } else { scale }).collect();
    x * Tensor::from_vec(keep, x.shape(), x.device())?
}

#[cfg(test)]
mod tests {
    use super::{Fusion, FusionParams, ItemFeatures};
    use crate::{Interactions, Recommender};

    /// Every user walks the same cycle of items; the next item after the last one seen
    /// is always known, and the model must learn it.
    #[test]
    fn learns_a_cycle() {
        let n_items = 12;
        let records = (0..60).flat_map(|u| {
            let start = u % n_items;
            (0..8).map(move |k| {
                (format!("u{u}"), format!("i{}", (start + k) % n_items), 1.0, (u * 100 + k) as i64)
            })
        });
        let data = Interactions::from_records(records);
        let params = FusionParams {
            dim: 16,
            max_len: 8,
            epochs: 40,
            batch: 16,
            learning_rate: 5e-3,
            dropout: 0.0,
            ..FusionParams::sequence()
        };
        let model = Fusion::fit(&data, None, &ItemFeatures::default(), params).unwrap();
        let mut scores = vec![0f32; data.n_items()];
        let mut right = 0;
        for u in 0..60u32 {
            model.scores(u, &mut scores);
            let last = data.user(u).last().unwrap().item;
            let name = &data.ids().items[last as usize];
            let k: usize = name[1..].parse().unwrap();
            let next = data.ids().item(&format!("i{}", (k + 1) % n_items)).unwrap();
            let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
            right += usize::from(best as u32 == next);
        }
        assert!(right >= 54, "the next item came first for {right} of 60 users");
    }
}
