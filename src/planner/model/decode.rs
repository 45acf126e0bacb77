//! Decode: the batch Little's law gives at a load, the ITL the profile gives at that batch,
//! and the stretch aggregated workers' prefill adds.

use serde::{Deserialize, Serialize};

use super::normal_quantile;
use crate::profile::{DecodeModel, ItlAtContext};

/// Deviations of the Poisson batch above its mean that give the ITL `quantile` of requests:
/// a request's ITL averages the batch over its own lifetime, which has 2/3 of the variance
/// of the batch at one instant (M/D/inf, window = service time).
pub fn itl_batch_z(quantile: f64) -> f64 {
    normal_quantile(quantile) * (2.0f64 / 3.0).sqrt()
}

/// How much an aggregated worker's decode steps stretch for a request: its steps share the
/// worker with the prompts prefilled while it decodes, `1 / (1 - u)` for a share `u` of the
/// worker's time. The share is the mean (`lambda_per_worker` prompts a second of
/// `service_ms` each) plus `z` deviations of the prompts that arrive in the request's
/// lifetime of `life_s` (Poisson: a short life sees a wide swing). Infinite at or past a
/// whole worker.
pub fn interleaved_stretch(lambda_per_worker: f64, service_ms: f64, life_s: f64, z: f64) -> f64 {
    let service_s = service_ms / 1000.0;
    let mean = lambda_per_worker * service_s;
    let swing = if life_s > 0.0 && lambda_per_worker > 0.0 {
        z.max(0.0) * service_s * (lambda_per_worker / life_s).sqrt()
    } else {
        0.0
    };
    let u = mean + swing;
    if u < 1.0 {
        1.0 / (1.0 - u)
    } else {
        f64::INFINITY
    }
}

/// How the frontend sends prompts to aggregated workers (Dynamo's `--router-mode`): it sets
/// how many land on a worker while it decodes, and so how much they stretch its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Router {
    /// In turn (Dynamo's default): every worker takes every `workers`-th prompt, busy or
    /// not.
    #[default]
    RoundRobin,
    /// At random: every worker takes its share of the prompts, busy or not.
    Random,
    /// To the least loaded worker (Dynamo's KV router weighs each worker's active blocks,
    /// as the simulator's router weighs its queue and reservations): a prompt joins a busy
    /// worker only when none is idle. Dynamo's `least-loaded` mode (the fewest requests in
    /// flight) does the same, and is read as this.
    #[serde(alias = "least-loaded")]
    Kv,
}

impl Router {
    /// The rate at which prompts land on one worker decoding a request, of `lambda` a
    /// second over `workers`, over the request's time on the worker (its prefill and its
    /// life of `life_s`). At random, a worker's share. In turn, the worker that took the
    /// request takes the next prompt `workers` arrivals later: of the `N` arrivals (Poisson,
    /// at `lambda` times that time) it takes `floor(N / workers)`, the share less the
    /// partial turn, and none while fewer than `workers` come. To the least loaded, only
    /// when no worker is idle: with requests in flight spread evenly, when the others in
    /// flight fill the other `workers - 1`; then it is one of `workers`.
    pub fn landing_rate(self, lambda: f64, workers: u32, life_s: f64, service_ms: f64) -> f64 {
        let w = workers.max(1);
        let share = lambda / f64::from(w);
        let on_worker_s = life_s + service_ms / 1000.0;
        match self {
            Router::Random => share,
            Router::RoundRobin if on_worker_s > 0.0 => {
                poisson_floor_mean(lambda * on_worker_s, w) / on_worker_s
            }
            Router::RoundRobin => share,
            Router::Kv => share * poisson_at_least(lambda * on_worker_s, w - 1),
        }
    }
}

/// `E[floor(N / k)]` for `N` Poisson with mean `mean`: summed over the terms within twelve
/// standard deviations of the mode (from ratios of neighbouring terms, so nothing
/// underflows); beyond, they add less than 1e-30 of the whole. At most `mean / k`. Where
/// the standard deviation is many times `k`, `N mod k` is as good as uniform, and the mean
/// is `(mean - (k - 1) / 2) / k` without the sum.
fn poisson_floor_mean(mean: f64, k: u32) -> f64 {
    let k = f64::from(k.max(1));
    if !mean.is_finite() {
        return mean;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    if mean.sqrt() > UNIFORM_REMAINDER_SPREAD * k {
        return (mean - (k - 1.0) / 2.0) / k;
    }
    let mode = mean.floor();
    let reach = (12.0 * mean.sqrt()).ceil() + 12.0;
    let (mut weight, mut weighted) = (1.0, (mode / k).floor());
    let mut term = 1.0;
    let mut j = mode;
    while j > 0.0 && j > mode - reach {
        term *= j / mean;
        j -= 1.0;
        weight += term;
        weighted += term * (j / k).floor();
    }
    let (mut term, mut j) = (1.0, mode);
    while j < mode + reach {
        j += 1.0;
        term *= mean / j;
        weight += term;
        weighted += term * (j / k).floor();
    }
    (weighted / weight).min(mean / k)
}

/// Standard deviations of a Poisson count, in multiples of `k`, past which its remainder
/// modulo `k` is taken as uniform (`poisson_floor_mean`): the remainder's departure from
/// uniform falls as `exp(-2 (pi sd / k)^2)`, below 1e-300 here.
const UNIFORM_REMAINDER_SPREAD: f64 = 10.0;

/// `P(N >= k)` for `N` Poisson with mean `mean`.
fn poisson_at_least(mean: f64, k: u32) -> f64 {
    if k == 0 || !mean.is_finite() {
        return 1.0;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    // Summed in logs: e^-mean underflows for a mean of a few hundred.
    let mut log_term = -mean;
    let mut below = 0.0;
    for i in 0..k {
        if i > 0 {
            log_term += mean.ln() - f64::from(i).ln();
        }
        below += log_term.exp();
    }
    (1.0 - below).clamp(0.0, 1.0)
}

/// What is learned of decode engines against their profile: `speed` multiplies the
/// profile's ITL; `context` multiplies the KV a request in flight holds, against the
/// `ISL + OSL / 2` a request of the mean lengths holds on average. Requests in flight are
/// the long ones more often than arrivals are (a request of twice the output is in flight
/// twice as long), so with outputs of varied length the batch holds more KV than the mean
/// lengths say: with a coefficient of variation `cv` of the output, about
/// `ISL + (1 + cv^2) OSL / 2`, and a prefix cache makes it less.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeCorrection {
    pub speed: f64,
    pub context: f64,
}

impl DecodeCorrection {
    /// A speed with the mean lengths' context.
    pub fn at_speed(speed: f64) -> DecodeCorrection {
        DecodeCorrection {
            speed,
            context: 1.0,
        }
    }

    /// The mean KV tokens a request in flight holds.
    pub fn context(&self, isl: f64, osl: f64) -> f64 {
        (isl + osl / 2.0) * self.context
    }

    /// The KV tokens reserved per request in flight (input and output).
    fn reservation(&self, isl: f64, osl: f64) -> f64 {
        (isl + osl) * self.context
    }
}

/// Decode latency at a load: the ITL the batch size at `batch_quantile_z` deviations above
/// its mean gives, and the mean batch size per engine. `None` when no batch size is stable
/// (the engines cannot keep up) or the KV cache cannot hold it.
#[allow(clippy::too_many_arguments)] // each is a distinct quantity of the load or the model
pub fn decode_itl_ms(
    model: &DecodeModel,
    correction: DecodeCorrection,
    lambda: f64,
    engines: u32,
    isl: f64,
    osl: f64,
    batch_quantile_z: f64,
    kv_fraction: f64,
) -> Option<(f64, f64)> {
    decode_itl_within(
        model,
        correction,
        lambda,
        engines,
        isl,
        osl,
        batch_quantile_z,
        kv_fraction,
        f64::INFINITY,
    )
}

/// The ITL a request sees at `n` mean requests per engine: at the batch `batch_quantile_z`
/// deviations above it; `None` when the KV cache cannot hold that batch.
pub fn decode_itl_at_batch(
    model: &DecodeModel,
    correction: DecodeCorrection,
    n: f64,
    isl: f64,
    osl: f64,
    batch_quantile_z: f64,
    kv_fraction: f64,
) -> Option<f64> {
    ItlAtBatches::new(model, correction, isl, osl).at(n, batch_quantile_z, kv_fraction)
}

/// A decode engine's ITL by its batch, at one correction and pair of mean lengths: the
/// profile's curve at the requests' context and the KV each reserves, found once for the
/// many batches a fixed point, a search or a fit reads (the mean batch below, `at`,
/// `largest_batch_within`).
#[derive(Debug, Clone, Copy)]
pub struct ItlAtBatches<'a> {
    curve: ItlAtContext<'a>,
    speed: f64,
    /// Output tokens per request.
    osl: f64,
    /// KV tokens a request in flight holds, on average.
    context: f64,
    /// KV tokens a request reserves (input and output).
    reservation: f64,
    max_kv: f64,
}

impl<'a> ItlAtBatches<'a> {
    pub fn new(model: &'a DecodeModel, correction: DecodeCorrection, isl: f64, osl: f64) -> Self {
        let context = correction.context(isl, osl);
        ItlAtBatches {
            curve: model.at_context(context.max(1.0)),
            speed: correction.speed,
            osl,
            context,
            reservation: correction.reservation(isl, osl),
            max_kv: model.max_kv_tokens(),
        }
    }

    /// The ITL at the batch `batch_quantile_z` deviations above a mean of `n`; `None` when
    /// its reservations pass `kv_fraction` of the KV cache.
    pub fn at(&self, n: f64, batch_quantile_z: f64, kv_fraction: f64) -> Option<f64> {
        let high = n + batch_quantile_z * n.sqrt();
        // Reservations are input + output per request; keep them within the usable KV.
        if high * self.reservation > self.max_kv * kv_fraction {
            return None;
        }
        // A batch of at least one request, whose contexts fill the KV cache in proportion.
        let kv = high.max(1.0) * self.context / self.max_kv;
        Some(self.speed * self.curve.itl_ms(kv))
    }
}

/// The largest batch per engine whose ITL is within `limit_ms` and whose reservations fit
/// the usable KV; `None` when a batch of one is not. The ITL is the profile's straight line
/// between measured KV usages, so where it crosses the limit is found on the piece it
/// crosses in, exactly. A curve that never reaches the limit is capped at `MOST_BATCH`.
pub fn largest_batch_within(
    model: &DecodeModel,
    correction: DecodeCorrection,
    isl: f64,
    osl: f64,
    limit_ms: f64,
    kv_fraction: f64,
) -> Option<f64> {
    let batches = ItlAtBatches::new(model, correction, isl, osl);
    let ItlAtBatches {
        curve,
        context,
        max_kv,
        ..
    } = batches;
    let fits = max_kv * kv_fraction / batches.reservation;
    let itl_at = |kv: f64| batches.speed * curve.itl_ms(kv);
    let (mut kv, mut itl) = (context / max_kv, itl_at(context / max_kv));
    if fits < 1.0 || itl > limit_ms {
        return None;
    }
    let crossing_kv = loop {
        let Some(next_kv) = curve.next_point(kv) else {
            // Past the last measured point, one line: its slope from a second point on it.
            let far = 2.0 * kv;
            let far_itl = itl_at(far);
            break if far_itl > itl {
                kv + (limit_ms - itl) * (far - kv) / (far_itl - itl)
            } else {
                f64::INFINITY
            };
        };
        let next_itl = itl_at(next_kv);
        if next_itl > limit_ms {
            break kv + (limit_ms - itl) * (next_kv - kv) / (next_itl - itl);
        }
        (kv, itl) = (next_kv, next_itl);
    };
    Some((crossing_kv * max_kv / context).min(fits).min(MOST_BATCH))
}

/// A batch past any engine's: where the ITL never reaches its limit and the KV never fills.
const MOST_BATCH: f64 = 1e9;

/// Mean requests in one decode engine's batch (Little's law at the ITL that batch gives);
/// `None` without engines or when no batch size is stable (they cannot keep up).
pub fn decode_mean_batch(
    model: &DecodeModel,
    correction: DecodeCorrection,
    lambda: f64,
    engines: u32,
    isl: f64,
    osl: f64,
) -> Option<f64> {
    ItlAtBatches::new(model, correction, isl, osl).mean_batch(lambda, engines)
}

impl ItlAtBatches<'_> {
    /// `decode_mean_batch` on this curve.
    pub fn mean_batch(&self, lambda: f64, engines: u32) -> Option<f64> {
        self.mean_batch_unless(lambda, engines, |_, _| false)
    }

    /// `mean_batch`, given up (`None`) as soon as `hopeless(n, itl_ms)` holds for a batch
    /// `n` below the fixed point and the corrected ITL at it. The profile's ITL never falls
    /// as the batch grows, so a bound crossed below the fixed point is crossed at it too: a
    /// search for the fewest engines stops solving a count that cannot do as soon as that
    /// shows.
    fn mean_batch_unless(
        &self,
        lambda: f64,
        engines: u32,
        hopeless: impl Fn(f64, f64) -> bool,
    ) -> Option<f64> {
        if engines == 0 {
            return None;
        }
        let per_engine = lambda / engines as f64;
        if per_engine <= 0.0 {
            return Some(0.0);
        }
        let ItlAtBatches {
            curve,
            speed,
            osl,
            context,
            reservation,
            max_kv,
        } = *self;
        // Fixed point n = g(n) = per_engine * osl * itl(n) / 1000. The profile's ITL is a
        // straight line between measured KV usages (and flat below one request), so g is too:
        // from n = 0, where g is above n, each straight piece is tried in turn and the first
        // that crosses n holds the fixed point, found exactly. Where none does, g's last line
        // rises as fast as n or faster: the engine cannot keep up.
        let tokens_per_request = (osl - 1.0).max(0.0);
        let kv_of = |n: f64| n.max(1.0) * context / max_kv;
        let mut walk = curve.walk();
        let mut g = |kv: f64| {
            let itl = speed * walk.itl_ms(kv);
            (per_engine * tokens_per_request * itl / 1000.0, itl)
        };
        // Past this many requests an engine's batch reserves four times its KV: diverging.
        let too_many = |n: f64| n * reservation > max_kv * 4.0;
        let (lone, lone_itl) = g(kv_of(0.0));
        if hopeless(0.0, lone_itl) {
            return None;
        }
        // Below one request the ITL is a lone request's.
        if lone <= 1.0 {
            return Some(lone);
        }
        let (mut n, mut kv, mut above) = (1.0, kv_of(1.0), lone - 1.0);
        let root = loop {
            let Some(next_kv) = curve.next_point(kv) else {
                // One line from here on: its slope from a second point on it.
                let far = 2.0 * n;
                let (g_far, _) = g(kv_of(far));
                let above_far = g_far - far;
                if above_far >= above {
                    return None;
                }
                break n + above * (far - n) / (above - above_far);
            };
            let next = next_kv * max_kv / context;
            let (g_next, itl_next) = g(next_kv);
            let above_next = g_next - next;
            if above_next <= 0.0 {
                break n + above * (next - n) / (above - above_next);
            }
            // A batch below the fixed point: what is hopeless here is hopeless there.
            if hopeless(next, itl_next) || too_many(next) {
                return None;
            }
            (n, kv, above) = (next, next_kv, above_next);
        };
        let (_, itl) = g(kv_of(root));
        if hopeless(root, itl) || too_many(root) {
            return None;
        }
        Some(root)
    }
}

/// `decode_itl_ms`, when its ITL is within `limit_ms` (`None` otherwise). An iterate of the
/// mean batch whose own ITL, or whose batch's reservations, already miss settles the answer:
/// both only grow towards the fixed point, and the batch quantile stands above the mean.
#[allow(clippy::too_many_arguments)] // decode_itl_ms's quantities and the limit
pub fn decode_itl_within(
    model: &DecodeModel,
    correction: DecodeCorrection,
    lambda: f64,
    engines: u32,
    isl: f64,
    osl: f64,
    batch_quantile_z: f64,
    kv_fraction: f64,
    limit_ms: f64,
) -> Option<(f64, f64)> {
    let batches = ItlAtBatches::new(model, correction, isl, osl);
    let usable_kv = batches.max_kv * kv_fraction;
    // A quantile below the mean batch (z < 0) is not above the iterates: solve to the end.
    let above_mean = batch_quantile_z >= 0.0;
    let hopeless =
        |n: f64, itl: f64| above_mean && (itl > limit_ms || n * batches.reservation > usable_kv);
    let n = batches.mean_batch_unless(lambda, engines, hopeless)?;
    let itl = batches.at(n, batch_quantile_z, kv_fraction)?;
    (itl <= limit_ms).then_some((itl, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn dynamos_router_modes_are_read_by_their_names() {
        let read = |mode: &str| serde_json::from_value::<Router>(serde_json::json!(mode));
        assert_eq!(read("round-robin").unwrap(), Router::RoundRobin);
        assert_eq!(read("random").unwrap(), Router::Random);
        assert_eq!(read("kv").unwrap(), Router::Kv);
        assert_eq!(read("least-loaded").unwrap(), Router::Kv);
        // Between random and least loaded: not one the model has, so not taken for either.
        assert!(read("power-of-two").is_err());
    }

    #[test]
    fn an_interleaving_worker_stretches_by_its_prefill_share_and_its_swing() {
        // Nothing to prefill: steps as profiled.
        assert_eq!(interleaved_stretch(0.0, 60.0, 3.0, 2.0), 1.0);
        // Ten 50 ms prompts a second: half the worker's time, steps twice as long on average.
        assert!((interleaved_stretch(10.0, 50.0, 3.0, 0.0) - 2.0).abs() < 1e-12);
        // The request at z sees the prompts of its own lifetime swing above the mean: more
        // for a short life, which sees few prompts, than for a long one.
        let short = interleaved_stretch(10.0, 50.0, 1.0, 2.0);
        let long = interleaved_stretch(10.0, 50.0, 100.0, 2.0);
        assert!(short > long && long > 2.0, "{short} {long}");
        // 0.5 + 2 * 0.05 * sqrt(10 / 1) = 0.816: 1 / 0.184.
        assert!((short - 1.0 / (1.0 - (0.5 + 0.1 * 10f64.sqrt()))).abs() < 1e-9);
        // A whole worker's time or more: no step ends.
        assert!(interleaved_stretch(20.0, 50.0, 3.0, 0.0).is_infinite());
    }

    #[test]
    fn a_kv_router_sends_prompts_to_a_busy_worker_only_when_none_is_idle() {
        // At random: each worker its share, busy or not.
        assert_eq!(Router::Random.landing_rate(4.0, 3, 0.25, 139.0), 4.0 / 3.0);
        // To the least loaded: 4 req/s of 0.389 s on a worker is 1.556 in flight; the
        // other two workers are both busy with P(N >= 2) = 1 - e^-1.556 (1 + 1.556).
        let in_flight: f64 = 4.0 * (0.25 + 0.139);
        let all_busy = 1.0 - (-in_flight).exp() * (1.0 + in_flight);
        let kv = Router::Kv.landing_rate(4.0, 3, 0.25, 139.0);
        assert!((kv - 4.0 / 3.0 * all_busy).abs() < 1e-12, "{kv}");
        assert!(kv < 0.5 * 4.0 / 3.0);
        // Busy everywhere (45 req/s, 8 workers, 2.5 s lives): a worker's share, as in turn.
        let busy = Router::Kv.landing_rate(45.0, 8, 2.5, 61.0);
        assert!((busy - 45.0 / 8.0).abs() < 1e-9, "{busy}");
        // A lone worker takes every prompt.
        assert_eq!(Router::Kv.landing_rate(4.0, 1, 0.25, 139.0), 4.0);
        // In turn, 1.556 arrivals in a request's 0.389 s on a worker: the worker takes the
        // third after its own, and the sixth (N >= 3 and N >= 6), 0.548 a second.
        let terms =
            |n: u32| (0..n).map(|j| in_flight.powi(j as i32) / f64::from((1..=j).product::<u32>()));
        let at_least = |n: u32| 1.0 - (-in_flight).exp() * terms(n).sum::<f64>();
        let in_turn = Router::RoundRobin.landing_rate(4.0, 3, 0.25, 139.0);
        let want = (at_least(3) + at_least(6) + at_least(9)) / (0.25 + 0.139);
        assert!((in_turn - want).abs() < 1e-6, "{in_turn} {want}");
        assert!((0.54..0.56).contains(&in_turn), "{in_turn}");
        // Busy everywhere, in turn too takes the share, less the turn not yet complete:
        // 45 req/s over 2.561 s is 115 arrivals, of which a worker takes floor(N / 8).
        let busy = Router::RoundRobin.landing_rate(45.0, 8, 2.5, 61.0);
        let share_less_turn = (45.0 * 2.561 - 3.5) / 8.0 / 2.561;
        assert!(
            (busy - share_less_turn).abs() < 1e-3,
            "{busy} {share_less_turn}"
        );
        // A lone worker takes every prompt, in turn too.
        let alone = Router::RoundRobin.landing_rate(4.0, 1, 0.25, 139.0);
        assert!((alone - 4.0).abs() < 1e-12, "{alone}");
        // The floor's mean from the mode outward: finite and right where e^-mean
        // underflows, and never above the share.
        let big = poisson_floor_mean(1.0e6, 7);
        assert!((big - (1.0e6 - 3.0) / 7.0).abs() < 1e-3, "{big}");
        assert_eq!(poisson_floor_mean(0.0, 3), 0.0);
        // Either side of where the remainder is taken as uniform, the sum and the form agree.
        let (k, sd) = (5u32, 10.0 * 5.0);
        let summed = poisson_floor_mean(sd * sd * 0.999, k);
        let uniform = (sd * sd * 0.999 - 2.0) / 5.0;
        assert!((summed - uniform).abs() < 1e-9, "{summed} {uniform}");
        assert!(poisson_floor_mean(2.0, 1) <= 2.0 && poisson_floor_mean(2.0, 1) > 1.999_999);
        // The Poisson tail in logs: finite and right far past where e^-mean underflows.
        assert!((poisson_at_least(1000.0, 900) - 1.0).abs() < 1e-3);
        let tail = poisson_at_least(1000.0, 1100);
        assert!(tail > 0.0005 && tail < 0.002, "{tail}");
        assert_eq!(poisson_at_least(0.0, 3), 0.0);
    }

    #[test]
    fn decode_itl_grows_with_load() {
        let d = Profile::embedded_default().decode_model();
        let at = |lambda: f64, engines: u32| {
            let speed = DecodeCorrection::at_speed(1.0);
            decode_itl_ms(&d, speed, lambda, engines, 3000.0, 300.0, 0.0, 0.9)
        };
        let (low, n_low) = at(1.0, 1).unwrap();
        let (high, n_high) = at(20.0, 1).unwrap();
        assert!(high > low && n_high > n_low);
        let (split, _) = at(20.0, 4).unwrap();
        assert!(split < high);
        assert!(at(10000.0, 1).is_none());
    }

    #[test]
    fn the_mean_batch_is_the_fixed_point_the_iteration_from_an_empty_engine_reaches() {
        // Solved piece by piece along the profile's lines; checked against the plain
        // iteration n <- rate * output * ITL(n), which rises from 0 to the least fixed
        // point, and which runs away where no fixed point is found.
        let d = Profile::embedded_default().decode_model();
        let mut solved = 0;
        for lambda in [0.05, 0.5, 3.0, 12.0, 30.0, 60.0, 120.0, 400.0] {
            for engines in [1, 2, 5] {
                for (isl, osl) in [
                    (3000.0, 300.0),
                    (200.0, 1500.0),
                    (30000.0, 50.0),
                    (60.0, 1.0),
                ] {
                    for (speed, context) in [(1.0, 1.0), (0.7, 0.5), (1.4, 1.6)] {
                        let c = DecodeCorrection { speed, context };
                        let per_engine = lambda / f64::from(engines);
                        let max_kv = d.max_kv_tokens();
                        let curve = d.at_context(c.context(isl, osl).max(1.0));
                        let g = |n: f64| {
                            let kv = n.max(1.0) * c.context(isl, osl) / max_kv;
                            per_engine * (osl - 1.0).max(0.0) * speed * curve.itl_ms(kv) / 1000.0
                        };
                        let mut n: f64 = 0.0;
                        let mut ran_away = false;
                        for _ in 0..100_000 {
                            let next = g(n);
                            ran_away = next * c.reservation(isl, osl) > 4.0 * max_kv;
                            if ran_away || (next - n).abs() <= 1e-12 * next.max(1.0) {
                                n = next;
                                break;
                            }
                            n = next;
                        }
                        let case = format!("{lambda} req/s, {engines} engines, ISL {isl}, OSL {osl}, x{speed}, KV x{context}");
                        match decode_mean_batch(&d, c, lambda, engines, isl, osl) {
                            Some(batch) => {
                                solved += 1;
                                assert!(!ran_away, "{case}: {batch}");
                                assert!(
                                    (batch - n).abs() <= 1e-9 * n.max(1.0),
                                    "{case}: {batch} vs {n}"
                                );
                                assert!(
                                    (g(batch) - batch).abs() <= 1e-9 * batch.max(1.0),
                                    "{case}"
                                );
                            }
                            None => assert!(ran_away, "{case}: the iteration settled at {n}"),
                        }
                    }
                }
            }
        }
        assert!(
            solved > 100 && solved < 288,
            "both answers are tried: {solved}"
        );
    }

    #[test]
    fn the_largest_batch_within_the_itl_is_where_a_bisection_finds_it() {
        let d = Profile::embedded_default().decode_model();
        let mut capped_by_kv = 0;
        for (isl, osl) in [
            (3000.0, 300.0),
            (200.0, 1500.0),
            (30000.0, 50.0),
            (1.0, 2.0),
        ] {
            for (speed, context) in [(1.0, 1.0), (0.6, 0.5), (1.4, 1.6)] {
                for limit in [4.0, 6.0, 8.0, 10.0, 15.0, 40.0] {
                    for kv_fraction in [0.3, 0.9] {
                        let c = DecodeCorrection { speed, context };
                        let within = |b: f64| {
                            decode_itl_at_batch(&d, c, b, isl, osl, 0.0, kv_fraction)
                                .is_some_and(|itl| itl <= limit)
                        };
                        let bisected = within(1.0).then(|| {
                            let (mut lo, mut hi) = (1.0, 2.0);
                            while within(hi) && hi < 1e9 {
                                (lo, hi) = (hi, 2.0 * hi);
                            }
                            for _ in 0..60 {
                                let mid = 0.5 * (lo + hi);
                                if within(mid) {
                                    lo = mid;
                                } else {
                                    hi = mid;
                                }
                            }
                            lo
                        });
                        let found = largest_batch_within(&d, c, isl, osl, limit, kv_fraction);
                        let case = format!("ISL {isl}, OSL {osl}, x{speed}, KV x{context}, {limit} ms, KV {kv_fraction}");
                        match (found, bisected) {
                            (Some(a), Some(b)) => {
                                assert!((a - b).abs() <= 1e-9 * b, "{case}: {a} vs {b}");
                                let fits =
                                    d.max_kv_tokens() * kv_fraction / c.reservation(isl, osl);
                                capped_by_kv += usize::from(a == fits);
                            }
                            (a, b) => assert_eq!(a, b, "{case}"),
                        }
                    }
                }
            }
        }
        assert!(capped_by_kv > 0, "the KV caps some");
    }

    #[test]
    fn the_early_decode_answer_is_the_solved_one() {
        // Counts that cannot do are given up before their batch is solved; the answer
        // must be the full solve's, at and around the limits, for every batch quantile.
        let d = Profile::embedded_default().decode_model();
        let mut given_up = 0;
        for lambda in [0.0, 0.5, 3.0, 12.0, 30.0, 60.0, 120.0, 400.0] {
            for engines in [0, 1, 2, 3, 5, 8] {
                for (isl, osl) in [(3000.0, 300.0), (200.0, 1500.0), (30000.0, 50.0)] {
                    for z in [-0.5, 0.0, 1.9, 4.0] {
                        for (kv, context) in [(0.5, 1.0), (0.9, 1.0), (0.9, 1.6)] {
                            let c = DecodeCorrection {
                                speed: 1.1,
                                context,
                            };
                            let full = decode_mean_batch(&d, c, lambda, engines, isl, osl)
                                .and_then(|n| decode_itl_at_batch(&d, c, n, isl, osl, z, kv));
                            for limit in [5.0, 7.5, 10.0, 20.0, f64::INFINITY] {
                                let early = decode_itl_within(
                                    &d, c, lambda, engines, isl, osl, z, kv, limit,
                                )
                                .map(|x| x.0);
                                let expected = full.filter(|&itl| itl <= limit);
                                let case = format!("{lambda} req/s, {engines} engines, ISL {isl}, OSL {osl}, z {z}, kv {kv}, KV per request x{context}, limit {limit}");
                                assert_eq!(early, expected, "{case}");
                                given_up += usize::from(full.is_some() && early.is_none());
                            }
                        }
                    }
                }
            }
        }
        assert!(given_up > 0, "the table reaches counts that miss the limit");
    }
}
