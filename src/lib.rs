//! sla-planner: an SLA-aware autoscaling planner for NVIDIA Dynamo inference graphs.
//! See `docs/ARCHITECTURE.md` for the map.

pub mod cli;
pub mod emulate;
pub mod error;
pub mod live;
pub mod metrics;
pub mod planner;
pub mod profile;
pub mod report;
pub mod scaler;
pub mod scenario;
pub mod sim;
pub mod workload;
