//! Learning from an interval: what its latencies teach the model, and which intervals
//! teach nothing (a backlog worked off, a full KV cache, engines replaced within it).

use super::*;

/// A reading that is a positive number.
fn positive(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

/// Which of an interval's latencies may teach the model (`SlaPlanner::steadiness`).
struct Steadiness {
    /// The engines that prefilled the interval's prompts (aggregated: the workers).
    prefill_engines: u32,
    prefill_steady: bool,
    /// The interval's TTFT p99 may teach the prompts' tail (it did not begin behind a
    /// backlog).
    prefill_tail_steady: bool,
    decode_steady: bool,
    /// A backlog's release reached decode in the interval.
    flooded: bool,
    /// The decode engines' KV utilisation, where it was full.
    kv_full: Option<f64>,
    /// Aggregated workers: the ITL their prompts' prefill interleaved with.
    interleaved_itl_ms: Option<f64>,
    /// Why latencies were set aside, where they were.
    notes: Vec<String>,
}

impl SlaPlanner {
    /// Whether the interval was spent working off prompts queued before it: it began with
    /// more queued than the engines could clear within the TTFT target, and ended with
    /// less. Its prompts waited behind that backlog, not behind the rate they arrived at,
    /// and their TTFT says nothing of the engines' speed or the load's burstiness (read as
    /// either, it would have the planner add engines for a queue that is already going).
    /// The queue it began with, not the one it ended with, is what its prompts waited
    /// behind: an interval that clears the whole backlog holds its worst waits. A queue
    /// that keeps growing stays evidence: engines slower than the profile says show that
    /// way.
    fn working_off_backlog(
        &self,
        before: Option<f64>,
        now: Option<f64>,
        engines: u32,
        prompt: PromptWork,
    ) -> bool {
        let (Some(before), Some(now)) = (before, now) else {
            return false;
        };
        if now >= before || engines == 0 || prompt.computed_tokens <= 0.0 {
            return false;
        }
        self.clear_ms(before, engines, prompt) > self.ctx.sla.ttft_ms
    }

    /// Whether the queue grew during the interval by more than the engines clear within
    /// the TTFT target; `None` when it is not known.
    fn built_backlog(
        &self,
        before: Option<f64>,
        now: Option<f64>,
        engines: u32,
        prompt: PromptWork,
    ) -> Option<bool> {
        let (before, now) = (before?, now?);
        Some(now > before && self.clear_ms(now - before, engines, prompt) > self.ctx.sla.ttft_ms)
    }

    /// The prefill tokens queued on average over an interval whose prompts waited `ttft_ms`
    /// on average at `lambda` requests/s, by Little's law: the arrivals times the wait past
    /// a prompt's own prefill. What a source without a queue reading shows of its queue.
    fn queue_from_waits(&self, lambda: f64, ttft_ms: f64, prompt: PromptWork) -> Option<f64> {
        let waited_ms = ttft_ms - self.model.prefill_service_ms(prompt.prefill_isl);
        let tokens = lambda * waited_ms.max(0.0) / 1000.0 * prompt.computed_tokens;
        tokens.is_finite().then_some(tokens)
    }

    /// How long `engines` (at least one) take to prefill `tokens` queued to compute, in
    /// prompts like `prompt`, ms.
    fn clear_ms(&self, tokens: f64, engines: u32, prompt: PromptWork) -> f64 {
        tokens / prompt.computed_tokens * self.model.prefill_service_ms(prompt.prefill_isl)
            / f64::from(engines.max(1))
    }

    /// Feeds the interval's latencies to the model; says which were set aside.
    pub(super) fn learn(
        &mut self,
        obs: &Observation,
        replicas: Option<RoleReplicas>,
        requests: f64,
        interval_s: f64,
    ) -> Vec<String> {
        let queued = obs
            .queued_prefill_tokens
            .filter(|q| q.is_finite() && *q >= 0.0);
        let queued_before = std::mem::replace(&mut self.last_queued, queued);
        let estimated_before = self.last_queue_estimate.take();
        let (Some(r), Some(isl), Some(osl)) = (replicas, obs.isl_mean, obs.osl_mean) else {
            return Vec::new();
        };
        if requests < MIN_EVIDENCE_REQUESTS || !isl.is_finite() || !osl.is_finite() {
            return Vec::new();
        }
        let lambda = requests / interval_s;
        // Its prompts as prefill worked on them, past what the prefix caches held.
        let prompt = PromptWork::new(
            &self.ctx.prefill,
            isl,
            obs.prefix_cache_hit_rate.unwrap_or(0.0),
        );
        let prev = self.last_ready.replace((r.prefill.ready, r.decode.ready));
        // Means, estimated from the percentiles where a source reports none.
        let itl_mean = obs.itl_ms.and_then(|t| t.mean_or_estimate());
        let ttft_mean = obs.ttft_ms.and_then(|t| t.mean_or_estimate());
        self.last_queue_estimate = ttft_mean
            .filter(|_| queued.is_none())
            .and_then(|m| self.queue_from_waits(lambda, m, prompt));
        let steadiness = self.steadiness(
            obs,
            r,
            prev,
            (queued_before, queued),
            (estimated_before, self.last_queue_estimate),
            (prompt, osl),
            interval_s,
            (itl_mean, ttft_mean),
        );
        let prefill_known = self.cfg.mode == Mode::Disaggregated || itl_mean.is_some();
        if let (Some(t), Some(mean)) = (obs.ttft_ms, ttft_mean) {
            if steadiness.prefill_engines > 0 && prefill_known {
                self.model.learn_prefill(Evidence {
                    lambda,
                    engines: steadiness.prefill_engines,
                    isl,
                    prefill_isl: prompt.prefill_isl,
                    osl,
                    observed_ms: mean,
                    observed_tail_ms: positive(t.p99).filter(|_| steadiness.prefill_tail_steady),
                    steady: steadiness.prefill_steady,
                    observed_kv: None,
                    weight: requests,
                    interleaved_itl_ms: steadiness.interleaved_itl_ms,
                });
            }
        }
        if let (Some(t), Some(mean)) = (obs.itl_ms, itl_mean) {
            let evidence = Evidence {
                lambda,
                engines: r.decode.ready,
                isl,
                prefill_isl: prompt.prefill_isl,
                osl,
                observed_ms: mean,
                observed_tail_ms: positive(t.p99),
                steady: steadiness.decode_steady,
                observed_kv: obs
                    .kv_utilization
                    .and_then(|k| k.decode)
                    .filter(|k| k.is_finite() && *k >= 0.0),
                weight: requests,
                interleaved_itl_ms: steadiness.interleaved_itl_ms,
            };
            // The KV per request in flight, from the engines that served the whole interval
            // (those added during it served part: their KV reading is not the interval's),
            // when its requests flowed, no backlog flooded in and the cache had room (a full
            // one holds what fits, not what its requests would hold).
            let served_all = match prev.map(|p| p.1) {
                _ if r.decode.draining > 0 => None,
                Some(before) => (before <= r.decode.ready).then_some(before),
                None => Some(r.decode.ready),
            };
            if let Some(engines) = served_all.filter(|&n| n > 0) {
                if !steadiness.flooded
                    && steadiness.kv_full.is_none()
                    && (steadiness.decode_steady || mean <= self.ctx.sla.itl_ms)
                {
                    self.model.learn_context(&Evidence {
                        engines,
                        ..evidence
                    });
                }
            }
            if r.decode.ready > 0 {
                self.model.learn_decode(evidence);
            }
        }
        steadiness.notes
    }

    /// Which of the interval's latencies describe engines in a steady state, and so may
    /// teach the model: the engines that served all of it, no backlog worked off or
    /// released into decode, a KV cache with room. Says why latencies were set aside.
    #[allow(clippy::too_many_arguments)]
    fn steadiness(
        &mut self,
        obs: &Observation,
        r: RoleReplicas,
        prev: Option<(u32, u32)>,
        (queued_before, queued): (Option<f64>, Option<f64>),
        (estimated_before, estimated): (Option<f64>, Option<f64>),
        (prompt, osl): (PromptWork, f64),
        interval_s: f64,
        (itl_mean, ttft_mean): (Option<f64>, Option<f64>),
    ) -> Steadiness {
        let steady = |s: &crate::planner::ReplicaState, prev_ready: Option<u32>| {
            s.starting == 0 && s.draining == 0 && prev_ready == Some(s.ready)
        };
        // The engines that served the whole interval are its evidence even while more are
        // starting (those serve nothing yet), when the queue shows they kept up: a load
        // that outgrew them, the usual reason more are starting, builds a queue the steady
        // state of the model does not describe, and the scale-up under way answers it.
        // Unknown queue, unknown: set aside as before.
        let kept_up =
            self.built_backlog(queued_before, queued, r.prefill.ready, prompt) == Some(false);
        // So are those that remained after a scale-down this planner ordered: the ones
        // removed took no arrival after the decision, at the interval's start, and once
        // gone (none draining) they hold none of its prompts. Such an interval tests the
        // waiting model at the fewer engines, often its busiest test for a while: the code
        // trace's 71 req/s minute on six engines, TTFT p99 175 ms, refuted a waiting
        // variability of 4 that one ramping minute had taught and steady minutes at eight
        // engines, where hardly a prompt waits, could not. A fall the planner did not order
        // (an engine lost) may have come at any time in the interval: set aside.
        let ordered_fall = prev.is_some_and(|p| p.0 > r.prefill.ready)
            && self.last.is_some_and(|l| l.0 <= r.prefill.ready);
        let prefill_steady = r.prefill.draining == 0
            && (prev.map(|p| p.0) == Some(r.prefill.ready) || ordered_fall)
            && (r.prefill.starting == 0 || kept_up);
        // A request's ITL is the mean over its whole output: those finishing in this
        // interval began up to a lifetime (their output at the ITL they saw) before it.
        // Most of them must have begun on the replicas running now, or the interval
        // measures the replicas before (an engine that took a burst alone for minutes,
        // its requests finishing after help came: 94 ms median ITL on six engines at
        // 30 req/s, read as engines four times slower than the profile).
        // So must they have begun after the decode engines last ran out of KV room: a full
        // cache admits a request only as another finishes, and the ITL of the requests that
        // lived through it holds those waits (two engines at 95% KV after a flood, a 129 ms
        // median ITL, read as engines twice as slow: six decode engines planned for the
        // next peak of an 8-GPU budget, two left for prefill).
        let kv_full = obs
            .kv_utilization
            .and_then(|k| k.decode)
            .filter(|k| *k >= KV_FULL);
        if !steady(&r.decode, prev.map(|p| p.1)) || kv_full.is_some() {
            self.decode_unsettled_at = Some(obs.time_s);
        }
        let slowest_itl_ms = obs.itl_ms.and_then(|t| positive(t.p99)).or(itl_mean);
        let lifetime_s = slowest_itl_ms.map_or(0.0, |itl| osl * itl / 1000.0);
        let decode_steady = self
            .decode_unsettled_at
            .is_some_and(|t| obs.time_s - t - lifetime_s >= interval_s / 2.0);
        // Aggregated workers do both: their TTFT teaches prefill speed, their ITL decode
        // speed, each against a worker that interleaves the two (a prompt waits behind a
        // decode step; decode steps stretch while it prefills). Without the ITL the step a
        // prompt waited behind is unknown, and its TTFT teaches nothing.
        let (prefill_engines, prefill_steady, interleaved_itl_ms) = match self.cfg.mode {
            Mode::Disaggregated => (r.prefill.ready, prefill_steady, None),
            Mode::Aggregated => (r.decode.ready, decode_steady, itl_mean),
        };
        let working_off = self.working_off_backlog(queued_before, queued, prefill_engines, prompt);
        // A backlog being worked off reaches decode as a flood the interval's arrivals and
        // its closing KV reading do not show (its requests' ITL spans the flood: 33 ms median
        // on four engines holding a quarter of their KV, read as engines twice as slow); an
        // aggregated worker's decode steps also stretch by the backlog's prefill.
        // Without a queue reading a backlog shows in the waits: prompts whose mean TTFT is
        // past its target waited behind one, and its release floods decode, in that
        // interval and the next, as a backlog worked off does (learnt as slowness, it held
        // decode out of reach at twice the engines it needed, with prefill starved of
        // GPUs). Prefill still learns from a backlog that builds: engines slower than the
        // profile show so too.
        let waited_now = ttft_mean.is_some_and(|m| m > self.ctx.sla.ttft_ms);
        let waited_before = std::mem::replace(&mut self.last_waited_out, waited_now);
        let waited_out = queued.is_none() && (waited_now || waited_before);
        // Nor, without a queue reading, does prefill learn from an interval that worked off
        // the queue its waits and the last interval's imply: its TTFT tail holds the
        // backlog's waits (one such minute, p99 1.45 s where the engines' own prompts took
        // 92 ms, was read as the slowest prompts x7 and a waiting variability of 18, and
        // prefill looked out of reach at any count for eleven minutes). The last interval's
        // waits give its mean queue, not the queue this one began with: where this one's
        // p99 met the TTFT target, no more than one prompt in a hundred waited long behind
        // anything, and its latencies are the engines' own (two-minute intervals on engines
        // 1.5 times slower than the profile, every prompt 92 ms alone in the one after the
        // first ramp's backlog, had prefill read as the profile until the next peak).
        let ttft_p99 = obs.ttft_ms.and_then(|t| positive(t.p99));
        let worked_off_unseen = queued.is_none()
            && self.working_off_backlog(estimated_before, estimated, prefill_engines, prompt)
            && ttft_p99.is_none_or(|p99| p99 > self.ctx.sla.ttft_ms);
        let prefill_steady = prefill_steady && !working_off && !worked_off_unseen;
        // An interval that began behind more queued prompts than its engines clear within
        // the TTFT target, and did not work them off, still shows the engines' speed (its
        // prompts mostly waited, so the fit weighs it little), but not their tail: its p99
        // is the wait behind that backlog, not the slowest prompts or the arrivals'
        // burstiness. Read as those, one minute behind 7.6M tokens on four engines of one
        // prompt length taught the slowest prompts x4.5 and a waiting variability of 10,
        // the TTFT target looked out of reach at any count, and decode was squeezed to one
        // engine under the budget for six minutes.
        let behind_backlog = queued_before.filter(|&q| {
            prefill_steady && self.clear_ms(q, prefill_engines, prompt) > self.ctx.sla.ttft_ms
        });
        // Either way a backlog's release reached decode.
        let flooded = working_off || worked_off_unseen || waited_out;
        let decode_steady = decode_steady && !flooded;
        let note = if working_off {
            Some(format!(
                "latencies not learned from: the queue ({:.0} tokens, down from {:.0}) was a backlog being worked off",
                queued.unwrap_or(0.0),
                queued_before.unwrap_or(0.0)
            ))
        } else if worked_off_unseen {
            Some(format!(
                "latencies not learned from: with no queue reading, the queue the mean TTFT gives by Little's law (about {:.0} tokens, down from {:.0}) was a backlog being worked off, whose release floods decode",
                estimated.unwrap_or(0.0),
                estimated_before.unwrap_or(0.0)
            ))
        } else if waited_out {
            Some("ITL not learned from: prompts waited past the TTFT target on average in this interval or the last, and with no queue reading that is a backlog whose release floods decode".to_string())
        } else {
            // An aggregated worker's prompts wait for that room too.
            let which = match self.cfg.mode {
                Mode::Disaggregated => "ITL",
                Mode::Aggregated => "latencies",
            };
            kv_full.map(|kv| {
                format!(
                    "{which} not learned from: the decode engines' KV cache was {:.0}% full, and requests waited for room",
                    kv * 100.0
                )
            })
        };
        let mut notes: Vec<String> = note.into_iter().collect();
        if let (Some(queued_before), Some(_)) = (behind_backlog, ttft_p99) {
            notes.push(format!(
                "TTFT p99 not learned from: its prompts waited behind {queued_before:.0} tokens queued before the interval"
            ));
        }
        Steadiness {
            prefill_engines,
            prefill_steady,
            prefill_tail_steady: behind_backlog.is_none(),
            decode_steady,
            flooded,
            kv_full,
            interleaved_itl_ms,
            notes,
        }
    }
}
