//! Settling the wish into a decision: the holds (a scale-down past the loads the waiting
//! model was checked at, a silence), the stabiliser and cancellations, and the decision
//! with its reasons.

use super::*;
use crate::planner::Limits;

/// Per-engine load (erlangs) taken as seen even when the window shows less: quiet intervals
/// say nothing against a moderate load, and must not pin the engines a burst left.
pub const LOAD_TESTED_FLOOR: f64 = 0.35;

/// The fewest prefill engines that keep each within `UNTESTED_LOAD_STRETCH` of the most
/// load per engine seen (`seen`, erlangs), for `offered` erlangs; `None` when nothing has
/// been seen. A scale-down stops there: the waiting the model predicts at a load it has not
/// seen rests on what it learned where little waited. Prompts arriving in bursts then show
/// as a wide prompt spread, not as waiting, and the model would shed half the engines at
/// once (the Mooncake synthetic trace at eight copies: seven engines to three, a third of
/// the next two minutes' prompts late). Twice the seen load at most, then look again.
pub fn untested_load_floor(offered: f64, seen: Option<f64>) -> Option<u32> {
    let seen = seen.filter(|s| s.is_finite())?.max(LOAD_TESTED_FLOOR);
    (offered.is_finite() && offered > 0.0)
        .then(|| (offered / (seen * UNTESTED_LOAD_STRETCH)).ceil() as u32)
}

/// Where the load planned for lies beyond what the profile measured, the model goes on
/// from its edge: prefill times extrapolated from its last points, ITL read at its longest
/// context (which may understate it). An operator should hear that the counts rest on it.
pub(super) fn beyond_the_profile(model: &PerformanceModel, isl: f64, osl: f64) -> Vec<String> {
    let mut notes = Vec::new();
    let longest_prompt = model.prefill.max_profiled_isl();
    if isl > longest_prompt * 1.05 {
        notes.push(format!(
            "ISL {isl:.0} is beyond the profile's longest prompt ({longest_prompt:.0} tokens): prefill time extrapolated; profile longer prompts to plan them surely"
        ));
    }
    let context = model.corrections.decode_terms().context(isl, osl);
    let longest_context = model.decode.max_profiled_context();
    if context > longest_context * 1.05 {
        notes.push(format!(
            "decode context {context:.0} tokens is beyond the profile's longest ({longest_context:.0}): ITL read at {longest_context:.0}, which may understate it"
        ));
    }
    notes
}

/// How far the learned KV per request may stand from the mean lengths' before an operator
/// hears what else it may mean: outputs spread as widely as an exponential's (a coefficient
/// of variation of 1) hold about twice it.
const KV_PER_REQUEST_PLAUSIBLE: f64 = 2.0;

/// The KV per request learned is read from the decode engines' KV utilisation against the
/// profile's cache. Far from the mean lengths' it may be the requests (outputs of widely
/// varied length, a prefix cache), or a cache not the profile's size, which the model cannot
/// tell apart: the decode engines' ITL is then read at a KV the engines do not hold, and
/// decode sized by a curve that is not theirs. The operator can check which.
pub(super) fn kv_per_request_note(context: f64, profile_kv_tokens: f64) -> Option<String> {
    let (requests, cache, read_at) = if context > KV_PER_REQUEST_PLAUSIBLE {
        ("outputs of widely varied length", "smaller", "more")
    } else if context < 1.0 / KV_PER_REQUEST_PLAUSIBLE {
        (
            "a prefix cache or long prompts with short outputs",
            "larger",
            "less",
        )
    } else {
        return None;
    };
    Some(format!(
        "KV per request x{context:.2}: decode requests in flight hold {context:.2} times the KV their mean lengths say; {requests} do that, and so does a KV cache {cache} than the profile's ({profile_kv_tokens:.0} tokens an engine), under which the profile's ITL curve is read at {read_at} KV than the engines hold: check the engines' KV capacity against the profile"
    ))
}

/// Counts past the GPU budget (a hold, or the horizon's steps asking for different splits
/// of it) give up one engine at a time, each from the role that loses the smaller share of
/// its engines by it; on a tie prefill gives way, as decode is the cliff: a decode engine
/// short fails nearly every request on the pool, a prefill engine short the prompts that
/// wait longest. The limits' clip, shared with the other policies, gives ties to prefill:
/// on the conversation trace at 5 GPUs the solver asked for 2P+3D, the scale-down window
/// held prefill at 3, and the clip gave 3P+2D, whose two decode engines missed the ITL
/// target for minutes. Never below the minimums; a role past its maximum is first clipped.
/// Engines of unequal GPU counts may leave GPUs over, which go back to what was asked for,
/// decode first (an eight-GPU decode engine shed frees what eight prefill engines would).
pub fn shed_to_budget(limits: &Limits, (p, d): (u32, u32)) -> (u32, u32) {
    if limits.gpus(p, d) <= limits.gpu_budget {
        return (p, d);
    }
    let (p0, d0) = (p.min(limits.max_prefill), d.min(limits.max_decode));
    let (mut p, mut d) = (p0, d0);
    while limits.gpus(p, d) > limits.gpu_budget {
        let prefill_spare = p > limits.min_prefill;
        let decode_spare = d > limits.min_decode;
        // One of `p` against one of `d`: the larger role loses the smaller share.
        if prefill_spare && (!decode_spare || p >= d) {
            p -= 1;
        } else if decode_spare {
            d -= 1;
        } else {
            break; // the minimums past the budget: rejected when the limits are read
        }
    }
    // Engines of unequal GPU counts may leave GPUs over: back to what was asked for,
    // decode first.
    loop {
        if d < d0 && limits.gpus(p, d + 1) <= limits.gpu_budget {
            d += 1;
        } else if p < p0 && limits.gpus(p + 1, d) <= limits.gpu_budget {
            p += 1;
        } else {
            break;
        }
    }
    (p, d)
}

impl SlaPlanner {
    /// The prefill count a scale-down from `current` to `wish` stops at, and why, when
    /// `wish` would load engines beyond what the waiting model has been checked at
    /// (`untested_load_floor`).
    fn untested_load_hold(&self, wish: u32, current: u32, load: &Load) -> Option<(u32, String)> {
        if self.cfg.mode != Mode::Disaggregated || wish >= current {
            return None;
        }
        let offered = load.lambda * self.model.prefill_service_ms(load.prefill_isl) / 1000.0;
        let seen = self.model.prefill_load_seen();
        let floor = untested_load_floor(offered, seen).filter(|&f| f > wish)?;
        let to = floor.min(current);
        Some((
            to,
            format!(
                "prefill: kept at {to}, not {wish}: each engine would carry {:.2} erlangs, more than {UNTESTED_LOAD_STRETCH}x the {:.2} engines carried lately (at least {LOAD_TESTED_FLOOR}), beyond what the waiting model has been checked at",
                offered / f64::from(wish.max(1)),
                seen.unwrap_or(0.0),
            ),
        ))
    }

    /// Why no replica may go while the arrivals have stopped, if they have: a silence the
    /// load forecast before it would seldom leave (`SILENCE_EXPECTED` arrivals or more),
    /// shorter than an interval and a cold start, is more often a gap (an upstream outage,
    /// a router failing over) than the load's end, and a replica released in it could not
    /// be back before the load returns. `None` when requests arrive, when the forecast
    /// expected few (a sparse load has silent intervals), and once the silence has lasted.
    /// Called before the interval's rate is observed, so the forecast is the one before it.
    pub(super) fn silence_hold(
        &mut self,
        now_s: f64,
        interval_s: f64,
        requests: f64,
    ) -> Option<String> {
        if requests > 0.0 {
            self.silence = None;
            return None;
        }
        if self.silence.is_none() {
            let before = self.rate.forecast(1, 0.0)?.point;
            self.silence = Some((now_s - interval_s, before));
        }
        let (since, before) = self.silence?;
        let lasted = now_s - since;
        let expected = before * lasted;
        let patience = interval_s + self.cold_start_s();
        (lasted < patience && expected >= SILENCE_EXPECTED).then(|| {
            format!(
                "no scale-down: no requests for {lasted:.0}s where {before:.2} req/s were forecast ({expected:.0} expected); a silence shorter than an interval and a cold start ({patience:.0}s) is not taken for the load's end"
            )
        })
    }

    /// From the counts the load asks for to the counts to run: the holds that wait for
    /// evidence, the stabiliser, the early cancellations and a silence's hold, each
    /// adding its reason.
    pub(super) fn settle(
        &mut self,
        now_s: f64,
        obs: &Observation,
        plan: &HorizonPlan,
        worst_miss: Option<(u32, u32)>,
        silence: Option<String>,
        reasons: &mut Vec<String>,
    ) -> (u32, u32) {
        let (mut wish_p, mut wish_d) = (plan.prefill, plan.decode);
        // Until the bound rests on measured errors, it is a guess from a few intervals: the
        // deployment the planner found is the operator's own sizing, and a scale-down
        // below it waits for evidence (a quiet start says little about the next burst).
        if let Some((fp, fd)) = self.found.filter(|_| !self.rate.bound_measured()) {
            if fp > wish_p || fd > wish_d {
                wish_p = wish_p.max(fp);
                wish_d = wish_d.max(fd);
                reasons.push(format!(
                    "kept at least the {} found at the start until the load's forecast errors are measured",
                    self.counts(fp, fd)
                ));
            }
        }
        let current = self.current(obs);
        if let Some((to, why)) = self.untested_load_hold(wish_p, current.0, &plan.load) {
            reasons.push(why);
            wish_p = to;
        }
        let ((mut p, mut d), st_notes) =
            self.stabilizer
                .apply(now_s, (wish_p, wish_d), current, worst_miss);
        reasons.extend(st_notes);
        // Early on, the replicas ordered rest on a guess from an interval or two, and the
        // next interval is better evidence than the window's memory of that guess: those
        // still starting beyond the wish are cancelled, not held (they serve nothing yet).
        if let Some(r) = obs.replicas.filter(|_| !self.rate.bound_measured()) {
            for (role, to, wish, ready) in [
                ("prefill", &mut p, wish_p, r.prefill.ready),
                ("decode", &mut d, wish_d, r.decode.ready),
            ] {
                let keep = wish.max(ready);
                if *to > keep {
                    reasons.push(format!(
                        "{role}: {} starting replicas cancelled: ordered before the load's forecast errors were measured, and not wished for now",
                        *to - keep
                    ));
                    *to = keep;
                }
            }
        }
        (p, d) = self.within_budget((p, d), reasons);
        // After the stabiliser, so its window remembers what the load asked for.
        if let Some(why) = silence.filter(|_| p < current.0 || d < current.1) {
            p = p.max(current.0);
            d = d.max(current.1);
            reasons.push(why);
        }
        (p, d)
    }

    /// `shed_to_budget`, saying so when it sheds anything.
    fn within_budget(&self, asked: (u32, u32), reasons: &mut Vec<String>) -> (u32, u32) {
        let limits = &self.ctx.limits;
        let (p, d) = shed_to_budget(limits, asked);
        if (p, d) != asked {
            reasons.push(format!(
                "GPU budget {} binds: {} held or asked for, {} kept (an engine at a time from the role it is the smaller share of; on a tie from prefill, as decode is the cliff)",
                limits.gpu_budget,
                self.counts(asked.0, asked.1),
                self.counts(p, d)
            ));
        }
        (p, d)
    }

    /// The decision: the counts clipped to the limits, with what the model has learned and
    /// the forecast planned for.
    pub(super) fn finish(
        &mut self,
        (p, d): (u32, u32),
        reasons: Vec<String>,
        plan: &HorizonPlan,
        step_s: f64,
    ) -> Decision {
        let mut decision = Decision::clipped(&self.ctx.limits, p, d, reasons);
        let c = self.model.corrections;
        // A waiting variability below 1 holds only as far as it was learned.
        let tested = match self.model.prefill_load_tested() {
            Some(t) if c.prefill_variability < 1.0 => {
                let t = t * c.prefill;
                format!(
                    " at up to {t:.2} erlangs an engine, rising to {:.2} at {:.2}",
                    self.model.untested_waiting_variability(),
                    t * UNTESTED_LOAD_STRETCH
                )
            }
            _ => String::new(),
        };
        decision.reasons.push(format!(
            "corrections: prefill x{:.2} (slowest prompts x{:.2}, waiting variability {:.2}{tested}), decode x{:.2} (batch variability {:.2}, KV per request x{:.2})",
            c.prefill, c.prefill_tail, c.prefill_variability, c.decode, c.decode_variability, c.decode_context
        ));
        // An operator should hear when the observed latency is further from the profile
        // than the model may follow.
        let pinned = c.at_bounds((self.cfg.correction.min, self.cfg.correction.max));
        if !pinned.is_empty() {
            decision.reasons.push(format!(
                "at its bound: {}; the observed latency is further from the profile than the model may follow",
                pinned.join(", ")
            ));
        }
        if let Some(note) = kv_per_request_note(c.decode_context, self.model.decode.max_kv_tokens())
        {
            decision.reasons.push(note);
        }
        self.last = Some((decision.prefill, decision.decode));
        Decision {
            forecast: Some(Forecast {
                horizon_s: plan.last_step as f64 * step_s,
                requests_per_s: plan.load.lambda,
                isl: plan.load.isl,
                osl: plan.load.osl,
                method: plan.method,
            }),
            expected_ttft_ms: Some(plan.solution.expected_ttft_ms).filter(|v| v.is_finite()),
            expected_itl_ms: Some(plan.solution.expected_itl_ms).filter(|v| v.is_finite()),
            corrections: Some(c),
            ..decision
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kv_per_request_far_from_the_mean_lengths_names_the_profile_as_a_cause() {
        // (learned KV per request) -> a note, and which way
        let cases = [
            (1.0, None),
            (1.6, None),
            (2.0, None),
            (
                2.37,
                Some("smaller than the profile's (945029 tokens an engine)"),
            ),
            (0.5, None),
            (
                0.4,
                Some("larger than the profile's (945029 tokens an engine)"),
            ),
        ];
        for (context, expected) in cases {
            let note = kv_per_request_note(context, 945_029.0);
            match expected {
                None => assert!(note.is_none(), "x{context}: {note:?}"),
                Some(text) => {
                    let note = note.unwrap_or_else(|| panic!("x{context}: no note"));
                    assert!(note.contains(text), "x{context}: {note}");
                    assert!(
                        note.starts_with(&format!("KV per request x{context:.2}")),
                        "{note}"
                    );
                }
            }
        }
    }

    #[test]
    fn shed_to_budget_table() {
        let limits = |budget: u32, min: (u32, u32)| Limits {
            min_prefill: min.0,
            max_prefill: 20,
            min_decode: min.1,
            max_decode: 100,
            gpu_budget: budget,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        };
        // (asked, budget, minimums) -> kept
        let cases = [
            // Within the budget: unchanged.
            (((2, 3), 5, (1, 1)), (2, 3)),
            // A tie: prefill gives way (a prefill hold no longer takes decode's engine).
            (((3, 3), 5, (1, 1)), (2, 3)),
            // The larger role loses the smaller share of its engines, whichever it is.
            (((4, 3), 6, (1, 1)), (3, 3)),
            (((3, 4), 6, (1, 1)), (3, 3)),
            (((8, 2), 6, (1, 1)), (4, 2)),
            // A role past its maximum is clipped first.
            (((30, 3), 10, (1, 1)), (7, 3)),
            // A role at its minimum leaves the other to give way.
            (((2, 9), 6, (2, 1)), (2, 4)),
            // Aggregated workers: no prefill pool.
            (((0, 9), 6, (0, 1)), (0, 6)),
        ];
        for ((asked, budget, min), want) in cases {
            let kept = shed_to_budget(&limits(budget, min), asked);
            assert_eq!(kept, want, "{asked:?} at a budget of {budget}");
        }
        // Engines of several GPUs: the budget counts GPUs.
        let wide = Limits {
            gpus_per_prefill_engine: 2,
            gpus_per_decode_engine: 4,
            ..limits(16, (1, 1))
        };
        assert_eq!(shed_to_budget(&wide, (4, 3)), (2, 3));
        // A decode engine of eight GPUs frees what four prefill engines would.
        let tp8 = Limits {
            gpus_per_decode_engine: 8,
            ..limits(12, (1, 1))
        };
        assert_eq!(shed_to_budget(&tp8, (4, 2)), (4, 1));
    }
}
