//! What a dry run writes: `summary.json`, `timeline_<policy>.csv`, the observations and
//! decisions of each policy as `decide` lines (`observations_<policy>.jsonl`,
//! `decisions_<policy>.jsonl`), `report.html`, and the table printed in the terminal.

mod html;
pub mod svg;

pub use html::render_html;

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::InputError;
use crate::planner::percentile_sorted;
use crate::planner::Sla;
use crate::sim::SimResult;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        v.sort_by(f64::total_cmp);
        Percentiles {
            p50: round3(percentile_sorted(&v, 0.5)),
            p90: round3(percentile_sorted(&v, 0.9)),
            p99: round3(percentile_sorted(&v, 0.99)),
        }
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// One policy's figures, as `summary.json` holds them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicySummary {
    pub name: String,
    /// The settings the policy decided by (the planner's, each variant's its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    pub requests: usize,
    pub completed: usize,
    pub rejected: usize,
    /// Share of served (not rejected) requests with TTFT and mean ITL within target.
    pub slo_attainment: f64,
    pub ttft_attainment: f64,
    pub itl_attainment: f64,
    pub gpu_hours: f64,
    /// Requests meeting the SLA per GPU-hour.
    pub goodput_per_gpu_hour: f64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub max_prefill: u32,
    pub max_decode: u32,
    /// Requests completed within the first `WARMUP_S` that missed the SLA.
    pub misses_in_warmup: u64,
    /// Requests completed after the first `WARMUP_S` that missed the SLA.
    pub misses_after_warmup: u64,
    /// SLO attainment of the requests completed after the first `WARMUP_S`.
    pub slo_attainment_after_warmup: f64,
    /// GPU-hours of the intervals after the first `WARMUP_S` (replicas counted at each
    /// interval's end).
    pub gpu_hours_after_warmup: f64,
    /// Decisions that changed a role's replica target (prefill and decode counted apart).
    pub scale_changes: u32,
    /// Of those, the ones that undid the role's previous change within `REVERSAL_WINDOW_S`
    /// (up then down, or down then up): thrashing.
    pub reversals: u32,
    /// With prefix caching: the share of prompt tokens found in the engine's cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_share: Option<f64>,
}

/// A change that undoes the one before it within this long is counted as a reversal: five
/// minutes, the Kubernetes HPA's default scale-down stabilisation window.
pub const REVERSAL_WINDOW_S: f64 = 300.0;

/// One role's replica target in force, and when and which way (up: true) it last changed.
#[derive(Default)]
struct RoleTrack {
    target: Option<u32>,
    last_change: Option<(f64, bool)>,
}

impl RoleTrack {
    /// Takes the target asked for at `t`: `(changed, reversed)`.
    fn ask(&mut self, t: f64, target: u32) -> (bool, bool) {
        let before = self.target.replace(target);
        match before {
            Some(before) if before != target => {
                let up = target > before;
                let reversed = self
                    .last_change
                    .is_some_and(|(when, was_up)| was_up != up && t - when < REVERSAL_WINDOW_S);
                self.last_change = Some((t, up));
                (true, reversed)
            }
            _ => (false, false),
        }
    }
}

/// `(changes, reversals)` of a run's replica targets, per role, from its timeline. The
/// first decision is measured against the replicas the run started with.
fn scale_changes(r: &SimResult) -> (u32, u32) {
    let started = r
        .timeline
        .first()
        .and_then(|row| row.observation.replicas)
        .map(|rr| (rr.prefill.held(), rr.decode.held()));
    let mut prefill = RoleTrack {
        target: started.map(|s| s.0),
        ..Default::default()
    };
    let mut decode = RoleTrack {
        target: started.map(|s| s.1),
        ..Default::default()
    };
    let (mut changes, mut reversals) = (0, 0);
    for row in &r.timeline {
        let t = row.observation.time_s;
        for (changed, reversed) in [
            prefill.ask(t, row.target_prefill),
            decode.ask(t, row.target_decode),
        ] {
            changes += u32::from(changed);
            reversals += u32::from(reversed);
        }
    }
    (changes, reversals)
}

/// The start of a run that the warm-up split sets apart: the first ten minutes, before a
/// policy without foresight has seen how the load moves (the first ramp of a ten-minute
/// period; the first bursts of a trace).
pub const WARMUP_S: f64 = 600.0;

impl PolicySummary {
    pub fn of(r: &SimResult, sla: &Sla) -> PolicySummary {
        let served: Vec<_> = r.outcomes.iter().filter(|o| !o.rejected()).collect();
        let n = served.len().max(1) as f64;
        let met = served.iter().filter(|o| o.meets(sla)).count();
        let ttft_ok = served
            .iter()
            .filter(|o| o.ttft_ms as f64 <= sla.ttft_ms)
            .count();
        let itl_ok = served
            .iter()
            .filter(|o| o.itl_ms as f64 <= sla.itl_ms)
            .count();
        let gpu_hours = r.gpu_seconds / 3600.0;
        let (warm, after) = split_at_warmup(r);
        let (changes, reversals) = scale_changes(r);
        PolicySummary {
            name: r.policy.clone(),
            settings: r.settings.clone(),
            requests: r.outcomes.len(),
            completed: served.len(),
            rejected: r.outcomes.len() - served.len(),
            slo_attainment: round6(met as f64 / n),
            ttft_attainment: round6(ttft_ok as f64 / n),
            itl_attainment: round6(itl_ok as f64 / n),
            gpu_hours: round6(gpu_hours),
            goodput_per_gpu_hour: round3(if gpu_hours > 0.0 {
                met as f64 / gpu_hours
            } else {
                0.0
            }),
            ttft_ms: Percentiles::of(served.iter().map(|o| o.ttft_ms as f64).collect()),
            itl_ms: Percentiles::of(served.iter().map(|o| o.itl_ms as f64).collect()),
            max_prefill: r.max_prefill,
            max_decode: r.max_decode,
            misses_in_warmup: warm.0.round() as u64,
            misses_after_warmup: after.0.round() as u64,
            slo_attainment_after_warmup: round6(if after.1 > 0.0 {
                1.0 - after.0 / after.1
            } else {
                1.0
            }),
            gpu_hours_after_warmup: round6(gpu_hours_after_warmup(r)),
            scale_changes: changes,
            reversals,
            prefix_cache_hit_share: r.prefix_tokens.map(|t| {
                round6(if t.prompt > 0 {
                    t.cached as f64 / t.prompt as f64
                } else {
                    0.0
                })
            }),
        }
    }
}

/// GPU-hours of the timeline's intervals ending after the warm-up.
fn gpu_hours_after_warmup(r: &SimResult) -> f64 {
    r.timeline
        .iter()
        .filter(|row| row.observation.time_s > WARMUP_S)
        .map(|row| f64::from(row.gpus) * row.observation.interval_s)
        .sum::<f64>()
        / 3600.0
}

/// `(misses, completions)` of the timeline's intervals ending within the warm-up, and after.
fn split_at_warmup(r: &SimResult) -> ((f64, f64), (f64, f64)) {
    let mut warm = (0.0, 0.0);
    let mut after = (0.0, 0.0);
    for row in &r.timeline {
        let n = row.completions as f64;
        let missed = n * (1.0 - row.attainment.unwrap_or(1.0));
        let part = if row.observation.time_s <= WARMUP_S {
            &mut warm
        } else {
            &mut after
        };
        part.0 += missed;
        part.1 += n;
    }
    (warm, after)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub origin: String,
    pub workload: String,
    pub requests: usize,
    pub duration_s: f64,
    pub interval_s: f64,
    pub startup_s: f64,
    pub gpu_budget: u32,
    pub profile: String,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: ScenarioInfo,
    pub sla: Sla,
    pub policies: Vec<PolicySummary>,
    pub wall_time_s: f64,
}

/// A file-name-safe form of a policy name: `static:2,2` -> `static_2_2`.
pub fn file_stem(policy: &str) -> String {
    policy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn write_summary(dir: &Path, s: &Summary) -> Result<(), InputError> {
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(s).expect("plain data serialises");
    std::fs::write(&path, text + "\n").map_err(|e| InputError::io(&path, e))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => String::new(),
    }
}

pub fn write_timeline(dir: &Path, r: &SimResult) -> Result<(), InputError> {
    let path = dir.join(format!("timeline_{}.csv", file_stem(&r.policy)));
    let mut out = Vec::new();
    writeln!(
        out,
        "time_s,arrivals,isl_mean,osl_mean,prefill_ready,prefill_starting,prefill_draining,prefill_target,\
decode_ready,decode_starting,decode_draining,decode_target,gpus,completions,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,\
itl_p50_ms,itl_p90_ms,itl_p99_ms,kv_decode,queued_prefill_tokens,attainment,reasons"
    )
    .expect("vec write");
    for row in &r.timeline {
        let o = &row.observation;
        let rep = o.replicas.unwrap_or_default();
        let reasons = row.reasons.join("; ").replace('"', "'");
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            o.time_s,
            opt(o.requests, 0),
            opt(o.isl_mean, 1),
            opt(o.osl_mean, 1),
            rep.prefill.ready,
            rep.prefill.starting,
            rep.prefill.draining,
            row.target_prefill,
            rep.decode.ready,
            rep.decode.starting,
            rep.decode.draining,
            row.target_decode,
            row.gpus,
            row.completions,
            opt(o.ttft_ms.and_then(|l| l.p50), 2),
            opt(o.ttft_ms.and_then(|l| l.p90), 2),
            opt(o.ttft_ms.and_then(|l| l.p99), 2),
            opt(o.itl_ms.and_then(|l| l.p50), 3),
            opt(o.itl_ms.and_then(|l| l.p90), 3),
            opt(o.itl_ms.and_then(|l| l.p99), 3),
            opt(o.kv_utilization.and_then(|k| k.decode), 4),
            opt(o.queued_prefill_tokens, 0),
            opt(row.attainment, 4),
            reasons
        )
        .expect("vec write");
    }
    std::fs::write(&path, out).map_err(|e| InputError::io(&path, e))
}

/// `observations_<policy>.jsonl`: every observation the policy was shown, one per line as
/// `decide` reads it (missing signals left out); `decisions_<policy>.jsonl`: its decision
/// to each, as `decide` prints one. For the planner (and a variant, its settings `--set`
/// on `decide`), `decide --scenario` answers the first file with the second.
pub fn write_exchanges(dir: &Path, r: &SimResult) -> Result<(), InputError> {
    let stem = file_stem(&r.policy);
    let (mut shown, mut decided) = (String::new(), String::new());
    for (observation, decision) in &r.exchanges {
        shown.push_str(&observation.decide_line());
        shown.push('\n');
        decided.push_str(&serde_json::to_string(decision).expect("plain data serialises"));
        decided.push('\n');
    }
    for (name, text) in [("observations", shown), ("decisions", decided)] {
        let path = dir.join(format!("{name}_{stem}.jsonl"));
        std::fs::write(&path, text).map_err(|e| InputError::io(&path, e))?;
    }
    Ok(())
}

/// The comparison table printed in the terminal (and pasted into the README).
pub fn table(policies: &[PolicySummary]) -> String {
    let header = [
        "policy",
        "SLO att.",
        "TTFT att.",
        "ITL att.",
        "GPU-h",
        "goodput/GPU-h",
        "TTFT p99 ms",
        "ITL p99 ms",
        "max P",
        "max D",
        "changes (reversed)",
    ];
    let rows: Vec<[String; 11]> = policies
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                format!("{:.2}%", p.slo_attainment * 100.0),
                format!("{:.2}%", p.ttft_attainment * 100.0),
                format!("{:.2}%", p.itl_attainment * 100.0),
                format!("{:.2}", p.gpu_hours),
                format!("{:.0}", p.goodput_per_gpu_hour),
                format!("{:.1}", p.ttft_ms.p99),
                format!("{:.2}", p.itl_ms.p99),
                p.max_prefill.to_string(),
                p.max_decode.to_string(),
                format!("{} ({})", p.scale_changes, p.reversals),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    s += &line(header.to_vec());
    s += &format!(
        "|{}|\n",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in &rows {
        s += &line(r.iter().map(String::as_str).collect());
    }
    s
}

/// `value` and the `bar` it is judged against, to two places or as many more (up to six)
/// as tell them apart: a ratio of 1.3046 is shown as 1.305 against a bar of 1.3, not as a
/// 1.30 that seems to meet it.
fn apart(value: f64, bar: f64) -> (String, String) {
    let mut places = 2;
    while places < 6 && value != bar && format!("{value:.places$}") == format!("{bar:.places$}") {
        places += 1;
    }
    (format!("{value:.places$}"), format!("{bar:.places$}"))
}

/// The comparison of `sla-planner compare`: every policy on every run, then the planner's
/// standing against the oracle, Dynamo's planner and the cheapest static deployment.
pub fn comparison_markdown(runs: &[(String, f64, Summary)]) -> String {
    let mut s = String::new();
    s += "| scenario | cold start | policy | SLO attainment | GPU-hours | x oracle | goodput/GPU-h | TTFT p99 ms | ITL p99 ms | changes (reversed) |\n";
    s += "|:--|--:|:--|--:|--:|--:|--:|--:|--:|--:|\n";
    for (name, startup, sum) in runs {
        let oracle = sum
            .policies
            .iter()
            .find(|p| p.name.starts_with("oracle"))
            .map(|p| p.gpu_hours);
        for p in &sum.policies {
            let x = oracle
                .filter(|o| *o > 0.0)
                .map_or(String::from("-"), |o| format!("{:.2}", p.gpu_hours / o));
            s += &format!(
                "| {name} | {startup:.0} s | {} | {:.2}% | {:.2} | {x} | {:.0} | {:.0} | {:.2} | {} ({}) |\n",
                p.name,
                p.slo_attainment * 100.0,
                p.gpu_hours,
                p.goodput_per_gpu_hour,
                p.ttft_ms.p99,
                p.itl_ms.p99,
                p.scale_changes,
                p.reversals
            );
        }
    }
    let find = |sum: &Summary, prefix: &str| {
        sum.policies
            .iter()
            .find(|p| p.name.starts_with(prefix))
            .cloned()
    };
    let mut checks = String::new();
    for (name, startup, sum) in runs {
        let Some(pl) = find(sum, "planner") else {
            continue;
        };
        let mark = |ok: bool| if ok { "yes" } else { "**no**" };
        let oracle = find(sum, "oracle");
        let dynamo = find(sum, "dynamo");
        let best = find(sum, "static:best");
        // Where the planner misses 99%: what the whole budget, ordered at the start before
        // any request is seen, reaches from the same start (about the most any policy can).
        let reachable = find(sum, "budget-at-start")
            .filter(|_| pl.slo_attainment < 0.99)
            .map_or(String::new(), |b| {
                format!(" (budget at start: {:.2}%)", b.slo_attainment * 100.0)
            });
        // Each figure to as many places as tell it from the one it is judged against.
        let attainment = pl.slo_attainment * 100.0;
        checks += &format!(
            "| {name} | {startup:.0} s | {}% {}{reachable} | {} | {} | {} |\n",
            apart(attainment, 99.0).0,
            mark(pl.slo_attainment >= 0.99),
            oracle.map_or("-".into(), |o| {
                let ratio = pl.gpu_hours / o.gpu_hours.max(1e-9);
                format!("{}x {}", apart(ratio, 1.3).0, mark(ratio <= 1.3))
            }),
            dynamo.map_or("-".into(), |d| {
                let (planner, dynamo) = apart(attainment, d.slo_attainment * 100.0);
                format!(
                    "{planner}% vs {dynamo}% {}",
                    mark(pl.slo_attainment > d.slo_attainment)
                )
            }),
            best.map_or("-".into(), |b| {
                let (planner, best) = apart(pl.gpu_hours, b.gpu_hours);
                format!(
                    "{planner} vs {best} ({}) {}",
                    b.name,
                    mark(pl.gpu_hours < b.gpu_hours)
                )
            }),
        );
    }
    if !checks.is_empty() {
        s += "\n| scenario | cold start | planner >= 99% | planner GPU-h <= 1.3x oracle | planner above dynamo | planner GPU-h below cheapest static >= 99% |\n";
        s += "|:--|--:|:--|:--|:--|:--|\n";
        s += &checks;
    }
    let mut warm = String::new();
    for (name, startup, sum) in runs {
        let (Some(pl), Some(or)) = (find(sum, "planner"), find(sum, "oracle")) else {
            continue;
        };
        warm += &format!(
            "| {name} | {startup:.0} s | {} | {} | {:.2}% | {:.2}% | {:.2}x |\n",
            pl.misses_in_warmup,
            pl.misses_after_warmup,
            pl.slo_attainment_after_warmup * 100.0,
            or.slo_attainment_after_warmup * 100.0,
            pl.gpu_hours_after_warmup / or.gpu_hours_after_warmup.max(1e-9)
        );
    }
    if !warm.is_empty() {
        s += &format!(
            "\nWhere the planner's misses fall: in the first {:.0} minutes (before it has seen how the load moves) or after.\n\n",
            WARMUP_S / 60.0
        );
        s += "| scenario | cold start | planner misses, warm-up | planner misses, after | planner attainment after | oracle attainment after | planner GPU-h after, x oracle |\n";
        s += "|:--|--:|--:|--:|--:|--:|--:|\n";
        s += &warm;
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_figure_is_shown_to_the_places_that_tell_it_from_its_bar() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(apart(1.3046, 1.3), s("1.305", "1.300"));
        assert_eq!(apart(1.2951, 1.3), s("1.295", "1.300"));
        assert_eq!(apart(1.26, 1.3), s("1.26", "1.30"));
        assert_eq!(apart(1.3, 1.3), s("1.30", "1.30"));
        assert_eq!(apart(98.9951, 99.0), s("98.995", "99.000"));
        assert_eq!(apart(98.9996, 99.0), s("98.9996", "99.0000"));
        assert_eq!(apart(7.0, 7.0 + 1e-12), s("7.000000", "7.000000"));
    }

    use super::*;
    use crate::planner::{Observation, ReplicaState, RoleReplicas};
    use crate::sim::IntervalRow;

    /// A timeline that starts on 2P+2D and asks, a minute apart, for the given targets.
    fn run_of(targets: &[(u32, u32)]) -> SimResult {
        let start = ReplicaState {
            ready: 2,
            ..Default::default()
        };
        let timeline = targets
            .iter()
            .enumerate()
            .map(|(i, &(p, d))| IntervalRow {
                observation: Observation {
                    time_s: 60.0 * (i + 1) as f64,
                    interval_s: 60.0,
                    replicas: (i == 0).then_some(RoleReplicas {
                        prefill: start,
                        decode: start,
                    }),
                    ..Default::default()
                },
                completions: 0,
                attainment: None,
                target_prefill: p,
                target_decode: d,
                gpus: p + d,
                reasons: Vec::new(),
            })
            .collect();
        SimResult {
            policy: "test".into(),
            settings: None,
            outcomes: Vec::new(),
            timeline,
            exchanges: Vec::new(),
            gpu_seconds: 0.0,
            max_prefill: 0,
            max_decode: 0,
            end_s: 0.0,
            prefix_tokens: None,
        }
    }

    #[test]
    fn a_change_undone_within_five_minutes_is_a_reversal() {
        // Held: nothing changes, even against the replicas the run started with.
        assert_eq!(scale_changes(&run_of(&[(2, 2), (2, 2)])), (0, 0));
        // Prefill up at 1 min, down at 3 min (reversed), down again at 4 min (same way),
        // up at 10 min (six minutes after the last change: not a reversal).
        let p = [
            (3, 2),
            (3, 2),
            (2, 2),
            (1, 2),
            (1, 2),
            (1, 2),
            (1, 2),
            (1, 2),
            (1, 2),
            (2, 2),
        ];
        assert_eq!(scale_changes(&run_of(&p)), (4, 1));
        // Each role on its own: decode down while prefill goes up is no reversal.
        assert_eq!(scale_changes(&run_of(&[(3, 1), (3, 1)])), (2, 0));
        // The first decision counts against the start: 2 -> 1 -> 2 is a change and a reversal.
        assert_eq!(scale_changes(&run_of(&[(2, 1), (2, 2)])), (2, 1));
    }
}
