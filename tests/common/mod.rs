//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use sla_planner::planner::{Limits, Sla};
use sla_planner::profile::Profile;
use sla_planner::sim::{KvTransfer, SimConfig};

/// The shared reference data beside the project; CI always has it there.
pub fn shared_data() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        p.is_dir(),
        "the reference data is expected at {} (see README)",
        p.display()
    );
    p
}

pub fn h200_dir() -> PathBuf {
    shared_data().join("profiles/h200_llama-3.1-8b-fp8_tp1p_tp1d")
}

pub fn sim_config(profile: &Profile, prefill: u32, decode: u32, duration_s: f64) -> SimConfig {
    SimConfig {
        sla: Sla {
            ttft_ms: 200.0,
            itl_ms: 10.0,
        },
        limits: Limits {
            min_prefill: 1,
            max_prefill: 64,
            min_decode: 1,
            max_decode: 64,
            gpu_budget: 128,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        },
        interval_s: 60.0,
        startup_s: 60.0,
        scrape_s: 15.0,
        prefill_token_budget: profile.max_context_tokens as u32,
        kv_transfer: KvTransfer::default(),
        max_decode_batch: None,
        initial: (prefill, decode),
        duration_s,
        max_context_tokens: profile.max_context_tokens,
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sla-planner")
}
