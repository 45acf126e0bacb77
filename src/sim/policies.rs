//! The policy registry: one place that turns a `--policy` spec into a policy.

use std::path::Path;

use super::oracle::OraclePolicy;
use super::SimConfig;
use crate::error::InputError;
use crate::planner::baselines::{DynamoPolicy, SchedulePolicy, StaticPolicy, ThresholdPolicy};
use crate::planner::sla_planner::{PlannerConfig, SlaPlanner};
use crate::planner::{Policy, PolicyContext};
use crate::profile::Profile;
use crate::workload::Request;

pub const POLICY_SPECS: &str = "planner | planner:FIELD=VALUE[;FIELD=VALUE...] | static:P,D | static:best | schedule:FILE | dynamo | dynamo:no-correction | threshold | oracle | oracle:TARGET | budget-at-start";

/// What policies may be built from. Only the bounds (the oracle, `static:best`,
/// `budget-at-start`) read `requests`.
pub struct PolicyEnv<'a> {
    pub sim: &'a SimConfig,
    pub planner: PlannerConfig,
    /// What the engines really do: the oracle and `static:best` search with it.
    pub profile: &'a Profile,
    /// What the policies that cannot see the run are told the engines do.
    pub planner_profile: &'a Profile,
    pub requests: &'a [Request],
}

impl PolicyEnv<'_> {
    pub fn context(&self) -> PolicyContext {
        PolicyContext {
            sla: self.sim.sla,
            limits: self.sim.limits,
            interval_s: self.sim.interval_s,
            startup_s: self.sim.told_startup_s,
            prefill: self.planner_profile.prefill_model(),
            decode: self.planner_profile.decode_model(),
            max_context_tokens: self.sim.max_context_tokens,
        }
    }
}

fn usage(spec: &str, why: &str) -> InputError {
    InputError::Usage(format!(
        "--policy {spec:?}: {why}; policies are {POLICY_SPECS}"
    ))
}

/// Checks a spec's form without building it (the oracle's planning is costly).
pub fn check_policy_spec(spec: &str) -> Result<(), InputError> {
    let (kind, arg) = spec
        .split_once(':')
        .map_or((spec, None), |(k, a)| (k, Some(a)));
    match (kind, arg) {
        ("static", Some("best")) => Ok(()),
        ("static", Some(a)) => parse_static(spec, a).map(|_| ()),
        ("schedule", Some(f)) if !f.is_empty() => Ok(()),
        ("planner", Some(a)) => parse_planner_sets(spec, a).map(|_| ()),
        ("planner", None)
        | ("dynamo", None)
        | ("dynamo", Some("no-correction"))
        | ("threshold", None)
        | ("oracle", None)
        | ("budget-at-start", None) => Ok(()),
        ("oracle", Some(t)) => parse_target(spec, t).map(|_| ()),
        _ => Err(usage(spec, "unknown policy")),
    }
}

fn parse_static(spec: &str, a: &str) -> Result<(u32, u32), InputError> {
    let (p, d) = a
        .split_once(',')
        .ok_or_else(|| usage(spec, "static takes P,D, for example static:2,2"))?;
    let p: u32 = p
        .trim()
        .parse()
        .map_err(|_| usage(spec, "P must be a whole number"))?;
    let d: u32 = d
        .trim()
        .parse()
        .map_err(|_| usage(spec, "D must be a whole number"))?;
    Ok((p, d))
}

/// A planner variant's settings, `planner:FIELD=VALUE[;FIELD=VALUE...]`: each field a
/// dotted path within the `planner:` section of a scenario, each value read as YAML, as
/// `--set planner.FIELD=VALUE` reads it. The variant runs beside the scenario's own planner.
fn parse_planner_sets(
    spec: &str,
    a: &str,
) -> Result<Vec<(String, serde_yaml_ng::Value)>, InputError> {
    let sets: Vec<_> = a
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            crate::scenario::field_assignment(
                s,
                "planner:headroom_quantile=0.95",
                "planner:stabilizer.scale_down_window_s=300",
            )
            .map_err(|m| usage(spec, &format!("{s:?}: {m}")))
        })
        .collect::<Result<_, _>>()?;
    if sets.is_empty() {
        return Err(usage(
            spec,
            "planner: takes the settings it changes, as in planner:headroom_quantile=0.95",
        ));
    }
    Ok(sets)
}

/// The scenario's planner settings with a variant's changed, checked as the scenario's are.
fn planner_variant(spec: &str, a: &str, base: &PlannerConfig) -> Result<PlannerConfig, InputError> {
    let sets = parse_planner_sets(spec, a)?;
    let field_err = |m: String| {
        InputError::Usage(format!(
            "--policy {spec:?}: {m} (the fields of the planner: section, docs/planner.md)"
        ))
    };
    let cfg = crate::scenario::with_sets(base, &sets).map_err(field_err)?;
    if cfg.mode != base.mode {
        return Err(field_err(
            "mode: is the simulated deployment's (deployment.mode), not a planner variant's".into(),
        ));
    }
    cfg.validate().map_err(field_err)?;
    Ok(cfg)
}

fn parse_target(spec: &str, t: &str) -> Result<f64, InputError> {
    let v: f64 = t
        .parse()
        .map_err(|_| usage(spec, "the oracle's target is a share such as 0.99"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(usage(spec, "the oracle's target must be in (0, 1]"));
    }
    Ok(v)
}

/// Whether the policy sizes prefill and decode pools by their own formulas (Dynamo's
/// throughput planner), and so cannot steer an aggregated deployment's workers.
pub fn sizes_pools(spec: &str) -> bool {
    let kind = spec.split_once(':').map_or(spec, |(k, _)| k);
    kind == "dynamo"
}

pub fn build_policy(spec: &str, env: &PolicyEnv) -> Result<Box<dyn Policy>, InputError> {
    check_policy_spec(spec)?;
    let (kind, arg) = spec
        .split_once(':')
        .map_or((spec, None), |(k, a)| (k, Some(a)));
    if env.sim.aggregated {
        match (kind, arg) {
            _ if sizes_pools(spec) => {
                return Err(usage(
                    spec,
                    "it sizes prefill and decode pools, and this deployment is aggregated \
                     (deployment.mode); planner, threshold, static:0,W, static:best, schedule, \
                     budget-at-start and oracle size its workers",
                ))
            }
            ("static", Some(a)) if a != "best" && parse_static(spec, a)?.0 != 0 => {
                return Err(usage(
                    spec,
                    "an aggregated deployment has no prefill pool: static:0,W runs W workers",
                ))
            }
            _ => {}
        }
    }
    Ok(match (kind, arg) {
        ("static", Some("best")) => {
            let best = super::oracle::best_static(env.sim, env.profile, env.requests, 0.99);
            let (p, d) = (best.prefill, best.decode);
            // Named for what it is when the budget allows no deployment that reaches 99%.
            let name = if best.meets_target {
                format!("static:best={p},{d}")
            } else {
                format!("static:best={p},{d} (budget-bound)")
            };
            Box::new(StaticPolicy::named(name, p, d))
        }
        ("static", Some(a)) => {
            let (p, d) = parse_static(spec, a)?;
            Box::new(StaticPolicy::new(p, d))
        }
        ("schedule", Some(f)) => Box::new(read_schedule(Path::new(f), spec)?),
        ("budget-at-start", None) => {
            let rows = super::oracle::budget_at_start(env.sim, env.profile, env.requests);
            let (_, p, d) = rows[1];
            Box::new(SchedulePolicy::new(
                format!("budget-at-start={p},{d}"),
                rows.to_vec(),
            ))
        }
        ("planner", None) => Box::new(SlaPlanner::new(env.context(), env.planner.clone())),
        ("planner", Some(a)) => {
            let cfg = planner_variant(spec, a, &env.planner)?;
            Box::new(SlaPlanner::new(env.context(), cfg).named(spec))
        }
        ("dynamo", a) => Box::new(DynamoPolicy::new(env.context(), a.is_none())),
        ("threshold", _) => Box::new(ThresholdPolicy::new(env.context())),
        ("oracle", a) => {
            let target = a
                .map(|t| parse_target(spec, t))
                .transpose()?
                .unwrap_or(0.99);
            Box::new(OraclePolicy::plan(
                env.sim,
                env.profile,
                env.requests,
                target,
            ))
        }
        _ => return Err(usage(spec, "unknown policy")),
    })
}

/// A schedule CSV: header `time_s,prefill,decode`, rows sorted by time.
pub fn read_schedule(path: &Path, spec: &str) -> Result<SchedulePolicy, InputError> {
    let file = path.display().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| InputError::TraceFile {
            file: file.clone(),
            message: format!("cannot read schedule: {e}"),
        })?;
    let err = |line: u64, message: String| InputError::Trace {
        file: file.clone(),
        line,
        message,
    };
    let headers = rdr.headers().map_err(|e| err(1, e.to_string()))?.clone();
    let want = ["time_s", "prefill", "decode"];
    if headers.iter().map(str::trim).collect::<Vec<_>>() != want {
        return Err(err(
            1,
            format!(
                "schedule header must be time_s,prefill,decode (found {})",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let mut rows: Vec<(f64, u32, u32)> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let t: f64 = rec[0]
            .trim()
            .parse()
            .map_err(|_| err(line, format!("time_s is not a number ({:?})", &rec[0])))?;
        let p: u32 = rec[1].trim().parse().map_err(|_| {
            err(
                line,
                format!("prefill is not a whole number ({:?})", &rec[1]),
            )
        })?;
        let d: u32 = rec[2].trim().parse().map_err(|_| {
            err(
                line,
                format!("decode is not a whole number ({:?})", &rec[2]),
            )
        })?;
        if !t.is_finite() || t < 0.0 || rows.last().is_some_and(|r| r.0 > t) {
            return Err(err(
                line,
                format!("time_s must be >= 0 and not decrease (got {t})"),
            ));
        }
        rows.push((t, p, d));
    }
    if rows.is_empty() {
        return Err(InputError::TraceFile {
            file,
            message: "schedule has no rows".into(),
        });
    }
    Ok(SchedulePolicy::new(spec.to_string(), rows))
}
