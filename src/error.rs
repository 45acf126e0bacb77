//! Errors that are the user's to fix: bad files, bad flags. They exit with code 2.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("profile {file}: {}{message}", named("array", array, " "))]
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
    #[error("scenario {file}: {}{message}", named("field", field, ": "))]
    Scenario {
        file: String,
        field: String,
        message: String,
    },
    /// A run or `decide` config: named as one, checked as a scenario's sections are.
    #[error("config {file}: {}{message}", named("field", field, ": "))]
    Config {
        file: String,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Usage(String),
}

/// `kind name` and `sep` before a message about one array or field; nothing where the
/// message is about the whole file (`name` is "-").
fn named(kind: &str, name: &str, sep: &str) -> String {
    if name == "-" {
        String::new()
    } else {
        format!("{kind} {name}{sep}")
    }
}

/// A reader's message without the place it appends (" at line L column C"), for text that
/// was not the user's as written: one line of a trace read alone, a file edited by `--set`.
pub(crate) fn without_place(msg: &str) -> &str {
    match msg.rsplit_once(" at line ") {
        Some((m, at)) if at.contains(" column ") => m,
        _ => msg,
    }
}

impl InputError {
    /// The same error, about a config file: its sections are a scenario's, checked by the
    /// same code, but the user wrote a config.
    pub fn in_config(self) -> InputError {
        match self {
            InputError::Scenario {
                file,
                field,
                message,
            } => InputError::Config {
                file,
                field,
                message,
            },
            e => e,
        }
    }

    pub fn io(path: &Path, e: std::io::Error) -> InputError {
        InputError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// UTF-8 byte order mark: editors and spreadsheet tools on Windows write one at the start
/// of a text file.
pub const BYTE_ORDER_MARK: &str = "\u{feff}";

/// A text input file (scenario, profile, config), without a leading byte order mark.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| InputError::io(path, e))?;
    Ok(match text.strip_prefix(BYTE_ORDER_MARK) {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_before_a_scenario_or_profile_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile.json");
        let text = crate::profile::to_own_json(&crate::profile::Profile::embedded_default());
        std::fs::write(&profile, format!("{BYTE_ORDER_MARK}{text}")).unwrap();
        assert_eq!(read_text(&profile).unwrap(), text);
        assert!(crate::profile::load_profile(&profile).is_ok());
        let scenario = dir.path().join("s.yaml");
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/sin-5-45.yaml"),
        )
        .unwrap();
        std::fs::write(&scenario, format!("{BYTE_ORDER_MARK}{yaml}")).unwrap();
        assert_eq!(read_text(&scenario).unwrap(), yaml);
    }
}
