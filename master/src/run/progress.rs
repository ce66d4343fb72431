//! The live progress line of `hps-master run` on a terminal (issue 11 §5):
//! trials done out of planned, trials running, the best so far and an
//! estimated time to finish, redrawn in place by `indicatif`.
//!
//! The binary makes a [`ProgressLine`] only when stderr is a terminal, and
//! routes the log through [`ProgressLine::log_writer`], which clears the line,
//! writes the log line above it and redraws it, so the two never garble
//! each other. Elsewhere (log files, pipes, the tests) there is no line and
//! the log is as before.
//!
//! The estimate: the mean wall time of the finished trials (each result's
//! `wall_time_s`, pruned and failed trials included, since they used their
//! worker too) times the trials left, divided by how many run side by side
//! (the trials running now, at least the live workers, at least one). It
//! needs one finished trial; before that it shows `?`. It assumes the
//! trials left take as long as those done, which a pruner or a
//! multi-fidelity schedule makes only roughly true.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the line shows; taken from the master at every scan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub planned: u64,
    /// Trials with a result.
    pub done: u64,
    /// Trials a worker holds now.
    pub running: usize,
    /// Workers with a fresh heartbeat.
    pub live_workers: usize,
    /// Mean `wall_time_s` of the trials with a result.
    pub mean_wall_s: Option<f64>,
    /// The objective's name, and the best trial with its value.
    pub metric: String,
    pub best: Option<(String, f64)>,
}

impl Snapshot {
    /// Time to finish, or `None` before the first result (or when the
    /// numbers are not finite).
    pub fn eta(&self) -> Option<Duration> {
        let left = self.planned.saturating_sub(self.done);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let side_by_side = self.running.max(self.live_workers).max(1) as f64;
        let secs = self.mean_wall_s? * left as f64 / side_by_side;
        Duration::try_from_secs_f64(secs).ok()
    }

    /// The text after the bar: `running 2 · best val_error 0.1234 (t0003) · ETA 1m 20s`.
    pub fn message(&self) -> String {
        let best = match &self.best {
            Some((id, v)) => format!("best {} {v:.4} ({id})", self.metric),
            None => format!("best {} –", self.metric),
        };
        let eta = self.eta().map_or("?".to_string(), |d| {
            let s = d.as_secs();
            match (s / 3600, s % 3600 / 60, s % 60) {
                (0, 0, s) => format!("{s}s"),
                (0, m, s) => format!("{m}m {s:02}s"),
                (h, m, _) => format!("{h}h {m:02}m"),
            }
        });
        format!("running {} · {best} · ETA {eta}", self.running)
    }
}

/// The progress line on stderr. Clones share the one line.
#[derive(Clone, Debug)]
pub struct ProgressLine {
    bar: ProgressBar,
}

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLine {
    /// A line drawn on stderr (indicatif draws nothing where stderr is not
    /// a terminal). It appears at the first update.
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        // The template is a constant: it parses, which a unit test checks.
        let style =
            ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        ProgressLine { bar }
    }

    /// The writer for the log subscriber: each log line is written to
    /// stderr with the progress line cleared, and the line redrawn below.
    pub fn log_writer(&self) -> impl Fn() -> LogWriter + Send + Sync + 'static {
        let bar = self.bar.clone();
        move || LogWriter { bar: bar.clone() }
    }

    /// Redraw the line with `s`.
    pub(crate) fn update(&self, s: &Snapshot) {
        self.bar.set_length(s.planned);
        self.bar.set_position(s.done.min(s.planned));
        self.bar.set_message(s.message());
    }

    /// Leave the line on the screen as it is last drawn, with `s`.
    pub(crate) fn finish(&self, s: &Snapshot) {
        self.update(s);
        self.bar.abandon();
    }
}

/// `[elapsed] [bar] done/planned trials  running … · best … · ETA …`
const TEMPLATE: &str = "[{elapsed_precise}] [{bar:30}] {pos}/{len} trials  {msg}";

/// One log line's way to stderr around the progress line (see
/// [`ProgressLine::log_writer`]).
pub struct LogWriter {
    bar: ProgressBar,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing's fmt layer writes each event with one write_all.
        self.bar
            .suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            planned: 10,
            done: 4,
            running: 2,
            live_workers: 2,
            mean_wall_s: Some(30.0),
            metric: "val_error".into(),
            best: Some(("t0003".into(), 0.123_456)),
        }
    }

    #[test]
    fn eta_is_mean_wall_time_times_trials_left_over_those_running() {
        // 6 left × 30 s / 2 side by side.
        assert_eq!(snapshot().eta(), Some(Duration::from_secs(90)));
        let idle = Snapshot {
            running: 0,
            live_workers: 0,
            ..snapshot()
        };
        assert_eq!(idle.eta(), Some(Duration::from_secs(180)), "at least one");
        let more_workers = Snapshot {
            live_workers: 3,
            ..snapshot()
        };
        assert_eq!(more_workers.eta(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn eta_is_unknown_before_a_result_and_zero_at_the_end() {
        let none = Snapshot {
            mean_wall_s: None,
            ..snapshot()
        };
        assert_eq!(none.eta(), None);
        let nan = Snapshot {
            mean_wall_s: Some(f64::NAN),
            ..snapshot()
        };
        assert_eq!(nan.eta(), None);
        let done = Snapshot {
            done: 10,
            ..snapshot()
        };
        assert_eq!(done.eta(), Some(Duration::ZERO));
    }

    #[test]
    fn message_shows_running_best_and_eta() {
        assert_eq!(
            snapshot().message(),
            "running 2 · best val_error 0.1235 (t0003) · ETA 1m 30s"
        );
        let start = Snapshot {
            done: 0,
            mean_wall_s: None,
            best: None,
            ..snapshot()
        };
        assert_eq!(start.message(), "running 2 · best val_error – · ETA ?");
        let long = Snapshot {
            mean_wall_s: Some(3600.0),
            ..snapshot()
        };
        assert!(long.message().ends_with("ETA 3h 00m"), "{}", long.message());
    }

    #[test]
    fn the_template_parses_and_a_hidden_line_passes_log_lines_through() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
        let p = ProgressLine::with_target(ProgressDrawTarget::hidden());
        p.update(&snapshot());
        assert_eq!((p.bar.position(), p.bar.length()), (4, Some(10)));
        let mut w = (p.log_writer())();
        assert_eq!(w.write(b"").unwrap(), 0);
        p.finish(&Snapshot {
            done: 10,
            ..snapshot()
        });
        assert_eq!(p.bar.position(), 10);
    }
}
