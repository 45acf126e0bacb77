//! The cold start the replicas show: how long those the deployment started took to become
//! ready. The horizon is an interval and a cold start; one configured too short sizes
//! capacity for a load that comes before that capacity does. So the planner plans with the
//! cold start its replicas have shown when that is longer than the configured one (never
//! shorter: a start seen quick once may have found its image cached), and says which
//! replicas have been starting for far longer than either (a pod waiting for a free GPU,
//! an image that will not pull), which no further order would bring sooner.
//!
//! Only counts are seen, once an interval: a replica that became ready between two
//! observations took more than the time from its order to the first and at most the time
//! to the second; one never seen starting, at most the time between them. The order is the decision before the observation that first shows it
//! starting; replicas leave the starting count oldest first when they become ready, newest
//! first when they are cancelled (Kubernetes' ReplicaSet controller removes the youngest of
//! the pods not ready).

use std::collections::VecDeque;

use super::{ReplicaState, RoleReplicas};

/// Completed starts remembered, both roles together: the cold start planned with is their
/// median, the typical start rather than the one slow node's.
const STARTS_KEPT: usize = 8;
/// Completed starts, all quicker than half the configured cold start, before the decision
/// says the configured one may be too long.
const QUICK_STARTS_TOLD: usize = 3;
/// A replica starting for more than this many cold starts (and an interval, the
/// observation's lag) is reported as overdue.
const OVERDUE_COLD_STARTS: f64 = 2.0;

#[derive(Debug, Clone, Default)]
struct RoleStarts {
    /// When each replica still starting was ordered, oldest first; `None` for one already
    /// starting at the first observation.
    pending: VecDeque<Option<f64>>,
    /// Ready replicas at the previous observation.
    ready: u32,
}

/// How long the deployment's replicas took to start, per role, from the replica counts of
/// successive observations.
#[derive(Debug, Clone, Default)]
pub struct ColdStarts {
    prefill: RoleStarts,
    decode: RoleStarts,
    /// The previous observation's time: the order of a replica first seen starting now.
    last_seen_s: Option<f64>,
    /// The latest completed starts, each as `(more than, at most)` seconds from the order.
    took: VecDeque<(f64, f64)>,
    /// Seconds between the last two observations with counts.
    last_gap_s: f64,
}

impl ColdStarts {
    /// Takes an observation's replica counts at `now_s`. Observations without counts are
    /// skipped: the next one with counts is compared with the last that had them, and the
    /// starts between are bounded by that wider span.
    pub fn observe(&mut self, now_s: f64, replicas: Option<&RoleReplicas>) {
        let Some(r) = replicas else {
            return;
        };
        if !now_s.is_finite() || self.last_seen_s.is_some_and(|t| now_s <= t) {
            return;
        }
        let last = self.last_seen_s;
        for (role, seen) in [
            (&mut self.prefill, &r.prefill),
            (&mut self.decode, &r.decode),
        ] {
            for ordered in role.take(seen, last).into_iter().flatten() {
                let from = last.map_or(0.0, |t| t - ordered);
                self.took.push_back((from, now_s - ordered));
                if self.took.len() > STARTS_KEPT {
                    self.took.pop_front();
                }
            }
        }
        self.last_gap_s = last.map_or(0.0, |t| now_s - t);
        self.last_seen_s = Some(now_s);
    }

    /// The cold start to plan with: the starts' own (`shown_s`), or longer while a replica
    /// has been starting for longer than that at the last observation: a start under way
    /// has taken at least as long as it has lasted. A replica starting for more than
    /// twice the starts' cold start is taken for one that waits on something else (a free
    /// GPU, an image) and is reported instead (`reasons`): the plan waits no longer.
    pub fn planned_s(&self, configured: f64) -> f64 {
        let shown = self.shown_s(configured);
        let under_way = self
            .oldest_under_way_s()
            .filter(|&age| age > shown + self.jitter_s())
            .unwrap_or(0.0);
        shown.max(under_way.min(OVERDUE_COLD_STARTS * shown))
    }

    /// The cold start the completed starts show: `configured`, or the median of the latest
    /// starts where that is longer. A start is taken as `configured` where it may have been
    /// that long, and as the middle of its bounds where it was surely longer.
    fn shown_s(&self, configured: f64) -> f64 {
        if self.took.is_empty() {
            return configured;
        }
        let mut taken: Vec<f64> = self
            .took
            .iter()
            .map(|&(from, to)| {
                // Within a twentieth of the observations' spacing of the configured one
                // (clock jitter, a replica ready at the very moment it was observed): as
                // configured.
                if from <= configured + (to - from) / 20.0 {
                    configured.min(to)
                } else {
                    (from + to) / 2.0
                }
            })
            .collect();
        taken.sort_by(f64::total_cmp);
        let n = taken.len();
        let median = if n % 2 == 1 {
            taken[n / 2]
        } else {
            (taken[n / 2 - 1] + taken[n / 2]) / 2.0
        };
        configured.max(median)
    }

    /// How long the oldest replica still starting at the last observation had been, from
    /// its order.
    fn oldest_under_way_s(&self) -> Option<f64> {
        let seen = self.last_seen_s?;
        [&self.prefill, &self.decode]
            .iter()
            .filter_map(|role| role.pending.iter().flatten().next())
            .map(|ordered| seen - ordered)
            .reduce(f64::max)
    }

    /// The longest the latest completed starts may have taken.
    fn slowest_s(&self) -> f64 {
        self.took.iter().map(|t| t.1).fold(0.0, f64::max)
    }

    /// Clock jitter allowed between a start as long as planned and the observation that
    /// sees it: a twentieth of the observations' spacing.
    fn jitter_s(&self) -> f64 {
        self.last_gap_s / 20.0
    }

    /// What a decision at `now_s` should say of the cold start: the one planned with when
    /// it is longer than `configured`, and, per role, the replicas starting for more than
    /// twice the starts' cold start and an interval.
    pub fn reasons(&self, now_s: f64, configured: f64, interval_s: f64) -> Vec<String> {
        let shown = self.shown_s(configured);
        let planned = self.planned_s(configured);
        let mut reasons = Vec::new();
        let slowest = self.slowest_s();
        if planned > shown {
            let not = if shown > configured {
                format!("the {shown:.0}s the replicas' starts show")
            } else {
                format!("the configured {configured:.0}s")
            };
            reasons.push(format!(
                "cold start planned as {planned:.0}s, not {not}: a replica has been starting for that long (up to twice the cold start is waited for)"
            ));
        } else if planned > configured {
            reasons.push(format!(
                "cold start planned as {planned:.0}s, not the configured {configured:.0}s: the latest {} to become ready took up to {slowest:.0}s from their order (median {planned:.0}s)",
                replicas(self.took.len())
            ));
        } else if self.took.len() >= QUICK_STARTS_TOLD && slowest <= configured / 2.0 {
            // Never planned with (a start seen quick may have found its image cached), but
            // the operator may want to know: a longer horizon holds more GPUs ahead of a rise.
            reasons.push(format!(
                "the latest {} to become ready took at most {slowest:.0}s from their order, under half the configured cold start of {configured:.0}s, which is still planned with",
                replicas(self.took.len()),
            ));
        }
        let overdue_after = OVERDUE_COLD_STARTS * shown + interval_s;
        for (name, role) in [("prefill", &self.prefill), ("decode", &self.decode)] {
            let overdue: Vec<f64> = role
                .pending
                .iter()
                .flatten()
                .map(|ordered| now_s - ordered)
                .filter(|&age| age > overdue_after)
                .collect();
            if let Some(oldest) = overdue.iter().copied().reduce(f64::max) {
                reasons.push(format!(
                    "{name}: {} starting for over {overdue_after:.0}s (the oldest {oldest:.0}s), more than twice the cold start of {shown:.0}s: still counted as capacity to come, and no more ordered in their place, which would wait as they do (a pod waiting for a free GPU, an image that does not pull?)",
                    replicas(overdue.len())
                ));
            }
        }
        reasons
    }
}

/// "1 replica", "2 replicas".
fn replicas(n: usize) -> String {
    if n == 1 {
        "1 replica".to_string()
    } else {
        format!("{n} replicas")
    }
}

impl RoleStarts {
    /// Brings the role to the counts `seen`, the previous observation at `last_s`; returns
    /// the order times of the replicas that became ready since.
    fn take(&mut self, seen: &ReplicaState, last_s: Option<f64>) -> Vec<Option<f64>> {
        // Replicas become ready from the starting ones, oldest first. A ready count that
        // also lost replicas in the interval hides some of them, which then leave below as
        // cancelled, unmeasured.
        let rose = seen.ready.saturating_sub(self.ready) as usize;
        let started = rose.min(self.pending.len());
        let mut became_ready: Vec<Option<f64>> = self.pending.drain(..started).collect();
        // A rise no start seen explains: neither starting nor ready at the previous
        // observation, so ordered at its decision or after, and ready within the spacing.
        became_ready.extend(std::iter::repeat_n(
            last_s,
            (rose - started).min(STARTS_KEPT),
        ));
        let starting = seen.starting as usize;
        // More starting than remain: ordered at the previous decision. Fewer: cancelled,
        // or failed, the youngest first.
        while self.pending.len() < starting {
            self.pending.push_back(last_s);
        }
        self.pending.truncate(starting);
        self.ready = seen.ready;
        // At the first observation there is no previous one to tell when they started.
        if last_s.is_none() {
            return Vec::new();
        }
        became_ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(prefill: (u32, u32), decode: (u32, u32)) -> RoleReplicas {
        RoleReplicas {
            prefill: ReplicaState {
                ready: prefill.0,
                starting: prefill.1,
                draining: 0,
            },
            decode: ReplicaState {
                ready: decode.0,
                starting: decode.1,
                draining: 0,
            },
        }
    }

    /// `(time, prefill (ready, starting), decode (ready, starting))`.
    type Row = (f64, (u32, u32), (u32, u32));

    fn run(rows: &[Row]) -> ColdStarts {
        let mut c = ColdStarts::default();
        for &(t, p, d) in rows {
            c.observe(t, Some(&counts(p, d)));
        }
        c
    }

    #[test]
    fn the_cold_start_planned_follows_the_starts_seen() {
        // (case, rows, configured, planned)
        let cases: &[(&str, &[Row], f64, f64)] = &[
            (
                "nothing started",
                &[(60.0, (1, 0), (1, 0)), (120.0, (1, 0), (1, 0))],
                60.0,
                60.0,
            ),
            (
                "ready an interval after the order, as configured",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 2), (1, 1)),
                    (180.0, (3, 0), (2, 0)),
                ],
                60.0,
                60.0,
            ),
            (
                "a 180 s start in 60 s intervals, told 60 s: ready after 120-180 s",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 1), (1, 1)),
                    (180.0, (1, 1), (1, 1)),
                    (240.0, (2, 0), (2, 0)),
                ],
                60.0,
                150.0,
            ),
            (
                "the same start, configured as it is",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 1), (1, 1)),
                    (180.0, (1, 1), (1, 1)),
                    (240.0, (2, 0), (2, 0)),
                ],
                180.0,
                180.0,
            ),
            (
                "configured as it is, but still starting at the observation it became ready at",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 1), (1, 1)),
                    (180.0, (1, 1), (1, 1)),
                    (240.0, (1, 1), (1, 1)),
                    (300.0, (2, 0), (2, 0)),
                ],
                180.0,
                180.0,
            ),
            (
                "starts quicker than configured never shorten it",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 1), (1, 1)),
                    (180.0, (2, 0), (2, 0)),
                ],
                300.0,
                300.0,
            ),
            (
                "cancelled while starting: nothing measured",
                &[
                    (60.0, (1, 0), (1, 0)),
                    (120.0, (1, 3), (1, 0)),
                    (180.0, (1, 3), (1, 0)),
                    (240.0, (1, 0), (1, 0)),
                ],
                60.0,
                60.0,
            ),
            (
                "already starting at the first observation: no order time, nothing measured",
                &[
                    (60.0, (1, 2), (1, 0)),
                    (120.0, (1, 2), (1, 0)),
                    (600.0, (3, 0), (1, 0)),
                ],
                60.0,
                60.0,
            ),
        ];
        for (case, rows, configured, planned) in cases {
            let c = run(rows);
            assert_eq!(c.planned_s(*configured), *planned, "{case}");
        }
    }

    #[test]
    fn the_oldest_start_becomes_ready_first_and_the_youngest_is_cancelled_first() {
        // Two ordered at 60 s, one more at 120 s; at 240 s one becomes ready and one is
        // cancelled: the ready one is of the first order, and the one left is too.
        let mut c = run(&[
            (60.0, (1, 0), (1, 0)),
            (120.0, (1, 2), (1, 0)),
            (180.0, (1, 3), (1, 0)),
            (240.0, (2, 1), (1, 0)),
        ]);
        // Ordered at 60, seen ready at 240: more than 120 s, at most 180 s.
        assert_eq!(
            c.took.iter().copied().collect::<Vec<_>>(),
            vec![(120.0, 180.0)]
        );
        assert_eq!(c.prefill.pending, VecDeque::from(vec![Some(60.0)]));
        c.observe(300.0, Some(&counts((3, 0), (1, 0))));
        assert_eq!(c.took.back(), Some(&(180.0, 240.0)));
    }

    #[test]
    fn the_median_of_the_latest_starts_is_planned_with() {
        let mut c = ColdStarts::default();
        let mut t = 0.0;
        let mut ready = 1;
        // Eight slow starts (seen ready 300 s after the order), then ones as configured
        // (seen ready at the second observation after it); only the latest eight count.
        // One replica ordered at `t`, seen starting from `t + 60` and ready at `t + after`.
        let mut start = |c: &mut ColdStarts, t: &mut f64, after: f64| {
            let ordered = *t;
            c.observe(ordered, Some(&counts((ready, 0), (1, 0))));
            let mut seen = ordered + 60.0;
            while seen < ordered + after {
                c.observe(seen, Some(&counts((ready, 1), (1, 0))));
                seen += 60.0;
            }
            ready += 1;
            c.observe(ordered + after, Some(&counts((ready, 0), (1, 0))));
            *t = ordered + after + 60.0;
        };
        for _ in 0..8 {
            start(&mut c, &mut t, 300.0);
        }
        assert_eq!(c.planned_s(60.0), 270.0);
        for _ in 0..4 {
            start(&mut c, &mut t, 120.0);
        }
        // Four slow, four as configured: between them.
        assert_eq!(c.planned_s(60.0), 165.0);
        start(&mut c, &mut t, 120.0);
        assert_eq!(c.planned_s(60.0), 60.0);
    }

    #[test]
    fn replicas_starting_far_longer_than_the_cold_start_are_reported() {
        let mut rows = vec![(60.0, (1, 0), (1, 0))];
        for i in 2..=8 {
            rows.push((60.0 * f64::from(i), (1, 2), (1, 0)));
        }
        let c = run(&rows);
        // Ordered at 60 s, starting at 480 s: 420 s, over 2 x 60 + 60 = 180 s.
        // The plan waits for them up to twice the cold start, then reports them.
        assert_eq!(c.planned_s(60.0), 120.0);
        let reasons = c.reasons(480.0, 60.0, 60.0);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("cold start planned as 120s, not the configured 60s"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("prefill: 2 replicas starting for over 180s (the oldest 420s)"),
            "{reasons:?}"
        );
        // Configured at 300 s, they are waited for (420 s, as long as they have lasted),
        // not yet overdue.
        assert_eq!(c.planned_s(300.0), 420.0);
        let reasons = c.reasons(480.0, 300.0, 60.0);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("cold start planned as 420s"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_start_under_way_for_longer_than_the_cold_start_lengthens_it_as_it_lasts() {
        // Ordered at 60 s, still starting: at 120 s it has lasted the configured 60 s, at
        // 180 s longer; beyond twice the cold start the plan waits no longer.
        let mut c = run(&[(60.0, (1, 0), (1, 0)), (120.0, (1, 0), (1, 1))]);
        assert_eq!(c.planned_s(60.0), 60.0);
        c.observe(180.0, Some(&counts((1, 0), (1, 1))));
        assert_eq!(c.planned_s(60.0), 120.0);
        c.observe(183.0, Some(&counts((1, 0), (1, 1))));
        assert_eq!(c.planned_s(60.0), 120.0);
        c.observe(400.0, Some(&counts((1, 0), (1, 1))));
        assert_eq!(c.planned_s(60.0), 120.0);
        // Seen a second late (a twentieth of the spacing), a start as configured is one.
        let late = run(&[(60.0, (1, 0), (1, 0)), (121.0, (1, 0), (1, 1))]);
        assert_eq!(late.planned_s(60.0), 60.0);
        // Once it is ready, what it took counts instead: more than 340 s, at most 400 s
        // (from the order at 60 s to the counts at 400 and 460 s).
        c.observe(460.0, Some(&counts((1, 0), (2, 0))));
        assert_eq!(c.planned_s(60.0), 370.0);
    }

    #[test]
    fn a_longer_cold_start_is_said_and_a_configured_one_is_not() {
        let slow = run(&[
            (60.0, (1, 0), (1, 0)),
            (120.0, (1, 1), (1, 0)),
            (180.0, (1, 1), (1, 0)),
            (240.0, (1, 1), (1, 0)),
            (300.0, (2, 0), (1, 0)),
        ]);
        let reasons = slow.reasons(300.0, 60.0, 60.0);
        assert_eq!(
            reasons,
            vec!["cold start planned as 210s, not the configured 60s: the latest 1 replica to become ready took up to 240s from their order (median 210s)".to_string()]
        );
        assert!(slow.reasons(300.0, 240.0, 60.0).is_empty());
    }

    #[test]
    fn starts_far_quicker_than_configured_are_said_not_planned_with() {
        // Three replicas, each ready by the observation after the one that showed it
        // starting: at most 120 s, against 600 s configured.
        let mut rows = vec![(0.0, (1, 0), (1, 0))];
        for i in 0..3u32 {
            let t = 180.0 * f64::from(i);
            rows.push((t + 60.0, (1 + i, 1), (1, 0)));
            rows.push((t + 120.0, (2 + i, 0), (1, 0)));
            rows.push((t + 180.0, (2 + i, 0), (1, 0)));
        }
        let c = run(&rows);
        assert_eq!(c.planned_s(600.0), 600.0);
        assert_eq!(
            c.reasons(540.0, 600.0, 60.0),
            vec!["the latest 3 replicas to become ready took at most 120s from their order, under half the configured cold start of 600s, which is still planned with".to_string()]
        );
        // Replicas ready by the observation after their order, never seen starting, took
        // at most the spacing: said the same way.
        let unseen = run(&[
            (0.0, (1, 0), (1, 0)),
            (60.0, (2, 0), (1, 0)),
            (120.0, (2, 0), (3, 0)),
        ]);
        assert_eq!(unseen.planned_s(600.0), 600.0);
        assert!(
            unseen.reasons(120.0, 600.0, 60.0)[0]
                .starts_with("the latest 3 replicas to become ready took at most 60s"),
            "{:?}",
            unseen.reasons(120.0, 600.0, 60.0)
        );
        // Two starts are not yet enough to say so; nor are three against 180 s configured.
        let two = run(&rows[..7]);
        assert!(two.reasons(360.0, 600.0, 60.0).is_empty());
        assert!(c.reasons(540.0, 180.0, 60.0).is_empty());
    }

    #[test]
    fn observations_without_counts_or_out_of_order_change_nothing() {
        let mut c = run(&[(60.0, (1, 0), (1, 0)), (120.0, (1, 1), (1, 0))]);
        c.observe(180.0, None);
        c.observe(100.0, Some(&counts((5, 0), (1, 0))));
        c.observe(f64::NAN, Some(&counts((5, 0), (1, 0))));
        assert!(c.took.is_empty());
        assert_eq!(c.last_seen_s, Some(120.0));
        // The next counts are compared with the last that came: ready after more than 60 s
        // (the last counts, at 120 s) and at most 180 s.
        c.observe(240.0, Some(&counts((2, 0), (1, 0))));
        assert_eq!(c.took.back(), Some(&(60.0, 180.0)));
    }
}
