//! Harmonic regression: a load as its level plus one sinusoid, fitted by least squares to
//! the last values, the period found by the fit.
//!
//! Holt-Winters and the seasonal forecaster need the period from autocorrelation, which
//! wants two whole periods of history; a sinusoid is pinned down by one. On Dynamo's
//! benchmark (a 600 s period in one-minute steps) the fit finds the period after eleven
//! values, where autocorrelation finds it after twenty-two. It competes under `auto` like
//! every forecaster, by its errors at the horizon; it only forecasts at all when the fit
//! explains most of the window's variance with a period seen whole inside it.

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::brent::BrentOpt;

/// Values the fit looks at: the periods it can find are at most this many steps.
pub const WINDOW: usize = 48;
/// Fewest values fitted: fewer cannot show a whole period of at least `SHORTEST_PERIOD`
/// steps with an interior best fit.
pub const MIN_POINTS: usize = 6;
/// Shortest period, in steps: with fewer samples per period a sinusoid is aliased.
const SHORTEST_PERIOD: f64 = 4.0;
/// Share of the window's variance the sinusoid must explain before it forecasts. A
/// sinusoidal load with its arrivals' counting scatter is explained 98% and more (99.9% at
/// 5-45 req/s, 98% at 0.2-2 req/s in one-minute steps); one rise and fall on a flat base,
/// which has the shape of one period, 91-96%, and at 90% its return was forecast.
const EXPLAINS: f64 = 0.97;

/// A fitted level and sinusoid, time counted in steps from the last value fitted (t = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Harmonic {
    /// Angular frequency, radians per step.
    pub omega: f64,
    level: f64,
    sine: f64,
    cosine: f64,
}

impl Harmonic {
    /// The period in steps.
    pub fn period(&self) -> f64 {
        std::f64::consts::TAU / self.omega
    }

    /// The value `h` steps after the last one fitted.
    pub fn forecast(&self, h: f64) -> f64 {
        let (s, c) = (self.omega * h).sin_cos();
        self.level + self.sine * s + self.cosine * c
    }

    /// The grid step of the period search over a window of `m` values: half the width of a
    /// fit's valley in frequency (a period more or less over the window), so the grid lands
    /// in the valley and the refinement need look no further than one step either side.
    pub fn search_step(m: usize) -> f64 {
        std::f64::consts::PI / m as f64
    }
}

/// A least-squares fit and how well it fits.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    pub harmonic: Harmonic,
    /// Residual sum of squares.
    pub rss: f64,
    /// Sum of squares about the values' mean.
    pub total: f64,
}

impl Fit {
    /// Whether the sinusoid explains `EXPLAINS` of the variance or more.
    fn explains_enough(&self) -> bool {
        self.total > 0.0 && 1.0 - self.rss / self.total >= EXPLAINS
    }
}

/// The least-squares level and sinusoid at frequency `omega` through `ys` (the last value at
/// t = 0); `None` when the frequency cannot be told from a constant over these points.
pub fn fit_at(ys: &[f64], omega: f64) -> Option<Fit> {
    let m = ys.len();
    if m < 3 || !omega.is_finite() {
        return None;
    }
    let mean = ys.iter().sum::<f64>() / m as f64;
    // Normal equations of y - mean on (1, sin, cos), sines and cosines stepped by rotation.
    let (step_s, step_c) = omega.sin_cos();
    let (mut s, mut c) = (-(omega * (m - 1) as f64)).sin_cos();
    let (mut sum_s, mut sum_c, mut sum_ss, mut sum_sc, mut sum_cc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_sy, mut sum_cy, mut total) = (0.0, 0.0, 0.0);
    for &y in ys {
        let d = y - mean;
        sum_s += s;
        sum_c += c;
        sum_ss += s * s;
        sum_sc += s * c;
        sum_cc += c * c;
        sum_sy += s * d;
        sum_cy += c * d;
        total += d * d;
        (s, c) = (s * step_c + c * step_s, c * step_c - s * step_s);
    }
    // The values are centred, so their sum is 0.
    let a = [
        [m as f64, sum_s, sum_c],
        [sum_s, sum_ss, sum_sc],
        [sum_c, sum_sc, sum_cc],
    ];
    let b = [0.0, sum_sy, sum_cy];
    let coef = solve3(a, b)?;
    let rss = (total - coef.iter().zip(&b).map(|(k, v)| k * v).sum::<f64>()).max(0.0);
    Some(Fit {
        harmonic: Harmonic {
            omega,
            level: mean + coef[0],
            sine: coef[1],
            cosine: coef[2],
        },
        rss,
        total,
    })
}

/// The sinusoid that best fits `ys`, when one does: its period a whole one or more within
/// the values and `SHORTEST_PERIOD` steps or more, the best fit not at the longest period
/// searched (a load still rising fits best at the longest period allowed, and that is no
/// period), and explaining `EXPLAINS` of the variance or more. The period is searched on a
/// grid, then refined by Brent's method within a grid step of the best.
pub fn find(ys: &[f64]) -> Option<Harmonic> {
    let m = ys.len();
    if m < MIN_POINTS {
        return None;
    }
    // A flat series has no period: spare it the search (a synthetic load's lengths).
    let mean = ys.iter().sum::<f64>() / m as f64;
    let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    if !total.is_finite() || total <= 1e-12 * (1.0 + mean * mean) {
        return None;
    }
    let lo = std::f64::consts::TAU / m as f64;
    let hi = std::f64::consts::TAU / SHORTEST_PERIOD;
    let step = Harmonic::search_step(m);
    let mut best: Option<(f64, f64)> = None;
    let mut omega = lo;
    while omega <= hi + 1e-12 {
        if let Some(fit) = fit_at(ys, omega) {
            if best.is_none_or(|(_, r)| fit.rss < r) {
                best = Some((omega, fit.rss));
            }
        }
        omega += step;
    }
    let (coarse, _) = best?;
    let refined = refine(ys, (coarse - step).max(lo), (coarse + step).min(hi)).unwrap_or(coarse);
    if refined < lo + step / 8.0 {
        return None;
    }
    let fit = fit_at(ys, refined)?;
    fit.explains_enough().then_some(fit.harmonic)
}

/// The fit at a known frequency, when it still explains enough of the variance.
pub fn refit(ys: &[f64], omega: f64) -> Option<Harmonic> {
    let m = ys.len();
    if m < MIN_POINTS || std::f64::consts::TAU / omega > m as f64 + 1e-9 {
        return None;
    }
    let fit = fit_at(ys, omega)?;
    fit.explains_enough().then_some(fit.harmonic)
}

struct Residual<'a> {
    ys: &'a [f64],
}

impl CostFunction for Residual<'_> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, omega: &f64) -> Result<f64, ArgminError> {
        Ok(fit_at(self.ys, *omega).map_or(f64::INFINITY, |fit| fit.rss))
    }
}

fn refine(ys: &[f64], lo: f64, hi: f64) -> Option<f64> {
    let solver = BrentOpt::new(lo, hi).set_tolerance(1e-6, 1e-9);
    let res = Executor::new(Residual { ys }, solver)
        .configure(|s| s.max_iters(40))
        .timer(false)
        .run()
        .ok()?;
    res.state().best_param.filter(|w| w.is_finite())
}

/// Solves a 3x3 system by Cramer's rule; `None` when it is singular (a frequency that
/// samples as a constant, such as a period of two steps).
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = det3(a);
    let scale = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    if !det.is_finite() || det.abs() <= 1e-10 * scale.powi(3) {
        return None;
    }
    let with_column = |k: usize| {
        let mut m = a;
        for (row, v) in m.iter_mut().zip(b) {
            row[k] = v;
        }
        det3(m) / det
    };
    Some([with_column(0), with_column(1), with_column(2)])
}

fn det3(m: [[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize, period: f64, phase: f64) -> Vec<f64> {
        (0..n)
            .map(|i| 25.0 + 20.0 * (std::f64::consts::TAU * i as f64 / period + phase).sin())
            .collect()
    }

    #[test]
    fn a_sinusoid_is_found_from_a_period_and_a_little_and_forecast() {
        // (values seen, period, phase): Dynamo's benchmark in one-minute steps starts at
        // its minimum; other phases and periods alike.
        for (n, period, phase) in [
            (11, 10.0, -std::f64::consts::FRAC_PI_2),
            (12, 10.0, 0.3),
            (20, 16.5, 1.0),
            (48, 7.0, 2.0),
        ] {
            let ys = wave(n, period, phase);
            let fit = find(&ys).unwrap_or_else(|| panic!("no fit for period {period} at {n}"));
            assert!((fit.period() - period).abs() < 0.05, "{period}: {fit:?}");
            let truth = wave(n + 3, period, phase)[n + 2];
            assert!((fit.forecast(3.0) - truth).abs() < 0.5, "{period}: {fit:?}");
        }
    }

    #[test]
    fn no_sinusoid_is_read_into_less_than_a_period_a_ramp_a_step_or_noise() {
        let ramp: Vec<f64> = (0..30).map(|i| 5.0 + i as f64).collect();
        let step: Vec<f64> = (0..30).map(|i| if i < 15 { 10.0 } else { 30.0 }).collect();
        // A fixed scramble: values with no order in time.
        let noise: Vec<f64> = (0..40).map(|i| ((i * 37 + 11) % 23) as f64).collect();
        let flat = vec![12.0; 20];
        for (what, ys) in [
            ("nine values of a period of ten", wave(9, 10.0, 0.0)),
            ("a ramp", ramp),
            ("a step", step),
            ("noise", noise),
            ("a constant", flat),
        ] {
            assert_eq!(find(&ys), None, "{what}");
        }
    }

    /// Arrivals a minute at `lo`-`hi` req/s on a ten-minute period from its minimum, with
    /// a fixed scatter of up to a count's Poisson standard deviation.
    fn counted_wave(n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let rate =
                    lo + (hi - lo) * (1.0 - (std::f64::consts::TAU * i as f64 / 10.0).cos()) / 2.0;
                let count = 60.0 * rate;
                let scatter = ((i * 37 + 11) % 23) as f64 / 11.0 - 1.0;
                count + scatter * count.sqrt()
            })
            .collect()
    }

    #[test]
    fn a_pulse_on_a_flat_base_is_no_period_where_a_counted_sinusoid_is_one() {
        // The real-time ramp of `simulations/e2e-ramp.yaml` in 10 s steps: 3 req/s, a ramp
        // to 40 over three steps, held five, back to 3 over two. One rise and fall is the
        // shape of one period; a least-squares sinusoid explains 91-96% of it.
        let pulse = [
            3.0, 3.0, 3.0, 9.2, 21.5, 33.8, 40.0, 40.0, 40.0, 40.0, 40.0, 30.8, 12.3, 3.0, 3.0,
            3.0, 3.0, 3.0, 3.0, 3.0,
        ];
        for n in 11..=pulse.len() {
            assert_eq!(find(&pulse[..n]), None, "the pulse's first {n} values");
        }
        // Sinusoids with their counting scatter are still found, the lightest explained 98%.
        for (lo, hi) in [(5.0, 45.0), (0.2, 2.0)] {
            for n in [11, 20, 30] {
                let fit = find(&counted_wave(n, lo, hi))
                    .unwrap_or_else(|| panic!("{lo}-{hi} req/s, {n} values: no fit"));
                assert!((fit.period() - 10.0).abs() < 0.3, "{lo}-{hi}, {n}: {fit:?}");
            }
        }
    }

    #[test]
    fn a_refit_keeps_the_period_while_it_explains_the_load() {
        let ys = wave(30, 10.0, 0.0);
        let fit = find(&ys).unwrap();
        let again = refit(&wave(31, 10.0, 0.0), fit.omega).unwrap();
        assert_eq!(again.omega, fit.omega);
        assert!((again.forecast(0.0) - wave(31, 10.0, 0.0)[30]).abs() < 0.05);
        let level: Vec<f64> = vec![20.0; 30];
        assert_eq!(refit(&level, fit.omega), None);
    }
}
