//! Load forecasting, per signal (request rate, ISL, OSL), one value per interval.
//!
//! Seven forecasters learn from the same series: constant (last value), smoothed level,
//! linear trend (least squares on a recent window), Holt-Winters (additive, for periodic
//! load; the period is configured or found by autocorrelation), seasonal (the value a
//! period before, when the load repeats closely), a Kalman local-linear-trend filter and a
//! harmonic regression (a level and one fitted sinusoid, `harmonic.rs`). Each one's
//! forecasts are scored against what then happened at the planning horizon; `auto` uses
//! the one with the lowest recent error, and the prediction bound comes from that
//! forecaster's own recent errors. Those arrive a horizon late, so the bound is widened
//! where they cannot know yet: at the start, while one-step errors show a rise, and after a
//! jump to a new level.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::harmonic::{self, Harmonic};
use super::model::normal_quantile;

mod bound;
mod excursions;
mod methods;

use excursions::Excursion;
pub use excursions::{ExcursionCeiling, RecurringPeak};
pub use methods::{detect_period, lag_correlation};
use methods::{least_squares_line, HoltWinters, Kalman};

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
    /// The highest value of every excursion the load came back from, met or not, newest
    /// last: what a burst like them may reach (`excursion_ceiling`).
    peaks: VecDeque<f64>,
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
            peaks: VecDeque::new(),
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
        self.advance(y, noise, horizon, true);
    }

    /// Takes `y` as the value of a step nobody measured (a gap in the observations, filled
    /// by the caller's estimate), so that the steps after it keep their place in time: a
    /// period, a trend's slope per step and the forecasts due later stay where they belong.
    /// An estimate is not the load: no forecast is scored against it, nor does it start or
    /// end an excursion or a new level.
    pub fn observe_unseen(&mut self, y: f64, horizon: usize) {
        self.advance(y, 0.0, horizon, false);
    }

    /// The most steps the history holds: a gap longer than this leaves nothing of the load
    /// the forecasts were made from.
    pub fn memory_steps(&self) -> usize {
        self.history_cap()
    }

    fn advance(&mut self, y: f64, noise: f64, horizon: usize, measured: bool) {
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
        // Score forecasts that were made for this tick (those due at an unseen step go
        // unscored).
        while let Some(&(due, _, preds)) = self.pending.front() {
            if due > self.ticks {
                break;
            }
            self.pending.pop_front();
            if due == self.ticks && measured {
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
        let usual = self.score(smoothed).filter(|_| measured);
        if self.follows_excursions && measured {
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
        if let (Some(next), true) = (self.next, measured) {
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
mod tests;
