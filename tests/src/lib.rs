//! Helpers for the end-to-end tests: find the real binaries, run them in a
//! per-test temp directory, and wait with timeouts instead of sleeping.

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
            exe.parent().and_then(Path::parent).expect("target directory").to_path_buf()
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
        let out = std::fs::File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", bin.display()));
        Proc { name: name.to_string(), child: Some(child), log: log.to_path_buf() }
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
                panic!("{} did not exit within {timeout:?}; log:\n{}", self.name, self.log_text());
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

/// Run a binary to completion and capture its output.
pub fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("failed to run {}: {e}", bin.display()))
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
    for e in std::fs::read_dir(study.join("logs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".log") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.insert(id.to_string(), text.lines().filter(|l| l.starts_with("# trial ")).count());
        }
    }
    out
}
