//! From prometheus-client's OpenMetrics to the classic text format.

/// prometheus-client writes OpenMetrics, where a counter's family is named without `_total`
/// and the exposition ends with `# EOF`. The classic text format that kube-proxy serves (and
/// `promtool check metrics` and older scrapers parse) names the family as its samples:
/// `# HELP x_total`, `# TYPE x_total counter`, and has no `# EOF`.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or_default();
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
