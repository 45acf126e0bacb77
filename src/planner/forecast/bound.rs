//! What a forecaster is asked: its point and upper bound at a step, the bound's worst case
//! and its raise to the last value's own, and the bound before errors are measured (the
//! early pace) and after a trend has ended (the lag taken off).

use super::*;

impl SignalForecaster {
    /// The chosen method's recent errors at the horizon, sorted, less the lag behind a trend
    /// that has ended (`ended_bias`) at the bound's `z`: the misses its bound is measured
    /// from; `None` until there are enough.
    pub fn recent_misses(&self, z: f64) -> Option<Vec<f64>> {
        self.misses(self.chosen(), z)
    }

    /// Method `i`'s recent errors at the horizon, sorted, less the lag behind a trend that
    /// has ended at the bound's `z`; `None` until there are enough.
    pub(super) fn misses(&self, i: usize, z: f64) -> Option<Vec<f64>> {
        let sorted = self.errors_sorted(i)?;
        let ended = self.ended_bias(i, &sorted, z);
        Some(sorted.into_iter().map(|e| e - ended).collect())
    }

    /// The forecast's point `h` steps ahead, without its bound, at most the ceiling of a
    /// burst like those before it (`excursion_ceiling`).
    pub fn point(&self, h: usize) -> Option<f64> {
        self.chosen_point(h)
            .map(|(_, p)| self.under_ceiling(p).max(0.0))
    }

    /// The forecast `h` steps ahead, with an upper bound `z` error deviations above, both at
    /// most the ceiling of a burst like those before it (`excursion_ceiling`); `None` before
    /// the first value.
    pub fn forecast(&self, h: usize, z: f64) -> Option<SignalForecast> {
        let free = self.forecast_without_ceiling(h, z)?;
        Some(match self.excursion_ceiling() {
            Some(c) => SignalForecast {
                point: free.point.min(c.level),
                upper: free.upper.min(c.level),
                method: free.method,
            },
            None => free,
        })
    }

    /// The ceiling of the burst under way, where it lowers the forecast `h` steps ahead at
    /// `z` (its point or bound, or the last value's bound) below what it would be without.
    pub fn ceiling_lowers(&self, h: usize, z: f64) -> Option<ExcursionCeiling> {
        let ceiling = self.excursion_ceiling()?;
        let free = self.forecast_without_ceiling(h, z)?;
        let last_values = self.last_values_bound(z).unwrap_or(f64::NEG_INFINITY);
        (free.upper.max(free.point).max(last_values) > ceiling.level).then_some(ceiling)
    }

    fn forecast_without_ceiling(&self, h: usize, z: f64) -> Option<SignalForecast> {
        let last = *self.history.back()?;
        let (i, point) = self.chosen_point(h)?;
        // The bound comes from this forecaster's own recent errors at the horizon: the
        // empirical quantile of (truth - forecast) matching z, so a method that has been
        // wrong lately buys more headroom, and one that errs high on a fall still going on
        // buys none; less the lag behind a rise or the overshoot of a fall that has ended
        // (`ended_bias`).
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
                upper: forecast.upper.max(self.under_ceiling(last + rise)),
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
        let bound = self.under_ceiling(self.last_values_bound(z)?);
        Some(SignalForecast {
            upper: forecast.upper.max(bound),
            ..forecast
        })
    }

    /// The forecast `h` steps ahead with its early bound paced by the latest interval's
    /// halves, where every step the early pace is read from rose and the halves, net of
    /// their counting scatter at the bound's odds, rise faster still: a ramp gathering pace
    /// from a trough shows it within an interval a minute before it shows between
    /// intervals. `None` once the bound is measured, or where the halves show no steeper
    /// pace.
    pub fn with_within_pace(&self, h: usize, z: f64) -> Option<SignalForecast> {
        if self.history.len() < 2 || self.bound_measured() {
            return None;
        }
        let (rise, noise) = self.within?;
        if !self.recent_changes(1).iter().all(|&step| step >= 0.0) {
            return None;
        }
        let z = z.max(0.0);
        let forecast = self.forecast(h, z)?;
        let upper = self
            .under_ceiling(forecast.point + z * beyond_scatter(rise, z * noise) * h.max(1) as f64);
        (upper > forecast.upper).then_some(SignalForecast { upper, ..forecast })
    }

    /// The last value and the quantile at `z` of its misses at the horizon, beyond the
    /// counting scatter; `None` before they are measured.
    fn last_values_bound(&self, z: f64) -> Option<f64> {
        let last = *self.history.back()?;
        let misses = self.misses(CONSTANT, z)?;
        let margin = empirical_quantile(&misses, standard_normal_cdf(z));
        Some(last + beyond_scatter(margin, z.max(0.0) * self.noise))
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
    /// the errors' quantile, whose spread about their mean stays. A fall is read the same
    /// way, mirrored: errors that average below zero say the method overshot a falling
    /// load, and kept whole they would pin the bound to the point at the trough, when the
    /// load may turn; only as much of them as a fall still going on explains (the larger,
    /// nearer zero, of the same two readings) is kept. A load that swings both ways leaves
    /// errors that average near zero, and nothing to take off. The errors' bias is their
    /// mean or their median, whichever is nearer zero (none where the two disagree in
    /// sign): a trend moves every error of the window, where the end of a burst or a crowd
    /// leaves a few far out and the rest about zero, and those few are not a trend's.
    /// `errors` are sorted.
    fn ended_bias(&self, i: usize, errors: &[f64], z: f64) -> f64 {
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let median = empirical_quantile(errors, 0.5);
        let bias = if mean > 0.0 {
            mean.min(median).max(0.0)
        } else {
            mean.max(median).min(0.0)
        };
        if bias == 0.0 {
            return 0.0;
        }
        let (Some(&last), Some(&rise)) = (self.history.back(), self.recent_changes(RUN).first())
        else {
            return 0.0;
        };
        let Some((one_step_mean, one_step_scatter)) = self.run_mean(i) else {
            return 0.0;
        };
        let z = z.max(0.0);
        let h = self.horizon.max(1);
        // The rise between two sampled values scatters by the noise of both.
        let pace = (rise + z * self.noise * 2f64.sqrt()) / RUN as f64;
        let gap_at_pace = last + pace * h as f64 - self.candidate(i, h);
        let one_step_pace = one_step_mean + z * one_step_scatter;
        let lag = gap_at_pace.max(one_step_pace * h as f64);
        bias - lag.clamp(bias.min(0.0), bias.max(0.0))
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
pub(super) fn beyond_scatter(x: f64, scatter: f64) -> f64 {
    (x.max(0.0).powi(2) - scatter.powi(2)).max(0.0).sqrt()
}
