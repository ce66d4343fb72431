//! Issue 11 §5: on a terminal, `hps-master run` shows one live progress
//! line (done/planned, running, best, ETA) with the log written above it.
//! The master runs inside a detached tmux session (a real terminal, 160×20)
//! and the test reads the screen with `tmux capture-pane`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hps_tests::{arg, bin, spawn_worker, temp_study, wait_until};

const STUDY: &str = r#"{"format_version":1,"name":"terminal",
  "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
  "objective":{"metric":"value","direction":"minimize"},
  "sampler":{"kind":"random","seed":5},"budget":{"trials":4},
  "mode":{"kind":"async","queue":2},
  "trainer":{"kind":"function","name":"branin","sleep_s":0.3}}"#;

/// A tmux server of our own (its socket in the test's temp dir), killed on
/// drop with everything running in it.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        hps_tests::run_cmd(Command::new("tmux").arg("-S").arg(&self.socket).args(args))
    }

    /// The pane's text as it shows, scrollback included (lines longer than
    /// the pane as it wraps them).
    fn capture(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-S", "-", "-t", "hps"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_or_skip(test: &str) -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED {test}: tmux is not installed");
    }
    ok
}

/// A shell word in single quotes.
fn quoted(p: &Path) -> String {
    format!("'{}'", arg(p).replace('\'', r"'\''"))
}

#[test]
fn run_on_a_terminal_shows_one_live_progress_line() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    if !tmux_or_skip("terminal::run_on_a_terminal_shows_one_live_progress_line") {
        return;
    }
    let (tmp, study) = temp_study(STUDY);
    let tmux = Tmux {
        socket: tmp.path().join("tmux.sock"),
    };
    // The pane stays open after the master exits, so its screen can be read.
    let script = format!(
        "{} run {} --rescan 0.2; echo \"hps-master exited $?\"; sleep 600",
        quoted(&bin("hps-master")),
        quoted(&study)
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "20",
        "-s",
        "hps",
        "-e",
        "RUST_LOG=info",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _worker = spawn_worker(
        &study,
        "w0",
        &tmp.path().join("w0.log"),
        &["--rescan", "0.2"],
    );

    let mut pane = String::new();
    wait_until(
        Duration::from_secs(120),
        "the master to exit in tmux",
        || {
            pane = tmux.capture();
            pane.contains("hps-master exited")
        },
    );
    std::fs::write(tmp.path().join("pane.txt"), &pane).unwrap();

    assert!(pane.contains("hps-master exited 0"), "{pane}");
    let bars: Vec<&str> = pane
        .lines()
        .filter(|l| l.contains(" trials  running"))
        .collect();
    assert_eq!(
        bars.len(),
        1,
        "one progress line, redrawn in place:\n{pane}"
    );
    let bar = bars[0];
    for part in ["4/4 trials", "running 0", "best value ", "(t0", "ETA 0s"] {
        assert!(
            bar.contains(part),
            "`{part}` missing from the progress line `{bar}`:\n{pane}"
        );
    }
    // The log went above the line, whole: every log line starts where a
    // line starts, and none is glued to the progress line.
    assert!(!bar.contains("INFO"), "{pane}");
    for l in pane.lines().filter(|l| l.contains("INFO")) {
        assert!(
            l.trim_start().starts_with("20"),
            "a log line cut or glued: `{l}`:\n{pane}"
        );
    }
    let finished = pane
        .lines()
        .filter(|l| l.contains("study finished;"))
        .count();
    assert_eq!(finished, 1, "{pane}");
    assert!(
        pane.contains("study finished: 4 trials, 4 results"),
        "{pane}"
    );
}
