//! A worker on another "host": its own network namespace, joined to this
//! one by a veth pair, reaching the study directory over sshfs from a
//! private sshd on the host side. The master and a second worker use the
//! local directory. The remote worker is killed with SIGKILL in the middle
//! of a trial once; the master re-queues that trial when the worker's
//! heartbeat goes stale, the remote worker comes back on a fresh mount, and
//! the study must end with exactly one result per trial.
//!
//! The remote side runs under `ip netns exec`, which also gives the command
//! a mount namespace of its own: an sshfs mount made there is seen only by
//! processes of that same invocation. So a small wrapper script
//! (`remote.sh`, written into the temp dir) mounts sshfs and then `exec`s
//! the worker, and records the sshfs pid so the guards can stop it.
//!
//! The mount uses the options docs/protocol.md §6.3 recommends
//! ([`SSHFS_OPTS`]). Skips (and says so) only when a tool is missing, the
//! test is not root, /dev/fuse is missing, a network namespace cannot be
//! made, or FUSE cannot mount; after that everything is asserted.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    arg, bin, find_in_path, init_study, json_stems, read_results, runs_per_trial, spawn_master,
    spawn_worker, tail_lines, wait_until, Proc,
};
use hps_tests::{trial_file, trial_ids};

/// The sshfs options hps recommends (docs/protocol.md §6.3): no directory
/// cache, so a worker sees new `pending/` entries and a taken claim at its
/// next poll rather than up to 20 s later. Hard links must stay enabled
/// (never `disable_hardlink`): results are published with `link(2)`.
const SSHFS_OPTS: &str = "dir_cache=no";

/// Run a command to completion; `Err` carries its stderr.
fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `Some(reason)` when this machine cannot run the test.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: `ip netns add` and a second sshd need root".into());
    }
    for (tool, pkg) in [
        ("sshfs", "sshfs"),
        ("sshd", "openssh-server"),
        ("ssh-keygen", "openssh-client"),
        ("ip", "iproute2"),
        ("mountpoint", "util-linux"),
    ] {
        if find_in_path(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (Debian package `{pkg}`)"
            ));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    None
}

/// The other "host": a network namespace and a veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
}

impl Netns {
    /// A namespace and addresses named after this process, so runs on one
    /// machine do not collide: 10.213.X.Y/30, host .Y+1, namespace .Y+2.
    fn create() -> Result<Netns, String> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let name = format!("hps-sshfs-{pid}");
        sh("ip", &["netns", "add", &name])?;
        let host_if = format!("hpsh{}", pid % 10_000_000);
        let ns = Netns {
            name,
            host_if: host_if.clone(),
            host_ip: Ipv4Addr::new(
                10,
                213,
                ((pid >> 6) & 0xff) as u8,
                ((pid & 63) * 4 + 1) as u8,
            ),
        };
        let peer = format!("hpsn{}", pid % 10_000_000);
        let [a, b, c, d] = ns.host_ip.octets();
        let host_cidr = format!("{a}.{b}.{c}.{d}/30");
        let ns_cidr = format!("{a}.{b}.{c}.{}/30", d + 1);
        sh(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
            ],
        )?;
        sh("ip", &["link", "set", &peer, "netns", &ns.name])?;
        sh("ip", &["addr", "add", &host_cidr, "dev", &host_if])?;
        sh("ip", &["link", "set", &host_if, "up"])?;
        sh(
            "ip",
            &["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &peer],
        )?;
        sh("ip", &["-n", &ns.name, "link", "set", &peer, "up"])?;
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = sh("ip", &["link", "del", &self.host_if]);
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// Remove the namespaces and veths of earlier runs whose process is gone
/// (killed before its guards ran).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("hps-sshfs-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = sh("ip", &["link", "del", &format!("hpsh{pid}")]);
            let _ = sh("ip", &["netns", "del", name]);
        }
    }
}

/// A private sshd on the host end of the veth: its own config, host key,
/// authorized key and port, in the foreground (`-D`), stopped on drop.
struct Sshd {
    proc: Proc,
    addr: SocketAddr,
}

impl Sshd {
    fn start(dir: &Path, ip: Ipv4Addr, log: &Path) -> Sshd {
        let port = 22_022;
        for key in ["host_key", "user_key"] {
            sh(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", arg(&dir.join(key))],
            )
            .unwrap();
        }
        let auth = dir.join("authorized_keys");
        std::fs::copy(dir.join("user_key.pub"), &auth).unwrap();
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        std::fs::write(dir.join("known_hosts"), format!("[{ip}]:{port} {host_pub}")).unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 ClientAliveInterval 1\nClientAliveCountMax 5\n\
                 Subsystem sftp internal-sftp\n",
                dir.join("host_key").display(),
                dir.join("sshd.pid").display(),
                auth.display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation directory (systemd makes it when the
        // system sshd starts; CI has none running).
        let _ = std::fs::create_dir_all("/run/sshd");
        let sshd = find_in_path("sshd").unwrap();
        let proc = Proc::spawn("sshd", &sshd, &["-D", "-e", "-f", arg(&config)], log);
        let addr = SocketAddr::from((ip, port));
        let mut sshd = Sshd { proc, addr };
        wait_until(Duration::from_secs(20), "sshd to listen", || {
            if let Some(st) = sshd.proc.try_wait() {
                panic!("sshd exited ({st}):\n{}", sshd.proc.log_text());
            }
            TcpStream::connect_timeout(&sshd.addr, Duration::from_millis(200)).is_ok()
        });
        sshd
    }
}

/// The remote side: the script that mounts sshfs inside `ip netns exec`
/// and then runs the given command in the same mount namespace.
struct Remote<'a> {
    ns: &'a Netns,
    sshd: &'a Sshd,
    keys: PathBuf,
    script: PathBuf,
    /// The host's directory that sshfs serves.
    served: PathBuf,
    /// sshfs pid files, one per mount, for the guard to stop them.
    pid_files: Vec<PathBuf>,
}

const REMOTE_SH: &str = r#"#!/bin/sh
# remote.sh MOUNTPOINT PIDFILE SSHFS-ARGS... -- COMMAND...
# Runs under `ip netns exec`: mounts sshfs in this invocation's own mount
# namespace, then execs COMMAND there (so COMMAND sees the mount).
mnt=$1; pidfile=$2; shift 2
args=""
while [ "$1" != "--" ]; do args="$args $1"; shift; done
shift
# shellcheck disable=SC2086
sshfs -f $args "$mnt" </dev/null >>"$mnt.sshfs.log" 2>&1 &
echo $! > "$pidfile"
i=0
until mountpoint -q "$mnt"; do
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "remote.sh: sshfs exited before mounting $mnt:" >&2; cat "$mnt.sshfs.log" >&2; exit 97; }
  i=$((i + 1))
  [ $i -lt 200 ] || { echo "remote.sh: sshfs did not mount $mnt within 20 s" >&2; exit 98; }
  sleep 0.1
done
exec "$@"
"#;

impl<'a> Remote<'a> {
    fn new(tmp: &Path, ns: &'a Netns, sshd: &'a Sshd, served: &Path) -> Remote<'a> {
        let script = tmp.join("remote.sh");
        let mut f = std::fs::File::create(&script).unwrap();
        f.write_all(REMOTE_SH.as_bytes()).unwrap();
        drop(f);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Remote {
            ns,
            sshd,
            keys: tmp.to_path_buf(),
            script,
            served: served.to_path_buf(),
            pid_files: Vec::new(),
        }
    }

    /// `ip netns exec NS remote.sh MNT PIDFILE <sshfs args> -- COMMAND...`
    /// for a fresh mount point `mnt`.
    fn command(&mut self, mnt: &Path, command: &[&str]) -> (PathBuf, Vec<String>) {
        self.command_with(mnt, "", command)
    }

    /// [`Self::command`] with `extra` sshfs options after the chosen ones.
    fn command_with(
        &mut self,
        mnt: &Path,
        extra: &str,
        command: &[&str],
    ) -> (PathBuf, Vec<String>) {
        std::fs::create_dir_all(mnt).unwrap();
        let pid_file = mnt.with_extension("sshfs.pid");
        self.pid_files.push(pid_file.clone());
        // HPS_SSHFS_OPTS replaces the recommended options, to try others.
        let chosen = std::env::var("HPS_SSHFS_OPTS").unwrap_or_else(|_| SSHFS_OPTS.to_string());
        let chosen = if extra.is_empty() {
            chosen
        } else {
            format!("{chosen},{extra}")
        };
        let opts = format!(
            "{chosen},port={},IdentityFile={},UserKnownHostsFile={},\
             StrictHostKeyChecking=yes,BatchMode=yes,ConnectTimeout=10",
            self.sshd.addr.port(),
            self.keys.join("user_key").display(),
            self.keys.join("known_hosts").display(),
        );
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.ns.name.clone(),
            self.script.display().to_string(),
            mnt.display().to_string(),
            pid_file.display().to_string(),
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            opts,
            format!("root@{}:{}", self.sshd.addr.ip(), self.served.display()),
            "--".into(),
        ];
        args.extend(command.iter().map(|s| s.to_string()));
        (find_in_path("ip").unwrap(), args)
    }

    /// Start `command` on the remote host with the study mounted at `mnt`.
    fn spawn(&mut self, name: &str, mnt: &Path, command: &[&str], log: &Path) -> Proc {
        let (ip, args) = self.command(mnt, command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(name, &ip, &args, log)
    }
}

impl Remote<'_> {
    /// Stop every sshfs started so far. Stopping sshfs unmounts, and closes
    /// its ssh session (whose sshd child then exits).
    /// Waits for them to exit, so their ssh sessions close while the veth
    /// still carries the goodbye (a session cut off by deleting the veth
    /// would wait forever on the sshd side).
    fn stop_mounts(&mut self) {
        let pids: Vec<i32> = self
            .pid_files
            .drain(..)
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|t| t.trim().parse::<i32>().ok())
            .collect();
        for &pid in &pids {
            // SAFETY: kill with a pid read from the file this test wrote.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for pid in pids {
            // Not our child (its parent was the worker, or is init): wait
            // for /proc to forget it, or for it to be a zombie.
            let gone = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .is_some_and(|r| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true)
            };
            for _ in 0..100 {
                if gone() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Remote<'_> {
    fn drop(&mut self) {
        // Before the sshd guard stops the listener.
        self.stop_mounts();
    }
}

/// The trial's log and every process log line that names it: what a
/// failure needs.
fn story(tmp: &Path, study: &Path, id: &str) -> String {
    let mut out = format!(
        "logs/{id}.log:\n{}\n",
        std::fs::read_to_string(trial_file(study, "logs", id)).unwrap_or_default()
    );
    for name in ["master", "local", "remote-1", "remote-2"] {
        let text = std::fs::read_to_string(tmp.join(format!("{name}.log"))).unwrap_or_default();
        for l in text.lines().filter(|l| l.contains(id)) {
            out.push_str(&format!("[{name}] {l}\n"));
        }
    }
    out
}

#[test]
fn a_worker_on_another_host_over_sshfs_completes_the_study() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    if let Some(reason) = unavailable() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    // Declared first, so dropped last.
    let tmp = tempfile::tempdir().unwrap();
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot make a network namespace here: {e}");
            return;
        }
    };
    let served = tmp.path().join("served");
    let study = served.join("study");
    std::fs::create_dir_all(&served).unwrap();
    const TRIALS: usize = 16;
    init_study(
        &study,
        &format!(
            r#"{{"format_version":1,"name":"sshfs",
            "space":{{"x0":{{"type":"float","low":-5,"high":10}},"x1":{{"type":"float","low":0,"high":15}}}},
            "objective":{{"metric":"value","direction":"minimize"}},
            "sampler":{{"kind":"random","seed":5}},
            "budget":{{"trials":{TRIALS}}},
            "mode":{{"kind":"async","queue":4}},
            "trainer":{{"kind":"function","name":"branin","sleep_s":1.5}}}}"#
        ),
    );
    let log = |name: &str| tmp.path().join(format!("{name}.log"));
    let sshd = Sshd::start(tmp.path(), ns.host_ip, &log("sshd"));
    let mut remote = Remote::new(tmp.path(), &ns, &sshd, &served);

    // The mount works, is FUSE, and shows the study (from the other host).
    let probe_mnt = tmp.path().join("mnt-probe");
    let (ip, args) = remote.command(
        &probe_mnt,
        &["stat", "-f", "-c", "%T", arg(&probe_mnt.join("study"))],
    );
    let out = Command::new(ip).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("fuse") {
        eprintln!("SKIPPED: sshfs cannot mount here: {}", stderr.trim());
        return;
    }
    assert!(
        out.status.success(),
        "sshfs from the namespace failed ({}): {stderr}\nsshd log:\n{}",
        out.status,
        sshd.proc.log_text()
    );
    let fs_type = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        fs_type.starts_with("fuse"),
        "the remote view is {fs_type}, not FUSE"
    );
    assert_eq!(hps_shared_fs::detect_remote_fs(&study), None);

    // Without hard links (`-o disable_hardlink`: link(2) fails with EPERM,
    // and sshfs rejects RENAME_NOREPLACE) a worker refuses at once and says
    // why, instead of creating by plain rename, which could overwrite.
    let worker = bin("hps-worker");
    let nolink = tmp.path().join("mnt-nolink");
    let (ip, args) = remote.command_with(
        &nolink,
        "disable_hardlink",
        &[
            arg(&worker),
            arg(&nolink.join("study")),
            "--id",
            "nolink",
            "--once",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut refused = Proc::spawn("nolink", &ip, &args, &log("nolink"));
    let st = refused.wait(Duration::from_secs(60));
    let text = refused.log_text();
    assert!(
        !st.success() && text.contains("supports neither hard links"),
        "a worker on sshfs without hard links must refuse ({st}):\n{text}"
    );
    let refusal = text
        .lines()
        .find(|l| l.contains("supports neither hard links"))
        .unwrap_or_default();
    eprintln!("sshfs: disable_hardlink: {}", refusal.trim());
    remote.stop_mounts();

    let remote_worker = |remote: &mut Remote, mnt: &str, log: &Path| {
        let mnt = tmp.path().join(mnt);
        let view = mnt.join("study");
        let args = [
            arg(&worker),
            arg(&view),
            "--id",
            "remote",
            "--rescan",
            "0.5",
            "--heartbeat",
            "0.5",
        ];
        remote.spawn("remote", &mnt, &args, log)
    };
    let mut master = spawn_master(
        &study,
        &log("master"),
        &[
            "--rescan",
            "0.5",
            "--worker-grace",
            "3",
            "--lease-interval",
            "0.5",
        ],
    );
    let mut local = spawn_worker(
        &study,
        "local",
        &log("local"),
        &["--rescan", "0.5", "--heartbeat", "0.5"],
    );
    let mut r1 = remote_worker(&mut remote, "mnt-1", &log("remote-1"));

    // Kill the remote worker in the middle of a trial.
    let running = study.join("running");
    let mut killed = String::new();
    wait_until(
        Duration::from_secs(60),
        "the remote worker to claim a trial",
        || {
            if let Some(st) = r1.try_wait() {
                panic!("the remote worker exited ({st}):\n{}", r1.log_text());
            }
            killed = json_stems(&running)
                .into_iter()
                .find_map(|s| s.strip_suffix("@remote").map(str::to_string))
                .unwrap_or_default();
            !killed.is_empty()
        },
    );
    // Let it get into the trial (the log header is written at the claim).
    wait_until(Duration::from_secs(10), "the killed trial's log", || {
        runs_per_trial(&study).get(&killed).copied().unwrap_or(0) >= 1
    });
    assert!(
        r1.kill9(Duration::from_secs(10)),
        "the remote worker died early"
    );
    eprintln!("sshfs: killed the remote worker (SIGKILL) in trial {killed}");

    // The master re-queues the trial once the heartbeat goes stale.
    wait_until(Duration::from_secs(30), "the master to re-queue", || {
        master
            .log_text()
            .lines()
            .any(|l| l.contains("presumed dead") && l.contains(&format!("trial={killed} ")))
    });
    let requeued = master
        .log_text()
        .lines()
        .find(|l| l.contains("presumed dead") && l.contains(&killed))
        .unwrap_or_default()
        .to_string();
    eprintln!("sshfs: master: {}", requeued.trim());

    // The remote host comes back: a fresh mount, the same worker id.
    let mut r2 = remote_worker(&mut remote, "mnt-2", &log("remote-2"));
    for (p, what) in [(&mut local, "local"), (&mut r2, "remote")] {
        let st = p.wait(Duration::from_secs(120));
        assert!(
            st.success(),
            "{what} worker failed ({st}):\n{}",
            p.log_text()
        );
    }
    let st = master.wait(Duration::from_secs(60));
    assert!(st.success(), "master failed ({st}):\n{}", master.log_text());

    for l in ["remote-1", "remote-2"] {
        let text = std::fs::read_to_string(log(l)).unwrap_or_default();
        assert!(
            text.contains("network/FUSE filesystem"),
            "{l} did not detect the sshfs mount and poll:\n{text}"
        );
    }

    // Checked on the host's directory, which is the truth.
    let settings = trial_ids(&study, "settings");
    let results = trial_ids(&study, "results");
    assert_eq!(settings.len(), TRIALS, "the whole budget was proposed");
    assert_eq!(settings, results, "every trial has exactly one result");
    for sub in ["pending", "running"] {
        assert!(
            hps_tests::dir_names(&study.join(sub)).is_empty(),
            "{sub}/ is not empty: {:?}",
            hps_tests::dir_names(&study.join(sub))
        );
    }
    let runs = runs_per_trial(&study);
    let mut per_worker = BTreeMap::new();
    for (r, id) in read_results(&study).into_iter().zip(&results) {
        assert_eq!(&r.trial_id, id);
        assert_eq!(r.status, TrialStatus::Complete, "{id}: {:?}", r.error);
        let (want_attempt, want_runs) = if *id == killed { (2, 2) } else { (1, 1) };
        assert_eq!(r.attempt, want_attempt, "{id}: attempt");
        assert_eq!(
            runs.get(id).copied(),
            Some(want_runs),
            "{id}: runs {runs:?}\n{}",
            story(tmp.path(), &study, id)
        );
        *per_worker.entry(r.worker).or_insert(0u32) += 1;
    }
    assert!(
        per_worker.contains_key("remote") && per_worker.contains_key("local"),
        "both hosts published results: {per_worker:?}\nremote-2:\n{}",
        tail_lines(&log("remote-2"), 30)
    );
    eprintln!(
        "sshfs: {TRIALS} trials, {} results, each exactly once; killed trial {killed} \
         re-queued and finished as attempt 2; per worker {per_worker:?}",
        results.len()
    );
}
