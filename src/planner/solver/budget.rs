//! A GPU budget short of what both roles need: which split of it serves the most.

use std::ops::RangeInclusive;

use super::*;
use crate::planner::forecast::standard_normal_cdf;
use crate::planner::model::{decode_itl_at_batch, decode_mean_batch, largest_batch_within};

/// Under a binding budget. A request is served within the SLA only when both its TTFT and its
/// ITL are, and the two roles fail differently: prefill a little short loses the prompts
/// that wait longest, decode a little short nearly every request, as all on an engine run
/// the same steps. So where few splits are possible the budget goes to the split expected to
/// serve the most requests within both targets (`expected_split`). Otherwise, or where no
/// split is expected to serve any, it first goes to the counts that meet both targets for
/// the largest share of the load it can (a role starved for the other's sake fails every
/// request, not just the excess); what is left goes to the split, at or above those counts,
/// whose worse latency (as a multiple of its target) at the whole load is lowest.
pub(super) fn best_split_under_budget(
    model: &PerformanceModel,
    sla: &Sla,
    limits: &Limits,
    cfg: &SolverConfig,
    load: &Load,
    p_need: u32,
    d_need: u32,
) -> BudgetSplit {
    if let Some(found) = expected_split(model, sla, limits, cfg, load, p_need, d_need) {
        return BudgetSplit {
            prefill: found.split.0,
            decode: found.split.1,
            share: None,
            by_need: false,
            expected: Some(found.expected),
            passed_over: found.passed_over,
        };
    }
    let servable = largest_servable_share(model, sla, limits, cfg, load, p_need, d_need);
    let (p_floor, d_floor) =
        servable.map_or((limits.min_prefill, limits.min_decode), |(_, p, d)| (p, d));
    // Each prefill count leaves the budget's rest to decode, up to its need.
    let decode_left = |p: u32| {
        let left = limits
            .gpu_budget
            .saturating_sub(p.saturating_mul(limits.gpus_per_prefill_engine));
        (left / limits.gpus_per_decode_engine.max(1)).min(d_need)
    };
    // The latency ratios of the split at `p`: prefill's falls as `p` grows, decode's rises.
    let ratios = |p: u32| {
        let d = decode_left(p);
        (
            latency_ratio(prefill_ttft(model, cfg, load, p), sla.ttft_ms),
            latency_ratio(decode_itl(model, cfg, load, d), sla.itl_ms),
            d,
        )
    };
    let p_top = p_need.max(p_floor);
    // The splits that keep decode at its floor or more: a prefix of the prefill counts
    // (none when the floor's own split leaves decode short).
    let fits = decode_left(p_floor) >= d_floor;
    let p_last = if !fits || decode_left(p_top) >= d_floor {
        p_top
    } else {
        first_passing(p_floor, p_top, |p| decode_left(p) < d_floor) - 1
    };
    let many = fits && p_last - p_floor >= LINEAR_SEARCH;
    let candidates = if !fits {
        RangeInclusive::new(1, 0)
    } else if !many {
        p_floor..=p_last
    } else {
        // Thousands of splits: the worse ratio is lowest where prefill's stops being the
        // worse, found by bisection, or one count before.
        let prefill_not_worse = |p: u32| {
            let (t, i, _) = ratios(p);
            t <= i
        };
        if !prefill_not_worse(p_last) {
            p_last..=p_last
        } else {
            let crossing = first_passing(p_floor, p_last, prefill_not_worse);
            crossing - 1..=crossing
        }
    };
    let mut best = (p_floor, d_floor);
    let mut best_score = f64::INFINITY;
    for p in candidates {
        let (t, i, d) = ratios(p);
        let score = t.max(i);
        if score < best_score {
            best_score = score;
            best = (p, d);
        }
    }
    if many && best_score < f64::INFINITY {
        // Before the crossing prefill's ratio is the worse and never rises: the fewest
        // prefill engines as good as the best (a plateau where the slowest prompts alone
        // set the TTFT) are found by bisection, as the count-by-count search finds them.
        let as_good = |p: u32| {
            let (t, i, _) = ratios(p);
            t.max(i) <= best_score
        };
        let good = if as_good(p_floor) {
            p_floor
        } else {
            first_passing(p_floor, best.0, as_good)
        };
        best = (good, decode_left(good));
    }
    let share = servable.map(|s| s.0);
    if best_score >= UNREACHABLE {
        // No split keeps up with the whole load: share the budget in proportion to the needs
        // rather than starve one role (the first split tried would be the smallest prefill),
        // short of neither count the servable share needs.
        let (p, d) = proportional_split(limits, p_need, d_need);
        let rest = |taken: u32, per: u32, other_per: u32, most: u32| {
            (limits.gpu_budget.saturating_sub(taken.saturating_mul(per)) / other_per.max(1))
                .min(most)
        };
        let (gp, gd) = (
            limits.gpus_per_prefill_engine,
            limits.gpus_per_decode_engine,
        );
        let (prefill, decode) = if p < p_floor {
            (p_floor, rest(p_floor, gp, gd, d_need).max(d_floor))
        } else if d < d_floor {
            (rest(d_floor, gd, gp, p_need).max(p_floor), d_floor)
        } else {
            (p, d)
        };
        return BudgetSplit {
            prefill,
            decode,
            share,
            by_need: true,
            expected: None,
            passed_over: None,
        };
    }
    BudgetSplit {
        prefill: best.0,
        decode: best.1,
        share,
        by_need: false,
        expected: None,
        passed_over: None,
    }
}

/// The split of a binding budget, and how it was found.
pub(super) struct BudgetSplit {
    pub(super) prefill: u32,
    pub(super) decode: u32,
    /// The largest share of the load both targets are met for (a lower bound), if any.
    pub(super) share: Option<f64>,
    /// Shared in proportion to the needs: no split keeps up with the whole load.
    pub(super) by_need: bool,
    /// Chosen for the most requests expected within both targets: that share.
    pub(super) expected: Option<f64>,
    /// A split expected to serve more, not moved to: an engine moved between the roles
    /// leaves one short before the other is served (`SolverConfig::incumbent`).
    pub(super) passed_over: Option<((u32, u32), f64)>,
}

/// Shares of the planned load the expected split is weighed at. The plan is an upper bound
/// (the forecast's, with the backlog to work off) and the load that comes mostly below it:
/// a split weighed at the bound alone would be judged where few would serve anyone, and
/// decode's cliff would fall on every split alike.
const EXPECTED_AT_SHARES: [f64; 3] = [0.5, 0.75, 1.0];

/// Below this share of requests expected within both targets for every split, the counts
/// are sized by share of load and latency ratio instead: the expectation then tells the
/// splits apart by noise.
const MIN_EXPECTED: f64 = 0.05;

/// The split of the budget expected to serve the most requests within both targets, and that
/// share: each split's share of prompts within the TTFT target times its share of requests
/// within the ITL target (by the batch quantile at which the ITL reaches it), averaged over
/// `EXPECTED_AT_SHARES` of the load. `None` where the splits are too many to weigh each
/// (more than `LINEAR_SEARCH` prefill counts) or none is expected to serve `MIN_EXPECTED`.
/// Ties go to the split whose worse latency ratio is lower.
fn expected_split(
    model: &PerformanceModel,
    sla: &Sla,
    limits: &Limits,
    cfg: &SolverConfig,
    load: &Load,
    p_need: u32,
    d_need: u32,
) -> Option<ExpectedSplit> {
    let lo = limits.min_prefill;
    let hi = p_need.max(lo);
    if hi - lo > LINEAR_SEARCH {
        return None;
    }
    let (gp, gd) = (
        limits.gpus_per_prefill_engine,
        limits.gpus_per_decode_engine.max(1),
    );
    let parts: Vec<Load> = EXPECTED_AT_SHARES
        .iter()
        .map(|&f| Load {
            lambda: load.lambda * f,
            backlog_tokens: load.backlog_tokens * f,
            ..*load
        })
        .collect();
    let c = &model.corrections;
    let terms = c.decode_terms();
    let largest_batch = largest_batch_within_itl(model, sla, cfg, load);
    // The share of requests within both targets on `p` and `d` engines, averaged over the
    // parts, and the worse latency ratio at the whole load.
    let expected_at = |p: u32, d: u32| {
        let mut sum = 0.0;
        let mut worse = UNREACHABLE;
        for (&share, part) in EXPECTED_AT_SHARES.iter().zip(&parts) {
            let lambda = effective_lambda(part);
            let queue = model.prefill_queue(lambda, p, part.prefill_isl);
            let variability = model.waiting_variability(lambda, p, part.prefill_isl);
            let in_ttft = in_quantile_range(queue.slowest_share_within(
                sla.ttft_ms,
                c.prefill_tail,
                variability,
            ));
            let batch = decode_mean_batch(&model.decode, terms, lambda, d, part.isl, part.osl);
            let in_itl = match (batch, largest_batch) {
                (Some(n), Some(most)) => within_batch(n, most, c.decode_variability),
                _ => 0.0,
            };
            sum += in_ttft * in_itl;
            if share == 1.0 {
                // The whole load: the latency ratios `prefill_ttft` and `decode_itl` give.
                let ttft =
                    queue.slowest_quantile_ms(cfg.ttft_quantile, c.prefill_tail, variability);
                let itl = batch.and_then(|n| {
                    decode_itl_at_batch(
                        &model.decode,
                        terms,
                        n,
                        part.isl,
                        part.osl,
                        cfg.itl_batch_z * c.decode_variability,
                        cfg.kv_fraction,
                    )
                });
                worse = latency_ratio(ttft, sla.ttft_ms)
                    .max(latency_ratio(itl.unwrap_or(f64::INFINITY), sla.itl_ms));
            }
        }
        (sum / parts.len() as f64, worse)
    };
    // Moving an engine from one role to the other: for a cold start the role that gave it
    // is short and the other not yet served. A split away from the one running is worth
    // its gain over a horizon once ready (a cold start and a step) less its loss over the
    // cold start, in the split between them: it gives `weight` (the cold start's share)
    // times that loss back. On the conversation trace at 5 GPUs the solver moved a GPU to
    // prefill and back within three minutes, each time for a share a point or two higher,
    // and each move left both roles an engine short for its cold start.
    let incumbent = cfg
        .incumbent
        .filter(|&((p, d), _)| p >= lo && limits.gpus(p, d) <= limits.gpu_budget);
    let mut splits = Vec::new();
    for p in lo..=hi {
        let left = limits.gpu_budget.saturating_sub(p.saturating_mul(gp));
        let d = (left / gd).min(d_need.max(limits.min_decode));
        if d < limits.min_decode || limits.gpus(p, d) > limits.gpu_budget {
            break;
        }
        let (expected, worse) = expected_at(p, d);
        splits.push(((p, d), expected, worse));
    }
    // The split between the one running and `(p, d)`, when the move gives an engine up.
    let between = |(p, d): (u32, u32)| {
        let ((ip, id), _) = incumbent?;
        let between = (p.min(ip), d.min(id).max(limits.min_decode));
        (between != (ip, id)).then_some(between)
    };
    // A split that gives nothing up is worth what it serves: a split worth less than the
    // best of those cannot win, and its cost (which only lowers it) is not worked out.
    let free_best = splits
        .iter()
        .filter(|(split, _, _)| between(*split).is_none())
        .map(|&(_, e, _)| e)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut at_incumbent = None;
    let mut best: Option<Weighed> = None;
    let mut most_expected: Option<(f64, (u32, u32))> = None;
    for &(split, expected, worse) in &splits {
        let score = match (between(split), incumbent) {
            (Some(_), _) if expected <= free_best - 1e-3 => f64::NEG_INFINITY,
            (Some(there), Some(((ip, id), weight))) => {
                let running = *at_incumbent.get_or_insert_with(|| expected_at(ip, id).0);
                expected - weight * (running - expected_at(there.0, there.1).0).max(0.0)
            }
            _ => expected,
        };
        let better =
            |b: &Weighed| score > b.score + 1e-3 || (score > b.score - 1e-3 && worse < b.worse);
        if best.as_ref().is_none_or(better) {
            best = Some(Weighed {
                score,
                worse,
                expected,
                split,
            });
        }
        if most_expected.is_none_or(|(e, _)| expected > e + 1e-3) {
            most_expected = Some((expected, split));
        }
    }
    let best = best.filter(|b| b.expected >= MIN_EXPECTED)?;
    let passed_over = most_expected
        .filter(|&(e, split)| split != best.split && e > best.expected + 1e-3)
        .map(|(e, split)| (split, e));
    Some(ExpectedSplit {
        split: best.split,
        expected: best.expected,
        passed_over,
    })
}

/// A split of the budget as `expected_split` weighs it: what it is worth (what it is
/// expected to serve, less what moving to it costs), its worse latency ratio, and what it
/// is expected to serve.
struct Weighed {
    score: f64,
    worse: f64,
    expected: f64,
    split: (u32, u32),
}

/// The split `expected_split` found, the share of requests it is expected to serve, and the
/// split expected to serve more that an engine's move would cost more than it gains.
pub(super) struct ExpectedSplit {
    pub(super) split: (u32, u32),
    pub(super) expected: f64,
    pub(super) passed_over: Option<((u32, u32), f64)>,
}

/// The largest decode batch whose ITL is within the target and whose reservations fit the
/// usable KV: the same for every count, as the batch sets the ITL. `None` when not even a
/// batch of one is.
fn largest_batch_within_itl(
    model: &PerformanceModel,
    sla: &Sla,
    cfg: &SolverConfig,
    load: &Load,
) -> Option<f64> {
    largest_batch_within(
        &model.decode,
        model.corrections.decode_terms(),
        load.isl,
        load.osl,
        sla.itl_ms,
        cfg.kv_fraction,
    )
}

/// The share of requests whose batch stays within `most` when the mean batch is `n`: the
/// normal quantile whose deviation above the mean (`spread` times random arrivals' swing,
/// as the solver's batch quantile) reaches it, in `QUANTILE_RANGE`.
fn within_batch(n: f64, most: f64, spread: f64) -> f64 {
    let swing = spread * n.max(0.0).sqrt();
    let q = if swing > 0.0 {
        standard_normal_cdf((most - n) / swing)
    } else if n <= most {
        1.0
    } else {
        0.0
    };
    in_quantile_range(q)
}

/// A share within a target as the solver tells shares apart: none below `QUANTILE_RANGE`,
/// and no more than its top.
fn in_quantile_range(q: f64) -> f64 {
    if q < QUANTILE_RANGE.0 {
        0.0
    } else {
        q.min(QUANTILE_RANGE.1)
    }
}

/// The quantiles a share within a target is told apart in: beyond them the model's tails
/// say little.
const QUANTILE_RANGE: (f64, f64) = (0.001, 0.999);

/// Halvings of the load's share in the search for the largest the budget serves: to 1/1024
/// of the load, finer than one engine's worth below a thousand engines.
const SHARE_HALVINGS: u32 = 10;

/// The largest share of the load (rate and backlog alike) for which the fewest counts that
/// meet both targets fit the budget, with those counts; `None` when not even the smallest
/// share does (a target no count meets, or the minimums over the budget). No share needs more
/// than the whole load's `p_need` and `d_need`.
fn largest_servable_share(
    model: &PerformanceModel,
    sla: &Sla,
    limits: &Limits,
    cfg: &SolverConfig,
    load: &Load,
    p_need: u32,
    d_need: u32,
) -> Option<(f64, u32, u32)> {
    // Counts never fall as the load grows: the shares that fit are a prefix, and the counts
    // at a share lie between those at a smaller and at a larger one, so each search runs
    // from the counts of the last share that fit to those of the last that did not.
    let (mut lo, mut hi) = (0.0, 1.0);
    let (mut p_lo, mut d_lo) = (limits.min_prefill, limits.min_decode);
    let (mut p_hi, mut d_hi) = (p_need, d_need);
    let mut found = None;
    for _ in 0..SHARE_HALVINGS {
        // Once neither role can take one more engine within the budget and its bracket, a
        // larger share would keep these counts: the share is then a lower bound, the counts
        // exact.
        let grows = |n: u32, most: u32, (p, d): (u32, u32)| {
            n < most && limits.gpus(p, d) <= limits.gpu_budget
        };
        if found.is_some()
            && !grows(p_lo, p_hi, (p_lo + 1, d_lo))
            && !grows(d_lo, d_hi, (p_lo, d_lo + 1))
        {
            break;
        }
        let mid = 0.5 * (lo + hi);
        let part = Load {
            lambda: load.lambda * mid,
            backlog_tokens: load.backlog_tokens * mid,
            ..*load
        };
        let p = smallest(p_lo, p_hi, |p| prefill_meets(model, cfg, &part, sla, p)).map(|x| x.0);
        // Prefill alone past the budget leaves decode nothing to find.
        let d = p
            .filter(|&p| limits.gpus(p, d_lo) <= limits.gpu_budget)
            .and_then(|_| {
                smallest(d_lo, d_hi, |d| {
                    decode_itl_up_to(model, cfg, &part, d, sla.itl_ms)
                })
            })
            .map(|x| x.0);
        match (p, d) {
            (Some(p), Some(d)) if limits.gpus(p, d) <= limits.gpu_budget => {
                found = Some((mid, p, d));
                (lo, p_lo, d_lo) = (mid, p, d);
            }
            _ => {
                hi = mid;
                p_hi = p.unwrap_or(p_hi);
                d_hi = d.unwrap_or(d_hi);
            }
        }
    }
    found
}

/// Latency ratio standing for "cannot keep up at all".
const UNREACHABLE: f64 = 1e9;

/// A latency as a multiple of its target; `UNREACHABLE` where it is infinite.
fn latency_ratio(ms: f64, target_ms: f64) -> f64 {
    if ms.is_finite() {
        ms / target_ms
    } else {
        UNREACHABLE
    }
}

/// The split of the GPU budget in proportion to each role's need in GPUs, within limits.
fn proportional_split(limits: &Limits, p_need: u32, d_need: u32) -> (u32, u32) {
    let gp = limits.gpus_per_prefill_engine.max(1);
    let gd = limits.gpus_per_decode_engine.max(1);
    let need_p = f64::from(p_need * gp);
    let need_d = f64::from(d_need * gd);
    let share_p = need_p / (need_p + need_d).max(1.0);
    let p = ((f64::from(limits.gpu_budget) * share_p / f64::from(gp)).round() as u32)
        .clamp(limits.min_prefill, p_need.max(limits.min_prefill));
    let left = limits.gpu_budget.saturating_sub(p * gp);
    let d = (left / gd).clamp(limits.min_decode, d_need.max(limits.min_decode));
    (p, d)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{limits, load, CFG, SLA};
    use super::*;

    /// The split every count at a time: the worse latency ratio lowest, the fewest prefill
    /// engines among equals (the search `best_split_under_budget` makes below 64 counts).
    fn split_count_by_count(
        m: &PerformanceModel,
        l: &Limits,
        load: &Load,
        floor: (u32, u32),
        p_need: u32,
        d_need: u32,
    ) -> (u32, u32) {
        let mut best = (floor, f64::INFINITY);
        for p in floor.0..=p_need.max(floor.0) {
            // One GPU per engine in these limits.
            let d = l.gpu_budget.saturating_sub(p).min(d_need);
            if d < floor.1 {
                break;
            }
            let r = |v: f64, t: f64| if v.is_finite() { v / t } else { UNREACHABLE };
            let score = r(prefill_ttft(m, &CFG, load, p), SLA.ttft_ms)
                .max(r(decode_itl(m, &CFG, load, d), SLA.itl_ms));
            if score < best.1 {
                best = ((p, d), score);
            }
        }
        best.0
    }

    #[test]
    fn a_budget_of_hundreds_is_split_as_count_by_count() {
        let m = PerformanceModel::embedded_default();
        let big = |budget: u32| Limits {
            max_prefill: budget,
            max_decode: budget,
            ..limits(budget)
        };
        // Loads past budgets of hundreds of GPUs, and one whose slowest prompts alone miss
        // the TTFT target (a plateau of equal splits, where the fewest prefill engines win).
        // Prompts so long that the slowest alone miss the TTFT target: no share of the load
        // is served within both targets, and hundreds of splits are as good as the fewest
        // prefill engines that bring the rest within it (a plateau the search must not
        // walk along to its far end).
        for (budget, lambda) in [(100, 16.0), (300, 40.0), (1000, 16.0), (1000, 120.0)] {
            let l = Load {
                isl: 100_000.0,
                prefill_isl: 100_000.0,
                ..load(lambda)
            };
            let need = |limits: &Limits| {
                let p = smallest(1, limits.max_prefill, |p| {
                    prefill_meets(&m, &CFG, &l, &SLA, p)
                })
                .map_or(limits.max_prefill, |x| x.0);
                let d = smallest(1, limits.max_decode, |d| {
                    decode_itl_up_to(&m, &CFG, &l, d, SLA.itl_ms)
                })
                .map_or(limits.max_decode, |x| x.0);
                (p, d)
            };
            let limits = big(budget);
            let (p_need, d_need) = need(&limits);
            assert!(
                p_need + d_need > budget,
                "budget {budget} must bind: {p_need}P+{d_need}D"
            );
            let split = best_split_under_budget(&m, &SLA, &limits, &CFG, &l, p_need, d_need);
            let floor = largest_servable_share(&m, &SLA, &limits, &CFG, &l, p_need, d_need)
                .map_or((1, 1), |(_, p, d)| (p, d));
            assert!(!split.by_need, "budget {budget}");
            assert_eq!(
                (split.prefill, split.decode),
                split_count_by_count(&m, &limits, &l, floor, p_need, d_need),
                "budget {budget}"
            );
        }
    }

    #[test]
    fn budget_binds() {
        let m = PerformanceModel::embedded_default();
        let s = solve(&m, &SLA, &limits(6), &CFG, &load(45.0));
        assert_eq!(s.prefill + s.decode, 6);
        assert!(s
            .notes
            .iter()
            .any(|n| n.to_string().contains("GPU budget 6 binds")));
        assert!(!s.meets, "{s:?}");
        let roomy = solve(&m, &SLA, &limits(32), &CFG, &load(45.0));
        assert!(roomy.meets, "{roomy:?}");
    }

    #[test]
    fn overload_past_the_budget_splits_it_by_need() {
        // 120 req/s needs far more than 12 GPUs in both roles: neither role is starved.
        let m = PerformanceModel::embedded_default();
        let s = solve(&m, &SLA, &limits(12), &CFG, &load(120.0));
        assert_eq!(s.prefill + s.decode, 12, "{s:?}");
        assert!(s.prefill >= 4 && s.decode >= 4, "{s:?}");
    }

    #[test]
    fn a_budget_far_short_of_the_load_serves_the_largest_share_any_split_can() {
        // A request meets the SLA only when both its TTFT and its ITL do: a split that
        // starves one role to bring the other's latency closer to target fails them all.
        // Where no split is expected to serve even a few requests within both targets,
        // each case is checked against every split of the budget, each served as large a
        // share of the load (rate and backlog alike) as meets both targets on it.
        let m = PerformanceModel::embedded_default();
        let cases = [
            // Prompts past what any split can serve in time.
            Load {
                lambda: 1000.0,
                isl: 2100.0,
                prefill_isl: 2100.0,
                osl: 26.0,
                backlog_tokens: 2.0e5,
                drain_s: 60.0,
            },
            load(400.0),
            // Long answers: decode far short.
            Load {
                lambda: 60.0,
                isl: 500.0,
                prefill_isl: 500.0,
                osl: 1500.0,
                ..load(0.0)
            },
        ];
        let served = |l: &Load, p: u32, d: u32| -> f64 {
            (0..=1000)
                .map(|i| f64::from(i) / 1000.0)
                .take_while(|&share| {
                    let part = Load {
                        lambda: l.lambda * share,
                        backlog_tokens: l.backlog_tokens * share,
                        ..*l
                    };
                    prefill_meets(&m, &CFG, &part, &SLA, p).is_some()
                        && decode_itl_up_to(&m, &CFG, &part, d, SLA.itl_ms).is_some()
                })
                .last()
                .unwrap_or(0.0)
        };
        for (budget, l) in [(16, cases[0]), (12, cases[1]), (10, cases[2])] {
            let s = solve(&m, &SLA, &limits(budget), &CFG, &l);
            assert!(!s.meets && s.prefill + s.decode <= budget, "{s:?}");
            assert!(
                s.notes
                    .iter()
                    .any(|n| n.to_string().contains("meets both targets for at least")),
                "{s:?}"
            );
            let best = (1..budget)
                .map(|p| served(&l, p, budget - p))
                .fold(0.0, f64::max);
            assert!(best > 0.0, "{l:?}");
            let got = served(&l, s.prefill, s.decode);
            assert!(
                got >= best - 0.002,
                "{l:?} at budget {budget}: {}P+{}D serves {got}, a split serves {best}",
                s.prefill,
                s.decode
            );
        }
    }

    /// The share of requests within both targets the model expects of `p` prefill and `d`
    /// decode engines, averaged over half, three quarters and all of the load: read off a
    /// grid of a thousand quantiles (the solver searches them).
    fn expected_on_a_grid(m: &PerformanceModel, l: &Load, p: u32, d: u32) -> f64 {
        let c = m.corrections;
        let grid = || (1..1000).map(|i| f64::from(i) / 1000.0);
        let at = |f: f64| {
            let part = Load {
                lambda: l.lambda * f,
                backlog_tokens: l.backlog_tokens * f,
                ..*l
            };
            let lambda = effective_lambda(&part);
            let queue = m.prefill_queue(lambda, p, part.prefill_isl);
            let variability = m.waiting_variability(lambda, p, part.prefill_isl);
            let ttft = grid()
                .rfind(|&q| {
                    queue.slowest_quantile_ms(q, c.prefill_tail, variability) <= SLA.ttft_ms
                })
                .unwrap_or(0.0);
            let n = decode_mean_batch(&m.decode, c.decode_terms(), lambda, d, part.isl, part.osl);
            let itl = n.map_or(0.0, |n| {
                grid()
                    .rfind(|&q| {
                        decode_itl_at_batch(
                            &m.decode,
                            c.decode_terms(),
                            n,
                            part.isl,
                            part.osl,
                            crate::planner::model::normal_quantile(q) * c.decode_variability,
                            CFG.kv_fraction,
                        )
                        .is_some_and(|itl| itl <= SLA.itl_ms)
                    })
                    .unwrap_or(0.0)
            });
            ttft * itl
        };
        (at(0.5) + at(0.75) + at(1.0)) / 3.0
    }

    #[test]
    fn a_budget_a_little_short_goes_to_the_split_that_serves_the_most_requests() {
        // Needs one or two engines past the budget. Every request on a decode engine runs
        // the same steps, so decode a little short fails nearly all of them, where prefill
        // a little short fails the prompts that wait longest: the split is chosen for the
        // requests it serves within both targets, checked against every split.
        let m = PerformanceModel::embedded_default();
        let cases = [
            Load {
                lambda: 50.0,
                isl: 1400.0,
                prefill_isl: 1400.0,
                osl: 150.0,
                ..load(0.0)
            },
            load(60.0),
            load(120.0),
            Load {
                lambda: 40.0,
                isl: 1000.0,
                prefill_isl: 1000.0,
                osl: 250.0,
                ..load(0.0)
            },
        ];
        let mut budgets: Vec<(Load, u32)> = cases
            .iter()
            .zip([1, 1, 4, 1])
            .map(|(l, short_by)| {
                let need = solve(&m, &SLA, &limits(64), &CFG, l);
                assert!(need.meets, "{need:?}");
                (*l, need.prefill + need.decode - short_by)
            })
            .collect();
        // Short answers to long prompts, as the code trace's, prefill far short: most
        // requests are still served by giving decode no more than it needs.
        let code = Load {
            lambda: 500.0,
            isl: 2100.0,
            prefill_isl: 2100.0,
            osl: 26.0,
            backlog_tokens: 2.0e5,
            drain_s: 60.0,
        };
        budgets.push((code, 16));
        for (l, budget) in &budgets {
            let (l, budget) = (l, *budget);
            let s = solve(&m, &SLA, &limits(budget), &CFG, l);
            assert!(
                s.notes
                    .iter()
                    .any(|n| n.to_string().contains("expected to meet both targets for")),
                "{s:?}"
            );
            let got = expected_on_a_grid(&m, l, s.prefill, s.decode);
            for p in 1..budget {
                let other = expected_on_a_grid(&m, l, p, budget - p);
                assert!(
                    got >= other - 0.005,
                    "{l:?} at budget {budget}: {}P+{}D serves {got}, {p}P+{}D {other}",
                    s.prefill,
                    s.decode,
                    budget - p
                );
            }
        }
        // The first case: the split that keeps decode whole, by a wide margin.
        let l = cases[0];
        let need = solve(&m, &SLA, &limits(64), &CFG, &l);
        let s = solve(&m, &SLA, &limits(need.prefill + need.decode - 1), &CFG, &l);
        assert_eq!(
            (s.prefill, s.decode),
            (need.prefill - 1, need.decode),
            "{s:?}"
        );
        let decode_short = expected_on_a_grid(&m, &l, need.prefill, need.decode - 1);
        assert!(
            expected_on_a_grid(&m, &l, s.prefill, s.decode) > decode_short + 0.1,
            "{decode_short}"
        );
    }

    #[test]
    fn moving_an_engine_between_the_roles_is_weighed_against_what_it_costs_while_it_starts() {
        // The split running is decode-short; the split serving the most keeps decode whole.
        // Moving an engine leaves one fewer in a role before the other is served: priced at
        // nothing the planner moves, priced past any gain it keeps the split running and
        // says which it passed over. A deployment below the budget gives nothing up to grow.
        let m = PerformanceModel::embedded_default();
        let l = Load {
            lambda: 50.0,
            isl: 1400.0,
            prefill_isl: 1400.0,
            osl: 150.0,
            ..load(0.0)
        };
        let need = solve(&m, &SLA, &limits(64), &CFG, &l);
        let budget = limits(need.prefill + need.decode - 1);
        let running = (need.prefill, need.decode - 1);
        let best = (need.prefill - 1, need.decode);
        let with = |incumbent, weight| SolverConfig {
            incumbent: Some((incumbent, weight)),
            ..CFG
        };
        let free = solve(&m, &SLA, &budget, &with(running, 0.0), &l);
        assert_eq!((free.prefill, free.decode), best, "{free:?}");
        let dear = solve(&m, &SLA, &budget, &with(running, 100.0), &l);
        assert_eq!((dear.prefill, dear.decode), running, "{dear:?}");
        let passed = format!("{}P+{}D, ", best.0, best.1);
        assert!(
            dear.notes.iter().any(|n| {
                let n = n.to_string();
                n.contains(&passed) && n.contains("not moved to")
            }),
            "{dear:?}"
        );
        let growing = solve(&m, &SLA, &budget, &with((1, 1), 100.0), &l);
        assert_eq!((growing.prefill, growing.decode), best, "{growing:?}");
    }
}
