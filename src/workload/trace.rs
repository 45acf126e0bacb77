//! Readers for recorded request traces: Mooncake JSONL, Azure LLM 2023/2024 CSV, BurstGPT CSV,
//! and a plain CSV or JSONL whose header or keys name its fields and the time's unit.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::{PrefixBlocks, Request};
use crate::error::InputError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// `{"timestamp": ms, "input_length": N, "output_length": M, ...}` per line.
    Mooncake,
    /// `TIMESTAMP,ContextTokens,GeneratedTokens`, wall-clock timestamps (2023 naive, 2024 with offset).
    Azure,
    /// `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, seconds from start.
    Burstgpt,
    /// Any CSV, or JSON lines, with one arrival-time field whose name gives its unit
    /// (`arrival_s`, `timestamp_ms`, ...), one input-token and one output-token field
    /// (`PLAIN_*` below).
    Plain,
}

#[derive(Debug, Clone, Default)]
pub struct TraceReadOptions {
    /// Force a format instead of detecting it from the extension and header.
    pub format: Option<TraceFormat>,
    /// Skip malformed lines (and count them) instead of failing on the first.
    pub skip_bad_lines: bool,
}

/// A trace as read: requests sorted by arrival, with the counts of what was not kept.
#[derive(Debug, Clone)]
pub struct Trace {
    pub format: TraceFormat,
    pub requests: Vec<Request>,
    /// Malformed lines skipped because `skip_bad_lines` was set.
    pub bad_lines_skipped: u64,
    /// The first few skipped lines' errors, for the report.
    pub bad_line_examples: Vec<String>,
    /// Rows the trace itself marks as failed (BurstGPT rows with 0 response tokens).
    pub failed_rows_skipped: u64,
    /// Requests with 0 output tokens, kept as 1-token outputs (the first token is still made).
    pub zero_output_requests: u64,
    /// A plain trace's fields as read, so the run can say which unit its times were read in.
    pub plain_fields: Option<String>,
    /// The prefix blocks' hashes of every request that names them (Mooncake's `hash_ids`),
    /// each request's in order; a request's `prefix` is its range.
    pub blocks: Vec<u64>,
}

const AZURE_HEADER: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];
const BURSTGPT_HEADER: [&str; 6] = [
    "Timestamp",
    "Model",
    "Request tokens",
    "Response tokens",
    "Total tokens",
    "Log Type",
];

/// The plain format's column names, matched without regard to case. A trace names its
/// time's unit: a bare `timestamp` is seconds in one tool's files and milliseconds in
/// another's, and read the wrong way it plays the load a thousand times too fast or slow.
const PLAIN_SECONDS: [&str; 4] = ["arrival_s", "time_s", "timestamp_s", "arrival_time_s"];
const PLAIN_MILLISECONDS: [&str; 4] = ["arrival_ms", "time_ms", "timestamp_ms", "arrival_time_ms"];
const PLAIN_INPUT: [&str; 5] = [
    "input_tokens",
    "input_length",
    "prompt_tokens",
    "context_tokens",
    "isl",
];
const PLAIN_OUTPUT: [&str; 5] = [
    "output_tokens",
    "output_length",
    "completion_tokens",
    "generated_tokens",
    "osl",
];

/// Where a plain header (a CSV's columns, or a JSON line's keys) keeps its three fields, by
/// position, and the time's scale to seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PlainColumns {
    time: usize,
    seconds_per_unit: f64,
    input: usize,
    output: usize,
}

/// The one header name among `names`, `None` if there is none; two or more (a header that
/// names a field twice, as `input_tokens` beside `prompt_tokens`) are an error rather than
/// a silent pick.
fn plain_column(
    header: &[String],
    names: &[&str],
    what: &str,
    noun: &str,
) -> Result<Option<usize>, String> {
    let found: Vec<usize> = (0..header.len())
        .filter(|&i| names.iter().any(|n| header[i].eq_ignore_ascii_case(n)))
        .collect();
    match found[..] {
        [] => Ok(None),
        [i] => Ok(Some(i)),
        _ => Err(format!(
            "{noun}s {} {} name the {what}; keep one",
            found
                .iter()
                .map(|&i| header[i].as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if found.len() == 2 { "both" } else { "all" }
        )),
    }
}

/// Where a plain header keeps its fields, or why it cannot be read as one. `noun` is what
/// its names are called in messages: a CSV's columns, a JSON line's keys.
fn plain_columns(header: &[String], noun: &str) -> Result<PlainColumns, String> {
    let seconds = plain_column(header, &PLAIN_SECONDS, "arrival time", noun)?;
    let milliseconds = plain_column(header, &PLAIN_MILLISECONDS, "arrival time", noun)?;
    let (time, seconds_per_unit) = match (seconds, milliseconds) {
        (Some(i), None) => (i, 1.0),
        (None, Some(i)) => (i, 1e-3),
        (Some(a), Some(b)) => {
            return Err(format!(
                "{noun}s {} and {} both name the arrival time; keep one",
                header[a], header[b]
            ))
        }
        (None, None) => {
            let bare = header.iter().find(|h| {
                ["timestamp", "time", "arrival", "arrival_time"]
                    .iter()
                    .any(|n| h.eq_ignore_ascii_case(n))
            });
            return Err(match bare {
                Some(h) => format!(
                    "{noun} {h} does not say its unit: name it {h}_s (seconds) or {h}_ms (milliseconds)"
                ),
                None => format!(
                    "no arrival-time {noun}: one of {} (seconds) or {} (milliseconds)",
                    PLAIN_SECONDS.join(", "),
                    PLAIN_MILLISECONDS.join(", ")
                ),
            });
        }
    };
    let input = plain_column(header, &PLAIN_INPUT, "input tokens", noun)?
        .ok_or_else(|| format!("no input-token {noun}: one of {}", PLAIN_INPUT.join(", ")))?;
    let output = plain_column(header, &PLAIN_OUTPUT, "output tokens", noun)?
        .ok_or_else(|| format!("no output-token {noun}: one of {}", PLAIN_OUTPUT.join(", ")))?;
    Ok(PlainColumns {
        time,
        seconds_per_unit,
        input,
        output,
    })
}

impl PlainColumns {
    /// The header's names at these positions.
    fn named(&self, header: &[String]) -> PlainKeys {
        PlainKeys {
            time: header[self.time].clone(),
            seconds_per_unit: self.seconds_per_unit,
            input: header[self.input].clone(),
            output: header[self.output].clone(),
        }
    }
}

pub fn read_trace(path: &Path, opts: &TraceReadOptions) -> Result<Trace, InputError> {
    let file_name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| InputError::io(path, e))?;
    let mut reader = BufReader::new(file);
    skip_byte_order_mark(&mut reader).map_err(|e| InputError::io(path, e))?;
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(path, &mut reader, &file_name)?,
    };
    let mut out = Trace {
        format,
        requests: Vec::new(),
        bad_lines_skipped: 0,
        bad_line_examples: Vec::new(),
        failed_rows_skipped: 0,
        zero_output_requests: 0,
        plain_fields: None,
        blocks: Vec::new(),
    };
    // Raw rows: (timestamp in seconds on the trace's own clock, isl, osl, prefix blocks).
    let mut rows: Vec<(f64, u32, u32, PrefixBlocks)> = Vec::new();
    let on_bad = |out: &mut Trace, line: u64, message: String| -> Result<(), InputError> {
        if opts.skip_bad_lines {
            out.bad_lines_skipped += 1;
            if out.bad_line_examples.len() < 5 {
                out.bad_line_examples
                    .push(format!("line {line}: {message}"));
            }
            Ok(())
        } else {
            Err(InputError::Trace {
                file: file_name.clone(),
                line,
                message,
            })
        }
    };
    // Mooncake's lines, or plain ones that name their fields as JSON keys.
    let json_lines = format == TraceFormat::Mooncake
        || (format == TraceFormat::Plain && starts_json(&mut reader, &file_name)?);
    if json_lines {
        // Plain JSON lines name their fields as the first line does.
        let mut plain: Option<PlainKeys> = None;
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.map_err(|e| InputError::Trace {
                file: file_name.clone(),
                line: line_no,
                message: e.to_string(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            if format == TraceFormat::Plain && plain.is_none() {
                let keys = plain_keys(&line).map_err(|message| InputError::Trace {
                    file: file_name.clone(),
                    line: line_no,
                    message,
                })?;
                out.plain_fields = Some(keys.describe());
                plain = Some(keys);
            }
            let parsed = match &plain {
                Some(keys) => parse_plain_json_line(&line, keys).map(|row| (row, Vec::new())),
                None => parse_mooncake_line(&line),
            };
            match parsed {
                Ok(((t, isl, osl), hashes)) => {
                    let prefix = PrefixBlocks {
                        start: out.blocks.len() as u32,
                        len: hashes.len() as u32,
                        copy: 0,
                    };
                    out.blocks.extend(hashes);
                    rows.push((t, isl, osl, prefix));
                }
                Err(m) => on_bad(&mut out, line_no, m)?,
            }
        }
    } else {
        let mut csv_reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(reader);
        let header_error = |message: String| InputError::Trace {
            file: file_name.clone(),
            line: 1,
            message,
        };
        let headers: Vec<String> = csv_reader
            .headers()
            .map_err(|e| header_error(e.to_string()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        // The columns of the time, the input tokens and the output tokens (Azure, plain),
        // or of the whole BurstGPT header; and a plain header's names and time unit.
        let (cols, plain) = if format == TraceFormat::Plain {
            let c = plain_columns(&headers, "column").map_err(header_error)?;
            let keys = c.named(&headers);
            out.plain_fields = Some(keys.describe());
            (vec![c.time, c.input, c.output], Some(keys))
        } else {
            let expected: &[&str] = if format == TraceFormat::Azure {
                &AZURE_HEADER
            } else {
                &BURSTGPT_HEADER
            };
            let cols = expected
                .iter()
                .map(|name| headers.iter().position(|h| h == name))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    header_error(format!(
                        "header must have the columns {}; found {}",
                        expected.join(","),
                        headers.join(",")
                    ))
                })?;
            (cols, None)
        };
        let mut record = csv::StringRecord::new();
        loop {
            let line_no = csv_reader.position().line() + 1;
            match csv_reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    on_bad(&mut out, line_no, e.to_string())?;
                    continue;
                }
            }
            let line_no = record.position().map(|p| p.line()).unwrap_or(line_no);
            let parsed = match (&plain, format) {
                (Some(keys), _) => parse_plain_row(&record, &cols, keys),
                (None, TraceFormat::Azure) => parse_azure_row(&record, &cols),
                (None, _) => parse_burstgpt_row(&record, &cols),
            };
            match parsed {
                Ok(Some((t, isl, osl))) => rows.push((t, isl, osl, PrefixBlocks::NONE)),
                Ok(None) => out.failed_rows_skipped += 1,
                Err(m) => on_bad(&mut out, line_no, m)?,
            }
        }
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = rows.first().map(|r| r.0).unwrap_or(0.0);
    out.requests = rows
        .into_iter()
        .map(|(t, isl, osl, prefix)| {
            if osl == 0 {
                out.zero_output_requests += 1;
            }
            Request {
                arrival_s: t - t0,
                isl,
                osl: osl.max(1),
                prefix,
            }
        })
        .collect();
    if out.requests.is_empty() {
        return Err(InputError::TraceFile {
            file: file_name,
            message: "holds no requests".into(),
        });
    }
    Ok(out)
}

/// Skips a UTF-8 byte order mark (`BYTE_ORDER_MARK`): spreadsheet tools write one before a
/// CSV's header. A trace is streamed, not read whole as `read_text` does.
fn skip_byte_order_mark<R: Read>(reader: &mut BufReader<R>) -> std::io::Result<()> {
    let bom = crate::error::BYTE_ORDER_MARK.as_bytes();
    if reader.fill_buf()?.starts_with(bom) {
        reader.consume(bom.len());
    }
    Ok(())
}

fn detect_format<R: Read>(
    path: &Path,
    reader: &mut BufReader<R>,
    file_name: &str,
) -> Result<TraceFormat, InputError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let buf = reader.fill_buf().map_err(|e| InputError::TraceFile {
        file: file_name.into(),
        message: e.to_string(),
    })?;
    let first_line = String::from_utf8_lossy(buf)
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if ext == "jsonl" || ext == "json" || first_line.starts_with('{') {
        // Mooncake's lines carry `timestamp`; lines that name their fields as the plain
        // CSV's header does are plain. A first line that is not a JSON object, or a
        // Mooncake line short of a field, is left to Mooncake's reader, whose error names
        // the line and what is wrong with it (and which `--skip-bad-lines` may skip).
        let Ok(object) = serde_json::from_str::<JsonObject>(&first_line) else {
            return Ok(TraceFormat::Mooncake);
        };
        if object.contains_key("timestamp") {
            return Ok(TraceFormat::Mooncake);
        }
        let mooncakes = ["input_length", "output_length", "hash_ids"];
        return match plain_keys_of(&object) {
            Ok(_) => Ok(TraceFormat::Plain),
            Err(_) if mooncakes.iter().any(|k| object.contains_key(*k)) => {
                Ok(TraceFormat::Mooncake)
            }
            Err(why) => Err(InputError::Trace {
                file: file_name.into(),
                line: 1,
                message: format!(
                    "unknown trace format (keys {}); expected Mooncake JSON lines \
                     (timestamp in milliseconds, input_length, output_length) or plain ones, \
                     whose keys name an arrival time with its unit, the input tokens and the \
                     output tokens (e.g. arrival_s, input_tokens, output_tokens): {why}",
                    object.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
        };
    }
    let header: Vec<&str> = first_line.split(',').map(|s| s.trim()).collect();
    if AZURE_HEADER.iter().all(|h| header.contains(h)) {
        return Ok(TraceFormat::Azure);
    }
    if BURSTGPT_HEADER.iter().all(|h| header.contains(h)) {
        return Ok(TraceFormat::Burstgpt);
    }
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim_matches('"').to_string())
        .collect();
    match plain_columns(&header, "column") {
        Ok(_) => Ok(TraceFormat::Plain),
        Err(why) => Err(InputError::Trace {
            file: file_name.into(),
            line: 1,
            message: format!(
                "unknown trace format (header {first_line:?}); expected Mooncake JSONL, an Azure CSV \
                 header {}, a BurstGPT CSV header {}, or a plain CSV, whose header names an \
                 arrival time with its unit, the input tokens and the output tokens \
                 (e.g. arrival_s,input_tokens,output_tokens): {why}",
                AZURE_HEADER.join(","),
                BURSTGPT_HEADER.join(",")
            ),
        }),
    }
}

#[derive(Deserialize)]
struct MooncakeLine {
    timestamp: Option<f64>,
    input_length: Option<f64>,
    output_length: Option<f64>,
    /// One hash per 512-token block of the prompt, from its start; equal hashes, equal
    /// content (a reusable KV prefix).
    hash_ids: Option<Vec<u64>>,
}

fn tokens(v: Option<f64>, field: &str) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("field {field} is missing"))?;
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        return Err(format!(
            "field {field} must be a whole number of tokens >= 0 (got {v})"
        ));
    }
    Ok(v as u32)
}

/// A request as a line gives it: arrival (seconds on the trace's clock), input and output
/// tokens.
type Row = (f64, u32, u32);

/// A Mooncake line's request and prefix block hashes (none if absent).
fn parse_mooncake_line(line: &str) -> Result<(Row, Vec<u64>), String> {
    // The line is the trace's; serde's own "line 1" would name the wrong one.
    let de = &mut serde_json::Deserializer::from_str(line);
    let m: MooncakeLine = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            String::new()
        } else {
            format!("field {path}: ")
        };
        format!(
            "not a JSON object of the Mooncake format: {field}{} (column {})",
            crate::error::without_place(&inner.to_string()),
            inner.column()
        )
    })?;
    let ts = m.timestamp.ok_or("field timestamp is missing")?;
    if !ts.is_finite() || ts < 0.0 {
        return Err(format!(
            "field timestamp must be milliseconds >= 0 (got {ts})"
        ));
    }
    let isl = input_tokens(m.input_length, "input_length", "field")?;
    let osl = tokens(m.output_length, "output_length")?;
    Ok(((ts / 1000.0, isl, osl), m.hash_ids.unwrap_or_default()))
}

/// A CSV cell's number, or an error naming its column.
fn cell_number(s: &str, name: &str) -> Result<f64, String> {
    let s = s.trim();
    s.parse()
        .map_err(|_| format!("column {name} is not a number ({s:?})"))
}

fn parse_token_field(s: &str, name: &str) -> Result<u32, String> {
    tokens(Some(cell_number(s, name)?), name)
}

/// A prompt's tokens: a whole number, and at least one. `noun` is what the trace calls
/// `name` in messages: a field, a column.
fn input_tokens(v: Option<f64>, name: &str, noun: &str) -> Result<u32, String> {
    let isl = tokens(v, name)?;
    if isl == 0 {
        return Err(format!(
            "{noun} {name} is 0; a request has at least one input token"
        ));
    }
    Ok(isl)
}

/// Azure timestamps as seconds since the Unix epoch; 2023 naive with 7 fractional digits,
/// 2024 with a UTC offset and the fraction sometimes absent.
fn parse_azure_timestamp(s: &str) -> Result<f64, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 * 1e-9);
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        let t = t.and_utc();
        return Ok(t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 * 1e-9);
    }
    Err(format!(
        "column TIMESTAMP is not a timestamp like 2023-11-16 18:17:03.9799600 ({s:?})"
    ))
}

fn field<'r>(
    record: &'r csv::StringRecord,
    cols: &[usize],
    i: usize,
    name: &str,
) -> Result<&'r str, String> {
    record.get(cols[i]).ok_or_else(|| {
        format!(
            "column {name} is missing ({} fields on the line)",
            record.len()
        )
    })
}

fn parse_azure_row(record: &csv::StringRecord, cols: &[usize]) -> Result<Option<Row>, String> {
    let t = parse_azure_timestamp(field(record, cols, 0, "TIMESTAMP")?)?;
    let isl = cell_number(field(record, cols, 1, "ContextTokens")?, "ContextTokens")?;
    let isl = input_tokens(Some(isl), "ContextTokens", "column")?;
    let osl = parse_token_field(
        field(record, cols, 2, "GeneratedTokens")?,
        "GeneratedTokens",
    )?;
    Ok(Some((t, isl, osl)))
}

fn parse_burstgpt_row(record: &csv::StringRecord, cols: &[usize]) -> Result<Option<Row>, String> {
    let ts = field(record, cols, 0, "Timestamp")?.trim();
    let t: f64 = ts
        .parse()
        .map_err(|_| format!("column Timestamp is not a number of seconds ({ts:?})"))?;
    if !t.is_finite() || t < 0.0 {
        return Err(format!("column Timestamp must be seconds >= 0 (got {t})"));
    }
    let isl = parse_token_field(field(record, cols, 2, "Request tokens")?, "Request tokens")?;
    let osl = parse_token_field(
        field(record, cols, 3, "Response tokens")?,
        "Response tokens",
    )?;
    if osl == 0 {
        // BurstGPT marks failed requests with 0 response tokens; they are counted, not replayed.
        return Ok(None);
    }
    if isl == 0 {
        return Err("column Request tokens is 0; a request has at least one input token".into());
    }
    Ok(Some((t, isl, osl)))
}

/// Whether the trace's first character, past any blank lines, opens a JSON object.
fn starts_json<R: Read>(reader: &mut BufReader<R>, file_name: &str) -> Result<bool, InputError> {
    let buf = reader.fill_buf().map_err(|e| InputError::TraceFile {
        file: file_name.into(),
        message: e.to_string(),
    })?;
    Ok(buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// The names of a plain trace's three fields (a CSV's columns, a JSON line's keys), and the
/// time's scale to seconds.
#[derive(Debug, Clone, PartialEq)]
struct PlainKeys {
    time: String,
    seconds_per_unit: f64,
    input: String,
    output: String,
}

impl PlainKeys {
    /// How the trace was read, for the run's notes.
    fn describe(&self) -> String {
        let unit = if self.seconds_per_unit == 1.0 {
            "seconds"
        } else {
            "milliseconds"
        };
        format!(
            "arrival times from {} in {unit}, input tokens from {}, output tokens from {}",
            self.time, self.input, self.output
        )
    }

    /// A plain row's arrival, in seconds, from its time in the trace's unit.
    fn arrival_s(&self, t: f64, noun: &str) -> Result<f64, String> {
        if !t.is_finite() || t < 0.0 {
            return Err(format!("{noun} {} must be >= 0 (got {t})", self.time));
        }
        Ok(t * self.seconds_per_unit)
    }
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

fn plain_keys(line: &str) -> Result<PlainKeys, String> {
    let object: JsonObject = serde_json::from_str(line).map_err(|e| {
        format!(
            "not a JSON object: {}",
            crate::error::without_place(&e.to_string())
        )
    })?;
    plain_keys_of(&object)
}

fn plain_keys_of(object: &JsonObject) -> Result<PlainKeys, String> {
    let keys: Vec<String> = object.keys().cloned().collect();
    Ok(plain_columns(&keys, "key")?.named(&keys))
}

fn parse_plain_json_line(line: &str, keys: &PlainKeys) -> Result<Row, String> {
    let object: JsonObject = serde_json::from_str(line).map_err(|e| {
        format!(
            "not a JSON object: {} (column {})",
            crate::error::without_place(&e.to_string()),
            e.column()
        )
    })?;
    let number = |key: &str| -> Result<Option<f64>, String> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("field {key} is not a number ({v})")),
        }
    };
    let t = number(&keys.time)?.ok_or_else(|| format!("field {} is missing", keys.time))?;
    let t = keys.arrival_s(t, "field")?;
    let isl = input_tokens(number(&keys.input)?, &keys.input, "field")?;
    let osl = tokens(number(&keys.output)?, &keys.output)?;
    Ok((t, isl, osl))
}

fn parse_plain_row(
    record: &csv::StringRecord,
    cols: &[usize],
    keys: &PlainKeys,
) -> Result<Option<Row>, String> {
    let t = cell_number(field(record, cols, 0, &keys.time)?, &keys.time)?;
    let t = keys.arrival_s(t, "column")?;
    let isl = cell_number(field(record, cols, 1, &keys.input)?, &keys.input)?;
    let isl = input_tokens(Some(isl), &keys.input, "column")?;
    let osl = parse_token_field(field(record, cols, 2, &keys.output)?, &keys.output)?;
    Ok(Some((t, isl, osl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_timestamps_both_years() {
        let a = parse_azure_timestamp("2023-11-16 18:17:03.9799600").unwrap();
        let b = parse_azure_timestamp("2023-11-16 18:17:04.0319600").unwrap();
        assert!((b - a - 0.052).abs() < 1e-6);
        let c = parse_azure_timestamp("2024-05-10 00:00:00.009930+00:00").unwrap();
        let d = parse_azure_timestamp("2024-05-10 00:00:01+00:00").unwrap();
        assert!((d - c - 0.99007).abs() < 1e-6);
        assert!(parse_azure_timestamp("yesterday").is_err());
    }

    #[test]
    fn a_byte_order_mark_before_the_header_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("excel.csv");
        std::fs::write(
            &path,
            "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n",
        )
        .unwrap();
        let t = read_trace(&path, &TraceReadOptions::default()).unwrap();
        assert_eq!(t.format, TraceFormat::Azure);
        assert_eq!((t.requests[0].isl, t.requests[0].osl), (4808, 10));
    }

    fn read_plain(dir: &Path, name: &str, text: &str) -> Result<Trace, InputError> {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        read_trace(&path, &TraceReadOptions::default())
    }

    /// Each request's arrival, input and output tokens.
    fn arrivals(t: &Trace) -> Vec<(f64, u32, u32)> {
        t.requests
            .iter()
            .map(|r| (r.arrival_s, r.isl, r.osl))
            .collect()
    }

    #[test]
    fn mooncake_hash_ids_are_kept_as_each_requests_prefix_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let t = read_plain(
            dir.path(),
            "m.jsonl",
            "{\"timestamp\": 3000, \"input_length\": 900, \"output_length\": 2, \"hash_ids\": [0, 5]}\n\
             {\"timestamp\": 0, \"input_length\": 600, \"output_length\": 2}\n\
             {\"timestamp\": 6000, \"input_length\": 1200, \"output_length\": 2, \"hash_ids\": [0, 5, 9]}\n",
        )
        .unwrap();
        let keys: Vec<Vec<u64>> = t
            .requests
            .iter()
            .map(|r| r.prefix.keys(&t.blocks).collect())
            .collect();
        assert_eq!(keys, [vec![], vec![0, 5], vec![0, 5, 9]]);
        let err = read_plain(
            dir.path(),
            "bad.jsonl",
            "{\"timestamp\": 0, \"input_length\": 9, \"output_length\": 2, \"hash_ids\": [1.5]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bad.jsonl") && err.contains("line 1") && err.contains("hash_ids[0]"),
            "{err}"
        );
    }

    #[test]
    fn a_plain_csv_is_read_by_its_column_names_in_either_unit() {
        let dir = tempfile::tempdir().unwrap();
        let seconds = read_plain(
            dir.path(),
            "s.csv",
            "arrival_s,input_tokens,output_tokens\n10.5,100,20\n10.0,200,0\n12.25,300,30\n",
        )
        .unwrap();
        assert_eq!(seconds.format, TraceFormat::Plain);
        let got = arrivals(&seconds);
        // Sorted, timed from the first arrival; a 0-token output kept as one token.
        assert_eq!(got, [(0.0, 200, 1), (0.5, 100, 20), (2.25, 300, 30)]);
        assert_eq!(seconds.zero_output_requests, 1);
        // Other names, another order and case, a column more, and milliseconds.
        let millis = read_plain(
            dir.path(),
            "ms.csv",
            "Completion_Tokens,model,Timestamp_MS,PROMPT_TOKENS\n20,m,10500,100\n1,m,10000,200\n30,m,12250,300\n",
        )
        .unwrap();
        assert_eq!(arrivals(&millis), got);
    }

    #[test]
    fn plain_json_lines_are_read_by_their_keys_and_mooncakes_by_its_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let seconds = read_plain(
            dir.path(),
            "s.jsonl",
            "\n{\"arrival_s\": 3.5, \"input_tokens\": 100, \"output_tokens\": 20, \"id\": \"a\"}\n{\"arrival_s\": 3, \"input_tokens\": 200, \"output_tokens\": 2}\n",
        )
        .unwrap();
        assert_eq!(seconds.format, TraceFormat::Plain);
        assert_eq!(arrivals(&seconds), [(0.0, 200, 2), (0.5, 100, 20)]);
        // Milliseconds under other names, in a file whose extension says nothing.
        let millis = read_plain(
            dir.path(),
            "ms.log",
            "{\"ISL\": 200, \"osl\": 2, \"timestamp_ms\": 3000}\n{\"ISL\": 100, \"osl\": 20, \"timestamp_ms\": 3500}\n",
        )
        .unwrap();
        assert_eq!(arrivals(&millis), arrivals(&seconds));
        let mooncake = read_plain(
            dir.path(),
            "m.jsonl",
            "{\"timestamp\": 3000, \"input_length\": 200, \"output_length\": 2, \"hash_ids\": [1]}\n",
        )
        .unwrap();
        assert_eq!(mooncake.format, TraceFormat::Mooncake);
        for (text, line, why) in [
            (
                "{\"time\": 1, \"isl\": 1, \"osl\": 1}\n",
                "line 1",
                "key time does not say its unit",
            ),
            // A Mooncake line short of its timestamp is Mooncake's error, not an unknown format.
            (
                "{\"input_length\": 1, \"output_length\": 1}\n",
                "line 1",
                "field timestamp is missing",
            ),
            (
                "{\"time_s\": 1, \"isl\": 1, \"osl\": 1}\n{\"time_s\": 2, \"isl\": 1}\n",
                "line 2",
                "field osl is missing",
            ),
            (
                "{\"time_s\": 1, \"isl\": \"7\", \"osl\": 1}\n",
                "line 1",
                "field isl is not a number",
            ),
            (
                "{\"time_s\": -2, \"isl\": 7, \"osl\": 1}\n",
                "line 1",
                "field time_s must be >= 0",
            ),
            (
                "{\"time_s\": 1, \"isl\": 0, \"osl\": 1}\n",
                "line 1",
                "field isl is 0",
            ),
        ] {
            let err = read_plain(dir.path(), "bad.jsonl", text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("bad.jsonl") && err.contains(line) && err.contains(why),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_plain_header_that_leaves_a_field_unsure_is_refused_with_the_names_to_use() {
        let header = |h: &str| -> Vec<String> { h.split(',').map(String::from).collect() };
        let unsure = [
            (
                "timestamp,input_tokens,output_tokens",
                "timestamp_s (seconds) or timestamp_ms",
            ),
            (
                "arrival_s,arrival_ms,isl,osl",
                "arrival_s and arrival_ms both name the arrival time",
            ),
            (
                "time_s,timestamp_s,isl,osl",
                "time_s, timestamp_s both name the arrival time",
            ),
            (
                "arrival_s,input_tokens,prompt_tokens,osl",
                "input_tokens, prompt_tokens both name the input tokens",
            ),
            (
                "arrival_s,isl",
                "no output-token column: one of output_tokens",
            ),
            (
                "arrival_s,output_tokens",
                "no input-token column: one of input_tokens",
            ),
            ("when,isl,osl", "no arrival-time column: one of arrival_s"),
        ];
        for (h, why) in unsure {
            let err = plain_columns(&header(h), "column").unwrap_err();
            assert!(err.contains(why), "{h}: {err}");
        }
        assert_eq!(
            plain_columns(&header("osl,ISL,x,Arrival_Time_ms"), "column").unwrap(),
            PlainColumns {
                time: 3,
                seconds_per_unit: 1e-3,
                input: 1,
                output: 0
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_plain(dir.path(), "t.csv", "timestamp,isl,osl\n1,2,3\n").unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("t.csv") && err.contains("line 1") && err.contains("timestamp_ms"),
            "{err}"
        );
    }

    #[test]
    fn a_plain_rows_errors_name_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        for (row, why) in [
            ("soon,10,10", "column arrival_s is not a number"),
            ("-1,10,10", "column arrival_s must be >= 0"),
            ("1,0,10", "column isl is 0"),
            ("1,10,2.5", "output_tokens must be a whole number"),
            ("1,10", "column output_tokens is missing"),
        ] {
            let text = format!("arrival_s,isl,output_tokens\n0,5,5\n{row}\n");
            let err = read_plain(dir.path(), "bad.csv", &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("bad.csv") && err.contains("line 3") && err.contains(why),
                "{row}: {err}"
            );
        }
    }

    #[test]
    fn mooncake_line_errors_name_the_field() {
        assert!(
            parse_mooncake_line(r#"{"timestamp": 5, "input_length": 10}"#)
                .unwrap_err()
                .contains("output_length")
        );
        assert!(parse_mooncake_line(
            r#"{"timestamp": 5, "input_length": 1.5, "output_length": 3}"#
        )
        .unwrap_err()
        .contains("input_length"));
        assert_eq!(
            parse_mooncake_line(
                r#"{"timestamp": 1500, "input_length": 10, "output_length": 3, "hash_ids": [1]}"#
            )
            .unwrap(),
            ((1.5, 10, 3), vec![1])
        );
    }
}
