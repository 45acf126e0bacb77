//! Reading profiles from disk, in Dynamo's forms and the project's own.

use std::fs::File;
use std::path::Path;

use ndarray::Array1;
use ndarray_npy::NpzReader;
use serde::Deserialize;

use super::{DecodeProfile, PrefillProfile, Profile};
use crate::error::InputError;

const PREFILL_NPZ: &str = "selected_prefill_interpolation/raw_data.npz";
const DECODE_NPZ: &str = "selected_decode_interpolation/raw_data.npz";
const PREFILL_JSON: &str = "prefill_raw_data.json";
const DECODE_JSON: &str = "decode_raw_data.json";

/// Loads a profile from a Dynamo profiler directory or from a profile JSON file.
pub fn load_profile(path: &Path) -> Result<Profile, InputError> {
    if path.is_dir() {
        let profile = if path.join(PREFILL_NPZ).exists() || path.join(DECODE_NPZ).exists() {
            load_npz_dir(path)?
        } else if let Some((pf, df)) = find_dynamo_json(path) {
            load_dynamo_json(path, &pf, &df)?
        } else {
            return Err(InputError::Profile {
                file: path.display().to_string(),
                array: "-".into(),
                message: format!(
                    "is not a Dynamo profile directory: expected {PREFILL_NPZ} and {DECODE_NPZ} \
                     (or {PREFILL_JSON} and {DECODE_JSON})"
                ),
            });
        };
        profile.validate(&path.display().to_string())?;
        Ok(profile)
    } else if path.exists() {
        let text = crate::error::read_text(path)?;
        parse_own_json(&text, &path.display().to_string())
    } else {
        Err(InputError::Profile {
            file: path.display().to_string(),
            array: "-".into(),
            message: "does not exist".into(),
        })
    }
}

fn find_dynamo_json(dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    for (p, d) in [
        (dir.join(PREFILL_JSON), dir.join(DECODE_JSON)),
        (
            dir.join("selected_prefill_interpolation")
                .join(PREFILL_JSON),
            dir.join("selected_decode_interpolation").join(DECODE_JSON),
        ),
    ] {
        if p.exists() || d.exists() {
            return Some((p, d));
        }
    }
    None
}

/// The project's own format: one JSON object, documented in `docs/profile-format.md`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnProfileFile {
    format: String,
    name: String,
    source: String,
    max_context_tokens: f64,
    prefill: PrefillProfile,
    decode: DecodeProfile,
}

pub const OWN_FORMAT: &str = "sla-planner-profile/v1";

pub(super) fn parse_own_json(text: &str, origin: &str) -> Result<Profile, InputError> {
    let f: OwnProfileFile = serde_json::from_str(text).map_err(|e| InputError::Profile {
        file: origin.to_string(),
        array: "-".into(),
        message: format!("is not a valid {OWN_FORMAT} file: {e}"),
    })?;
    if f.format != OWN_FORMAT {
        return Err(InputError::Profile {
            file: origin.to_string(),
            array: "format".into(),
            message: format!("is {:?}; expected {OWN_FORMAT:?}", f.format),
        });
    }
    let p = Profile {
        name: f.name,
        source: f.source,
        max_context_tokens: f.max_context_tokens,
        prefill: f.prefill,
        decode: f.decode,
    };
    p.validate(origin)?;
    Ok(p)
}

/// Serialises a profile in the project's own format.
pub fn to_own_json(p: &Profile) -> String {
    let v = serde_json::json!({
        "format": OWN_FORMAT,
        "name": p.name,
        "source": p.source,
        "max_context_tokens": p.max_context_tokens,
        "prefill": p.prefill,
        "decode": p.decode,
    });
    serde_json::to_string_pretty(&v).expect("plain data serialises")
}

fn read_npz_array(
    reader: &mut NpzReader<File>,
    file: &str,
    name: &str,
) -> Result<Vec<f64>, InputError> {
    let err = |message: String| InputError::Profile {
        file: file.to_string(),
        array: name.to_string(),
        message,
    };
    let names = reader
        .names()
        .map_err(|e| err(format!("cannot list the archive: {e}")))?;
    if !names.iter().any(|n| n == name) {
        return Err(err(format!(
            "is missing (the archive holds: {})",
            names.join(", ")
        )));
    }
    // Dynamo writes float64 and int64 arrays; accept the other common numeric types too.
    if let Ok(a) = reader.by_name::<_, ndarray::Ix1>(name) {
        let a: Array1<f64> = a;
        return Ok(a.to_vec());
    }
    if let Ok(a) = reader.by_name::<_, ndarray::Ix1>(name) {
        let a: Array1<i64> = a;
        return Ok(a.iter().map(|&x| x as f64).collect());
    }
    if let Ok(a) = reader.by_name::<_, ndarray::Ix1>(name) {
        let a: Array1<f32> = a;
        return Ok(a.iter().map(|&x| x as f64).collect());
    }
    if let Ok(a) = reader.by_name::<_, ndarray::Ix1>(name) {
        let a: Array1<i32> = a;
        return Ok(a.iter().map(|&x| x as f64).collect());
    }
    // A 0-d array (a scalar such as max_kv_tokens).
    if let Ok(a) = reader.by_name::<_, ndarray::Ix0>(name) {
        let a: ndarray::Array0<i64> = a;
        return Ok(vec![a.into_scalar() as f64]);
    }
    if let Ok(a) = reader.by_name::<_, ndarray::Ix0>(name) {
        let a: ndarray::Array0<f64> = a;
        return Ok(vec![a.into_scalar()]);
    }
    Err(err("is not a one-dimensional float64/int64 array".into()))
}

fn open_npz(path: &Path) -> Result<NpzReader<File>, InputError> {
    let file = File::open(path).map_err(|e| InputError::Profile {
        file: path.display().to_string(),
        array: "-".into(),
        message: format!("cannot be opened: {e}"),
    })?;
    NpzReader::new(file).map_err(|e| InputError::Profile {
        file: path.display().to_string(),
        array: "-".into(),
        message: format!("is not a valid .npz archive: {e}"),
    })
}

fn scalar(v: Vec<f64>, file: &str, name: &str) -> Result<f64, InputError> {
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(InputError::Profile {
            file: file.to_string(),
            array: name.to_string(),
            message: format!("must hold exactly one value, holds {}", v.len()),
        }),
    }
}

fn load_npz_dir(dir: &Path) -> Result<Profile, InputError> {
    let pf = dir.join(PREFILL_NPZ);
    let df = dir.join(DECODE_NPZ);
    let (pn, dn) = (pf.display().to_string(), df.display().to_string());
    let mut pr = open_npz(&pf)?;
    let prefill = PrefillProfile {
        prefill_isl: read_npz_array(&mut pr, &pn, "prefill_isl")?,
        prefill_ttft: read_npz_array(&mut pr, &pn, "prefill_ttft")?,
        prefill_thpt_per_gpu: read_npz_array(&mut pr, &pn, "prefill_thpt_per_gpu")?,
    };
    let mut dr = open_npz(&df)?;
    let decode = DecodeProfile {
        x_kv_usage: read_npz_array(&mut dr, &dn, "x_kv_usage")?,
        y_context_length: read_npz_array(&mut dr, &dn, "y_context_length")?,
        z_itl: read_npz_array(&mut dr, &dn, "z_itl")?,
        z_thpt_per_gpu: read_npz_array(&mut dr, &dn, "z_thpt_per_gpu")?,
        max_kv_tokens: scalar(
            read_npz_array(&mut dr, &dn, "max_kv_tokens")?,
            &dn,
            "max_kv_tokens",
        )?,
    };
    Ok(from_dynamo_arrays(dir, prefill, decode))
}

fn from_dynamo_arrays(dir: &Path, prefill: PrefillProfile, decode: DecodeProfile) -> Profile {
    let max_isl = prefill.prefill_isl.iter().copied().fold(0.0, f64::max);
    Profile {
        name: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "profile".into()),
        source: format!("Dynamo profiler output at {}", dir.display()),
        // Dynamo's files do not state the context limit; the longest profiled ISL is the
        // longest input the profile speaks for.
        max_context_tokens: max_isl,
        prefill,
        decode,
    }
}

fn load_dynamo_json(dir: &Path, pf: &Path, df: &Path) -> Result<Profile, InputError> {
    let read = |p: &Path| -> Result<serde_json::Value, InputError> {
        let text = crate::error::read_text(p)?;
        serde_json::from_str(&text).map_err(|e| InputError::Profile {
            file: p.display().to_string(),
            array: "-".into(),
            message: format!("is not valid JSON: {e}"),
        })
    };
    let pv = read(pf)?;
    let dv = read(df)?;
    let arr = |v: &serde_json::Value, p: &Path, name: &str| -> Result<Vec<f64>, InputError> {
        let err = |m: &str| InputError::Profile {
            file: p.display().to_string(),
            array: name.into(),
            message: m.into(),
        };
        match v.get(name) {
            None => Err(err("is missing")),
            Some(serde_json::Value::Number(n)) => Ok(vec![n.as_f64().unwrap_or(f64::NAN)]),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| err("holds a value that is not a number"))
                })
                .collect(),
            Some(_) => Err(err("is neither a number nor an array of numbers")),
        }
    };
    let prefill = PrefillProfile {
        prefill_isl: arr(&pv, pf, "prefill_isl")?,
        prefill_ttft: arr(&pv, pf, "prefill_ttft")?,
        prefill_thpt_per_gpu: arr(&pv, pf, "prefill_thpt_per_gpu")?,
    };
    let decode = DecodeProfile {
        x_kv_usage: arr(&dv, df, "x_kv_usage")?,
        y_context_length: arr(&dv, df, "y_context_length")?,
        z_itl: arr(&dv, df, "z_itl")?,
        z_thpt_per_gpu: arr(&dv, df, "z_thpt_per_gpu")?,
        max_kv_tokens: scalar(
            arr(&dv, df, "max_kv_tokens")?,
            &df.display().to_string(),
            "max_kv_tokens",
        )?,
    };
    Ok(from_dynamo_arrays(dir, prefill, decode))
}
