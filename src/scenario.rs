//! Scenario files: a workload, a profile, the SLA and the deployment's limits, in YAML.
//! The format is documented in `simulations/README.md`; the files in `simulations/` are
//! also compiled in, so `--scenario NAME` works from any directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InputError;
use crate::metrics::ItlObserved;
use crate::planner::percentiles::LatencyPercentiles;
use crate::planner::sla_planner::PlannerConfig;
use crate::planner::solver::Mode;
use crate::planner::{Limits, PolicyContext, Sla};
use crate::profile::{load_profile, Profile};
use crate::sim::{KvTransfer, PrefixCache, SimConfig};
use crate::workload::{
    read_trace, Request, SyntheticSpec, TraceFormat, TraceReadOptions, TraceTransform,
};

/// Scenarios shipped in `simulations/`, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("sin-5-45", include_str!("../simulations/sin-5-45.yaml")),
    (
        "sin-5-45-aggregated",
        include_str!("../simulations/sin-5-45-aggregated.yaml"),
    ),
    (
        "sin-5-45-budget8",
        include_str!("../simulations/sin-5-45-budget8.yaml"),
    ),
    (
        "sin-5-45-2h",
        include_str!("../simulations/sin-5-45-2h.yaml"),
    ),
    (
        "azure-conv-x8",
        include_str!("../simulations/azure-conv-x8.yaml"),
    ),
    (
        "azure-code-x8",
        include_str!("../simulations/azure-code-x8.yaml"),
    ),
    (
        "mooncake-conv-x4",
        include_str!("../simulations/mooncake-conv-x4.yaml"),
    ),
    (
        "flash-crowd",
        include_str!("../simulations/flash-crowd.yaml"),
    ),
    ("step-10-30", include_str!("../simulations/step-10-30.yaml")),
    (
        "diurnal-2-40",
        include_str!("../simulations/diurnal-2-40.yaml"),
    ),
    (
        "bursts-10-40",
        include_str!("../simulations/bursts-10-40.yaml"),
    ),
    ("e2e-ramp", include_str!("../simulations/e2e-ramp.yaml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    /// `default` for the embedded profile, or a path (a Dynamo profiler directory or a JSON file).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The profile the policies are given, when the simulated engines differ from it (a
    /// stale profile, or one measured on other hardware); the same forms as `profile`.
    /// Absent: the policies are given the engines' own profile.
    #[serde(default)]
    pub planner_profile: Option<String>,
    pub workload: WorkloadSpec,
    /// Policy ticks stop here; defaults to the workload's span rounded up to an interval.
    #[serde(default)]
    pub duration_s: Option<f64>,
    pub sla: Sla,
    pub deployment: DeploymentSpec,
    /// Policies compared when none is given on the command line.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Settings of the `planner` policy (`docs/planner.md`); defaults when absent.
    #[serde(default)]
    pub planner: PlannerConfig,
}

fn default_profile() -> String {
    "default".into()
}

/// Exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default)]
    pub synthetic: Option<SyntheticSpec>,
    #[serde(default)]
    pub trace: Option<TraceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    pub file: String,
    #[serde(default)]
    pub format: Option<TraceFormat>,
    #[serde(default)]
    pub skip_bad_lines: bool,
    #[serde(default)]
    pub transform: TraceTransform,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// `disaggregated` (prefill and decode pools) or `aggregated` (one pool of workers that
    /// do both; their count is the decode count, and the prefill limits are 0).
    #[serde(default)]
    pub mode: Mode,
    pub interval_s: f64,
    pub startup_s: f64,
    /// The cold start the policies are told, when the simulated engines take another (a
    /// configuration gone stale: a larger model, a slower image registry). Absent: `startup_s`.
    /// `decide` plans with it in place of `startup_s`, as it does with `planner_profile`.
    #[serde(default)]
    pub planner_startup_s: Option<f64>,
    #[serde(default = "default_scrape")]
    pub scrape_s: f64,
    pub gpu_budget: u32,
    #[serde(default = "one")]
    pub gpus_per_prefill_engine: u32,
    #[serde(default = "one")]
    pub gpus_per_decode_engine: u32,
    #[serde(default = "one")]
    pub min_prefill: u32,
    #[serde(default)]
    pub max_prefill: Option<u32>,
    #[serde(default = "one")]
    pub min_decode: u32,
    #[serde(default)]
    pub max_decode: Option<u32>,
    /// Replicas ready at time 0: counts, or `auto` (the default): the cheapest deployment
    /// meeting the SLA for the load until a first scale-up could be ready (one interval and a
    /// cold start), as a deployment already running when the recording starts would be sized.
    #[serde(default)]
    pub initial: Option<InitialReplicas>,
    #[serde(default)]
    pub prefill_token_budget: Option<u32>,
    #[serde(default)]
    pub kv_transfer: KvTransfer,
    #[serde(default)]
    pub max_decode_batch: Option<u32>,
    /// Signals of the observation the policies are not shown (`Signal`): what a deployment
    /// whose metrics lack them would decide.
    #[serde(default)]
    pub withhold: Vec<crate::sim::Signal>,
    /// Spans in which the policies are shown no signal (a metrics outage): each decision
    /// within one sees its time, interval and the replicas only.
    #[serde(default)]
    pub signal_outages: Vec<SignalOutage>,
    /// Prefill engines that keep prompts' prefix blocks and compute only what a prompt
    /// lacks, for a trace that names the blocks (Mooncake's `hash_ids`).
    #[serde(default)]
    pub prefix_cache: Option<PrefixCacheSpec>,
    /// How the frontend sends requests to the engines: `least-loaded` (the default),
    /// `round-robin` or `random`.
    #[serde(default)]
    pub router: crate::sim::Routing,
    /// How the policies' TTFT and ITL percentiles are read: `exact` (the default: from the
    /// interval's requests), `dynamo` (`histogram_quantile` over the buckets Dynamo's
    /// frontend ships with), or `{ttft_s: [...], itl_s: [...]}`.
    #[serde(default)]
    pub latency_percentiles: LatencyPercentiles,
    /// How ITL is observed: `per_request` (each request's mean, as the SLA counts it) or
    /// `per_token` (each token gap, as Dynamo's frontend feeds its histogram). Attainment
    /// is counted per request either way.
    #[serde(default)]
    pub itl_observed: ItlObserved,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixCacheSpec {
    /// Tokens one named block stands for: Mooncake's traces hash blocks of 512.
    #[serde(default = "mooncake_block_tokens")]
    pub block_tokens: u32,
}

fn mooncake_block_tokens() -> u32 {
    512
}

/// A span of a dry run in which the metrics are out: `from_s` < a decision's time <= `to_s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalOutage {
    pub from_s: f64,
    pub to_s: f64,
}

#[derive(Debug, Clone)]
pub enum InitialReplicas {
    Counts { prefill: u32, decode: u32 },
    Named(String),
}

/// The counts, as written: both, and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitialCounts {
    prefill: u32,
    decode: u32,
}

// By hand rather than `untagged`: a string is a name and a mapping the counts, so a count
// missing or misspelt is told as it is, not as "data did not match any variant".
impl<'de> Deserialize<'de> for InitialReplicas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Initial;
        impl<'de> serde::de::Visitor<'de> for Initial {
            type Value = InitialReplicas;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("auto or {prefill: P, decode: D}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InitialReplicas, E> {
                Ok(InitialReplicas::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<InitialReplicas, A::Error> {
                let c =
                    InitialCounts::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(InitialReplicas::Counts {
                    prefill: c.prefill,
                    decode: c.decode,
                })
            }
        }
        d.deserialize_any(Initial)
    }
}

fn one() -> u32 {
    1
}
fn default_scrape() -> f64 {
    15.0
}

/// Command-line changes to a scenario.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub trace: Option<PathBuf>,
    pub trace_format: Option<TraceFormat>,
    pub skip_bad_lines: bool,
    pub transform: TraceTransform,
    pub profile: Option<PathBuf>,
    pub planner_profile: Option<PathBuf>,
    pub startup_s: Option<f64>,
    pub gpu_budget: Option<u32>,
    pub seed: Option<u64>,
    /// Fields of the scenario file set from the command line: (dotted path, YAML value).
    pub sets: Vec<(String, serde_yaml_ng::Value)>,
    /// `k` times the load and the deployment's limits (`--load-scale`, `scale_load`).
    pub load_scale: Option<f64>,
}

/// A scenario made ready to run: workload generated or read, profile loaded.
pub struct Scenario {
    pub file: ScenarioFile,
    pub origin: String,
    /// The simulated engines' profile.
    pub profile: Profile,
    /// The profile the policies plan with: `profile` unless the scenario or the command
    /// line gives another.
    pub planner_profile: Profile,
    pub requests: Vec<Request>,
    pub sim: SimConfig,
    /// Notes for the report: lines skipped, requests adjusted.
    pub notes: Vec<String>,
    /// Where the workload came from.
    pub workload_source: String,
}

/// A profile given on the command line (`over`) or named in a scenario file (`spec`:
/// `default` for the embedded one, else a path relative to the file's directory `base`).
fn resolve_profile(over: Option<&Path>, spec: &str, base: &Path) -> Result<Profile, InputError> {
    match over {
        Some(p) => load_profile(p),
        None if spec == "default" => Ok(Profile::embedded_default()),
        None => load_profile(&base.join(spec)),
    }
}

/// An error from a part's own check, whose message begins with the field's name within the
/// part (`"smoothing: must be in (0, 1]"`): the field under `part`, then what is wrong.
pub(crate) fn part_err(origin: &str, part: &str, message: &str) -> InputError {
    match message.split_once(": ") {
        Some((field, why)) => field_err(origin, &format!("{part}.{field}"), why),
        None => field_err(origin, part, message),
    }
}

fn field_err(origin: &str, field: &str, message: impl Into<String>) -> InputError {
    InputError::Scenario {
        file: origin.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Finds a scenario by file path or embedded name; returns its text, origin and base directory.
pub fn find(name_or_file: &str) -> Result<(String, String, PathBuf), InputError> {
    let p = Path::new(name_or_file);
    if p.is_file() {
        let text = crate::error::read_text(p)?;
        let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok((text, p.display().to_string(), base));
    }
    if let Some((name, text)) = EMBEDDED.iter().find(|(n, _)| *n == name_or_file) {
        // Paths inside an embedded scenario resolve as if read from ./simulations/NAME.yaml.
        return Ok((
            text.to_string(),
            format!("simulations/{name}.yaml (embedded)"),
            PathBuf::from("simulations"),
        ));
    }
    let names: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
    Err(InputError::Usage(format!(
        "--scenario {name_or_file:?} is neither a file nor a shipped scenario ({})",
        names.join(", ")
    )))
}

pub fn load(name_or_file: &str, ov: &Overrides) -> Result<Scenario, InputError> {
    let (text, origin, base) = find(name_or_file)?;
    let mut file = parse_with_sets(&text, &origin, &ov.sets)?;
    let Some(k) = ov.load_scale else {
        return prepare(file, &origin, &base, ov);
    };
    let mut ov = ov.clone();
    let what = scale_load(&mut file, &mut ov, k)?;
    let mut sc = prepare(file, &origin, &base, &ov)?;
    sc.notes.push(format!("--load-scale {k}: {what}"));
    Ok(sc)
}

/// `k` times the load on a deployment `k` times as large: every rate of a synthetic
/// workload, or the copies of a trace (`k` times as many, `k` times closer, so they spread
/// over the same span), and the GPU budget, the per-role maxima and explicit initial counts
/// (rounded up); the minima stay. What scales a cluster's load scales its capacity, so a
/// scenario can be run at the size of a larger cluster. Says what it changed.
pub fn scale_load(
    file: &mut ScenarioFile,
    ov: &mut Overrides,
    k: f64,
) -> Result<String, InputError> {
    if !(k.is_finite() && k > 0.0) {
        return Err(InputError::Usage(format!(
            "--load-scale: must be a number > 0 (got {k})"
        )));
    }
    let mut what = Vec::new();
    // The trace replayed is `--trace`'s when given, else the file's.
    let transform = match (ov.trace.is_some(), file.workload.trace.as_mut()) {
        (true, _) => Some(&mut ov.transform),
        (false, t) => t.map(|t| &mut t.transform),
    };
    if let Some(t) = transform {
        *t = t
            .with_copies_scaled(k)
            .map_err(|m| InputError::Usage(format!("--load-scale {k}: {m}")))?;
        what.push(format!("{} copies of the trace", t.replicate.unwrap_or(1)));
    } else if let Some(syn) = file.workload.synthetic.as_mut() {
        syn.rate = syn.rate.scaled(k);
        what.push(format!("rates x{k}"));
    }
    // Past the largest count anything takes, a scaled limit is an error here, where the
    // scale is named, rather than a saturated number later.
    let limit = f64::from(crate::planner::MAX_REPLICAS);
    let budget = (f64::from(file.deployment.gpu_budget) * k).ceil();
    if budget > limit {
        return Err(InputError::Usage(format!(
            "--load-scale {k}: a GPU budget of {budget} GPUs (at most {limit})"
        )));
    }
    let up = |n: u32| (f64::from(n) * k).ceil().min(limit) as u32;
    let d = &mut file.deployment;
    d.gpu_budget = budget as u32;
    what.push(format!("GPU budget {}", d.gpu_budget));
    d.max_prefill = d.max_prefill.map(up);
    d.max_decode = d.max_decode.map(up);
    if let Some(InitialReplicas::Counts { prefill, decode }) = d.initial.as_mut() {
        *prefill = up(*prefill);
        *decode = up(*decode);
        what.push(format!("starting at {prefill}P+{decode}D"));
    }
    Ok(what.join(", "))
}

/// Reads a YAML file with the fields `sets` names changed (`--set`). The file is read as
/// it is first, so what fails afterwards is what was set, and the message names it.
pub fn parse_with_sets<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    sets: &[(String, serde_yaml_ng::Value)],
) -> Result<T, InputError> {
    let file: T = serde_yaml_ng::from_str(text).map_err(|e| yaml_err(origin, e))?;
    if sets.is_empty() {
        return Ok(file);
    }
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_err(origin, e))?;
    let named = |paths: &[&str]| format!("--set {}", paths.join(", --set "));
    for (path, value) in sets {
        set_field(&mut doc, path, value.clone())
            .map_err(|m| field_err(origin, &named(&[path]), m))?;
    }
    // Read back as text, as the file was: YAML's scalars are typed by what reads them
    // (`name: 5` is a name), where a value already parsed is a number.
    let edited = serde_yaml_ng::to_string(&doc).map_err(|e| yaml_err(origin, e))?;
    serde_yaml_ng::from_str(&edited).map_err(|e| {
        // The file read as written, so a set broke it: name the sets at or around the field
        // that failed (all of them when none is), and leave out the edited text's lines.
        let msg = e.to_string();
        let (field, message) = path_and_message(crate::error::without_place(&msg));
        let field = field.unwrap_or_default();
        let message = message.to_string();
        let around = |set: &str| {
            !field.is_empty()
                && (field == set
                    || field.starts_with(&format!("{set}."))
                    || set.starts_with(&format!("{field}.")))
        };
        let mut paths: Vec<&str> = sets
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| around(p))
            .collect();
        if paths.is_empty() {
            paths = sets.iter().map(|(p, _)| p.as_str()).collect();
        }
        // A field within the set is named too; the set is the more exact name otherwise.
        let message = if paths.iter().all(|p| field.starts_with(&format!("{p}."))) {
            format!("{field}: {message}")
        } else {
            message
        };
        field_err(origin, &named(&paths), message)
    })
}

/// `value` with the fields `sets` names changed, read back as its type reads a file: what
/// a set breaks is named by its field (`stabilizer.tolerance: invalid type ...`).
pub fn with_sets<T>(value: &T, sets: &[(String, serde_yaml_ng::Value)]) -> Result<T, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut doc = serde_yaml_ng::to_value(value).map_err(|e| e.to_string())?;
    for (path, v) in sets {
        set_field(&mut doc, path, v.clone()).map_err(|m| format!("{path}: {m}"))?;
    }
    // Through text, as `parse_with_sets` reads a file: YAML's scalars are typed by what
    // reads them.
    let edited = serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?;
    serde_yaml_ng::from_str(&edited).map_err(|e| {
        let msg = e.to_string();
        let (field, message) = path_and_message(crate::error::without_place(&msg));
        match field {
            Some(f) => format!("{f}: {message}"),
            None => message.to_string(),
        }
    })
}

/// Reads the `--set FIELD=VALUE` arguments, in order.
pub fn parse_sets(args: &[String]) -> Result<Vec<(String, serde_yaml_ng::Value)>, InputError> {
    args.iter().map(|kv| parse_set(kv)).collect()
}

/// Reads one `--set FIELD=VALUE`: the field's dotted path and its value as YAML.
fn parse_set(arg: &str) -> Result<(String, serde_yaml_ng::Value), InputError> {
    field_assignment(arg, "sla.ttft_ms=500", "deployment.interval_s")
        .map_err(|m| InputError::Usage(format!("--set {arg:?}: {m}")))
}

/// One `FIELD=VALUE`: the field's dotted path and its value read as YAML. The examples
/// name a field where this one is read (an assignment, and a dotted path).
pub fn field_assignment(
    arg: &str,
    example: &str,
    dotted_example: &str,
) -> Result<(String, serde_yaml_ng::Value), String> {
    let (path, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected FIELD=VALUE, as in {example}"))?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!(
            "the field is a dotted path, as in {dotted_example}"
        ));
    }
    let value = serde_yaml_ng::from_str(value).map_err(|e| e.to_string())?;
    Ok((path.to_string(), value))
}

/// Sets the field at a dotted path, making the mappings on the way; a field of a scalar
/// (`sla.ttft_ms.x`) is an error. Unknown fields are left for the scenario's own checks,
/// which name them.
fn set_field(
    doc: &mut serde_yaml_ng::Value,
    path: &str,
    value: serde_yaml_ng::Value,
) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let mut at = doc;
    let mut walked = Vec::new();
    for key in path.split('.') {
        if at.is_null() {
            *at = Value::Mapping(Default::default());
        }
        let Value::Mapping(map) = at else {
            return Err(format!("{} is not a mapping", walked.join(".")));
        };
        walked.push(key);
        at = map
            .entry(Value::String(key.to_string()))
            .or_insert(Value::Null);
    }
    *at = value;
    Ok(())
}

/// The most decision intervals a run may span: a year of minutes, twelve days of seconds.
/// Each is a decision and a timeline row; a run of more is a mistake (a shift between trace
/// copies in the millions of seconds), and would run for hours before saying so.
const MAX_INTERVALS: f64 = 1_000_000.0;

fn within_intervals(
    origin: &str,
    field: &str,
    duration_s: f64,
    interval_s: f64,
) -> Result<(), InputError> {
    // A run shorter than one interval has no decision in it: every policy would run as it
    // starts, and a comparison of them would compare nothing.
    if duration_s < interval_s {
        return Err(field_err(
            origin,
            field,
            format!(
                "the run ({duration_s} s) is shorter than one decision interval \
                 (deployment.interval_s, {interval_s} s): no policy would decide"
            ),
        ));
    }
    let n = (duration_s / interval_s).ceil();
    if n <= MAX_INTERVALS {
        return Ok(());
    }
    Err(field_err(
        origin,
        field,
        format!(
            "the run would span {} intervals of {interval_s} s ({} s); at most \
             {MAX_INTERVALS:.0}: shorten it or lengthen deployment.interval_s",
            crate::planner::shown(n),
            crate::planner::shown(duration_s.round())
        ),
    ))
}

/// The fewest prompt tokens a prefill iteration may take (engines take hundreds to thousands).
const MIN_PREFILL_TOKEN_BUDGET: u32 = 64;
/// The shortest gauge scrape interval, seconds (Prometheus scrapes every few seconds).
const MIN_SCRAPE_S: f64 = 0.01;

/// The outages as spans, each checked: `0 <= from_s < to_s`, both finite.
fn signal_outages(origin: &str, outages: &[SignalOutage]) -> Result<Vec<(f64, f64)>, InputError> {
    outages
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if o.from_s.is_finite() && o.to_s.is_finite() && o.from_s >= 0.0 && o.to_s > o.from_s {
                Ok((o.from_s, o.to_s))
            } else {
                Err(field_err(
                    origin,
                    &format!("deployment.signal_outages[{i}]"),
                    format!(
                        "needs 0 <= from_s < to_s, both finite (got from_s {}, to_s {})",
                        o.from_s, o.to_s
                    ),
                ))
            }
        })
        .collect()
}

fn positive(origin: &str, field: &str, v: f64) -> Result<(), InputError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(field_err(
            origin,
            field,
            format!("must be a number > 0 (got {v})"),
        ))
    }
}

/// The longest span of time a setting may name, seconds: a day. Control loops decide every
/// seconds to minutes and replicas start within minutes; a longer value is a unit mixed up,
/// which the simulator would step through for hours, or a timer could not hold.
const MAX_SETTING_S: f64 = crate::planner::ceilings::INTERVAL_S;

/// Checks that `v` is a time in seconds above 0 (or from 0, where `zero_ok`) and at most a
/// day; the error is the message, for the caller to name its field.
pub fn seconds_within_a_day(v: f64, zero_ok: bool) -> Result<(), String> {
    let from = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if v.is_finite() && from && v <= MAX_SETTING_S {
        return Ok(());
    }
    let least = if zero_ok { ">= 0" } else { "> 0" };
    Err(format!(
        "must be {least} and at most {MAX_SETTING_S} s (a day) (got {})",
        crate::planner::shown(v)
    ))
}

/// What every user of a deployment description needs checked: the SLA, the limits, the
/// planner's settings, and the profile, loaded.
pub struct Checked {
    pub limits: Limits,
    pub startup_s: f64,
    /// The cold start the policies are told: `deployment.planner_startup_s`, else `startup_s`.
    pub told_startup_s: f64,
    pub profile: Profile,
}

fn check_common(
    sla: &Sla,
    d: &DeploymentSpec,
    planner: &PlannerConfig,
    profile_spec: &str,
    origin: &str,
    base: &Path,
    ov: &Overrides,
) -> Result<Checked, InputError> {
    positive(origin, "sla.ttft_ms", sla.ttft_ms)?;
    positive(origin, "sla.itl_ms", sla.itl_ms)?;
    planner
        .validate()
        .map_err(|m| part_err(origin, "planner", &m))?;
    let startup_s = ov.startup_s.unwrap_or(d.startup_s);
    let told_startup_s = d.planner_startup_s.unwrap_or(startup_s);
    for (field, v, zero_ok) in [
        ("deployment.interval_s", d.interval_s, false),
        ("deployment.scrape_s", d.scrape_s, false),
        ("deployment.startup_s", startup_s, true),
        ("deployment.planner_startup_s", told_startup_s, true),
    ] {
        seconds_within_a_day(v, zero_ok).map_err(|m| field_err(origin, field, m))?;
    }
    let mut limits = Limits::build(
        ov.gpu_budget.unwrap_or(d.gpu_budget),
        (d.gpus_per_prefill_engine, d.gpus_per_decode_engine),
        (d.min_prefill, d.min_decode),
        (d.max_prefill, d.max_decode),
    );
    let checked = if d.mode == Mode::Aggregated {
        // No prefill role: the workers are the decode count, and the budget is theirs. The
        // prefill fields are not read (their defaults would hold a phantom engine).
        limits.min_prefill = 0;
        limits.max_prefill = 0;
        limits.validate_aggregated()
    } else {
        limits.validate()
    };
    checked.map_err(|(field, m)| field_err(origin, &format!("deployment.{field}"), m))?;
    // The simulator steps each prefill iteration and samples each gauge scrape: an engine
    // of a few tokens per iteration or a scrape every microsecond is no deployment's, and
    // would take hours to simulate.
    if let Some(n) = d
        .prefill_token_budget
        .filter(|&n| n < MIN_PREFILL_TOKEN_BUDGET)
    {
        return Err(field_err(
            origin,
            "deployment.prefill_token_budget",
            format!("must be at least {MIN_PREFILL_TOKEN_BUDGET} tokens (got {n})"),
        ));
    }
    if d.scrape_s < MIN_SCRAPE_S {
        return Err(field_err(
            origin,
            "deployment.scrape_s",
            format!("must be at least {MIN_SCRAPE_S} s (got {})", d.scrape_s),
        ));
    }
    for (f, v) in [
        ("deployment.kv_transfer.base_ms", d.kv_transfer.base_ms),
        (
            "deployment.kv_transfer.per_1k_tokens_ms",
            d.kv_transfer.per_1k_tokens_ms,
        ),
    ] {
        let most = crate::planner::ceilings::LATENCY_MS;
        if !(v.is_finite() && v >= 0.0 && v <= most) {
            return Err(field_err(
                origin,
                f,
                format!(
                    "must be >= 0 and at most {most} ms (a day) (got {})",
                    crate::planner::shown(v)
                ),
            ));
        }
    }

    let profile = resolve_profile(ov.profile.as_deref(), profile_spec, base)?;

    Ok(Checked {
        limits,
        startup_s,
        told_startup_s,
        profile,
    })
}

/// The settings `sla-planner decide` runs with, from `--config FILE`: the profile, SLA,
/// deployment and planner sections of a scenario, without a workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideFile {
    #[serde(default = "default_profile")]
    pub profile: String,
    pub sla: Sla,
    pub deployment: DeploymentSpec,
    #[serde(default)]
    pub planner: PlannerConfig,
}

/// Where `decide` takes its settings from: a scenario (by name or file; `None` for the
/// default), or a config file's text, already read, and its path.
#[derive(Debug, Clone, Copy)]
pub enum DecideSource<'a> {
    Scenario(Option<&'a str>),
    Config { text: &'a str, path: &'a Path },
}

/// The planner's context and settings for `decide`, from a scenario or a config file.
pub fn decide_setup(
    source: DecideSource,
    sets: &[(String, serde_yaml_ng::Value)],
) -> Result<(PolicyContext, PlannerConfig), InputError> {
    let setup = decide_setup_from(source, sets);
    match source {
        DecideSource::Config { .. } => setup.map_err(InputError::in_config),
        DecideSource::Scenario(_) => setup,
    }
}

fn decide_setup_from(
    source: DecideSource,
    sets: &[(String, serde_yaml_ng::Value)],
) -> Result<(PolicyContext, PlannerConfig), InputError> {
    let (file, origin, base) = match source {
        DecideSource::Config { text, path } => {
            let origin = path.display().to_string();
            let f: DecideFile = parse_with_sets(text, &origin, sets)?;
            (
                f,
                origin,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        }
        DecideSource::Scenario(name) => {
            let (text, origin, base) = find(name.unwrap_or("sin-5-45"))?;
            let s: ScenarioFile = parse_with_sets(&text, &origin, sets)?;
            (
                DecideFile {
                    // What the scenario's planner is told, as `simulate` tells it.
                    profile: s.planner_profile.unwrap_or(s.profile),
                    sla: s.sla,
                    deployment: s.deployment,
                    planner: s.planner,
                },
                origin,
                base,
            )
        }
    };
    let checked = check_common(
        &file.sla,
        &file.deployment,
        &file.planner,
        &file.profile,
        &origin,
        &base,
        &Overrides::default(),
    )?;
    let ctx = PolicyContext::new(
        &checked.profile,
        file.sla,
        checked.limits,
        file.deployment.interval_s,
        checked.told_startup_s,
    );
    let mut planner = file.planner;
    if file.deployment.mode == Mode::Aggregated {
        planner.mode = Mode::Aggregated;
    }
    Ok((ctx, planner))
}

/// A YAML error as an `InputError` naming the file and the field.
pub(crate) fn yaml_err(origin: &str, e: serde_yaml_ng::Error) -> InputError {
    // The message already ends with the line and column.
    let msg = e.to_string();
    let (field, message) = path_and_message(&msg);
    field_err(origin, field.unwrap_or("-"), message)
}

/// serde reports the failing path first, as `a.b.c: message`; `None` where the message is
/// about the whole document.
fn path_and_message(msg: &str) -> (Option<&str>, &str) {
    match msg.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (Some(f), m),
        _ => (None, msg),
    }
}

pub fn prepare(
    mut file: ScenarioFile,
    origin: &str,
    base: &Path,
    ov: &Overrides,
) -> Result<Scenario, InputError> {
    let Checked {
        limits,
        startup_s,
        told_startup_s,
        profile,
    } = check_common(
        &file.sla,
        &file.deployment,
        &file.planner,
        &file.profile,
        origin,
        base,
        ov,
    )?;
    // The planner sizes what is simulated: workers for an aggregated deployment, prefill
    // and decode engines for a disaggregated one. Planning workers for prefill and decode
    // pools would leave the prefill pool at its minimum.
    let aggregated = file.deployment.mode == Mode::Aggregated;
    if file.planner.mode == Mode::Aggregated && !aggregated {
        return Err(field_err(
            origin,
            "planner.mode",
            "aggregated, but the simulated deployment is disaggregated (prefill and decode \
             pools); set deployment.mode: aggregated to simulate workers that do both",
        ));
    }
    file.planner.mode = file.deployment.mode;
    // The planner reads its deployment's percentiles as they are made, as the live loop
    // reads Prometheus's, unless the scenario tells it otherwise.
    if file.planner.latency_percentiles.is_none() {
        file.planner.latency_percentiles = Some(file.deployment.latency_percentiles.clone());
    }
    let d = &file.deployment;

    let mut notes = Vec::new();
    let seed = ov.seed.unwrap_or(file.seed);
    let (requests, workload_source, blocks) =
        requests_of(&file, origin, base, ov, seed, &mut notes)?;
    let prefix_cache = prefix_cache_of(d, &requests, blocks, origin)?;
    let span = requests.last().map(|r| r.arrival_s).unwrap_or(0.0);
    let duration_s = match (&file.workload.synthetic, file.duration_s) {
        (_, Some(v)) => {
            positive(origin, "duration_s", v)?;
            v
        }
        (Some(s), None) if ov.trace.is_none() => s.duration_s,
        _ => (span / d.interval_s).ceil().max(1.0) * d.interval_s,
    };
    let length_from = match (&ov.trace, file.duration_s, &file.workload.trace) {
        (_, Some(_), _) => "duration_s",
        (Some(_), None, _) => "--trace",
        (None, None, Some(_)) => "workload.trace",
        (None, None, None) => "workload.synthetic.duration_s",
    };
    within_intervals(origin, length_from, duration_s, d.interval_s)?;
    let explicit = explicit_initial(d, origin)?;
    let initial = explicit.unwrap_or((limits.min_prefill, limits.min_decode));
    let mut sim = SimConfig {
        sla: file.sla,
        limits,
        interval_s: d.interval_s,
        startup_s,
        told_startup_s,
        scrape_s: d.scrape_s,
        prefill_token_budget: d
            .prefill_token_budget
            .unwrap_or(profile.max_context_tokens.ceil() as u32),
        kv_transfer: d.kv_transfer,
        max_decode_batch: d.max_decode_batch,
        initial,
        duration_s,
        max_context_tokens: profile.max_context_tokens,
        aggregated,
        withhold: d.withhold.clone(),
        signal_outages: signal_outages(origin, &d.signal_outages)?,
        prefix_cache,
        router: d.router,
        itl_observed: d.itl_observed,
        latency_histograms: d.latency_percentiles.histograms().map_err(|(field, e)| {
            field_err(
                origin,
                &format!("deployment.latency_percentiles.{field}"),
                e,
            )
        })?,
    };
    if explicit.is_none() {
        // Sized for the first interval + cold start, as the oracle starts: the capacity a
        // running deployment would need before any autoscaler could change it.
        let first = crate::sim::oracle::OraclePolicy::plan_prefix(&sim, &profile, &requests, 0.99);
        sim.initial = first;
    }
    let too_long = requests
        .iter()
        .filter(|r| (r.isl as f64 + r.osl as f64) > profile.max_context_tokens)
        .count();
    if too_long > 0 {
        notes.push(format!(
            "{too_long} of {} requests exceed the profile's context of {} tokens; they are rejected and counted",
            requests.len(),
            profile.max_context_tokens
        ));
    }
    let planner_profile = match (&ov.planner_profile, &file.planner_profile) {
        (None, None) => profile.clone(),
        (over, spec) => resolve_profile(over.as_deref(), spec.as_deref().unwrap_or(""), base)?,
    };
    if ov.planner_profile.is_some() || file.planner_profile.is_some() {
        notes.push(format!(
            "the engines run profile {}; the planner, dynamo and threshold policies are told {} (the oracle and static:best search with the engines')",
            profile.name, planner_profile.name
        ));
    }
    if sim.told_startup_s != sim.startup_s {
        notes.push(format!(
            "the engines take {:.0}s to start; the planner, dynamo and threshold policies are told {:.0}s (deployment.planner_startup_s; the oracle knows)",
            sim.startup_s, sim.told_startup_s
        ));
    }
    if !sim.withhold.is_empty() {
        let names: Vec<String> = sim
            .withhold
            .iter()
            .map(|s| {
                serde_yaml_ng::to_string(s)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        notes.push(format!(
            "the policies are not shown {} (deployment.withhold); the timeline keeps them",
            names.join(", ")
        ));
    }
    let percentiles = &file.deployment.latency_percentiles;
    let told = file
        .planner
        .latency_percentiles
        .as_ref()
        .unwrap_or(percentiles);
    if *percentiles != LatencyPercentiles::Exact || told != percentiles {
        let how = |p: &LatencyPercentiles| match p {
            LatencyPercentiles::Exact => "exact".to_string(),
            LatencyPercentiles::Dynamo => "through Dynamo's default histogram buckets".to_string(),
            LatencyPercentiles::Buckets { ttft_s, itl_s } => format!(
                "through histogram buckets of the scenario's ({} TTFT, {} ITL)",
                ttft_s.len(),
                itl_s.len()
            ),
        };
        notes.push(format!(
            "TTFT and ITL percentiles are read {} (deployment.latency_percentiles); the planner takes them as read {}",
            how(percentiles),
            how(told)
        ));
    }
    if file.deployment.itl_observed == ItlObserved::PerToken {
        notes.push(
            "ITL is observed once per token gap, as Dynamo's frontend observes it (deployment.itl_observed); the planner takes its percentiles as the requests' (docs/evaluation.md, \"ITL observed per token gap\")".to_string(),
        );
    }
    for &(from, to) in &sim.signal_outages {
        notes.push(format!(
            "the policies are shown no signal for the decisions after {from:.0}s up to {to:.0}s (deployment.signal_outages)"
        ));
    }
    notes.extend(engine_size_notes(
        &planner_profile,
        file.deployment.gpus_per_prefill_engine,
        file.deployment.gpus_per_decode_engine,
        aggregated,
    ));
    Ok(Scenario {
        file,
        origin: origin.to_string(),
        profile,
        planner_profile,
        requests,
        sim,
        notes,
        workload_source,
    })
}

/// The requests to replay, validated and transformed, and where they came from: the
/// `--trace` given on the command line, else the scenario's own trace or synthetic load.
/// Fails when there are none.
fn requests_of(
    file: &ScenarioFile,
    origin: &str,
    base: &Path,
    ov: &Overrides,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<(Vec<Request>, String, Vec<u64>), InputError> {
    let workload = match (&file.workload.synthetic, &file.workload.trace) {
        (Some(s), None) => Workload::Synthetic(s),
        (None, Some(t)) => Workload::Trace(t),
        _ => {
            return Err(field_err(
                origin,
                "workload",
                "needs exactly one of synthetic and trace",
            ))
        }
    };
    let (requests, source, blocks) = match (&ov.trace, &workload) {
        (Some(path), _) => {
            ov.transform.validate().map_err(InputError::Usage)?;
            let trace = read_trace(
                path,
                &TraceReadOptions {
                    format: ov.trace_format,
                    skip_bad_lines: ov.skip_bad_lines,
                },
            )?;
            trace_notes(&trace, &ov.transform, notes);
            let requests = ov.transform.apply(trace.requests, seed);
            if requests.is_empty() {
                let window = ov.transform.window.map_or(String::new(), |w| {
                    format!(" within --window {}:{}", w.start_s, w.end_s)
                });
                return Err(InputError::Usage(format!(
                    "--trace {}: no requests{window}",
                    path.display()
                )));
            }
            (requests, format!("trace {}", path.display()), trace.blocks)
        }
        (None, Workload::Trace(t)) => {
            t.transform
                .validate()
                .map_err(|m| part_err(origin, "workload.trace.transform", &m))?;
            let path = base.join(&t.file);
            if !path.exists() {
                return Err(field_err(
                    origin,
                    "workload.trace.file",
                    format!("{} does not exist (paths resolve from the scenario's directory; pass --trace FILE to use another)", path.display()),
                ));
            }
            let trace = read_trace(
                &path,
                &TraceReadOptions {
                    format: ov.trace_format.or(t.format),
                    skip_bad_lines: t.skip_bad_lines || ov.skip_bad_lines,
                },
            )?;
            trace_notes(&trace, &t.transform, notes);
            let requests = t.transform.apply(trace.requests, seed);
            if let (true, Some(w)) = (requests.is_empty(), t.transform.window) {
                return Err(field_err(
                    origin,
                    "workload.trace.transform.window",
                    format!(
                        "{} holds no requests from {} s to {} s",
                        path.display(),
                        w.start_s,
                        w.end_s
                    ),
                ));
            }
            (requests, format!("trace {}", path.display()), trace.blocks)
        }
        (None, Workload::Synthetic(s)) => {
            s.validate()
                .map_err(|m| part_err(origin, "workload.synthetic", &m))?;
            // Before generating: a run of years would be out of memory before it was refused.
            within_intervals(
                origin,
                "workload.synthetic.duration_s",
                s.duration_s,
                file.deployment.interval_s,
            )?;
            s.check_size()
                .map_err(|m| part_err(origin, "workload.synthetic", &m))?;
            (
                s.generate(seed),
                format!("synthetic, seed {seed}"),
                Vec::new(),
            )
        }
    };
    if requests.is_empty() {
        let field = match workload {
            Workload::Synthetic(_) => "workload.synthetic",
            Workload::Trace(_) => "workload.trace",
        };
        return Err(field_err(origin, field, "holds no requests"));
    }
    Ok((requests, source, blocks))
}

/// The prefix caching a scenario asks for, checked against its deployment and workload.
fn prefix_cache_of(
    d: &DeploymentSpec,
    requests: &[Request],
    blocks: Vec<u64>,
    origin: &str,
) -> Result<Option<PrefixCache>, InputError> {
    let Some(spec) = d.prefix_cache else {
        return Ok(None);
    };
    let field = "deployment.prefix_cache";
    if !(1..=1 << 20).contains(&spec.block_tokens) {
        return Err(field_err(
            origin,
            &format!("{field}.block_tokens"),
            format!("must be 1 to 1048576 tokens (got {})", spec.block_tokens),
        ));
    }
    if !requests.iter().any(|r| r.prefix.len > 0) {
        return Err(field_err(
            origin,
            field,
            "the workload names no prompt's prefix blocks: prefix caching needs a trace that \
             does (Mooncake's hash_ids)",
        ));
    }
    Ok(Some(PrefixCache {
        block_tokens: spec.block_tokens,
        blocks: blocks.into(),
    }))
}

/// The replicas the scenario starts with, when it names them; `None` for `auto` (or
/// nothing), which `prepare` sizes for the first interval and cold start.
fn explicit_initial(d: &DeploymentSpec, origin: &str) -> Result<Option<(u32, u32)>, InputError> {
    match &d.initial {
        Some(InitialReplicas::Counts { prefill, decode }) => Ok(Some((*prefill, *decode))),
        Some(InitialReplicas::Named(n)) if n == "auto" => Ok(None),
        None => Ok(None),
        Some(InitialReplicas::Named(n)) => Err(field_err(
            origin,
            "deployment.initial",
            format!("is {n:?}; expected auto or {{prefill: P, decode: D}}"),
        )),
    }
}

/// Where the deployment gives its engines another number of GPUs than the profile was
/// measured on (`Profile::engine_gpus_differ`), a note that says what the run then shows.
fn engine_size_notes(
    profile: &Profile,
    prefill_gpus: u32,
    decode_gpus: u32,
    aggregated: bool,
) -> Vec<String> {
    profile
        .engine_gpus_differ((!aggregated).then_some(prefill_gpus), decode_gpus)
        .into_iter()
        .map(|(role, measured, given)| {
            format!(
                "the profile's {role} engines were measured on {measured} GPU(s) each (its throughput per GPU against its times), the deployment gives them {given}: the simulated engines run at the profile's speed and cost {given} GPU(s); Dynamo's formula, which multiplies the throughput per GPU by the engine's GPUs, sizes for engines {:.2}x as fast",
                f64::from(given) / measured
            )
        })
        .collect()
}

enum Workload<'a> {
    Synthetic(&'a SyntheticSpec),
    Trace(&'a TraceSpec),
}

fn trace_notes(t: &crate::workload::Trace, transform: &TraceTransform, notes: &mut Vec<String>) {
    // Many arrivals at one instant are more often timestamps rounded by the trace's
    // publisher than users acting together.
    let shared = t
        .requests
        .windows(2)
        .filter(|w| w[0].arrival_s == w[1].arrival_s)
        .count();
    if transform.spread_s.is_none_or(|q| q <= 0.0) && shared * 4 > t.requests.len() {
        notes.push(format!(
            "{shared} of {} arrivals share their timestamp with the one before; if the trace's times were rounded, spread_s (--spread-s) places them within the rounding",
            t.requests.len()
        ));
    }
    if let Some(fields) = &t.plain_fields {
        notes.push(format!("plain trace: {fields}"));
    }
    if t.bad_lines_skipped > 0 {
        notes.push(format!(
            "{} malformed trace lines skipped ({})",
            t.bad_lines_skipped,
            t.bad_line_examples.join("; ")
        ));
    }
    if t.failed_rows_skipped > 0 {
        notes.push(format!(
            "{} rows marked failed in the trace (0 response tokens) not replayed",
            t.failed_rows_skipped
        ));
    }
    if t.zero_output_requests > 0 {
        notes.push(format!(
            "{} requests with 0 output tokens replayed as 1-token outputs",
            t.zero_output_requests
        ));
    }
}
