//! Issue 10 §1: idle processes busy-looped on their own watch events.
//! Listing a watched directory made open/close events on it, which woke the
//! process, which listed again: an idle worker used 37–75% of a core. These
//! tests measure the process CPU time of an idle worker and an idle master
//! over a window. The bound is a sanity bound (a busy loop uses hundreds of
//! milliseconds per second), not a timing assertion.

use std::path::Path;
use std::time::{Duration, Instant};

use hps_tests::*;

const STUDY: &str = r#"{"format_version":1,"name":"idle",
    "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
    "objective":{"metric":"value","direction":"minimize"},
    "sampler":{"kind":"random","seed":0},"budget":{"trials":2},
    "mode":{"kind":"sync","batch":2},
    "trainer":{"kind":"function","name":"branin","sleep_s":600}}"#;

/// User + system CPU seconds of process `pid`, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds `pid` uses over `window`.
fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    let t = Instant::now();
    // A window, not a wait for a condition: the measurement needs time to pass.
    std::thread::sleep(window);
    (cpu_seconds(pid) - before) / t.elapsed().as_secs_f64()
}

fn wait_for_log(p: &Proc, what: &str) {
    wait_until(Duration::from_secs(60), what, || {
        p.log_text().contains(what)
    });
}

#[test]
fn idle_worker_and_master_do_not_busy_loop_on_their_own_watch_events() {
    if !Path::new("/proc/self/stat").exists() {
        println!("SKIPPED: no /proc to read process CPU time from");
        return;
    }
    let (tmp, study) = temp_study(STUDY);
    // A worker with nothing to claim: no master has proposed anything yet.
    let worker = spawn_worker(&study, "w0", &tmp.path().join("w0.log"), &[]);
    wait_until(Duration::from_secs(60), "the first heartbeat", || {
        study.join("heartbeats/w0.json").exists()
    });
    let idle_worker = cpu_over(worker.pid(), Duration::from_secs(3));
    // A master waiting on a sync batch whose trials take 600 s: it has
    // nothing to do until a result comes.
    let master = spawn_master(&study, &tmp.path().join("m.log"), &[]);
    wait_for_log(&master, "proposed");
    wait_until(Duration::from_secs(60), "a trial claimed", || {
        !dir_names(&study.join("running")).is_empty()
    });
    let idle_master = cpu_over(master.pid(), Duration::from_secs(3));
    println!("idle worker: {idle_worker:.3} CPU s/s, idle master: {idle_master:.3} CPU s/s");
    assert!(
        idle_worker < 0.05,
        "an idle worker used {idle_worker:.3} CPU seconds per second"
    );
    assert!(
        idle_master < 0.05,
        "a waiting master used {idle_master:.3} CPU seconds per second"
    );
}
