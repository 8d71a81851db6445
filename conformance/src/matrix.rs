//! The result matrix: scenario × backend, each cell pass, FAIL (expected vs observed) or n/a
//! (with the reason). No silent skips: a cell is never empty.

use serde::{Deserialize, Serialize};
use std::fmt::{self, Display, Formatter};
use std::time::Duration;

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    Pass,
    Fail(String),
    NotApplicable(String),
}

/// All results of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    pub backends: Vec<String>,
    /// Scenario name, then one cell per backend (same order as `backends`).
    pub rows: Vec<(String, Vec<Cell>)>,
    pub wall_time: Duration,
}

impl Matrix {
    /// `rows` x `columns`, every cell FAIL with `why`: the shape of a run that could not happen
    /// (e.g. a VM that did not boot), so it is never silently missing from a table.
    pub fn all_failed(rows: &[String], columns: &[String], why: &str, wall_time: Duration) -> Self {
        Self {
            backends: columns.to_vec(),
            rows: rows
                .iter()
                .map(|r| (r.clone(), vec![Cell::Fail(why.to_string()); columns.len()]))
                .collect(),
            wall_time,
        }
    }

    /// Overwrites the cells `other` has (same scenario and column names); the rest stay.
    pub fn fill_from(&mut self, other: &Self) {
        for (name, cells) in &mut self.rows {
            let Some((_, theirs)) = other.rows.iter().find(|(n, _)| n == name) else {
                continue;
            };
            for (i, column) in self.backends.iter().enumerate() {
                let found = other.backends.iter().position(|b| b == column);
                if let (Some(cell), Some(slot)) =
                    (found.and_then(|j| theirs.get(j)), cells.get_mut(i))
                {
                    *slot = cell.clone();
                }
            }
        }
    }

    /// Appends `other`'s columns. Rows are matched by scenario name; a row only one side has
    /// gets FAIL cells on the other side, naming it.
    pub fn append_columns(&mut self, other: &Self) {
        let before = self.backends.len();
        for (name, cells) in &mut self.rows {
            match other.rows.iter().find(|(n, _)| n == name) {
                Some((_, theirs)) => cells.extend(theirs.iter().cloned()),
                None => cells.extend(
                    other
                        .backends
                        .iter()
                        .map(|b| Cell::Fail(format!("{b} has no result for this scenario"))),
                ),
            }
        }
        for (name, theirs) in &other.rows {
            if !self.rows.iter().any(|(n, _)| n == name) {
                let mut cells: Vec<Cell> = self.backends[..before]
                    .iter()
                    .map(|b| Cell::Fail(format!("{b} has no result for this scenario")))
                    .collect();
                cells.extend(theirs.iter().cloned());
                self.rows.push((name.clone(), cells));
            }
        }
        self.backends.extend(other.backends.iter().cloned());
        self.wall_time += other.wall_time;
    }

    pub fn failures(&self) -> usize {
        self.count(|c| matches!(c, Cell::Fail(_)))
    }

    pub fn passes(&self) -> usize {
        self.count(|c| *c == Cell::Pass)
    }

    pub fn not_applicable(&self) -> usize {
        self.count(|c| matches!(c, Cell::NotApplicable(_)))
    }

    fn count(&self, f: impl Fn(&Cell) -> bool) -> usize {
        self.rows
            .iter()
            .flat_map(|(_, cells)| cells)
            .filter(|c| f(c))
            .count()
    }
}

impl Display for Matrix {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(8)
            .max(8);
        write!(f, "{:width$}", "scenario")?;
        for b in &self.backends {
            write!(f, "  {b:16}")?;
        }
        writeln!(f)?;
        let mut notes = Vec::new();
        for (name, cells) in &self.rows {
            write!(f, "{name:width$}")?;
            for (b, cell) in self.backends.iter().zip(cells) {
                let short = match cell {
                    Cell::Pass => "pass",
                    Cell::Fail(why) => {
                        notes.push(format!("FAIL {name} [{b}]: {why}"));
                        "FAIL"
                    }
                    Cell::NotApplicable(why) => {
                        notes.push(format!("n/a  {name} [{b}]: {why}"));
                        "n/a"
                    }
                };
                write!(f, "  {short:16}")?;
            }
            writeln!(f)?;
        }
        for n in notes {
            writeln!(f, "{n}")?;
        }
        write!(
            f,
            "{} passed, {} failed, {} not applicable ({} scenarios x {} backends) in {:.1}s",
            self.passes(),
            self.failures(),
            self.not_applicable(),
            self.rows.len(),
            self.backends.len(),
            self.wall_time.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_columns_line_up_by_scenario_and_gaps_fail() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut host = Matrix::all_failed(
            &names(&["a", "b"]),
            &names(&["nftables"]),
            "x",
            Duration::ZERO,
        );
        host.rows[0].1[0] = Cell::Pass;
        host.rows[1].1[0] = Cell::Pass;
        let mut vm = Matrix::all_failed(
            &names(&["b", "c"]),
            &names(&["nftables@k"]),
            "boot",
            Duration::ZERO,
        );
        let guest = Matrix {
            backends: names(&["nftables@k"]),
            rows: vec![("b".into(), vec![Cell::Pass])],
            wall_time: Duration::ZERO,
        };
        vm.fill_from(&guest);
        host.append_columns(&vm);
        assert_eq!(host.backends, names(&["nftables", "nftables@k"]));
        assert!(
            matches!(&host.rows[0].1[1], Cell::Fail(w) if w.contains("nftables@k has no result"))
        );
        assert_eq!(host.rows[1].1, vec![Cell::Pass, Cell::Pass]);
        assert_eq!(host.rows[2].0, "c");
        assert!(matches!(&host.rows[2].1[0], Cell::Fail(_)));
        assert_eq!(host.rows[2].1[1], Cell::Fail("boot".into()));
        let json = serde_json::to_string(&host).expect("json");
        let back: Matrix = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.rows, host.rows);
    }
}
