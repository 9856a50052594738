//! Evaluation protocols, and the files that let others score the same split.
//!
//! A [`Split`] has four parts over one index space: `test`, held out once for the
//! table; `train`, everything else; and `train` cut again by the same protocol into
//! `fit` and `valid`, where hyperparameters are chosen. The final models are fitted
//! on `train` with the chosen values and scored on `test`.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use crate::RecommendError;
use crate::data::{Interaction, Interactions};

/// How the held-out part is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Protocol {
    /// A share of each user's interactions, chosen at random with a fixed seed.
    Random { test_share: f64, seed: u64 },
    /// Each user's latest interaction (users with at least two).
    LeaveLastOut,
}

impl Protocol {
    pub fn describe(&self) -> String {
        match self {
            Protocol::Random { test_share, seed } => {
                format!(
                    "random {:.0}/{:.0} per user, seed {seed}",
                    100.0 * (1.0 - test_share),
                    100.0 * test_share
                )
            }
            Protocol::LeaveLastOut => "leave-last-out by time".into(),
        }
    }

    /// `(kept, held out)`.
    pub fn cut(&self, data: &Interactions) -> (Interactions, Interactions) {
        let (mut kept, mut held) = (Vec::new(), Vec::new());
        for u in 0..data.n_users() as u32 {
            let rows = data.user(u);
            match *self {
                Protocol::Random { test_share, seed } => {
                    let mut order: Vec<Interaction> = rows.to_vec();
                    let mut rng = SplitMix(seed ^ (u64::from(u) << 20).wrapping_mul(0x9E37_79B9));
                    shuffle(&mut order, &mut rng);
                    let n = (rows.len() as f64 * test_share).round() as usize;
                    // Every user keeps something to learn from.
                    let n = n.min(rows.len().saturating_sub(1));
                    held.extend_from_slice(&order[..n]);
                    kept.extend_from_slice(&order[n..]);
                }
                Protocol::LeaveLastOut => {
                    // Rows are in time order; ties are broken by item index.
                    if rows.len() >= 2 {
                        kept.extend_from_slice(&rows[..rows.len() - 1]);
                        held.push(rows[rows.len() - 1]);
                    } else {
                        kept.extend_from_slice(rows);
                    }
                }
            }
        }
        (Interactions::new(data.ids().clone(), kept), Interactions::new(data.ids().clone(), held))
    }
}

/// One data set cut for evaluation.
#[derive(Clone, Debug)]
pub struct Split {
    pub protocol: Protocol,
    /// Hyperparameter search fits on `fit` and scores on `valid`.
    pub fit: Interactions,
    pub valid: Interactions,
    /// `fit` and `valid` together: what the final models learn from.
    pub train: Interactions,
    /// Scored once, for the table.
    pub test: Interactions,
}

impl Split {
    pub fn new(data: &Interactions, protocol: Protocol) -> Split {
        let (train, test) = protocol.cut(data);
        let inner = match protocol {
            // A different seed, so that the validation cut is not the test cut again.
            Protocol::Random { test_share, seed } => {
                Protocol::Random { test_share, seed: seed.wrapping_add(1) }
            }
            other => other,
        };
        let (fit, valid) = inner.cut(&train);
        Split { protocol, fit, valid, train, test }
    }

    /// Writes `fit.tsv`, `valid.tsv`, `train.tsv` and `test.tsv` (user, item, rating,
    /// time in seconds, with the data set's own ids) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), RecommendError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| RecommendError::Io { path: dir.to_owned(), source })?;
        for (name, part) in [
            ("fit", &self.fit),
            ("valid", &self.valid),
            ("train", &self.train),
            ("test", &self.test),
        ] {
            let path = dir.join(format!("{name}.tsv"));
            let io = |source| RecommendError::Io { path: path.clone(), source };
            let mut out = BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            writeln!(out, "user\titem\trating\ttime").map_err(io)?;
            let ids = part.ids();
            for r in part.rows() {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    ids.users[r.user as usize],
                    ids.items[r.item as usize],
                    r.rating,
                    r.time / 1000
                )
                .map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        Ok(())
    }
}

/// Reads a ranked list file written by a peer: `user<TAB>item<TAB>item ...` a line,
/// best first, with the data set's own ids (which may hold spaces: MovieLens-1M's are
/// titles). Unknown ids are an error, so that a peer
/// scoring other data fails loudly.
pub fn read_rankings(path: &Path, data: &Interactions) -> Result<Vec<Vec<u32>>, RecommendError> {
    let file = std::fs::File::open(path)
        .map_err(|source| RecommendError::Io { path: path.into(), source })?;
    let ids = data.ids();
    let mut out = vec![Vec::new(); data.n_users()];
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RecommendError::Io { path: path.into(), source })?;
        let bad =
            |reason: String| RecommendError::Format { path: path.into(), line: n + 1, reason };
        let Some((user, ranked)) = line.split_once('\t') else {
            return Err(bad("expected user<TAB>items".into()));
        };
        let u = ids.user(user).ok_or_else(|| bad(format!("unknown user {user:?}")))?;
        out[u as usize] = ranked
            .split('\t')
            .filter(|i| !i.is_empty())
            .map(|i| ids.item(i).ok_or_else(|| bad(format!("unknown item {i:?}"))))
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}

/// SplitMix64: small, seeded, and the same on every machine.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut SplitMix) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{Protocol, Split};
    use crate::data::Interactions;

    fn data() -> Interactions {
        Interactions::from_records((0..40).flat_map(|u| {
            (0..(3 + u % 7)).map(move |i| {
                (format!("u{u}"), format!("i{}", (u * 3 + i) % 25), 1.0, i64::from(u * 100 + i))
            })
        }))
    }

    fn pairs(part: &Interactions) -> HashSet<(u32, u32)> {
        part.rows().iter().map(|r| (r.user, r.item)).collect()
    }

    #[test]
    fn no_test_pair_leaks_into_training() {
        let data = data();
        for protocol in [Protocol::Random { test_share: 0.25, seed: 7 }, Protocol::LeaveLastOut] {
            let split = Split::new(&data, protocol);
            let (train, test) = (pairs(&split.train), pairs(&split.test));
            assert!(train.is_disjoint(&test), "{protocol:?}");
            assert_eq!(train.len() + test.len(), data.len(), "{protocol:?}: nothing lost");
            assert!(pairs(&split.fit).is_disjoint(&pairs(&split.valid)));
            assert_eq!(split.fit.len() + split.valid.len(), split.train.len());
            assert!(!split.valid.is_empty());
        }
    }

    #[test]
    fn leave_last_out_holds_out_each_users_latest() {
        let data = data();
        let split = Split::new(&data, Protocol::LeaveLastOut);
        for u in 0..data.n_users() as u32 {
            let latest = data.user(u).last().unwrap();
            assert_eq!(split.test.user(u), [*latest]);
            assert!(split.train.user(u).iter().all(|r| r.time < latest.time));
        }
    }

    #[test]
    fn peer_rankings_with_unknown_ids_are_refused() {
        let data = data();
        let dir = std::env::temp_dir().join(format!("sg-rank-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peer.tsv");
        std::fs::write(&path, "u1\ti3\ti4\n").unwrap();
        let lists = super::read_rankings(&path, &data).unwrap();
        let u1 = data.ids().user("u1").unwrap();
        assert_eq!(lists[u1 as usize].len(), 2);
        std::fs::write(&path, "u1\ti3\tnosuchitem\n").unwrap();
        let err = super::read_rankings(&path, &data).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("nosuchitem"), "{err}");
        std::fs::write(&path, "stranger\ti3\n").unwrap();
        assert!(super::read_rankings(&path, &data).unwrap_err().to_string().contains("stranger"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_split_is_seeded() {
        let data = data();
        let a = Split::new(&data, Protocol::Random { test_share: 0.25, seed: 1 });
        let b = Split::new(&data, Protocol::Random { test_share: 0.25, seed: 1 });
        let c = Split::new(&data, Protocol::Random { test_share: 0.25, seed: 2 });
        assert_eq!(pairs(&a.test), pairs(&b.test));
        assert_ne!(pairs(&a.test), pairs(&c.test));
        // About a quarter of each user's, never all of it.
        let share = a.test.len() as f64 / data.len() as f64;
        assert!((0.2..0.3).contains(&share), "{share}");
        assert!((0..data.n_users() as u32).all(|u| !a.train.user(u).is_empty()));
    }
}
