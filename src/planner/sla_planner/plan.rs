//! Planning the horizon: the rate each step to the horizon is sized for, and the most each
//! role needs at any of them.

use super::*;

/// The rate step `step` of a horizon of `h` is sized for: the forecast's bound, narrower
/// for nearer steps by the square root of the distance (the errors behind it were measured
/// `h` steps ahead; a random walk's spread grows so), and, where the load rises into the
/// next step, half that rise. A forecast is of a step's mean; rising, the load ends the step
/// higher, and a queue sized for the mean is short by the step's end.
pub(super) fn step_rate(f: &SignalForecaster, step: usize, h: usize, z: f64) -> Option<f64> {
    rate_at_step(f, f.forecast(step, z)?, step, h)
}

/// `step_rate` from the forecast `here` at the step (its bound, or its worst case).
fn rate_at_step(f: &SignalForecaster, here: SignalForecast, step: usize, h: usize) -> Option<f64> {
    let next = f.point(step + 1)?;
    let nearer = (step as f64 / h.max(1) as f64).sqrt();
    Some(here.point + (here.upper - here.point) * nearer + ((next - here.point) / 2.0).max(0.0))
}

/// A forecast `step` steps ahead, past the horizon `h` its errors were measured at: `at`'s
/// forecast at the horizon, its margin kept, moved with the point to the step.
fn beyond_horizon(
    f: &SignalForecaster,
    at: impl Fn(usize) -> Option<SignalForecast>,
    step: usize,
    h: usize,
) -> Option<SignalForecast> {
    let there = at(h)?;
    let shift = f.point(step)? - there.point;
    Some(SignalForecast {
        point: there.point + shift,
        upper: there.upper + shift,
        method: there.method,
    })
}

/// The rates step `step` of a horizon of `h` may see, equally likely: the point plus each of
/// the forecast's recent misses at the horizon (less a lag behind a trend that has ended, as
/// the bound takes them), narrowed and raised by half a rise into the next step as the bound
/// is, then lifted where the bound (`step_rate`'s, given as `bound`) was raised above their
/// quantile `z` (a rise or a jump under way, which the misses behind have not seen), and no
/// higher than the ceiling of a burst like those before it. `None` until the misses are
/// measured.
pub(super) fn step_rate_outcomes(
    f: &SignalForecaster,
    step: usize,
    h: usize,
    z: f64,
    bound: f64,
) -> Option<Vec<f64>> {
    let misses = f.recent_misses(z)?;
    let point = f.point(step)?;
    let rise = ((f.point(step + 1)? - point) / 2.0).max(0.0);
    let nearer = (step as f64 / h.max(1) as f64).sqrt();
    let outcomes: Vec<f64> = misses.iter().map(|e| point + e * nearer + rise).collect();
    let lift = (bound - empirical_quantile(&outcomes, standard_normal_cdf(z))).max(0.0);
    let ceiling = f.excursion_ceiling().map_or(f64::INFINITY, |c| c.level);
    Some(
        outcomes
            .into_iter()
            .map(|r| (r + lift).min(ceiling).max(0.0))
            .collect(),
    )
}

/// The quantiles a horizon is planned at: the rate's bound, and the lengths' (`None`: their
/// point forecasts); and whether prefill may be sized for the prompts expected to miss over
/// the rates the forecast may see rather than for the rate at its bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quantiles {
    pub(super) rate: f64,
    pub(super) lengths: Option<f64>,
    pub(super) expected_misses: bool,
    /// The rate at its forecast's worst case (`SignalForecaster::worst_case`), not its bound.
    pub(super) worst_case: bool,
}

/// What the search over the horizon found: the most each role needs at any step planned.
pub(super) struct HorizonPlan {
    pub(super) prefill: u32,
    pub(super) decode: u32,
    /// The solver's answer at the step that asked the most (its expected latencies, notes).
    pub(super) solution: crate::planner::solver::Solution,
    pub(super) load: Load,
    /// That step, counted in forecast steps from the newest step seen (0: the rate just seen).
    pub(super) step: usize,
    /// The furthest step planned.
    pub(super) last_step: usize,
    /// The rate method that set the load, and whether it was the copy that took the step
    /// under way for a whole one; `None` when the rate just seen set it.
    pub(super) source: Option<(ForecasterKind, bool)>,
    /// The method the rate forecaster uses now (reported with the decision's forecast).
    pub(super) method: Option<ForecasterKind>,
    /// The peak the load keeps coming back to, when that is the load planned for (above
    /// the forecast's bound).
    pub(super) recurring: Option<RecurringPeak>,
    /// What a step over before capacity ordered now could be ready asked for beyond what is
    /// there and the rest of the plan, said as a reason.
    pub(super) too_late: Option<String>,
    /// The ceiling of a burst like those before it, where it lowered the rate's forecast.
    pub(super) ceiling: Option<ExcursionCeiling>,
}

impl SlaPlanner {
    /// Sizes both roles for every step from the interval just seen to the moment capacity
    /// asked for at the next decision could be ready, and keeps the most each role needs.
    /// `unseen_s`: the time since the newest interval seen ended (nonzero only while the
    /// request count is missing), by which the moment capacity could be ready moves on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_horizon(
        &self,
        rate: f64,
        interval_s: f64,
        step_s: f64,
        backlog: f64,
        quantiles: Quantiles,
        held: (u32, u32),
        unseen_s: f64,
    ) -> HorizonPlan {
        // The errors behind the bound are measured `h` steps ahead; the solver sizes up to
        // the step holding the moment capacity asked for at the next decision could be
        // ready, counted from the newest step the forecasters have seen.
        // Before a first step the step under way is the newest, and it ends now.
        let h = self.horizon_steps(interval_s, step_s);
        // Steps are counted from the end of the newest step seen: `ready_after_s` past it, a
        // replica ordered now is ready.
        let since_newest_s = if self.rate.is_empty() {
            0.0
        } else {
            self.pool.span_s()
        };
        let ready_after_s = since_newest_s + unseen_s + self.cold_start_s();
        let last_step = if self.rate.is_empty() {
            h
        } else {
            ((ready_after_s + interval_s) / step_s)
                .ceil()
                .clamp(1.0, MAX_HORIZON_STEPS as f64) as usize
        };
        // The step under way, taken for a whole one by a copy of the forecasters: until a
        // first step is complete it is all there is (the start is when a ramp is likeliest
        // to be missed); after, it may raise the plan, not lower it (a jump within the step
        // is met at once; a quiet stretch of it waits for the step, as a burst may follow).
        let provisional = self.pool.peek().map(|partial| {
            let mut copies = (self.rate.clone(), self.isl.clone(), self.osl.clone());
            Self::observe_into(
                (&mut copies.0, &mut copies.1, &mut copies.2),
                &partial,
                step_s,
                h,
            );
            copies
        });
        let committed = (!self.rate.is_empty()).then_some((&self.rate, &self.isl, &self.osl));
        let (isl_forecaster, osl_forecaster) = match (committed, &provisional) {
            (Some((_, i, o)), _) => (i, o),
            (None, Some((_, i, o))) => (i, o),
            (None, None) => (&self.isl, &self.osl),
        };
        let rate_forecasters: Vec<(&SignalForecaster, bool)> = committed
            .iter()
            .map(|c| (c.0, false))
            .chain(provisional.iter().map(|p| (&p.0, true)))
            .collect();

        let z = normal_quantile(quantiles.rate);
        let solver_cfg = SolverConfig {
            ttft_quantile: self.cfg.ttft_quantile,
            itl_batch_z: itl_batch_z(self.cfg.itl_quantile),
            kv_fraction: self.cfg.kv_fraction,
            mode: self.cfg.mode,
            // A split of a binding budget away from the one running is weighed over a
            // horizon once ready, the split between over the cold start.
            incumbent: Some((
                held,
                self.cold_start_s() / (self.cold_start_s() + step_s).max(1.0),
            )),
        };
        // Lengths: the forecast point, or its bound when asked (falling back to the last
        // seen, then to a mid-size request when nothing has been seen: with no traffic the
        // rate is 0 anyway).
        let length_z = quantiles.lengths.map(normal_quantile);
        let length = |f: &SignalForecaster, step: usize, fallback: f64| {
            f.forecast(step, length_z.unwrap_or(0.0))
                .map(|x| match length_z {
                    Some(_) => x.upper.max(x.point),
                    None => x.point,
                })
                .map(|l| l.max(1.0))
                .unwrap_or(fallback)
        };
        // The peak the load keeps coming back to, from the committed steps: a step under way
        // is no excursion yet.
        let recurring_peak = committed.and_then(|c| c.0.recurring_peak(z));
        let mut best: Option<(HorizonPlan, Option<(&SignalForecaster, bool)>)> = None;
        // The last step that asked for more than is there before more could be ready.
        let mut too_late: Option<((u32, u32), usize)> = None;
        // Step 0 is the interval just seen (a jump the forecasters have not caught up with);
        // steps 1..=last_step cover until capacity asked for at the next decision could be ready.
        for step in planned_steps(last_step) {
            // The errors behind the bound were measured `h` steps ahead; nearer steps are
            // surer, by the square root of the distance (as a random walk's spread grows).
            // While the count is missing the steps run past the horizon the errors were
            // measured at. The forecast's point goes on (a period keeps its shape); its
            // margin is taken as at the horizon, not widened with the time unseen (a
            // random walk's spread by its square root, a rise under way by its pace at
            // every step), which over an outage of an hour would order the budget.
            let measured_at = h;
            let h = if unseen_s > 0.0 { h.max(step) } else { h };
            let past_horizon = unseen_s > 0.0 && step > measured_at;
            let bound = |f: &SignalForecaster| {
                if past_horizon && !quantiles.worst_case {
                    let here = beyond_horizon(f, |s| f.forecast(s, z), step, measured_at)?;
                    return rate_at_step(f, here, step, h);
                }
                if quantiles.worst_case {
                    rate_at_step(f, f.worst_case(step, z)?, step, h)
                } else {
                    step_rate(f, step, h, z)
                }
            };
            let (lambda, from) = if step == 0 {
                (rate, None)
            } else {
                rate_forecasters
                    .iter()
                    .filter_map(|&(f, partial)| Some((bound(f)?, Some((f, partial)))))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .unwrap_or((rate, None))
            };
            let mut load = Load {
                lambda,
                isl: length(
                    isl_forecaster,
                    step.max(1),
                    self.ctx.prefill.max_profiled_isl() / 4.0,
                ),
                osl: length(osl_forecaster, step.max(1), 256.0),
                backlog_tokens: if step <= 1 { backlog } else { 0.0 },
                // A forecast step, not the interval: a caller's tick of a second would
                // otherwise ask for the queue gone by the next tick (a step is the
                // interval itself from a minute up).
                drain_s: step_s,
            };
            let solve_at = |load: &Load| {
                solve(
                    &self.model,
                    &self.ctx.sla,
                    &self.ctx.limits,
                    &solver_cfg,
                    load,
                )
            };
            let mut solution = solve_at(&load);
            // Decode is a cliff: an engine short of the load fills its batch and every request
            // on it misses. Where the forecast is no clearly better than the last value, its
            // bound may sit below the last value's in a lull (its misses were measured while
            // it stood high), and decode is sized for the higher of the two. Prefill keeps
            // the forecast's: a prefill shortfall costs the prompts that wait longest.
            if step > 0 && !quantiles.worst_case {
                let at_last_value = rate_forecasters
                    .iter()
                    .filter_map(|&(f, _)| {
                        let here = if past_horizon {
                            beyond_horizon(
                                f,
                                |s| f.with_last_values_bound(s, z),
                                step,
                                measured_at,
                            )?
                        } else {
                            f.with_last_values_bound(step, z)?
                        };
                        rate_at_step(f, here, step, h)
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                if at_last_value > load.lambda {
                    let raised = solve_at(&Load {
                        lambda: at_last_value,
                        ..load
                    });
                    if raised.meets && raised.decode > solution.decode {
                        let note = SolverNote::DecodeAtLastValuesBound {
                            decode: raised.decode,
                            at_bound: solution.decode,
                            rate: at_last_value,
                            aggregated: self.cfg.mode == Mode::Aggregated,
                        };
                        match solution.notes.iter_mut().find(|n| {
                            matches!(
                                n,
                                SolverNote::DecodeBinds { .. } | SolverNote::AggregatedMeets { .. }
                            )
                        }) {
                            Some(binds) => *binds = note,
                            None => solution.notes.push(note),
                        }
                        solution.decode = raised.decode;
                        solution.expected_itl_ms =
                            decode_itl(&self.model, &solver_cfg, &load, raised.decode);
                    }
                }
            }
            // A peak the load keeps coming back to, more briefly than capacity can follow,
            // is planned for in between, where the limits and the budget allow it all:
            // otherwise the budget would be shared out for a load that is not there.
            let mut recurring = None;
            if let Some(peak) = recurring_peak.filter(|p| step > 0 && p.level > lambda) {
                let raised = Load {
                    lambda: peak.level,
                    ..load
                };
                let at_peak = solve_at(&raised);
                if at_peak.meets {
                    (load, solution, recurring) = (raised, at_peak, Some(peak));
                }
            }
            // Capacity ordered now serves this step: prefill is sized for the prompts expected
            // to miss over the rates the forecast may see, each as likely as a recent miss,
            // not for all to be in time at the rate of its bound (a p99 target at the p90
            // rate keeps the share missing far below the 1% the target allows). Decode keeps
            // the bound: a decode engine short of a load fills its KV cache, and every
            // request on it misses.
            let orderable = step as f64 * step_s > ready_after_s + 1e-6;
            if quantiles.expected_misses
                && orderable
                && recurring.is_none()
                && self.cfg.mode == Mode::Disaggregated
                && solution.prefill > self.ctx.limits.min_prefill
            {
                // `lambda` is the bound of the forecaster `from` names (the highest).
                let outcomes = from.and_then(|(f, _)| step_rate_outcomes(f, step, h, z, lambda));
                let fewest = outcomes.as_ref().and_then(|rates| {
                    fewest_prefill_for_expected_misses(
                        &self.model,
                        &solver_cfg,
                        &self.ctx.sla,
                        &self.ctx.limits,
                        &load,
                        rates,
                        solution.prefill - 1,
                    )
                    .map(|found| (found, rates.len()))
                });
                if let Some(((prefill, share), outcomes)) = fewest {
                    let note = SolverNote::PrefillForExpectedMisses {
                        prefill,
                        at_bound: solution.prefill,
                        share,
                        allowed: 1.0 - solver_cfg.ttft_quantile,
                        outcomes,
                    };
                    match solution
                        .notes
                        .iter_mut()
                        .find(|n| matches!(n, SolverNote::PrefillBinds { .. }))
                    {
                        Some(binds) => *binds = note,
                        None => solution.notes.push(note),
                    }
                    solution.prefill = prefill;
                    solution.expected_ttft_ms =
                        prefill_ttft(&self.model, &solver_cfg, &load, prefill);
                }
            }
            // A step over before capacity ordered now could be ready is served by what is
            // there: it may keep that, not order more, which would come too late for it.
            if step >= 1 && !orderable {
                let asked = (solution.prefill, solution.decode);
                solution.prefill = asked.0.min(held.0);
                solution.decode = asked.1.min(held.1);
                if asked != (solution.prefill, solution.decode) {
                    too_late = Some((asked, step));
                }
            }
            let (p, d) = best.as_ref().map_or((0, 0), |b| (b.0.prefill, b.0.decode));
            if best.is_none() || solution.prefill > p || solution.decode > d {
                let plan = HorizonPlan {
                    prefill: solution.prefill.max(p),
                    decode: solution.decode.max(d),
                    solution,
                    load,
                    step,
                    last_step,
                    source: None,
                    method: None,
                    recurring,
                    too_late: None,
                    ceiling: None,
                };
                best = Some((plan, from));
            }
        }
        let (mut plan, from) = best.expect("at least one step");
        plan.too_late = too_late
            .filter(|((p, d), _)| *p > plan.prefill || *d > plan.decode)
            .map(|((p, d), step)| {
                format!(
                    "{} asked for {:.0}s ahead, before a replica ordered now could be ready ({:.0}s): not ordered",
                    self.counts(p, d),
                    step as f64 * step_s,
                    self.cold_start_s()
                )
            });
        plan.ceiling = rate_forecasters
            .iter()
            .find_map(|(f, _)| f.ceiling_lowers(last_step, z));
        plan.method = rate_forecasters
            .first()
            .and_then(|(f, _)| f.forecast(1, z))
            .map(|f| f.method);
        plan.source = from.and_then(|(f, partial)| {
            Some((f.forecast(1, z)?.method, partial && committed.is_some()))
        });
        plan
    }

    /// The first reason: the load planned for, where it came from, and what it asks for.
    pub(super) fn plan_reason(&self, plan: &HorizonPlan, step_s: f64) -> String {
        let source = match (plan.recurring, plan.source) {
            (Some(peak), _) => format!(
                "a peak the load came back from {} times in the last {:.0}s, the SLA missed at such peaks; above the p{:.0} forecast",
                peak.times,
                peak.over as f64 * step_s,
                self.cfg.headroom_quantile * 100.0
            ),
            (None, Some((method, under_way))) => format!(
                "p{:.0} of the {} forecast{}, {:.0}s ahead",
                self.cfg.headroom_quantile * 100.0,
                method.name(),
                if under_way {
                    " with the step under way"
                } else {
                    ""
                },
                plan.step as f64 * step_s
            ),
            (None, None) => "the rate just seen".to_string(),
        };
        let source = match plan.ceiling {
            Some(c) => format!(
                "{source}; a burst like the {} before it, forecast to at most their highest peak, {:.2} req/s",
                c.excursions, c.level
            ),
            None => source,
        };
        format!(
            "plan for {:.2} req/s ({source}), ISL {:.0}, OSL {:.0}: {}",
            plan.load.lambda,
            plan.load.isl,
            plan.load.osl,
            self.counts(plan.prefill, plan.decode)
        )
    }
}
