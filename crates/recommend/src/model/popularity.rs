//! Most popular first, with old interactions counting less: each counts
//! `0.5^(age / half_life)`, its age measured from the latest interaction in training.

use crate::data::Interactions;
use crate::model::Recommender;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PopularityParams {
    /// `None`: every interaction counts 1, however old.
    pub half_life_days: Option<f64>,
}

pub struct Popularity {
    params: PopularityParams,
    score: Vec<f32>,
}

impl Popularity {
    pub fn fit(train: &Interactions, params: PopularityParams) -> Popularity {
        let now = train.last_time();
        let mut score = vec![0f64; train.n_items()];
        for r in train.rows() {
            let weight = match params.half_life_days {
                Some(days) => {
                    let age_days = (now - r.time) as f64 / 86_400_000.0;
                    0.5f64.powf(age_days / days)
                }
                None => 1.0,
            };
            score[r.item as usize] += weight;
        }
        Popularity { params, score: score.into_iter().map(|s| s as f32).collect() }
    }
}

impl Recommender for Popularity {
    fn name(&self) -> String {
        match self.params.half_life_days {
            Some(days) => format!("popularity (half-life {days} d)"),
            None => "popularity".into(),
        }
    }

    fn scores(&self, _user: u32, out: &mut [f32]) {
        out.copy_from_slice(&self.score);
    }
}
