//! Profiles: what one engine can do, as measured by Dynamo's profiler.
//!
//! Three on-disk forms are read:
//! - Dynamo's profiler output directory (`selected_prefill_interpolation/raw_data.npz`
//!   and `selected_decode_interpolation/raw_data.npz`), as Dynamo writes it;
//! - Dynamo's JSON form of the same arrays (`prefill_raw_data.json`, `decode_raw_data.json`);
//! - the project's own single-file JSON format (`docs/profile-format.md`), in which the
//!   embedded default profile ships.
//!
//! Every form goes through [`Profile::validate`], which names the file and array at fault.

mod interp;
mod load;

pub use interp::{DecodeModel, ItlAtContext, ItlWalk, PrefillModel};
pub use load::{load_profile, to_own_json};

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// The embedded default: H200, Llama-3.1-8B-Instruct-FP8, TP1 prefill and decode.
pub const DEFAULT_PROFILE_JSON: &str =
    include_str!("../../profiles/h200_llama-3.1-8b-fp8_tp1.json");
pub const DEFAULT_PROFILE_NAME: &str = "h200_llama-3.1-8b-fp8_tp1";

/// One-request-at-a-time prefill measurements. Array names are Dynamo's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrefillProfile {
    /// Input sequence length, tokens.
    pub prefill_isl: Vec<f64>,
    /// Time to first token at that ISL, milliseconds.
    pub prefill_ttft: Vec<f64>,
    /// `isl / ttft * 1000 / gpus_per_engine`, tokens/s/GPU.
    pub prefill_thpt_per_gpu: Vec<f64>,
}

/// Scattered points of a context-length x concurrency decode sweep. Array names are Dynamo's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecodeProfile {
    /// `concurrency * context / max_kv_tokens`, fraction 0..1.
    pub x_kv_usage: Vec<f64>,
    /// `isl + osl/2` of the sweep point, tokens.
    pub y_context_length: Vec<f64>,
    /// Mean inter-token latency, milliseconds.
    pub z_itl: Vec<f64>,
    /// Output tokens/s/GPU.
    pub z_thpt_per_gpu: Vec<f64>,
    /// KV cache capacity of one engine, tokens.
    pub max_kv_tokens: f64,
}

/// A validated profile, with the interpolating models built from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// Where the figures come from.
    pub source: String,
    /// Longest request (input + output tokens) an engine accepts.
    pub max_context_tokens: f64,
    pub prefill: PrefillProfile,
    pub decode: DecodeProfile,
}

impl Profile {
    /// A short stable name for the figures (FNV-1a over their JSON form, in hex): what the
    /// model corrections were learned against, so a restart with another profile does not
    /// read back corrections of the old one.
    pub fn fingerprint(&self) -> String {
        let figures = serde_json::to_vec(&(self.max_context_tokens, &self.prefill, &self.decode))
            .expect("a profile serialises");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in figures {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The profile compiled into the binary.
    pub fn embedded_default() -> Profile {
        load::parse_own_json(DEFAULT_PROFILE_JSON, "<embedded default profile>")
            .expect("the embedded profile is validated by tests")
    }

    /// The same engine `prefill` times slower at prefill and `decode` times slower at
    /// decode (every TTFT and ITL multiplied, throughputs divided): what a stale profile,
    /// or one measured on other hardware, is off by. Factors must be finite and > 0.
    pub fn slowed(&self, prefill: f64, decode: f64) -> Profile {
        let mut p = self.clone();
        let scale = |v: &mut Vec<f64>, f: f64| v.iter_mut().for_each(|x| *x *= f);
        scale(&mut p.prefill.prefill_ttft, prefill);
        scale(&mut p.prefill.prefill_thpt_per_gpu, 1.0 / prefill);
        scale(&mut p.decode.z_itl, decode);
        scale(&mut p.decode.z_thpt_per_gpu, 1.0 / decode);
        if prefill != 1.0 || decode != 1.0 {
            p.name = format!("{}, prefill x{prefill}, decode x{decode}", p.name);
        }
        p
    }

    pub fn prefill_model(&self) -> PrefillModel {
        PrefillModel::new(&self.prefill)
    }

    pub fn decode_model(&self) -> DecodeModel {
        DecodeModel::new(&self.decode)
    }

    /// The roles whose engines the deployment gives another number of GPUs than the profile
    /// was measured on (read from its throughput per GPU against its times), as `(role,
    /// measured, given)`. Such engines run at the profile's speed until the latencies teach
    /// otherwise, and cost the GPUs given; Dynamo's formula, which multiplies the
    /// throughput per GPU by the GPUs given, sizes for engines of another speed.
    pub fn engine_gpus_differ(
        &self,
        prefill_gpus: Option<u32>,
        decode_gpus: u32,
    ) -> Vec<(&'static str, f64, u32)> {
        let prefill = prefill_gpus.map(|g| ("prefill", self.prefill_model().gpus_per_engine(), g));
        let decode = Some(("decode", self.decode_model().gpus_per_engine(), decode_gpus));
        [prefill, decode]
            .into_iter()
            .flatten()
            .filter(|&(_, measured, given)| measured != f64::from(given))
            .collect()
    }

    /// Checks every array: present, same lengths, finite, positive, enough points.
    pub fn validate(&self, origin: &str) -> Result<(), InputError> {
        let bad = |array: &str, msg: String| InputError::Profile {
            file: origin.to_string(),
            array: array.to_string(),
            message: msg,
        };
        let check = |array: &str, v: &[f64], min_len: usize, allow_zero: bool| {
            if v.len() < min_len {
                return Err(bad(
                    array,
                    format!("has {} points; at least {} are needed", v.len(), min_len),
                ));
            }
            for (i, x) in v.iter().enumerate() {
                if !x.is_finite() {
                    return Err(bad(array, format!("element {i} is not finite ({x})")));
                }
                if *x < 0.0 || (!allow_zero && *x == 0.0) {
                    return Err(bad(
                        array,
                        format!("element {i} is {x}; values must be positive"),
                    ));
                }
            }
            Ok(())
        };
        let p = &self.prefill;
        check("prefill_isl", &p.prefill_isl, 2, false)?;
        check("prefill_ttft", &p.prefill_ttft, 2, false)?;
        check("prefill_thpt_per_gpu", &p.prefill_thpt_per_gpu, 2, false)?;
        for (name, len) in [
            ("prefill_ttft", p.prefill_ttft.len()),
            ("prefill_thpt_per_gpu", p.prefill_thpt_per_gpu.len()),
        ] {
            if len != p.prefill_isl.len() {
                return Err(bad(
                    name,
                    format!(
                        "has {len} points but prefill_isl has {}",
                        p.prefill_isl.len()
                    ),
                ));
            }
        }
        let mut isl = p.prefill_isl.clone();
        isl.sort_by(f64::total_cmp);
        if isl.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("prefill_isl", "has repeated input lengths".into()));
        }
        let d = &self.decode;
        check("x_kv_usage", &d.x_kv_usage, 2, false)?;
        check("y_context_length", &d.y_context_length, 2, false)?;
        check("z_itl", &d.z_itl, 2, false)?;
        check("z_thpt_per_gpu", &d.z_thpt_per_gpu, 2, false)?;
        check("max_kv_tokens", &[d.max_kv_tokens], 1, false)?;
        for (name, len) in [
            ("y_context_length", d.y_context_length.len()),
            ("z_itl", d.z_itl.len()),
            ("z_thpt_per_gpu", d.z_thpt_per_gpu.len()),
        ] {
            if len != d.x_kv_usage.len() {
                return Err(bad(
                    name,
                    format!("has {len} points but x_kv_usage has {}", d.x_kv_usage.len()),
                ));
            }
        }
        if let Some(i) = d.x_kv_usage.iter().position(|&x| x > 1.5) {
            return Err(bad(
                "x_kv_usage",
                format!(
                    "element {i} is {}; it is a fraction of the KV cache (0..1)",
                    d.x_kv_usage[i]
                ),
            ));
        }
        if !DecodeModel::has_enough_rows(d) {
            return Err(bad(
                "y_context_length",
                "no context length has two or more decode points; the ITL surface cannot be built"
                    .into(),
            ));
        }
        if !(self.max_context_tokens.is_finite() && self.max_context_tokens > 0.0) {
            return Err(bad(
                "max_context_tokens",
                format!("is {}; it must be positive", self.max_context_tokens),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::Profile;

    #[test]
    fn a_profile_is_named_by_its_figures() {
        let p = Profile::embedded_default();
        assert_eq!(p.fingerprint(), Profile::embedded_default().fingerprint());
        assert_eq!(p.fingerprint().len(), 16);
        // Other figures, another name; a new description of the same figures, the same.
        assert_ne!(p.fingerprint(), p.slowed(2.0, 1.0).fingerprint());
        let renamed = Profile {
            name: "renamed".into(),
            ..p.clone()
        };
        assert_eq!(p.fingerprint(), renamed.fingerprint());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_given_other_gpu_counts_than_measured_are_named() {
        // The embedded profile was measured on one GPU per engine, both roles.
        let p = Profile::embedded_default();
        assert!(p.engine_gpus_differ(Some(1), 1).is_empty());
        assert_eq!(p.engine_gpus_differ(Some(2), 1), vec![("prefill", 1.0, 2)]);
        assert_eq!(p.engine_gpus_differ(None, 4), vec![("decode", 1.0, 4)]);
        // Slowed by `--slower-prefill`, its times and throughput move together.
        let slowed = p.slowed(1.5, 1.3);
        assert!(slowed.engine_gpus_differ(Some(1), 1).is_empty());
    }
}
