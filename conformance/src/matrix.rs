//! The result matrix: scenario × backend, each cell pass, FAIL (expected vs observed) or n/a
//! (with the reason). No silent skips: a cell is never empty.

use serde::Serialize;
use std::fmt::{self, Display, Formatter};
use std::time::Duration;

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Cell {
    Pass,
    Fail(String),
    NotApplicable(String),
}

/// All results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub backends: Vec<String>,
    /// Scenario name, then one cell per backend (same order as `backends`).
    pub rows: Vec<(String, Vec<Cell>)>,
    pub wall_time: Duration,
}

impl Matrix {
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
