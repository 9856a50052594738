//! Segments: shoppers grouped by what they are interested in.
//!
//! Each shopper is a profile vector over graph concepts (authors, categories,
//! publishers, decades): how much of what they did, and said they like, touches each
//! concept, weighted by how rare the concept is (tf-idf) and scaled to unit length
//! ([`profile_vectors`]). [`cluster`] groups the vectors by mini-batch k-means (Sculley,
//! 2010) seeded by k-means++, for every k in a range, and keeps the k with the best
//! mean silhouette on a fixed sample (Rousseeuw, 1987). A segment is described by the
//! concepts its centre holds most above the average shopper ([`Clustering::describe`]),
//! and a new shopper joins the nearest centre without a rerun ([`Clustering::assign`]).
//!
//! Everything random draws from one seeded generator, so a run is repeatable.

use crate::{InsightError, Rng};

/// How to cluster.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentParams {
    /// The fewest segments to try, at least 2.
    pub k_min: usize,
    /// The most segments to try, at least `k_min`.
    pub k_max: usize,
    pub seed: u64,
    /// Points per mini-batch step.
    pub batch: usize,
    /// Mini-batch steps per k.
    pub steps: usize,
    /// Points the silhouette is measured on (all of them when there are fewer).
    pub silhouette_sample: usize,
}

impl Default for SegmentParams {
    fn default() -> SegmentParams {
        SegmentParams {
            k_min: 2,
            k_max: 12,
            seed: 42,
            batch: 1024,
            steps: 200,
            silhouette_sample: 2000,
        }
    }
}

impl SegmentParams {
    pub fn check(&self) -> Result<(), InsightError> {
        let out = |name, range, value: usize| {
            Err(InsightError::OutOfRange { name, range, value: value as f64 })
        };
        if self.k_min < 2 {
            return out("k_min", "at least 2", self.k_min);
        }
        if self.k_max < self.k_min {
            return out("k_max", "at least k_min", self.k_max);
        }
        if self.k_max > 100 {
            return out("k_max", "at most 100", self.k_max);
        }
        if self.batch == 0 {
            return out("batch", "at least 1", self.batch);
        }
        if self.steps == 0 {
            return out("steps", "at least 1", self.steps);
        }
        if self.silhouette_sample < 2 {
            return out("silhouette_sample", "at least 2", self.silhouette_sample);
        }
        Ok(())
    }
}

/// Profile vectors for shoppers from the concepts they touched.
pub struct Profiles {
    /// The concepts kept as dimensions (indices into the caller's concepts), most
    /// widespread first.
    pub dims: Vec<u32>,
    /// The shoppers with a profile (indices into the caller's list): ones who touched
    /// no kept concept have none.
    pub users: Vec<u32>,
    /// One unit vector per profiled shopper, `dims.len()` values each.
    pub vectors: Vec<f32>,
    /// Each dimension's weight, ln(shoppers / shoppers who touched it) + 1: kept so a
    /// new shopper's vector is made the same way ([`profile_vector`]).
    pub idf: Vec<f32>,
}

/// One shopper's unit vector over the dimensions `dim` gives each concept, weighted by
/// `idf`; None when they touched none of the dimensions.
pub fn profile_vector(
    touched: &[(u32, f32)],
    dim: impl Fn(u32) -> Option<usize>,
    idf: &[f32],
) -> Option<Vec<f32>> {
    let mut v = vec![0f32; idf.len()];
    for &(c, w) in touched {
        if let Some(i) = dim(c) {
            v[i] += w;
        }
    }
    let mut norm = 0f32;
    for (x, idf) in v.iter_mut().zip(idf) {
        *x = x.max(0.0) * idf;
        norm += *x * *x;
    }
    (norm > 0.0).then(|| {
        let norm = norm.sqrt();
        v.iter().map(|x| x / norm).collect()
    })
}

/// Builds unit-length tf-idf vectors over the `max_dims` concepts the most shoppers
/// touched. `touched[u]` lists shopper `u`'s (concept, weight) pairs; a concept may
/// repeat and its weights add up; negative weights (dislikes) lower it, and what ends
/// below zero counts as zero.
pub fn profile_vectors(touched: &[Vec<(u32, f32)>], max_dims: usize) -> Profiles {
    let mut reach: rustc_hash::FxHashMap<u32, u32> = Default::default();
    for concepts in touched {
        let mut seen: Vec<u32> = concepts.iter().map(|&(c, _)| c).collect();
        seen.sort_unstable();
        seen.dedup();
        for c in seen {
            *reach.entry(c).or_default() += 1;
        }
    }
    let mut dims: Vec<(u32, u32)> = reach.into_iter().collect();
    dims.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    dims.truncate(max_dims);
    let n = touched.len() as f32;
    let slot: rustc_hash::FxHashMap<u32, usize> =
        dims.iter().enumerate().map(|(i, &(c, _))| (c, i)).collect();
    let idf: Vec<f32> = dims.iter().map(|&(_, r)| (n / r as f32).ln() + 1.0).collect();
    let mut users = Vec::new();
    let mut vectors = Vec::new();
    for (u, concepts) in touched.iter().enumerate() {
        if let Some(v) = profile_vector(concepts, |c| slot.get(&c).copied(), &idf) {
            users.push(u as u32);
            vectors.extend(v);
        }
    }
    Profiles { dims: dims.into_iter().map(|(c, _)| c).collect(), users, vectors, idf }
}

/// The result of one clustering run.
#[derive(Clone, Debug)]
pub struct Clustering {
    pub dim: usize,
    /// `k × dim` centre coordinates.
    pub centroids: Vec<f32>,
    /// Each point's segment.
    pub labels: Vec<u32>,
    /// Each point's squared distance to its centre.
    pub distances: Vec<f32>,
    /// The mean silhouette of the chosen k on the sample, in [-1, 1]: how much nearer
    /// points are to their own segment than to the next one.
    pub silhouette: f64,
    /// Every k tried with its silhouette, the criterion the choice was made by.
    pub tried: Vec<(usize, f64)>,
}

impl Clustering {
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim.max(1)
    }

    pub fn centroid(&self, segment: usize) -> &[f32] {
        &self.centroids[segment * self.dim..(segment + 1) * self.dim]
    }

    /// The segment a new point belongs to, and its squared distance to that centre.
    pub fn assign(&self, point: &[f32]) -> Result<(u32, f32), InsightError> {
        if point.len() != self.dim {
            return Err(InsightError::Invalid(format!(
                "a profile vector has {} values; the segments were made from {}",
                point.len(),
                self.dim
            )));
        }
        Ok(nearest(point, &self.centroids, self.dim))
    }

    /// Sizes of the segments.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.k()];
        for &l in &self.labels {
            sizes[l as usize] += 1;
        }
        sizes
    }

    /// The `top` dimensions segment `segment`'s centre holds most above `mean` (the
    /// average point), each with its lift (centre over average). Dimensions at or below
    /// the average are left out.
    pub fn describe(&self, segment: usize, mean: &[f32], top: usize) -> Vec<(usize, f32)> {
        let centre = self.centroid(segment);
        let mut above: Vec<(usize, f32, f32)> = centre
            .iter()
            .zip(mean)
            .enumerate()
            .filter(|(_, (c, m))| **c > **m && **c > 0.0)
            .map(|(i, (c, m))| (i, c - m, if *m > 0.0 { c / m } else { f32::INFINITY }))
            .collect();
        above.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        above.into_iter().take(top).map(|(i, _, lift)| (i, lift)).collect()
    }
}

/// The coordinate-wise mean of `points` (`dim` values each).
pub fn mean(points: &[f32], dim: usize) -> Vec<f32> {
    let mut m = vec![0f32; dim];
    let n = points.len() / dim.max(1);
    for p in points.chunks_exact(dim) {
        for (a, x) in m.iter_mut().zip(p) {
            *a += x;
        }
    }
    m.iter_mut().for_each(|a| *a /= n.max(1) as f32);
    m
}

/// Clusters `points` (`dim` values each) for every k in the params' range and keeps
/// the k with the best silhouette (the smaller k on a tie).
pub fn cluster(
    points: &[f32],
    dim: usize,
    params: &SegmentParams,
) -> Result<Clustering, InsightError> {
    params.check()?;
    if dim == 0 || points.is_empty() {
        return Err(InsightError::Empty("no profile vectors"));
    }
    if !points.len().is_multiple_of(dim) {
        return Err(InsightError::Invalid(format!(
            "{} values do not make vectors of {dim}",
            points.len()
        )));
    }
    if let Some(i) = points.iter().position(|x| !x.is_finite()) {
        return Err(InsightError::Invalid(format!(
            "vector {} holds a value that is not a finite number",
            i / dim
        )));
    }
    let n = points.len() / dim;
    if n <= params.k_min {
        return Err(InsightError::OutOfRange {
            name: "k_min",
            range: "below the number of shoppers profiled",
            value: params.k_min as f64,
        });
    }
    let k_max = params.k_max.min(n - 1);
    let mut rng = Rng::new(params.seed);

    // One sample for every k, with its distances computed once.
    let sample: Vec<usize> = if n <= params.silhouette_sample {
        (0..n).collect()
    } else {
        let mut s = rng.sample(n, params.silhouette_sample);
        s.sort_unstable();
        s
    };
    let s = sample.len();
    let mut between = vec![0f32; s * s];
    for a in 0..s {
        let pa = &points[sample[a] * dim..][..dim];
        for b in a + 1..s {
            let d = squared(pa, &points[sample[b] * dim..][..dim]).sqrt();
            between[a * s + b] = d;
            between[b * s + a] = d;
        }
    }

    let mut best: Option<(f64, Vec<f32>)> = None;
    let mut tried = Vec::new();
    for k in params.k_min..=k_max {
        let centroids = mini_batch(points, dim, k, params, &mut rng);
        let labels: Vec<u32> =
            sample.iter().map(|&i| nearest(&points[i * dim..][..dim], &centroids, dim).0).collect();
        let score = silhouette(&between, &labels, k);
        tried.push((k, score));
        if best.as_ref().is_none_or(|(b, _)| score > *b + 1e-12) {
            best = Some((score, centroids));
        }
    }
    let (silhouette, centroids) = best.expect("at least one k is tried");
    let (labels, distances) = points.chunks_exact(dim).map(|p| nearest(p, &centroids, dim)).unzip();
    Ok(Clustering { dim, centroids, labels, distances, silhouette, tried })
}

/// k centres by mini-batch k-means from a k-means++ start.
fn mini_batch(
    points: &[f32],
    dim: usize,
    k: usize,
    params: &SegmentParams,
    rng: &mut Rng,
) -> Vec<f32> {
    let n = points.len() / dim;
    let mut centroids = plus_plus(points, dim, k, rng);
    let mut counts = vec![0u32; k];
    let batch = params.batch.min(n);
    let mut picked = Vec::with_capacity(batch);
    for _ in 0..params.steps {
        picked.clear();
        picked.extend((0..batch).map(|_| rng.below(n)));
        // Assign the batch to the centres as they were, then move each centre towards
        // its points with a step that shrinks as it gathers more (1 / count).
        let labels: Vec<u32> =
            picked.iter().map(|&i| nearest(&points[i * dim..][..dim], &centroids, dim).0).collect();
        for (&i, &c) in picked.iter().zip(&labels) {
            let c = c as usize;
            counts[c] += 1;
            let eta = 1.0 / counts[c] as f32;
            let centre = &mut centroids[c * dim..(c + 1) * dim];
            for (m, x) in centre.iter_mut().zip(&points[i * dim..][..dim]) {
                *m += eta * (x - *m);
            }
        }
    }
    centroids
}

/// k-means++ seeding (Arthur & Vassilvitskii, 2007) on up to 20 points per centre.
fn plus_plus(points: &[f32], dim: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let n = points.len() / dim;
    let pool: Vec<usize> = if n <= 20 * k { (0..n).collect() } else { rng.sample(n, 20 * k) };
    let point = |i: usize| &points[pool[i] * dim..][..dim];
    let mut centroids = Vec::with_capacity(k * dim);
    centroids.extend_from_slice(point(rng.below(pool.len())));
    let mut closest: Vec<f32> = (0..pool.len()).map(|i| squared(point(i), &centroids)).collect();
    while centroids.len() < k * dim {
        let total: f64 = closest.iter().map(|&d| f64::from(d)).sum();
        let next = if total > 0.0 {
            let mut target = rng.unit() * total;
            let mut chosen = pool.len() - 1;
            for (i, &d) in closest.iter().enumerate() {
                target -= f64::from(d);
                if target < 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            // Every point sits on a centre already: any will do.
            rng.below(pool.len())
        };
        let start = centroids.len();
        centroids.extend_from_slice(point(next));
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(squared(point(i), &centroids[start..]));
        }
    }
    centroids
}

/// The mean silhouette of a labelling, from the points' distances (`s × s`). A point
/// alone in its segment scores 0, as Rousseeuw defines it.
fn silhouette(between: &[f32], labels: &[u32], k: usize) -> f64 {
    let s = labels.len();
    let mut sizes = vec![0usize; k];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    let mut sums = vec![0f64; k];
    let mut total = 0.0;
    for a in 0..s {
        sums.iter_mut().for_each(|x| *x = 0.0);
        for b in 0..s {
            sums[labels[b] as usize] += f64::from(between[a * s + b]);
        }
        let own = labels[a] as usize;
        if sizes[own] <= 1 {
            continue;
        }
        let inside = sums[own] / (sizes[own] - 1) as f64;
        let outside = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if outside.is_finite() {
            let wider = inside.max(outside);
            if wider > 0.0 {
                total += (outside - inside) / wider;
            }
        }
    }
    total / s as f64
}

fn squared(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest centre and the squared distance to it (the first on a tie).
fn nearest(point: &[f32], centroids: &[f32], dim: usize) -> (u32, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, centre) in centroids.chunks_exact(dim).enumerate() {
        let d = squared(point, centre);
        if d < best.1 {
            best = (c as u32, d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centres`, jittered by at most `spread`.
    fn blobs(centres: &[[f32; 3]], per: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut points = Vec::new();
        for c in centres {
            for _ in 0..per {
                points.extend(c.iter().map(|x| x + spread * (rng.unit() as f32 - 0.5)));
            }
        }
        points
    }

    const THREE: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]];

    #[test]
    fn three_blobs_give_three_segments_chosen_by_silhouette() {
        let points = blobs(&THREE, 60, 1.0, 7);
        let params =
            SegmentParams { k_min: 2, k_max: 6, batch: 64, steps: 100, ..Default::default() };
        let run = cluster(&points, 3, &params).unwrap();
        assert_eq!(run.k(), 3, "tried: {:?}", run.tried);
        assert_eq!(run.tried.iter().map(|t| t.0).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
        assert!(run.silhouette > 0.7, "{}", run.silhouette);
        // Each blob is one segment.
        for blob in run.labels.chunks(60) {
            assert!(blob.iter().all(|&l| l == blob[0]), "{blob:?}");
        }
        assert_eq!(run.sizes().iter().filter(|&&s| s == 60).count(), 3);
        // A new point near a blob joins that blob's segment.
        let (segment, distance) = run.assign(&[5.1, 4.9, 0.2]).unwrap();
        assert_eq!(segment, run.labels[60]);
        assert!(distance < 0.5);
    }

    #[test]
    fn a_seed_makes_a_run_repeatable() {
        let points = blobs(&THREE, 200, 4.0, 3);
        let params = SegmentParams {
            k_min: 2,
            k_max: 5,
            batch: 32,
            steps: 50,
            silhouette_sample: 100,
            seed: 9,
        };
        let a = cluster(&points, 3, &params).unwrap();
        let b = cluster(&points, 3, &params).unwrap();
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centroids, b.centroids);
        assert_eq!(a.tried, b.tried);
    }

    #[test]
    fn a_description_names_what_a_segment_holds_above_the_average() {
        let points = blobs(&THREE, 50, 0.5, 1);
        let params = SegmentParams { k_min: 3, k_max: 3, ..Default::default() };
        let run = cluster(&points, 3, &params).unwrap();
        let avg = mean(&points, 3);
        // The segment of the blob at (0, 5, 5) stands out in dimensions 1 and 2.
        let words = run.describe(run.labels[100] as usize, &avg, 3);
        let dims: Vec<usize> = words.iter().map(|w| w.0).collect();
        assert_eq!(dims.len(), 2, "{words:?}");
        assert!(dims.contains(&2) && words.iter().all(|w| w.1 > 1.0), "{words:?}");
    }

    #[test]
    fn profiles_weigh_rare_concepts_up_and_skip_shoppers_with_none() {
        // Concept 0 everyone touched; concept 1 only shopper 0.
        let touched =
            vec![vec![(0, 1.0), (1, 1.0)], vec![(0, 2.0)], vec![], vec![(0, 1.0), (5, 1.0)]];
        let p = profile_vectors(&touched, 2);
        assert_eq!(p.dims, [0, 1]);
        assert_eq!(p.users, [0, 1, 3], "shopper 2 touched nothing");
        let v0 = &p.vectors[0..2];
        assert!(v0[1] > v0[0], "the rare concept weighs more: {v0:?}");
        for v in p.vectors.chunks(2) {
            assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // A dislike that outweighs the likes leaves nothing.
        let p = profile_vectors(&[vec![(0, 1.0), (0, -2.0)], vec![(0, 1.0)]], 4);
        assert_eq!(p.users, [1]);
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let params = SegmentParams::default();
        assert!(matches!(cluster(&[], 3, &params), Err(InsightError::Empty(_))));
        assert!(matches!(cluster(&[1.0, 2.0], 3, &params), Err(InsightError::Invalid(_))));
        let nan = [0.0, f32::NAN, 1.0, 1.0, 2.0, 2.0];
        assert!(matches!(cluster(&nan, 2, &params), Err(InsightError::Invalid(_))));
        let two = [0.0, 0.0, 1.0, 1.0];
        let err = cluster(&two, 2, &params).unwrap_err();
        assert!(err.to_string().contains("k_min"), "{err}");
        for bad in [
            SegmentParams { k_min: 1, ..params },
            SegmentParams { k_max: 1, ..params },
            SegmentParams { steps: 0, ..params },
        ] {
            assert!(matches!(bad.check(), Err(InsightError::OutOfRange { .. })), "{bad:?}");
        }
        let run = cluster(&blobs(&THREE, 10, 0.1, 2), 3, &params).unwrap();
        assert!(run.assign(&[1.0, 2.0]).unwrap_err().to_string().contains("made from 3"));
    }
}
