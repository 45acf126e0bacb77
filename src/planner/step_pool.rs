//! Decision intervals pooled into the forecasters' time step, or split into it.
//!
//! A count over a few seconds scatters by more than the load moves in them, and a horizon of
//! a cold start is then dozens of such steps: the forecasters would extrapolate the scatter
//! over all of them. Intervals shorter than the forecast step are pooled until they span
//! it, and the forecasters see one value per pool; the planner still decides every
//! interval, and sizes for the rate just seen at each, so a jump is met at once. An interval
//! far longer than the step (Dynamo's planner decides every 180 s) is split into its two
//! halves, the finest the observation counts: a rise then shows in half the time.

/// A pooled value: what the intervals in a pool saw together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    pub requests: f64,
    pub span_s: f64,
    /// Arrivals in the pool's second half, when every interval's second half was counted.
    pub second_half: Option<f64>,
    /// Request-weighted means over the intervals that reported them.
    pub isl: Option<f64>,
    pub osl: Option<f64>,
}

impl Pooled {
    pub fn rate(&self) -> f64 {
        self.requests / self.span_s
    }
}

/// A second half's count that can be one: a number from 0 to the interval's `requests`.
fn counted_half(second_half: Option<f64>, requests: f64) -> Option<f64> {
    second_half.filter(|v| v.is_finite() && (0.0..=requests).contains(v))
}

/// How far an interval may be from the one the step was worked out for and keep its
/// number of intervals per step.
const JITTER: f64 = 0.1;

/// One interval as added: its length, arrivals, second-half arrivals and mean lengths.
#[derive(Debug, Clone, Copy)]
struct Interval {
    span_s: f64,
    requests: f64,
    second_half: Option<f64>,
    isl: Option<f64>,
    osl: Option<f64>,
}

/// Intervals waiting to fill a forecast step, as running sums: an external tool's
/// millisecond ticks make steps of tens of thousands of intervals, and each decision reads
/// the pool.
#[derive(Debug, Clone)]
pub struct StepPool {
    step_s: f64,
    startup_s: f64,
    /// The interval the intervals per step were worked out for, and that number. Live
    /// intervals jitter by milliseconds about their length, and a step is often a whole
    /// number and a half of them (half of a 10 s interval and a 60 s cold start is 35 s):
    /// worked out afresh at each tick, the nearest whole number would flip between two.
    basis: Option<(f64, usize)>,
    /// The pool's only interval, passed through as it came.
    only: Option<Interval>,
    count: usize,
    span_s: f64,
    requests: f64,
    /// (sum of length x requests, requests) over the intervals that reported the length.
    isl: (f64, f64),
    osl: (f64, f64),
    /// Arrivals counted by the end of each half interval: (time into the pool, count so
    /// far); `None` once an interval came without its second half.
    halves: Option<Vec<(f64, f64)>>,
}

impl StepPool {
    /// Pools intervals into steps of about `step_s`, or of half the horizon (an interval
    /// and the cold start `startup_s`) when that is shorter.
    pub fn new(step_s: f64, startup_s: f64) -> StepPool {
        StepPool {
            step_s,
            startup_s,
            basis: None,
            only: None,
            count: 0,
            span_s: 0.0,
            requests: 0.0,
            isl: (0.0, 0.0),
            osl: (0.0, 0.0),
            halves: Some(Vec::new()),
        }
    }

    /// How many intervals of `interval_s` make a step: the nearest whole number, at least
    /// one (so 45 s intervals are not pooled into 90 s steps for a 60 s step). The horizon
    /// spans two steps at least, so a rise shows as steps before it is due.
    pub fn intervals_per_step(&self, interval_s: f64) -> usize {
        self.kept_per_step(interval_s)
            .unwrap_or_else(|| self.intervals_per_step_afresh(interval_s))
    }

    /// The number worked out before, while the interval stays within `JITTER` of it.
    fn kept_per_step(&self, interval_s: f64) -> Option<usize> {
        self.basis
            .filter(|&(basis_s, _)| (interval_s / basis_s - 1.0).abs() <= JITTER)
            .map(|(_, n)| n)
    }

    fn intervals_per_step_afresh(&self, interval_s: f64) -> usize {
        let step_s = self.step_s.min((interval_s + self.startup_s) / 2.0);
        if !interval_s.is_finite() || interval_s <= 0.0 || interval_s >= step_s {
            return 1;
        }
        ((step_s / interval_s).round() as usize).max(1)
    }

    /// The length of a step made of intervals of `interval_s`, or of their halves.
    pub fn step_len_s(&self, interval_s: f64) -> f64 {
        if self.halves(interval_s) {
            return interval_s / 2.0;
        }
        self.intervals_per_step(interval_s) as f64 * interval_s
    }

    /// Time the pool holds so far.
    pub fn span_s(&self) -> f64 {
        self.span_s
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether intervals of `interval_s` are split into halves: when a half is nearer the
    /// step than the whole interval is (by ratio: longer than the step by more than the
    /// square root of two).
    pub fn halves(&self, interval_s: f64) -> bool {
        interval_s.is_finite() && interval_s > self.step_s * std::f64::consts::SQRT_2
    }

    /// Adds an interval; returns the steps it completes: the pool, when it now spans a
    /// step (half an interval short is enough: live intervals jitter around their length),
    /// or, for an interval split into halves, each half (taken as even when the second
    /// half's count is missing, so the forecasters' step stays the same).
    pub fn add(
        &mut self,
        interval_s: f64,
        requests: f64,
        second_half: Option<f64>,
        isl: Option<f64>,
        osl: Option<f64>,
    ) -> Vec<Pooled> {
        if !self.halves(interval_s) {
            return self
                .add_one(interval_s, requests, second_half, isl, osl)
                .into_iter()
                .collect();
        }
        let late = counted_half(second_half, requests).unwrap_or(requests / 2.0);
        [requests - late, late]
            .into_iter()
            .filter_map(|n| self.add_one(interval_s / 2.0, n, None, isl, osl))
            .collect()
    }

    fn add_one(
        &mut self,
        interval_s: f64,
        requests: f64,
        second_half: Option<f64>,
        isl: Option<f64>,
        osl: Option<f64>,
    ) -> Option<Pooled> {
        let per_step = self.kept_per_step(interval_s).unwrap_or_else(|| {
            let n = self.intervals_per_step_afresh(interval_s);
            self.basis = Some((interval_s, n));
            n
        });
        let length = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0 && requests > 0.0);
        let interval = Interval {
            span_s: interval_s,
            requests,
            second_half: counted_half(second_half, requests),
            isl: length(isl),
            osl: length(osl),
        };
        self.only = (self.count == 0).then_some(interval);
        self.count += 1;
        let start = self.span_s;
        let before = self.requests;
        self.span_s += interval_s;
        self.requests += requests;
        for (sum, v) in [(&mut self.isl, interval.isl), (&mut self.osl, interval.osl)] {
            if let Some(v) = v {
                sum.0 += v * requests;
                sum.1 += requests;
            }
        }
        match (interval.second_half, &mut self.halves) {
            (Some(late), Some(halves)) => {
                halves.push((start + interval_s / 2.0, before + requests - late));
                halves.push((self.span_s, self.requests));
            }
            _ => self.halves = None,
        }
        let full = per_step as f64 * interval_s - interval_s / 2.0;
        if self.span_s >= full {
            self.close()
        } else {
            None
        }
    }

    /// Closes the pool as a step of what it holds (a gap in the observations ends the step
    /// early); `None` when it is empty.
    pub fn close(&mut self) -> Option<Pooled> {
        let pooled = self.peek()?;
        *self = StepPool {
            basis: self.basis,
            ..StepPool::new(self.step_s, self.startup_s)
        };
        Some(pooled)
    }

    /// What the pool holds so far, as one value; `None` when empty.
    pub fn peek(&self) -> Option<Pooled> {
        if self.count == 1 {
            // Passed through as it came: pooling one interval must not move a bit of it.
            let one = self.only?;
            return Some(Pooled {
                requests: one.requests,
                span_s: one.span_s,
                second_half: one.second_half,
                isl: one.isl,
                osl: one.osl,
            });
        }
        if self.count == 0 {
            return None;
        }
        let mean = |(sum, weight): (f64, f64)| (weight > 0.0).then(|| sum / weight);
        Some(Pooled {
            requests: self.requests,
            span_s: self.span_s,
            second_half: self.second_half(),
            isl: mean(self.isl),
            osl: mean(self.osl),
        })
    }

    /// Arrivals in the pool's second half, from each interval's halves: a half that
    /// straddles the middle gives its share by time (arrivals within it are taken as even).
    fn second_half(&self) -> Option<f64> {
        let halves = self.halves.as_ref()?;
        let middle = self.span_s / 2.0;
        let i = halves.partition_point(|&(t, _)| t < middle);
        let (t1, n1) = *halves.get(i)?;
        let (t0, n0) = if i == 0 { (0.0, 0.0) } else { halves[i - 1] };
        let by_middle = if t1 > t0 {
            n0 + (n1 - n0) * (middle - t0) / (t1 - t0)
        } else {
            n1
        };
        Some(self.requests - by_middle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_closed_early_is_a_step_of_what_it_holds_and_the_next_starts_empty() {
        let mut pool = StepPool::new(60.0, 60.0);
        assert!(pool.close().is_none());
        assert!(pool.add(10.0, 100.0, None, Some(1000.0), None).is_empty());
        assert!(pool.add(10.0, 300.0, None, Some(2000.0), None).is_empty());
        let closed = pool.close().unwrap();
        assert_eq!((closed.requests, closed.span_s), (400.0, 20.0));
        assert_eq!(closed.isl, Some(1750.0));
        assert!(pool.is_empty() && pool.close().is_none());
        // The next step fills as any other: four intervals of 10 s (half of 10 s and the
        // cold start, 35 s, to the nearest whole number).
        let steps: Vec<usize> = (0..4)
            .map(|_| pool.add(10.0, 100.0, None, None, None).len())
            .collect();
        assert_eq!(steps, vec![0, 0, 0, 1]);
    }

    #[test]
    fn intervals_are_pooled_to_the_nearest_whole_step() {
        let pool = StepPool::new(60.0, 600.0);
        for (interval, per_step) in [
            (60.0, 1),
            (180.0, 1),
            (45.0, 1),
            (30.0, 2),
            (25.0, 2),
            (15.0, 4),
            (10.0, 6),
            (5.0, 12),
            (0.0, 1),
            (f64::NAN, 1),
        ] {
            assert_eq!(pool.intervals_per_step(interval), per_step, "{interval}");
        }
    }

    #[test]
    fn an_interval_far_longer_than_the_step_is_split_at_its_halves() {
        let mut pool = StepPool::new(60.0, 60.0);
        // A half is nearer a minute than the whole from 85 s (60 s times the root of two).
        for (interval, split) in [(60.0, false), (84.0, false), (85.0, true), (180.0, true)] {
            assert_eq!(pool.halves(interval), split, "{interval}");
        }
        assert_eq!(pool.step_len_s(180.0), 90.0);
        assert_eq!(pool.step_len_s(84.0), 84.0);
        let half = |requests: f64| Pooled {
            requests,
            span_s: 90.0,
            second_half: None,
            isl: Some(3000.0),
            osl: Some(300.0),
        };
        // 100 arrivals in the first half, 200 in the second: a step each.
        let got = pool.add(180.0, 300.0, Some(200.0), Some(3000.0), Some(300.0));
        assert_eq!(got, vec![half(100.0), half(200.0)]);
        assert!(pool.is_empty());
        // Without the second half's count, or with one past the interval's, taken as even.
        for late in [None, Some(400.0), Some(f64::NAN)] {
            let got = pool.add(180.0, 300.0, late, Some(3000.0), Some(300.0));
            assert_eq!(got, vec![half(150.0), half(150.0)], "{late:?}");
        }
    }

    #[test]
    fn a_step_is_at_most_half_the_horizon() {
        // A 5 s cold start: 10 s intervals and a 15 s horizon are not pooled.
        assert_eq!(StepPool::new(60.0, 5.0).intervals_per_step(10.0), 1);
        // A 60 s cold start: 10 s intervals, a 70 s horizon, steps of 40 s.
        assert_eq!(StepPool::new(60.0, 60.0).intervals_per_step(10.0), 4);
        // A 180 s cold start: a minute.
        assert_eq!(StepPool::new(60.0, 180.0).intervals_per_step(10.0), 6);
    }

    #[test]
    fn millisecond_ticks_make_steps_of_tens_of_thousands_in_time_linear_in_them() {
        let mut pool = StepPool::new(60.0, 600.0);
        let mut steps = Vec::new();
        for i in 0..150_000u32 {
            let late = u32::from(i % 10 == 0);
            steps.extend(pool.add(0.001, 1.0, Some(f64::from(late)), None, None));
            // Each decision reads the pool.
            assert!(pool.peek().is_none_or(|p| p.requests >= 1.0));
        }
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].requests, 60_000.0);
        assert!((steps[0].span_s - 60.0).abs() < 1e-6);
        assert!((steps[0].second_half.unwrap() - 30_000.0).abs() < 1.0);
    }

    #[test]
    fn a_step_of_one_interval_passes_it_through_unchanged() {
        let mut pool = StepPool::new(60.0, 600.0);
        let got = pool
            .add(60.0, 7.0, Some(5.0), Some(3000.3), None)
            .pop()
            .unwrap();
        assert_eq!(
            got,
            Pooled {
                requests: 7.0,
                span_s: 60.0,
                second_half: Some(5.0),
                isl: Some(3000.3),
                osl: None,
            }
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn short_intervals_fill_a_step_then_start_the_next() {
        let mut pool = StepPool::new(60.0, 600.0);
        // Six 10 s intervals: 10, 20, ..., 60 arrivals, each with a third in its first half.
        let mut out = None;
        for k in 1..=6 {
            let n = 10.0 * k as f64;
            assert!(out.is_none(), "closed early at {k}");
            out = pool
                .add(
                    10.0,
                    n,
                    Some(n * 2.0 / 3.0),
                    Some(1000.0 * k as f64),
                    Some(100.0),
                )
                .pop();
        }
        let got = out.expect("six intervals make a step");
        assert_eq!(got.requests, 210.0);
        assert_eq!(got.span_s, 60.0);
        assert!((got.rate() - 3.5).abs() < 1e-12);
        // The second half is the last three intervals: 40 + 50 + 60.
        assert_eq!(got.second_half, Some(150.0));
        // Weighted by arrivals: (10*1000 + 20*2000 + ... + 60*6000) / 210.
        let isl = (1..=6)
            .map(|k| 10.0 * k as f64 * 1000.0 * k as f64)
            .sum::<f64>()
            / 210.0;
        assert!((got.isl.unwrap() - isl).abs() < 1e-9);
        assert_eq!(got.osl, Some(100.0));
        assert!(pool.is_empty());
        assert!(pool.add(10.0, 1.0, None, None, None).is_empty());
    }

    #[test]
    fn an_odd_pool_splits_its_middle_interval_at_its_halves() {
        let mut pool = StepPool::new(60.0, 600.0);
        pool.add(20.0, 10.0, Some(4.0), None, None);
        let got = pool.add(20.0, 20.0, Some(15.0), None, None).pop();
        assert!(got.is_none());
        let peek = pool.peek().unwrap();
        // Middle at 20 s: the second interval is the second half.
        assert_eq!(peek.second_half, Some(20.0));
        let got = pool.add(20.0, 30.0, Some(10.0), None, None).pop().unwrap();
        // Middle at 30 s: the second interval's second half (15), and all of the third (30).
        assert_eq!(got.second_half, Some(45.0));
    }

    #[test]
    fn a_pool_missing_a_second_half_has_none_and_lengths_only_from_intervals_with_requests() {
        let mut pool = StepPool::new(30.0, 600.0);
        pool.add(15.0, 0.0, Some(0.0), Some(500.0), Some(50.0));
        let got = pool
            .add(15.0, 10.0, None, Some(2000.0), None)
            .pop()
            .unwrap();
        assert_eq!(got.second_half, None);
        assert_eq!(got.isl, Some(2000.0));
        assert_eq!(got.osl, None);
    }

    #[test]
    fn jitter_about_a_step_of_a_whole_number_and_a_half_intervals_keeps_the_step() {
        // A 60 s cold start: half of 10 s and 60 s is 35 s, three and a half intervals.
        let mut pool = StepPool::new(60.0, 60.0);
        let mut spans = Vec::new();
        let mut since = 0;
        for i in 0..400 {
            let interval = if i % 3 == 0 { 10.02 } else { 9.98 };
            since += 1;
            if !pool.add(interval, 10.0, None, None, None).is_empty() {
                spans.push(since);
                since = 0;
            }
        }
        assert!(spans.len() > 90, "{spans:?}");
        assert!(spans.iter().all(|&n| n == spans[0]), "{spans:?}");
        // A new interval length (the operator changed it) is worked out afresh.
        assert_eq!(pool.intervals_per_step(10.0), spans[0]);
        assert_eq!(pool.intervals_per_step(5.0), 7);
    }

    #[test]
    fn jittered_live_intervals_close_a_step_within_half_an_interval() {
        let mut pool = StepPool::new(60.0, 600.0);
        let spans = [15.02, 14.97, 15.01];
        for s in spans {
            assert!(pool.add(s, 5.0, None, None, None).is_empty());
        }
        assert!(!pool.add(14.9, 5.0, None, None, None).is_empty());
    }
}
