//! `sla-planner emulate`: a simulated Dynamo deployment in real time, for pointing a planner
//! at with no cluster. A test double, named as one: it serves Dynamo-named Prometheus
//! metrics (`/metrics`, real histograms) from the simulator, and the subset of the
//! Kubernetes API the planner uses (DGD read and patch, DGDSA `scale` get and patch, Leases,
//! Events) with Kubernetes-shaped errors; replica counts patched into it change the
//! simulated deployment. Faults can be injected by flag.

mod k8s;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::profile::Profile;
use crate::sim::{Deployment, SimConfig};
use crate::workload::Request;

/// Faults the emulated API server injects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Share of API calls answered 500.
    pub error_rate: f64,
    /// Share of writes answered 409 Conflict.
    pub conflict_rate: f64,
    /// Added to every API call.
    pub latency_ms: u64,
    /// Scale writes answered 403 Forbidden.
    pub forbid_scale: bool,
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub namespace: String,
    pub dgd: String,
    pub model: String,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    pub faults: Faults,
}

/// One write of replica counts, as the emulator saw it (for tests and the operator).
#[derive(Debug, Clone, Serialize)]
pub struct ScaleWrite {
    pub wall_s: f64,
    pub service: String,
    pub replicas: u32,
    /// Through the adapter's scale subresource, or the DGD patch fallback.
    pub via: &'static str,
}

/// Shared state of the emulator.
pub struct State {
    pub cfg: EmulatorConfig,
    pub deployment: Mutex<Deployment>,
    pub metrics: metrics::DynamoMetrics,
    pub k8s: Mutex<k8s::ApiState>,
    pub writes: Mutex<Vec<ScaleWrite>>,
    /// Every API call seen, as `(method, path)`, for checking RBAC against what is used.
    pub calls: Mutex<std::collections::BTreeSet<(String, String)>>,
    pub started: Instant,
    /// One pool of workers instead of prefill and decode services.
    pub aggregated: bool,
}

impl State {
    pub fn services(&self) -> &'static [(&'static str, Option<&'static str>)] {
        services(self.aggregated)
    }

    pub fn wall_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

pub const PREFILL_SERVICE: &str = "VllmPrefillWorker";
pub const DECODE_SERVICE: &str = "VllmDecodeWorker";
/// An aggregated graph's one worker service, named as in Dynamo's current examples.
pub const WORKER_SERVICE: &str = "worker";

/// The emulated graph's scaled services, each with its `subComponentType`: a prefill and a
/// decode service, or (an aggregated scenario) one worker service with none.
pub fn services(aggregated: bool) -> &'static [(&'static str, Option<&'static str>)] {
    if aggregated {
        &[(WORKER_SERVICE, None)]
    } else {
        &[
            (PREFILL_SERVICE, Some("prefill")),
            (DECODE_SERVICE, Some("decode")),
        ]
    }
}

/// Builds the emulator's state for a workload.
pub fn state(
    cfg: EmulatorConfig,
    sim: SimConfig,
    profile: &Profile,
    requests: Vec<Request>,
) -> Arc<State> {
    let mut deployment = Deployment::new(sim.clone(), profile, requests, sim.initial);
    deployment.record();
    let (p, d) = deployment.target();
    // Every service but the prefill one is sized as decode: decode engines or workers.
    let initial: Vec<(&str, u32)> = services(sim.aggregated)
        .iter()
        .map(|&(s, _)| (s, if s == PREFILL_SERVICE { p } else { d }))
        .collect();
    Arc::new(State {
        metrics: metrics::DynamoMetrics::new(&cfg.model, &cfg.namespace),
        k8s: Mutex::new(k8s::ApiState::new(&initial)),
        aggregated: sim.aggregated,
        writes: Mutex::new(Vec::new()),
        calls: Mutex::new(std::collections::BTreeSet::new()),
        deployment: Mutex::new(deployment),
        started: Instant::now(),
        cfg,
    })
}

/// Advances the simulation to wall-clock time, turning its records into metrics.
pub fn tick(state: &State) {
    let t = state.wall_s() * state.cfg.speed;
    let mut dep = state.deployment.lock().expect("emulator lock");
    dep.advance_to(t, None);
    let records = dep.take_records();
    let (kv_p, kv_d, _) = dep.gauges();
    state.metrics.update(
        &records,
        kv_p,
        kv_d,
        dep.in_flight(),
        dep.queued(),
        state.aggregated,
    );
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ticker = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                tick(&state);
            }
        })
    };
    let app = k8s::routes(state.clone()).merge(metrics::routes(state.clone()));
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    ticker.abort();
    res
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
