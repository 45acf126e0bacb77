//! The prefill queue: Erlang C waiting on a few engines that batch the prompts queued
//! together, and the memo the fits build queues through.

/// Erlang C: probability that an arrival waits, for `c` servers at offered load `a` Erlangs.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if c == 0 || a <= 0.0 {
        return if a > 0.0 { 1.0 } else { 0.0 };
    }
    let rho = a / c as f64;
    if rho >= 1.0 {
        return 1.0;
    }
    if c <= ERLANG_RECURRENCE_MAX {
        // Erlang B by the stable recurrence `B(k) = a B(k-1) / (k + a B(k-1))`, carried as
        // its reciprocal `1/B(k) = 1 + (k/a) / B(k-1)`: a multiply and an add a server where
        // the recurrence waits on a division (the queue's fixed point evaluates this a few
        // times for every queue built). A reciprocal past f64's range is a B of 0.
        let per_server = 1.0 / a;
        let mut inverse_b = 1.0;
        for k in 1..=c {
            inverse_b = inverse_b * (k as f64 * per_server) + 1.0;
        }
        // C = B / (1 - rho (1 - B)), over 1/B.
        return 1.0 / (inverse_b * (1.0 - rho) + rho);
    }
    let b = erlang_b_around_mode(c, a);
    b / (1.0 - rho * (1.0 - b))
}

/// Erlang C at a number of servers `c` that need not be whole: linear between the whole
/// counts either side (Erlang C falls ever more slowly with servers, so the line is on the
/// side of more waiting). Below one server, one server's chance to wait, the utilisation.
fn erlang_c_between(c: f64, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    if a >= c {
        return 1.0;
    }
    if c <= 1.0 {
        return (a / c).min(1.0);
    }
    let below = c.floor();
    let above_share = c - below;
    let at_below = erlang_c(below as u32, a);
    if above_share == 0.0 {
        return at_below;
    }
    at_below + above_share * (erlang_c(below as u32 + 1, a) - at_below)
}

/// Servers up to which Erlang B is found by the recurrence over every server; above, by
/// `erlang_b_around_mode`, whose cost grows with the root of the load, not the servers.
const ERLANG_RECURRENCE_MAX: u32 = 1000;

/// Erlang B as `P(N = c) / P(N <= c)` for `N` Poisson with mean `a`, summed from ratios of
/// neighbouring terms around the largest term in `0..=c`: terms more than nine standard
/// deviations from it add less than 1e-17 of the sum, and a `c` that far above the load
/// has a B below that.
#[cold]
fn erlang_b_around_mode(c: u32, a: f64) -> f64 {
    let width = (9.0 * a.sqrt()).ceil() as u32 + 10;
    let top = (a.floor() as u32).min(c);
    if c - top > width {
        return 0.0;
    }
    // Terms relative to P(N = top), below it (`P(k-1) / P(k) = k / a`) and up to c.
    let mut sum = 1.0;
    let mut term = 1.0;
    for k in (top.saturating_sub(width) + 1..=top).rev() {
        term *= k as f64 / a;
        sum += term;
    }
    let mut at_c = 1.0;
    for k in top + 1..=c {
        at_c *= a / k as f64;
        sum += at_c;
    }
    at_c / sum
}

/// Mean queue length an arrival finds in M/M/c at offered load `a`.
fn queue_length(c: u32, a: f64) -> f64 {
    let rho = a / f64::from(c.max(1));
    if c == 0 || rho >= 1.0 {
        return f64::INFINITY;
    }
    erlang_c(c, a) * rho / (1.0 - rho)
}

/// The service time per prompt that sets the waiting: prefill engines batch the prompts
/// queued together into one iteration, whose fixed `overhead_ms` they share. Alone a prompt
/// takes `service_ms`; behind a queue of `L` it costs `service - overhead + overhead / (1 + L)`,
/// and `L` depends on that cost in turn (a decreasing map, so one fixed point, found by
/// regula falsi). With no overhead this is `service_ms` (M/M/c).
pub fn shared_service_ms(lambda: f64, engines: u32, service_ms: f64, overhead_ms: f64) -> f64 {
    let t0 = overhead_ms.clamp(0.0, service_ms);
    if t0 <= 0.0 || lambda <= 0.0 || engines == 0 {
        return service_ms;
    }
    let g = service_ms - t0;
    let cost = |s: f64| g + t0 / (1.0 + queue_length(engines, lambda * s / 1000.0));
    let at_full = cost(service_ms);
    if at_full >= service_ms {
        return service_ms;
    }
    // h(s) = s - cost(s) rises from below 0 at g to above 0 at the full service time: the
    // Illinois variant of regula falsi finds its root in a few steps.
    let h = |s: f64| s - cost(s);
    let (mut a, mut b) = (g, service_ms);
    let (mut ha, mut hb) = (h(a), service_ms - at_full);
    let mut side = 0;
    let mut root = b;
    for _ in 0..20 {
        if hb - ha <= 0.0 {
            break;
        }
        root = b - hb * (b - a) / (hb - ha);
        let hr = h(root);
        if hr.abs() < 1e-3 * service_ms {
            break;
        }
        if hr > 0.0 {
            b = root;
            hb = hr;
            if side == -1 {
                ha /= 2.0;
            }
            side = -1;
        } else {
            a = root;
            ha = hr;
            if side == 1 {
                hb /= 2.0;
            }
            side = 1;
        }
    }
    root
}

/// The prefill queue at a load: what the waiting time's distribution depends on, computed
/// once so quantiles and means under several variabilities cost nothing more.
#[derive(Debug, Clone, Copy)]
pub struct PrefillQueue {
    /// A prompt's own time, ms.
    pub service_ms: f64,
    /// Probability that a Poisson arrival waits (Erlang C at the shared service time); 1
    /// past capacity.
    pub poisson_wait: f64,
    /// Rate at which the queue drains, 1/s; 0 past capacity.
    pub drain_per_s: f64,
    /// The engines, and the load they share in Erlangs (at the shared service time).
    engines: u32,
    offered: f64,
}

impl PrefillQueue {
    /// The queue `engines` make at `lambda` prompts/s of `service_ms` each, of which
    /// `overhead_ms` is shared by prompts batched together (`shared_service_ms`; 0 for a
    /// queue served one prompt at a time).
    pub fn new(lambda: f64, engines: u32, service_ms: f64, overhead_ms: f64) -> PrefillQueue {
        if lambda <= 0.0 {
            return PrefillQueue {
                service_ms,
                poisson_wait: 0.0,
                drain_per_s: f64::INFINITY,
                engines,
                offered: 0.0,
            };
        }
        let past_capacity = PrefillQueue {
            service_ms,
            poisson_wait: 1.0,
            drain_per_s: 0.0,
            engines,
            offered: f64::INFINITY,
        };
        // The shared cost is never below a prompt's time without the overhead: past
        // capacity at that, the queue is past capacity without finding the cost.
        let least_s = (service_ms - overhead_ms.clamp(0.0, service_ms)) / 1000.0;
        if engines == 0 || lambda * least_s >= f64::from(engines) {
            return past_capacity;
        }
        let s = shared_service_ms(lambda, engines, service_ms, overhead_ms) / 1000.0;
        let a = lambda * s;
        if a >= f64::from(engines) {
            return past_capacity;
        }
        PrefillQueue {
            service_ms,
            poisson_wait: erlang_c(engines, a),
            drain_per_s: f64::from(engines) / s - lambda,
            engines,
            offered: a,
        }
    }

    /// Probability that an arrival waits under this waiting variability `v`: the queue's
    /// waiting behaves as M/M/c's with `c / v` engines at `a / v` Erlangs (the same
    /// utilisation, the drain rate over `v`: the tail `exp(-drain * t / v)` below). This is
    /// the heavy-traffic approximation of the GI/G/c queue, whose chance to wait is M/M/c's
    /// with the square-root staffing margin `(c - a) / sqrt(a)` divided by `sqrt(v)`.
    /// Bursty arrivals (`v` well above 1) then wait often even with many engines, where
    /// Erlang C's chance falls below the TTFT percentile's tail and says none wait.
    pub fn wait_probability(&self, variability: f64) -> f64 {
        if self.drain_per_s <= 0.0 {
            return 1.0;
        }
        if variability <= 1.0 || self.offered <= 0.0 {
            return self.poisson_wait;
        }
        erlang_c_between(
            f64::from(self.engines) / variability,
            self.offered / variability,
        )
    }

    /// TTFT at `quantile` (the prompt's own time plus the waiting quantile), ms; infinite
    /// past capacity. `variability` scales the waiting time, and above 1 its chance too
    /// (`wait_probability`): 1 for the M/M/c queue; about `(ca^2 + cs^2) / 2` for general
    /// arrivals and service (Allen-Cunneen), so 0.5 for Poisson arrivals with equal prompts,
    /// more for bursty arrivals or heavy-tailed prompts. It is learned online.
    pub fn quantile_ms(&self, quantile: f64, variability: f64) -> f64 {
        self.at_quantile(quantile, variability).ms()
    }

    /// TTFT at `quantile` of the slowest prompts (their own time `tail` times the typical
    /// prompt's) plus the waiting quantile. Adding the two quantiles overstates their sum's
    /// quantile a little, on the safe side.
    pub fn slowest_quantile_ms(&self, quantile: f64, tail: f64, variability: f64) -> f64 {
        self.at_quantile(quantile, variability).slowest_ms(tail)
    }

    /// Mean TTFT, ms.
    pub fn mean_ms(&self, variability: f64) -> f64 {
        if self.drain_per_s <= 0.0 {
            return f64::INFINITY;
        }
        self.service_ms
            + variability * self.wait_probability(variability) / self.drain_per_s * 1000.0
    }

    /// The share of arrivals whose TTFT as the slowest prompts' (`slowest_quantile_ms`) is
    /// within `target_ms`: the quantile at which that TTFT reaches the target. None past
    /// capacity, or where their own time alone is past it.
    pub fn slowest_share_within(&self, target_ms: f64, tail: f64, variability: f64) -> f64 {
        let alone_ms = tail * self.service_ms;
        if self.drain_per_s <= 0.0 || alone_ms > target_ms {
            return 0.0;
        }
        1.0 - self.share_waiting_beyond(target_ms - alone_ms, variability)
    }

    /// The share of arrivals that wait longer than `wait_ms` under this waiting variability:
    /// the exponential tail `P(wait) * exp(-drain * wait / variability)` whose quantiles
    /// `at_quantile` reads; 1 past capacity.
    pub fn share_waiting_beyond(&self, wait_ms: f64, variability: f64) -> f64 {
        if self.drain_per_s <= 0.0 {
            return 1.0;
        }
        (self.wait_probability(variability)
            * (-wait_ms / 1000.0 * self.drain_per_s / variability).exp())
        .min(1.0)
    }

    /// The queue at one quantile and waiting variability: what its TTFT there needs
    /// besides the prompt spread, computed once when a fit tries dozens of spreads.
    pub fn at_quantile(&self, quantile: f64, variability: f64) -> QueueQuantile {
        let tail = 1.0 - quantile;
        let pw = self.wait_probability(variability);
        QueueQuantile {
            service_ms: self.service_ms,
            wait_scale_s: if self.drain_per_s > 0.0 {
                variability / self.drain_per_s
            } else {
                f64::INFINITY
            },
            log_wait: if pw > tail {
                Some((pw / tail).ln())
            } else {
                None
            },
        }
    }
}

/// A prefill queue at one TTFT quantile (`PrefillQueue::at_quantile`).
#[derive(Debug, Clone, Copy)]
pub struct QueueQuantile {
    service_ms: f64,
    /// The waiting tail's scale, the variability over the drain rate, s; infinite past
    /// capacity.
    wait_scale_s: f64,
    /// `ln(P(wait) / (1 - quantile))`, when more than that share of arrivals wait.
    log_wait: Option<f64>,
}

impl QueueQuantile {
    /// TTFT at the quantile, ms; infinite past capacity.
    pub fn ms(&self) -> f64 {
        if self.wait_scale_s.is_infinite() {
            return f64::INFINITY;
        }
        let wait = self.log_wait.map_or(0.0, |l| l * self.wait_scale_s);
        self.service_ms + wait * 1000.0
    }

    /// The slowest prompts' TTFT at the quantile (`PrefillQueue::slowest_quantile_ms`).
    pub fn slowest_ms(&self, tail: f64) -> f64 {
        self.ms() + (tail - 1.0) * self.service_ms
    }
}

/// Prefill queues already built, by their inputs. The fits of the prefill corrections try
/// the same speeds on the same evidence decision after decision (the evidence window moves
/// one interval at a time, and a bracketed search starts from the same points), and
/// building a queue (a fixed point of the shared iteration overhead) is most of a fit's
/// cost: most are found here. A pure function's cache: results are unchanged.
///
/// Direct-mapped: each input has one slot, and a queue built there replaces what it held.
/// The hash map this replaced (cleared at as many entries) took about a tenth of a
/// decision's time to look in, near what the queues it saved would take to build; these
/// slots find as many, for a multiply and one compare.
#[derive(Debug, Clone, Default)]
pub(super) struct QueueMemo(Vec<Option<(QueueKey, PrefillQueue)>>);

type QueueKey = (u64, u32, u64, u64);

/// Slots of the memo, a power of two: a window of evidence needs a few hundred.
const QUEUE_MEMO_SLOTS: usize = 4096;

impl QueueMemo {
    pub(super) fn queue(
        &mut self,
        lambda: f64,
        engines: u32,
        service_ms: f64,
        overhead_ms: f64,
    ) -> PrefillQueue {
        if self.0.is_empty() {
            self.0 = vec![None; QUEUE_MEMO_SLOTS];
        }
        let key = (
            lambda.to_bits(),
            engines,
            service_ms.to_bits(),
            overhead_ms.to_bits(),
        );
        let slot = &mut self.0[slot_of(key)];
        match slot {
            Some((k, q)) if *k == key => *q,
            _ => {
                let q = PrefillQueue::new(lambda, engines, service_ms, overhead_ms);
                *slot = Some((key, q));
                q
            }
        }
    }
}

/// The slot of a key: its words mixed by a multiply, the product's top bits.
fn slot_of((lambda, engines, service, overhead): QueueKey) -> usize {
    let mixed = (lambda ^ service.rotate_left(21) ^ overhead.rotate_left(42))
        .wrapping_add(u64::from(engines))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - QUEUE_MEMO_SLOTS.trailing_zeros())) as usize
}

/// The TTFT quantile and the mean of a queue built at once, in ms (the tests' shorthand).
#[cfg(test)]
pub(super) fn prefill_ttft_ms(
    lambda: f64,
    engines: u32,
    service_ms: f64,
    overhead_ms: f64,
    quantile: f64,
    variability: f64,
) -> (f64, f64) {
    let q = PrefillQueue::new(lambda, engines, service_ms, overhead_ms);
    (q.quantile_ms(quantile, variability), q.mean_ms(variability))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_around_the_mode_agrees_with_the_recurrence() {
        let recurrence = |c: u32, a: f64| (1..=c).fold(1.0, |b, k| a * b / (k as f64 + a * b));
        for c in [1001u32, 1500, 5000, 20_000] {
            for load in [0.3, 0.9, 0.99, 0.999] {
                let a = load * c as f64;
                let (want, got) = (recurrence(c, a), erlang_b_around_mode(c, a));
                // Zero only where B is below what the window keeps (1e-17).
                let close = if got == 0.0 {
                    want < 1e-17
                } else {
                    (got - want).abs() <= 1e-9 * want
                };
                assert!(close, "c {c} a {a}: {got:e} vs {want:e}");
            }
        }
        // A load far below the servers: B is below what a double holds.
        assert_eq!(erlang_b_around_mode(100_000, 10.0), 0.0);
        let c = erlang_c(100_000, 99_000.0);
        assert!(c > 0.0 && c < 1.0, "{c}");
    }

    #[test]
    fn erlang_c_known_values() {
        // Textbook: c = 2, a = 1 -> C = 1/3; c = 1 -> C = rho.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        assert_eq!(erlang_c(3, 3.0), 1.0);
        assert!(erlang_c(10, 5.0) < erlang_c(10, 8.0));
    }

    #[test]
    fn erlang_c_agrees_with_the_recurrence_on_b_itself() {
        let by_b = |c: u32, a: f64| {
            let b = (1..=c).fold(1.0, |b, k| a * b / (k as f64 + a * b));
            b / (1.0 - a / c as f64 * (1.0 - b))
        };
        for c in [1u32, 2, 3, 4, 8, 16, 64, 300, 1000] {
            for load in [1e-6, 0.01, 0.3, 0.7, 0.9, 0.99, 0.9999] {
                let a = load * c as f64;
                let (want, got) = (by_b(c, a), erlang_c(c, a));
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "c {c} a {a}: {got:e} vs {want:e}"
                );
            }
        }
        // So far below capacity that 1/B passes f64's range: nobody waits.
        assert_eq!(erlang_c(1000, 1e-3), 0.0);
    }

    #[test]
    fn bursty_arrivals_wait_often_where_many_engines_would_keep_poisson_ones_from_waiting() {
        // 20 engines at 10 Erlangs (100 prompts/s of 100 ms): under 1% of Poisson arrivals
        // wait, so their p99 TTFT is the prompt's own time.
        let q = PrefillQueue::new(100.0, 20, 100.0, 0.0);
        assert!(q.poisson_wait < 0.01, "{q:?}");
        assert_eq!(q.quantile_ms(0.99, 1.0), 100.0);
        // Arrivals four times as variable wait as at 5 engines and 2.5 Erlangs: 13% of them
        // (Erlang C), for up to 4 x ln(13) / 100 per second past the prompt: 100 ms more.
        let p = q.wait_probability(4.0);
        assert!((p - erlang_c(5, 2.5)).abs() < 1e-12, "{p}");
        assert!((0.12..0.14).contains(&p), "{p}");
        let p99 = q.quantile_ms(0.99, 4.0);
        assert!((190.0..210.0).contains(&p99), "{p99}");
        assert!(q.share_waiting_beyond(0.0, 4.0) > 0.1);
        // Engines still shorten the wait, and at a whole number of them over the
        // variability the chance is Erlang C's there; between, between its neighbours.
        assert!(PrefillQueue::new(100.0, 40, 100.0, 0.0).quantile_ms(0.99, 4.0) < p99);
        let between = q.wait_probability(20.0 / 4.5);
        assert!(between < erlang_c(4, 10.0 / 4.5) && between > erlang_c(5, 10.0 / 4.5));
        // Arrivals smoother than Poisson do not make waiting less likely than Erlang C
        // says (only its tail shorter): a variability learned below 1 is not a promise.
        assert_eq!(q.wait_probability(0.5), q.poisson_wait);
    }

    #[test]
    fn prefill_quantile_grows_with_load_and_falls_with_engines() {
        let (q1, m1) = prefill_ttft_ms(10.0, 1, 60.0, 0.0, 0.99, 1.0);
        let (q2, _) = prefill_ttft_ms(15.0, 1, 60.0, 0.0, 0.99, 1.0);
        let (q3, _) = prefill_ttft_ms(15.0, 2, 60.0, 0.0, 0.99, 1.0);
        assert!(q1 > m1 && m1 > 60.0);
        assert!(q2 > q1);
        assert!(q3 < q2);
        assert!(
            prefill_ttft_ms(20.0, 1, 60.0, 0.0, 0.99, 1.0)
                .0
                .is_infinite(),
            "past capacity"
        );
        assert_eq!(prefill_ttft_ms(0.0, 1, 60.0, 0.0, 0.99, 1.0).0, 60.0);
    }

    #[test]
    fn shared_service_is_the_fixed_point_between_alone_and_fully_batched() {
        let (service, overhead) = (37.9, 17.7);
        // Bisection, slowly and surely, for comparison.
        let exact = |lambda: f64, c: u32| {
            let g = service - overhead;
            let cost = |s: f64| g + overhead / (1.0 + queue_length(c, lambda * s / 1000.0));
            let (mut lo, mut hi) = (g, service);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if mid < cost(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        };
        for (lambda, c) in [(5.0, 1), (20.0, 1), (43.0, 2), (60.0, 2), (70.0, 3)] {
            let s = shared_service_ms(lambda, c, service, overhead);
            let want = exact(lambda, c);
            assert!(
                (s - want).abs() < 0.05,
                "{lambda} req/s on {c}: {s} vs {want}"
            );
            assert!(s > service - overhead && s <= service);
        }
        // Light load: almost nobody to share with. Past one-at-a-time capacity (2 x 26
        // req/s here), sharing is what keeps the queue finite.
        assert!(shared_service_ms(1.0, 2, service, overhead) > service - 0.5);
        assert!(shared_service_ms(60.0, 2, service, overhead) < 2000.0 / 60.0);
        assert_eq!(shared_service_ms(43.0, 2, service, 0.0), service);
    }

    #[test]
    fn a_queue_past_capacity_without_the_shared_overhead_is_past_capacity() {
        // Past capacity even if every prompt shared the whole overhead: no finite TTFT.
        let q = PrefillQueue::new(100.0, 2, 60.0, 20.0);
        assert!(q.quantile_ms(0.99, 1.0).is_infinite());
        assert_eq!(q.poisson_wait, 1.0);
        // Past one-at-a-time capacity (45 x 60 ms = 2.7 engines) but not past it with the
        // overhead shared (45 x 40 ms = 1.8): sharing keeps the queue finite.
        let q = PrefillQueue::new(45.0, 2, 60.0, 20.0);
        assert!(q.quantile_ms(0.99, 1.0).is_finite());
    }

    #[test]
    fn the_share_within_a_target_is_the_quantile_at_which_the_ttft_reaches_it() {
        let mut between = 0;
        for (lambda, engines) in [(5.0, 1), (30.0, 2), (50.0, 4), (200.0, 16), (80.0, 2)] {
            let q = PrefillQueue::new(lambda, engines, 60.0, 18.0);
            for tail in [1.0, 1.6] {
                for variability in [0.5, 1.0, 2.0] {
                    for target in [50.0, 100.0, 200.0, 400.0] {
                        let share = q.slowest_share_within(target, tail, variability);
                        let at = |quantile| q.slowest_quantile_ms(quantile, tail, variability);
                        let case = format!("{lambda}/s on {engines}, x{tail}, v {variability}, {target} ms: {share}");
                        assert!((0.0..=1.0).contains(&share), "{case}");
                        if share > 0.0 && share < 1.0 - 1e-9 && at(share) > tail * 60.0 {
                            // Where the waiting sets it, the TTFT at that quantile is the target.
                            between += 1;
                            assert!((at(share) - target).abs() < 1e-6 * target, "{case}");
                        } else if share == 0.0 {
                            assert!(at(1e-9) > target, "{case}");
                        }
                        // A little more is past the target, a little less within it.
                        if share < 1.0 - 1e-6 {
                            assert!(at(share + 1e-6) > target, "{case}");
                        }
                        if share > 1e-6 {
                            assert!(at(share - 1e-6) <= target, "{case}");
                        }
                    }
                }
            }
        }
        assert!(between > 20, "{between}");
    }

    #[test]
    fn the_memo_answers_each_input_with_its_own_queue_when_inputs_share_a_slot() {
        let inputs: Vec<(f64, u32, f64, f64)> = (0..3 * QUEUE_MEMO_SLOTS)
            .map(|i| {
                (
                    1.0 + i as f64 * 0.37,
                    2 + (i % 5) as u32,
                    40.0 + (i % 7) as f64,
                    9.0,
                )
            })
            .collect();
        let slots: std::collections::HashSet<usize> = inputs
            .iter()
            .map(|&(l, e, s, o)| slot_of((l.to_bits(), e, s.to_bits(), o.to_bits())))
            .collect();
        assert!(slots.len() < inputs.len(), "no two inputs share a slot");
        let mut memo = QueueMemo::default();
        // Twice over, the second time in reverse: every answer from the memo, hit or not, is
        // the queue built afresh for those inputs.
        for (lambda, engines, service, overhead) in inputs.iter().chain(inputs.iter().rev()) {
            let (got, want) = (
                memo.queue(*lambda, *engines, *service, *overhead),
                PrefillQueue::new(*lambda, *engines, *service, *overhead),
            );
            let case = format!("{lambda}/s on {engines}, {service} ms");
            assert_eq!(
                got.mean_ms(1.0).to_bits(),
                want.mean_ms(1.0).to_bits(),
                "{case}"
            );
            assert_eq!(got.offered.to_bits(), want.offered.to_bits(), "{case}");
        }
    }
}
