//! The report's figures as rows (one measured quantity of one mode at one scale, with its
//! baseline when it has one), and the CSV and Markdown they are written as. A quantity that
//! was not measured is a row with no value and the reason, never a missing row.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Full sync of the whole cluster into an empty namespace.
    FullSync,
    /// One endpoint changed: re-plan, diff and incremental apply (median over rounds).
    ChangeSync,
    /// The incremental apply alone (median over rounds).
    ChangeApply,
    /// Peak RSS of the process doing the syncs.
    PeakRss,
    /// RSS after the syncs.
    Rss,
    /// p50 connect-to-first-byte through a ClusterIP (vs the no-rules floor).
    FirstPacket,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::FullSync,
        Metric::ChangeSync,
        Metric::ChangeApply,
        Metric::PeakRss,
        Metric::Rss,
        Metric::FirstPacket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::FullSync => "full_sync",
            Metric::ChangeSync => "one_change_sync",
            Metric::ChangeApply => "one_change_apply",
            Metric::PeakRss => "peak_rss",
            Metric::Rss => "rss_after_sync",
            Metric::FirstPacket => "first_packet_p50",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::FullSync | Metric::ChangeSync | Metric::ChangeApply => "ms",
            Metric::PeakRss | Metric::Rss => "MiB",
            Metric::FirstPacket => "us",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::FullSync => "Full sync (ms; baseline: the stock tool loading the same ruleset)",
            Metric::ChangeSync => "One endpoint changed: re-plan + diff + apply (ms, median)",
            Metric::ChangeApply => "One endpoint changed: incremental apply alone (ms, median)",
            Metric::PeakRss => "Peak RSS of the syncing process (MiB)",
            Metric::Rss => "RSS after the syncs (MiB)",
            Metric::FirstPacket => {
                "First packet: ClusterIP p50 connect-to-first-byte (us; baseline: no-rules floor, median of interleaved pairs)"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub mode: &'static str,
    pub services: usize,
    pub endpoints: usize,
    pub metric: Metric,
    /// `None`: not measured (see `note`).
    pub value: Option<f64>,
    /// The baseline's name and value, for metrics that have one.
    pub baseline: Option<(&'static str, Option<f64>)>,
    pub note: String,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        match (self.value, self.baseline) {
            (Some(v), Some((_, Some(b)))) if b > 0.0 => Some(v / b),
            _ => None,
        }
    }
}

/// `figures.csv`: one row per (mode, services, metric).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "mode,services,endpoints_per_service,metric,unit,value,baseline,baseline_value,ratio,note\n",
    );
    let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for r in rows {
        let (bname, bvalue) = r.baseline.unwrap_or(("", None));
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            r.mode,
            r.services,
            r.endpoints,
            r.metric.name(),
            r.metric.unit(),
            num(r.value),
            escape(bname),
            num(bvalue),
            r.ratio().map(|v| format!("{v:.3}")).unwrap_or_default(),
            escape(&r.note)
        );
    }
    out
}

fn escape(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// `summary.md`: per metric, a table of modes x scales ("value (ratio to baseline)").
pub fn markdown(rows: &[Row], modes: &[&'static str], scales: &[usize]) -> String {
    let mut out = String::new();
    for metric in Metric::ALL {
        let _ = writeln!(out, "### {}\n", metric.title());
        let _ = write!(out, "| mode |");
        for s in scales {
            let _ = write!(out, " {} services |", thousands(*s));
        }
        let _ = write!(out, "\n| --- |");
        for _ in scales {
            let _ = write!(out, " --- |");
        }
        out.push('\n');
        for mode in modes {
            let _ = write!(out, "| {mode} |");
            for s in scales {
                let cell = rows
                    .iter()
                    .find(|r| r.mode == *mode && r.services == *s && r.metric == metric)
                    .map_or_else(|| "—".to_string(), cell_text);
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn cell_text(r: &Row) -> String {
    match (r.value, r.baseline) {
        (None, _) => "not measured".into(),
        (Some(v), Some((name, Some(b)))) => {
            format!("{} ({name} {}: ratio {:.2})", short(v), short(b), v / b)
        }
        (Some(v), _) => short(v),
    }
}

/// A figure with three significant digits or so.
pub fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// 1000 -> "1k", 100000 -> "100k".
pub fn thousands(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The median of `v` (upper median for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_measured_rows_stay_in_the_csv_with_their_reason() {
        let rows = [Row {
            mode: "ipvs",
            services: 1000,
            endpoints: 10,
            metric: Metric::FullSync,
            value: None,
            baseline: Some(("ipvsadm -R", None)),
            note: "no backend, yet".into(),
        }];
        let text = csv(&rows);
        assert_eq!(
            text.lines().nth(1),
            Some("ipvs,1000,10,full_sync,ms,,ipvsadm -R,,,\"no backend, yet\"")
        );
        assert!(markdown(&rows, &["ipvs"], &[1000]).contains("| ipvs | not measured |"));
    }

    #[test]
    fn ratios_need_both_figures() {
        let mut row = Row {
            mode: "nftables",
            services: 1000,
            endpoints: 10,
            metric: Metric::FullSync,
            value: Some(50.0),
            baseline: Some(("nft -f", Some(200.0))),
            note: String::new(),
        };
        assert_eq!(row.ratio(), Some(0.25));
        row.baseline = Some(("nft -f", None));
        assert_eq!(row.ratio(), None);
    }
}
