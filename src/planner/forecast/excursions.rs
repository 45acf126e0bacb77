//! The load's excursions: jumps up it has come back from, the peak it keeps coming back
//! to, which capacity is kept for in between when bursts are shorter than a cold start, and
//! the ceiling of a burst under way that is like those before it.

use super::*;

/// A jump up the load has not come back from yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Excursion {
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

/// The most the forecast asks for while the load is on a burst like those before it
/// (`SignalForecaster::excursion_ceiling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExcursionCeiling {
    /// The highest peak of the excursions kept, and the counting noise's allowance.
    pub level: f64,
    /// The excursions kept it was read from.
    pub excursions: usize,
}

/// Excursions kept before one under way is taken to be like them: as many as make a peak
/// recurring (`SignalForecaster::recurring_peak`). After one alone, a second may be larger.
const LIKE_THOSE_BEFORE: usize = 2;

impl SignalForecaster {
    /// While the load is on an excursion that has not passed the highest peak of the two or
    /// more it came back from before, that peak: the forecast asks for no more (`forecast`,
    /// `point`). A burst's onset, read as a trend, is carried far past where bursts like it
    /// ended: a minute's rise from 10 to 30 req/s asked for 97 two minutes on, where the
    /// bursts before had topped out at 41, and the replicas ordered for it came as the burst
    /// ended. Bursts the deployment met count as well as those it missed: on a load that is
    /// on at 25 req/s for five minutes in every ten and off between, every one met, the
    /// bound on each came from the errors of the turns on and off and asked for 32 to 42
    /// req/s, where the load never passed 26.
    /// The peak is allowed `LEVEL_SHIFT` deviations of the latest value's counting noise, as
    /// a jump is read: a burst as high as the last reads a little higher or lower. One that
    /// passes them is not like them, and is forecast as any rise.
    pub fn excursion_ceiling(&self) -> Option<ExcursionCeiling> {
        let under_way = self.excursion?;
        if self.peaks.len() < LIKE_THOSE_BEFORE {
            return None;
        }
        let top = self.peaks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let level = top + LEVEL_SHIFT * self.noise;
        (under_way.peak <= level).then_some(ExcursionCeiling {
            level,
            excursions: self.peaks.len(),
        })
    }

    /// `x`, at most the excursion's ceiling when there is one (`excursion_ceiling`).
    pub(crate) fn under_ceiling(&self, x: f64) -> f64 {
        self.excursion_ceiling().map_or(x, |c| x.min(c.level))
    }

    /// Follows the load's excursions (`y` is the newest value, already in the history). One
    /// starts with a step up larger than the load's usual step by as much as a new level's
    /// (`LEVEL_SHIFT` median steps: one excursion's steps would swell a mean), and ends when
    /// the load is back below halfway between where it left and its peak. Its peak is noted
    /// for the ceiling of the next (`peaks`), and it is kept for the recurring peak when the
    /// SLA was missed during it (`note_missed`), or when it came at least halfway up to the
    /// peak of one that was: once capacity is kept for such peaks they are met, and they
    /// recur all the same.
    pub(super) fn track_excursion(&mut self, y: f64) {
        let missed = std::mem::take(&mut self.missed);
        let Some(&last) = self.history.iter().rev().nth(1) else {
            return;
        };
        match self.excursion {
            Some(e) if y <= (e.from + e.peak) / 2.0 => {
                self.excursion = None;
                keep_recent(&mut self.peaks, e.peak);
                let needed = e.missed
                    || missed
                    || self
                        .excursions
                        .iter()
                        .any(|&(_, p)| e.peak >= (e.from + p) / 2.0);
                if needed {
                    keep_recent(&mut self.excursions, (self.ticks, e.peak));
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
}

/// Appends `item`, dropping the oldest past `EXCURSIONS_KEPT`.
fn keep_recent<T>(kept: &mut VecDeque<T>, item: T) {
    kept.push_back(item);
    if kept.len() > EXCURSIONS_KEPT {
        kept.pop_front();
    }
}
