//! Errors that are the user's to fix: bad files, bad flags. They exit with code 2.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("profile {file}: array {array} {message}")]
    Profile {
        file: String,
        array: String,
        message: String,
    },
    #[error("trace {file}, line {line}: {message}")]
    Trace {
        file: String,
        line: u64,
        message: String,
    },
    #[error("trace {file}: {message}")]
    TraceFile { file: String, message: String },
    #[error("scenario {file}: field {field}: {message}")]
    Scenario {
        file: String,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Usage(String),
}

impl InputError {
    pub fn io(path: &Path, e: std::io::Error) -> InputError {
        InputError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
