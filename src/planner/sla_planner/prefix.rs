//! Prefix caching: the share of prompt tokens the prefill engines find cached, and prompts
//! as prefill costs them past it. Decode holds whole prompts either way.

use super::*;

/// The share of prompt tokens the caches held in each of the last intervals with enough
/// prompts to tell (the correction window's).
#[derive(Debug, Clone, Default)]
pub(super) struct CachedShares {
    /// Newest last; a missing reading counts as nothing cached.
    recent: Vec<f64>,
}

impl CachedShares {
    /// Notes an interval's reading; intervals of fewer than `MIN_EVIDENCE_REQUESTS` prompts
    /// say too little either way. Keeps `window` intervals.
    pub(super) fn observe(&mut self, hit_rate: Option<f64>, requests: f64, window: usize) {
        if requests < MIN_EVIDENCE_REQUESTS {
            return;
        }
        let share = hit_rate.filter(|h| h.is_finite()).unwrap_or(0.0);
        self.recent.push(share.clamp(0.0, 1.0));
        let excess = self.recent.len().saturating_sub(window.max(1));
        self.recent.drain(..excess);
    }

    /// The share planned for: the lower of the last two intervals', as the prompts'
    /// length is planned at its point. One interval's share, of a few hundred prompts, can
    /// read high by chance: a rise must show twice before prefill is shed for it (and the
    /// stabiliser's window still guards that scale-down); a fall is planned for at once.
    /// 0 before any reading.
    pub(super) fn planned(&self) -> f64 {
        let n = self.recent.len();
        self.recent[n.saturating_sub(2)..]
            .iter()
            .copied()
            .reduce(f64::min)
            .unwrap_or(0.0)
    }

    /// The least of the window's: the caches may hold no more when the mix of prompts
    /// turns or engines are shed (each holds its own prompts). A scale-down is held to
    /// what the load would ask at it, as at the lengths' bounds (`WORST_MISS_QUANTILE`).
    pub(super) fn least(&self) -> f64 {
        self.recent.iter().copied().reduce(f64::min).unwrap_or(0.0)
    }
}

impl SlaPlanner {
    /// What the prefix caches took off prefill in `plan`, said as a reason; `None` when
    /// nothing is planned as cached.
    pub(super) fn cached_reason(&self, plan: &HorizonPlan) -> Option<String> {
        let share = self.cached_shares.planned();
        (share > 0.0).then(|| {
            format!(
                "prefill sized for prompts past the prefix caches: {:.0}% of prompt tokens found cached (the lower of the last two intervals' shares), so an ISL of {:.0} costs as {:.0} would uncached",
                share * 100.0,
                plan.load.isl,
                plan.load.prefill_isl
            )
        })
    }
}

/// A prompt of `isl` tokens with `share` of them cached, as the prefill engines work on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PromptWork {
    /// The tokens computed: the uncached ones, at least the last (whose logits are the
    /// first token).
    pub(super) computed_tokens: f64,
    /// The ISL whose prefill alone costs as much (`PrefillModel::isl_past_cached`).
    pub(super) prefill_isl: f64,
}

impl PromptWork {
    pub(super) fn new(prefill: &crate::profile::PrefillModel, isl: f64, share: f64) -> PromptWork {
        if share.is_nan() || share <= 0.0 {
            return PromptWork {
                computed_tokens: isl,
                prefill_isl: isl,
            };
        }
        let cached = (share.min(1.0) * isl).min(isl - 1.0).max(0.0);
        PromptWork {
            computed_tokens: isl - cached,
            prefill_isl: prefill.isl_past_cached(isl, cached),
        }
    }

    /// Queued tokens to compute as the whole prompts' tokens they stand for (what the
    /// solver's backlog counts: `isl` each).
    pub(super) fn as_prompt_tokens(&self, computed: f64, isl: f64) -> f64 {
        if self.computed_tokens > 0.0 && self.computed_tokens < isl {
            computed * isl / self.computed_tokens
        } else {
            computed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_planned_is_the_lower_of_the_last_two_and_a_missing_reading_is_none() {
        let mut s = CachedShares::default();
        assert_eq!((s.planned(), s.least()), (0.0, 0.0));
        s.observe(Some(0.4), 100.0, 3);
        assert_eq!((s.planned(), s.least()), (0.4, 0.4));
        s.observe(Some(0.3), 100.0, 3);
        s.observe(Some(0.5), 100.0, 3);
        // A rise shows once: not yet planned for.
        assert_eq!((s.planned(), s.least()), (0.3, 0.3));
        // A quiet interval says nothing.
        s.observe(Some(0.0), 5.0, 3);
        assert_eq!((s.planned(), s.least()), (0.3, 0.3));
        // Twice: planned for; the oldest leaves the window.
        s.observe(Some(0.6), 100.0, 3);
        assert_eq!((s.planned(), s.least()), (0.5, 0.3));
        s.observe(Some(0.7), 100.0, 3);
        assert_eq!((s.planned(), s.least()), (0.6, 0.5));
        // A fall at once; a reading gone missing is nothing cached.
        s.observe(Some(0.2), 100.0, 3);
        assert_eq!((s.planned(), s.least()), (0.2, 0.2));
        s.observe(None, 100.0, 3);
        assert_eq!((s.planned(), s.least()), (0.0, 0.0));
    }

    #[test]
    fn a_cached_prompt_computes_its_uncached_part_and_stands_for_whole_prompts_in_a_queue() {
        let prefill = crate::profile::Profile::embedded_default().prefill_model();
        let none = PromptWork::new(&prefill, 3000.0, 0.0);
        assert_eq!((none.computed_tokens, none.prefill_isl), (3000.0, 3000.0));
        assert_eq!(none.as_prompt_tokens(6000.0, 3000.0), 6000.0);
        let half = PromptWork::new(&prefill, 3000.0, 0.5);
        assert_eq!(half.computed_tokens, 1500.0);
        assert!(half.prefill_isl > 0.0 && half.prefill_isl < 3000.0);
        // 3,000 tokens to compute are two prompts' worth: 6,000 prompt tokens.
        assert_eq!(half.as_prompt_tokens(3000.0, 3000.0), 6000.0);
        // All cached: the last token is still computed.
        let all = PromptWork::new(&prefill, 3000.0, 1.0);
        assert_eq!(all.computed_tokens, 1.0);
        assert!(all.prefill_isl > 0.0 && all.prefill_isl < 3000.0);
    }
}
