//! The metrics exposition formats: Prometheus text (0.0.4) and OpenMetrics 1.0, from
//! a list of metric families.
//!
//! Owns: the text of both formats (names, `# HELP` / `# TYPE`, label escaping, the
//! `_total` suffix of counters, OpenMetrics' `# EOF`). Must not: gather any figure
//! (the node does) or read the clock.

use std::fmt::Write;

/// Which format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what Prometheus scrapes by default.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A counter only goes up (its samples are named `NAME_total`); a gauge is a value
/// now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: a name (without `_total`), its help text, and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample: label pairs and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: impl Into<f64>) {
        self.samples.push(Sample {
            labels,
            value: value.into(),
        });
    }
}

/// A label value with `\`, `"` and newlines escaped (both formats).
fn escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The families in `format`.
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // Prometheus text names the counter family with `_total`; OpenMetrics names
        // the family without it and its samples with it.
        let (family, sample) = match (f.kind, format) {
            (Kind::Counter, Format::Prometheus) => {
                (format!("{}_total", f.name), format!("{}_total", f.name))
            }
            (Kind::Counter, Format::OpenMetrics) => {
                (f.name.to_string(), format!("{}_total", f.name))
            }
            (Kind::Gauge, _) => (f.name.to_string(), f.name.to_string()),
        };
        let _ = writeln!(out, "# HELP {family} {}", f.help);
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for s in &f.samples {
            out.push_str(&sample);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut bytes = Family::new("tern_stream_bytes_in", Kind::Counter, "Bytes received.");
        bytes.push(vec![("stream", "cams/a\"b".into())], 1234u32);
        let mut clients = Family::new("tern_stream_clients", Kind::Gauge, "Clients now.");
        clients.push(vec![("stream", "main".into())], 2u32);
        clients.push(vec![], 0.5);
        vec![bytes, clients]
    }

    #[test]
    fn prometheus_text() {
        assert_eq!(
            render(&families(), Format::Prometheus),
            "# HELP tern_stream_bytes_in_total Bytes received.\n\
             # TYPE tern_stream_bytes_in_total counter\n\
             tern_stream_bytes_in_total{stream=\"cams/a\\\"b\"} 1234\n\
             # HELP tern_stream_clients Clients now.\n\
             # TYPE tern_stream_clients gauge\n\
             tern_stream_clients{stream=\"main\"} 2\n\
             tern_stream_clients 0.5\n"
        );
    }

    #[test]
    fn openmetrics_text() {
        let t = render(&families(), Format::OpenMetrics);
        assert!(t.starts_with(
            "# HELP tern_stream_bytes_in Bytes received.\n# TYPE tern_stream_bytes_in counter\n\
             tern_stream_bytes_in_total{stream=\"cams/a\\\"b\"} 1234\n"
        ));
        assert!(t.ends_with("# EOF\n"));
    }
}
