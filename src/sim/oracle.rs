//! The oracle: knows every interval's real requests and, for each, the cheapest static
//! (prefill, decode) that meets the SLA for that interval's load. It asks for them a cold
//! start ahead of need, since it knows the future; it is the reference other policies are
//! measured against, not a policy anyone can run. It is not the cheapest schedule there
//! is: it meets the SLA in every interval, where a run's attainment is over all of them,
//! so on a flat load a standing deployment can cost less (Mooncake's trace at 180 s).

use super::{simulate, Routing, SimConfig};
use crate::planner::baselines::{SchedulePolicy, StaticPolicy};
use crate::planner::solver::first_passing;
use crate::planner::{Decision, Observation, Policy, Sla};
use crate::profile::Profile;
use crate::workload::Request;

pub struct OraclePolicy {
    name: String,
    /// Cheapest `(prefill, decode)` per interval.
    needs: Vec<(u32, u32)>,
    interval_s: f64,
    startup_s: f64,
    limits: crate::planner::Limits,
}

impl OraclePolicy {
    /// Plans every interval of `requests`; `target` is the share of an interval's requests
    /// that must meet each latency target (TTFT and ITL, separately).
    pub fn plan(
        cfg: &SimConfig,
        profile: &Profile,
        requests: &[Request],
        target: f64,
    ) -> OraclePolicy {
        let intervals = (cfg.duration_s / cfg.interval_s).ceil().max(1.0) as usize;
        let in_flight_s = in_flight_s(&cfg.sla, requests);
        let needs = (0..intervals)
            .map(|k| need_within(cfg, profile, requests, k, target, in_flight_s))
            .collect();
        OraclePolicy {
            name: if (target - 0.99).abs() < 1e-12 {
                "oracle".into()
            } else {
                format!("oracle:{target}")
            },
            needs,
            interval_s: cfg.interval_s,
            startup_s: cfg.startup_s,
            limits: cfg.limits,
        }
    }

    /// The replicas the oracle starts with, planning only the intervals that decides.
    pub fn plan_prefix(
        cfg: &SimConfig,
        profile: &Profile,
        requests: &[Request],
        target: f64,
    ) -> (u32, u32) {
        let n = ((cfg.interval_s + cfg.startup_s) / cfg.interval_s)
            .ceil()
            .max(1.0) as usize;
        let mut p = cfg.limits.min_prefill;
        let mut d = cfg.limits.min_decode;
        let in_flight_s = in_flight_s(&cfg.sla, requests);
        for k in 0..n {
            let (np, nd) = need_within(cfg, profile, requests, k, target, in_flight_s);
            p = p.max(np);
            d = d.max(nd);
        }
        let (p, d, _) = cfg.limits.clamp(p, d);
        (p, d)
    }

    fn targets_at(&self, t: f64) -> (u32, u32, usize, usize) {
        // Capacity asked for now is ready after a cold start and stays at least until the
        // next decision's removals: cover every interval overlapping [t, t + interval + startup).
        let first = (t / self.interval_s + 1e-9).floor() as usize;
        let last =
            (((t + self.interval_s + self.startup_s) / self.interval_s) - 1e-9).ceil() as usize;
        let last = last.min(self.needs.len());
        let mut p = self.limits.min_prefill;
        let mut d = self.limits.min_decode;
        for &(np, nd) in self.needs.iter().take(last).skip(first) {
            p = p.max(np);
            d = d.max(nd);
        }
        (p, d, first, last)
    }
}

/// Share of the requests arriving in `[from, to)` whose TTFT, and whose ITL, meet the SLA
/// when the window's requests run on a static `(p, d)` deployment.
fn probe(
    cfg: &SimConfig,
    profile: &Profile,
    window: &[Request],
    (from, to): (f64, f64),
    p: u32,
    d: u32,
) -> (f64, f64) {
    let mut c = cfg.clone();
    c.startup_s = 0.0;
    c.initial = (p, d);
    c.duration_s = 0.0; // no ticks: the deployment stays as it starts
    c.limits.max_prefill = p.max(c.limits.max_prefill);
    c.limits.max_decode = d.max(c.limits.max_decode);
    c.limits.gpu_budget = u32::MAX / 4;
    let mut policy = StaticPolicy::new(p, d);
    let res = simulate(&c, profile, window, &mut policy, None);
    let (mut n, mut ttft_ok, mut itl_ok) = (0u32, 0u32, 0u32);
    for (r, o) in window.iter().zip(&res.outcomes) {
        if r.arrival_s < from || r.arrival_s >= to || o.rejected() {
            continue;
        }
        n += 1;
        ttft_ok += (o.ttft_ms as f64 <= cfg.sla.ttft_ms) as u32;
        itl_ok += (o.itl_ms as f64 <= cfg.sla.itl_ms) as u32;
    }
    if n == 0 {
        return (1.0, 1.0);
    }
    (ttft_ok as f64 / n as f64, itl_ok as f64 / n as f64)
}

/// The most replicas each role can have while the other keeps its minimum.
fn role_caps(l: &crate::planner::Limits) -> (u32, u32) {
    let max_p = (l
        .gpu_budget
        .saturating_sub(l.min_decode * l.gpus_per_decode_engine)
        / l.gpus_per_prefill_engine.max(1))
    .min(l.max_prefill)
    .max(l.min_prefill);
    let max_d = (l
        .gpu_budget
        .saturating_sub(l.min_prefill * l.gpus_per_prefill_engine)
        / l.gpus_per_decode_engine.max(1))
    .min(l.max_decode)
    .max(l.min_decode);
    (max_p, max_d)
}

/// The splits of the whole budget: each prefill count from `from_prefill` up, with as many
/// decode engines as the rest of the budget holds, where that is at least `from_decode`.
fn budget_splits(
    l: &crate::planner::Limits,
    from_prefill: u32,
    from_decode: u32,
) -> impl Iterator<Item = (u32, u32)> + '_ {
    let (max_p, _) = role_caps(l);
    (from_prefill..=max_p).filter_map(move |p| {
        let room = l.gpu_budget.saturating_sub(l.gpus(p, 0)) / l.gpus_per_decode_engine.max(1);
        let d = room.min(l.max_decode);
        (d >= from_decode && l.gpus(p, d) <= l.gpu_budget).then_some((p, d))
    })
}

/// Smallest `x` in `lo..=hi` with `ok(x)`, assuming `ok` is monotone; `hi` when none is.
/// The search gallops up from `lo` before it halves: a probe costs in proportion to the
/// replicas it runs, and the answer is most often a few replicas in a budget of hundreds.
fn smallest(lo: u32, hi: u32, mut ok: impl FnMut(u32) -> bool) -> u32 {
    if lo >= hi || ok(lo) {
        return lo.min(hi);
    }
    let mut bad = lo;
    let mut step = 1u32;
    let good = loop {
        let x = lo.saturating_add(step).min(hi);
        if ok(x) {
            break x;
        }
        if x == hi {
            return hi;
        }
        bad = x;
        step = step.saturating_mul(2);
    };
    first_passing(bad, good, ok)
}

/// The fewest replicas in `lo..=hi` whose `(TTFT, ITL)` attainment reaches `target`; when
/// even `hi` falls short, the fewest that reach what `hi` reaches. An interval can be out of
/// reach at any count (prompts too long to meet the TTFT target on any engine, or so few
/// requests that one such prompt is more than 1% of them): more replicas then serve no more
/// requests within the SLA, and a bound that paid for them all would flatter whoever is
/// measured against it.
fn fewest_reaching(
    lo: u32,
    hi: u32,
    target: f64,
    mut attainment: impl FnMut(u32) -> (f64, f64),
) -> u32 {
    let mut seen = std::collections::HashMap::new();
    let mut at = |x: u32| *seen.entry(x).or_insert_with(|| attainment(x));
    let reaches = |(ttft, itl): (f64, f64), (want_ttft, want_itl): (f64, f64)| {
        ttft >= want_ttft && itl >= want_itl
    };
    let x = smallest(lo, hi, |x| reaches(at(x), (target, target)));
    if x < hi || reaches(at(hi), (target, target)) {
        return x;
    }
    let (ttft, itl) = at(hi);
    let goal = (target.min(ttft), target.min(itl));
    smallest(lo, hi, |x| x == hi || reaches(at(x), goal))
}

/// The most replicas of a role that `n` requests can keep apart: beyond it the router never
/// reaches the engines added (it picks the lowest-numbered of the least loaded, or the next
/// in turn from the first, and at most `n - 1` other requests are ever in flight), so a
/// search need not run them. A router drawing at random reaches them all, and fewer land
/// together on more: no cap.
fn reachable_by(router: Routing, n: usize, lo: u32, hi: u32) -> u32 {
    match router {
        Routing::Random => hi,
        Routing::LeastLoaded | Routing::RoundRobin => {
            hi.min(u32::try_from(n).unwrap_or(u32::MAX).max(lo))
        }
    }
}

/// The cheapest static `(prefill, decode)` that meets `target` for interval `k`'s requests,
/// or, where no count does, the cheapest that comes as close as the most replicas do.
pub fn need_for_interval(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
    k: usize,
    target: f64,
) -> (u32, u32) {
    need_within(
        cfg,
        profile,
        requests,
        k,
        target,
        in_flight_s(&cfg.sla, requests),
    )
}

/// The warm-up an interval's probes replay before it, in stays in flight (`in_flight_s`; at
/// least an interval): a batch near the ITL target settles only over a few stays, each
/// lengthening the next (40 req/s of 300 tokens on three engines: within the target for
/// the first 10 s, 10.03-10.05 ms after 15 s).
const SETTLE: f64 = 4.0;

/// How long a request within the SLA stays in flight: its TTFT and, at the ITL target, the
/// output that 99% of outputs are no longer than (the batches are the bulk's, and the
/// longest output of a long-context trace would have every probe replay most of the run).
/// An interval's probes replay the requests in flight with its own: those that come up to
/// this long after it, which join the batches its requests finish in, and those before it
/// whose queues and batches its requests start among (`SETTLE`). In intervals of a second
/// or two, the interval alone held a fraction of the decode batch, and the oracle sized
/// decode for it (17.59% on `sin-5-45` decided every second).
fn in_flight_s(sla: &Sla, requests: &[Request]) -> f64 {
    let mut outputs: Vec<u32> = requests.iter().map(|r| r.osl).collect();
    let long_output = if outputs.is_empty() {
        0
    } else {
        let at = (outputs.len() - 1) * 99 / 100;
        *outputs.select_nth_unstable(at).1
    };
    (sla.ttft_ms + f64::from(long_output) * sla.itl_ms) / 1000.0
}

/// `need_for_interval`, with the requests in flight up to `in_flight_s` before and after it.
fn need_within(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
    k: usize,
    target: f64,
    in_flight_s: f64,
) -> (u32, u32) {
    let l = &cfg.limits;
    let start = k as f64 * cfg.interval_s;
    let end = start + cfg.interval_s;
    let warm = (start - cfg.interval_s.max(SETTLE * in_flight_s)).max(0.0);
    let lo = requests.partition_point(|r| r.arrival_s < warm);
    let hi = requests.partition_point(|r| r.arrival_s < end + in_flight_s);
    if !requests[lo..hi]
        .iter()
        .any(|r| r.arrival_s >= start && r.arrival_s < end)
    {
        return (l.min_prefill, l.min_decode);
    }
    let window: Vec<Request> = requests[lo..hi]
        .iter()
        .map(|r| Request {
            arrival_s: r.arrival_s - warm,
            ..*r
        })
        .collect();
    // The interval's own requests, in the window's time.
    let counted = (start - warm, end - warm);
    let (max_p, max_d) = role_caps(l);
    let max_p = reachable_by(cfg.router, window.len(), l.min_prefill, max_p);
    let max_d = reachable_by(cfg.router, window.len(), l.min_decode, max_d);
    if cfg.aggregated {
        // Workers do both: the fewest that meet both targets.
        let w = fewest_reaching(l.min_decode, max_d, target, |w| {
            probe(cfg, profile, &window, counted, 0, w)
        });
        return (0, w);
    }
    // A request's first token comes when its prompt is prefilled (and its KV sent), whatever
    // the decode engines: the prefill search runs beside the fewest.
    let p = fewest_reaching(l.min_prefill, max_p, target, |p| {
        (
            probe(cfg, profile, &window, counted, p, l.min_decode.max(1)).0,
            1.0,
        )
    });
    let d = fewest_reaching(l.min_decode, max_d, target, |d| {
        (1.0, probe(cfg, profile, &window, counted, p, d).1)
    });
    (p, d)
}

impl Policy for OraclePolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_replicas(&self) -> Option<(u32, u32)> {
        let (p, d, _, _) = self.targets_at(0.0);
        let (p, d, _) = self.limits.clamp(p, d);
        Some((p, d))
    }

    fn decide(&mut self, now_s: f64, _obs: &Observation) -> Decision {
        let (p, d, first, last) = self.targets_at(now_s);
        let reasons = vec![format!(
            "cheapest static deployment meeting the SLA over intervals {first}..{last} (known in advance)"
        )];
        Decision::clipped(&self.limits, p, d, reasons)
    }
}

/// The static deployment `static:best` runs: the cheapest that meets the target, or, when
/// none within the GPU budget does, the one within it that comes closest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BestStatic {
    pub prefill: u32,
    pub decode: u32,
    /// Whether it meets the target; false when the budget allows none that does.
    pub meets_target: bool,
}

/// The cheapest static deployment within the limits that meets `target` SLO attainment
/// over the whole workload, found by simulation (it sees the whole workload; a baseline,
/// not a policy anyone could run).
pub fn best_static(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
    target: f64,
) -> BestStatic {
    let l = &cfg.limits;
    let run = |p: u32, d: u32| {
        let mut c = cfg.clone();
        c.initial = (p, d);
        c.limits.min_prefill = p;
        c.limits.max_prefill = p;
        c.limits.min_decode = d;
        c.limits.max_decode = d;
        // Each role's search probes it beside the other's largest count, which together may
        // pass the budget; the pair returned is checked against it below.
        c.limits.gpu_budget = c.limits.gpu_budget.max(c.limits.gpus(p, d));
        let res = simulate(&c, profile, requests, &mut StaticPolicy::new(p, d), None);
        let served: Vec<_> = res.outcomes.iter().filter(|o| !o.rejected()).collect();
        let n = served.len().max(1) as f64;
        let ttft = served
            .iter()
            .filter(|o| o.ttft_ms as f64 <= cfg.sla.ttft_ms)
            .count() as f64
            / n;
        let itl = served
            .iter()
            .filter(|o| o.itl_ms as f64 <= cfg.sla.itl_ms)
            .count() as f64
            / n;
        let both = served.iter().filter(|o| o.meets(&cfg.sla)).count() as f64 / n;
        (ttft, itl, both)
    };
    let (max_p, max_d) = role_caps(l);
    let max_p = reachable_by(cfg.router, requests.len(), l.min_prefill, max_p);
    let max_d = reachable_by(cfg.router, requests.len(), l.min_decode, max_d);
    let fits = |p: u32, d: u32| l.gpus(p, d) <= l.gpu_budget;
    // Each role alone first, then grow the weaker until both hold: prefill beside the fewest
    // decode engines (they do not touch the first token), decode beside the prefill found.
    let mut p = smallest(l.min_prefill, max_p, |p| {
        run(p, l.min_decode.max(1)).0 >= target
    });
    let mut d = smallest(l.min_decode, max_d, |d| run(p, d).1 >= target);
    loop {
        let (ttft, itl, both) = run(p, d);
        if both >= target {
            if fits(p, d) {
                return BestStatic {
                    prefill: p,
                    decode: d,
                    meets_target: true,
                };
            }
            break;
        }
        let can_p = p < max_p && fits(p + 1, d);
        let can_d = d < max_d && fits(p, d + 1);
        if ttft <= itl && can_p {
            p += 1;
        } else if can_d {
            d += 1;
        } else if can_p {
            p += 1;
        } else {
            break;
        }
    }
    // No deployment within the budget meets the target (or the roles' own needs together
    // pass it): the split of the whole budget that serves the most requests within the SLA.
    let mut best = (l.min_prefill, l.min_decode, f64::NEG_INFINITY);
    for (p, d) in budget_splits(l, l.min_prefill, l.min_decode) {
        let both = run(p, d).2;
        if both > best.2 {
            best = (p, d, both);
        }
    }
    BestStatic {
        prefill: best.0,
        decode: best.1,
        meets_target: best.2 >= target,
    }
}

/// About the most any policy can reach from the deployment's start (`budget-at-start`):
/// the whole GPU budget ordered at time 0, before any request is seen, and ready a cold
/// start later, split as serves the most requests within the SLA. Every policy starts on
/// the same replicas and waits the same cold start for what it orders, and more capacity
/// sooner serves no fewer requests: where this falls short of a target, no policy, even one
/// that sees the future, reaches it from that start, short of re-splitting the budget as
/// the load moves. Returns the schedule: the start, and the split ordered at time 0.
pub fn budget_at_start(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
) -> [(f64, u32, u32); 2] {
    let l = &cfg.limits;
    let (p0, d0, _) = l.clamp(cfg.initial.0, cfg.initial.1);
    let met = |p: u32, d: u32| {
        let mut policy = SchedulePolicy::new(String::new(), vec![(0.0, p0, d0), (0.0, p, d)]);
        let res = simulate(cfg, profile, requests, &mut policy, None);
        res.outcomes.iter().filter(|o| o.meets(&cfg.sla)).count()
    };
    let splits: Vec<(u32, u32)> = if cfg.aggregated {
        vec![(0, role_caps(l).1.max(d0))]
    } else {
        budget_splits(l, p0, d0).collect()
    };
    let mut best = (p0, d0, None);
    for (p, d) in splits {
        let n = met(p, d);
        if best.2.is_none_or(|b| n > b) {
            best = (p, d, Some(n));
        }
    }
    [(0.0, p0, d0), (0.0, best.0, best.1)]
}

#[cfg(test)]
mod tests {
    use super::{fewest_reaching, in_flight_s, smallest};
    use crate::planner::Sla;
    use crate::workload::Request;

    #[test]
    fn a_stay_in_flight_is_the_bulk_of_outputs_not_the_longest() {
        let sla = Sla {
            ttft_ms: 200.0,
            itl_ms: 10.0,
        };
        let request = |osl| Request::new(0.0, 1000, osl);
        let bulk: Vec<Request> = (0..1000).map(|_| request(300)).collect();
        let stay = in_flight_s(&sla, &bulk);
        assert!((stay - 3.2).abs() < 1e-9, "{stay}");
        // One output of a long context's length would have every probe replay minutes.
        let mut with_one_long = bulk.clone();
        with_one_long[500] = request(128_000);
        assert_eq!(in_flight_s(&sla, &with_one_long), stay);
        assert_eq!(in_flight_s(&sla, &[]), 0.2);
    }

    #[test]
    fn smallest_finds_threshold() {
        assert_eq!(smallest(1, 10, |x| x >= 4), 4);
        assert_eq!(smallest(1, 10, |_| true), 1);
        assert_eq!(smallest(1, 10, |_| false), 10);
        assert_eq!(smallest(3, 3, |_| false), 3);
        for need in 1..=40 {
            assert_eq!(smallest(1, 40, |x| x >= need), need, "need {need}");
        }
    }

    /// A probe runs as many engines as it asks about: a few replicas needed within a budget
    /// of a million are found without running more than twice as many.
    #[test]
    fn smallest_probes_no_further_than_twice_the_answer() {
        for need in [1, 2, 3, 4, 7, 12, 100, 999_999] {
            let mut furthest = 0;
            let found = smallest(1, 1_000_000, |x| {
                furthest = furthest.max(x);
                x >= need
            });
            assert_eq!(found, need);
            assert!(furthest <= 2 * need, "need {need}: probed {furthest}");
        }
    }

    #[test]
    fn fewest_reaching_settles_for_what_the_most_reach() {
        // TTFT attainment rises to 0.95 at 5 replicas and no further; ITL always holds.
        let ttft = |x: u32| (0.6 + 0.07 * f64::from(x)).min(0.95);
        assert_eq!(fewest_reaching(1, 50, 0.99, |x| (ttft(x), 1.0)), 5);
        assert_eq!(fewest_reaching(1, 50, 0.90, |x| (ttft(x), 1.0)), 5);
        assert_eq!(fewest_reaching(1, 50, 0.80, |x| (ttft(x), 1.0)), 3);
        // Each count is run once, however many times the searches ask.
        let mut runs = std::collections::HashMap::new();
        fewest_reaching(1, 50, 0.99, |x| {
            *runs.entry(x).or_insert(0) += 1;
            (ttft(x), 1.0)
        });
        assert!(runs.values().all(|&n| n == 1), "{runs:?}");
    }
}
