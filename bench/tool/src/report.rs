//! The results and the Markdown table: one row per figure, one column per
//! target, each proxy's rate followed by its ratio to `direct`.

use std::fmt::Write;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Figure {
    KeepAlive1k,
    Latency1k,
    Cpu1k,
    NewConnection,
    CpuNewConnection,
    KeepAlive64k,
    Download10m,
    ConnectUpload,
    ConnectDownload,
    Https1k,
    HttpsCpu,
    IdleRequest,
    IdleTunnel,
}

impl Figure {
    pub(crate) const ALL: [Figure; 13] = [
        Figure::KeepAlive1k,
        Figure::Latency1k,
        Figure::Cpu1k,
        Figure::NewConnection,
        Figure::CpuNewConnection,
        Figure::KeepAlive64k,
        Figure::Download10m,
        Figure::ConnectUpload,
        Figure::ConnectDownload,
        Figure::Https1k,
        Figure::HttpsCpu,
        Figure::IdleRequest,
        Figure::IdleTunnel,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Figure::KeepAlive1k => "keep-alive 1 KiB req/s",
            Figure::Latency1k => "keep-alive 1 KiB p50 / p99",
            Figure::Cpu1k => "proxy CPU per request (keep-alive 1 KiB)",
            Figure::NewConnection => "new connection per request, 1 KiB req/s",
            Figure::CpuNewConnection => "proxy CPU per request (new connection per request)",
            Figure::KeepAlive64k => "keep-alive 64 KiB req/s",
            Figure::Download10m => "10 MiB download MB/s",
            Figure::ConnectUpload => "CONNECT upload MB/s",
            Figure::ConnectDownload => "CONNECT download MB/s",
            Figure::Https1k => "HTTPS 1 KiB through CONNECT req/s (64 TLS connections, keep-alive)",
            Figure::HttpsCpu => "proxy CPU per HTTPS request",
            Figure::IdleRequest => "RSS per idle incomplete request",
            Figure::IdleTunnel => "RSS per idle CONNECT tunnel",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    /// Requests/s or MB/s: higher is better, shown with its ratio.
    Rate(f64),
    Latency {
        p50_ms: f64,
        p99_ms: f64,
    },
    /// CPU µs per response; `origin` marks nginx's own cost (direct).
    Micros {
        us: f64,
        origin: bool,
    },
    Kib(f64),
    NotApplicable,
    Failed(String),
}

/// One target's results.
pub(crate) struct Column {
    pub(crate) name: String,
    cells: Vec<(Figure, Cell)>,
    /// Why the whole target failed (did not start, failed the checks).
    failure: Option<String>,
    /// Figures marked † and the note that explains the mark.
    marked: Vec<Figure>,
    note: Option<String>,
}

impl Column {
    pub(crate) fn new(name: &str) -> Column {
        Column {
            name: name.to_string(),
            cells: Vec::new(),
            failure: None,
            marked: Vec::new(),
            note: None,
        }
    }

    pub(crate) fn set(&mut self, figure: Figure, cell: Cell) {
        self.cells.retain(|(f, _)| *f != figure);
        self.cells.push((figure, cell));
    }

    pub(crate) fn get(&self, figure: Figure) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(f, _)| *f == figure)
            .map(|(_, c)| c)
    }

    /// Marks the whole target failed; its unmeasured figures show FAILED.
    pub(crate) fn fail(&mut self, reason: String) {
        self.failure = Some(reason);
    }

    /// Marks figures with † and says why, under the table.
    pub(crate) fn mark(&mut self, figures: &[Figure], note: String) {
        self.marked.extend_from_slice(figures);
        self.note = Some(note);
    }

    /// "† target: note", if the column has marked figures.
    pub(crate) fn note(&self) -> Option<String> {
        self.note.as_ref().map(|n| format!("† {}: {n}", self.name))
    }

    /// "target: figure: reason" for every failure.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(reason) = &self.failure {
            out.push(format!("{}: {reason}", self.name));
        }
        for (figure, cell) in &self.cells {
            if let Cell::Failed(reason) = cell {
                out.push(format!("{}: {}: {reason}", self.name, figure.label()));
            }
        }
        out
    }
}

/// The Markdown table. The first column is the baseline (`direct`).
pub(crate) fn table(columns: &[Column]) -> String {
    let mut out = String::from("| figure |");
    for c in columns {
        let _ = write!(out, " {} |", c.name);
    }
    out.push_str("\n|---|");
    for _ in columns {
        out.push_str("---:|");
    }
    out.push('\n');
    let baseline = columns.first();
    for figure in Figure::ALL {
        let _ = write!(out, "| {} |", figure.label());
        for (i, column) in columns.iter().enumerate() {
            let text = match column.get(figure) {
                Some(cell) => {
                    let base = if i == 0 {
                        None
                    } else {
                        baseline.and_then(|b| b.get(figure))
                    };
                    let text = cell_text(cell, base);
                    if column.marked.contains(&figure) && !matches!(cell, Cell::Failed(_)) {
                        format!("{text} †")
                    } else {
                        text
                    }
                }
                None if column.failure.is_some() => "FAILED".to_string(),
                None => "-".to_string(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out
}

fn cell_text(cell: &Cell, baseline: Option<&Cell>) -> String {
    match cell {
        Cell::Rate(v) => match baseline {
            Some(Cell::Rate(base)) if *base > 0.0 => {
                format!("{} ({:.2}x)", rate(*v), v / base)
            }
            _ => rate(*v),
        },
        Cell::Latency { p50_ms, p99_ms } => format!("{} / {} ms", ms(*p50_ms), ms(*p99_ms)),
        Cell::Micros { us, origin: false } => format!("{us:.1} µs"),
        Cell::Micros { us, origin: true } => format!("({us:.1} µs nginx)"),
        Cell::Kib(k) => format!("{k:.1} KiB"),
        Cell::NotApplicable => "-".to_string(),
        Cell::Failed(_) => "FAILED".to_string(),
    }
}

/// Whole units with thousands separators, or one decimal below 100.
fn rate(v: f64) -> String {
    if v >= 100.0 {
        thousands(v.round() as u64)
    } else {
        format!("{v:.1}")
    }
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cells() {
        assert_eq!(thousands(31234), "31,234");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(
            cell_text(&Cell::Rate(17_500.4), Some(&Cell::Rate(31_250.0))),
            "17,500 (0.56x)"
        );
        assert_eq!(
            cell_text(
                &Cell::Latency {
                    p50_ms: 0.9,
                    p99_ms: 1.84
                },
                None
            ),
            "0.90 / 1.8 ms"
        );
        assert_eq!(
            cell_text(&Cell::Rate(5.0), Some(&Cell::Failed("x".into()))),
            "5.0"
        );
    }

    #[test]
    fn failed_column_shows_failed_cells() {
        let mut direct = Column::new("direct");
        direct.set(Figure::KeepAlive1k, Cell::Rate(100.0));
        let mut broken = Column::new("squid");
        broken.fail("did not start".into());
        let text = table(&[direct, broken]);
        assert!(
            text.contains("| keep-alive 1 KiB req/s | 100 | FAILED |"),
            "{text}"
        );
    }

    #[test]
    fn marked_cells_carry_a_dagger() {
        let mut direct = Column::new("direct");
        direct.set(Figure::KeepAlive1k, Cell::Rate(100.0));
        let mut quirky = Column::new("tinyproxy");
        quirky.set(Figure::KeepAlive1k, Cell::Rate(50.0));
        quirky.mark(&[Figure::KeepAlive1k], "closes".into());
        let text = table(&[direct, quirky]);
        assert!(text.contains("| 100 | 50.0 (0.50x) † |"), "{text}");
    }
}
