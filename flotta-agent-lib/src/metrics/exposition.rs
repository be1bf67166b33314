//! A tolerant parser of the Prometheus text exposition format (0.0.4, and the
//! OpenMetrics text a workload may serve instead): the samples of a scrape.
//!
//! Written here rather than taken from a crate: it is about a hundred lines, the
//! agent needs only names, labels, values and optional timestamps (no metadata, no
//! exemplars), and it must skip a line it cannot read instead of failing the whole
//! scrape, which the available parsers do not all promise.
//!
//! ```
//! use flotta_agent_lib::metrics::exposition::parse;
//!
//! let scrape = parse("# TYPE hits counter\nhits_total{path=\"/\"} 42\nbroken line\n");
//! assert_eq!(scrape.samples.len(), 1);
//! assert_eq!(scrape.samples[0].name, "hits_total");
//! assert_eq!(scrape.samples[0].labels, vec![("path".to_owned(), "/".to_owned())]);
//! assert_eq!(scrape.samples[0].value, 42.0);
//! assert_eq!(scrape.skipped_lines, 1);
//! ```

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedSample {
    /// Metric name (`http_requests_total`, `latency_seconds_bucket`).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// Value (`NaN`, `+Inf` and `-Inf` included).
    pub value: f64,
    /// The timestamp the exposition gives, in milliseconds; the scrape's time is used
    /// otherwise.
    pub timestamp_ms: Option<i64>,
}

/// What a scrape body held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The samples, in order.
    pub samples: Vec<ExposedSample>,
    /// Lines that were neither comments nor readable samples.
    pub skipped_lines: usize,
}

/// Parses an exposition body; unreadable lines are counted and skipped.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match sample(line) {
            Some(sample) => out.samples.push(sample),
            None => out.skipped_lines += 1,
        }
    }
    out
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn sample(line: &str) -> Option<ExposedSample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = number(fields.next()?)?;
    let timestamp_ms = match fields.next() {
        None => None,
        // OpenMetrics writes seconds with a fraction; the 0.0.4 format milliseconds.
        Some(t) if t.contains('.') => Some((t.parse::<f64>().ok()? * 1000.0).round() as i64),
        Some(t) => Some(t.parse::<i64>().ok()?),
    };
    // An OpenMetrics exemplar (` # {...} value`) may follow; anything else may not.
    if let Some(extra) = fields.next()
        && extra != "#"
    {
        return None;
    }
    Some(ExposedSample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// The labels up to the closing brace, and what follows it.
fn label_set(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let name = text[..eq].trim();
        if !is_label_name(name) {
            return None;
        }
        let after_eq = text[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after_eq.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        text = after_eq[end + 1..].trim_start();
        if let Some(after_comma) = text.strip_prefix(',') {
            text = after_comma;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}

fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_the_format_allows() {
        let text = r#"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
rpc_duration_seconds{quantile="0.5",} 4773
http_request_duration_seconds_bucket{le="+Inf"} 144320
nan_gauge NaN
om_counter_total 5 1700000000.250 # {trace_id="x"} 1
# EOF
"#;
        let parsed = parse(text);
        assert_eq!(parsed.skipped_lines, 0);
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "http_requests_total",
                "http_requests_total",
                "msdos_file_access_time_seconds",
                "metric_without_timestamp_and_labels",
                "something_weird",
                "rpc_duration_seconds",
                "http_request_duration_seconds_bucket",
                "nan_gauge",
                "om_counter_total",
            ]
        );
        let first = &parsed.samples[0];
        assert_eq!(
            first.labels,
            vec![
                ("method".to_owned(), "post".to_owned()),
                ("code".to_owned(), "200".to_owned())
            ]
        );
        assert_eq!(
            (first.value, first.timestamp_ms),
            (1027.0, Some(1_395_066_363_000))
        );
        assert_eq!(
            parsed.samples[2].labels,
            vec![
                ("path".to_owned(), r"C:\DIR\FILE.TXT".to_owned()),
                (
                    "error".to_owned(),
                    "Cannot find file:\n\"FILE.TXT\"".to_owned()
                )
            ]
        );
        assert_eq!(parsed.samples[2].value, 1.458_255_915e9);
        assert_eq!(parsed.samples[3].timestamp_ms, None);
        assert_eq!(parsed.samples[4].value, f64::INFINITY);
        assert_eq!(parsed.samples[4].timestamp_ms, Some(-3_982_045));
        assert_eq!(parsed.samples[5].labels.len(), 1, "trailing comma");
        assert!(parsed.samples[7].value.is_nan());
        assert_eq!(parsed.samples[8].timestamp_ms, Some(1_700_000_000_250));
    }

    #[test]
    fn skips_what_it_cannot_read_and_keeps_the_rest() {
        let text = "ok 1\n9starts_with_digit 1\nno_value\nbad_value abc\n\
                    unterminated{a=\"b} 1\nbadlabel{1a=\"b\"} 1\ntrailing 1 2 3\nok2{} 2\n";
        let parsed = parse(text);
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["ok", "ok2"]);
        assert_eq!(parsed.skipped_lines, 6);
    }
}
