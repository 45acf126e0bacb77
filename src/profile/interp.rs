//! Interpolating models built from profile points.
//!
//! Prefill: TTFT as a piecewise-linear function of ISL, split into a fixed per-iteration
//! overhead `t0` (the line through the two shortest points, extended to zero tokens) and a
//! token cost `g(x) = TTFT(x) - t0`. A batch iteration then costs `t0 + sum of g-increments`
//! of its chunks, which reproduces TTFT(ISL) exactly for one request alone.
//!
//! Decode: the profiler sweeps concurrency at a few context lengths. Points are grouped by
//! context length into rows; each row is made non-decreasing in KV usage by isotonic
//! regression (measured sweeps are noisy and not monotonic, real ITL does not fall with load),
//! then interpolated linearly in KV usage and, between rows, in context length.

use super::{DecodeProfile, PrefillProfile};

/// Linear interpolation over sorted `xs`, extending the end segments' lines.
fn lerp_extend(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    debug_assert!(xs.len() >= 2 && xs.len() == ys.len());
    let i = match xs.partition_point(|&v| v <= x) {
        0 => 1,
        n if n >= xs.len() => xs.len() - 1,
        n => n,
    };
    lerp_segment(xs, ys, x, i)
}

/// The line through points `i - 1` and `i`, at `x`.
fn lerp_segment(xs: &[f64], ys: &[f64], x: f64, i: usize) -> f64 {
    let (x0, x1, y0, y1) = (xs[i - 1], xs[i], ys[i - 1], ys[i]);
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

/// `xs.partition_point(|&v| v <= x)` for strictly increasing `xs` and `xs[0] < x <
/// xs[last]`, walked from `from`: a point or two away when successive reads move little.
fn segment_from(xs: &[f64], x: f64, from: usize) -> usize {
    let mut i = from.clamp(1, xs.len() - 1);
    while xs[i] <= x {
        i += 1;
    }
    while xs[i - 1] > x {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone)]
pub struct PrefillModel {
    isl: Vec<f64>,
    ttft: Vec<f64>,
    overhead_ms: f64,
    gpus_per_engine: f64,
}

impl PrefillModel {
    pub fn new(p: &PrefillProfile) -> PrefillModel {
        let mut pts: Vec<(f64, f64, f64)> = (0..p.prefill_isl.len())
            .map(|i| {
                (
                    p.prefill_isl[i],
                    p.prefill_ttft[i],
                    p.prefill_thpt_per_gpu[i],
                )
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (x0, y0) = (pts[0].0, pts[0].1);
        let (x1, y1) = (pts[1].0, pts[1].1);
        let slope = ((y1 - y0) / (x1 - x0)).max(0.0);
        let overhead_ms = (y0 - slope * x0).clamp(0.0, y0);
        let mid = pts[pts.len() / 2];
        let gpus_per_engine = (mid.0 / mid.1 * 1000.0 / mid.2).round().max(1.0);
        // Prepend the zero-token point so that interpolation below the first ISL follows t0.
        let mut isl = vec![0.0];
        let mut ttft = vec![overhead_ms];
        for (x, y, _) in pts {
            isl.push(x);
            ttft.push(y);
        }
        PrefillModel {
            isl,
            ttft,
            overhead_ms,
            gpus_per_engine,
        }
    }

    /// Time to first token of one request alone, ms.
    pub fn ttft_ms(&self, isl: f64) -> f64 {
        lerp_extend(&self.isl, &self.ttft, isl.max(0.0)).max(self.overhead_ms)
    }

    /// The shortest ISL whose prefill alone takes `ms` (0 at or below the iteration
    /// overhead; past the last point, along the last segment's line).
    pub fn isl_taking_ms(&self, ms: f64) -> f64 {
        let (xs, ys) = (&self.isl, &self.ttft);
        if ms.is_nan() || ms <= self.overhead_ms {
            return 0.0;
        }
        for i in 1..xs.len() {
            if ys[i] >= ms {
                let (x0, x1, y0, y1) = (xs[i - 1], xs[i], ys[i - 1], ys[i]);
                return x0 + (x1 - x0) * ((ms - y0) / (y1 - y0)).clamp(0.0, 1.0);
            }
        }
        let n = xs.len() - 1;
        let slope = (ys[n] - ys[n - 1]) / (xs[n] - xs[n - 1]);
        if slope > 0.0 {
            xs[n] + (ms - ys[n]) / slope
        } else {
            xs[n]
        }
    }

    /// The ISL whose prefill alone costs what a prompt of `isl` tokens does when its first
    /// `cached` tokens are in the engine's prefix cache: the iteration overhead and the
    /// profile's cost of the chunk past the cached prefix, as the simulator charges it.
    /// `isl` itself with nothing cached.
    pub fn isl_past_cached(&self, isl: f64, cached: f64) -> f64 {
        if cached.is_nan() || cached <= 0.0 {
            return isl;
        }
        let cached = cached.min(isl);
        self.isl_taking_ms(self.overhead_ms + self.chunk_cost_ms(cached, isl))
            .min(isl)
    }

    /// Fixed cost of one prefill iteration, ms.
    pub fn overhead_ms(&self) -> f64 {
        self.overhead_ms
    }

    /// Cost, beyond the iteration overhead, of prefilling tokens `from..to` of one request, ms.
    pub fn chunk_cost_ms(&self, from: f64, to: f64) -> f64 {
        (self.ttft_ms(to) - self.ttft_ms(from)).max(0.0)
    }

    /// Prefill throughput of one engine at this ISL when requests run back to back, tokens/s.
    pub fn tokens_per_s_per_engine(&self, isl: f64) -> f64 {
        let isl = isl.max(1.0);
        isl / self.ttft_ms(isl) * 1000.0
    }

    /// Prefill throughput per GPU, tokens/s/GPU, as Dynamo's profiler reports it.
    pub fn tokens_per_s_per_gpu(&self, isl: f64) -> f64 {
        self.tokens_per_s_per_engine(isl) / self.gpus_per_engine
    }

    pub fn gpus_per_engine(&self) -> f64 {
        self.gpus_per_engine
    }

    pub fn max_profiled_isl(&self) -> f64 {
        *self.isl.last().unwrap_or(&0.0)
    }
}

/// One context length's sweep, made monotone in KV usage.
#[derive(Debug, Clone)]
struct DecodeRow {
    context: f64,
    kv: Vec<f64>,
    itl: Vec<f64>,
}

/// The profile's ITL at one mean context (`DecodeModel::at_context`): the two measured
/// contexts around it and the upper one's weight, or the nearest one outside their range.
#[derive(Debug, Clone, Copy)]
pub struct ItlAtContext<'a> {
    lower: &'a DecodeRow,
    upper: Option<(&'a DecodeRow, f64)>,
}

impl<'a> ItlAtContext<'a> {
    /// Mean inter-token latency at this KV usage (0..1), ms.
    pub fn itl_ms(&self, kv_usage: f64) -> f64 {
        let low = DecodeModel::row_itl(self.lower, kv_usage);
        match self.upper {
            None => low,
            Some((b, w)) => low * (1.0 - w) + DecodeModel::row_itl(b, kv_usage) * w,
        }
    }

    /// The least measured KV usage above `kv_usage` in either row: past it the curve may
    /// bend. `None` past the last of both, where the curve is one straight line.
    pub fn next_point(&self, kv_usage: f64) -> Option<f64> {
        let next = |row: &DecodeRow| {
            row.kv
                .get(row.kv.partition_point(|&k| k <= kv_usage))
                .copied()
        };
        match (next(self.lower), self.upper.and_then(|(b, _)| next(b))) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Reads along this curve that each start where the last one fell.
    pub fn walk(self) -> ItlWalk<'a> {
        ItlWalk {
            curve: self,
            at: [1, 1],
        }
    }
}

/// `ItlAtContext::itl_ms`, the same values, for reads at KV usages close to each other (a
/// fixed point's search reads the curve's measured points in turn): each row's segment is
/// found from the one the last read fell in rather than by a search of the whole row.
#[derive(Debug, Clone)]
pub struct ItlWalk<'a> {
    curve: ItlAtContext<'a>,
    /// The segment of the lower and the upper row the last read fell in.
    at: [usize; 2],
}

impl ItlWalk<'_> {
    pub fn itl_ms(&mut self, kv_usage: f64) -> f64 {
        let [at_low, at_up] = &mut self.at;
        let low = DecodeModel::row_itl_from(self.curve.lower, kv_usage, at_low);
        match self.curve.upper {
            None => low,
            Some((b, w)) => low * (1.0 - w) + DecodeModel::row_itl_from(b, kv_usage, at_up) * w,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DecodeModel {
    rows: Vec<DecodeRow>,
    max_kv_tokens: f64,
    gpus_per_engine: f64,
}

/// Pool-adjacent-violators: the closest non-decreasing sequence in least squares.
fn isotonic(values: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, usize)> = Vec::new(); // (mean, count)
    for &v in values {
        blocks.push((v, 1));
        while blocks.len() >= 2 {
            let (m2, c2) = blocks[blocks.len() - 1];
            let (m1, c1) = blocks[blocks.len() - 2];
            if m1 <= m2 {
                break;
            }
            blocks.pop();
            let last = blocks.last_mut().expect("two blocks");
            *last = (
                (m1 * c1 as f64 + m2 * c2 as f64) / (c1 + c2) as f64,
                c1 + c2,
            );
        }
    }
    blocks
        .into_iter()
        .flat_map(|(m, c)| std::iter::repeat_n(m, c))
        .collect()
}

fn group_rows(d: &DecodeProfile) -> Vec<DecodeRow> {
    let mut idx: Vec<usize> = (0..d.x_kv_usage.len()).collect();
    idx.sort_by(|&a, &b| {
        d.y_context_length[a]
            .total_cmp(&d.y_context_length[b])
            .then(d.x_kv_usage[a].total_cmp(&d.x_kv_usage[b]))
    });
    let mut rows: Vec<DecodeRow> = Vec::new();
    for i in idx {
        let ctx = d.y_context_length[i];
        match rows.last_mut() {
            Some(r) if (r.context - ctx).abs() < 0.5 => {
                if r.kv.last().is_some_and(|&k| k == d.x_kv_usage[i]) {
                    // Repeated measurement at the same point: keep the mean.
                    let l = r.itl.len() - 1;
                    r.itl[l] = (r.itl[l] + d.z_itl[i]) / 2.0;
                } else {
                    r.kv.push(d.x_kv_usage[i]);
                    r.itl.push(d.z_itl[i]);
                }
            }
            _ => rows.push(DecodeRow {
                context: ctx,
                kv: vec![d.x_kv_usage[i]],
                itl: vec![d.z_itl[i]],
            }),
        }
    }
    rows.retain(|r| r.kv.len() >= 2);
    for r in &mut rows {
        r.itl = isotonic(&r.itl);
    }
    rows
}

impl DecodeModel {
    pub(super) fn has_enough_rows(d: &DecodeProfile) -> bool {
        !group_rows(d).is_empty()
    }

    pub fn new(d: &DecodeProfile) -> DecodeModel {
        let rows = group_rows(d);
        // GPUs per engine from throughput = concurrency * 1000 / itl / gpus at the busiest point.
        let i = (0..d.x_kv_usage.len())
            .max_by(|&a, &b| d.x_kv_usage[a].total_cmp(&d.x_kv_usage[b]))
            .unwrap_or(0);
        let conc = d.x_kv_usage[i] * d.max_kv_tokens / d.y_context_length[i];
        let gpus = (conc * 1000.0 / d.z_itl[i] / d.z_thpt_per_gpu[i])
            .round()
            .max(1.0);
        DecodeModel {
            rows,
            max_kv_tokens: d.max_kv_tokens,
            gpus_per_engine: gpus,
        }
    }

    pub fn max_kv_tokens(&self) -> f64 {
        self.max_kv_tokens
    }

    /// The longest context the profile measured ITL at; longer ones are read at it.
    pub fn max_profiled_context(&self) -> f64 {
        self.rows.last().map_or(0.0, |r| r.context)
    }

    pub fn gpus_per_engine(&self) -> f64 {
        self.gpus_per_engine
    }

    fn row_itl(row: &DecodeRow, kv: f64) -> f64 {
        Self::row_itl_with(row, kv, |xs, x| lerp_extend(xs, &row.itl, x))
    }

    /// `row_itl`, the segment walked to from `at` (and left there for the next read).
    fn row_itl_from(row: &DecodeRow, kv: f64, at: &mut usize) -> f64 {
        Self::row_itl_with(row, kv, |xs, x| {
            *at = segment_from(xs, x, *at);
            lerp_segment(xs, &row.itl, x, *at)
        })
    }

    /// The row's ITL at `kv`: flat before the first point, the last segment's slope (never
    /// downwards) past the last, and `between(kv points, kv)` in between.
    fn row_itl_with(row: &DecodeRow, kv: f64, between: impl FnOnce(&[f64], f64) -> f64) -> f64 {
        if kv <= row.kv[0] {
            return row.itl[0];
        }
        let n = row.kv.len();
        if kv >= row.kv[n - 1] {
            let slope =
                ((row.itl[n - 1] - row.itl[n - 2]) / (row.kv[n - 1] - row.kv[n - 2])).max(0.0);
            return row.itl[n - 1] + slope * (kv - row.kv[n - 1]);
        }
        between(&row.kv, kv)
    }

    /// Mean inter-token latency of an engine at this KV usage (0..1) and mean context, ms.
    pub fn itl_ms(&self, kv_usage: f64, context: f64) -> f64 {
        self.at_context(context).itl_ms(kv_usage)
    }

    /// The ITL at one mean context as a function of KV usage: the measured contexts around
    /// it found once, for a search that tries many batch sizes at one context.
    pub fn at_context(&self, context: f64) -> ItlAtContext<'_> {
        let rows = &self.rows;
        let j = rows.partition_point(|r| r.context <= context);
        if j == 0 {
            return ItlAtContext {
                lower: &rows[0],
                upper: None,
            };
        }
        if j >= rows.len() {
            return ItlAtContext {
                lower: &rows[rows.len() - 1],
                upper: None,
            };
        }
        let (a, b) = (&rows[j - 1], &rows[j]);
        let w = (context - a.context) / (b.context - a.context);
        ItlAtContext {
            lower: a,
            upper: Some((b, w)),
        }
    }

    /// The largest KV usage (0..1) whose ITL at this context stays within `itl_limit_ms`,
    /// or `None` when even a lone request is slower than that.
    pub fn max_kv_usage_for_itl(&self, itl_limit_ms: f64, context: f64) -> Option<f64> {
        if self.itl_ms(0.0, context) > itl_limit_ms {
            return None;
        }
        if self.itl_ms(1.0, context) <= itl_limit_ms {
            return Some(1.0);
        }
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            if self.itl_ms(mid, context) <= itl_limit_ms {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// Concurrency (requests in the batch) of one engine at this KV usage and context.
    pub fn concurrency_at(&self, kv_usage: f64, context: f64) -> f64 {
        kv_usage * self.max_kv_tokens / context.max(1.0)
    }

    /// Highest decode throughput per GPU (output tokens/s/GPU) whose ITL meets the limit.
    pub fn best_tokens_per_s_per_gpu(&self, itl_limit_ms: f64, context: f64) -> f64 {
        match self.max_kv_usage_for_itl(itl_limit_ms, context) {
            None => 0.0,
            Some(kv) => {
                let conc = self.concurrency_at(kv, context).max(1.0);
                let itl = self.itl_ms(kv, context);
                conc * 1000.0 / itl / self.gpus_per_engine
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators() {
        assert_eq!(isotonic(&[1.0, 3.0, 2.0, 4.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(isotonic(&[5.0, 4.0, 3.0]), vec![4.0, 4.0, 4.0]);
        assert_eq!(isotonic(&[1.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn a_walk_along_the_curve_reads_what_a_search_reads() {
        let model = crate::profile::Profile::embedded_default().decode_model();
        // Contexts below, between and above the measured rows; KV usages that rise a little,
        // jump, fall back and leave the measured range at both ends.
        for context in [10.0, 700.0, 3000.0, 5500.0, 1e6] {
            let curve = model.at_context(context);
            let mut walk = curve.walk();
            let mut kv: f64 = 0.0;
            for step in 0..400 {
                kv = match step % 97 {
                    0 => 0.9,
                    40 => 0.01,
                    70 => 1.7,
                    _ => kv + 0.0031,
                };
                let searched = curve.itl_ms(kv);
                assert_eq!(
                    walk.itl_ms(kv).to_bits(),
                    searched.to_bits(),
                    "{context} {kv}"
                );
            }
        }
    }

    #[test]
    fn lerp_extends_ends() {
        let xs = [1.0, 2.0, 4.0];
        let ys = [10.0, 20.0, 30.0];
        assert_eq!(lerp_extend(&xs, &ys, 1.5), 15.0);
        assert_eq!(lerp_extend(&xs, &ys, 0.0), 0.0);
        assert_eq!(lerp_extend(&xs, &ys, 6.0), 40.0);
        assert_eq!(lerp_extend(&xs, &ys, 4.0), 30.0);
    }

    #[test]
    fn a_prompt_past_its_cached_prefix_costs_what_its_equivalent_isl_does() {
        let m = crate::profile::Profile::embedded_default().prefill_model();
        for isl in [500.0, 3000.0, 12_000.0, 60_000.0] {
            // Nothing cached: the prompt itself, bit for bit.
            assert_eq!(m.isl_past_cached(isl, 0.0).to_bits(), isl.to_bits());
            for share in [0.1, 0.5, 0.9] {
                let cached = share * isl;
                let equivalent = m.isl_past_cached(isl, cached);
                let past_cache_ms = m.overhead_ms() + m.chunk_cost_ms(cached, isl);
                assert!(
                    (m.ttft_ms(equivalent) - past_cache_ms).abs() < 1e-6 * past_cache_ms,
                    "{isl} {share}: {equivalent}"
                );
                // Shorter than the prompt. Not always longer than its uncached part: where
                // the profile's cost per token falls with length (an engine busier on a
                // longer prompt), the chunk after the prefix costs less than as many
                // tokens from the start.
                assert!(
                    equivalent > 0.0 && equivalent < isl,
                    "{isl} {share}: {equivalent}"
                );
            }
        }
        assert_eq!(m.isl_taking_ms(m.overhead_ms()), 0.0);
    }
}
