//! `/metrics` formats: OpenMetrics 1.0 when the scraper asks for it, else the classic
//! Prometheus text format 0.0.4, which `promtool check metrics` and many agents read only.
//!
//! The registry encodes OpenMetrics; the classic form is derived from that text line by
//! line. The two differ, for what we export, only in three ways: OpenMetrics ends with
//! `# EOF`, may carry `# UNIT` lines, and names a counter family without its `_total`
//! suffix in `# HELP`/`# TYPE` (the classic format names the sample itself), with
//! optional `_created` samples the classic format has no place for.

/// The response's `Content-Type` for each format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition format to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics when a media range for
    /// `application/openmetrics-text` has a quality above zero and at least that of any
    /// `text/plain` range; the classic format otherwise (no header, `*/*`, `text/plain`).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Classic => CLASSIC,
        }
    }

    /// The body in this format, from the registry's OpenMetrics text.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Classic => classic(&openmetrics),
        }
    }
}

/// Rewrites OpenMetrics text as the classic text format.
pub fn classic(openmetrics: &str) -> String {
    // `# HELP` comes before `# TYPE`: find the counter families first.
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let is_counter = |name: &str| counters.contains(&name);
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|rest| ("HELP", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("TYPE", rest)));
        if let Some((kind, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if is_counter(name) {
                out.push_str(&format!("# {kind} {name}_total {tail}\n"));
                continue;
            }
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample.strip_suffix("_created").is_some_and(&is_counter) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let prometheus = concat!(
            "application/openmetrics-text;version=1.0.0,",
            "application/openmetrics-text;version=0.0.1;q=0.75,",
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        );
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Classic
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Classic
        );
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text;q=0.5")),
            Format::Classic
        );
    }

    #[test]
    fn counters_take_their_sample_name() {
        let om = concat!(
            "# HELP a_requests Requests.\n# TYPE a_requests counter\n",
            "a_requests_total{x=\"1\"} 2\na_requests_created{x=\"1\"} 1.5\n",
            "# HELP b Open.\n# TYPE b gauge\n# UNIT b seconds\nb 1\n# EOF\n"
        );
        assert_eq!(
            classic(om),
            concat!(
                "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n",
                "a_requests_total{x=\"1\"} 2\n# HELP b Open.\n# TYPE b gauge\nb 1\n"
            )
        );
    }
}
