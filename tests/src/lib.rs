//! Helpers for the end-to-end tests: find the real binaries, run them in a
//! per-test temp directory, and wait with timeouts instead of sleeping.

pub mod browser;
pub use browser::{chromium_or_skip, Chromium, Loaded};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`hps-master`, `hps-worker`). `cargo test
/// --workspace` builds them next to the test executables; HPS_BIN_DIR
/// overrides the directory.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("HPS_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current test executable");
            // target/<profile>/deps/<test> -> target/<profile>
            exe.parent()
                .and_then(Path::parent)
                .expect("target directory")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "`{}` not found; run the tests with `cargo test --workspace` (which builds the binaries) \
         or build them first with `cargo build -p hps-master -p hps-worker`",
        path.display()
    );
    path
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Start `bin` with `args`; stdout and stderr go to `log`.
    pub fn spawn(name: &str, bin: &Path, args: &[&str], log: &Path) -> Proc {
        Proc::spawn_cmd(
            name,
            Command::new(bin).args(args).env("RUST_LOG", "info"),
            log,
        )
    }

    /// Start `cmd` (a script, or a binary with its own environment);
    /// stdout and stderr go to `log`.
    pub fn spawn_cmd(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {:?}: {e}", cmd.get_program()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait for exit up to `timeout`; panics (with the log) on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > timeout {
                panic!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long a command run by [`run`] may take before the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Run a binary to completion and capture its output; panics (after
/// killing it) if it takes longer than [`RUN_TIMEOUT`].
pub fn run(bin: &Path, args: &[&str]) -> Output {
    run_cmd(Command::new(bin).args(args))
}

/// [`run`] for a prepared command (e.g. with a working directory).
pub fn run_cmd(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            // SAFETY: our own child, not yet reaped (its waiter still waits).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not exit within {RUN_TIMEOUT:?}");
        }
    }
}

/// Poll `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Held for their whole run by the tests that load every core (`scale`,
/// `chaos`) and by those whose timing a loaded machine breaks (a Ctrl-C
/// that must land mid-trial, a live progress line, Slurm's time limits,
/// heartbeat graces over sshfs), so that the two kinds never overlap. All
/// end-to-end tests are one test binary, so a process-wide lock does it;
/// a failing holder does not poison it for the rest.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The program `name` on PATH, or in `/usr/sbin` or `/sbin` (daemons that
/// a non-login PATH may lack): the real-component tests skip without it.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The file of trial `id` in the per-trial folder `folder` of `study`
/// (`settings`, `results`, `logs` or `weights`), where the study's layout
/// puts it: `results/t000/t000003.json` in a directory of format 2,
/// `results/t000003.json` in one of format 1. The one helper the tests
/// build per-trial paths with.
pub fn trial_file(study: &Path, folder: &str, id: &str) -> PathBuf {
    let ext = match folder {
        "logs" => "log",
        "weights" => "safetensors",
        _ => "json",
    };
    let base = study.join(folder);
    let base = match hps_shared_fs::layout::detect(study) {
        Ok(hps_shared_fs::Layout::Sharded) => base.join(hps_shared_fs::shard_of(id)),
        _ => base,
    };
    base.join(format!("{id}.{ext}"))
}

/// The ids of the trials with a file in the per-trial folder `folder` of
/// `study` (see [`trial_file`]), sorted, in either layout: the files of
/// the folder and of its shards. Temp files and other dot-files are
/// skipped.
pub fn trial_ids(study: &Path, folder: &str) -> Vec<String> {
    let ext = match folder {
        "logs" => ".log",
        "weights" => ".safetensors",
        _ => ".json",
    };
    let mut v = Vec::new();
    let mut dirs = vec![study.join(folder)];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if dir == study.join(folder) {
                    dirs.push(e.path());
                }
            } else if let Some(id) = name.strip_suffix(ext) {
                v.push(id.to_string());
            }
        }
    }
    v.sort();
    v
}

/// Panics unless `study` has the sharded layout (directory format 2) and
/// keeps it: no trial file directly in `settings/`, `results/` or `logs/`,
/// every file in its own shard, at most 1,000 files a shard.
pub fn assert_sharded(study: &Path) {
    assert_eq!(
        hps_shared_fs::layout::detect(study).ok(),
        Some(hps_shared_fs::Layout::Sharded),
        "{} is not a sharded study directory",
        study.display()
    );
    for folder in ["settings", "results", "logs"] {
        let Ok(rd) = std::fs::read_dir(study.join(folder)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            assert!(
                e.file_type().is_ok_and(|t| t.is_dir()),
                "{folder}/{name}: a file outside the shards of a sharded study"
            );
            let files: Vec<String> = std::fs::read_dir(e.path())
                .unwrap()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            assert!(
                files.len() <= 1000,
                "{folder}/{name}/ holds {} files",
                files.len()
            );
            for f in &files {
                let id = f.split('.').next().unwrap_or_default();
                assert_eq!(
                    hps_shared_fs::shard_of(id),
                    name,
                    "{folder}/{name}/{f} is not in its shard"
                );
            }
        }
    }
}

/// Names (without `.json`) of the files in `dir`, sorted, dot-files skipped.
pub fn json_stems(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// How many times each trial was started, from the `# trial` headers that
/// workers write to `logs/<id>.log` at every claim.
pub fn runs_per_trial(study: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for id in trial_ids(study, "logs") {
        {
            let text = std::fs::read_to_string(trial_file(study, "logs", &id)).unwrap();
            out.insert(
                id.to_string(),
                text.lines().filter(|l| l.starts_with("# trial ")).count(),
            );
        }
    }
    out
}

// ----- helpers for the reliability tests (chaos.rs, fuse.rs) ---------------

impl Proc {
    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Where this process's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Send SIGKILL and reap the process (so its pid is really gone, which a
    /// restarted master checks with `kill(pid, 0)`). Returns false if it had
    /// already exited on its own before the signal.
    pub fn kill9(&mut self, timeout: Duration) -> bool {
        let exited_before = self.try_wait().is_some();
        if !exited_before {
            self.signal(libc::SIGKILL);
            self.wait(timeout);
        }
        !exited_before
    }
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// All file names in `dir` (dot-files included), sorted; for failure reports.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What the per-trial log `logs/<id>.log` says about the runs of a trial.
/// Each run appends a `# trial <id> attempt <a> worker <w> ...` header when
/// it starts and a `# result accepted ...` / `# result rejected ...` line
/// when it got as far as publishing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialLog {
    /// `(attempt, worker)` of every run header, in order.
    pub runs: Vec<(u32, String)>,
    /// The header in force before each `# result accepted` line.
    pub accepted: Vec<Option<(u32, String)>>,
    /// Number of `# result rejected` lines.
    pub rejected: usize,
    /// Lines starting `# result ` that say neither (a write cut by a kill).
    pub partial: usize,
}

/// Parse `logs/<id>.log` of `study` (a missing log gives the default).
pub fn trial_log(study: &Path, id: &str) -> TrialLog {
    let text = std::fs::read_to_string(trial_file(study, "logs", id)).unwrap_or_default();
    let mut out = TrialLog::default();
    let mut current: Option<(u32, String)> = None;
    for line in text.lines() {
        // A header may follow a cut line on the same line; look for it anywhere.
        if let Some(pos) = line.find("# trial ") {
            let f: Vec<&str> = line[pos..].split_whitespace().collect();
            // # trial <id> attempt <a> worker <w> ...
            if f.len() >= 7 && f[3] == "attempt" && f[5] == "worker" {
                if let Ok(a) = f[4].parse::<u32>() {
                    current = Some((a, f[6].to_string()));
                    out.runs.push((a, f[6].to_string()));
                }
            }
            if pos > 0 && line.starts_with("# result ") {
                out.partial += 1;
            }
            continue;
        }
        if line.starts_with("# result accepted") {
            out.accepted.push(current.clone());
        } else if line.starts_with("# result rejected") {
            out.rejected += 1;
        } else if line.starts_with("# result") {
            out.partial += 1;
        }
    }
    out
}

// ----- launching the real binaries ------------------------------------------

/// `hps-master ARGS…` run to completion, output captured.
pub fn hps_master(args: &[&str]) -> Output {
    run(&bin("hps-master"), args)
}

/// `hps-worker ARGS…` run to completion, output captured.
pub fn hps_worker(args: &[&str]) -> Output {
    run(&bin("hps-worker"), args)
}

/// The stdout of a command that must succeed; panics with its stderr.
pub fn stdout_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Assert a command succeeded and printed nothing on stderr.
pub fn assert_quiet_ok(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "command {} with stderr: {err}",
        out.status
    );
}

/// The stderr of a command that must fail; panics if it succeeded.
pub fn stderr_err(out: Output) -> String {
    assert!(
        !out.status.success(),
        "command succeeded but should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as the `&str` argument of a command line.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Start `hps-master run STUDY ARGS…`; output to `log`, named after its
/// file stem (`m1.log` -> `m1`).
pub fn spawn_master(study: &Path, log: &Path, args: &[&str]) -> Proc {
    let mut all = vec!["run", arg(study)];
    all.extend_from_slice(args);
    let name = log
        .file_stem()
        .map_or("master".into(), |s| s.to_string_lossy());
    Proc::spawn(&name, &bin("hps-master"), &all, log)
}

/// Start `hps-worker STUDY --id ID ARGS…`; output to `log`.
pub fn spawn_worker(study: &Path, id: &str, log: &Path, args: &[&str]) -> Proc {
    let mut all = vec![arg(study), "--id", id];
    all.extend_from_slice(args);
    Proc::spawn(id, &bin("hps-worker"), &all, log)
}

impl Proc {
    /// Wait for exit up to `timeout` and assert it was a success, with the
    /// log on failure.
    pub fn wait_ok(&mut self, timeout: Duration) {
        let st = self.wait(timeout);
        assert!(
            st.success(),
            "{} failed ({st}):\n{}",
            self.name,
            self.log_text()
        );
    }
}

/// Write `study_json` to `<study>.json` beside `study` and create the study
/// directory from it (see [`init_from_file`]).
pub fn init_study(study: &Path, study_json: &str) {
    let file = study.with_extension("json");
    std::fs::write(&file, study_json).unwrap();
    init_from_file(study, &file);
}

/// Create the study directory with the real `hps-master init --study`;
/// panics with its stderr on failure.
pub fn init_from_file(study: &Path, file: &Path) {
    stdout_ok(hps_master(&["init", arg(study), "--study", arg(file)]));
}

/// Small generated IDX data (`train` training and `test` test images,
/// from `seed`) in `<dir>/data`; returns that directory.
pub fn idx_data(dir: &Path, train: usize, test: usize, seed: u64) -> PathBuf {
    let data = dir.join("data");
    hps_worker::cnn::write_idx_dir(&data, train, test, seed).expect("write IDX data");
    data
}

/// Read and parse `results/<id>.json`; panics with the parse error.
pub fn read_result(study: &Path, id: &str) -> hps_common::TrialResult {
    let p = trial_file(study, "results", id);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    hps_common::parse_versioned(&p, &text).unwrap_or_else(|e| panic!("{e}"))
}

/// Every result of `study`, by trial id.
pub fn read_results(study: &Path) -> Vec<hps_common::TrialResult> {
    trial_ids(study, "results")
        .iter()
        .map(|id| read_result(study, id))
        .collect()
}

/// Whether `python3` can be run here.
pub fn python3() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// For a test that needs `python3`: whether it can run; if not, it prints
/// `SKIPPED` with the reason, and the test returns.
pub fn python3_or_skip() -> bool {
    let ok = python3();
    if !ok {
        eprintln!("SKIPPED: python3 is not installed");
    }
    ok
}

/// The processes of one study: a master and its workers, killed on drop.
pub struct Cluster {
    pub master: Proc,
    pub workers: Vec<Proc>,
}

impl Cluster {
    /// Start `hps-master run STUDY --rescan R` and one
    /// `hps-worker STUDY --id <id> --rescan R <args…>` per entry of
    /// `workers`, logs in `logs` (`m.log`, `<id>.log`).
    pub fn start(study: &Path, logs: &Path, rescan: &str, workers: &[(&str, &[&str])]) -> Cluster {
        let master = spawn_master(study, &logs.join("m.log"), &["--rescan", rescan]);
        let workers = workers
            .iter()
            .map(|(id, extra)| {
                let mut args = vec!["--rescan", rescan];
                args.extend_from_slice(extra);
                spawn_worker(study, id, &logs.join(format!("{id}.log")), &args)
            })
            .collect();
        Cluster { master, workers }
    }

    /// Wait up to `timeout` for the master and 60 s more for each worker,
    /// assert every exit status is 0 (with the log on failure) and return
    /// the master's log.
    pub fn finish(mut self, timeout: Duration) -> String {
        self.master.wait_ok(timeout);
        for w in &mut self.workers {
            w.wait_ok(Duration::from_secs(60));
        }
        self.master.log_text()
    }
}

/// Run a study to the end: [`Cluster::start`] then [`Cluster::finish`].
pub fn run_study(
    study: &Path,
    logs: &Path,
    rescan: &str,
    workers: &[(&str, &[&str])],
    timeout: Duration,
) -> String {
    Cluster::start(study, logs, rescan, workers).finish(timeout)
}

/// `w0`, `w1`, … `w<n-1>`.
pub fn worker_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i}")).collect()
}

/// The worker arguments of a cnn study on `data`, one thread.
pub fn cnn_args(data: &Path) -> [&str; 4] {
    ["--data", arg(data), "--threads", "1"]
}

/// The stems of the study files in `examples/`, each a preset's name.
pub fn example_presets() -> Vec<String> {
    json_stems(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"))
}

/// Copy the directory tree `src` to `dst` (files and folders only).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A fresh temp directory holding the study `<tmp>/study`, created from
/// `study_json` by [`init_study`]. Keep the `TempDir`: dropping it removes
/// the directory.
pub fn temp_study(study_json: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let study = tmp.path().join("study");
    init_study(&study, study_json);
    (tmp, study)
}

/// [`run_study`] with one plain worker `w0`, rescanning every 0.2 s.
pub fn run_one_worker(study: &Path, logs: &Path, timeout: Duration) -> String {
    run_study(study, logs, "0.2", &[("w0", &[])], timeout)
}

/// Assert that `text` contains every one of `parts`, showing it if not.
pub fn assert_contains_all(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "`{p}` missing from:\n{text}");
    }
}

/// A study made from `study_json` whose master recorded and published
/// `pending` settings and then stopped cleanly (`SIGTERM`), with no worker
/// yet: the start of tests that damage a study in flight.
pub fn recorded_study(study_json: &str, pending: usize) -> (tempfile::TempDir, PathBuf) {
    let (tmp, study) = temp_study(study_json);
    let args = ["--rescan", "0.2", "--lease-interval", "0.3"];
    let mut m = spawn_master(&study, &tmp.path().join("m0.log"), &args);
    wait_until(Duration::from_secs(30), "the pending settings", || {
        json_stems(&study.join("pending")).len() == pending
    });
    m.signal(libc::SIGTERM);
    m.wait_ok(Duration::from_secs(30));
    (tmp, study)
}
