//! Headless Chromium for the end-to-end tests of the HTML report.
//!
//! The browser is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: it reads commands on fd 3 and writes answers
//! and events on fd 4, one JSON message per NUL-terminated frame), so no
//! WebDriver, no port and no extra crate is needed. The command line alone
//! cannot tell `console.error` from `console.log`: Chromium 156 logs both as
//! `INFO:CONSOLE`. Over the protocol, each message carries its level:
//! - `Runtime.consoleAPICalled` with type `error` or `assert`;
//! - `Runtime.exceptionThrown`: uncaught exceptions, syntax errors and
//!   unhandled promise rejections;
//! - `Log.entryAdded` with level `error`: e.g. a resource that failed to load.
//!
//! Every browser runs in its own process group with a fresh profile in a
//! temp directory; the group is killed when the load ends or times out.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one [`Chromium::load`] may take, start to close.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// After the load event, how long the page's timers may still run before
/// the DOM is read (one animation frame, then this).
const SETTLE_MS: u64 = 200;

/// The tallest screenshot taken, in CSS pixels.
const MAX_SHOT_HEIGHT: f64 = 16_384.0;

/// The width of the window, in CSS pixels.
const WIDTH: u32 = 1280;

/// What can go wrong while driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The browser could not be started.
    #[error("failed to start `{exe}`: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    /// A local file could not be read or written.
    #[error("failed to {what} `{path}`: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The browser answered a command with an error, or with something else
    /// than expected.
    #[error("DevTools `{method}`: {message}")]
    Protocol { method: String, message: String },
    /// The browser did not answer within [`LOAD_TIMEOUT`].
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { timeout: Duration, what: String },
    /// The browser exited (or closed its pipe) while we were waiting.
    #[error("the browser exited while waiting for {what}; its stderr ends with:\n{stderr}")]
    Exited { what: String, stderr: String },
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, BrowserError>;

/// A Chromium executable that was seen to start headless.
#[derive(Debug, Clone)]
pub struct Chromium {
    exe: PathBuf,
}

/// What a page became in the browser.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The DOM (`document.documentElement.outerHTML`) after the scripts ran.
    pub dom: String,
    /// Console errors, failed assertions, uncaught exceptions (syntax errors
    /// and unhandled rejections included) and error log entries, in order.
    pub console_errors: Vec<String>,
    /// The full-page PNG screenshot, `<shots>/<page stem>.png`.
    pub screenshot: PathBuf,
    /// One PNG per section asked for by [`Chromium::load_sections`].
    pub sections: Vec<PathBuf>,
}

/// For a test that needs a browser: a [`Chromium`] that loads a small page,
/// or `None` after printing `SKIPPED {test}: {reason}` to stderr. The
/// executable is `$HPS_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser` and `google-chrome` on `PATH`; the check runs once
/// per test process.
pub fn chromium_or_skip(test: &str) -> Option<Chromium> {
    static FOUND: OnceLock<std::result::Result<Chromium, String>> = OnceLock::new();
    match FOUND.get_or_init(probe) {
        Ok(c) => Some(c.clone()),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// Find the executable and load a page whose script inserts an element.
fn probe() -> std::result::Result<Chromium, String> {
    let exe = find_exe().ok_or_else(|| {
        "no Chromium: set HPS_CHROMIUM or install `chromium` (Debian package `chromium`)"
            .to_string()
    })?;
    let chromium = Chromium { exe };
    let tmp = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    let page = tmp.path().join("probe.html");
    let html = "<!doctype html><body><script>\
        document.body.appendChild(document.createElement('main')).id = 'probe-ok';\
        </script></body>";
    std::fs::write(&page, html).map_err(|e| format!("cannot write the probe page: {e}"))?;
    let shown = chromium.exe.display().to_string();
    let loaded = chromium
        .load(&page, tmp.path())
        .map_err(|e| format!("`{shown}` cannot load a page headless: {e}"))?;
    if !loaded.dom.contains("probe-ok") || !loaded.console_errors.is_empty() {
        return Err(format!(
            "`{shown}` did not run the probe page's script (errors: {:?})",
            loaded.console_errors
        ));
    }
    Ok(chromium)
}

/// `$HPS_CHROMIUM`, else a known browser name on `PATH`.
fn find_exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HPS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

impl Chromium {
    /// The executable this harness starts.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Open `page` (a local file) headless, let its scripts run, and return
    /// its DOM, its console errors and a full-page screenshot saved in
    /// `shots` (created if missing). Gives up after [`LOAD_TIMEOUT`]; the
    /// browser and all its processes are gone when this returns.
    pub fn load(&self, page: &Path, shots: &Path) -> Result<Loaded> {
        self.load_sections(page, shots, None)
    }

    /// [`Chromium::load`], plus one screenshot per element matching
    /// `sections` (a CSS selector; each element needs an `id`), saved as
    /// `<shots>/<page stem>-<id>.png`, listed in [`Loaded::sections`].
    pub fn load_sections(
        &self,
        page: &Path,
        shots: &Path,
        sections: Option<&str>,
    ) -> Result<Loaded> {
        let page = page.canonicalize().map_err(|source| BrowserError::Io {
            what: "find",
            path: page.to_path_buf(),
            source,
        })?;
        std::fs::create_dir_all(shots).map_err(|source| BrowserError::Io {
            what: "create",
            path: shots.to_path_buf(),
            source,
        })?;
        let stem = page.file_stem().unwrap_or_default().to_string_lossy();
        let screenshot = shots.join(format!("{stem}.png"));
        let mut cdp = Cdp::start(&self.exe)?;
        let session = cdp.open_tab()?;
        let s = Some(session.as_str());
        let url = format!("file://{}", page.display());
        let nav = cdp.call(s, "Page.navigate", json!({ "url": url }))?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            return Err(protocol("Page.navigate", format!("{url}: {err}")));
        }
        cdp.wait_event(s, "Page.loadEventFired")?;
        let settle =
            format!("new Promise(r => requestAnimationFrame(() => setTimeout(r, {SETTLE_MS})))");
        cdp.evaluate(s, &settle)?;
        let dom = cdp.evaluate(s, "document.documentElement.outerHTML")?;
        let dom = dom.as_str().unwrap_or_default().to_string();
        let png = cdp.screenshot(s)?;
        std::fs::write(&screenshot, png).map_err(|source| BrowserError::Io {
            what: "write",
            path: screenshot.clone(),
            source,
        })?;
        let mut shots_of_sections = Vec::new();
        if let Some(selector) = sections {
            for (id, clip) in cdp.boxes(s, selector)? {
                let png = cdp.clip(s, clip)?;
                let path = shots.join(format!("{stem}-{id}.png"));
                std::fs::write(&path, png).map_err(|source| BrowserError::Io {
                    what: "write",
                    path: path.clone(),
                    source,
                })?;
                shots_of_sections.push(path);
            }
        }
        let console_errors = cdp.errors();
        cdp.close();
        Ok(Loaded {
            dom,
            console_errors,
            screenshot,
            sections: shots_of_sections,
        })
    }
}

fn protocol(method: &str, message: impl Into<String>) -> BrowserError {
    BrowserError::Protocol {
        method: method.to_string(),
        message: message.into(),
    }
}

/// One browser process group and its DevTools pipe.
struct Cdp {
    child: Child,
    to: std::io::PipeWriter,
    from: Receiver<Value>,
    /// Events seen so far, in order (answers are not kept).
    events: Vec<Value>,
    next_id: u64,
    deadline: Instant,
    /// Holds the profile and the browser's stderr; removed on drop.
    profile: tempfile::TempDir,
}

impl Cdp {
    /// Start the browser headless with a fresh profile, in its own process
    /// group, the DevTools pipe on fds 3 and 4.
    fn start(exe: &Path) -> Result<Cdp> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| BrowserError::Io { what, path, source }
        };
        let profile = tempfile::tempdir().map_err(io("create", Path::new("temp dir")))?;
        let err_path = profile.path().join("stderr.log");
        let stderr = std::fs::File::create(&err_path).map_err(io("create", &err_path))?;
        let (cmd_read, to) = std::io::pipe().map_err(io("create", Path::new("pipe")))?;
        let (from_raw, out_write) = std::io::pipe().map_err(io("create", Path::new("pipe")))?;
        let mut cmd = Command::new(exe);
        cmd.args(browser_args(&profile.path().join("profile")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let fds = [
            std::os::fd::AsRawFd::as_raw_fd(&cmd_read),
            std::os::fd::AsRawFd::as_raw_fd(&out_write),
        ];
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe { cmd.pre_exec(move || pipe_to_fds_3_and_4(fds)) };
        let child = cmd.spawn().map_err(|source| BrowserError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
        // Our copies of the browser's ends, so its exit closes the pipe.
        drop((cmd_read, out_write));
        let (tx, from) = std::sync::mpsc::channel();
        std::thread::spawn(move || read_frames(from_raw, tx));
        Ok(Cdp {
            child,
            to,
            from,
            events: Vec::new(),
            next_id: 0,
            deadline: Instant::now() + LOAD_TIMEOUT,
            profile,
        })
    }

    /// A new tab on `about:blank`, attached, with the Runtime, Log and Page
    /// domains enabled; returns its session id.
    fn open_tab(&mut self) -> Result<String> {
        let t = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target = str_field(&t, "targetId", "Target.createTarget")?;
        let a = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )?;
        let session = str_field(&a, "sessionId", "Target.attachToTarget")?;
        for domain in ["Runtime", "Log", "Page"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}))?;
        }
        Ok(session)
    }

    /// Send a command and wait for its answer, keeping the events that come
    /// before it.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut frame = msg.to_string().into_bytes();
        frame.push(0);
        if self.to.write_all(&frame).is_err() {
            return Err(self.exited(method));
        }
        loop {
            let m = self.next_message(method)?;
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                self.events.push(m);
            } else if let Some(e) = m.get("error") {
                return Err(protocol(method, e.to_string()));
            } else {
                return Ok(m.get("result").cloned().unwrap_or(Value::Null));
            }
        }
    }

    /// Wait for the event `method` of `session`.
    fn wait_event(&mut self, session: Option<&str>, method: &str) -> Result<Value> {
        loop {
            let m = self.next_message(method)?;
            let hit = m.get("method").and_then(Value::as_str) == Some(method)
                && m.get("sessionId").and_then(Value::as_str) == session;
            self.events.push(m);
            if hit {
                return Ok(self.events.last().cloned().unwrap_or(Value::Null));
            }
        }
    }

    fn next_message(&mut self, what: &str) -> Result<Value> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.from.recv_timeout(left) {
            Ok(m) => Ok(m),
            Err(RecvTimeoutError::Timeout) => Err(BrowserError::Timeout {
                timeout: LOAD_TIMEOUT,
                what: what.to_string(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(self.exited(what)),
        }
    }

    fn exited(&self, what: &str) -> BrowserError {
        let text = std::fs::read_to_string(self.profile.path().join("stderr.log"));
        let text = text.unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        BrowserError::Exited {
            what: what.to_string(),
            stderr: match lines.len() {
                0 => "(nothing)".to_string(),
                n => lines[n.saturating_sub(20)..].join("\n"),
            },
        }
    }

    /// Evaluate `expr` in the page (awaiting a promise) and return its value.
    fn evaluate(&mut self, session: Option<&str>, expr: &str) -> Result<Value> {
        let params = json!({"expression": expr, "awaitPromise": true, "returnByValue": true});
        let r = self.call(session, "Runtime.evaluate", params)?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(protocol("Runtime.evaluate", format!("{expr}: {e}")));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// The page boxes (x, y, width, height in CSS px) of the elements that
    /// match `selector`, by id.
    fn boxes(&mut self, session: Option<&str>, selector: &str) -> Result<Vec<(String, [f64; 4])>> {
        let expr = format!(
            "Array.from(document.querySelectorAll({})).filter(e => e.id).map(e => {{ \
               const r = e.getBoundingClientRect(); \
               return [e.id, r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})",
            serde_json::to_string(selector).unwrap_or_default()
        );
        let v = self.evaluate(session, &expr)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        let n = |i: usize| e[i].as_f64();
                        Some((e[0].as_str()?.to_string(), [n(1)?, n(2)?, n(3)?, n(4)?]))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A PNG of one box of the page, up to [`MAX_SHOT_HEIGHT`] tall.
    fn clip(&mut self, session: Option<&str>, [x, y, w, h]: [f64; 4]) -> Result<Vec<u8>> {
        let params = json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": {"x": x, "y": y, "width": w.max(1.0), "height": h.clamp(1.0, MAX_SHOT_HEIGHT), "scale": 1},
        });
        let shot = self.call(session, "Page.captureScreenshot", params)?;
        let data = str_field(&shot, "data", "Page.captureScreenshot")?;
        base64::decode(data).map_err(|e| protocol("Page.captureScreenshot", e.to_string()))
    }

    /// A PNG of the whole page, up to [`MAX_SHOT_HEIGHT`] tall.
    fn screenshot(&mut self, session: Option<&str>) -> Result<Vec<u8>> {
        let m = self.call(session, "Page.getLayoutMetrics", json!({}))?;
        let size = &m["cssContentSize"];
        let w = size["width"].as_f64().unwrap_or(f64::from(WIDTH)).max(1.0);
        let h = size["height"]
            .as_f64()
            .unwrap_or(1.0)
            .clamp(1.0, MAX_SHOT_HEIGHT);
        let params = json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1},
        });
        let shot = self.call(session, "Page.captureScreenshot", params)?;
        let data = str_field(&shot, "data", "Page.captureScreenshot")?;
        base64::decode(data).map_err(|e| protocol("Page.captureScreenshot", e.to_string()))
    }

    /// The errors among the events seen, as one line each.
    fn errors(&self) -> Vec<String> {
        self.events.iter().filter_map(error_text).collect()
    }

    /// Ask the browser to close, give it a moment, then kill what is left of
    /// its process group (the drop does it).
    fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({}));
        // The pipe closes when the browser has exited.
        let until = Instant::now() + Duration::from_secs(5);
        while let Ok(_) | Err(RecvTimeoutError::Timeout) = self
            .from
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if Instant::now() >= until {
                break;
            }
        }
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        // The leader is not reaped yet, so its group id cannot be reused:
        // this reaches the browser's own processes only.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The arguments of a headless browser with `profile` as its profile.
fn browser_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--disable-gpu",
        "--remote-debugging-pipe",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        "--disable-crash-reporter",
        "--disable-breakpad",
        // No network: every host name resolves to nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        args.push("--no-sandbox".into());
    }
    args.push(format!("--window-size={WIDTH},900"));
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("about:blank".into());
    args
}

/// In the child: put `fds[0]` on fd 3 and `fds[1]` on fd 4, inheritable.
fn pipe_to_fds_3_and_4(fds: [i32; 2]) -> std::io::Result<()> {
    // Move both out of the way first, so neither is overwritten by the other.
    let mut high = [0; 2];
    for (h, fd) in high.iter_mut().zip(fds) {
        // SAFETY: fcntl on an fd we own; async-signal-safe.
        *h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *h < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (h, target) in high.into_iter().zip([3, 4]) {
        // SAFETY: dup2 onto a fixed fd; the copy does not inherit CLOEXEC.
        if unsafe { libc::dup2(h, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Read NUL-terminated JSON frames until the pipe closes.
fn read_frames(mut from: std::io::PipeReader, tx: std::sync::mpsc::Sender<Value>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut chunk) {
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let frame: Vec<u8> = buf.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice(&frame[..end]) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    }
}

fn str_field(v: &Value, field: &str, method: &str) -> Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| protocol(method, format!("no `{field}` in {v}")))
}

/// The line an error event stands for, or `None` for other events.
fn error_text(event: &Value) -> Option<String> {
    let p = &event["params"];
    match event.get("method")?.as_str()? {
        "Runtime.consoleAPICalled" => {
            let kind = p["type"].as_str()?;
            if kind != "error" && kind != "assert" {
                return None;
            }
            let args = p["args"].as_array().map(Vec::as_slice).unwrap_or_default();
            let text: Vec<String> = args.iter().map(remote_object_text).collect();
            Some(format!("console.{kind}: {}", text.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("exception");
            let text = d["text"].as_str().unwrap_or("Uncaught");
            Some(format!(
                "{text} {what} at {}:{}",
                d["url"].as_str().unwrap_or("?"),
                d["lineNumber"].as_i64().map_or(0, |l| l + 1)
            ))
        }
        "Log.entryAdded" => {
            let e = &p["entry"];
            (e["level"].as_str()? == "error").then(|| {
                format!(
                    "log ({}): {} {}",
                    e["source"].as_str().unwrap_or("?"),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                )
            })
        }
        _ => None,
    }
}

/// A console argument as text: its value, else its description.
fn remote_object_text(o: &Value) -> String {
    match o.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => o["description"].as_str().unwrap_or("?").to_string(),
    }
}
