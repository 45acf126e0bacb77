//! The stabiliser: turns the solver's wish into a target that does not thrash.
//!
//! Scale-up is immediate (optionally limited per step); scale-down waits for the largest
//! wish of the last `scale_down_window_s` (as the HPA does; the last decision's wish counts
//! however long ago it was), is ignored within a tolerance band, removes at most half a
//! role's replicas (or four, whichever is more) per decision, and may be limited per step.
//! Keeping capacity that the forecast needs again before a new replica could start is the
//! solver's horizon, which spans interval + cold start.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilizerConfig {
    /// Scale down only to the largest target wished for within this window, seconds.
    #[serde(default = "default_window")]
    pub scale_down_window_s: f64,
    /// Ignore a scale-down smaller than this share of the current replicas.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Most replicas added per role in one decision (none: no limit).
    #[serde(default)]
    pub max_step_up: Option<u32>,
    /// Most replicas removed per role in one decision (none: no limit).
    #[serde(default)]
    pub max_step_down: Option<u32>,
    /// Most of a role's replicas one decision removes, as a share of them (1: no limit)...
    #[serde(default = "default_max_share_down")]
    pub max_share_down: f64,
    /// ...or this many, whichever is more (as the HPA pairs a percent policy with a pods
    /// one), so that the share does not hold back a small deployment's steps.
    #[serde(default = "default_free_step_down")]
    pub free_step_down: u32,
}

fn default_window() -> f64 {
    120.0
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_max_share_down() -> f64 {
    0.5
}
fn default_free_step_down() -> u32 {
    4
}

impl Default for StabilizerConfig {
    fn default() -> Self {
        StabilizerConfig {
            scale_down_window_s: default_window(),
            tolerance: default_tolerance(),
            max_step_up: None,
            max_step_down: None,
            max_share_down: default_max_share_down(),
            free_step_down: default_free_step_down(),
        }
    }
}

impl StabilizerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.scale_down_window_s.is_finite() && self.scale_down_window_s >= 0.0) {
            return Err(format!(
                "stabilizer.scale_down_window_s: must be >= 0 (got {})",
                self.scale_down_window_s
            ));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(format!(
                "stabilizer.tolerance: must be in [0, 1) (got {})",
                self.tolerance
            ));
        }
        if !(self.max_share_down > 0.0 && self.max_share_down <= 1.0) {
            return Err(format!(
                "stabilizer.max_share_down: must be in (0, 1] (got {})",
                self.max_share_down
            ));
        }
        if self.max_step_up == Some(0) || self.max_step_down == Some(0) {
            return Err(
                "stabilizer.max_step_up / max_step_down: must be at least 1 when set".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Stabilizer {
    cfg: StabilizerConfig,
    wishes: VecDeque<(f64, u32, u32)>,
}

/// The largest wish a scale-down waits for, and when it was wished, as the reasons say it.
struct Window<'a> {
    max: u32,
    when: &'a str,
}

fn one_role(
    role: &str,
    cfg: &StabilizerConfig,
    wish: u32,
    window: Window,
    sure: Option<u32>,
    current: u32,
    reasons: &mut Vec<String>,
) -> u32 {
    if wish > current {
        let step = cfg.max_step_up.unwrap_or(u32::MAX);
        let to = wish.min(current.saturating_add(step));
        if to < wish {
            reasons.push(format!("{role}: scale-up limited to +{step} per decision"));
        }
        return to;
    }
    let mut held = window.max.max(wish);
    // A falling wish is held no higher than the load would ask at the forecast's worst
    // recent miss: the window guards against a forecast that may be wrong, and this one's
    // misses are known.
    if let Some(sure) = sure
        .map(|s| s.max(wish))
        .filter(|&s| s < held && s < current)
    {
        reasons.push(format!(
            "{role}: falling at every decision within {:.0}s, held at {sure}, not {held}: the most the load asks at the forecast's worst miss of the last dozen, or at its own worst rise where the forecast is no clearly better than the last value",
            cfg.scale_down_window_s
        ));
        held = sure;
    }
    if held >= current {
        if wish < current {
            reasons.push(format!(
                "{role}: held at {current}, a target of {held} was wished {}",
                window.when
            ));
        }
        return current;
    }
    if (held as f64) >= current as f64 * (1.0 - cfg.tolerance) {
        reasons.push(format!(
            "{role}: {current} -> {held} is within the {:.0}% tolerance band; held",
            cfg.tolerance * 100.0
        ));
        return current;
    }
    // A wish that falls far at once rests on one view of the load; what it releases takes
    // a cold start to come back, so a large deployment halves at most per decision (73
    // prefill engines to 25 in one lull, then 17, ahead of a minute at 717 req/s).
    let by_share =
        ((f64::from(current) * cfg.max_share_down).floor() as u32).max(cfg.free_step_down);
    let step = cfg.max_step_down.unwrap_or(u32::MAX).min(by_share);
    let to = held.max(current.saturating_sub(step));
    if to > held {
        reasons.push(if by_share == step {
            format!(
                "{role}: scale-down limited to -{step} per decision ({:.0}% of {current}, or {})",
                cfg.max_share_down * 100.0,
                cfg.free_step_down
            )
        } else {
            format!("{role}: scale-down limited to -{step} per decision")
        });
    }
    if held > wish {
        reasons.push(format!(
            "{role}: scale-down stabilised at {held} (the largest wish {})",
            window.when
        ));
    }
    to
}

impl Stabilizer {
    pub fn new(cfg: StabilizerConfig) -> Stabilizer {
        Stabilizer {
            cfg,
            wishes: VecDeque::new(),
        }
    }

    /// Records a decision that kept `current` (a hold), so a later scale-down waits for it.
    pub fn note_hold(&mut self, now_s: f64, current: (u32, u32)) {
        self.wishes.push_back((now_s, current.0, current.1));
    }

    /// Forgets the wishes older than the window. With a window at all, the last decision's
    /// wish stays however long ago it was: with decisions further apart than the window
    /// (Dynamo's planner decides every 180 s), a scale-down still needs two in a row to
    /// wish it.
    fn forget_before(&mut self, now_s: f64) {
        let keep = usize::from(self.cfg.scale_down_window_s > 0.0);
        while self.wishes.len() > keep
            && self
                .wishes
                .front()
                .is_some_and(|w| w.0 < now_s - self.cfg.scale_down_window_s)
        {
            self.wishes.pop_front();
        }
    }

    /// Per role, whether `wish` would go on a fall at every decision within the window (two
    /// or more before it): a descent, not flapping.
    pub fn falling(&mut self, now_s: f64, wish: (u32, u32)) -> (bool, bool) {
        self.forget_before(now_s);
        let falls = |role: fn(&(f64, u32, u32)) -> u32, now: u32| {
            let wishes = || self.wishes.iter().map(role).chain([now]);
            self.wishes.len() >= 2 && wishes().zip(wishes().skip(1)).all(|(a, b)| b < a)
        };
        (falls(|w| w.1, wish.0), falls(|w| w.2, wish.1))
    }

    /// `wish` is the solver's `(prefill, decode)`, `current` the replicas ready or starting,
    /// `sure` what the load would ask at the forecast's worst recent miss, when known: a role
    /// whose wish is falling is held no higher than that.
    pub fn apply(
        &mut self,
        now_s: f64,
        wish: (u32, u32),
        current: (u32, u32),
        sure: Option<(u32, u32)>,
    ) -> ((u32, u32), Vec<String>) {
        let (falls_p, falls_d) = self.falling(now_s, wish);
        let max_p = self.wishes.iter().map(|w| w.1).max().unwrap_or(0);
        let max_d = self.wishes.iter().map(|w| w.2).max().unwrap_or(0);
        // The last decision's wish is kept however long ago it was (`forget_before`).
        let window_s = self.cfg.scale_down_window_s;
        let when = match self.wishes.front() {
            Some(&(t, _, _)) if t < now_s - window_s => {
                format!("at the last decision, {:.0}s ago", now_s - t)
            }
            _ => format!("within the last {window_s:.0}s"),
        };
        self.wishes.push_back((now_s, wish.0, wish.1));
        let sure_p = sure.map(|s| s.0).filter(|_| falls_p);
        let sure_d = sure.map(|s| s.1).filter(|_| falls_d);
        let mut reasons = Vec::new();
        let p = one_role(
            "prefill",
            &self.cfg,
            wish.0,
            Window {
                max: max_p,
                when: &when,
            },
            sure_p,
            current.0,
            &mut reasons,
        );
        let d = one_role(
            "decode",
            &self.cfg,
            wish.1,
            Window {
                max: max_d,
                when: &when,
            },
            sure_d,
            current.1,
            &mut reasons,
        );
        ((p, d), reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A role's `(prefill, decode)`.
    type Wish = (u32, u32);

    /// Feeds `(time, wish, current)` steps and returns the targets.
    /// `(time, wish, current)`.
    type Step = (f64, (u32, u32), (u32, u32));

    fn run(cfg: StabilizerConfig, steps: &[Step]) -> Vec<(u32, u32)> {
        let mut s = Stabilizer::new(cfg);
        steps
            .iter()
            .map(|&(t, w, c)| s.apply(t, w, c, None).0)
            .collect()
    }

    /// A scale-down window and nothing else: no tolerance band, no step limits.
    fn window_only(scale_down_window_s: f64) -> StabilizerConfig {
        StabilizerConfig {
            scale_down_window_s,
            tolerance: 0.0,
            max_share_down: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn scale_up_is_immediate() {
        assert_eq!(
            run(StabilizerConfig::default(), &[(0.0, (5, 6), (2, 2))]),
            vec![(5, 6)]
        );
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        let cfg = window_only(120.0);
        // Wish drops from 6 to 2 at t=60; held until the 6 leaves the window (t > 120).
        let got = run(
            cfg,
            &[
                (0.0, (6, 6), (6, 6)),
                (60.0, (2, 2), (6, 6)),
                (120.0, (2, 2), (6, 6)),
                (180.0, (2, 2), (6, 6)),
            ],
        );
        assert_eq!(got, vec![(6, 6), (6, 6), (6, 6), (2, 2)]);
    }

    #[test]
    fn a_falling_wish_is_held_no_higher_than_the_forecasts_worst_miss_asks() {
        // (wishes at 0, 60, 120 s with the worst miss asking (4, 3) at 120 s, replicas at
        // 6, the targets at 120 s): the window of 120 s holds three wishes.
        let sure = Some((4, 3));
        let cases: [(Wish, Wish, Wish, Option<Wish>, Wish); 5] = [
            // Falling at every decision: down to what the worst miss asks, not the wish.
            ((6, 6), (5, 5), (3, 2), sure, (4, 3)),
            // The worst miss asks no more than the wish: the wish.
            ((6, 6), (5, 5), (3, 2), Some((1, 1)), (3, 2)),
            // Unknown misses: the window holds.
            ((6, 6), (5, 5), (3, 2), None, (6, 6)),
            // Flapping (down, up, down) or flat then down: the window holds.
            ((5, 5), (6, 6), (3, 2), sure, (6, 6)),
            ((6, 6), (6, 6), (3, 2), sure, (6, 6)),
        ];
        for (first, second, third, sure, want) in cases {
            let mut s = Stabilizer::new(window_only(120.0));
            s.apply(0.0, first, (6, 6), None);
            s.apply(60.0, second, (6, 6), None);
            let (got, reasons) = s.apply(120.0, third, (6, 6), sure);
            assert_eq!(
                got, want,
                "{first:?} {second:?} {third:?} {sure:?}: {reasons:?}"
            );
        }
        // One earlier wish is no descent yet.
        let mut s = Stabilizer::new(window_only(120.0));
        s.apply(60.0, (6, 6), (6, 6), None);
        assert_eq!(s.apply(120.0, (3, 2), (6, 6), sure).0, (6, 6));
    }

    #[test]
    fn decisions_further_apart_than_the_window_still_need_two_wishes_to_scale_down() {
        let cfg = window_only(120.0);
        // A decision every 180 s: the 3 wished at t=0 holds t=180's wish of 2; t=360's
        // second 2 scales down; a 3 again is immediate, and one 2 after it holds.
        let got = run(
            cfg,
            &[
                (0.0, (3, 3), (3, 3)),
                (180.0, (2, 2), (3, 3)),
                (360.0, (2, 2), (3, 3)),
                (540.0, (3, 3), (2, 2)),
                (720.0, (2, 2), (3, 3)),
            ],
        );
        assert_eq!(got, vec![(3, 3), (3, 3), (2, 2), (3, 3), (3, 3)]);
        // The reason says when the wish that holds was made.
        let mut s = Stabilizer::new(cfg);
        s.apply(0.0, (3, 3), (3, 3), None);
        let (_, reasons) = s.apply(180.0, (2, 2), (3, 3), None);
        assert_eq!(
            reasons[0],
            "prefill: held at 3, a target of 3 was wished at the last decision, 180s ago"
        );
        let (_, reasons) = s.apply(240.0, (1, 1), (3, 3), None);
        assert_eq!(
            reasons[0],
            "prefill: scale-down stabilised at 2 (the largest wish within the last 120s)"
        );
        // No window, no hold.
        assert_eq!(
            run(
                window_only(0.0),
                &[(0.0, (3, 3), (3, 3)), (180.0, (2, 2), (3, 3))]
            ),
            vec![(3, 3), (2, 2)]
        );
    }

    #[test]
    fn tolerance_band_holds_small_steps_down() {
        let cfg = StabilizerConfig {
            scale_down_window_s: 0.0,
            tolerance: 0.1,
            ..Default::default()
        };
        assert_eq!(run(cfg, &[(0.0, (19, 8), (20, 10))]), vec![(20, 8)]);
    }

    #[test]
    fn step_limits() {
        let cfg = StabilizerConfig {
            scale_down_window_s: 0.0,
            tolerance: 0.0,
            max_step_up: Some(2),
            max_step_down: Some(1),
            ..Default::default()
        };
        assert_eq!(run(cfg, &[(0.0, (9, 1), (3, 4))]), vec![(5, 3)]);
    }

    #[test]
    fn one_decision_removes_at_most_half_or_four() {
        // (wish, current) -> target, with no window or band: a large role halves at most,
        // a small one takes its step whole.
        let cfg = StabilizerConfig {
            scale_down_window_s: 0.0,
            tolerance: 0.0,
            ..Default::default()
        };
        let table = [
            ((25, 1), (73, 4), (37, 1)),
            ((17, 3), (37, 18), (19, 9)),
            ((19, 1), (19, 9), (19, 5)),
            ((1, 2), (4, 6), (1, 2)),
            ((3, 4), (9, 8), (5, 4)),
        ];
        for (wish, current, want) in table {
            assert_eq!(
                run(cfg, &[(0.0, wish, current)]),
                vec![want],
                "{wish:?} {current:?}"
            );
        }
        // The share and an absolute limit: the tighter one.
        let both = StabilizerConfig {
            max_step_down: Some(3),
            ..cfg
        };
        assert_eq!(run(both, &[(0.0, (10, 10), (40, 12))]), vec![(37, 10)]);
        let mut s = Stabilizer::new(cfg);
        let (_, reasons) = s.apply(0.0, (25, 4), (73, 4), None);
        assert!(
            reasons.contains(
                &"prefill: scale-down limited to -36 per decision (50% of 73, or 4)".to_string()
            ),
            "{reasons:?}"
        );
        let off = StabilizerConfig {
            max_share_down: 1.0,
            ..cfg
        };
        assert_eq!(run(off, &[(0.0, (25, 1), (73, 4))]), vec![(25, 1)]);
    }

    #[test]
    fn flapping_wishes_do_not_flap_targets() {
        let cfg = StabilizerConfig::default();
        let steps: Vec<_> = (0..10)
            .map(|i| {
                (
                    i as f64 * 60.0,
                    if i % 2 == 0 { (4, 4) } else { (2, 2) },
                    (4, 4),
                )
            })
            .collect();
        assert!(run(cfg, &steps).iter().all(|&t| t == (4, 4)));
    }
}
