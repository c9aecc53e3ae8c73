//! Writing series in the Prometheus text format (0.0.4) or OpenMetrics 1.0, for the derived series and
//! the self metrics alike.

use std::fmt::Write as _;

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names it, else text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// Appends families and samples to a string.
pub struct Writer<'a> {
    out: &'a mut String,
    format: Format,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String, format: Format) -> Self {
        Writer { out, format }
    }

    /// `# HELP` and `# TYPE` of a family. In OpenMetrics a counter family is named without `_total`.
    pub fn family(&mut self, name: &str, help: &str, kind: FamilyType) {
        let name = match (self.format, kind) {
            (Format::OpenMetrics, FamilyType::Counter) => {
                name.strip_suffix("_total").unwrap_or(name)
            }
            _ => name,
        };
        let kind = match kind {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Histogram => "histogram",
            FamilyType::Summary => "summary",
        };
        let _ = write!(self.out, "# HELP {name} ");
        escape(help, false, self.out);
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    /// One sample: `name{labels,extra} value`.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: &str,
    ) {
        let labels = Labels::new(labels);
        self.out.push_str(name);
        self.labels(&labels, extra);
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    /// One sample of a series whose labels were escaped once: `name+suffix{labels,extra} value`.
    pub fn series_sample(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: Number,
    ) {
        self.series_sample_with(name, suffix, labels, extra, value, None);
    }

    /// [`Writer::series_sample`] with an exemplar (written in OpenMetrics only).
    pub fn series_sample_with(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &Labels,
        extra: Option<(&str, &str)>,
        value: Number,
        exemplar: Option<ExemplarRef<'_>>,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.labels(labels, extra);
        self.out.push(' ');
        match value {
            Number::Count(n) => self.out.push_str(itoa::Buffer::new().format(n)),
            Number::Value(v) => write_value(v, self.out),
        }
        self.end_line(exemplar);
    }

    /// One bucket of a histogram series: `name_bucket{labels,le} count`, with `le` the bucket's
    /// `le="bound"` pair, escaped once for the whole family; with its exemplar in OpenMetrics.
    pub fn bucket_sample(
        &mut self,
        name: &str,
        labels: &Labels,
        le: &str,
        count: u64,
        exemplar: Option<ExemplarRef<'_>>,
    ) {
        self.out.push_str(name);
        self.out.push_str("_bucket{");
        if !labels.0.is_empty() {
            self.out.push_str(&labels.0);
            self.out.push(',');
        }
        self.out.push_str(le);
        self.out.push_str("} ");
        self.out.push_str(itoa::Buffer::new().format(count));
        self.end_line(exemplar);
    }

    /// Ends a sample's line: ` # {labels} value timestamp` first for an exemplar, in OpenMetrics.
    fn end_line(&mut self, exemplar: Option<ExemplarRef<'_>>) {
        let exemplar =
            exemplar.filter(|e| self.format == Format::OpenMetrics && !e.pairs.is_empty());
        if let Some(e) = exemplar {
            self.out.push_str(" # {");
            let mut parts = e.pairs.split('\0');
            let mut first = true;
            while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape(v, true, self.out);
                self.out.push('"');
            }
            self.out.push_str("} ");
            write_value(e.value, self.out);
            let (seconds, millis) = (
                e.timestamp_ms.div_euclid(1000),
                e.timestamp_ms.rem_euclid(1000),
            );
            let _ = write!(self.out, " {seconds}.{millis:03}");
        }
        self.out.push('\n');
    }

    /// A bucket bound as the `le="bound"` pair [`Writer::bucket_sample`] takes.
    pub fn le_pair(bound: &str) -> String {
        let mut pair = String::from("le=\"");
        escape(bound, true, &mut pair);
        pair.push('"');
        pair
    }

    fn labels(&mut self, labels: &Labels, extra: Option<(&str, &str)>) {
        if labels.0.is_empty() && extra.is_none() {
            return;
        }
        self.out.push('{');
        self.out.push_str(&labels.0);
        if let Some((k, v)) = extra {
            if !labels.0.is_empty() {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(v, true, self.out);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The text written so far (and not yet taken): a streamed render takes it chunk by chunk.
    pub fn buffer(&mut self) -> &mut String {
        self.out
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// An exemplar to write after a sample: its labels as `name\0value\0` pairs (names valid, values
/// unescaped, at most 128 characters of both in all), its value, and when (Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct ExemplarRef<'a> {
    /// `name\0value\0` pairs.
    pub pairs: &'a str,
    /// The observed value.
    pub value: f64,
    /// When the observed event happened, in Unix milliseconds.
    pub timestamp_ms: i64,
}

/// A series' labels, `name="value"` pairs escaped and joined once, for every sample of the series.
#[derive(Debug, Default)]
pub struct Labels(String);

impl Labels {
    /// Escapes and joins the pairs.
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        let mut labels = Labels::default();
        labels.set(pairs.iter().map(|(k, _)| *k), pairs.iter().map(|(_, v)| *v));
        labels
    }

    /// Escapes and joins names and values, taken pairwise, reusing this one's buffer (one allocation for
    /// a whole family, not one per series).
    pub fn set<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
        values: impl IntoIterator<Item = &'a str>,
    ) {
        let text = &mut self.0;
        text.clear();
        for (i, (k, v)) in names.into_iter().zip(values).enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(k);
            text.push_str("=\"");
            escape(v, true, text);
            text.push('"');
        }
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy)]
pub enum Number {
    /// A count, written as an integer.
    Count(u64),
    /// Any value.
    Value(f64),
}

/// A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`, never an exponent.
pub fn format_value(v: f64) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes `\` and newlines (and `"` in label values).
fn escape(text: &str, quote: bool, out: &mut String) {
    // A byte scan: label values are short, and a `char` pattern search costs more than the copy.
    if !text.bytes().any(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_formats() {
        let mut text = String::new();
        let mut w = Writer::new(&mut text, Format::Text);
        w.family("x_total", "Things\\n\nmore.", FamilyType::Counter);
        w.sample("x_total", &[("a", "q\"uo\\te\n")], None, "3");
        w.finish();
        assert_eq!(text, "# HELP x_total Things\\\\n\\nmore.\n# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\\n\"} 3\n");

        let mut om = String::new();
        let mut w = Writer::new(&mut om, Format::OpenMetrics);
        w.family("x_total", "Things.", FamilyType::Counter);
        w.sample("x_total", &[], None, "3");
        w.family("lat", "L.", FamilyType::Histogram);
        w.sample("lat_bucket", &[("a", "b")], Some(("le", "+Inf")), "1");
        w.finish();
        assert_eq!(om, "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP lat L.\n# TYPE lat histogram\nlat_bucket{a=\"b\",le=\"+Inf\"} 1\n# EOF\n");
    }

    #[test]
    fn exemplars_are_written_in_openmetrics_only() {
        let e = ExemplarRef {
            pairs: "trace_id\0abc\0run_id\0r\"1\0",
            value: 7.25,
            timestamp_ms: 1_733_100_000_042,
        };
        for (format, tail) in [
            (Format::Text, "\n"),
            (
                Format::OpenMetrics,
                " # {trace_id=\"abc\",run_id=\"r\\\"1\"} 7.25 1733100000.042\n",
            ),
        ] {
            let mut out = String::new();
            let mut w = Writer::new(&mut out, format);
            w.bucket_sample("lat", &Labels::new(&[("a", "b")]), "le=\"8\"", 3, Some(e));
            assert_eq!(out, format!("lat_bucket{{a=\"b\",le=\"8\"}} 3{tail}"));
        }
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::OpenMetrics);
        let none = ExemplarRef { pairs: "", ..e };
        w.series_sample_with(
            "x_total",
            "",
            &Labels::default(),
            None,
            Number::Value(1.0),
            Some(none),
        );
        assert_eq!(out, "x_total 1\n");
    }

    #[test]
    fn negotiates() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(format_value(6.0), "6");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
