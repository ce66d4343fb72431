//! A study on a real Slurm through `deploy/slurm/submit.sh`: a private
//! single-node cluster (munged, slurmctld, slurmd from the Debian packages)
//! in the test's temp directory, with two fake GPUs (character devices in
//! gres.conf), its own ports and its own munge socket, so nothing outside
//! the temp directory is touched. One master job and a worker array of two
//! tasks run `function` trials of 5 s; the test checks that
//! - each task sees its own GPU (CUDA_VISIBLE_DEVICES);
//! - `scancel --batch --signal=USR2` on a busy task hands its trial back,
//!   requeues the task, and it comes back under the same worker id;
//! - `scancel` of the master and `submit.sh --master-only` continue the study;
//! - the time limit (2 minutes, SIGUSR2 30 s before) hands a running trial
//!   back and requeues the task;
//! - every trial ends with exactly one accepted result, and the queue is
//!   empty at the end.
//!
//! Skips (and says so) only when Slurm cannot run here: not root, the
//! packages missing (.ci/run installs them), or no mknod for the fake GPUs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hps_tests::trial_ids;
use hps_tests::{
    arg, bin, find_in_path, init_study, json_stems, read_results, trial_log, wait_until,
};

const TRIALS: usize = 48;
const STUDY: &str = r#"{"format_version":1,"name":"slurm",
 "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
 "objective":{"metric":"value","direction":"minimize"},"sampler":{"kind":"random","seed":3},
 "budget":{"trials":48},"mode":{"kind":"async","queue":2},
 "trainer":{"kind":"function","name":"branin","sleep_s":5}}"#;

/// The daemons of one private Slurm; stopped (jobs cancelled first) on drop.
struct Slurm {
    root: PathBuf,
    conf: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The node's name as slurmd finds it: the short host name.
fn short_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match name.trim().split('.').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "localhost".into(),
    }
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Slurm {
    /// Start munged, slurmctld and slurmd in `root`; `Err(reason)` when
    /// Slurm cannot run on this machine (the test then skips).
    fn start(root: &Path) -> Result<Slurm, String> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Err("not root: slurmd and munged need root".into());
        }
        for (bin, pkg) in [
            ("munged", "munge"),
            ("slurmctld", "slurmctld"),
            ("slurmd", "slurmd"),
            ("sbatch", "slurm-client"),
            ("runuser", "util-linux"),
        ] {
            if find_in_path(bin).is_none() {
                return Err(format!(
                    "`{bin}` is not installed (Debian package `{pkg}`; .ci/run installs it)"
                ));
            }
        }
        // The munge user (created by the munge package) must reach its
        // files: tempdirs are 0700.
        let chmod = |p: &Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        std::fs::create_dir_all(root).unwrap();
        chmod(root, 0o755);
        chmod(root.parent().unwrap(), 0o755);
        for d in ["state", "spool", "gpu", "munge", "log"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for i in 0..2 {
            let dev = root.join(format!("gpu/nvidia{i}"));
            // A character device (like /dev/null, 1:3): Slurm only sets
            // CUDA_VISIBLE_DEVICES for device files.
            let ok = Command::new("mknod")
                .args([arg(&dev), "c", "1", "3"])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "cannot create the fake GPU device {} with mknod",
                    dev.display()
                ));
            }
        }
        let munge = root.join("munge");
        let key = munge.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .unwrap();
        std::fs::write(&key, &bytes).unwrap();
        chmod(&key, 0o400);
        let chown = Command::new("chown")
            .args(["-R", "munge:munge", arg(&munge)])
            .status()
            .is_ok_and(|s| s.success());
        if !chown {
            return Err("no `munge` user to run munged as (Debian package `munge`)".into());
        }
        let host = short_hostname();
        let socket = munge.join("munge.socket");
        let conf = root.join("slurm.conf");
        let r = |p: &str| root.join(p).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=hpstest\n\
                 SlurmctldHost={host}(127.0.0.1)\n\
                 SlurmUser=root\n\
                 AuthType=auth/munge\n\
                 CredType=cred/munge\n\
                 AuthInfo=socket={socket},cred_expire=10\n\
                 SlurmctldPort={cport}\n\
                 SlurmdPort={dport}\n\
                 StateSaveLocation={state}\n\
                 SlurmdSpoolDir={spool}\n\
                 SlurmctldPidFile={ctldpid}\n\
                 SlurmdPidFile={dpid}\n\
                 SlurmctldLogFile={ctldlog}\n\
                 SlurmdLogFile={dlog}\n\
                 ProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\n\
                 GresTypes=gpu\n\
                 SlurmdParameters=config_overrides\n\
                 SchedulerParameters=sched_interval=1\n\
                 ReturnToService=2\n\
                 MpiDefault=none\n\
                 KillWait=10\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs=8 Gres=gpu:2 State=UNKNOWN\n\
                 PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                socket = socket.display(),
                cport = free_port(),
                dport = free_port(),
                state = r("state"),
                spool = r("spool"),
                ctldpid = r("slurmctld.pid"),
                dpid = r("slurmd.pid"),
                ctldlog = r("log/slurmctld.log"),
                dlog = r("log/slurmd.log"),
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("gres.conf"),
            format!(
                "AutoDetect=off\nName=gpu File={}\nName=gpu File={}\n",
                r("gpu/nvidia0"),
                r("gpu/nvidia1")
            ),
        )
        .unwrap();
        let slurm = Slurm {
            root: root.to_path_buf(),
            conf,
        };
        let t = Instant::now();
        let m = |f: &str| munge.join(f).display().to_string();
        slurm.daemon(Command::new("runuser").args([
            "-u",
            "munge",
            "--",
            "munged",
            &format!("--socket={}", socket.display()),
            &format!("--key-file={}", key.display()),
            &format!("--pid-file={}", m("munged.pid")),
            &format!("--log-file={}", m("munged.log")),
            &format!("--seed-file={}", m("munged.seed")),
        ]));
        wait_until(Duration::from_secs(20), "munged's socket", || {
            socket.exists()
        });
        slurm.daemon(slurm.cmd("slurmctld").arg("-i"));
        slurm.daemon(&mut slurm.cmd("slurmd"));
        let up = (0..600).any(|_| {
            let out = slurm.run("sinfo", &["-h", "-o", "%t"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
            false
        });
        assert!(up, "Slurm did not come up within 60 s:\n{}", slurm.logs());
        eprintln!(
            "slurm: private cluster up in {:.1}s (node {host}, 2 fake GPUs, {})",
            t.elapsed().as_secs_f64(),
            slurm.conf.display()
        );
        Ok(slurm)
    }

    /// A Slurm command (daemon or client) on this cluster's configuration.
    fn cmd(&self, prog: &str) -> Command {
        let path = find_in_path(prog).unwrap_or_else(|| PathBuf::from(prog));
        let mut c = Command::new(path);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn daemon(&self, cmd: &mut Command) {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    fn run(&self, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"))
    }

    /// `(job id, state)` of every job in the queue (array tasks as `A_K`).
    fn queue(&self) -> Vec<(String, String)> {
        let out = self.run("squeue", &["-h", "-o", "%i %T"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// How many times Slurm restarted a job (`Restarts=` of scontrol).
    fn restarts(&self, job: &str) -> Option<u32> {
        let out = self.run("scontrol", &["show", "job", job]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("Restarts="))
            .and_then(|n| n.parse().ok())
    }

    fn logs(&self) -> String {
        ["log/slurmctld.log", "log/slurmd.log", "munge/munged.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}:\n{}",
                    hps_tests::tail_lines(&self.root.join(f), 30)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Jobs first, so that no batch script outlives its slurmd.
        let ids: Vec<String> = self.queue().into_iter().map(|(id, _)| id).collect();
        if !ids.is_empty() {
            let mut args = vec!["--full"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.run("scancel", &args);
            let t = Instant::now();
            while !self.queue().is_empty() && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let pids: Vec<i32> = ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"]
            .iter()
            .filter_map(|f| pid_in(&self.root.join(f)))
            .collect();
        for &pid in &pids {
            // SAFETY: the pids of the daemons this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let t = Instant::now();
        while pids.iter().any(|&p| alive(p)) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for &pid in pids.iter().filter(|&&p| alive(p)) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Anything still running from this test's temp directory: the
        // cluster's spool or the study (a batch script or worker of a job
        // whose slurmd died first).
        let mark = self
            .root
            .parent()
            .unwrap_or(&self.root)
            .display()
            .to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != std::process::id() as i32 && String::from_utf8_lossy(&cmdline).contains(&mark)
            {
                // SAFETY: a process started for this test's private cluster.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The text of every log of the study's jobs, by file name.
fn job_logs(study: &Path) -> BTreeMap<String, String> {
    let dir = study.join("slurm/logs");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

fn all_logs(study: &Path) -> String {
    job_logs(study)
        .into_iter()
        .map(|(f, t)| format!("=== {f}\n{t}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panic with `what`, the jobs' logs, the queue and the daemons' logs.
fn fail(slurm: &Slurm, study: &Path, what: &str) -> ! {
    panic!(
        "{what}\n{}\nqueue: {:?}\n{}",
        all_logs(study),
        slurm.queue(),
        slurm.logs()
    )
}

/// The job ids in `DIR/slurm/jobs` for `kind` (`master` or `workers`).
fn jobs(study: &Path, kind: &str) -> Vec<String> {
    std::fs::read_to_string(study.join("slurm/jobs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == kind)
        .map(|(_, id)| id.trim().to_string())
        .collect()
}

fn heartbeat(study: &Path, worker: &str) -> Option<hps_common::Heartbeat> {
    let p = study.join(format!("heartbeats/{worker}.json"));
    let text = std::fs::read_to_string(&p).ok()?;
    hps_common::parse_versioned(&p, &text).ok()
}

fn submit(slurm: &Slurm, study: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm/submit.sh");
    let bin_dir = bin("hps-master").parent().unwrap().to_path_buf();
    let out = slurm
        .cmd("bash")
        .arg(&script)
        .arg(study)
        .args(args)
        .env("HPS_BIN_DIR", &bin_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "submit.sh {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_study_survives_requeues_preemption_and_the_time_limit_on_a_real_slurm() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let slurm = match Slurm::start(&tmp.path().join("slurm")) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let study = tmp.path().join("study");
    init_study(&study, STUDY);
    let started = Instant::now();
    let at = || format!("t+{:.0}s", started.elapsed().as_secs_f64());
    let fail = |what: &str| fail(&slurm, &study, what);
    let wait = |secs: u64, what: &str, cond: &mut dyn FnMut() -> bool| {
        let t = Instant::now();
        while !cond() {
            if t.elapsed() > Duration::from_secs(secs) {
                fail(&format!("timed out after {secs}s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Workers: 2-minute limit, SIGUSR2 30 s before it.
    let out = submit(
        &slurm,
        &study,
        &[
            "--workers",
            "2",
            "--time",
            "2",
            "--signal-margin",
            "30",
            "--master-time",
            "10",
        ],
    );
    eprint!("{out}");
    let master = jobs(&study, "master").pop().unwrap();
    let array = jobs(&study, "workers").pop().unwrap();
    let task = |k: usize| format!("{array}_{k}");
    let worker = |k: usize| format!("slurm-{array}_{k}");
    let log_of = |k: usize| {
        job_logs(&study)
            .remove(&format!("worker-{array}_{k}.out"))
            .unwrap_or_default()
    };
    eprintln!(
        "slurm: master job {master}, worker array {array} (tasks {}, {})",
        task(0),
        task(1)
    );

    // Each task on its own GPU, and its heartbeat names its job.
    wait(60, "both workers training", &mut || {
        (0..2).all(|k| {
            heartbeat(&study, &worker(k)).is_some_and(|hb| {
                hb.state == hps_common::WorkerState::Training
                    && hb.slurm.as_ref().is_some_and(|j| j.job == task(k))
            })
        })
    });
    let gpu = |k: usize| -> String {
        let log = log_of(k);
        let line = log
            .lines()
            .find(|l| l.contains("running under Slurm"))
            .unwrap_or_else(|| fail(&format!("worker {k} did not log its GPU")));
        line.split("cuda_visible_devices=")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (g0, g1) = (gpu(0), gpu(1));
    eprintln!(
        "slurm: {} sees CUDA_VISIBLE_DEVICES={g0}, {} sees CUDA_VISIBLE_DEVICES={g1}",
        worker(0),
        worker(1)
    );
    assert!(
        !g0.is_empty() && !g1.is_empty() && g0 != g1,
        "GPUs {g0:?} and {g1:?}"
    );
    let status = String::from_utf8_lossy(
        &Command::new(bin("hps-master"))
            .args(["status", arg(&study)])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let table = status
        .lines()
        .skip_while(|l| !l.contains("slurm job"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("slurm: hps-master status, workers table:\n{table}");
    for k in 0..2 {
        assert!(
            table
                .lines()
                .any(|l| l.contains(&worker(k)) && l.contains(&format!(" {} ", task(k)))),
            "status does not show job {} for {}:\n{status}",
            task(k),
            worker(k)
        );
    }

    // Preemption notice by hand: USR2 to task 0's batch script while busy.
    let mut hb = None;
    wait(30, "task 0 training", &mut || {
        hb = heartbeat(&study, &worker(0)).filter(|b| b.trial.is_some());
        hb.is_some()
    });
    let hb = hb.unwrap();
    let held = hb.trial.clone().unwrap();
    let out = slurm.run("scancel", &["--batch", "--signal=USR2", &task(0)]);
    assert!(out.status.success(), "scancel --signal=USR2: {out:?}");
    eprintln!(
        "slurm: {} scancel --batch --signal=USR2 {} while it trains {held}",
        at(),
        task(0)
    );
    wait(30, "task 0 to hand its trial back", &mut || {
        log_of(0).contains("interrupted; handing the trial back")
    });
    let running = json_stems(&study.join("running"));
    assert!(
        !running
            .iter()
            .any(|r| r == &format!("{held}@{}", worker(0))),
        "{held} still held by {}: {running:?}",
        worker(0)
    );
    wait(60, "task 0 back after its requeue", &mut || {
        log_of(0).contains("start 1 after requeues")
            && heartbeat(&study, &worker(0)).is_some_and(|b| b.pid != hb.pid && b.seq > 0)
    });
    assert_eq!(
        slurm.restarts(&task(0)),
        Some(1),
        "Slurm's restart count of {}",
        task(0)
    );
    eprintln!(
        "slurm: {} {} requeued (Restarts=1) and back as worker {}",
        at(),
        task(0),
        worker(0)
    );

    // The master cancelled, then submitted again: the study continues.
    let out = slurm.run("scancel", &[&master]);
    assert!(out.status.success(), "scancel {master}: {out:?}");
    wait(30, "the master job to end", &mut || {
        !slurm.queue().iter().any(|(id, _)| id == &master)
    });
    let done_before = trial_ids(&study, "results").len();
    let out = submit(&slurm, &study, &["--master-only", "--master-time", "10"]);
    eprint!("{out}");
    let master2 = jobs(&study, "master").pop().unwrap();
    assert_ne!(master2, master);
    eprintln!("slurm: {} scancel {master} (master) with {done_before} results; resubmitted as job {master2}", at());
    wait(60, "results after the new master", &mut || {
        trial_ids(&study, "results").len() >= done_before + 3
    });
    assert!(
        job_logs(&study)
            .get(&format!("master-{master2}.out"))
            .is_some_and(|l| l.contains("master started")),
        "the new master did not start"
    );

    // The time limit: SIGUSR2 30 s before it, mid-trial, and a requeue.
    wait(
        150,
        "a time-limit requeue of a task that held a trial",
        &mut || {
            (0..2).any(|k| {
                // From one signal's line to the next.
                log_of(k).split("SIGUSR2 with").skip(1).any(|run| {
                    run.contains("the time limit's warning")
                        && run.contains("interrupted; handing the trial back")
                        && run.contains("requeue after time limit")
                })
            })
        },
    );
    eprintln!(
        "slurm: {} a time limit reached a task mid-trial; it handed the trial back and requeued",
        at()
    );

    // The end: every trial exactly once, nothing queued.
    wait(200, "finished.json", &mut || {
        study.join("finished.json").exists()
    });
    wait(60, "an empty queue", &mut || slurm.queue().is_empty());
    eprintln!("slurm: {} study finished, squeue empty", at());

    // cancel.sh finds the study's jobs in DIR/slurm/jobs (all ended by now).
    let cancel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm/cancel.sh");
    let out = slurm.cmd("bash").arg(&cancel).arg(&study).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && [&master, &master2, &array]
                .iter()
                .all(|id| text.contains(id.as_str())),
        "cancel.sh: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let logs = job_logs(&study);
    for (file, text) in &logs {
        for line in text.lines() {
            if line.contains("requeue after")
                || line.contains("SIGUSR2 with")
                || line.contains("after requeues")
            {
                eprintln!("slurm: {file}: {line}");
            }
        }
    }
    let results = read_results(&study);
    let settings = trial_ids(&study, "settings");
    assert_eq!(settings.len(), TRIALS, "settings: {settings:?}");
    assert_eq!(results.len(), TRIALS);
    let mut handed_back = 0;
    for id in &settings {
        let log = trial_log(&study, id);
        assert_eq!(log.accepted.len(), 1, "{id}: {log:?}");
        handed_back += log.runs.len().saturating_sub(1);
    }
    for sub in ["pending", "running"] {
        assert!(json_stems(&study.join(sub)).is_empty(), "{sub}/ not empty");
    }
    let requeues: usize = logs
        .values()
        .map(|t| t.matches("requeue after").count())
        .sum();
    let time_limits: usize = logs
        .values()
        .map(|t| t.matches("requeue after time limit").count())
        .sum();
    assert!(
        requeues >= 2 && time_limits >= 1,
        "requeues {requeues}, time limits {time_limits}"
    );
    eprintln!(
        "slurm: exactly once: {TRIALS} trials, {} results, each accepted once; {handed_back} runs \
         handed back and resumed; {requeues} requeues by the batch scripts ({time_limits} at the \
         time limit); jobs {master} and {master2} (masters), array {array}",
        results.len()
    );
}
