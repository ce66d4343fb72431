//! deploy/k8s/ checked without a cluster (none can run here):
//!
//! - every manifest against the Kubernetes API's own schema, strictly
//!   (unknown fields rejected), with `kubernetes-validate` (PyPI), which
//!   ships the schemas of Kubernetes 1.25 to 1.37 and works offline;
//!   against the oldest version the manifests need (1.29: per-index
//!   backoff) and the newest the package ships;
//! - the shape docs/k8s.md promises: a ReadWriteMany claim, the master as
//!   a Job with `restartPolicy: OnFailure`, the workers as an Indexed Job
//!   with one GPU per pod, ids from `JOB_COMPLETION_INDEX`, and a grace
//!   period long enough to checkpoint;
//! - every hps command line in every container (also inside `sh -c`) is
//!   accepted by the real binaries: it is run with `--help` appended, so
//!   clap parses every flag, value and positional before printing help.
//!
//! `.ci/run` installs the validator into a venv at /opt/hps-k8s-validate
//! (`HPS_K8S_VALIDATE_VENV` overrides). Skips, and says so, only when that
//! venv is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hps_tests::bin;
use serde_json::Value;

/// The oldest Kubernetes the manifests need (`backoffLimitPerIndex`, and
/// `podFailurePolicy` with it, are on by default from 1.29) and the newest
/// schema kubernetes-validate 1.37.0 ships.
const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn venv() -> Result<PathBuf, String> {
    let dir = std::env::var_os("HPS_K8S_VALIDATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/hps-k8s-validate"));
    for exe in ["kubernetes-validate", "python"] {
        if !dir.join("bin").join(exe).is_file() {
            return Err(format!(
                "{} has no bin/{exe}; install the validator as .ci/run does: \
                 python3 -m venv {0} && {0}/bin/pip install kubernetes-validate==1.37.0",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/k8s");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

/// `kubernetes-validate --strict -k VERSION FILES…`: (success, output).
fn validate(venv: &Path, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(venv.join("bin/kubernetes-validate"))
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `$X`, `${X}` and `$(X)` (a shell or Kubernetes variable) become `0`:
/// the value `JOB_COMPLETION_INDEX` has in the first pod.
fn substitute(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some(&open @ ('(' | '{')) => {
                let close = if open == '(' { ')' } else { '}' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
            }
            _ => {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    chars.next();
                }
            }
        }
        out.push('0');
    }
    out
}

/// Run `argv` (an hps binary and its arguments) with `--help` appended:
/// clap parses all of it first. (success, stderr).
fn parses(argv: &[String]) -> (bool, String) {
    let name = argv[0].rsplit('/').next().unwrap();
    let out = Command::new(bin(name))
        .args(&argv[1..])
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pod_spec(doc: &Value) -> &Value {
    &doc["spec"]["template"]["spec"]
}

#[test]
fn k8s_manifests_match_the_api_schema_and_the_binaries_flags() {
    let venv = match venv() {
        Ok(v) => v,
        Err(reason) => {
            eprintln!("SKIPPED: kubernetes-validate is not installed: {reason}");
            return;
        }
    };
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["master-job.yaml", "pvc.yaml", "workers-job.yaml"],
        "deploy/k8s/ (update this test and docs/k8s.md with a new manifest)"
    );

    // 1. The real API schema, strict.
    for version in VERSIONS {
        let (ok, text) = validate(&venv, version, &files);
        assert!(
            ok,
            "the manifests do not validate against Kubernetes {version}:\n{text}"
        );
        for l in text.lines() {
            eprintln!("k8s: {l}");
        }
    }
    // The validator really is strict: a misspelt field and a wrong type fail.
    let tmp = tempfile::tempdir().unwrap();
    let workers = std::fs::read_to_string(repo().join("deploy/k8s/workers-job.yaml")).unwrap();
    for (what, from, to) in [
        (
            "an unknown field",
            "  completionMode: Indexed\n",
            "  completionMode: Indexed\n  completionMod: Indexed\n",
        ),
        (
            "a string for a number",
            "  parallelism: 4\n",
            "  parallelism: four\n",
        ),
    ] {
        assert!(workers.contains(from), "workers-job.yaml lacks `{from}`");
        let bad = tmp.path().join("bad.yaml");
        std::fs::write(&bad, workers.replacen(from, to, 1)).unwrap();
        let (ok, text) = validate(&venv, VERSIONS[1], &[bad]);
        assert!(!ok, "kubernetes-validate accepted {what}:\n{text}");
    }

    // 2. The manifests as JSON, with every hps command line.
    let out = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/k8s/commands.py"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "commands.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
    let docs: Vec<&Value> = dump["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["doc"])
        .collect();
    let find = |kind: &str, name: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s/"))
    };

    let pvc = find("PersistentVolumeClaim", "hps-study");
    assert_eq!(
        pvc["spec"]["accessModes"],
        serde_json::json!(["ReadWriteMany"])
    );
    let master = find("Job", "hps-master");
    assert_eq!(pod_spec(master)["restartPolicy"], "OnFailure");
    assert_eq!(master["spec"]["parallelism"], 1, "one master pod at a time");
    let workers = find("Job", "hps-workers");
    assert_eq!(workers["spec"]["completionMode"], "Indexed");
    let wspec = pod_spec(workers);
    let grace = wspec["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    assert!(
        grace >= 120,
        "terminationGracePeriodSeconds {grace}: too short to checkpoint on a shared filesystem"
    );
    let containers = wspec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(
        containers[0]["resources"]["limits"]["nvidia.com/gpu"], 1,
        "one GPU per worker pod"
    );
    // Every pod mounts the one study claim.
    for job in [master, workers] {
        let claims: BTreeSet<&str> = pod_spec(job)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .collect();
        assert_eq!(
            claims,
            BTreeSet::from(["hps-study"]),
            "{}",
            job["metadata"]["name"]
        );
    }

    // 3. Every command line parses with the real binaries.
    let commands = dump["commands"].as_array().unwrap();
    let mut seen = BTreeSet::new();
    for c in commands {
        let raw: Vec<String> = c["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let argv: Vec<String> = raw.iter().map(|a| substitute(a)).collect();
        let (ok, stderr) = parses(&argv);
        assert!(
            ok,
            "{} {} container {}: `{}` is not accepted by the real binary:\n{stderr}",
            c["kind"],
            c["name"],
            c["container"],
            raw.join(" ")
        );
        // The method catches a bad flag (so passing above means something).
        let mut bad = argv.clone();
        bad.push("--no-such-flag".into());
        assert!(!parses(&bad).0, "`{}` + a bad flag parsed", raw.join(" "));
        if argv[0] == "hps-worker" {
            let id = raw
                .iter()
                .position(|a| a == "--id")
                .map(|i| raw[i + 1].clone())
                .expect("every worker has an --id");
            assert!(
                id.contains("JOB_COMPLETION_INDEX"),
                "worker id `{id}` is not taken from JOB_COMPLETION_INDEX"
            );
            hps_common::validate_id("worker id", &substitute(&id)).unwrap();
        }
        eprintln!(
            "k8s: {}/{}: `{}` parses",
            c["name"].as_str().unwrap(),
            c["container"].as_str().unwrap(),
            raw.join(" ")
        );
        seen.insert(argv.iter().take(2).cloned().collect::<Vec<_>>().join(" "));
    }
    let worker_cmd = format!("hps-worker {}", "/study/study");
    for want in ["hps-master init", "hps-master run", worker_cmd.as_str()] {
        assert!(seen.contains(want), "no `{want}` in deploy/k8s/: {seen:?}");
    }
}

#[test]
fn substitute_replaces_shell_and_kubernetes_variables() {
    assert_eq!(substitute("k8s-$JOB_COMPLETION_INDEX"), "k8s-0");
    assert_eq!(substitute("k8s-${JOB_COMPLETION_INDEX}"), "k8s-0");
    assert_eq!(substitute("k8s-$(JOB_COMPLETION_INDEX)-x"), "k8s-0-x");
    assert_eq!(substitute("plain"), "plain");
}
