//! The robust fit every correction is learned by: a Huber loss of log-ratios of observed
//! against expected latency, minimised with `argmin`'s Brent method.

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::brent::BrentOpt;

use super::Evidence;

/// Huber loss of log-ratios: quadratic near zero, linear for outliers (a burst, a restart).
struct LogHuberFit<'a, F: Fn(usize, &Evidence, f64) -> Option<(f64, f64)>> {
    evidence: &'a [Evidence],
    /// `(expected, observed)` for the `i`th piece of evidence under a trial value; `None`
    /// skips it.
    expected: F,
    /// The value the weak prior pulls towards.
    prior: f64,
}

impl<F: Fn(usize, &Evidence, f64) -> Option<(f64, f64)>> CostFunction for LogHuberFit<'_, F> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, k: &f64) -> Result<f64, ArgminError> {
        const DELTA: f64 = 0.3;
        // The largest shortfall counted, in log space: what an expectation past capacity
        // (infinite, where the observation was finite) costs. A finite expectation far
        // above the observation costs no more, or the cost would fall where the model
        // passes capacity and the fit would find a false minimum there: one minute on one
        // prefill engine at 83% load, its mean TTFT 15% under the model's, was fitted as
        // engines 1.69 times slower than the profile (the minimum of the model's 1.69,
        // just past capacity), not 0.93.
        const MAX_SHORTFALL: f64 = 3.0;
        let mut total = 0.0;
        let mut weight = 0.0;
        for (i, e) in self.evidence.iter().enumerate() {
            let Some((exp, obs)) = (self.expected)(i, e, *k) else {
                continue;
            };
            let r = if exp.is_finite() && exp > 0.0 {
                (obs / exp).ln().max(-MAX_SHORTFALL)
            } else {
                -MAX_SHORTFALL
            };
            let a = r.abs();
            total += e.weight
                * if a <= DELTA {
                    0.5 * r * r
                } else {
                    DELTA * (a - 0.5 * DELTA)
                };
            weight += e.weight;
        }
        // A weak pull towards the prior keeps the fit defined when the evidence says little.
        let scale = weight.max(1.0);
        Ok(total / scale + 0.002 * (k / self.prior).ln().powi(2))
    }
}

/// Fits the value `k` in `[lo, hi]` that makes `expected(i, evidence[i], k)` match the
/// observations, robustly in log space.
pub fn fit_correction<F: Fn(usize, &Evidence, f64) -> Option<(f64, f64)>>(
    evidence: &[Evidence],
    lo: f64,
    hi: f64,
    prior: f64,
    expected: F,
) -> Option<f64> {
    if evidence.is_empty() {
        return None;
    }
    let problem = LogHuberFit {
        evidence,
        expected,
        prior,
    };
    // Corrections are smoothed and bounded: a relative precision of 1e-4 is plenty.
    let solver = BrentOpt::new(lo, hi).set_tolerance(1e-4, 1e-6);
    let res = Executor::new(problem, solver)
        .configure(|s| s.max_iters(60))
        .timer(false)
        .run()
        .ok()?;
    res.state().best_param.filter(|k| k.is_finite())
}
