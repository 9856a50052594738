//! The learned ranker: one score from every generator's, trained in candle on the
//! validation part.
//!
//! For user `u` and item `i`, each generator `g` contributes its score standardised over
//! the items `u` has not seen, `z_g(u, i) = (s_g(u, i) − μ_g(u)) / σ_g(u)`, so that a
//! cosine, a sum of similarities and a dot product speak one language; with `ln(1 +
//! n_i)` (the item's interaction count, standardised over items) they form `f(u, i) ∈
//! ℝ^F`. The ranker is a linear term plus a small ReLU layer:
//!
//! ```text
//! r(u, i) = vᵀ f + w₂ᵀ ReLU(W₁ f + b₁)
//! ```
//!
//! trained per user as a softmax over the candidate items (every unseen item, or the
//! best `candidates` by `Σ_g z_g` in a large catalog) with the user's held-out items as
//! the positives: `−1/|T_u| Σ_{i ∈ T_u} log softmax(r(u, ·))_i`, with Adam and a little
//! weight decay.
//!
//! The generators that produce the training features are fitted on the fitting part
//! and scored against the validation part; the ones that rank the test are refitted on
//! the whole training part with the same settings ([`Ranker::over`]).

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW};

use crate::data::Interactions;
use crate::model::Recommender;
use crate::split::{SplitMix, shuffle};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankerParams {
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Items a user's list is drawn from (all of them in a smaller catalog).
    pub candidates: usize,
    pub seed: u64,
}

impl Default for RankerParams {
    fn default() -> Self {
        RankerParams {
            hidden: 16,
            epochs: 60,
            learning_rate: 5e-3,
            weight_decay: 1e-4,
            candidates: 2_000,
            seed: 2026,
        }
    }
}

/// What the ranker learned: the weights, and the names of the generators in order.
#[derive(Clone, Debug)]
pub struct RankerWeights {
    params: RankerParams,
    names: Vec<String>,
    linear: Vec<f32>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
}

/// The ranker over a set of fitted generators.
pub struct Ranker<'g> {
    weights: RankerWeights,
    generators: Vec<&'g dyn Recommender>,
    history: &'g Interactions,
    popularity: Vec<f32>,
}

impl RankerWeights {
    /// Learns the weights from `generators` (fitted on `fit`) and the validation part.
    pub fn learn(
        generators: &[&dyn Recommender],
        fit: &Interactions,
        valid: &Interactions,
        params: RankerParams,
    ) -> candle_core::Result<RankerWeights> {
        let device = Device::Cpu;
        let popularity = standard_popularity(fit);
        let f = generators.len() + 1;
        let users: Vec<u32> =
            (0..valid.n_users() as u32).filter(|&u| !valid.user(u).is_empty()).collect();
        // Per user: candidate features (c × f, row-major) and the positives' rows.
        let examples: Vec<(Vec<f32>, Vec<u32>, usize)> = users
            .iter()
            .map(|&u| {
                let (items, features) =
                    candidate_features(generators, fit, &popularity, u, params.candidates);
                let positives: Vec<u32> = valid
                    .user(u)
                    .iter()
                    .filter_map(|r| items.iter().position(|&i| i == r.item).map(|p| p as u32))
                    .collect();
                (features, positives, items.len())
            })
            .filter(|(_, positives, _)| !positives.is_empty())
            .collect();

        let mut rng = SplitMix(params.seed);
        let mut vars = Vec::new();
        let mut var = |values: Vec<f32>, shape: &[usize]| -> candle_core::Result<Tensor> {
            let v = Var::from_tensor(&Tensor::from_vec(values, shape, &device)?)?;
            let t = v.as_tensor().clone();
            vars.push(v);
            Ok(t)
        };
        let h = params.hidden;
        let scale = (1.0 / f as f32).sqrt();
        let linear = var(vec![1.0 / f as f32; f], &[f, 1])?;
        let w1 = var((0..h * f).map(|_| (rng.unit() * 2.0 - 1.0) * scale).collect(), &[h, f])?;
        let b1 = var(vec![0.0; h], &[h])?;
        let w2 = var(vec![0.0; h], &[h, 1])?;
        let hidden = Linear::new(w1.clone(), Some(b1.clone()));
        let mut optimizer = AdamW::new(
            vars,
            ParamsAdamW {
                lr: params.learning_rate,
                weight_decay: params.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        for epoch in 0..params.epochs {
            shuffle(&mut order, &mut rng);
            let mut total = 0.0;
            for chunk in order.chunks(64) {
                let mut losses = Vec::with_capacity(chunk.len());
                for &k in chunk {
                    let (features, positives, c) = &examples[k];
                    let x = Tensor::from_slice(features, (*c, f), &device)?;
                    let r = (x.matmul(&linear)? + hidden.forward(&x)?.relu()?.matmul(&w2)?)?;
                    let log_p = candle_nn::ops::log_softmax(&r.squeeze(1)?, 0)?;
                    let picked = log_p.index_select(
                        &Tensor::from_slice(positives, positives.len(), &device)?,
                        0,
                    )?;
                    losses.push(picked.mean_all()?.neg()?);
                }
                let loss = Tensor::stack(&losses, 0)?.mean_all()?;
                optimizer.backward_step(&loss)?;
                total += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
            }
            tracing::debug!(
                "ranker epoch {epoch}: loss {:.4}",
                total / examples.len().max(1) as f64
            );
        }
        let read = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        Ok(RankerWeights {
            params,
            names: generators.iter().map(|g| g.name()).collect(),
            linear: read(&linear)?,
            w1: read(&w1)?,
            b1: read(&b1)?,
            w2: read(&w2)?,
        })
    }

    /// Each feature's weight in the linear term, by generator name (then popularity).
    pub fn linear_weights(&self) -> Vec<(String, f32)> {
        self.names
            .iter()
            .cloned()
            .chain(std::iter::once("popularity".to_owned()))
            .zip(self.linear.iter().copied())
            .collect()
    }

    fn score(&self, features: &[f32]) -> f32 {
        let f = self.linear.len();
        let mut r: f32 = features.iter().zip(&self.linear).map(|(x, w)| x * w).sum();
        for k in 0..self.params.hidden {
            let row = &self.w1[k * f..(k + 1) * f];
            let a: f32 = row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>() + self.b1[k];
            r += self.w2[k] * a.max(0.0);
        }
        r
    }
}

impl<'g> Ranker<'g> {
    /// The learned weights over `generators` (the same kinds, in the same order, as
    /// they were learned with), fitted on `history`.
    pub fn over(
        weights: RankerWeights,
        generators: Vec<&'g dyn Recommender>,
        history: &'g Interactions,
    ) -> Ranker<'g> {
        assert_eq!(weights.names.len(), generators.len(), "one generator per learned input");
        let popularity = standard_popularity(history);
        Ranker { weights, generators, history, popularity }
    }
}

impl Recommender for Ranker<'_> {
    fn name(&self) -> String {
        format!("fusion ranker over {} generators", self.generators.len())
    }

    fn scores(&self, user: u32, out: &mut [f32]) {
        let f = self.generators.len() + 1;
        let (items, features) = candidate_features(
            &self.generators,
            self.history,
            &self.popularity,
            user,
            self.weights.params.candidates,
        );
        let scored: Vec<f32> = features.chunks_exact(f).map(|x| self.weights.score(x)).collect();
        // Items outside the candidates rank after all of them.
        let floor = scored.iter().copied().fold(f32::INFINITY, f32::min) - 1.0;
        out.fill(if floor.is_finite() { floor } else { 0.0 });
        for (&i, s) in items.iter().zip(scored) {
            out[i as usize] = s;
        }
    }
}

/// `ln(1 + count)` standardised over items.
fn standard_popularity(data: &Interactions) -> Vec<f32> {
    let logs: Vec<f32> = data.item_counts().iter().map(|&c| (c as f32).ln_1p()).collect();
    standardise(&logs, |_| true)
}

/// The candidates of `user` (unseen items, the best `limit` by the sum of the
/// standardised scores) and their features, `candidates × (generators + 1)`.
fn candidate_features(
    generators: &[&dyn Recommender],
    history: &Interactions,
    popularity: &[f32],
    user: u32,
    limit: usize,
) -> (Vec<u32>, Vec<f32>) {
    let n = history.n_items();
    let mut seen = vec![false; n];
    if (user as usize) < history.n_users() {
        for r in history.user(user) {
            seen[r.item as usize] = true;
        }
    }
    let mut raw = vec![0f32; n];
    let mut columns: Vec<Vec<f32>> = Vec::with_capacity(generators.len() + 1);
    for g in generators {
        g.scores(user, &mut raw);
        columns.push(standardise(&raw, |i| !seen[i]));
    }
    columns.push(popularity.to_vec());
    let mut items: Vec<u32> = (0..n as u32).filter(|&i| !seen[i as usize]).collect();
    if items.len() > limit {
        let total =
            |i: u32| -> f32 { columns[..generators.len()].iter().map(|c| c[i as usize]).sum() };
        items.select_nth_unstable_by(limit, |&a, &b| total(b).total_cmp(&total(a)));
        items.truncate(limit);
        items.sort_unstable();
    }
    let f = columns.len();
    let mut features = vec![0f32; items.len() * f];
    for (row, &i) in features.chunks_exact_mut(f).zip(&items) {
        for (x, column) in row.iter_mut().zip(&columns) {
            *x = column[i as usize];
        }
    }
    (items, features)
}

/// `(x − mean) / std` over the entries `keep` admits (the others come out as 0);
/// a constant column is all 0.
fn standardise(x: &[f32], keep: impl Fn(usize) -> bool) -> Vec<f32> {
    let (mut n, mut sum, mut squares) = (0f64, 0f64, 0f64);
    for (i, &v) in x.iter().enumerate() {
        if keep(i) && v.is_finite() {
            n += 1.0;
            sum += f64::from(v);
            squares += f64::from(v) * f64::from(v);
        }
    }
    let mean = if n > 0.0 { sum / n } else { 0.0 };
    let std = if n > 1.0 { (squares / n - mean * mean).max(0.0).sqrt() } else { 0.0 };
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if !keep(i) || !v.is_finite() || std < 1e-12 {
                0.0
            } else {
                ((f64::from(v) - mean) / std) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Ranker, RankerParams, RankerWeights, standardise};
    use crate::Interactions;
    use crate::model::Recommender;
    use crate::split::{Protocol, Split};

    /// A generator that knows the truth about half the items, and one that is noise:
    /// the ranker must learn to trust the first.
    struct Oracle(Vec<Vec<u32>>);
    struct Noise;

    impl Recommender for Oracle {
        fn name(&self) -> String {
            "oracle".into()
        }
        fn scores(&self, user: u32, out: &mut [f32]) {
            out.fill(0.0);
            for &i in &self.0[user as usize] {
                out[i as usize] = 1.0;
            }
        }
    }

    impl Recommender for Noise {
        fn name(&self) -> String {
            "noise".into()
        }
        fn scores(&self, user: u32, out: &mut [f32]) {
            for (i, o) in out.iter_mut().enumerate() {
                *o = ((user as usize * 31 + i * 17) % 13) as f32;
            }
        }
    }

    #[test]
    fn learns_which_generator_to_trust() {
        let data = Interactions::from_records((0..60).flat_map(|u| {
            (0..6).map(move |k| {
                (format!("u{u}"), format!("i{}", (u * 7 + k * 5) % 40), 1.0, k as i64)
            })
        }));
        let split = Split::new(&data, Protocol::Random { test_share: 0.3, seed: 1 });
        // The oracle knows each user's validation items.
        let truth: Vec<Vec<u32>> = (0..data.n_users() as u32)
            .map(|u| split.valid.user(u).iter().map(|r| r.item).collect())
            .collect();
        let oracle = Oracle(truth);
        let noise = Noise;
        let params = RankerParams { epochs: 40, ..RankerParams::default() };
        let weights =
            RankerWeights::learn(&[&noise, &oracle], &split.fit, &split.valid, params).unwrap();
        let learned = weights.linear_weights();
        assert!(learned[1].1 > learned[0].1.abs() * 2.0, "{learned:?}");
        let ranker = Ranker::over(weights, vec![&noise, &oracle], &split.fit);
        let mut scores = vec![0f32; data.n_items()];
        let u = (0..data.n_users() as u32).find(|&u| !split.valid.user(u).is_empty()).unwrap();
        ranker.scores(u, &mut scores);
        let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
        assert!(split.valid.user(u).iter().any(|r| r.item as usize == best));
    }

    #[test]
    fn standardising_ignores_what_is_left_out() {
        let z = standardise(&[1.0, 3.0, 100.0], |i| i < 2);
        assert_eq!(z, [-1.0, 1.0, 0.0]);
        assert_eq!(standardise(&[2.0, 2.0], |_| true), [0.0, 0.0]);
    }
}
