//! The forecasting methods that keep a state of their own beyond the history: the Kalman
//! local-linear-trend filter and Holt-Winters, with the period search by autocorrelation,
//! and the least-squares line the linear trend fits.

use super::damped_steps;

/// Kalman local linear trend: state (level, slope), observation = level + noise.
#[derive(Debug, Clone)]
pub(super) struct Kalman {
    x: [f64; 2],
    p: [[f64; 2]; 2],
    /// Observation noise variance, learned from innovations.
    r: f64,
    started: bool,
}

impl Kalman {
    pub(super) fn new() -> Kalman {
        Kalman {
            x: [0.0, 0.0],
            p: [[1.0, 0.0], [0.0, 1.0]],
            r: 1.0,
            started: false,
        }
    }

    pub(super) fn update(&mut self, y: f64) {
        if !self.started {
            self.x = [y, 0.0];
            self.p = [[y.abs().max(1.0), 0.0], [0.0, y.abs().max(1.0) * 0.1]];
            self.r = (0.1 * y.abs()).powi(2).max(1e-6);
            self.started = true;
            return;
        }
        // Process noise scaled to the observation noise: the level moves, the slope drifts.
        let q_level = 0.5 * self.r;
        let q_slope = 0.05 * self.r;
        // Predict.
        let x0 = self.x[0] + self.x[1];
        let x1 = self.x[1];
        let p = self.p;
        let p00 = p[0][0] + p[0][1] + p[1][0] + p[1][1] + q_level;
        let p01 = p[0][1] + p[1][1];
        let p10 = p[1][0] + p[1][1];
        let p11 = p[1][1] + q_slope;
        // Update.
        let innovation = y - x0;
        let s = p00 + self.r;
        let k0 = p00 / s;
        let k1 = p10 / s;
        self.x = [x0 + k0 * innovation, x1 + k1 * innovation];
        self.p = [
            [(1.0 - k0) * p00, (1.0 - k0) * p01],
            [p10 - k1 * p00, p11 - k1 * p01],
        ];
        // Learn the observation noise from the innovations (floored so it never collapses).
        let floor = (0.01 * y.abs()).powi(2).max(1e-9);
        self.r = (0.9 * self.r + 0.1 * innovation * innovation * 0.5).max(floor);
    }

    pub(super) fn forecast(&self, h: f64) -> f64 {
        self.x[0] + damped_steps(h) * self.x[1]
    }
}

/// Holt-Winters additive with fixed smoothing constants.
#[derive(Debug, Clone)]
pub(super) struct HoltWinters {
    period: usize,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Index in `season` of the next point.
    phase: usize,
    pub(super) ready: bool,
}

impl HoltWinters {
    const ALPHA: f64 = 0.4;
    const BETA: f64 = 0.05;
    const GAMMA: f64 = 0.3;

    /// Initialised from the last two full periods of `history`.
    pub(super) fn init(history: &[f64], period: usize) -> Option<HoltWinters> {
        if period < 2 || history.len() < 2 * period {
            return None;
        }
        let n = history.len();
        let a = &history[n - 2 * period..n - period];
        let b = &history[n - period..];
        let mean_a = a.iter().sum::<f64>() / period as f64;
        let mean_b = b.iter().sum::<f64>() / period as f64;
        let trend = (mean_b - mean_a) / period as f64;
        // Seasonal offsets averaged over the two periods, centred on each period's mean.
        let season: Vec<f64> = (0..period)
            .map(|i| ((a[i] - mean_a) + (b[i] - mean_b)) / 2.0)
            .collect();
        // Level at the last point: the period's mean carried to its end.
        let level = mean_b + trend * (period as f64 - 1.0) / 2.0;
        Some(HoltWinters {
            period,
            level,
            trend,
            season,
            phase: 0,
            ready: true,
        })
    }

    pub(super) fn update(&mut self, y: f64) {
        let s = self.season[self.phase];
        let prev_level = self.level;
        self.level = Self::ALPHA * (y - s) + (1.0 - Self::ALPHA) * (self.level + self.trend);
        self.trend = Self::BETA * (self.level - prev_level) + (1.0 - Self::BETA) * self.trend;
        self.season[self.phase] = Self::GAMMA * (y - self.level) + (1.0 - Self::GAMMA) * s;
        self.phase = (self.phase + 1) % self.period;
    }

    pub(super) fn forecast(&self, h: usize) -> f64 {
        let s = self.season[(self.phase + h - 1) % self.period];
        self.level + h as f64 * self.trend + s
    }
}

/// The period (in intervals) with the strongest autocorrelation, if it is strong enough.
pub fn detect_period(series: &[f64]) -> Option<usize> {
    let n = series.len();
    if n < 12 {
        return None;
    }
    let mean = series.iter().sum::<f64>() / n as f64;
    let var: f64 = series.iter().map(|y| (y - mean).powi(2)).sum();
    if var <= 1e-12 {
        return None;
    }
    // The search costs the history's length squared: centre the values once.
    let centred: Vec<f64> = series.iter().map(|y| y - mean).collect();
    let acf = |lag: usize| -> f64 {
        centred[lag..]
            .iter()
            .zip(&centred[..n - lag])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / var
    };
    // Only lags with two full periods in the history; pick the first clear peak.
    let max_lag = n / 2;
    let values: Vec<f64> = (0..=max_lag)
        .map(|l| if l < 2 { 1.0 } else { acf(l) })
        .collect();
    let mut best: Option<(usize, f64)> = None;
    for lag in 3..max_lag {
        let v = values[lag];
        if v > values[lag - 1]
            && v >= values[lag + 1]
            && v > 0.3
            && best.is_none_or(|(_, b)| v > b + 0.05)
        {
            best = Some((lag, v));
        }
    }
    best.map(|(l, _)| l)
}

/// Pearson correlation of the series with itself `lag` steps earlier.
pub fn lag_correlation(series: &[f64], lag: usize) -> f64 {
    if lag == 0 || series.len() < lag + 3 {
        return f64::NAN;
    }
    let a = &series[lag..];
    let b = &series[..series.len() - lag];
    let m = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / m, b.iter().sum::<f64>() / m);
    let mut sab = 0.0;
    let mut saa = 0.0;
    let mut sbb = 0.0;
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Intercept and slope of the least-squares line through `(i, ys[i])`.
pub(super) fn least_squares_line(ys: &[f64]) -> (f64, f64) {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}
