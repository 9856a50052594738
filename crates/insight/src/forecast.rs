//! Demand forecasts: weekly demand per product or category by additive Holt–Winters
//! exponential smoothing with a damped trend (Gardner & McKenzie, 1985), backtested
//! against the seasonal-naive forecast ("the same week last year").
//!
//! The smoothing weights are chosen per series on a grid by the one-step error over
//! the training weeks. A series shorter than two seasons is smoothed without a
//! seasonal part. Forecasts never go below zero: demand is a count.
//!
//! Accuracy is the mean absolute scaled error (Hyndman & Koehler, 2006): the forecast's
//! mean absolute error on held-out weeks over the seasonal-naive forecast's mean error
//! on the training weeks. Below 1, the forecast beats what the seasonal-naive forecast
//! does in-sample; [`Backtest`] reports the seasonal-naive forecast's own MASE on the
//! same held-out weeks beside it.

use crate::InsightError;

/// Milliseconds in a week.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Weeks start on Monday 00:00 UTC (the Unix epoch was a Thursday).
pub fn week_of(at_ms: i64) -> i64 {
    (at_ms + 3 * 24 * 3600 * 1000).div_euclid(WEEK_MS)
}

/// The Monday (ms) that starts week `week`.
pub fn week_start(week: i64) -> i64 {
    week * WEEK_MS - 3 * 24 * 3600 * 1000
}

/// Weekly counts of `(time ms, series)` observations for `n_series` series, over the
/// whole weeks from the first observation's week to the last whole week before the
/// last observation's week (which may be cut short). Returns the first week and one
/// series of counts per key, all of the same length.
pub fn weekly(
    observations: impl IntoIterator<Item = (i64, u32)> + Clone,
    n_series: usize,
) -> Result<(i64, Vec<Vec<f64>>), InsightError> {
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (at, _) in observations.clone() {
        first = first.min(week_of(at));
        last = last.max(week_of(at));
    }
    if first > last {
        return Err(InsightError::Empty("no dated demand"));
    }
    let weeks = (last - first) as usize; // the last week may be partial: left out
    if weeks == 0 {
        return Err(InsightError::Empty("less than one whole week of demand"));
    }
    Ok((first, count_weeks(observations, n_series, first, weeks)))
}

/// Weekly counts of `(time ms, series)` observations over `weeks` weeks from week
/// `first`; observations outside them are left out.
pub fn count_weeks(
    observations: impl IntoIterator<Item = (i64, u32)>,
    n_series: usize,
    first: i64,
    weeks: usize,
) -> Vec<Vec<f64>> {
    let mut series = vec![vec![0.0; weeks]; n_series];
    for (at, key) in observations {
        let w = week_of(at) - first;
        if (0..weeks as i64).contains(&w)
            && let Some(s) = series.get_mut(key as usize)
        {
            s[w as usize] += 1.0;
        }
    }
    series
}

/// The smoothing weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Level, in (0, 1].
    pub alpha: f64,
    /// Trend, in [0, 1] (0: the starting trend, damped).
    pub beta: f64,
    /// Season, in [0, 1].
    pub gamma: f64,
    /// Damping of the trend per step, in (0, 1].
    pub phi: f64,
}

const ALPHAS: [f64; 7] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9];
const BETAS: [f64; 4] = [0.0, 0.05, 0.1, 0.2];
const GAMMAS: [f64; 4] = [0.0, 0.05, 0.1, 0.3];
const PHIS: [f64; 3] = [0.8, 0.9, 0.98];

/// How a fitted series forecasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Holt–Winters smoothing with these weights (with a season when the model's
    /// `period` is not 0).
    Smoothing(Weights),
    /// The median of the last this many weeks, held flat: for intermittent demand,
    /// where most weeks are zero, the level with the least absolute error.
    RecentMedian(usize),
}

/// Windows tried for [`Method::RecentMedian`].
const MEDIAN_WINDOWS: [usize; 3] = [4, 8, 13];

/// A fitted series: its state after the last training week.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub method: Method,
    /// The season's length in weeks, or 0 without a season.
    pub period: usize,
    level: f64,
    trend: f64,
    /// By week of the season (`t % period`).
    season: Vec<f64>,
    /// Training weeks.
    n: usize,
    /// Root mean squared one-step error over the training weeks (smoothing only).
    pub rmse: f64,
    /// Mean absolute error over the validation weeks the method was chosen on, when
    /// the series was long enough to hold some out.
    pub validation_mae: Option<f64>,
}

impl Model {
    /// Forecasts for the `h` weeks after the training weeks.
    pub fn forecast(&self, h: usize) -> Vec<f64> {
        let phi = match self.method {
            Method::Smoothing(w) => w.phi,
            Method::RecentMedian(_) => 0.0,
        };
        let mut damp = 0.0;
        let mut phi_i = 1.0;
        (1..=h)
            .map(|i| {
                phi_i *= phi;
                damp += phi_i;
                let s =
                    if self.period > 0 { self.season[(self.n + i - 1) % self.period] } else { 0.0 };
                (self.level + damp * self.trend + s).max(0.0)
            })
            .collect()
    }
}

/// Fits `y` (weekly demand). The method is chosen among smoothing without a season,
/// smoothing with a season of `period` weeks (52 for a year; when `y` holds two), and
/// recent medians, by the absolute error of each one's forecast of the last weeks of
/// `y` (up to 12, a quarter of `y` at most) from the weeks before them; the winner is
/// then fitted to all of `y`. A series too short to hold weeks out is smoothed with
/// the weights of least one-step error.
pub fn fit(y: &[f64], period: usize) -> Result<Model, InsightError> {
    if y.len() < 3 {
        return Err(InsightError::Empty("fewer than three weeks of demand"));
    }
    if let Some(w) = y.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(InsightError::Invalid(format!("week {w}'s demand {} is not a count", y[w])));
    }
    let period = if period >= 2 { period } else { 0 };
    // Simplest first: on a tie the simpler method is kept.
    let mut candidates: Vec<(Method, usize)> =
        MEDIAN_WINDOWS.iter().map(|&w| (Method::RecentMedian(w), 0)).collect();
    for season in [0, period] {
        if season > 0 && y.len() < 2 * season {
            continue;
        }
        let gammas: &[f64] = if season > 0 { &GAMMAS[1..] } else { &[0.0] };
        for &alpha in &ALPHAS {
            for &beta in &BETAS {
                for &gamma in gammas {
                    for &phi in &PHIS {
                        candidates
                            .push((Method::Smoothing(Weights { alpha, beta, gamma, phi }), season));
                    }
                }
            }
        }
        if period == 0 {
            break;
        }
    }

    let held = (y.len() / 4).min(12);
    let (train, valid) = y.split_at(y.len() - held);
    let mut best: Option<(f64, Method, usize)> = None;
    if held >= 2 && train.len() >= 3 {
        for &(method, season) in &candidates {
            if season > 0 && train.len() < 2 * season {
                continue;
            }
            let f = run(train, season, method).forecast(held);
            let mae = f.iter().zip(valid).map(|(a, b)| (a - b).abs()).sum::<f64>() / held as f64;
            if best.is_none_or(|(b, _, _)| mae < b - 1e-12) {
                best = Some((mae, method, season));
            }
        }
    }
    let Some((mae, method, season)) = best else {
        // Too short to hold weeks out: the smoothing weights of least one-step error.
        let mut fitted: Option<Model> = None;
        for &(method, season) in candidates.iter().filter(|c| matches!(c.0, Method::Smoothing(_))) {
            let m = run(y, season, method);
            if fitted.as_ref().is_none_or(|f| m.rmse < f.rmse) {
                fitted = Some(m);
            }
        }
        return Ok(fitted.expect("the grid is not empty"));
    };
    Ok(Model { validation_mae: Some(mae), ..run(y, season, method) })
}

/// Fits one method to `y`: runs the smoothing recursions, or takes the median.
fn run(y: &[f64], period: usize, method: Method) -> Model {
    let w = match method {
        Method::Smoothing(w) => w,
        Method::RecentMedian(window) => {
            let mut last: Vec<f64> = y[y.len().saturating_sub(window)..].to_vec();
            last.sort_by(f64::total_cmp);
            let m = last.len();
            let median =
                if m % 2 == 1 { last[m / 2] } else { (last[m / 2 - 1] + last[m / 2]) / 2.0 };
            return Model {
                method,
                period: 0,
                level: median,
                trend: 0.0,
                season: Vec::new(),
                n: y.len(),
                rmse: f64::NAN,
                validation_mae: None,
            };
        }
    };
    let (mut level, mut trend, mut season, start) = if period > 0 {
        let first: f64 = y[..period].iter().sum::<f64>() / period as f64;
        let second: f64 = y[period..2 * period].iter().sum::<f64>() / period as f64;
        let season: Vec<f64> = y[..period].iter().map(|v| v - first).collect();
        (first, (second - first) / period as f64, season, period)
    } else {
        (y[0], 0.0, Vec::new(), 1)
    };
    let mut sse = 0.0;
    for (t, &v) in y.iter().enumerate().skip(start) {
        let s = if period > 0 { season[t % period] } else { 0.0 };
        let err = v - (level + w.phi * trend + s);
        sse += err * err;
        let new_level = w.alpha * (v - s) + (1.0 - w.alpha) * (level + w.phi * trend);
        trend = w.beta * (new_level - level) + (1.0 - w.beta) * w.phi * trend;
        if period > 0 {
            season[t % period] = w.gamma * (v - new_level) + (1.0 - w.gamma) * s;
        }
        level = new_level;
    }
    let steps = (y.len() - start).max(1) as f64;
    Model {
        method,
        period,
        level,
        trend,
        season,
        n: y.len(),
        rmse: (sse / steps).sqrt(),
        validation_mae: None,
    }
}

/// The seasonal-naive forecast: each week as the same week one season before (the
/// last week's demand when `y` is shorter than a season).
pub fn seasonal_naive(y: &[f64], period: usize, h: usize) -> Vec<f64> {
    let n = y.len();
    (0..h)
        .map(|i| {
            if period >= 1 && n >= period {
                // Week n + i is i % period weeks into the last whole season.
                y[n - period + i % period]
            } else {
                y.last().copied().unwrap_or(0.0)
            }
        })
        .collect()
}

/// One series' backtest over its last `horizon` weeks.
#[derive(Clone, Debug, PartialEq)]
pub struct Backtest {
    /// Mean absolute error of the smoothing forecast on the held-out weeks.
    pub mae: f64,
    /// Mean absolute error of the seasonal-naive forecast on the same weeks.
    pub mae_naive: f64,
    /// The in-sample mean absolute error of the seasonal-naive forecast (MASE's scale).
    pub scale: f64,
    pub forecast: Vec<f64>,
    pub naive: Vec<f64>,
    pub model: Model,
}

impl Backtest {
    pub fn mase(&self) -> f64 {
        self.mae / self.scale
    }

    pub fn mase_naive(&self) -> f64 {
        self.mae_naive / self.scale
    }
}

/// Holds out the last `horizon` weeks of `y`, fits on the rest, and scores both
/// forecasts on the held-out weeks. Refused when the training weeks are fewer than one
/// season plus one, or never change (no scale to measure error by).
pub fn backtest(y: &[f64], period: usize, horizon: usize) -> Result<Backtest, InsightError> {
    if horizon == 0 {
        return Err(InsightError::OutOfRange {
            name: "horizon",
            range: "at least 1 week",
            value: 0.0,
        });
    }
    if period == 0 || y.len() < horizon + period + 1 {
        return Err(InsightError::Invalid(format!(
            "a backtest of {horizon} weeks with a season of {period} needs at least {} weeks, got {}",
            horizon + period.max(1) + 1,
            y.len()
        )));
    }
    let (train, test) = y.split_at(y.len() - horizon);
    let scale = train.windows(period + 1).map(|w| (w[period] - w[0]).abs()).sum::<f64>()
        / (train.len() - period) as f64;
    if scale == 0.0 {
        return Err(InsightError::Invalid(
            "the training weeks repeat exactly each season: no error scale".into(),
        ));
    }
    let model = fit(train, period)?;
    let forecast = model.forecast(horizon);
    let naive = seasonal_naive(train, period, horizon);
    let mae =
        |f: &[f64]| f.iter().zip(test).map(|(a, b)| (a - b).abs()).sum::<f64>() / horizon as f64;
    Ok(Backtest { mae: mae(&forecast), mae_naive: mae(&naive), scale, forecast, naive, model })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A year-long sine on a slow decline, with a little deterministic noise.
    fn seasonal(weeks: usize) -> Vec<f64> {
        (0..weeks)
            .map(|t| {
                let t = t as f64;
                let noise = ((t * 12.9898).sin() * 43_758.547).fract() * 4.0;
                (100.0 - 0.3 * t + 30.0 * (2.0 * std::f64::consts::PI * t / 52.0).sin() + noise)
                    .max(0.0)
            })
            .collect()
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2000-05-01 was a Monday; 2000-05-07 23:59 a Sunday of the same week.
        let monday = 957_139_200_000;
        assert_eq!(week_start(week_of(monday)), monday);
        assert_eq!(week_of(monday + WEEK_MS - 60_000), week_of(monday));
        assert_eq!(week_of(monday - 1), week_of(monday) - 1);
    }

    #[test]
    fn weekly_counts_leave_the_last_partial_week_out() {
        let monday = 957_139_200_000;
        let obs =
            [(monday, 0), (monday + 1, 1), (monday + WEEK_MS, 0), (monday + 2 * WEEK_MS + 5, 1)];
        let (first, series) = weekly(obs.iter().copied(), 2).unwrap();
        assert_eq!(week_start(first), monday);
        assert_eq!(series, [vec![1.0, 1.0], vec![1.0, 0.0]]);
        assert!(weekly(std::iter::empty::<(i64, u32)>(), 1).is_err());
        assert!(weekly([(monday, 0)], 1).is_err(), "one partial week is not a series");
    }

    #[test]
    fn a_seasonal_series_is_forecast_better_than_the_same_week_last_year() {
        let y = seasonal(160);
        let bt = backtest(&y, 52, 12).unwrap();
        assert_eq!(bt.model.period, 52);
        assert!(bt.mase() < 1.0, "MASE {}", bt.mase());
        assert!(bt.mae < bt.mae_naive, "{} vs naive {}", bt.mae, bt.mae_naive);
        assert_eq!(bt.forecast.len(), 12);
        // The seasonal-naive forecast is last year's weeks.
        assert_eq!(bt.naive[0], y[160 - 12 - 52]);
    }

    #[test]
    fn intermittent_demand_is_forecast_by_its_median_level() {
        // A title that sold in bursts long ago and now sells one week in five.
        let y: Vec<f64> = (0..120)
            .map(|t| {
                if t < 20 {
                    40.0 - t as f64
                } else if t % 5 == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let bt = backtest(&y, 52, 12).unwrap();
        assert!(matches!(bt.model.method, Method::RecentMedian(_)), "{:?}", bt.model.method);
        assert!(bt.mae <= bt.mae_naive + 1e-9, "{} vs naive {}", bt.mae, bt.mae_naive);
        assert!(bt.forecast.iter().all(|&v| v == 0.0), "{:?}", bt.forecast);
    }

    #[test]
    fn a_short_series_is_smoothed_without_a_season_and_never_below_zero() {
        let falling: Vec<f64> = (0..20).map(|t| (40.0 - 3.0 * t as f64).max(0.0)).collect();
        let model = fit(&falling, 52).unwrap();
        assert_eq!(model.period, 0);
        assert!(model.validation_mae.is_some(), "five weeks were held out to choose by");
        let f = model.forecast(10);
        assert!(f.iter().all(|&v| v >= 0.0), "{f:?}");
        // A constant series is forecast as itself.
        let flat = fit(&[5.0; 30], 4).unwrap();
        for v in flat.forecast(6) {
            assert!((v - 5.0).abs() < 1e-9, "{v}");
        }
    }

    #[test]
    fn bad_series_are_refused() {
        assert!(matches!(fit(&[1.0, 2.0], 52), Err(InsightError::Empty(_))));
        assert!(fit(&[1.0, f64::NAN, 2.0], 52).unwrap_err().to_string().contains("week 1"));
        assert!(fit(&[1.0, -2.0, 2.0], 52).is_err());
        assert!(
            backtest(&seasonal(40), 52, 12).unwrap_err().to_string().contains("needs at least 65")
        );
        assert!(backtest(&seasonal(160), 52, 0).is_err());
        let repeating: Vec<f64> = (0..30).map(|t| (t % 4) as f64).collect();
        assert!(backtest(&repeating, 4, 4).unwrap_err().to_string().contains("no error scale"));
    }
}
