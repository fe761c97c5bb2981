//! Repeated cells: every real-socket scenario runs each cell (a system at
//! one loss rate) `--repeat N` times, interleaved across systems (A, B, C,
//! then A, B, C again, so a noisy minute on the shared machine hits every
//! system), and reports the median with min–max of each figure. This module
//! owns the statistics (median, min, max over the runs that measured, the
//! count of failed runs), the generic sweep that interleaves the runs, and
//! the summary line (`… runs=N goodput_min=… goodput_max=… failed_runs=F`).
//!
//! A scenario gets all of it by giving its row type [`Measured`], a list of
//! [`Figure`]s, and calling [`sweep`].

use crate::paths::{NetPath, PathSpec};
use crate::procs::check_interrupt;
use crate::systems::System;
use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every scenario's per-run row tells the summary.
pub trait Measured {
    /// System name.
    fn system(&self) -> &str;
    /// Loss per direction, percent.
    fn loss_pct(&self) -> f64;
    /// Whether the run measured (false: it failed, see [`Measured::reason`]).
    fn ok(&self) -> bool;
    /// Why it failed (or a note on a run that measured).
    fn reason(&self) -> Option<&str>;
}

/// One figure a scenario summarises: how it is named in the line and read
/// from a run that measured.
pub struct Figure<R> {
    /// Key of the median in the line, e.g. `goodput_mbit`.
    pub key: &'static str,
    /// Stem of the spread keys, e.g. `goodput` for `goodput_min`/`goodput_max`.
    pub short: &'static str,
    /// Decimals printed.
    pub decimals: usize,
    /// What an infinite value prints as (`inf`, `timeout`).
    pub inf: &'static str,
    /// The value of a run that measured; infinite when the figure is
    /// unbounded (nothing delivered, an exchange that timed out).
    pub get: fn(&R) -> f64,
}

/// Median, minimum and maximum of a figure over the runs that measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median (the mean of the two middle values for an even count).
    #[serde(with = "finite_or_inf")]
    pub median: f64,
    /// Smallest value.
    #[serde(with = "finite_or_inf")]
    pub min: f64,
    /// Largest value.
    #[serde(with = "finite_or_inf")]
    pub max: f64,
}

/// The spread of `values` (infinities allowed, NaN ignored); None when
/// there are none.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        let (a, b) = (v[n / 2 - 1], v[n / 2]);
        if a == b {
            a
        } else {
            a / 2.0 + b / 2.0
        }
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// A cell's summary: one system at one loss rate over its runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// System name.
    pub system: String,
    /// Loss per direction, percent.
    pub loss_pct: f64,
    /// Runs attempted.
    pub runs: usize,
    /// Runs that failed.
    pub failed_runs: usize,
    /// The failed runs' reasons, `run K: …`.
    pub reasons: Vec<String>,
    /// Per figure (the scenario's order), its key and spread over the runs
    /// that measured (None when every run failed).
    pub figures: Vec<(String, Option<Spread>)>,
}

impl Summary {
    /// Summarises the runs of one cell (all rows have the same system and
    /// loss rate; `rows` must not be empty).
    pub fn of<R: Measured>(rows: &[&R], figures: &[Figure<R>]) -> Summary {
        let ok: Vec<&&R> = rows.iter().filter(|r| r.ok()).collect();
        let reasons = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.ok())
            .map(|(i, r)| format!("run {}: {}", i + 1, r.reason().unwrap_or("failed")))
            .collect();
        Summary {
            system: rows
                .first()
                .map_or_else(String::new, |r| r.system().to_string()),
            loss_pct: rows.first().map_or(0.0, |r| r.loss_pct()),
            runs: rows.len(),
            failed_runs: rows.len() - ok.len(),
            reasons,
            figures: figures
                .iter()
                .map(|f| {
                    let values: Vec<f64> = ok.iter().map(|r| (f.get)(r)).collect();
                    (f.key.to_string(), spread(&values))
                })
                .collect(),
        }
    }

    /// The spread of figure `key`.
    pub fn get(&self, key: &str) -> Option<Spread> {
        self.figures
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, s)| *s)
    }

    /// Whether every run failed.
    pub fn all_failed(&self) -> bool {
        self.failed_runs == self.runs
    }

    /// The summary line: `head`, each figure's median (`failed` when every
    /// run failed), `tail` (scenario-specific fields), `runs=N`, each
    /// figure's min and max, `failed_runs=F` when some failed, and the first
    /// failure's reason.
    pub fn line<R>(&self, head: &str, figures: &[Figure<R>], tail: &str) -> String {
        // A figure no successful run has (one only some systems report)
        // is left out rather than shown as failed.
        let some_ok = self.runs > self.failed_runs;
        let shown: Vec<&Figure<R>> = figures
            .iter()
            .filter(|f| !some_ok || self.get(f.key).is_some())
            .collect();
        let mut s = head.to_string();
        for f in &shown {
            let v = self.get(f.key).map(|x| x.median);
            s.push_str(&format!(" {}={}", f.key, value(v, f.decimals, f.inf)));
        }
        s.push_str(tail);
        s.push_str(&format!(" runs={}", self.runs));
        for f in &shown {
            let sp = self.get(f.key);
            s.push_str(&format!(
                " {}_min={} {}_max={}",
                f.short,
                value(sp.map(|x| x.min), f.decimals, f.inf),
                f.short,
                value(sp.map(|x| x.max), f.decimals, f.inf)
            ));
        }
        if self.failed_runs > 0 {
            s.push_str(&format!(" failed_runs={}", self.failed_runs));
            if let Some(r) = self.reasons.first() {
                s.push_str(&format!(" reason={r:?}"));
            }
        }
        s
    }
}

/// A figure as printed: the number, `inf` (or the figure's word for it), or
/// `failed`.
pub fn value(x: Option<f64>, decimals: usize, inf: &str) -> String {
    match x {
        Some(v) if v.is_infinite() => inf.to_string(),
        Some(v) => format!("{v:.decimals$}"),
        None => "failed".to_string(),
    }
}

/// Groups rows into cells (same loss rate and system), in first-seen
/// order, and summarises each.
pub fn summarize<R: Measured>(rows: &[R], figures: &[Figure<R>]) -> Vec<Summary> {
    let mut keys: Vec<(f64, String)> = Vec::new();
    for r in rows {
        let k = (r.loss_pct(), r.system().to_string());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|(loss, system)| {
            let cell: Vec<&R> = rows
                .iter()
                .filter(|r| r.loss_pct() == *loss && r.system() == system)
                .collect();
            Summary::of(&cell, figures)
        })
        .collect()
}

/// A sweep: one path per loss rate; on it `repeat` rounds of `systems`.
pub struct Plan<'a> {
    /// Loss rates, percent.
    pub losses: &'a [f64],
    /// The path of a loss rate.
    pub path: &'a dyn Fn(f64) -> PathSpec,
    /// Systems, in order.
    pub systems: &'a [System],
    /// Runs per cell (≥ 1).
    pub repeat: usize,
}

/// What a sweep calls back with.
pub trait Scenario {
    /// The per-run row.
    type Row: Measured;
    /// Measures `system` on `path`, run `run` (1-based); never fails: a
    /// failure is a row.
    fn run(&mut self, system: System, path: &NetPath, run: usize) -> Self::Row;
    /// The row of a run that could not start (e.g. the path failed).
    fn failed(&mut self, system: System, spec: &PathSpec, run: usize, reason: String) -> Self::Row;
    /// Sees each run's row as it is measured.
    fn each_run(&mut self, _row: &Self::Row) {}
    /// Sees each cell's rows and summary once its runs are done.
    fn each_cell(&mut self, _rows: &[&Self::Row], _summary: &Summary) {}
    /// The figures summarised.
    fn figures(&self) -> &[Figure<Self::Row>];
}

/// Runs `plan`: per loss rate one path, then rounds 1..=repeat, each round
/// every system once (A, B, C, A, B, C…). Returns every run's row (in the
/// order measured) and every cell's summary.
pub fn sweep<S: Scenario>(plan: &Plan, scenario: &mut S) -> Result<(Vec<S::Row>, Vec<Summary>)> {
    let repeat = plan.repeat.max(1);
    let mut rows: Vec<S::Row> = Vec::new();
    let mut summaries = Vec::new();
    for &loss in plan.losses {
        check_interrupt()?;
        let spec = (plan.path)(loss);
        let start = rows.len();
        match NetPath::up(spec) {
            Ok(path) => {
                for run in 1..=repeat {
                    for &system in plan.systems {
                        check_interrupt()?;
                        let row = scenario.run(system, &path, run);
                        check_interrupt()?;
                        scenario.each_run(&row);
                        rows.push(row);
                    }
                }
            }
            Err(e) => {
                for run in 1..=repeat {
                    for &system in plan.systems {
                        let row = scenario.failed(system, &spec, run, format!("path: {e:#}"));
                        scenario.each_run(&row);
                        rows.push(row);
                    }
                }
            }
        }
        for &system in plan.systems {
            let cell: Vec<&S::Row> = rows[start..]
                .iter()
                .filter(|r| r.system() == system.name())
                .collect();
            let summary = Summary::of(&cell, scenario.figures());
            scenario.each_cell(&cell, &summary);
            summaries.push(summary);
        }
    }
    Ok((rows, summaries))
}

/// Serde for figures that may be infinite: a number, or the string `inf`
/// (JSON has no infinity).
pub mod finite_or_inf {
    use super::*;

    /// Writes a finite value as a number and an infinite one as `"inf"` or
    /// `"-inf"`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "inf" } else { "-inf" })
        } else {
            s.serialize_f64(*v)
        }
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum V {
            N(f64),
            S(String),
        }
        match V::deserialize(d)? {
            V::N(x) => Ok(x),
            V::S(s) if s == "inf" => Ok(f64::INFINITY),
            V::S(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
            V::S(s) => Err(serde::de::Error::custom(format!(
                "{s:?} is not a figure (a number or \"inf\")"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Row {
        system: &'static str,
        loss: f64,
        value: Option<f64>,
    }

    impl Measured for Row {
        fn system(&self) -> &str {
            self.system
        }
        fn loss_pct(&self) -> f64 {
            self.loss
        }
        fn ok(&self) -> bool {
            self.value.is_some()
        }
        fn reason(&self) -> Option<&str> {
            self.value.is_none().then_some("no reply")
        }
    }

    const FIGS: &[Figure<Row>] = &[Figure {
        key: "goodput_mbit",
        short: "goodput",
        decimals: 2,
        inf: "inf",
        get: |r| r.value.unwrap_or(f64::NAN),
    }];

    fn row(system: &'static str, loss: f64, value: Option<f64>) -> Row {
        Row {
            system,
            loss,
            value,
        }
    }

    #[test]
    fn median_min_max_of_odd_and_even_counts() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = spread(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(spread(&[5.0]).unwrap().median, 5.0);
        assert!(spread(&[]).is_none());
        assert!(spread(&[f64::NAN]).is_none());
        // An unbounded run (nothing delivered) sorts last.
        let s = spread(&[1.2, f64::INFINITY, 1.4]).unwrap();
        assert_eq!((s.median, s.max), (1.4, f64::INFINITY));
        let s = spread(&[f64::INFINITY, f64::INFINITY]).unwrap();
        assert_eq!(s.median, f64::INFINITY);
    }

    #[test]
    fn cells_group_interleaved_runs_and_count_failures() {
        let rows = vec![
            row("a", 0.0, Some(10.0)),
            row("b", 0.0, None),
            row("a", 0.0, Some(12.0)),
            row("b", 0.0, None),
            row("a", 0.0, Some(11.0)),
            row("b", 0.0, Some(4.0)),
            row("a", 10.0, None),
        ];
        let cells = summarize(&rows, FIGS);
        assert_eq!(cells.len(), 3);
        let a = &cells[0];
        assert_eq!((a.system.as_str(), a.runs, a.failed_runs), ("a", 3, 0));
        let g = a.get("goodput_mbit").unwrap();
        assert_eq!((g.median, g.min, g.max), (11.0, 10.0, 12.0));
        let b = &cells[1];
        assert_eq!((b.runs, b.failed_runs), (3, 2));
        assert_eq!(b.reasons, vec!["run 1: no reply", "run 2: no reply"]);
        assert_eq!(b.get("goodput_mbit").unwrap().median, 4.0);
        let a10 = &cells[2];
        assert!(a10.all_failed());
        assert!(a10.get("goodput_mbit").is_none());
    }

    #[test]
    fn summary_lines_keep_the_format_and_add_the_spread() {
        let rows = [
            row("a", 5.0, Some(1.0)),
            row("a", 5.0, None),
            row("a", 5.0, Some(3.0)),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let s = Summary::of(&refs, FIGS);
        assert_eq!(
            s.line("x system=a loss=5", FIGS, ""),
            "x system=a loss=5 goodput_mbit=2.00 runs=3 goodput_min=1.00 goodput_max=3.00 \
             failed_runs=1 reason=\"run 2: no reply\""
        );
        let failed = [row("a", 5.0, None)];
        let refs: Vec<&Row> = failed.iter().collect();
        let s = Summary::of(&refs, FIGS);
        assert_eq!(
            s.line("x system=a loss=5", FIGS, " extra=1"),
            "x system=a loss=5 goodput_mbit=failed extra=1 runs=1 goodput_min=failed \
             goodput_max=failed failed_runs=1 reason=\"run 1: no reply\""
        );
    }

    #[test]
    fn infinite_figures_survive_json() {
        let s = Spread {
            median: f64::INFINITY,
            min: 1.5,
            max: f64::INFINITY,
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"median":"inf","min":1.5,"max":"inf"}"#);
        let back: Spread = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Spread>(r#"{"median":"x","min":1,"max":1}"#).is_err());
    }
}
