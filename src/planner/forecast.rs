//! Load forecasting, per signal (request rate, ISL, OSL), one value per interval.
//!
//! Six forecasters learn from the same series: constant (last value), smoothed level,
//! linear trend (least squares on a recent window), Holt-Winters (additive, for periodic
//! load; the period is configured or found by autocorrelation), seasonal (the value a
//! period before, when the load repeats closely) and a Kalman local-linear-trend filter.
//! Each one's
//! forecasts are scored against what then happened at the planning horizon; `auto` uses
//! the one with the lowest recent error, and the prediction bound comes from that
//! forecaster's own recent errors. Those arrive a horizon late, so the bound is widened
//! where they cannot know yet: at the start, while one-step errors show a rise, and after a
//! jump to a new level.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::harmonic::{self, Harmonic};
use super::model::normal_quantile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForecasterKind {
    Constant,
    Smoothed,
    Linear,
    HoltWinters,
    Kalman,
    Seasonal,
    Harmonic,
    Auto,
}

impl ForecasterKind {
    pub fn name(self) -> &'static str {
        match self {
            ForecasterKind::Constant => "constant",
            ForecasterKind::Smoothed => "smoothed",
            ForecasterKind::Linear => "linear",
            ForecasterKind::HoltWinters => "holt-winters",
            ForecasterKind::Kalman => "kalman",
            ForecasterKind::Seasonal => "seasonal",
            ForecasterKind::Harmonic => "harmonic",
            ForecasterKind::Auto => "auto",
        }
    }
}

const CANDIDATES: [ForecasterKind; N] = [
    ForecasterKind::Constant,
    ForecasterKind::Linear,
    ForecasterKind::HoltWinters,
    ForecasterKind::Kalman,
    ForecasterKind::Smoothed,
    ForecasterKind::Seasonal,
    ForecasterKind::Harmonic,
];
/// How many forecasters compete under `auto`.
const N: usize = 7;
/// Correlation of the load with itself one period earlier above which it repeats (values a
/// period apart explain 80% of each other's variance): only then does the seasonal
/// forecaster, which copies one earlier value, compete.
const REPEATS: f64 = 0.9;
/// Index of the constant forecaster in `CANDIDATES`: its one-step errors are the load's
/// steps.
const CONSTANT: usize = 0;
const _: () = assert!(matches!(CANDIDATES[CONSTANT], ForecasterKind::Constant));
/// Index of the seasonal forecaster in `CANDIDATES`.
const SEASONAL: usize = 5;
const _: () = assert!(matches!(CANDIDATES[SEASONAL], ForecasterKind::Seasonal));
/// Index of the harmonic regression in `CANDIDATES`.
const HARMONIC: usize = 6;
const _: () = assert!(matches!(CANDIDATES[HARMONIC], ForecasterKind::Harmonic));
/// A value this many mean absolute errors away from the smoothed level resets it.
const LEVEL_SHIFT: f64 = 3.0;
/// Weight of the newest value in the smoothed level (about the last six intervals count).
const SMOOTHING: f64 = 0.3;

/// Longest history kept, in intervals (the autocorrelation looks for periods up to half of
/// it), unless a configured period needs more (`SignalForecaster::history_cap`).
const HISTORY: usize = 1024;
/// Points in the linear trend's window.
const TREND_WINDOW: usize = 8;
/// Values a line is fitted from at the fewest: with fewer the trend forecasts nothing.
const TREND_MIN: usize = 3;
/// Trend damping per step ahead (Gardner and McKenzie's damped trend): a trend is followed,
/// but not extrapolated without end past a turning point it cannot see yet.
const DAMPING: f64 = 0.8;

/// Sum of `DAMPING^1 .. DAMPING^h`: how many steps of slope a damped trend adds at `h`.
fn damped_steps(h: f64) -> f64 {
    let n = h.max(0.0);
    DAMPING * (1.0 - DAMPING.powf(n)) / (1.0 - DAMPING)
}
/// Steps between values the early bound takes the load's pace from.
const EARLY_PACE: usize = 2;
/// One-step errors in a row, all under the truth, that show a rise under way.
const RUN: usize = 3;
/// Chance, over the steps to the horizon, that the sampling noise alone passes for a rise:
/// a false alarm widens the bound at every one of those steps, and over a horizon of `h`
/// decisions it has `h` chances, so each run is tested at `RUN_FALSE_ALARM / h`.
const RUN_FALSE_ALARM: f64 = 0.1;
/// How far apart the sampling noise alone sets successive one-step errors, in standard
/// deviations of one value's noise: each error is a difference of two values, and
/// successive ones share a value, so they differ by a second difference (scatter
/// sqrt(1 + 4 + 1)).
const SUCCESSIVE_ERROR_SCATTER: f64 = 2.449_489_742_783_178;
/// Values between searches for the harmonic regression's period (refitted at the period
/// found in between): a search fits the window at every period on a grid.
const HARMONIC_SEARCH_EVERY: u64 = 4;
/// Forecast errors remembered per forecaster for scoring and bounds.
const ERROR_WINDOW: usize = 12;
/// Excursions remembered (`SignalForecaster::recurring_peak`).
const EXCURSIONS_KEPT: usize = 64;
/// Errors at the horizon a forecaster needs before it is scored and its bound is its own.
const MIN_SCORED: usize = 3;
/// A method forecasts the load clearly better than its last value when its mean error at
/// the horizon is at most the last value's over this (`worst_case`). Measured 2026-12-05:
/// 2 to 5 decide the same on all 299 sweep runs (a fitted sinusoid beats its last value
/// by more, a bursty trace's level by less); 1.5 misses the bursty traces at scale.
const CLEARLY_BETTER: f64 = 2.0;

/// Kalman local linear trend: state (level, slope), observation = level + noise.
#[derive(Debug, Clone)]
struct Kalman {
    x: [f64; 2],
    p: [[f64; 2]; 2],
    /// Observation noise variance, learned from innovations.
    r: f64,
    started: bool,
}

impl Kalman {
    fn new() -> Kalman {
        Kalman {
            x: [0.0, 0.0],
            p: [[1.0, 0.0], [0.0, 1.0]],
            r: 1.0,
            started: false,
        }
    }

    fn update(&mut self, y: f64) {
        if !self.started {
            self.x = [y, 0.0];
            self.p = [[y.abs().max(1.0), 0.0], [0.0, y.abs().max(1.0) * 0.1]];
            self.r = (0.1 * y.abs()).powi(2).max(1e-6);
            self.started = true;
            return;
        }
        // Process noise scaled to the observation noise: the level moves, the slope drifts.
        let q_level = 0.5 * self.r;
        let q_slope = 0.05 * self.r;
        // Predict.
        let x0 = self.x[0] + self.x[1];
        let x1 = self.x[1];
        let p = self.p;
        let p00 = p[0][0] + p[0][1] + p[1][0] + p[1][1] + q_level;
        let p01 = p[0][1] + p[1][1];
        let p10 = p[1][0] + p[1][1];
        let p11 = p[1][1] + q_slope;
        // Update.
        let innovation = y - x0;
        let s = p00 + self.r;
        let k0 = p00 / s;
        let k1 = p10 / s;
        self.x = [x0 + k0 * innovation, x1 + k1 * innovation];
        self.p = [
            [(1.0 - k0) * p00, (1.0 - k0) * p01],
            [p10 - k1 * p00, p11 - k1 * p01],
        ];
        // Learn the observation noise from the innovations (floored so it never collapses).
        let floor = (0.01 * y.abs()).powi(2).max(1e-9);
        self.r = (0.9 * self.r + 0.1 * innovation * innovation * 0.5).max(floor);
    }

    fn forecast(&self, h: f64) -> f64 {
        self.x[0] + damped_steps(h) * self.x[1]
    }
}

/// Holt-Winters additive with fixed smoothing constants.
#[derive(Debug, Clone)]
struct HoltWinters {
    period: usize,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Index in `season` of the next point.
    phase: usize,
    ready: bool,
}

impl HoltWinters {
    const ALPHA: f64 = 0.4;
    const BETA: f64 = 0.05;
    const GAMMA: f64 = 0.3;

    /// Initialised from the last two full periods of `history`.
    fn init(history: &[f64], period: usize) -> Option<HoltWinters> {
        if period < 2 || history.len() < 2 * period {
            return None;
        }
        let n = history.len();
        let a = &history[n - 2 * period..n - period];
        let b = &history[n - period..];
        let mean_a = a.iter().sum::<f64>() / period as f64;
        let mean_b = b.iter().sum::<f64>() / period as f64;
        let trend = (mean_b - mean_a) / period as f64;
        // Seasonal offsets averaged over the two periods, centred on each period's mean.
        let season: Vec<f64> = (0..period)
            .map(|i| ((a[i] - mean_a) + (b[i] - mean_b)) / 2.0)
            .collect();
        // Level at the last point: the period's mean carried to its end.
        let level = mean_b + trend * (period as f64 - 1.0) / 2.0;
        Some(HoltWinters {
            period,
            level,
            trend,
            season,
            phase: 0,
            ready: true,
        })
    }

    fn update(&mut self, y: f64) {
        let s = self.season[self.phase];
        let prev_level = self.level;
        self.level = Self::ALPHA * (y - s) + (1.0 - Self::ALPHA) * (self.level + self.trend);
        self.trend = Self::BETA * (self.level - prev_level) + (1.0 - Self::BETA) * self.trend;
        self.season[self.phase] = Self::GAMMA * (y - self.level) + (1.0 - Self::GAMMA) * s;
        self.phase = (self.phase + 1) % self.period;
    }

    fn forecast(&self, h: usize) -> f64 {
        let s = self.season[(self.phase + h - 1) % self.period];
        self.level + h as f64 * self.trend + s
    }
}

/// The period (in intervals) with the strongest autocorrelation, if it is strong enough.
pub fn detect_period(series: &[f64]) -> Option<usize> {
    let n = series.len();
    if n < 12 {
        return None;
    }
    let mean = series.iter().sum::<f64>() / n as f64;
    let var: f64 = series.iter().map(|y| (y - mean).powi(2)).sum();
    if var <= 1e-12 {
        return None;
    }
    // The search costs the history's length squared: centre the values once.
    let centred: Vec<f64> = series.iter().map(|y| y - mean).collect();
    let acf = |lag: usize| -> f64 {
        centred[lag..]
            .iter()
            .zip(&centred[..n - lag])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / var
    };
    // Only lags with two full periods in the history; pick the first clear peak.
    let max_lag = n / 2;
    let values: Vec<f64> = (0..=max_lag)
        .map(|l| if l < 2 { 1.0 } else { acf(l) })
        .collect();
    let mut best: Option<(usize, f64)> = None;
    for lag in 3..max_lag {
        let v = values[lag];
        if v > values[lag - 1]
            && v >= values[lag + 1]
            && v > 0.3
            && best.is_none_or(|(_, b)| v > b + 0.05)
        {
            best = Some((lag, v));
        }
    }
    best.map(|(l, _)| l)
}

/// Pearson correlation of the series with itself `lag` steps earlier.
pub fn lag_correlation(series: &[f64], lag: usize) -> f64 {
    if lag == 0 || series.len() < lag + 3 {
        return f64::NAN;
    }
    let a = &series[lag..];
    let b = &series[..series.len() - lag];
    let m = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / m, b.iter().sum::<f64>() / m);
    let mut sab = 0.0;
    let mut saa = 0.0;
    let mut sbb = 0.0;
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Forecasts one signal.
#[derive(Debug, Clone)]
pub struct SignalForecaster {
    kind: ForecasterKind,
    /// Configured period in intervals; found by autocorrelation when absent.
    fixed_period: Option<usize>,
    history: VecDeque<f64>,
    kalman: Kalman,
    hw: Option<HoltWinters>,
    /// The level and sinusoid fitted to the latest values, when one fits.
    harmonic: Option<Harmonic>,
    period: Option<usize>,
    /// The period, when the load repeats closely enough for the seasonal forecaster.
    seasonal_period: Option<usize>,
    ticks: u64,
    /// Forecasts made `h` steps ahead, waiting for their truth: (due tick, `h`, per
    /// candidate).
    pending: VecDeque<(u64, usize, [f64; N])>,
    /// Recent errors per candidate (truth - forecast).
    errors: [VecDeque<f64>; N],
    /// Exponentially smoothed level: on a load that jumps about a steady mean, a better
    /// guess than the last value.
    level: Option<f64>,
    /// Relative error assumed at the first value, before anything is known of how the
    /// load moves.
    prior_error: f64,
    /// Each candidate's forecast one step ahead, made at the last value.
    next: Option<[f64; N]>,
    /// The last jump up to a new level: (tick, size).
    jump: Option<(u64, f64)>,
    /// The excursion the load is on, if any (`track_excursion`).
    excursion: Option<Excursion>,
    /// The load's recent excursions that needed capacity it did not have, or came near the
    /// peak of one that did: (tick it came back, the highest value it reached), newest last.
    excursions: VecDeque<(u64, f64)>,
    /// The SLA was missed in the interval of the next value (`note_missed`).
    missed: bool,
    /// Whether the excursions are followed (`with_excursions`: the rate's, not the lengths').
    follows_excursions: bool,
    /// The horizon forecasts are scored at (the last `observe`'s).
    horizon: usize,
    /// The last few one-step errors per candidate (truth - forecast), known at once.
    recent: [VecDeque<f64>; N],
    /// Standard deviation of the last value's sampling noise (a count's Poisson noise), 0
    /// when unknown: variation the bound need not cover, since it is not the load's.
    noise: f64,
    /// The last value's rise within its own interval, per interval, and that rise's
    /// sampling noise: the first value's only evidence of how the load moves.
    within: Option<(f64, f64)>,
    /// The candidate `chosen` picks, worked out once per value (`pick`): the bound, the
    /// worst case and the plan's every step ask for it.
    chosen: usize,
}

/// Relative forecast error assumed at the first value, unless configured: the load may be
/// half as much again as the one interval seen.
pub const DEFAULT_PRIOR_ERROR: f64 = 0.5;

/// A jump up the load has not come back from yet.
#[derive(Debug, Clone, Copy)]
struct Excursion {
    /// The value it jumped from.
    from: f64,
    /// The highest value since the jump.
    peak: f64,
    /// Whether the SLA was missed during it.
    missed: bool,
}

/// A peak the load keeps coming back to (`SignalForecaster::recurring_peak`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecurringPeak {
    pub level: f64,
    /// Excursions that reached it, counted from the one that sets `over`.
    pub times: usize,
    /// Values since the earliest of them came back.
    pub over: u64,
}

/// A forecast: the point and an upper bound at the configured quantile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalForecast {
    pub point: f64,
    pub upper: f64,
    pub method: ForecasterKind,
}

impl SignalForecaster {
    pub fn new(kind: ForecasterKind, period: Option<usize>) -> SignalForecaster {
        SignalForecaster {
            kind,
            fixed_period: period.filter(|&p| p >= 2),
            history: VecDeque::new(),
            kalman: Kalman::new(),
            hw: None,
            harmonic: None,
            period: None,
            seasonal_period: None,
            ticks: 0,
            pending: VecDeque::new(),
            errors: Default::default(),
            level: None,
            prior_error: DEFAULT_PRIOR_ERROR,
            next: None,
            jump: None,
            excursion: None,
            excursions: VecDeque::new(),
            missed: false,
            follows_excursions: false,
            horizon: 1,
            recent: Default::default(),
            noise: 0.0,
            within: None,
            chosen: 0,
        }
        .picked()
    }

    /// The forecaster with its method picked (`pick`).
    fn picked(mut self) -> SignalForecaster {
        self.chosen = self.pick();
        self
    }

    /// Sets the relative error the bound assumes at the first value: 1.0 says the load may
    /// be off by its whole level.
    pub fn with_prior_error(mut self, relative: f64) -> SignalForecaster {
        self.prior_error = relative;
        self
    }

    /// Follows the load's excursions, for `recurring_peak` (the request rate's forecaster:
    /// the SLA is missed, and capacity kept, for bursts of requests).
    pub fn with_excursions(mut self) -> SignalForecaster {
        self.follows_excursions = true;
        self
    }

    pub fn len(&self) -> usize {
        self.history.len()
    }

    /// The steps ahead the forecasts are scored at.
    #[cfg(test)]
    pub(crate) fn horizon(&self) -> usize {
        self.horizon
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Notes that the SLA was missed in the interval of the value `observe` takes next: an
    /// excursion of the load it falls in needed capacity that was not there.
    pub fn note_missed(&mut self) {
        self.missed = true;
    }

    /// Notes how the last value moved within its own interval: `rise` per interval (the
    /// second half's rate less the first's, twice, as the halves' middles are half an
    /// interval apart), with the standard deviation sampling alone gives it. The early bound
    /// uses it (`early_margin`): the first value's as its only pace, later ones to tell a
    /// ramp that goes on from one that has stopped.
    pub fn observe_within(&mut self, rise: f64, noise: f64) {
        if rise.is_finite() && noise.is_finite() {
            self.within = Some((rise, noise.max(0.0)));
        }
    }

    /// Whether the bound now comes from the chosen method's own errors at the horizon
    /// rather than from the early guess.
    pub fn bound_measured(&self) -> bool {
        self.errors[self.chosen()].len() >= MIN_SCORED
    }

    /// Whether the chosen method's errors at the horizon fill their window: its worst miss
    /// is then the worst of a dozen, not of the first few.
    pub fn misses_known(&self) -> bool {
        self.errors[self.chosen()].len() >= ERROR_WINDOW
    }

    /// History kept: a configured period (a day of one-minute intervals, say) needs two
    /// periods for Holt-Winters to start and one and a window of errors for the seasonal
    /// forecaster's backtest.
    fn history_cap(&self) -> usize {
        HISTORY.max(self.fixed_period.map_or(0, |p| 2 * p + ERROR_WINDOW))
    }

    pub fn last(&self) -> Option<f64> {
        self.history.back().copied()
    }

    pub fn period(&self) -> Option<usize> {
        self.period
    }

    /// Adds the next interval's value; `horizon` is the number of steps ahead that will be
    /// asked for, used to score the candidates at the distance that matters.
    pub fn observe(&mut self, y: f64, horizon: usize) {
        self.observe_sampled(y, 0.0, horizon);
    }

    /// `observe` for a value measured with sampling noise of standard deviation `noise` (a
    /// rate from a count of n arrivals in an interval: sqrt(n) / interval). The bound then
    /// covers how the load moves, not how the count scatters about it: over short intervals
    /// the scatter dominates and, extrapolated over many steps to the horizon, it would pass
    /// for a trend.
    pub fn observe_sampled(&mut self, y: f64, noise: f64, horizon: usize) {
        if !y.is_finite() {
            return;
        }
        self.noise = if noise.is_finite() {
            noise.max(0.0)
        } else {
            0.0
        };
        self.ticks += 1;
        self.within = None;
        // Score forecasts that were made for this tick.
        while let Some(&(due, _, preds)) = self.pending.front() {
            if due > self.ticks {
                break;
            }
            self.pending.pop_front();
            if due == self.ticks {
                record_errors(&mut self.errors, &preds, y, ERROR_WINDOW);
            }
        }
        self.history.push_back(y);
        if self.history.len() > self.history_cap() {
            self.history.pop_front();
        }
        self.kalman.update(y);
        if let Some(hw) = &mut self.hw {
            hw.update(y);
        }
        self.update_harmonic(horizon.max(1));
        // (Re)find the period now and then; rebuild Holt-Winters when it changes. A search
        // costs the history's length squared: every 8 ticks (2 while none is known), or
        // every sixteenth (sixty-fourth) of the history when that is longer, so the cost
        // per tick grows with the length, not its square (a full history's search is a
        // third of the work of a thousand decisions otherwise).
        let n = self.history.len() as u64;
        let every = if self.hw.is_none() {
            (n / 64).max(2)
        } else {
            (n / 16).max(8)
        };
        if self.ticks % every == 0 {
            let hist: Vec<f64> = self.history.iter().copied().collect();
            let period = self.fixed_period.or_else(|| detect_period(&hist));
            let repeats = period.filter(|&p| {
                hist.len() >= p + ERROR_WINDOW && lag_correlation(&hist, p) >= REPEATS
            });
            if repeats != self.seasonal_period {
                self.seasonal_period = repeats;
                self.backtest_seasonal(&hist, horizon.max(1));
            }
            if period != self.period || self.hw.is_none() {
                self.period = period;
                self.hw = period.and_then(|p| HoltWinters::init(&hist, p));
            }
        }
        // A value far outside the level's usual errors is a new level, not noise: follow it
        // at once (a flash crowd must not be averaged away).
        let smoothed = CANDIDATES
            .iter()
            .position(|&c| c == ForecasterKind::Smoothed)
            .expect("smoothed is a candidate");
        let usual = self.score(smoothed);
        if self.follows_excursions {
            self.track_excursion(y);
        }
        if let Some(l) = self.level {
            if usual.is_some_and(|u| y - l > LEVEL_SHIFT * u) {
                self.jump = Some((self.ticks, y - l));
                // Forecasts made before the jump and due after it measure the jump, which
                // the bound covers until forecasts made since are scored. Scored as well,
                // they would hold it at the jump's size for a whole window of errors.
                self.pending.clear();
            }
        }
        self.level = Some(match self.level {
            Some(l) if usual.is_some_and(|u| (y - l).abs() > LEVEL_SHIFT * u) => y,
            Some(l) => l + SMOOTHING * (y - l),
            None => y,
        });
        let h = horizon.max(1);
        self.horizon = h;
        if let Some(next) = self.next {
            record_errors(&mut self.recent, &next, y, RUN);
        }
        self.next = Some(std::array::from_fn(|i| self.candidate(i, 1)));
        let preds: [f64; N] = std::array::from_fn(|i| self.candidate(i, h));
        self.pending.push_back((self.ticks + h as u64, h, preds));
        self.chosen = self.pick();
    }

    /// Candidate `i`'s forecast `h` steps ahead. The signals (a rate, token lengths) are
    /// never negative, so neither is a forecast: a trend extrapolated below zero counts as
    /// zero, which is never further from the truth, and its errors and bound are measured
    /// from zero. Measured from the negative value, its errors put the bound at zero while
    /// the load may come back. NaN (no forecast yet) stays NaN.
    fn candidate(&self, i: usize, h: usize) -> f64 {
        let f = self.unclamped_candidate(i, h);
        if f < 0.0 {
            0.0
        } else {
            f
        }
    }

    fn unclamped_candidate(&self, i: usize, h: usize) -> f64 {
        let last = match self.history.back() {
            Some(&v) => v,
            None => return f64::NAN,
        };
        match CANDIDATES[i] {
            ForecasterKind::Constant => last,
            ForecasterKind::Smoothed => self.level.unwrap_or(last),
            ForecasterKind::Linear => {
                let n = self.history.len().min(TREND_WINDOW);
                // Before a line, the trend has no forecast of its own: the last value's
                // misses on a rise, scored as the trend's, made its bound their size for a
                // window of errors once it was chosen.
                if n < TREND_MIN {
                    return f64::NAN;
                }
                let ys: Vec<f64> = self
                    .history
                    .iter()
                    .skip(self.history.len() - n)
                    .copied()
                    .collect();
                let (a, b) = least_squares_line(&ys);
                a + b * ((n - 1) as f64 + damped_steps(h as f64))
            }
            ForecasterKind::HoltWinters => match &self.hw {
                Some(hw) if hw.ready => hw.forecast(h),
                _ => f64::NAN,
            },
            ForecasterKind::Kalman => self.kalman.forecast(h as f64),
            ForecasterKind::Harmonic => self.harmonic.map_or(f64::NAN, |f| f.forecast(h as f64)),
            ForecasterKind::Seasonal => {
                let n = self.history.len();
                self.seasonal_period
                    .and_then(|p| seasonal_source(n - 1, h, p))
                    .map_or(f64::NAN, |j| self.history[j])
            }
            ForecasterKind::Auto => unreachable!("auto is not a candidate"),
        }
    }

    /// Fills the seasonal forecaster's errors from the history it could have forecast: its
    /// forecast is a value already seen, so when a period is found it can be scored at
    /// once, the rolling backtest `auto` picks by, instead of a horizon and more later.
    fn backtest_seasonal(&mut self, history: &[f64], h: usize) {
        let i = SEASONAL;
        self.errors[i].clear();
        let Some(p) = self.seasonal_period else {
            return;
        };
        let n = history.len();
        for target in n.saturating_sub(ERROR_WINDOW)..n {
            let Some(origin) = target.checked_sub(h) else {
                continue;
            };
            if let Some(j) = seasonal_source(origin, h, p) {
                self.errors[i].push_back(history[target] - history[j]);
            }
        }
        // Forecasts already pending for this candidate were made without the period: made
        // again as if it had been known, they are scored as they come due.
        let ticks = self.ticks;
        for (due, steps, preds) in self.pending.iter_mut() {
            preds[i] = pending_origin(n, ticks, *due, *steps)
                .and_then(|origin| seasonal_source(origin, *steps, p))
                .map_or(f64::NAN, |j| history[j]);
        }
    }

    /// Fits the sinusoid to the latest values: its period is searched anew every
    /// `HARMONIC_SEARCH_EVERY` values (at every value while none is found in a window not
    /// yet full), and refitted at the period found in between. A period new or moved by
    /// more than the search's grid step is backtested at once.
    fn update_harmonic(&mut self, h: usize) {
        let n = self.history.len();
        let m = n.min(harmonic::WINDOW);
        let window: Vec<f64> = self.history.iter().skip(n - m).copied().collect();
        // While none is found and the window still fills, at every value: a search costs
        // the window's length squared, little until it is full, and a period is worth
        // finding a few values sooner on a first cycle.
        let search = self.ticks % HARMONIC_SEARCH_EVERY == 0
            || (self.harmonic.is_none() && m < harmonic::WINDOW);
        if !search {
            self.harmonic = self
                .harmonic
                .and_then(|f| harmonic::refit(&window, f.omega));
            return;
        }
        let found = harmonic::find(&window);
        let moved = match (found, self.harmonic) {
            (Some(new), Some(old)) => (new.omega - old.omega).abs() > Harmonic::search_step(m),
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.harmonic = found;
        if moved {
            self.backtest_harmonic(h);
        }
    }

    /// Fills the harmonic regression's errors from the history, as `backtest_seasonal`
    /// does: at each of the last `ERROR_WINDOW` values, the fit at the period found to the
    /// values a horizon before, and its forecast of the value.
    fn backtest_harmonic(&mut self, h: usize) {
        let i = HARMONIC;
        self.errors[i].clear();
        let Some(fit) = self.harmonic else {
            for (_, _, preds) in self.pending.iter_mut() {
                preds[i] = f64::NAN;
            }
            return;
        };
        let n = self.history.len();
        let keep = harmonic::WINDOW + ERROR_WINDOW + h;
        let hist: Vec<f64> = self
            .history
            .iter()
            .skip(n.saturating_sub(keep))
            .copied()
            .collect();
        let n = hist.len();
        for target in n.saturating_sub(ERROR_WINDOW)..n {
            let Some(origin) = target.checked_sub(h) else {
                continue;
            };
            let ys = &hist[(origin + 1).saturating_sub(harmonic::WINDOW)..=origin];
            if ys.len() < harmonic::MIN_POINTS {
                continue;
            }
            if let Some(past) = harmonic::fit_at(ys, fit.omega) {
                let forecast = past.harmonic.forecast(h as f64).max(0.0);
                self.errors[i].push_back(hist[target] - forecast);
            }
        }
        // Forecasts pending for this candidate, made before the period was found: made
        // again at it from the values seen then, they are scored as they come due (until
        // then a fit found early has fewer backtested errors than it needs to be chosen).
        let ticks = self.ticks;
        for (due, steps, preds) in self.pending.iter_mut() {
            preds[i] = pending_origin(n, ticks, *due, *steps)
                .map(|origin| &hist[(origin + 1).saturating_sub(harmonic::WINDOW)..=origin])
                .filter(|ys| ys.len() >= harmonic::MIN_POINTS)
                .and_then(|ys| harmonic::fit_at(ys, fit.omega))
                .map_or(f64::NAN, |past| {
                    past.harmonic.forecast(*steps as f64).max(0.0)
                });
        }
    }

    /// Follows the load's excursions (`y` is the newest value, already in the history). One
    /// starts with a step up larger than the load's usual step by as much as a new level's
    /// (`LEVEL_SHIFT` median steps: one excursion's steps would swell a mean), and ends when
    /// the load is back below halfway between where it left and its peak. It is kept when the SLA was
    /// missed during it (`note_missed`), or when it came at least halfway up to the peak of
    /// one that was: once capacity is kept for such peaks they are met, and they recur all
    /// the same.
    fn track_excursion(&mut self, y: f64) {
        let missed = std::mem::take(&mut self.missed);
        let Some(&last) = self.history.iter().rev().nth(1) else {
            return;
        };
        match self.excursion {
            Some(e) if y <= (e.from + e.peak) / 2.0 => {
                self.excursion = None;
                let needed = e.missed
                    || missed
                    || self
                        .excursions
                        .iter()
                        .any(|&(_, p)| e.peak >= (e.from + p) / 2.0);
                if needed {
                    self.excursions.push_back((self.ticks, e.peak));
                    if self.excursions.len() > EXCURSIONS_KEPT {
                        self.excursions.pop_front();
                    }
                }
            }
            Some(e) => {
                self.excursion = Some(Excursion {
                    peak: e.peak.max(y),
                    missed: e.missed || missed,
                    ..e
                })
            }
            None if self
                .median_step()
                .is_some_and(|m| y - last > LEVEL_SHIFT * m) =>
            {
                self.excursion = Some(Excursion {
                    from: last,
                    peak: y,
                    missed,
                });
            }
            None => {}
        }
    }

    /// The median size of the load's steps between the values before the last, over the
    /// last error window; `None` until there are `MIN_SCORED` of them.
    fn median_step(&self) -> Option<f64> {
        let n = self.history.len();
        let before = n.saturating_sub(1);
        let from = before.saturating_sub(ERROR_WINDOW + 1);
        let mut steps = [0.0; ERROR_WINDOW];
        let mut k = 0;
        for i in from + 1..before {
            steps[k] = (self.history[i] - self.history[i - 1]).abs();
            k += 1;
        }
        if k < MIN_SCORED {
            return None;
        }
        let steps = &mut steps[..k];
        steps.sort_by(f64::total_cmp);
        Some((steps[(k - 1) / 2] + steps[k / 2]) / 2.0)
    }

    fn score(&self, i: usize) -> Option<f64> {
        let e = &self.errors[i];
        (e.len() >= MIN_SCORED).then(|| e.iter().map(|x| x.abs()).sum::<f64>() / e.len() as f64)
    }

    /// The candidate forecasting: the configured one, or under `auto` the one with the
    /// least mean error at the horizon (`pick`, as of the last value).
    fn chosen(&self) -> usize {
        self.chosen
    }

    fn pick(&self) -> usize {
        match self.kind {
            ForecasterKind::Auto => {
                // Until errors are known, the Kalman filter: it follows a trend, and on a
                // flat series it is the last value.
                let mut best = 3;
                let mut best_score = f64::INFINITY;
                for i in 0..CANDIDATES.len() {
                    if let Some(s) = self.score(i) {
                        // `next` holds each one's forecast a step ahead of the last value.
                        let forecasts = self.next.is_some_and(|n| n[i].is_finite());
                        if s < best_score && forecasts {
                            best = i;
                            best_score = s;
                        }
                    }
                }
                best
            }
            k => CANDIDATES.iter().position(|&c| c == k).unwrap_or(0),
        }
    }

    /// The method forecasting and its point `h` steps ahead (the constant when the chosen
    /// one has none); `None` before the first value.
    fn chosen_point(&self, h: usize) -> Option<(usize, f64)> {
        self.history.back()?;
        let i = self.chosen();
        let point = self.candidate(i, h.max(1));
        Some(if point.is_finite() {
            (i, point)
        } else {
            (0, self.candidate(0, h.max(1)))
        })
    }

    /// Method `i`'s recent errors at the horizon (truth - forecast), sorted; `None` until
    /// there are enough to measure its bound from.
    fn errors_sorted(&self, i: usize) -> Option<Vec<f64>> {
        let e = &self.errors[i];
        (e.len() >= MIN_SCORED).then(|| {
            let mut sorted: Vec<f64> = e.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            sorted
        })
    }

    /// The chosen method's recent errors at the horizon, sorted, less the lag behind a trend
    /// that has ended (`ended_bias`) at the bound's `z`: the misses its bound is measured
    /// from; `None` until there are enough.
    pub fn recent_misses(&self, z: f64) -> Option<Vec<f64>> {
        self.misses(self.chosen(), z)
    }

    /// Method `i`'s recent errors at the horizon, sorted, less the lag behind a trend that
    /// has ended at the bound's `z`; `None` until there are enough.
    fn misses(&self, i: usize, z: f64) -> Option<Vec<f64>> {
        let sorted = self.errors_sorted(i)?;
        let ended = self.ended_bias(i, &sorted, z);
        Some(sorted.into_iter().map(|e| e - ended).collect())
    }

    /// The forecast's point `h` steps ahead, without its bound.
    pub fn point(&self, h: usize) -> Option<f64> {
        self.chosen_point(h).map(|(_, p)| p.max(0.0))
    }

    /// The forecast `h` steps ahead, with an upper bound `z` error deviations above; `None`
    /// before the first value.
    pub fn forecast(&self, h: usize, z: f64) -> Option<SignalForecast> {
        let last = *self.history.back()?;
        let (i, point) = self.chosen_point(h)?;
        // The bound comes from this forecaster's own recent errors at the horizon: the
        // empirical quantile of (truth - forecast) matching z, so a method that has been
        // wrong lately buys more headroom, and one that errs high buys none; less a lag
        // behind a trend that has ended (`ended_bias`).
        let margin = if let Some(misses) = self.misses(i, z) {
            let v = empirical_quantile(&misses, standard_normal_cdf(z));
            // The truth each error was measured against scattered by the sampling noise.
            beyond_scatter(v, z.max(0.0) * self.noise)
        } else {
            self.early_margin(h.max(1), z, point)
        };
        // Errors at the horizon arrive a horizon late. A run of one-step under-forecasts is
        // a rise they have not seen yet: the bound then covers its pace again at every step
        // to the horizon. Noise rarely makes such a run (one time in eight), and more rarely
        // one whose errors average above what the sampling noise explains: their mean is
        // tested against its scatter under noise alone, at a false-alarm chance shared out
        // over the horizon's steps (in intervals of a few seconds a horizon holds a dozen
        // decisions, each a chance for noise to pass for a rise extrapolated a dozen steps).
        // The pace is the run's smallest error, so one burst within it does not set the
        // pace; but when the errors have not fallen along the run the rise is not slowing,
        // and its pace is the latest error, growing as it grew along the run (a morning
        // rise compounds; below). A fall no larger than the sampling noise puts between
        // successive errors is no sign of slowing: counted arrivals scatter, and a
        // compounding rise seldom shows three rising steps in a row.
        // A level forecaster is the exception: on a rise its one-step errors are its lag
        // behind the load (the pace over the smoothing weight: about three times the pace), and
        // the horizon does not multiply a lag. Its bound covers the load's own steps (the
        // constant forecaster's one-step errors) continuing from the last value.
        let r = &self.recent[i];
        let steps = self.horizon.max(1) as f64;
        let rising = r.iter().all(|&x| x > 0.0)
            && self.run_mean(i).is_some_and(|(mean, scatter)| {
                mean > scatter * normal_quantile(1.0 - RUN_FALSE_ALARM / steps)
            });
        let margin = if rising {
            let (r, from) = match CANDIDATES[i] {
                ForecasterKind::Smoothed => (&self.recent[CONSTANT], last),
                _ => (r, point),
            };
            let allowance = SUCCESSIVE_ERROR_SCATTER * self.noise;
            let not_slowing = r
                .iter()
                .zip(r.iter().skip(1))
                .all(|(a, b)| *b >= a - allowance);
            let pace = if not_slowing {
                r.back().copied().unwrap_or(0.0)
            } else {
                r.iter().copied().fold(f64::INFINITY, f64::min)
            };
            // When every step of the run rose and the rise is not slowing, its pace may go
            // on growing as it grew along the run (by the steps' mean growth): a morning's
            // steps grow for many minutes, and at a cold start of several steps a straight
            // line from the latest step orders too little, minutes late.
            let gathering = match (r.front(), r.back()) {
                (Some(first), Some(latest)) if not_slowing && r.iter().all(|&x| x > 0.0) => {
                    ((latest - first) / (RUN - 1) as f64).max(0.0)
                }
                _ => 0.0,
            };
            let steps_ahead = h.max(1) as f64;
            let rise = pace * steps_ahead + gathering * steps_ahead * (steps_ahead + 1.0) / 2.0;
            margin.max(from + rise - point)
        } else {
            margin
        };
        // After a jump up to a new level, the errors behind the bound are the old level's
        // until forecasts made since are scored (a horizon later); until then, the jump's
        // own size is the only measure of how the load moves now: it may go on.
        let margin = match self.jump {
            Some((tick, size)) if self.ticks - tick < self.horizon as u64 => {
                margin.max(z.max(0.0) * size)
            }
            _ => margin,
        };
        Some(SignalForecast {
            point: point.max(0.0),
            upper: (point + margin).max(0.0),
            method: CANDIDATES[i],
        })
    }

    /// The forecast `h` steps ahead at its worst case: its bound at `z`, the quantile of its
    /// recent misses past the worst of them, or, when the chosen method forecasts the load
    /// no clearly better than its last value (`CLEARLY_BETTER`), the load's own worst rise
    /// over a horizon in the last dozen, from the last value, if that is higher. A method's
    /// misses are measured from what it forecast then: a smoothed level forecast high
    /// through the bursts it saw, so a burst cost it little; forecast low in a lull, the
    /// next burst costs it the burst's height, which only the last value's misses show.
    /// `None` before the first value.
    pub fn worst_case(&self, h: usize, z: f64) -> Option<SignalForecast> {
        let forecast = self.forecast(h, z)?;
        let no_better = self.no_better_than_last_value();
        let worst_rise = self
            .errors_sorted(CONSTANT)
            .filter(|e| no_better && e.len() >= ERROR_WINDOW)
            .and_then(|e| e.last().copied());
        Some(match (worst_rise, self.history.back()) {
            (Some(rise), Some(&last)) => SignalForecast {
                upper: forecast.upper.max(last + rise),
                ..forecast
            },
            _ => forecast,
        })
    }

    /// Whether the method chosen forecasts the load no clearly better than its last value
    /// (`CLEARLY_BETTER`), both scored at the horizon.
    fn no_better_than_last_value(&self) -> bool {
        self.score(CONSTANT)
            .zip(self.score(self.chosen()))
            .is_some_and(|(last_value, chosen)| last_value <= CLEARLY_BETTER * chosen)
    }

    /// The forecast `h` steps ahead with its bound raised to the last value's own (the last
    /// value and the quantile at `z` of its misses at the horizon, beyond the counting
    /// scatter, as the measured bound takes them), where the method chosen is another that
    /// forecasts the load no clearly better; `None` otherwise, or before the last value's
    /// misses are measured. Each method's misses are measured from what it forecast then,
    /// and in a lull the chosen level's bound may sit below the last value's: a burst
    /// missed it by little while it stood high.
    pub fn with_last_values_bound(&self, h: usize, z: f64) -> Option<SignalForecast> {
        if self.chosen() == CONSTANT || !self.no_better_than_last_value() {
            return None;
        }
        let forecast = self.forecast(h, z)?;
        let last = *self.history.back()?;
        let misses = self.misses(CONSTANT, z)?;
        let margin = empirical_quantile(&misses, standard_normal_cdf(z));
        let bound = last + beyond_scatter(margin, z.max(0.0) * self.noise);
        Some(SignalForecast {
            upper: forecast.upper.max(bound),
            ..forecast
        })
    }

    /// The highest level the load has come back from often enough to be met again within
    /// the horizon at the bound's odds, counting the excursions kept (`track_excursion`):
    /// `k` of them reaching it (two or more) over the values since the earliest of them came
    /// back, `k - 1` within that span, at least `1 - q` chances per horizon, where `q` is
    /// the bound's quantile. A burst shorter than a cold start is over before capacity
    /// ordered on seeing it is ready, and its errors are not scored (a jump clears the
    /// forecasts due after it); recurring, it is met only by capacity kept for it.
    pub fn recurring_peak(&self, z: f64) -> Option<RecurringPeak> {
        let chance = 1.0 - standard_normal_cdf(z);
        let h = self.horizon.max(1) as f64;
        let recurs = |level: f64| {
            self.excursions
                .iter()
                .rev()
                .filter(|e| e.1 >= level)
                .enumerate()
                .skip(1)
                .map(|(i, e)| (i, (self.ticks - e.0).max(1)))
                .find(|&(i, over)| i as f64 * h >= chance * over as f64)
                .map(|(i, over)| RecurringPeak {
                    level,
                    times: i + 1,
                    over,
                })
        };
        self.excursions
            .iter()
            .filter_map(|e| recurs(e.1))
            .max_by(|a, b| a.level.total_cmp(&b.level))
    }

    /// The bound's margin before the method's own errors at the horizon are known (they
    /// take the horizon to arrive). From the second value on, the load may go on moving as
    /// it has lately: the root mean square of its last `EARLY_PACE` steps, for every step to
    /// the horizon (a trend's pace, not a random walk's square root: early on the two
    /// cannot be told apart, and the ramp is the costly one to miss; the last steps, not all
    /// of them, so a start that has settled is not held to its first jump). With one value
    /// there is the prior, and the value's own interval: the rise its halves show, at the
    /// bound's odds (a rise read as `r` within a counting scatter `s` may be `r + z s`), may
    /// go on for every step to the horizon too, whichever is more. One interval cannot tell
    /// a ramp under way from a step already taken; the bet is on the ramp. Nor can a first
    /// interval of a few hundred arrivals tell a slow rise from none, so the scatter is not
    /// netted out of the rise: netted out, a ramp's first minute showed none in most draws.
    /// Later, when every step the pace is read from rose, the latest value's halves may
    /// lower it: a ramp they no longer show, at the bound's odds, has stopped; and a ramp
    /// whose steps shrink is paced by its line's slope, not by its earlier, larger steps.
    /// When a step fell, the pace is at most the load's changes over the longest span to
    /// the horizon, per step: jitter about a level does not go on moving as a trend does.
    fn early_margin(&self, h: usize, z: f64, point: f64) -> f64 {
        let z = z.max(0.0);
        // The pace the latest value's halves show, at the bound's odds.
        let within_pace = self.within.map(|(rise, noise)| (rise + z * noise).max(0.0));
        if self.history.len() < 2 {
            let pace = within_pace.unwrap_or(0.0);
            return z * (self.prior_error * point.abs()).max(pace * h as f64);
        }
        let steps = self.recent_changes(1);
        let n = steps.len() as f64;
        let ramp = steps.iter().all(|&step| step >= 0.0);
        // A ramp is slowing when each step fell short of the one before by more than the
        // counting noise puts between successive steps (which share a value), as the run
        // rule reads its errors. Its pace is then its line's slope, the mean step (the rise
        // over the steps, whose ends scatter by the noise of two values): the root mean
        // square would be swollen by its earlier, larger steps.
        let allowance = SUCCESSIVE_ERROR_SCATTER * self.noise;
        let slowing = ramp && steps.windows(2).all(|w| w[0] < w[1] - allowance);
        // A change between two sampled values scatters by the noise of both.
        let net_rms = |changes: &[f64]| {
            let squares: f64 = changes.iter().map(|c| c.powi(2)).sum();
            (squares / changes.len() as f64 - 2.0 * self.noise.powi(2))
                .max(0.0)
                .sqrt()
        };
        let steps_pace = if slowing {
            let slope = steps.iter().sum::<f64>() / n;
            beyond_scatter(slope, self.noise * 2f64.sqrt() / n)
        } else if ramp {
            net_rms(&steps)
        } else {
            // A load that moves both ways may only jitter about a level: over several steps
            // it then moves less than its steps say, where a trend moves as far. Its pace
            // per step is read from its changes over the longest span to the horizon the
            // history holds (the constant forecast's errors at that span, as the measured
            // bound will read them at the horizon), never above its last steps' (a span
            // reaching back to a jump the load has settled from would bring it back).
            let span = h.min(self.history.len().saturating_sub(EARLY_PACE)).max(1);
            net_rms(&steps).min(net_rms(&self.recent_changes(span)) / span as f64)
        };
        // Steps that all rose are read as a ramp's pace; the latest interval's halves tell
        // whether it goes on. A rise they no longer show (at the bound's odds, as for the
        // first value) was a step, and the pace is at most what they show. Steps that fell
        // say the load moves both ways, which one interval's halves cannot refute.
        let pace = match within_pace {
            Some(shown) if ramp => steps_pace.min(shown),
            _ => steps_pace,
        };
        z * pace * h as f64
    }

    /// The part of method `i`'s mean error at the horizon that its lag now no longer
    /// explains. Errors that average above zero say the method lagged a trend, and a
    /// horizon's errors arrive a horizon late and stay a window: after a ramp has topped
    /// out they hold the bound at the ramp's pace for as long again (with a 600 s cold
    /// start, some twenty minutes). A lag still there shows now, in either of two
    /// readings: what the method would miss at the horizon were the load to go on at its
    /// pace over the last `RUN` values (a damped trend's shortfall on a steady ramp, a
    /// level's gap behind the last value), and its own latest one-step errors going on for
    /// every step to the horizon (as the run rule reads a rise); each at the bound's odds
    /// over the counting scatter. The larger is kept of the mean; the rest is taken off
    /// the errors' quantile, whose spread about their mean stays. A load that swings both
    /// ways leaves errors that average near zero, and nothing to take off.
    fn ended_bias(&self, i: usize, errors: &[f64], z: f64) -> f64 {
        let bias = errors.iter().sum::<f64>() / errors.len() as f64;
        let (Some(&last), Some(&rise)) = (self.history.back(), self.recent_changes(RUN).first())
        else {
            return 0.0;
        };
        let Some((one_step_mean, one_step_scatter)) = self.run_mean(i) else {
            return 0.0;
        };
        if bias <= 0.0 {
            return 0.0;
        }
        let z = z.max(0.0);
        let h = self.horizon.max(1);
        // The rise between two sampled values scatters by the noise of both.
        let pace = (rise + z * self.noise * 2f64.sqrt()) / RUN as f64;
        let gap_at_pace = last + pace * h as f64 - self.candidate(i, h);
        let one_step_pace = one_step_mean + z * one_step_scatter;
        let lag = gap_at_pace.max(one_step_pace * h as f64);
        bias - lag.clamp(0.0, bias)
    }

    /// The mean of method `i`'s last `RUN` one-step errors, and the scatter counting noise
    /// alone puts on it; `None` until there are `RUN` of them.
    fn run_mean(&self, i: usize) -> Option<(f64, f64)> {
        let r = &self.recent[i];
        (r.len() == RUN).then(|| {
            (
                r.iter().sum::<f64>() / RUN as f64,
                self.noise / (RUN as f64).sqrt(),
            )
        })
    }

    /// The latest `EARLY_PACE` changes of the history over `span` values each, newest first
    /// (fewer when the history is shorter).
    fn recent_changes(&self, span: usize) -> Vec<f64> {
        let Some(newest) = self.history.len().checked_sub(1) else {
            return Vec::new();
        };
        (0..EARLY_PACE)
            .filter_map(|i| {
                let later = newest.checked_sub(i)?;
                let earlier = later.checked_sub(span)?;
                Some(self.history[later] - self.history[earlier])
            })
            .collect()
    }
}

/// What of a positive deviation `x` stands beyond a scatter of `scatter` added in quadrature
/// (0 when the scatter explains it all, or when `x` is not positive).
fn beyond_scatter(x: f64, scatter: f64) -> f64 {
    (x.max(0.0).powi(2) - scatter.powi(2)).max(0.0).sqrt()
}

/// The index, in the latest `len` values up to tick `ticks`, of the value a forecast due at
/// tick `due`, `steps` ahead, was made from; `None` when it is no longer among them.
fn pending_origin(len: usize, ticks: u64, due: u64, steps: usize) -> Option<usize> {
    let back = ticks.checked_sub(due.checked_sub(steps as u64)?)?;
    (len as u64).checked_sub(1 + back).map(|i| i as usize)
}

/// Seasonal naive: the value a whole number of periods before `origin + h`, the latest one
/// seen by `origin` (an index into the history); `None` before there is one.
fn seasonal_source(origin: usize, h: usize, period: usize) -> Option<usize> {
    let back = period * h.div_ceil(period);
    (origin + h).checked_sub(back)
}

/// Appends each candidate's error (truth - forecast) to its window of the last `keep`.
fn record_errors(windows: &mut [VecDeque<f64>; N], forecasts: &[f64; N], truth: f64, keep: usize) {
    for (window, f) in windows.iter_mut().zip(forecasts) {
        if f.is_finite() {
            window.push_back(truth - f);
            if window.len() > keep {
                window.pop_front();
            }
        }
    }
}

/// The `q`-quantile of `sorted` (ascending, not empty), interpolated between neighbours.
pub(crate) fn empirical_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The standard normal CDF (Abramowitz and Stegun 7.1.26 for erf; error < 1.5e-7).
pub(crate) fn standard_normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Intercept and slope of the least-squares line through `(i, ys[i])`.
fn least_squares_line(ys: &[f64]) -> (f64, f64) {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// Bursts to `peak` between levels of 0.4 to 0.6 of it and silent minutes, at no period:
/// 35 values, the last a level (0.6 of the peak) after a lull.
#[cfg(test)]
pub(crate) fn bursts_between_levels(peak: f64) -> Vec<f64> {
    [
        0.5, 0.0, 0.0, 1.0, 0.5, 0.6, 0.0, 1.0, 0.4, 0.5, 0.0, 0.9, 1.0, 0.5, 0.4, 0.0, 0.0, 1.0,
        0.6, 0.5, 0.4, 0.0, 1.0, 0.5, 0.5, 0.0, 0.9, 0.4, 0.5, 0.6, 0.0, 1.0, 0.5, 0.4, 0.6,
    ]
    .iter()
    .map(|share| share * peak)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: ForecasterKind, series: &[f64], h: usize) -> SignalForecaster {
        let mut f = SignalForecaster::new(kind, None);
        for &y in series {
            f.observe(y, h);
        }
        f
    }

    #[test]
    fn constant_series() {
        // (kind, expected point 3 steps ahead of a flat series at 10)
        for kind in [
            ForecasterKind::Constant,
            ForecasterKind::Linear,
            ForecasterKind::Kalman,
            ForecasterKind::Auto,
        ] {
            let f = run(kind, &[10.0; 30], 3);
            let p = f.forecast(3, 1.28).unwrap();
            assert!((p.point - 10.0).abs() < 0.5, "{kind:?}: {p:?}");
            assert!(p.upper >= p.point);
        }
    }

    #[test]
    fn linear_ramp_is_extrapolated() {
        let series: Vec<f64> = (0..20).map(|i| 5.0 + 2.0 * i as f64).collect();
        // Last value 43; the damped trend adds 2 * (0.8 + 0.64 + 0.512) = 3.904 at step 3.
        let want = 43.0 + 2.0 * damped_steps(3.0);
        let lin = run(ForecasterKind::Linear, &series, 3)
            .forecast(3, 0.0)
            .unwrap();
        assert!((lin.point - want).abs() < 1e-6, "{lin:?}");
        let kal = run(ForecasterKind::Kalman, &series, 3)
            .forecast(3, 0.0)
            .unwrap();
        assert!((kal.point - want).abs() < 1.0, "{kal:?}");
        let auto = run(ForecasterKind::Auto, &series, 3)
            .forecast(3, 0.0)
            .unwrap();
        assert!(
            (auto.point - want).abs() < 1.0,
            "auto should not pick constant on a ramp: {auto:?}"
        );
        assert_ne!(auto.method, ForecasterKind::Constant);
        // The bound covers the damping's shortfall seen in backtests.
        let upper = run(ForecasterKind::Linear, &series, 3)
            .forecast(3, 1.28)
            .unwrap();
        assert!(upper.upper >= 49.0 - 1e-6, "{upper:?}");
    }

    #[test]
    fn a_trend_is_scored_only_on_forecasts_made_from_a_line() {
        // A steady ramp, forecast two steps ahead. A line needs three values; before them
        // the trend forecasts nothing of its own, and the last value's misses on the ramp
        // (two steps of 10) are not its errors: its bound after eight values is its damped
        // shortfall alone, 10 * (2 - 0.8 - 0.64) = 5.6.
        let series: Vec<f64> = (1..=8).map(|i| 10.0 * i as f64).collect();
        let f = run(ForecasterKind::Linear, &series, 2);
        let p = f.forecast(2, 1.28).unwrap();
        let shortfall = 10.0 * (2.0 - damped_steps(2.0));
        assert!(
            (p.upper - p.point - shortfall).abs() < 1e-6,
            "bound {:.2} above the point, the damping's shortfall is {shortfall:.2}",
            p.upper - p.point
        );
        // Before its third value there is no line: the forecast is the last value's.
        let early = run(ForecasterKind::Linear, &series[..2], 2);
        assert_eq!(early.forecast(2, 0.0).unwrap().point, 20.0);
    }

    fn sine(i: usize, period: f64) -> f64 {
        25.0 + 20.0
            * (2.0 * std::f64::consts::PI * i as f64 / period - std::f64::consts::FRAC_PI_2).sin()
    }

    #[test]
    fn period_is_detected() {
        let series: Vec<f64> = (0..40).map(|i| sine(i, 10.0)).collect();
        assert_eq!(detect_period(&series), Some(10));
        let flat = vec![3.0; 40];
        assert_eq!(detect_period(&flat), None);
        let ramp: Vec<f64> = (0..40).map(|i| i as f64).collect();
        assert_eq!(detect_period(&ramp), None);
    }

    #[test]
    fn seasonal_series_is_forecast_by_holt_winters() {
        let series: Vec<f64> = (0..35).map(|i| sine(i, 10.0)).collect();
        let f = run(ForecasterKind::Auto, &series, 2);
        let p = f.forecast(2, 0.0).unwrap();
        let truth = sine(36, 10.0);
        assert!((p.point - truth).abs() < 3.0, "{p:?} vs {truth}");
        assert_eq!(f.period(), Some(10));
        let hw = run(ForecasterKind::HoltWinters, &series, 2)
            .forecast(2, 0.0)
            .unwrap();
        assert!((hw.point - truth).abs() < 3.0, "{hw:?} vs {truth}");
    }

    #[test]
    fn a_load_that_repeats_is_forecast_from_the_period_before_as_soon_as_found() {
        // A 10-interval cycle with noise, on and off (no sinusoid explains nine tenths of
        // it, so the harmonic regression stays out); horizon 4. Two periods in, the cycle is
        // found and the seasonal forecaster, backtested on the values already seen, is
        // chosen at once (Holt-Winters would need a horizon and three errors more) with a
        // tight bound.
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let on_off = |i: usize| if i % 10 < 5 { 10.0 } else { 40.0 };
        let series: Vec<f64> = (0..24).map(|i| on_off(i) + noise(i)).collect();
        let f = run(ForecasterKind::Auto, &series, 4);
        let p = f.forecast(4, 1.28).unwrap();
        let truth = on_off(27);
        assert_eq!(p.method, ForecasterKind::Seasonal, "{p:?}");
        assert!(f.bound_measured());
        assert!((p.point - truth).abs() < 1.5, "{p:?} vs {truth}");
        assert!(p.upper - p.point < 2.0, "{p:?}");
        // Before then the bound had to cover the swing the trend methods miss.
        let early = run(ForecasterKind::Auto, &series[..20], 4)
            .forecast(4, 1.28)
            .unwrap();
        assert!(early.upper - early.point > 10.0, "{early:?}");
    }

    #[test]
    fn a_sinusoid_is_forecast_by_its_fit_a_period_and_a_little_in() {
        // Dynamo's benchmark in one-minute steps, with noise; horizon 2. Autocorrelation
        // finds the period after two; the fitted sinusoid forecasts after eleven values,
        // backtested on those seen, with a tight bound.
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let series: Vec<f64> = (0..13).map(|i| sine(i, 10.0) + noise(i)).collect();
        let early = run(ForecasterKind::Auto, &series[..9], 2)
            .forecast(2, 1.28)
            .unwrap();
        assert_ne!(early.method, ForecasterKind::Harmonic, "{early:?}");
        let f = run(ForecasterKind::Auto, &series, 2);
        assert_eq!(f.period(), None);
        let p = f.forecast(2, 1.28).unwrap();
        let truth = sine(14, 10.0);
        assert_eq!(p.method, ForecasterKind::Harmonic, "{p:?}");
        assert!(f.bound_measured());
        assert!((p.point - truth).abs() < 1.5, "{p:?} vs {truth}");
        assert!(p.upper - p.point < 2.0, "{p:?}");
        assert!(early.upper - early.point > 10.0, "{early:?}");
    }

    #[test]
    fn a_sinusoid_is_searched_for_at_every_value_until_found_while_the_window_fills() {
        // Dynamo's benchmark in one-minute steps, with noise. The first value at which a
        // search finds the sinusoid is not a fourth one; it is fitted there, not up to three
        // values later (on a first cycle those were the rise a cold start must order for).
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let series: Vec<f64> = (0..30).map(|i| sine(i, 10.0) + noise(i)).collect();
        let first = (1..=series.len())
            .find(|&n| harmonic::find(&series[..n]).is_some())
            .expect("the sinusoid is found within three periods");
        assert_ne!(first as u64 % HARMONIC_SEARCH_EVERY, 0, "found at {first}");
        assert!(run(ForecasterKind::Auto, &series[..first - 1], 2)
            .harmonic
            .is_none());
        let f = run(ForecasterKind::Auto, &series[..first], 2);
        assert!(f.harmonic.is_some(), "not fitted at value {first}");
    }

    #[test]
    fn forecasts_pending_when_a_period_is_found_are_made_at_it_and_scored() {
        // Horizon 4: four forecasts wait for their truth at any time. Made before the period
        // was known, each is made again at it from the values seen when it was made, and is
        // scored when it comes due. Left out, a fit found early (two backtested errors at
        // this horizon) went unscored, and unchosen, for a horizon.
        let h = 4;
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let series: Vec<f64> = (0..40).map(|i| sine(i, 10.0) + noise(i)).collect();
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None);
        let mut at = 0;
        while f.harmonic.is_none() {
            f.observe(series[at], h);
            at += 1;
        }
        assert!(
            f.errors[HARMONIC].len() < MIN_SCORED,
            "{:?}",
            f.errors[HARMONIC]
        );
        assert!(f.pending.iter().all(|(_, _, p)| p[HARMONIC].is_finite()));
        let backtested = f.errors[HARMONIC].len();
        f.observe(series[at], h);
        assert_eq!(f.errors[HARMONIC].len(), backtested + 1);
        let error = *f.errors[HARMONIC].back().unwrap();
        assert!(error.abs() < 2.0, "{error}");
        f.observe(series[at + 1], h);
        assert_eq!(f.chosen_point(h).unwrap().0, HARMONIC);

        // The seasonal forecaster's pending forecasts, from the period before, likewise.
        let on_off = |i: usize| if i % 10 < 5 { 10.0 } else { 40.0 };
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None);
        let mut at = 0;
        while f.seasonal_period.is_none() {
            f.observe(on_off(at) + noise(at), h);
            at += 1;
        }
        assert!(f.pending.iter().all(|(_, _, p)| p[SEASONAL].is_finite()));
        f.observe(on_off(at) + noise(at), h);
        let error = *f.errors[SEASONAL].back().unwrap();
        assert!(error.abs() < 1.0, "{error}");
    }

    /// A load at `base` with a one-step burst to `peak` every `every` steps from step 6,
    /// `n` steps in all, horizon 2; the SLA missed at the bursts while `missed(step)`.
    fn bursts(
        n: usize,
        every: usize,
        peak: f64,
        missed: impl Fn(usize) -> bool,
    ) -> SignalForecaster {
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None).with_excursions();
        for i in 0..n {
            let burst = i >= 6 && (i - 6) % every == 0;
            if burst && missed(i) {
                f.note_missed();
            }
            f.observe(
                if burst {
                    peak
                } else {
                    10.0 + (i % 2) as f64 * 0.5
                },
                2,
            );
        }
        f
    }

    #[test]
    fn a_peak_the_load_keeps_coming_back_to_is_planned_for_once_the_sla_was_missed_at_it() {
        let p90 = normal_quantile(0.9);
        // (bursts every, steps, missed at them, recurring peak expected)
        // (excursions counted, steps they span)
        type Recurring = Option<(usize, u64)>;
        let cases: [(usize, usize, bool, Recurring); 5] = [
            // Missed at two bursts eight steps apart: two in the eight steps since the
            // earlier came back, 2 / 8 of a chance per horizon of 2, above 0.1.
            (8, 16, true, Some((2, 8))),
            // One burst is no recurrence.
            (8, 9, true, None),
            // Met without capacity kept for them: nothing to keep.
            (8, 40, false, None),
            // Thirty steps apart: 2 / 30 of a chance per horizon, under 0.1.
            (30, 38, true, None),
            // Once capacity met the bursts (no miss after the first two), they still recur.
            (8, 40, true, Some((2, 8))),
        ];
        for (every, n, missed, want) in cases {
            let f = bursts(n, every, 40.0, |i| missed && i < 6 + 2 * every);
            let got = f.recurring_peak(p90).map(|p| (p.times, p.over));
            assert_eq!(got, want, "every {every}, {n} steps, missed {missed}");
            if let Some(p) = f.recurring_peak(p90) {
                assert_eq!(p.level, 40.0);
            }
        }
        // Bursts that come down by degrees to a level above the one they left are over once
        // halfway down from their peak.
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None).with_excursions();
        let tail = [40.0, 31.0, 26.0, 23.0, 22.0, 22.5, 22.0, 22.5];
        let series = (0..6)
            .map(|i| 10.0 + (i % 2) as f64 * 0.5)
            .chain(tail)
            .chain(tail);
        for y in series {
            if y == 40.0 {
                f.note_missed();
            }
            f.observe(y, 2);
        }
        assert_eq!(f.recurring_peak(p90).map(|p| p.level), Some(40.0));
        // A jump up that stays is a new level, not an excursion.
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None).with_excursions();
        for i in 0..30 {
            f.note_missed();
            f.observe(
                if i < 8 {
                    10.0 + (i % 2) as f64 * 0.5
                } else {
                    40.0
                },
                2,
            );
        }
        assert_eq!(f.recurring_peak(p90), None);
    }

    #[test]
    fn the_worst_miss_is_known_once_a_dozen_errors_are_scored() {
        // Horizon 2: the first error is scored at the third value, the twelfth at the 14th.
        let series: Vec<f64> = (0..14).map(|i| 20.0 + f64::from(i % 3)).collect();
        let f = run(ForecasterKind::Constant, &series[..13], 2);
        assert!(f.bound_measured() && !f.misses_known());
        assert!(run(ForecasterKind::Constant, &series, 2).misses_known());
    }

    #[test]
    fn the_worst_case_in_a_lull_is_the_loads_worst_rise_unless_the_forecast_is_clearly_better() {
        // Bursts to 90-100 between levels of 40-60 and silent minutes, at no period, horizon
        // 2: the smoothed level is chosen, with half the last value's mean error, no
        // better than that by a clear margin. Its worst miss is measured from levels it
        // forecast high through the bursts; the last value's, over two steps, from a
        // silence or a level to a burst.
        let series = bursts_between_levels(100.0);
        let f = run(ForecasterKind::Auto, &series, 2);
        let z = 3.09;
        let bound = f.forecast(2, z).unwrap();
        let worst = f.worst_case(2, z).unwrap();
        assert_eq!(bound.method, ForecasterKind::Smoothed, "{bound:?}");
        assert!(bound.upper < 100.0, "{bound:?}");
        // The last value, 60, and the worst rise over two steps of the last dozen, +50.
        assert!((worst.upper - 110.0).abs() < 1e-9, "{worst:?}");
        assert_eq!(worst.point, bound.point);
        // Before a dozen errors of the last value are scored, its worst is not known yet.
        let early = run(ForecasterKind::Auto, &series[..12], 2);
        assert_eq!(early.worst_case(2, z), early.forecast(2, z));
        // A fitted sinusoid forecasts its load far better than its last value, whose
        // misses are the swing: its worst case is its own bound.
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let series: Vec<f64> = (0..40).map(|i| sine(i, 10.0) + noise(i)).collect();
        let fitted = run(ForecasterKind::Auto, &series, 2);
        let bound = fitted.forecast(2, z).unwrap();
        assert_eq!(bound.method, ForecasterKind::Harmonic, "{bound:?}");
        assert_eq!(fitted.worst_case(2, z), Some(bound));
    }

    #[test]
    fn a_level_no_clearly_better_than_the_last_value_is_bounded_by_the_last_values_bound() {
        // The bursty load above: in the lull, the smoothed level's p90 sits below the last
        // value's (60, and the p90 of its two-step misses of the last dozen, 49).
        let series = bursts_between_levels(100.0);
        let z = 1.28;
        let f = run(ForecasterKind::Auto, &series, 2);
        let bound = f.forecast(2, z).unwrap();
        let raised = f.with_last_values_bound(2, z).unwrap();
        assert_eq!(bound.method, ForecasterKind::Smoothed, "{bound:?}");
        assert!(bound.upper < 100.0, "{bound:?}");
        let misses = f.misses(CONSTANT, z).unwrap();
        let last_values = 60.0 + empirical_quantile(&misses, standard_normal_cdf(z));
        assert!((raised.upper - last_values).abs() < 1e-9, "{raised:?}");
        assert!(raised.upper > bound.upper + 5.0, "{raised:?} {bound:?}");
        assert_eq!(raised.point, bound.point);
        // The last value forecasting: its bound is already its own.
        assert_eq!(
            run(ForecasterKind::Constant, &series, 2).with_last_values_bound(2, z),
            None
        );
        // A fitted sinusoid, far better than its last value: its own bound stands.
        let noise = |i: usize| if i % 3 == 0 { 0.6 } else { -0.3 };
        let series: Vec<f64> = (0..40).map(|i| sine(i, 10.0) + noise(i)).collect();
        assert_eq!(
            run(ForecasterKind::Auto, &series, 2).with_last_values_bound(2, z),
            None
        );
    }

    #[test]
    fn a_configured_day_long_period_is_kept_in_the_history_and_forecast() {
        // One-minute intervals, a daily cycle (1440 intervals) configured: two days of history
        // must be kept for Holt-Winters and the seasonal forecaster to start (the history
        // was capped at 1024 intervals, and a configured day never started either).
        let day = 1440;
        let series: Vec<f64> = (0..3000).map(|i| sine(i, day as f64)).collect();
        let mut f = SignalForecaster::new(ForecasterKind::Auto, Some(day));
        for &y in &series {
            f.observe(y, 3);
        }
        assert_eq!(f.period(), Some(day));
        let p = f.forecast(3, 1.28).unwrap();
        assert!(
            p.method == ForecasterKind::Seasonal || p.method == ForecasterKind::HoltWinters,
            "{p:?}"
        );
        let truth = sine(3002, day as f64);
        assert!((p.point - truth).abs() < 0.5, "{p:?} vs {truth}");
    }

    #[test]
    fn a_loose_autocorrelation_peak_does_not_make_the_load_seasonal() {
        // A noisy level with a weak 4-step echo: autocorrelation finds a period, but values a
        // period apart correlate far below REPEATS, so copying one of them is not a forecast.
        let mut x: u64 = 7;
        let mut rnd = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut series: Vec<f64> = Vec::new();
        for i in 0..60 {
            let echo = if i >= 4 {
                0.5 * (series[i - 4] - 40.0)
            } else {
                0.0
            };
            series.push(40.0 + echo + 12.0 * (rnd() - 0.5));
        }
        let f = run(ForecasterKind::Auto, &series, 2);
        assert!(f.period().is_some(), "the echo should be found as a period");
        assert!(lag_correlation(&series, f.period().unwrap()) < REPEATS);
        assert!(f.seasonal_period.is_none());
        assert!(f.candidate(SEASONAL, 2).is_nan());
        assert_ne!(
            f.forecast(2, 1.28).unwrap().method,
            ForecasterKind::Seasonal
        );
    }

    #[test]
    fn seasonal_source_is_the_latest_value_a_whole_number_of_periods_back() {
        // (origin, h, period, index forecast from)
        for (origin, h, period, want) in [
            (19, 4, 10, Some(13)),
            (19, 10, 10, Some(19)),
            (19, 12, 10, Some(11)),
            (5, 4, 10, None),
        ] {
            assert_eq!(
                seasonal_source(origin, h, period),
                want,
                "{origin} {h} {period}"
            );
        }
        assert_eq!(CANDIDATES[SEASONAL], ForecasterKind::Seasonal);
    }

    #[test]
    fn upper_bound_widens_with_noise() {
        let noisy: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 8.0 } else { 12.0 })
            .collect();
        let calm = vec![10.0; 30];
        let a = run(ForecasterKind::Constant, &noisy, 1)
            .forecast(1, 1.28)
            .unwrap();
        let b = run(ForecasterKind::Constant, &calm, 1)
            .forecast(1, 1.28)
            .unwrap();
        assert!(a.upper - a.point > 3.0, "{a:?}");
        assert!(b.upper - b.point < 0.1, "{b:?}");
    }

    #[test]
    fn a_trend_falling_through_zero_forecasts_zero_and_keeps_its_errors_margin() {
        // Minutes of bursts, then a fall to silence: the trend points below zero, but the
        // load is never negative and the bursts may come back. The bound is the errors'
        // size above zero (scored below zero, the bound was 0 here).
        let series = [
            30.0, 5.0, 40.0, 10.0, 35.0, 0.0, 45.0, 15.0, 30.0, 20.0, 40.0, 25.0, 20.0, 10.0, 5.0,
            0.0, 0.0,
        ];
        let f = run(ForecasterKind::Linear, &series, 4);
        for h in 1..=4 {
            assert!(f.candidate(1, h) >= 0.0);
        }
        let b = f.forecast(4, 1.28).unwrap();
        assert_eq!(b.point, 0.0);
        assert!(b.upper > 5.0, "{b:?}");
    }

    /// Counts of a steady 10 req/s in 5 s intervals (50 a count, Poisson scatter 7), as
    /// rates: a fixed pseudo-random draw.
    fn counted_rates(n: usize) -> Vec<f64> {
        let mut state: u64 = 7;
        (0..n)
            .map(|_| {
                // Sum of 12 uniforms: near normal, mean 6, sd 1.
                let z: f64 = (0..12)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (state >> 11) as f64 / (1u64 << 53) as f64
                    })
                    .sum::<f64>()
                    - 6.0;
                (50.0 + z * 50f64.sqrt()).round() / 5.0
            })
            .collect()
    }

    #[test]
    fn the_bound_covers_how_the_load_moves_not_how_its_count_scatters() {
        // 13 steps ahead (a 60 s cold start in 5 s intervals). Told the counts' noise, the
        // bound stays near the rate; not told, the scatter passes for the load's movement.
        let rates = counted_rates(60);
        let (mut told, mut blind) = (
            SignalForecaster::new(ForecasterKind::Auto, None),
            SignalForecaster::new(ForecasterKind::Auto, None),
        );
        // From the sixth value on: the first steps' pace is all there is to go by at first,
        // told or not.
        let mut widest = (0.0f64, 0.0f64);
        for (i, &y) in rates.iter().enumerate() {
            told.observe_sampled(y, (y * 5.0).sqrt() / 5.0, 13);
            blind.observe(y, 13);
            if i >= 5 {
                let t = told.forecast(13, 1.28).unwrap();
                let b = blind.forecast(13, 1.28).unwrap();
                widest = (widest.0.max(t.upper), widest.1.max(b.upper));
            }
        }
        assert!(widest.0 < 15.0, "told: bound up to {:.1} req/s", widest.0);
        assert!(widest.1 > 30.0, "blind: bound up to {:.1} req/s", widest.1);
        // A rise of 2 req/s a step out of the same scatter (about 1.8 req/s a count) is
        // followed within five steps: three are not yet told from the scatter at a chance of
        // one in ten per horizon (`the_count_scatter_rarely_passes_for_a_rise_...`).
        let mut rising = told.clone();
        for k in 1..=5 {
            let y = 10.0 + 2.0 * k as f64;
            rising.observe_sampled(y, (y * 5.0).sqrt() / 5.0, 13);
        }
        let p = rising.forecast(13, 1.28).unwrap();
        assert!(p.upper > 30.0, "{p:?}");
    }

    #[test]
    fn the_count_scatter_rarely_passes_for_a_rise_however_many_decisions_a_horizon_holds() {
        // Half an hour of a steady 10 req/s counted in 5 s intervals, 13 steps to the
        // horizon: runs of three under-forecasts come by chance every few dozen values, and
        // each extrapolated 13 steps would ask for twice the load. Tested at a chance of
        // one in ten per horizon, they pass for a rise about once (before: five times).
        let rates = counted_rates(360);
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None);
        let mut alarms = 0;
        for &y in &rates {
            f.observe_sampled(y, (y * 5.0).sqrt() / 5.0, 13);
            let i = f.chosen();
            let r = &f.recent[i];
            let bound = f.forecast(13, 1.28).unwrap();
            if r.len() == RUN && r.iter().all(|&x| x > 0.0) && bound.upper > 20.0 {
                alarms += 1;
            }
        }
        assert!(alarms <= 1, "noise read as a rise {alarms} times");
    }

    #[test]
    fn early_bound_from_the_prior_then_from_the_steps_seen() {
        // One value: nothing to go by but the prior.
        let mut f = SignalForecaster::new(ForecasterKind::Constant, None).with_prior_error(0.5);
        f.observe(10.0, 3);
        let p = f.forecast(3, 1.0).unwrap();
        assert!((p.upper - 15.0).abs() < 1e-9, "{p:?}");
        // Three values, nothing scored at the horizon yet: the steps seen (+2, -2, RMS 2)
        // may go on for each of the 3 steps ahead.
        f.observe(12.0, 3);
        f.observe(10.0, 3);
        let p = f.forecast(3, 1.0).unwrap();
        assert!((p.upper - 16.0).abs() < 1e-9, "{p:?}");
        // The pace is the last two steps': a first jump that has settled is forgotten.
        let mut settled = SignalForecaster::new(ForecasterKind::Constant, None);
        for y in [10.0, 40.0, 41.0, 40.0] {
            settled.observe(y, 5);
        }
        let p = settled.forecast(5, 1.0).unwrap();
        assert!((p.upper - 45.0).abs() < 1e-9, "{p:?}");
        // A flat start buys no margin at all.
        let mut flat = SignalForecaster::new(ForecasterKind::Constant, None);
        flat.observe(10.0, 3);
        flat.observe(10.0, 3);
        assert!((flat.forecast(3, 1.0).unwrap().upper - 10.0).abs() < 1e-9);
        // Once a flat series has been scored, its own (zero) errors take over.
        let f = run(ForecasterKind::Constant, &[10.0; 10], 3);
        assert!((f.forecast(3, 1.0).unwrap().upper - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_first_value_rising_within_its_interval_is_bounded_by_that_rise() {
        // (rise per interval, its sampling scatter, z, the bound 2 steps ahead.)
        let cases = [
            // Rising by 5 an interval within a scatter of 3: at z = 1 it may be 8 an
            // interval, 10 + 2 x 8; at z = 2, 11, and the margin twice that: 10 + 2 x 2 x 11.
            (5.0, 3.0, 1.0, 26.0),
            (5.0, 3.0, 2.0, 54.0),
            // No rise read, but one of 3 could hide in the scatter: more than the prior's
            // 10 x 0.5 over two steps.
            (0.0, 3.0, 1.0, 16.0),
            // A flat interval whose scatter hides less, or a fall: the prior's margin.
            (0.0, 2.0, 1.0, 15.0),
            (0.0, 0.0, 1.0, 15.0),
            (-8.0, 1.0, 1.0, 15.0),
            // A rise known exactly, less than the prior's margin over the horizon: the prior's.
            (2.0, 0.0, 1.0, 15.0),
        ];
        for (rise, scatter, z, upper) in cases {
            let mut f = SignalForecaster::new(ForecasterKind::Constant, None).with_prior_error(0.5);
            f.observe(10.0, 2);
            f.observe_within(rise, scatter);
            let p = f.forecast(2, z).unwrap();
            assert!(
                (p.upper - upper).abs() < 1e-9,
                "rise {rise} at z {z}: {p:?}"
            );
        }
        // It describes one value's interval: the next value, with steps between intervals
        // to go by, does not carry it.
        let mut f = SignalForecaster::new(ForecasterKind::Constant, None).with_prior_error(0.5);
        f.observe(10.0, 2);
        f.observe_within(20.0, 0.0);
        f.observe(10.0, 2);
        assert!((f.forecast(2, 1.0).unwrap().upper - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_rise_between_intervals_that_the_latest_halves_no_longer_show_was_a_step() {
        let bound = |values: &[f64], within: Option<(f64, f64)>| {
            let mut f = SignalForecaster::new(ForecasterKind::Constant, None);
            for &y in values {
                f.observe(y, 4);
            }
            if let Some((rise, scatter)) = within {
                f.observe_within(rise, scatter);
            }
            f.forecast(4, 1.0).unwrap().upper
        };
        // 20 then 35: a ramp of 15 an interval, for each of the 4 steps ahead.
        assert!((bound(&[20.0, 35.0], None) - 95.0).abs() < 1e-9);
        // The latest halves show it going on: the steps' pace stands.
        assert!((bound(&[20.0, 35.0], Some((15.0, 1.0))) - 95.0).abs() < 1e-9);
        // They show it stopped: at most what they show at the bound's odds, 0 + 1 x 2.
        assert!((bound(&[20.0, 35.0], Some((0.0, 2.0))) - 43.0).abs() < 1e-9);
        assert!((bound(&[20.0, 35.0], Some((-5.0, 1.0))) - 35.0).abs() < 1e-9);
        // A load that fell as well as rose moves both ways; flat halves do not refute that.
        let both_ways = bound(&[20.0, 5.0, 35.0], None);
        assert!((both_ways - (35.0 + 4.0 * 562.5_f64.sqrt())).abs() < 1e-9);
        assert_eq!(bound(&[20.0, 5.0, 35.0], Some((0.0, 2.0))), both_ways);
    }

    #[test]
    fn a_ramp_whose_steps_shrink_is_paced_by_its_slope() {
        let upper = |values: &[f64], noise: f64| {
            let mut f = SignalForecaster::new(ForecasterKind::Constant, None);
            for &y in values {
                f.observe_sampled(y, noise, 4);
            }
            f.forecast(4, 1.0).unwrap().upper
        };
        // Steps of 16 then 4: slowing, so the slope (10 an interval), not the root mean
        // square (sqrt(136), about 11.7), for each of the 4 steps ahead.
        assert!((upper(&[20.0, 36.0, 40.0], 0.0) - 80.0).abs() < 1e-9);
        // Steps of 4 then 16: gathering pace, the root mean square stands.
        let gathering = upper(&[20.0, 24.0, 40.0], 0.0);
        assert!((gathering - (40.0 + 4.0 * 136_f64.sqrt())).abs() < 1e-9);
        // Steps that shrink by no more than the counting noise puts between successive
        // steps (sqrt(6) x 2 = 4.9) are not read as slowing: 12 then 8.
        let steady = upper(&[20.0, 32.0, 40.0], 2.0);
        assert!((steady - (40.0 + 4.0 * (104.0_f64 - 8.0).sqrt())).abs() < 1e-9);
        // Shrinking by more than that (16 then 4), the slope less the scatter of its ends:
        // sqrt(10^2 - (2 sqrt(2) / 2)^2) = sqrt(98).
        let slowing = upper(&[20.0, 36.0, 40.0], 2.0);
        assert!((slowing - (40.0 + 4.0 * 98_f64.sqrt())).abs() < 1e-9);
        // A load that fell as well as rose: the root mean square, whatever the order.
        let both_ways = upper(&[20.0, 36.0, 32.0], 0.0);
        assert!((both_ways - (32.0 + 4.0 * 136_f64.sqrt())).abs() < 1e-9);
    }

    #[test]
    fn a_load_that_moves_both_ways_is_paced_over_the_span_to_the_horizon() {
        let upper = |values: &[f64]| {
            let mut f = SignalForecaster::new(ForecasterKind::Constant, None);
            for &y in values {
                f.observe(y, 4);
            }
            f.forecast(4, 1.0).unwrap().upper
        };
        // Jitter about a level: its last steps (4, then -6) would say 5.1 a step, but over
        // four steps it moved by 1 and -1: a quarter a step, for each of the 4 ahead.
        assert!((upper(&[20.0, 26.0, 22.0, 27.0, 21.0, 25.0]) - 26.0).abs() < 1e-9);
        // A trend with a dip keeps the pace its changes over the span show: 20 and 18 over
        // three steps, about 6.3 a step, near its mean step of 7.5 (its last steps, 12 and
        // -2, say 8.6).
        let trend = upper(&[10.0, 20.0, 30.0, 28.0, 40.0]);
        let over_span = ((400.0 + 324.0) / 2.0_f64).sqrt() / 3.0;
        assert!((trend - (40.0 + 4.0 * over_span)).abs() < 1e-9, "{trend}");
        // A jump the load has settled from is not brought back by a span reaching behind
        // it: its last steps (-1, then 1) set the pace.
        assert!((upper(&[10.0, 10.0, 40.0, 41.0, 40.0]) - 44.0).abs() < 1e-9);
        // A ramp keeps its last steps' pace (4, then 8): a span would average in its
        // slower start (and its dip, which keeps the run rule out of this).
        let ramp = upper(&[10.0, 12.0, 11.0, 15.0, 23.0]);
        assert!((ramp - (23.0 + 4.0 * 40_f64.sqrt())).abs() < 1e-9, "{ramp}");
    }

    #[test]
    fn a_run_of_under_forecasts_widens_the_bound_before_horizon_errors_show_it() {
        // Flat at 10 long enough to score the horizon (5 steps), then a rise of 1 a step.
        let mut series = vec![10.0; 20];
        series.extend([11.0, 12.0, 13.0]);
        let f = run(ForecasterKind::Constant, &series, 5);
        let p = f.forecast(5, 1.28).unwrap();
        // The horizon errors are still the flat ones (zero); three one-step errors of 1
        // say the rise may go on for the 5 steps ahead.
        assert_eq!(p.point, 13.0);
        assert!((p.upper - 18.0).abs() < 1e-9, "{p:?}");
        // A mixed run on a noisy load adds nothing to the noise's own bound.
        let mut noisy: Vec<f64> = (0..20).map(|i| 10.0 + (i % 2) as f64).collect();
        noisy.extend([11.0, 10.0, 11.0]);
        let q = run(ForecasterKind::Constant, &noisy, 5)
            .forecast(5, 1.28)
            .unwrap();
        assert!(q.upper - q.point <= 1.0 + 1e-9, "{q:?}");
    }

    #[test]
    fn a_lag_behind_a_trend_that_has_ended_is_taken_off_the_bound() {
        // A ramp of 10 a step from 10 to 160, then (the ending): its errors at the
        // 4-step horizon are the constant forecast's lag, 40, and the latest four are
        // what the ending made of the ramp's last forecasts.
        let ramp: Vec<f64> = (1..=16).map(|i| 10.0 * i as f64).collect();
        let upper = |ending: &[f64]| {
            let mut series = ramp.clone();
            series.extend(ending);
            run(ForecasterKind::Constant, &series, 4)
                .forecast(4, 1.28)
                .unwrap()
                .upper
        };
        // Still rising: the one-step errors (10) show the whole lag going on, 40 over the
        // horizon, and the bound keeps it (the errors' p90, 40).
        assert!((upper(&[]) - 200.0).abs() < 1e-9);
        // Topped out: the errors due since are 30, 20, 10 and 0, the window's mean 31.67;
        // the one-step errors are 0, so all of it goes and the spread about it stays.
        let mean = (8.0 * 40.0 + 30.0 + 20.0 + 10.0) / 12.0;
        let flat = upper(&[160.0; 4]);
        assert!((flat - (160.0 + 40.0 - mean)).abs() < 1e-9, "{flat}");
        // Slowed to 5 a step: 20 of the lag goes on over the horizon and is kept.
        let mean = (8.0 * 40.0 + 35.0 + 30.0 + 25.0 + 20.0) / 12.0;
        let slowed = upper(&[165.0, 170.0, 175.0, 180.0]);
        assert!(
            (slowed - (180.0 + 40.0 - (mean - 20.0))).abs() < 1e-9,
            "{slowed}"
        );
        // A level forecaster two steps into the plateau: its one-step errors (33, 23, 16)
        // going on over the horizon still cover the whole of its mean error, and nothing
        // is taken off the errors' p90.
        let mut series = ramp.clone();
        series.extend([160.0; 2]);
        let f = run(ForecasterKind::Smoothed, &series, 4);
        let p = f.forecast(4, 1.28).unwrap();
        let errors = f.errors_sorted(f.chosen()).unwrap();
        let p90 = empirical_quantile(&errors, standard_normal_cdf(1.28));
        assert!((p.upper - (p.point + p90)).abs() < 1e-9, "{p:?}");
        assert!(p.upper > 200.0, "{p:?}");
    }

    #[test]
    fn a_rise_that_is_not_slowing_is_paced_by_its_latest_step() {
        // (the three values after 20 flat ones at 10, the bound 5 steps ahead): one-step
        // errors of the constant forecaster are the steps themselves.
        for (rise, upper) in [
            // Compounding (2, 3, 4): the latest pace, 4 a step, gathering 1 a step more at
            // each step: 5, 6, ... 9 over the 5 steps ahead.
            ([12.0, 15.0, 19.0], 19.0 + 4.0 * 5.0 + 1.0 * 15.0),
            // Slowing (4, 3, 2): the smallest, 2 a step.
            ([14.0, 17.0, 19.0], 19.0 + 2.0 * 5.0),
            // One burst within the run (2, 9, 1): the smallest, 1 a step.
            ([12.0, 21.0, 22.0], 22.0 + 1.0 * 5.0),
        ] {
            let mut series = vec![10.0; 20];
            series.extend(rise);
            let p = run(ForecasterKind::Constant, &series, 5)
                .forecast(5, 1.28)
                .unwrap();
            assert!((p.upper - upper).abs() < 1e-9, "{rise:?}: {p:?}");
        }
    }

    #[test]
    fn a_level_forecaster_on_a_rise_is_bounded_by_the_loads_steps_not_its_lag() {
        // A load swinging between 12 and 10, then three steps of 1 (11, 12, 13), the bound
        // 5 steps ahead. The smoothed level lags the rise, and its one-step errors (its lag)
        // grow along the run to nearly 2: taken for the pace, the bound would be the level
        // plus 5 x that lag. The load's own steps are 1: the rise going on from the last
        // value reaches 13 + 5.
        let mut series: Vec<f64> = (0..20).map(|i| 10.0 + 2.0 * ((i + 1) % 2) as f64).collect();
        series.extend([11.0, 12.0, 13.0]);
        let f = run(ForecasterKind::Smoothed, &series, 5);
        let p = f.forecast(5, 1.28).unwrap();
        assert!(p.point < 12.0, "the level lags: {p:?}");
        assert!((p.upper - 18.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_rise_gathers_pace_only_when_every_step_of_its_run_rose() {
        // A load swinging between 12 and 10 (each value scattered by 1), then 12, 11.8 and
        // 15: the smoothed level is under all three, a rise; the load's own steps (2, -0.2,
        // 3.2) are not slowing within the scatter, and its pace is the latest, 3.2. One of
        // them fell: the run holds a dip, not a rise gathering pace, and the bound 5 steps
        // ahead goes on at 3.2 a step, not growing by the steps' mean growth (0.6 a step).
        let mut f = SignalForecaster::new(ForecasterKind::Smoothed, None);
        let mut series: Vec<f64> = (0..20).map(|i| 10.0 + 2.0 * ((i + 1) % 2) as f64).collect();
        series.extend([12.0, 11.8, 15.0]);
        for &y in &series {
            f.observe_sampled(y, 1.0, 5);
        }
        let p = f.forecast(5, 1.28).unwrap();
        assert!(p.point < 15.0, "the level lags: {p:?}");
        assert!((p.upper - (15.0 + 3.2 * 5.0)).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_dip_within_the_sampling_noise_does_not_slow_a_rise() {
        // Steps of 3, 2.5 and 4 after 20 flat values at 10, the bound 5 steps ahead: with
        // each value scattered by 0.5, the dip of 0.5 is noise and the latest step, 4,
        // paces the rise, gathering (4 - 3) / 2 a step more at each step; with a scatter
        // of 0.1 it is a slowing, paced by the smallest.
        for (noise, rise) in [(0.5, 4.0 * 5.0 + 0.5 * 15.0), (0.1, 2.5 * 5.0)] {
            let mut f = SignalForecaster::new(ForecasterKind::Constant, None);
            let mut series = vec![10.0; 20];
            series.extend([13.0, 15.5, 19.5]);
            for &y in &series {
                f.observe_sampled(y, noise, 5);
            }
            let p = f.forecast(5, 1.28).unwrap();
            assert!(
                (p.upper - (19.5 + rise)).abs() < 1e-9,
                "noise {noise}: {p:?}"
            );
        }
    }

    #[test]
    fn after_a_jump_the_bound_keeps_its_size_until_new_errors_are_scored() {
        // Flat at 10 with small noise, then a jump to 25 (horizon 2).
        let mut series: Vec<f64> = (0..20).map(|i| 10.0 + (i % 2) as f64 * 0.5).collect();
        series.push(25.0);
        let f = run(ForecasterKind::Smoothed, &series, 2);
        let p = f.forecast(2, 1.0).unwrap();
        assert_eq!(p.point, 25.0, "the smoothed level follows the jump");
        assert!(
            p.upper >= 25.0 + 14.5,
            "the jump (about 15) may go on: {p:?}"
        );
        // Two more values at the new level: forecasts made since the jump are scored, and
        // the bound is back to the load's noise (the forecasts that straddled the jump are
        // not counted: they measured the jump, not the new level).
        let mut later = series.clone();
        later.extend([25.0, 25.5]);
        let q = run(ForecasterKind::Smoothed, &later, 2)
            .forecast(2, 1.28)
            .unwrap();
        assert!(q.upper - q.point < 1.0, "{q:?}");
    }

    /// A deterministic load jumping about 20 with no pattern (a linear congruential walk).
    fn jumpy(n: usize) -> Vec<f64> {
        let mut x: u64 = 12345;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                20.0 + ((x >> 33) % 17) as f64 - 8.0
            })
            .collect()
    }

    #[test]
    fn smoothed_level_wins_on_a_load_that_jumps_about_its_mean() {
        let series = jumpy(40);
        let auto = run(ForecasterKind::Auto, &series, 2);
        let chosen = auto.forecast(2, 1.28).unwrap();
        assert_eq!(chosen.method, ForecasterKind::Smoothed, "{chosen:?}");
        let constant = run(ForecasterKind::Constant, &series, 2)
            .forecast(2, 1.28)
            .unwrap();
        // The bound above the point is narrower than the last value's.
        assert!(
            chosen.upper - chosen.point < constant.upper - constant.point,
            "{chosen:?} vs {constant:?}"
        );
    }

    #[test]
    fn smoothed_level_follows_a_level_shift_at_once() {
        let mut series = jumpy(30);
        series.push(80.0);
        let f = run(ForecasterKind::Smoothed, &series, 2);
        assert_eq!(f.forecast(1, 0.0).unwrap().point, 80.0);
    }

    #[test]
    fn normal_cdf() {
        assert!((standard_normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((standard_normal_cdf(1.281552) - 0.9).abs() < 1e-6);
        assert!((standard_normal_cdf(-1.281552) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut f = SignalForecaster::new(ForecasterKind::Auto, None);
        f.observe(5.0, 1);
        f.observe(f64::NAN, 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.forecast(1, 0.0).unwrap().point, 5.0);
        assert!(SignalForecaster::new(ForecasterKind::Auto, None)
            .forecast(1, 0.0)
            .is_none());
    }
}
