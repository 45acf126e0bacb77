//! Planning the horizon: the rate each step to the horizon is sized for, and the most each
//! role needs at any of them.

use super::*;
use crate::planner::solver::Solution;

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

/// A rate decode is sized for where it stands above the bound's.
#[derive(Debug, Clone, Copy)]
enum DecodeRaise {
    /// The last value's own bound, where the forecast is no clearly better than the last
    /// value: in a lull its bound may sit below the last value's (its misses were
    /// measured while it stood high).
    LastValuesBound,
    /// Early, before the forecast's errors are measured, a ramp going on at the pace its
    /// latest interval's halves show, where that is steeper than its steps.
    WithinPace,
}

impl DecodeRaise {
    fn bound(self, f: &SignalForecaster, step: usize, z: f64) -> Option<SignalForecast> {
        match self {
            DecodeRaise::LastValuesBound => f.with_last_values_bound(step, z),
            DecodeRaise::WithinPace => f.with_within_pace(step, z),
        }
    }

    fn note(self, decode: u32, at_bound: u32, rate: f64, aggregated: bool) -> SolverNote {
        match self {
            DecodeRaise::LastValuesBound => SolverNote::DecodeAtLastValuesBound {
                decode,
                at_bound,
                rate,
                aggregated,
            },
            DecodeRaise::WithinPace => SolverNote::DecodeAtWithinPace {
                decode,
                at_bound,
                rate,
                aggregated,
            },
        }
    }
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
    pub(super) solution: Solution,
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

/// What a horizon's steps share while each is sized: the forecasters, the quantiles, the
/// solver's settings and when capacity ordered now could be ready.
struct Horizon<'a> {
    planner: &'a SlaPlanner,
    /// The rate forecasters, each with whether it is the copy that took the step under way
    /// for a whole one.
    rates: Vec<(&'a SignalForecaster, bool)>,
    isl: &'a SignalForecaster,
    osl: &'a SignalForecaster,
    /// The rate just seen, which step 0 is sized for.
    rate: f64,
    /// Prefill tokens queued now (to compute, past the prefix caches' hits): worked off
    /// within a step at steps 0 and 1.
    backlog: f64,
    /// The share of prompt tokens planned as found in the prefix caches.
    cached_share: f64,
    quantiles: Quantiles,
    z: f64,
    length_z: Option<f64>,
    solver: SolverConfig,
    /// The steps ahead the forecast's errors were measured at.
    measured_at: usize,
    unseen_s: f64,
    step_s: f64,
    /// Time from the end of the newest step seen until a replica ordered now is ready.
    ready_after_s: f64,
    held: (u32, u32),
    recurring_peak: Option<RecurringPeak>,
}

/// One step sized: the solver's answer, the load it was sized for and the forecaster
/// whose bound that was, the peak planned for instead of the bound, and what the step
/// asked for that could not be ready in time for it.
struct StepPlan<'a> {
    solution: Solution,
    load: Load,
    from: Option<(&'a SignalForecaster, bool)>,
    recurring: Option<RecurringPeak>,
    too_late: Option<(u32, u32)>,
}

impl<'a> Horizon<'a> {
    /// The steps ahead the bound at `step` is narrowed over, and whether `step` lies past
    /// the horizon its errors were measured at. While the count is missing the steps run
    /// past that horizon: the forecast's point goes on (a period keeps its shape); its
    /// margin is taken as at the horizon, not widened with the time unseen (a random
    /// walk's spread by its square root, a rise under way by its pace at every step),
    /// which over an outage of an hour would order the budget.
    fn reach(&self, step: usize) -> (usize, bool) {
        if self.unseen_s > 0.0 {
            (self.measured_at.max(step), step > self.measured_at)
        } else {
            (self.measured_at, false)
        }
    }

    /// The rate `f` bounds at `step` (its worst case where the quantiles ask for it).
    fn bound(&self, f: &SignalForecaster, step: usize) -> Option<f64> {
        let (h, past_horizon) = self.reach(step);
        let z = self.z;
        if past_horizon && !self.quantiles.worst_case {
            let here = beyond_horizon(f, |s| f.forecast(s, z), step, self.measured_at)?;
            return rate_at_step(f, here, step, h);
        }
        if self.quantiles.worst_case {
            rate_at_step(f, f.worst_case(step, z)?, step, h)
        } else {
            step_rate(f, step, h, z)
        }
    }

    /// A length's forecast point, or its bound when asked (falling back to the last seen,
    /// then to `fallback` when nothing has been seen: with no traffic the rate is 0 anyway).
    fn length(&self, f: &SignalForecaster, step: usize, fallback: f64) -> f64 {
        f.forecast(step, self.length_z.unwrap_or(0.0))
            .map(|x| match self.length_z {
                Some(_) => x.upper.max(x.point),
                None => x.point,
            })
            .map(|l| l.max(1.0))
            .unwrap_or(fallback)
    }

    fn solve(&self, load: &Load) -> Solution {
        let p = self.planner;
        solve(&p.model, &p.ctx.sla, &p.ctx.limits, &self.solver, load)
    }

    /// Whether capacity ordered now is ready before `step` is over.
    fn orderable(&self, step: usize) -> bool {
        step as f64 * self.step_s > self.ready_after_s + 1e-6
    }

    /// Sizes one step: the load at the highest forecaster's bound (step 0: the rate just
    /// seen), then decode raised to the last value's bound, the recurring peak, prefill for
    /// the prompts expected to miss, and what comes too late held to what is there.
    fn plan_step(&self, step: usize) -> StepPlan<'a> {
        let (lambda, from) = if step == 0 {
            (self.rate, None)
        } else {
            self.rates
                .iter()
                .filter_map(|&(f, partial)| Some((self.bound(f, step)?, Some((f, partial)))))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((self.rate, None))
        };
        let isl = self.length(
            self.isl,
            step.max(1),
            self.planner.ctx.prefill.max_profiled_isl() / 4.0,
        );
        let work = PromptWork::new(&self.planner.ctx.prefill, isl, self.cached_share);
        let load = Load {
            lambda,
            isl,
            prefill_isl: work.prefill_isl,
            osl: self.length(self.osl, step.max(1), 256.0),
            backlog_tokens: if step <= 1 {
                work.as_prompt_tokens(self.backlog, isl)
            } else {
                0.0
            },
            // A forecast step, not the interval: a caller's tick of a second would
            // otherwise ask for the queue gone by the next tick (a step is the interval
            // itself from a minute up).
            drain_s: self.step_s,
        };
        let mut solution = self.solve(&load);
        if step > 0 && !self.quantiles.worst_case {
            self.raise_decode(DecodeRaise::LastValuesBound, step, &load, &mut solution);
            self.raise_decode(DecodeRaise::WithinPace, step, &load, &mut solution);
        }
        let (load, mut solution, recurring) = self.at_recurring_peak(step, load, solution);
        if recurring.is_none() && self.orderable(step) {
            self.prefill_for_expected_misses(step, from, &load, &mut solution);
        }
        // A step over before capacity ordered now could be ready is served by what is
        // there: it may keep that, not order more, which would come too late for it.
        let mut too_late = None;
        if step >= 1 && !self.orderable(step) {
            let asked = (solution.prefill, solution.decode);
            solution.prefill = asked.0.min(self.held.0);
            solution.decode = asked.1.min(self.held.1);
            if asked != (solution.prefill, solution.decode) {
                too_late = Some(asked);
            }
        }
        StepPlan {
            solution,
            load,
            from,
            recurring,
            too_late,
        }
    }

    /// Decode is a cliff: an engine short of the load fills its batch and every request on
    /// it misses. Decode is sized for the higher of the bound's rate and the one `raise`
    /// reads (`DecodeRaise`); prefill keeps the bound's: a prefill shortfall costs the
    /// prompts that wait longest.
    fn raise_decode(&self, raise: DecodeRaise, step: usize, load: &Load, solution: &mut Solution) {
        let (h, past_horizon) = self.reach(step);
        let z = self.z;
        let rate = self
            .rates
            .iter()
            .filter_map(|&(f, _)| {
                let here = if past_horizon {
                    beyond_horizon(f, |s| raise.bound(f, s, z), step, self.measured_at)?
                } else {
                    raise.bound(f, step, z)?
                };
                rate_at_step(f, here, step, h)
            })
            .fold(f64::NEG_INFINITY, f64::max);
        if rate <= load.lambda {
            return;
        }
        let raised = self.solve(&Load {
            lambda: rate,
            ..*load
        });
        if !raised.meets || raised.decode <= solution.decode {
            return;
        }
        let aggregated = self.planner.cfg.mode == Mode::Aggregated;
        let note = raise.note(raised.decode, solution.decode, rate, aggregated);
        match solution.notes.iter_mut().find(|n| {
            matches!(
                n,
                SolverNote::DecodeBinds { .. }
                    | SolverNote::AggregatedMeets { .. }
                    | SolverNote::DecodeAtLastValuesBound { .. }
            )
        }) {
            Some(binds) => *binds = note,
            None => solution.notes.push(note),
        }
        solution.decode = raised.decode;
        solution.expected_itl_ms =
            decode_itl(&self.planner.model, &self.solver, load, raised.decode);
    }

    /// A peak the load keeps coming back to, more briefly than capacity can follow, is
    /// planned for in between, where the limits and the budget allow it all: otherwise the
    /// budget would be shared out for a load that is not there.
    fn at_recurring_peak(
        &self,
        step: usize,
        load: Load,
        solution: Solution,
    ) -> (Load, Solution, Option<RecurringPeak>) {
        if let Some(peak) = self
            .recurring_peak
            .filter(|p| step > 0 && p.level > load.lambda)
        {
            let raised = Load {
                lambda: peak.level,
                ..load
            };
            let at_peak = self.solve(&raised);
            if at_peak.meets {
                return (raised, at_peak, Some(peak));
            }
        }
        (load, solution, None)
    }

    /// Capacity ordered now serves this step: prefill is sized for the prompts expected to
    /// miss over the rates the forecast may see, each as likely as a recent miss, not for
    /// all to be in time at the rate of its bound (a p99 target at the p90 rate keeps the
    /// share missing far below the 1% the target allows). Decode keeps the bound: a decode
    /// engine short of a load fills its KV cache, and every request on it misses.
    fn prefill_for_expected_misses(
        &self,
        step: usize,
        from: Option<(&SignalForecaster, bool)>,
        load: &Load,
        solution: &mut Solution,
    ) {
        let p = self.planner;
        if !self.quantiles.expected_misses
            || p.cfg.mode != Mode::Disaggregated
            || solution.prefill <= p.ctx.limits.min_prefill
        {
            return;
        }
        let (h, _) = self.reach(step);
        // `load.lambda` is the bound of the forecaster `from` names (the highest).
        let outcomes = from.and_then(|(f, _)| step_rate_outcomes(f, step, h, self.z, load.lambda));
        let fewest = outcomes.as_ref().and_then(|rates| {
            fewest_prefill_for_expected_misses(
                &p.model,
                &self.solver,
                &p.ctx.sla,
                &p.ctx.limits,
                load,
                rates,
                solution.prefill - 1,
            )
            .map(|found| (found, rates.len()))
        });
        let Some(((prefill, share), outcomes)) = fewest else {
            return;
        };
        let note = SolverNote::PrefillForExpectedMisses {
            prefill,
            at_bound: solution.prefill,
            share,
            allowed: 1.0 - self.solver.ttft_quantile,
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
        solution.expected_ttft_ms = prefill_ttft(&p.model, &self.solver, load, prefill);
    }
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
        let (isl, osl) = match (committed, &provisional) {
            (Some((_, i, o)), _) => (i, o),
            (None, Some((_, i, o))) => (i, o),
            (None, None) => (&self.isl, &self.osl),
        };
        let z = normal_quantile(quantiles.rate);
        let horizon = Horizon {
            planner: self,
            rates: committed
                .iter()
                .map(|c| (c.0, false))
                .chain(provisional.iter().map(|p| (&p.0, true)))
                .collect(),
            isl,
            osl,
            rate,
            backlog,
            // At the lengths' points, the share planned for; at their bounds, the least.
            cached_share: match quantiles.lengths {
                None => self.cached_shares.planned(),
                Some(_) => self.cached_shares.least(),
            },
            quantiles,
            z,
            length_z: quantiles.lengths.map(normal_quantile),
            solver: SolverConfig {
                ttft_quantile: self.cfg.ttft_quantile,
                itl_batch_z: itl_batch_z(self.cfg.itl_quantile),
                kv_fraction: self.cfg.kv_fraction,
                mode: self.cfg.mode,
                router: self.cfg.router,
                // A split of a binding budget away from the one running is weighed over a
                // horizon once ready, the split between over the cold start.
                incumbent: Some((
                    held,
                    self.cold_start_s() / (self.cold_start_s() + step_s).max(1.0),
                )),
            },
            measured_at: h,
            unseen_s,
            step_s,
            ready_after_s,
            held,
            // The peak the load keeps coming back to, from the committed steps: a step
            // under way is no excursion yet.
            recurring_peak: committed.and_then(|c| c.0.recurring_peak(z)),
        };
        // The plan keeps the most each role needs at any step, with the step that last
        // raised one of them (its load and the solver's notes are the decision's).
        let mut best: Option<(HorizonPlan, Option<(&SignalForecaster, bool)>)> = None;
        // The last step that asked for more than is there before more could be ready.
        let mut too_late: Option<((u32, u32), usize)> = None;
        // Step 0 is the interval just seen (a jump the forecasters have not caught up with);
        // steps 1..=last_step cover until capacity asked for at the next decision could be ready.
        for step in planned_steps(last_step) {
            let planned = horizon.plan_step(step);
            if let Some(asked) = planned.too_late {
                too_late = Some((asked, step));
            }
            let solution = planned.solution;
            let (p, d) = best.as_ref().map_or((0, 0), |b| (b.0.prefill, b.0.decode));
            if best.is_none() || solution.prefill > p || solution.decode > d {
                let plan = HorizonPlan {
                    prefill: solution.prefill.max(p),
                    decode: solution.decode.max(d),
                    solution,
                    load: planned.load,
                    step,
                    last_step,
                    source: None,
                    method: None,
                    recurring: planned.recurring,
                    too_late: None,
                    ceiling: None,
                };
                best = Some((plan, planned.from));
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
        let rates = &horizon.rates;
        plan.ceiling = rates
            .iter()
            .find_map(|(f, _)| f.ceiling_lowers(last_step, z));
        plan.method = rates
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
