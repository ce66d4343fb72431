use std::cell::Cell;

use serde_json::json;

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use hps_common::{CnnDefaults, EpochStat, Params, TrialStatus};
use serde_json::Value;

use super::*;

/// [`super::train`] with a callback that never stops or pauses the run,
/// as most tests want it.
fn train(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStat),
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    train_with_checkpoints(cfg, data, device, None, on_epoch, should_stop)
}

/// [`train`] resuming from and saving to `checkpoint_dir`.
fn train_with_checkpoints(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    checkpoint_dir: Option<&std::path::Path>,
    on_epoch: &mut dyn FnMut(&EpochStat),
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    let job = Job {
        checkpoint_dir,
        should_stop,
        ..Job::new(cfg, data, device)
    };
    super::train(&job, &mut |s| {
        on_epoch(s);
        EpochControl::Continue
    })
}

fn params(v: Value) -> Params {
    serde_json::from_value(v).unwrap()
}

fn cfg(p: Value) -> Result<CnnConfig, InvalidParams> {
    CnnConfig::from_params(&params(p), &CnnDefaults::default(), 7, None, 42)
}

/// A config from the given values and defaults for everything else.
#[allow(clippy::too_many_arguments)]
fn mk(
    lr: f64,
    momentum: f64,
    batch_size: usize,
    nf: usize,
    epochs: u32,
    train_size: usize,
    val_size: usize,
    test_size: usize,
    seed: u64,
) -> CnnConfig {
    CnnConfig::from_params(
        &params(
            json!({"lr": lr, "momentum": momentum, "batch_size": batch_size, "nf": nf,
                       "train_size": train_size, "val_size": val_size, "test_size": test_size}),
        ),
        &CnnDefaults::default(),
        epochs,
        None,
        seed,
    )
    .unwrap()
}

fn tiny(lr: f64, momentum: f64, epochs: u32) -> CnnConfig {
    mk(lr, momentum, 16, 4, epochs, 384, 128, 0, 5)
}

fn data() -> Dataset {
    Dataset::synthetic(512, 100, 11, &Device::Cpu)
}

fn run(cfg: &CnnConfig, data: &Dataset) -> Result<CnnOutcome, TrainError> {
    train(cfg, data, &Device::Cpu, &mut |_| {}, &|| false)
}

#[test]
fn from_params_defaults_and_overrides() {
    let c = cfg(json!({})).unwrap();
    let d = CnnDefaults::default();
    assert_eq!(
        (
            c.hyper.lr,
            c.hyper.momentum,
            c.hyper.batch_size,
            c.hyper.nf,
            c.epochs,
            c.seed
        ),
        (d.lr, d.momentum, d.batch_size, d.nf, 7, 42)
    );
    assert_eq!(
        (
            c.hyper.train_size,
            c.hyper.val_size,
            c.hyper.test_size,
            c.time_limit_s
        ),
        (d.train_size, d.val_size, d.test_size, None)
    );
    assert_eq!(c.arch, Arch::seed(32));
    let c = cfg(
        json!({"lr": 0.05, "momentum": 0.9, "batch_size": 64, "nf": 16.0,
                       "epochs": 3, "train_size": 100, "val_size": 0, "test_size": 0}),
    )
    .unwrap();
    assert_eq!(
        (
            c.hyper.lr,
            c.hyper.momentum,
            c.hyper.batch_size,
            c.hyper.nf,
            c.epochs
        ),
        (0.05, 0.9, 64, 16, 3)
    );
    assert_eq!(
        (c.hyper.train_size, c.hyper.val_size, c.hyper.test_size),
        (100, 0, 0)
    );
    let c =
        CnnConfig::from_params(&Params::new(), &CnnDefaults::default(), 2, Some(1.5), 1).unwrap();
    assert_eq!(c.time_limit_s, Some(1.5));
}

#[test]
fn from_params_rejects_values_outside_domain() {
    let cases = [
        (
            json!({"lr": -0.1}),
            "lr must be a positive number, got -0.1",
        ),
        (json!({"lr": 0}), "lr must be a positive number, got 0"),
        (json!({"lr": "0.1"}), "lr must be a number, got \"0.1\""),
        (
            json!({"momentum": 1.0}),
            "momentum must be a number in [0, 1), got 1",
        ),
        (
            json!({"momentum": -0.5}),
            "momentum must be a number in [0, 1), got -0.5",
        ),
        (
            json!({"batch_size": 0}),
            "batch_size must be a positive integer, got 0",
        ),
        (
            json!({"batch_size": -4}),
            "batch_size must be a non-negative integer, got -4",
        ),
        (
            json!({"nf": 1.5}),
            "nf must be a non-negative integer, got 1.5",
        ),
        (
            json!({"nf": true}),
            "nf must be a non-negative integer, got true",
        ),
        (
            json!({"train_size": 0}),
            "train_size must be a positive integer, got 0",
        ),
        (
            json!({"epochs": 0}),
            "epochs must be a positive integer, got 0",
        ),
        (
            json!({"val_size": "x"}),
            "val_size must be a non-negative integer, got \"x\"",
        ),
    ];
    for (p, want) in cases {
        let e = cfg(p.clone()).unwrap_err();
        assert_eq!(e.to_string(), want, "params {p}");
    }
    let e = cfg(json!({"drop_out": 0.2})).unwrap_err().to_string();
    assert!(e.contains("unknown hyperparameter `drop_out`"), "{e}");
    let e = CnnConfig::from_params(&Params::new(), &CnnDefaults::default(), 2, Some(-1.0), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("time_limit_s"), "{e}");
    // Bad defaults are caught too.
    let d = CnnDefaults {
        lr: f64::NAN,
        ..CnnDefaults::default()
    };
    let e = CnnConfig::from_params(&Params::new(), &d, 2, None, 1)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "lr must be a positive number, got NaN");
}

#[test]
fn training_learns_synthetic_data() {
    let d = data();
    let mut seen = Vec::new();
    let out = train(
        &tiny(0.05, 0.9, 4),
        &d,
        &Device::Cpu,
        &mut |s| seen.push(s.clone()),
        &|| false,
    )
    .unwrap();
    println!("curve: {:?}\nmetrics: {:?}", out.curve, out.metrics);
    assert_eq!(out.status, TrialStatus::Complete);
    assert_eq!(out.curve, seen);
    assert_eq!(out.epochs_completed, 4);
    assert_eq!(out.steps, 4 * 24);
    assert!(out.error.is_none() && !out.stopped_by_time_limit);
    let (first, last) = (&out.curve[0], &out.curve[3]);
    assert!(last.train_loss < first.train_loss, "{:?}", out.curve);
    assert!(
        last.val_error < 0.5,
        "val_error {} not below chance: {:?}",
        last.val_error,
        out.curve
    );
    assert!(out
        .curve
        .windows(2)
        .all(|w| w[1].elapsed_s >= w[0].elapsed_s));
    assert_eq!(
        out.curve.iter().map(|s| s.epoch).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let best = out.best_epoch.unwrap();
    let best_val = out.curve[best as usize - 1].val_loss;
    assert!(out.curve.iter().all(|s| s.val_loss >= best_val));
    let m = &out.metrics;
    for k in [
        "val_loss",
        "val_error",
        "val_accuracy",
        "train_loss",
        "test_loss",
        "test_error",
        "test_accuracy",
        "last_val_loss",
        "last_val_error",
        "last_train_loss",
        "last_test_error",
        "epoch_time_s",
        "steps",
    ] {
        assert!(
            m.get(k).is_some_and(|v| v.is_finite()),
            "metric {k} missing: {m:?}"
        );
    }
    assert_eq!(m["val_loss"], best_val);
    assert_eq!(m["val_accuracy"], 1.0 - m["val_error"]);
    assert_eq!(m["last_val_error"], last.val_error);
    assert_eq!(m["steps"], 96.0);
    assert!(m["test_error"] < 0.5, "{m:?}");
}

#[test]
fn training_is_deterministic() {
    let d = data();
    let c = tiny(0.05, 0.9, 2);
    let (a, b) = (run(&c, &d).unwrap(), run(&c, &d).unwrap());
    let bits = |o: &CnnOutcome| {
        o.curve
            .iter()
            .map(|s| {
                (
                    s.train_loss.to_bits(),
                    s.val_loss.to_bits(),
                    s.val_error.to_bits(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&a), bits(&b));
    let strip = |o: &CnnOutcome| {
        let mut m = o.metrics.clone();
        m.remove("epoch_time_s");
        m
    };
    assert_eq!(strip(&a), strip(&b));
    let other = run(&CnnConfig { seed: 6, ..c }, &d).unwrap();
    assert_ne!(
        bits(&a),
        bits(&other),
        "a different seed should give a different curve"
    );
}

#[test]
fn huge_lr_diverges_with_message() {
    // lr 1e6 only drives the stable log-softmax loss to ~1e28; 1e20 overflows to NaN.
    let out = run(&tiny(1e20, 0.9, 3), &data()).unwrap();
    assert_eq!(out.status, TrialStatus::Diverged);
    let e = out.error.as_deref().unwrap();
    println!("{e}; curve {:?}", out.curve);
    assert!(e.contains("epoch") && e.contains("step"), "{e}");
    assert!(e.contains("NaN") || e.contains("infinite"), "{e}");
    assert!(out.epochs_completed < 3);
    assert_eq!(out.curve.len() as u32, out.epochs_completed);
    assert!(out.metrics.values().all(|v| v.is_finite()));
}

#[test]
fn should_stop_interrupts() {
    let calls = Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() > 3
    };
    let r = train(
        &tiny(0.05, 0.0, 5),
        &data(),
        &Device::Cpu,
        &mut |_| {},
        &stop,
    );
    assert!(matches!(r, Err(TrainError::Interrupted)), "{r:?}");
    assert_eq!(calls.get(), 4);
}

#[test]
fn time_limit_stops_early() {
    // A limit shorter than one batch: stop after the first batch, evaluate
    // the partial epoch and count it.
    let c = CnnConfig {
        time_limit_s: Some(1e-9),
        ..tiny(0.05, 0.0, 5)
    };
    let out = run(&c, &data()).unwrap();
    assert_eq!(out.status, TrialStatus::Complete);
    assert!(out.stopped_by_time_limit);
    assert_eq!((out.epochs_completed, out.steps), (1, 1));
    assert_eq!(out.best_epoch, Some(1));
    assert!(out.curve[0].val_loss.is_finite());
    assert!(out.metrics["epoch_time_s"] > 0.0);
    // A generous limit changes nothing.
    let c = CnnConfig {
        time_limit_s: Some(1e6),
        ..tiny(0.05, 0.0, 2)
    };
    let out = run(&c, &data()).unwrap();
    assert!(!out.stopped_by_time_limit);
    assert_eq!(out.epochs_completed, 2);
}

#[test]
fn no_validation_set() {
    let c = tiny(0.05, 0.9, 2).with_hyper(|h| {
        h.val_size = 0;
        h.train_size = 512;
        h.test_size = 50;
    });
    let out = run(&c, &data()).unwrap();
    assert!(out
        .curve
        .iter()
        .all(|s| s.val_loss.is_nan() && s.val_error.is_nan()));
    assert_eq!(out.best_epoch, Some(2));
    assert!(!out.metrics.contains_key("val_loss"));
    assert!(out.metrics.contains_key("test_error") && out.metrics.contains_key("last_test_error"));
    assert_eq!(out.steps, 2 * 32);
}

#[test]
fn sizes_must_fit_the_data() {
    let e = run(
        &tiny(0.1, 0.0, 1).with_hyper(|h| {
            h.train_size = 400;
            h.val_size = 200;
        }),
        &data(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("train_size (400)") && e.contains("val_size (200)") && e.contains("512"),
        "{e}"
    );
    let e = run(
        &tiny(0.1, 0.0, 1).with_hyper(|h| {
            h.test_size = 101;
        }),
        &data(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("test_size (101)"), "{e}");
}

// ---- Checkpoints -------------------------------------------------------

/// A small config for the checkpoint tests: 8 steps per epoch.
fn ck_cfg(lr: f64) -> CnnConfig {
    mk(lr, 0.9, 16, 3, 4, 128, 64, 0, 5)
}

fn ck_data() -> Dataset {
    Dataset::synthetic(192, 40, 11, &Device::Cpu)
}

/// Curve without timings (epoch and bits of train_loss, val_loss,
/// val_error, and the instruments as exact JSON).
type Bits = Vec<(u32, u64, u64, u64, String)>;
/// Everything of an outcome that must not depend on interruptions.
type Comparable = (
    Bits,
    Vec<(String, u64)>,
    Option<u32>,
    u64,
    TrialStatus,
    u32,
    Option<String>,
    bool,
);

fn comparable(o: &CnnOutcome) -> Comparable {
    let curve = o
        .curve
        .iter()
        .map(|s| {
            (
                s.epoch,
                s.train_loss.to_bits(),
                s.val_loss.to_bits(),
                s.val_error.to_bits(),
                serde_json::to_string(&s.instruments).unwrap(),
            )
        })
        .collect();
    let metrics = o
        .metrics
        .iter()
        .filter(|(k, _)| k.as_str() != "epoch_time_s")
        .map(|(k, v)| (k.clone(), v.to_bits()))
        .collect();
    (
        curve,
        metrics,
        o.best_epoch,
        o.steps,
        o.status,
        o.epochs_completed,
        o.error.clone(),
        o.stopped_by_time_limit,
    )
}

/// Train with checkpoints in `dir`; with `stop_after = Some(n)`,
/// `should_stop` turns true once this call has reported `n` epochs. Returns
/// the result and the epochs reported.
fn run_ck(
    cfg: &CnnConfig,
    data: &Dataset,
    dir: &std::path::Path,
    stop_after: Option<usize>,
) -> (Result<CnnOutcome, TrainError>, Vec<u32>) {
    let seen = std::cell::RefCell::new(Vec::new());
    let r = train_with_checkpoints(
        cfg,
        data,
        &Device::Cpu,
        Some(dir),
        &mut |s| seen.borrow_mut().push(s.epoch),
        &|| stop_after.is_some_and(|n| seen.borrow().len() >= n),
    );
    (r, seen.into_inner())
}

fn interrupted(r: Result<CnnOutcome, TrainError>) {
    assert!(matches!(r, Err(TrainError::Interrupted)), "{r:?}");
}

/// Run `f` with a tracing subscriber that captures WARN and above.
fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn checkpointing_does_not_change_results() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let plain = run(&c, &d).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (r, seen) = run_ck(&c, &d, dir.path(), None);
    assert_eq!(comparable(&r.unwrap()), comparable(&plain));
    assert_eq!(seen, [1, 2, 3, 4]);
    // A finished run's checkpoint is reused: nothing left to train, same outcome.
    assert_eq!(checkpoint_epochs(dir.path(), &c, &d), Some(4));
    let (r, seen) = run_ck(&c, &d, dir.path(), None);
    assert_eq!(comparable(&r.unwrap()), comparable(&plain));
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted() {
    let d = ck_data();
    // Also: plain SGD (no velocities) without a validation set (NaN in the curve).
    let no_val = ck_cfg(0.1).with_hyper(|h| {
        h.momentum = 0.0;
        h.val_size = 0;
        h.train_size = 160;
    });
    for c in [ck_cfg(0.05), no_val] {
        let full = run(&c, &d).unwrap();
        let want = comparable(&full);

        // Interrupted during epoch 3 (right after epoch 2 was reported).
        let dir = tempfile::tempdir().unwrap();
        let (r, seen) = run_ck(&c, &d, dir.path(), Some(2));
        interrupted(r);
        assert_eq!(seen, [1, 2]);
        assert_eq!(checkpoint_epochs(dir.path(), &c, &d), Some(2));
        // A crash after the tensor file of epoch 3 was renamed into place
        // but before the manifest was: the manifest still names epoch 2.
        std::fs::write(dir.path().join("checkpoint-e3.safetensors"), b"junk").unwrap();
        assert_eq!(checkpoint_epochs(dir.path(), &c, &d), Some(2));
        let (r, seen) = run_ck(&c, &d, dir.path(), None);
        let resumed = r.unwrap();
        assert_eq!(
            dir_names(dir.path()),
            ["checkpoint-e4.safetensors", "checkpoint.json"]
        );
        assert_eq!(seen, [3, 4]);
        assert_eq!(comparable(&resumed), want, "{:?}", c);
        // Training time carries over.
        assert!(resumed.curve[2].elapsed_s > resumed.curve[1].elapsed_s);

        // Interrupted after epoch 1, resumed twice.
        let dir = tempfile::tempdir().unwrap();
        let (r, seen) = run_ck(&c, &d, dir.path(), Some(1));
        interrupted(r);
        assert_eq!(seen, [1]);
        let (r, seen) = run_ck(&c, &d, dir.path(), Some(1));
        interrupted(r);
        assert_eq!(seen, [2]);
        let (r, seen) = run_ck(&c, &d, dir.path(), None);
        assert_eq!(seen, [3, 4]);
        assert_eq!(comparable(&r.unwrap()), want, "{:?}", c);
    }
}

/// The best-epoch weights are saved separately when the best epoch is not
/// the last one; a resume from such a checkpoint is exact too.
#[test]
fn resume_with_earlier_best_epoch() {
    let d = ck_data();
    let c = CnnConfig {
        epochs: 5,
        ..ck_cfg(0.3)
    };
    let full = run(&c, &d).unwrap();
    // The epoch after which best < last, so the checkpoint holds `best.*`.
    let k = (2..=c.epochs)
        .find(|&e| {
            let best = full.curve[..e as usize]
                .iter()
                .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
                .unwrap();
            best.epoch < e
        })
        .expect("this config should have a val loss going up; pick another lr");
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = run_ck(&c, &d, dir.path(), Some(k as usize));
    interrupted(r);
    let bytes = std::fs::read(dir.path().join(format!("checkpoint-e{k}.safetensors"))).unwrap();
    let names = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    assert!(names.contains_key("best.0") && names.contains_key("velocity.4"));
    let (r, _) = run_ck(&c, &d, dir.path(), None);
    assert_eq!(comparable(&r.unwrap()), comparable(&full));
}

#[test]
fn checkpoint_of_another_config_is_ignored() {
    let d = ck_data();
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = run_ck(&ck_cfg(0.05), &d, dir.path(), Some(2));
    interrupted(r);
    let other = ck_cfg(0.03);
    assert_eq!(checkpoint_epochs(dir.path(), &other, &d), None);
    // The data set's size is part of the fingerprint too.
    assert_eq!(
        checkpoint_epochs(
            dir.path(),
            &ck_cfg(0.05),
            &Dataset::synthetic(200, 40, 11, &Device::Cpu)
        ),
        None
    );
    // ... but not the time limit.
    let limited = CnnConfig {
        time_limit_s: Some(1e6),
        ..ck_cfg(0.05)
    };
    assert_eq!(checkpoint_epochs(dir.path(), &limited, &d), Some(2));

    let ((r, seen), warnings) = capture_warnings(|| run_ck(&other, &d, dir.path(), None));
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_eq!(
        comparable(&r.unwrap()),
        comparable(&run(&other, &d).unwrap())
    );
    let manifest = dir.path().join("checkpoint.json").display().to_string();
    assert!(
        warnings.contains(&manifest) && warnings.contains("different configuration"),
        "{warnings}"
    );
    // The directory now holds the other config's finished run.
    assert_eq!(checkpoint_epochs(dir.path(), &other, &d), Some(4));
    assert_eq!(checkpoint_epochs(dir.path(), &ck_cfg(0.05), &d), None);
    assert_eq!(
        dir_names(dir.path()),
        ["checkpoint-e4.safetensors", "checkpoint.json"]
    );
}

#[test]
fn corrupt_checkpoints_are_ignored_with_a_warning() {
    let c = CnnConfig {
        epochs: 2,
        ..ck_cfg(0.05)
    };
    let d = ck_data();
    let want = comparable(&run(&c, &d).unwrap());
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "garbage manifest",
            |p| std::fs::write(p.join("checkpoint.json"), b"{\"format_ver").unwrap(),
            "checkpoint.json",
        ),
        (
            "malformed manifest",
            |p| std::fs::write(p.join("checkpoint.json"), br#"{"format_version": 1}"#).unwrap(),
            "checkpoint.json",
        ),
        (
            "future format",
            |p| std::fs::write(p.join("checkpoint.json"), br#"{"format_version": 9}"#).unwrap(),
            "checkpoint.json",
        ),
        (
            "truncated tensors",
            |p| {
                let t = p.join("checkpoint-e1.safetensors");
                let b = std::fs::read(&t).unwrap();
                std::fs::write(&t, &b[..b.len() / 2]).unwrap();
            },
            "checkpoint-e1.safetensors",
        ),
        (
            "missing tensors",
            |p| std::fs::remove_file(p.join("checkpoint-e1.safetensors")).unwrap(),
            "checkpoint-e1.safetensors",
        ),
    ];
    for (what, damage, file) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = run_ck(&c, &d, dir.path(), Some(1));
        interrupted(r);
        damage(dir.path());
        assert_eq!(checkpoint_epochs(dir.path(), &c, &d), None, "{what}");
        let ((r, seen), warnings) = capture_warnings(|| run_ck(&c, &d, dir.path(), None));
        assert_eq!(seen, [1, 2], "{what}: should train from scratch");
        assert_eq!(comparable(&r.unwrap()), want, "{what}");
        let path = dir.path().join(file).display().to_string();
        assert!(
            warnings.contains("WARN") && warnings.contains(&path),
            "{what}: {warnings}"
        );
    }
}

#[test]
fn checkpoint_files_are_written_atomically_each_epoch() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let root = tempfile::tempdir().unwrap();
    // Created if missing, nested.
    let dir = root.path().join("trial").join("ck");
    std::fs::create_dir_all(&dir).unwrap();
    // A temporary file left by a crashed writer is cleaned up.
    std::fs::write(dir.join(".tmp.checkpoint.json.999.0"), b"{").unwrap();
    let mut checked = Vec::new();
    let out = train_with_checkpoints(
        &c,
        &d,
        &Device::Cpu,
        Some(&dir),
        &mut |s| {
            // The checkpoint of this epoch is in place before on_epoch.
            let e = s.epoch;
            let m: Value =
                serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap())
                    .unwrap();
            assert_eq!(m["format_version"], 2);
            assert_eq!(m["epoch"], e);
            assert_eq!(m["curve"].as_array().unwrap().len(), e as usize);
            let tensors = format!("checkpoint-e{e}.safetensors");
            assert_eq!(m["tensors"]["name"], tensors.as_str());
            assert_eq!(dir_names(&dir), [tensors, "checkpoint.json".to_string()]);
            checked.push(e);
        },
        &|| false,
    )
    .unwrap();
    assert_eq!(checked, [1, 2, 3, 4]);
    assert_eq!(out.epochs_completed, 4);
    assert_eq!(
        dir_names(&dir),
        ["checkpoint-e4.safetensors", "checkpoint.json"]
    );

    // A missing directory is created.
    let fresh = root.path().join("new").join("dir");
    let (r, _) = run_ck(&c, &d, &fresh, Some(1));
    interrupted(r);
    assert_eq!(
        dir_names(&fresh),
        ["checkpoint-e1.safetensors", "checkpoint.json"]
    );
}

#[test]
fn unwritable_checkpoint_dir_fails_naming_the_path() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let root = tempfile::tempdir().unwrap();
    // The directory is a regular file.
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(checkpoint_epochs(&file, &c, &d), None);
    let (r, seen) = run_ck(&c, &d, &file, None);
    assert!(seen.is_empty());
    match r {
        Err(e @ TrainError::Checkpoint { .. }) => {
            let TrainError::Checkpoint { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, &file);
            assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The tensor file's name is taken by a non-empty directory: the rename
    // fails; the error names the file and no temporary file is left.
    let dir = root.path().join("ck");
    let blocker = dir.join("checkpoint-e1.safetensors");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();
    let (r, seen) = run_ck(&c, &d, &dir, None);
    assert!(seen.is_empty());
    let e = r.unwrap_err();
    assert!(
        matches!(&e, TrainError::Checkpoint { path, .. } if *path == blocker),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&blocker.display().to_string()),
        "{e}"
    );
    assert_eq!(dir_names(&dir), ["checkpoint-e1.safetensors"]);
}

#[test]
fn training_time_carries_over_a_resume() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = run_ck(&c, &d, dir.path(), Some(1));
    interrupted(r);
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("checkpoint.json")).unwrap())
            .unwrap();
    let done_s = m["train_time_ns"].as_u64().unwrap() as f64 * 1e-9;
    assert!(done_s > 0.0);
    // A limit the first run already used up: the resumed run stops at once,
    // as at an epoch boundary.
    let limited = CnnConfig {
        time_limit_s: Some(done_s / 2.0),
        ..c.clone()
    };
    let (r, seen) = run_ck(&limited, &d, dir.path(), None);
    let out = r.unwrap();
    assert!(seen.is_empty(), "{seen:?}");
    assert!(out.stopped_by_time_limit);
    assert_eq!(out.status, TrialStatus::Complete);
    assert_eq!((out.epochs_completed, out.steps), (1, 8));
    assert!(out.metrics.contains_key("test_error"));
}

#[test]
fn diverged_run_with_checkpoints() {
    let (c, d) = (tiny(1e20, 0.9, 3), data());
    let plain = run(&c, &d).unwrap();
    assert_eq!(plain.status, TrialStatus::Diverged);
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (r, _) = run_ck(&c, &d, dir.path(), None);
        assert_eq!(comparable(&r.unwrap()), comparable(&plain));
    }
}

/// Run with `cargo test -p hps-worker --release --lib real_fashion_mnist_smoke -- --ignored --nocapture`.
#[test]
#[ignore = "needs /usr/share/datasets/fashion-mnist; slow in debug builds"]
fn real_fashion_mnist_smoke() {
    let t = Instant::now();
    let d = Dataset::load(std::path::Path::new(DEFAULT_DATA_DIR), &Device::Cpu).unwrap();
    println!(
        "load: {:.2}s ({} train, {} test)",
        t.elapsed().as_secs_f64(),
        d.train_len(),
        d.test_len()
    );
    assert_eq!((d.train_len(), d.test_len()), (60000, 10000));
    let c = mk(0.05, 0.9, 64, 8, 1, 2000, 1000, 1000, 1);
    let out = run(&c, &d).unwrap();
    println!("curve: {:?}", out.curve);
    println!("metrics: {:?}", out.metrics);
    assert_eq!(out.status, TrialStatus::Complete);
    assert!(out.curve[0].val_error < 0.6, "{:?}", out.curve);
}

/// Timing helper: `HPS_BENCH="nf batch train_size epochs [lr momentum]"`
/// (default "32 100 10000 1 0.05 0.9"), run with
/// `cargo test -p hps-worker --release --lib bench_real_epoch -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; needs /usr/share/datasets/fashion-mnist"]
fn bench_real_epoch() {
    let spec = std::env::var("HPS_BENCH").unwrap_or_else(|_| "32 100 10000 1".into());
    let f: Vec<f64> = spec
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let v: Vec<usize> = f.iter().map(|&x| x as usize).collect();
    let d = Dataset::load(std::path::Path::new(DEFAULT_DATA_DIR), &Device::Cpu).unwrap();
    let c = mk(
        f.get(4).copied().unwrap_or(0.05),
        f.get(5).copied().unwrap_or(0.9),
        v[1],
        v[0],
        v[3] as u32,
        v[2],
        0,
        0,
        1,
    );
    let t = Instant::now();
    let out = train(&c, &d, &Device::Cpu, &mut |s| println!("{s:?}"), &|| false).unwrap();
    println!("status {:?} error {:?}", out.status, out.error);
    println!(
        "nf {} batch {} train {}: epoch_time_s {:.3} ({:.1} us/example), total with eval {:.2}s, test_error {:?}",
        c.hyper.nf,
        c.hyper.batch_size,
        c.hyper.train_size,
        out.metrics["epoch_time_s"],
        out.metrics["epoch_time_s"] * 1e6 / c.hyper.train_size as f64,
        t.elapsed().as_secs_f64(),
        out.metrics.get("test_error")
    );
}

// ---- Mid-epoch checkpoints ---------------------------------------------

/// Train with checkpoints in `dir`; `should_stop` turns true after it was
/// called `stop_after` times (`None`: never). Returns the result, the epochs
/// reported and the number of calls.
fn run_calls(
    cfg: &CnnConfig,
    data: &Dataset,
    dir: Option<&std::path::Path>,
    stop_after: Option<usize>,
) -> (Result<CnnOutcome, TrainError>, Vec<u32>, usize) {
    let calls = Cell::new(0usize);
    let mut seen = Vec::new();
    let r = train_with_checkpoints(
        cfg,
        data,
        &Device::Cpu,
        dir,
        &mut |s| seen.push(s.epoch),
        &|| {
            calls.set(calls.get() + 1);
            stop_after.is_some_and(|n| calls.get() > n)
        },
    );
    (r, seen, calls.get())
}

fn mid_json(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("checkpoint-mid.json")).unwrap()).unwrap()
}

/// The plain-SGD, no-validation config of the checkpoint tests (10 batches
/// per epoch, no evaluation calls to `should_stop` until the test set).
fn no_val_cfg() -> CnnConfig {
    ck_cfg(0.1).with_hyper(|h| {
        h.momentum = 0.0;
        h.val_size = 0;
        h.train_size = 160;
    })
}

#[test]
fn mid_epoch_interruption_resumes_bit_exactly() {
    let d = ck_data();
    // ck_cfg: 8 batches + 1 validation chunk per epoch = 9 calls; then the
    // test set (1 or 2 chunks). no_val: 10 batches per epoch.
    // (calls before the stop, completed epochs, mid-epoch file expected)
    let ck_points: &[(usize, usize, Option<&str>)] = &[
        (0, 0, None),                                          // first batch of epoch 1
        (1, 0, Some("checkpoint-mid-e1-b1.safetensors")),      // after one batch
        (7, 0, Some("checkpoint-mid-e1-b7.safetensors")),      // before the last batch
        (8, 0, Some("checkpoint-mid-e1-b8-eval.safetensors")), // in validation
        (9, 1, None),                                          // first batch of epoch 2
        (13, 1, Some("checkpoint-mid-e2-b4.safetensors")),
        (34, 3, Some("checkpoint-mid-e4-b7.safetensors")), // last batch of the run
        (35, 3, Some("checkpoint-mid-e4-b8-eval.safetensors")),
        (36, 4, None), // in the final test pass
    ];
    let nv_points: &[(usize, usize, Option<&str>)] = &[
        (0, 0, None),
        (1, 0, Some("checkpoint-mid-e1-b1.safetensors")),
        (9, 0, Some("checkpoint-mid-e1-b9.safetensors")), // before the last batch
        (10, 1, None),
        (25, 2, Some("checkpoint-mid-e3-b5.safetensors")),
        (39, 3, Some("checkpoint-mid-e4-b9.safetensors")),
        (40, 4, None),
    ];
    for (c, points) in [(ck_cfg(0.05), ck_points), (no_val_cfg(), nv_points)] {
        let want = comparable(&run(&c, &d).unwrap());
        for &(n, done, mid_file) in points {
            let what = format!("{c:?} stopped after {n} calls");
            let dir = tempfile::tempdir().unwrap();
            let (r, seen, calls) = run_calls(&c, &d, Some(dir.path()), Some(n));
            interrupted(r);
            assert_eq!(calls, n + 1, "{what}");
            assert_eq!(seen, (1..=done as u32).collect::<Vec<_>>(), "{what}");
            let mut names = Vec::new();
            if done > 0 {
                names.push(format!("checkpoint-e{done}.safetensors"));
            }
            if let Some(f) = mid_file {
                names.push(f.to_string());
                names.push("checkpoint-mid.json".into());
                let m = mid_json(dir.path());
                assert_eq!(m["base_epoch"], done, "{what}");
                assert_eq!(m["epoch"], done + 1, "{what}");
                assert_eq!(m["format_version"], 2, "{what}");
            }
            if done > 0 {
                names.push("checkpoint.json".into());
            }
            names.sort();
            assert_eq!(dir_names(dir.path()), names, "{what}");
            let expect_epochs = if mid_file.is_some() && done == 0 {
                Some(0)
            } else if done > 0 {
                Some(done as u32)
            } else {
                None
            };
            assert_eq!(
                checkpoint_epochs(dir.path(), &c, &d),
                expect_epochs,
                "{what}"
            );
            let ((r, seen, _), warnings) =
                capture_warnings(|| run_calls(&c, &d, Some(dir.path()), None));
            assert!(warnings.is_empty(), "{what}: {warnings}");
            let out = r.unwrap();
            assert_eq!(comparable(&out), want, "{what}");
            // The epoch in progress is reported once, after the resume.
            let from = if mid_file.is_some() || n < 36 {
                done + 1
            } else {
                5
            };
            assert_eq!(seen, (from as u32..=c.epochs).collect::<Vec<_>>(), "{what}");
            // The mid-epoch files are gone once the epoch completes.
            assert_eq!(
                dir_names(dir.path()),
                ["checkpoint-e4.safetensors", "checkpoint.json"],
                "{what}"
            );
            if n > 0 {
                assert!(out.curve.iter().all(|s| s.elapsed_s > 0.0), "{what}");
            }
        }
    }
}

#[test]
fn interrupted_repeatedly_in_the_same_epoch() {
    let d = ck_data();
    for c in [ck_cfg(0.05), no_val_cfg()] {
        let want = comparable(&run(&c, &d).unwrap());
        let per_epoch = c.hyper.train_size / c.hyper.batch_size + usize::from(c.hyper.val_size > 0);
        let dir = tempfile::tempdir().unwrap();
        // Epoch 2, after 2 batches.
        let (r, _, _) = run_calls(&c, &d, Some(dir.path()), Some(per_epoch + 2));
        interrupted(r);
        assert_eq!(mid_json(dir.path())["batches_done"], 2);
        // Resumed: 3 more batches, then stopped again.
        let (r, seen, _) = run_calls(&c, &d, Some(dir.path()), Some(3));
        interrupted(r);
        assert!(seen.is_empty());
        let m = mid_json(dir.path());
        assert_eq!(
            (m["epoch"].as_u64(), m["batches_done"].as_u64()),
            (Some(2), Some(5))
        );
        assert!(dir_names(dir.path()).contains(&"checkpoint-mid-e2-b5.safetensors".to_string()));
        assert!(!dir_names(dir.path()).contains(&"checkpoint-mid-e2-b2.safetensors".to_string()));
        // Stopped at once: nothing new to save, the checkpoint stays as is.
        let before = std::fs::read(dir.path().join("checkpoint-mid.json")).unwrap();
        let (r, _, calls) = run_calls(&c, &d, Some(dir.path()), Some(0));
        interrupted(r);
        assert_eq!(calls, 1);
        assert_eq!(
            std::fs::read(dir.path().join("checkpoint-mid.json")).unwrap(),
            before
        );
        // One more batch, then the rest.
        let (r, _, _) = run_calls(&c, &d, Some(dir.path()), Some(1));
        interrupted(r);
        assert_eq!(mid_json(dir.path())["batches_done"], 6);
        let (r, seen, _) = run_calls(&c, &d, Some(dir.path()), None);
        assert_eq!(seen, [2, 3, 4]);
        assert_eq!(comparable(&r.unwrap()), want, "{c:?}");
    }
}

#[test]
fn interruption_without_checkpoint_dir_writes_nothing() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let cwd_before = dir_names(std::path::Path::new("."));
    let t = Instant::now();
    for n in [0, 3, 8, 13] {
        let (r, seen, calls) = run_calls(&c, &d, None, Some(n));
        interrupted(r);
        assert_eq!(calls, n + 1);
        assert_eq!(seen.len(), n / 9);
    }
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(dir_names(std::path::Path::new(".")), cwd_before);
}

#[test]
fn corrupt_mid_epoch_checkpoints_are_ignored_with_a_warning() {
    let (c, d) = (ck_cfg(0.05), ck_data());
    let want = comparable(&run(&c, &d).unwrap());
    type Damage = fn(&std::path::Path);
    let tensors = "checkpoint-mid-e2-b3.safetensors";
    let cases: [(&str, Damage, &str); 7] = [
        (
            "garbage manifest",
            |p| std::fs::write(p.join("checkpoint-mid.json"), b"{\"format_").unwrap(),
            "checkpoint-mid.json",
        ),
        (
            "future format",
            |p| std::fs::write(p.join("checkpoint-mid.json"), br#"{"format_version": 7}"#).unwrap(),
            "checkpoint-mid.json",
        ),
        (
            "bad loss sum",
            |p| {
                let mut m = mid_json(p);
                m["loss_sum"] = json!("lots");
                std::fs::write(p.join("checkpoint-mid.json"), m.to_string()).unwrap();
            },
            "checkpoint-mid.json",
        ),
        (
            "batch out of range",
            |p| {
                let mut m = mid_json(p);
                m["batches_done"] = json!(8);
                std::fs::write(p.join("checkpoint-mid.json"), m.to_string()).unwrap();
            },
            "checkpoint-mid.json",
        ),
        (
            "another base",
            |p| {
                let mut m = mid_json(p);
                m["base_crc32"] = json!(12345);
                std::fs::write(p.join("checkpoint-mid.json"), m.to_string()).unwrap();
            },
            "checkpoint-mid.json",
        ),
        (
            "truncated tensors",
            |p| {
                let t = p.join("checkpoint-mid-e2-b3.safetensors");
                let b = std::fs::read(&t).unwrap();
                std::fs::write(&t, &b[..b.len() / 2]).unwrap();
            },
            "checkpoint-mid-e2-b3.safetensors",
        ),
        (
            "missing tensors",
            |p| std::fs::remove_file(p.join("checkpoint-mid-e2-b3.safetensors")).unwrap(),
            "checkpoint-mid-e2-b3.safetensors",
        ),
    ];
    for (what, damage, file) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (r, _, _) = run_calls(&c, &d, Some(dir.path()), Some(9 + 3));
        interrupted(r);
        assert!(dir_names(dir.path()).contains(&tensors.to_string()));
        damage(dir.path());
        assert_eq!(checkpoint_epochs(dir.path(), &c, &d), Some(1), "{what}");
        let ((r, seen, _), warnings) =
            capture_warnings(|| run_calls(&c, &d, Some(dir.path()), None));
        assert_eq!(seen, [2, 3, 4], "{what}: should resume after epoch 1");
        assert_eq!(comparable(&r.unwrap()), want, "{what}");
        let path = dir.path().join(file).display().to_string();
        assert!(
            warnings.contains("WARN") && warnings.contains(&path),
            "{what}: {warnings}"
        );
        assert_eq!(
            dir_names(dir.path()),
            ["checkpoint-e4.safetensors", "checkpoint.json"],
            "{what}"
        );
    }

    // In epoch 1 (no epoch checkpoint): from scratch.
    let dir = tempfile::tempdir().unwrap();
    let (r, _, _) = run_calls(&c, &d, Some(dir.path()), Some(4));
    interrupted(r);
    std::fs::write(dir.path().join("checkpoint-mid-e1-b4.safetensors"), b"junk").unwrap();
    assert_eq!(checkpoint_epochs(dir.path(), &c, &d), None);
    let ((r, seen, _), warnings) = capture_warnings(|| run_calls(&c, &d, Some(dir.path()), None));
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_eq!(comparable(&r.unwrap()), want);
    assert!(warnings.contains("training from scratch"), "{warnings}");

    // A stale mid-epoch checkpoint (crash after a newer epoch checkpoint
    // was committed, before the mid-epoch files were removed) is ignored.
    let dir = tempfile::tempdir().unwrap();
    let (r, _, _) = run_calls(&c, &d, Some(dir.path()), Some(3));
    interrupted(r);
    let stale: Vec<(String, Vec<u8>)> = dir_names(dir.path())
        .into_iter()
        .map(|n| {
            let b = std::fs::read(dir.path().join(&n)).unwrap();
            (n, b)
        })
        .collect();
    let (r, _) = run_ck(&c, &d, dir.path(), Some(2));
    interrupted(r);
    for (n, b) in stale {
        std::fs::write(dir.path().join(n), b).unwrap();
    }
    let ((r, seen, _), warnings) = capture_warnings(|| run_calls(&c, &d, Some(dir.path()), None));
    assert_eq!(seen, [3, 4]);
    assert_eq!(comparable(&r.unwrap()), want);
    assert!(
        warnings.contains("continues the checkpoint of epoch 0"),
        "{warnings}"
    );
}

// ---- The hyperparameter surface: each knob changes training as intended ----

/// A small config with `p` on top: 4 filters, batch 16, 256 training and
/// 128 validation examples of the synthetic set.
fn hp(p: Value, epochs: u32) -> CnnConfig {
    let mut base = json!({"nf": 4, "batch_size": 16, "train_size": 256, "val_size": 128,
                          "test_size": 0, "lr": 0.05, "momentum": 0.9});
    for (k, v) in p.as_object().unwrap() {
        base[k] = v.clone();
    }
    CnnConfig::from_params(&params(base), &CnnDefaults::default(), epochs, None, 3).unwrap()
}

fn last_instruments(out: &CnnOutcome) -> hps_common::Instruments {
    out.curve.last().unwrap().instruments.clone().unwrap()
}

#[test]
fn dropout_narrows_the_train_validation_gap() {
    // Random labels on the training examples: all a net can do there is
    // memorise them, which dropout prevents.
    let mut d = data();
    let n = d.train_len();
    let noisy: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 10).collect();
    d.train_labels = Tensor::from_vec(noisy, n, &Device::Cpu).unwrap();
    let gap = |rate: f64| {
        let c = hp(
            json!({"dropout": rate, "train_size": 32, "val_size": 128, "lr": 0.05}),
            25,
        );
        let out = run(&c, &d).unwrap();
        let l = out.curve.last().unwrap();
        l.val_loss - l.train_loss
    };
    let (g0, g9) = (gap(0.0), gap(0.9));
    assert!(
        g9 < g0,
        "gap with dropout 0.9 ({g9}) not below gap without ({g0})"
    );
}

#[test]
fn weight_decay_shrinks_the_weights_in_both_modes() {
    let d = data();
    let norm = |p: Value| last_instruments(&run(&hp(p, 3), &d).unwrap()).weight_norm;
    let none = norm(json!({"weight_decay": 0.0}));
    let l2 = norm(json!({"weight_decay": 0.05}));
    let decoupled = norm(json!({"weight_decay": 0.05, "weight_decay_mode": "decoupled"}));
    let adamw = norm(json!({"weight_decay": 0.05, "optimizer": "adamw", "lr": 0.003}));
    let adam = norm(json!({"optimizer": "adam", "lr": 0.003}));
    assert!(l2 < none && decoupled < none, "{l2} {decoupled} vs {none}");
    assert!(adamw < adam, "{adamw} vs {adam}");
}

#[test]
fn patience_stops_early_and_restores_the_best_epoch() {
    let d = data();
    // 32 examples, a large step: validation loss soon stops improving.
    let c = hp(
        json!({"train_size": 32, "lr": 0.2, "patience": 2, "dropout": 0.0}),
        30,
    );
    let out = run(&c, &d).unwrap();
    assert!(out.stopped_early, "{:?}", out.curve);
    let best = out.best_epoch.unwrap();
    assert_eq!(
        out.epochs_completed,
        best + 2,
        "stops `patience` epochs after the best"
    );
    assert!(out.epochs_completed < 30);
    let best_val = out.curve[best as usize - 1].val_loss;
    assert_eq!(out.metrics["val_loss"], best_val);
    // restore_best = false reports the last epoch instead.
    let mut c2 = c.clone();
    c2.hyper.restore_best = false;
    let out2 = run(&c2, &d).unwrap();
    assert_eq!(
        out2.metrics["val_loss"],
        out2.curve.last().unwrap().val_loss
    );
    assert_eq!(out2.best_epoch, out.best_epoch);
}

#[test]
fn lr_schedules_show_in_the_instruments() {
    let d = data();
    let lrs = |p: Value, epochs: u32| -> Vec<f64> {
        run(&hp(p, epochs), &d)
            .unwrap()
            .curve
            .iter()
            .map(|s| s.instruments.as_ref().unwrap().lr)
            .collect()
    };
    assert_eq!(lrs(json!({}), 2), vec![0.05, 0.05]);
    let step = lrs(
        json!({"lr_schedule": "step", "lr_step_epochs": 1, "lr_gamma": 0.5}),
        3,
    );
    // The last step of epoch e runs at lr * 0.5^(e-1).
    for (e, lr) in step.iter().enumerate() {
        assert!(
            (lr - 0.05 * 0.5f64.powi(e as i32)).abs() < 1e-12,
            "{step:?}"
        );
    }
    let cos = lrs(json!({"lr_schedule": "cosine"}), 3);
    assert!(
        cos[0] > cos[1] && cos[1] > cos[2] && cos[2] < 0.01,
        "{cos:?}"
    );
    let c = hp(json!({"warmup_epochs": 2}), 3);
    assert!((c.lr_at(0, 16) - 0.05 / 32.0).abs() < 1e-12);
    assert!((c.lr_at(15, 16) - 0.025).abs() < 1e-12);
    assert_eq!(c.lr_at(40, 16), 0.05);
}

#[test]
fn instruments_are_recorded_every_epoch() {
    let d = data();
    let c = hp(
        json!({"conv_layers": 2, "dense_layers": 2, "dense_units": 16}),
        2,
    );
    let out = run(&c, &d).unwrap();
    for s in &out.curve {
        let i = s.instruments.as_ref().unwrap();
        assert!(
            i.grad_norm > 0.0 && i.weight_norm > 0.0 && i.update_ratio > 0.0,
            "{i:?}"
        );
        let names: Vec<&str> = i.activations.iter().map(|a| a.layer.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "dense1", "dense2"]);
        assert!(i
            .activations
            .iter()
            .all(|a| a.std > 0.0 && a.mean.is_finite()));
    }
}

#[test]
fn every_optimizer_and_architecture_variant_learns() {
    let d = data();
    let variants = [
        json!({"optimizer": "sgd", "lr": 0.1}),
        json!({"optimizer": "nesterov"}),
        json!({"optimizer": "adam", "lr": 0.003}),
        json!({"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01}),
        json!({"activation": "tanh", "pool": "avg"}),
        json!({"activation": "gelu", "init": "he"}),
        json!({"init": "normal", "pool": "none", "conv_layers": 1}),
        json!({"conv_layers": 3, "kernel_size": 3, "padding": "same", "nf_mult": 2.0}),
        json!({"batchnorm": true, "dense_layers": 2, "dense_units": 32, "conv_dropout": 0.1}),
        json!({"pool_size": 3, "kernel_size": 3}),
    ];
    for p in variants {
        let out = run(&hp(p.clone(), 3), &d).unwrap();
        assert_eq!(out.status, TrialStatus::Complete, "{p}: {:?}", out.error);
        let (first, last) = (&out.curve[0], out.curve.last().unwrap());
        assert!(
            last.train_loss < first.train_loss || last.val_error < 0.5,
            "{p}: did not learn: {:?}",
            out.curve
        );
    }
}

#[test]
fn augmentation_changes_training_reproducibly() {
    let d = data();
    let plain = run(&hp(json!({}), 2), &d).unwrap();
    let c = hp(
        json!({"aug_shift": 2, "aug_flip": true, "aug_rotate": 10.0}),
        2,
    );
    let a = run(&c, &d).unwrap();
    let b = run(&c, &d).unwrap();
    assert_ne!(a.curve[0].train_loss, plain.curve[0].train_loss);
    assert_eq!(
        comparable(&a),
        comparable(&b),
        "same seed, same augmented run"
    );
}

#[test]
fn same_seed_gives_identical_metrics_with_every_random_source() {
    let d = data();
    let c = hp(
        json!({"optimizer": "adam", "lr": 0.003, "batchnorm": true, "conv_dropout": 0.2,
               "aug_shift": 1, "aug_flip": true, "init": "he"}),
        2,
    );
    let (a, b) = (run(&c, &d).unwrap(), run(&c, &d).unwrap());
    assert_eq!(comparable(&a), comparable(&b));
    let mut other = c.clone();
    other.seed += 1;
    assert_ne!(comparable(&run(&other, &d).unwrap()).0, comparable(&a).0);
}

#[test]
fn k_fold_reports_mean_and_spread_across_folds() {
    let d = data();
    let c = hp(json!({"folds": 3, "train_size": 192}), 2);
    let out = run(&c, &d).unwrap();
    assert_eq!(out.status, TrialStatus::Complete);
    assert_eq!(out.metrics["folds"], 3.0);
    assert!(out.metrics["val_error_std"] >= 0.0);
    assert!(out.metrics.contains_key("val_loss_std"));
    assert_eq!(out.curve.len(), 2);
    // The mean is the mean of the folds' best-epoch errors, each in [0, 1].
    let v = out.metrics["val_error"];
    assert!((0.0..=1.0).contains(&v));
    // Each fold validates on its own part: `val_size` plays no role, even
    // at 0 (it used to skip validation and fail the trial).
    let c = hp(json!({"folds": 2, "train_size": 192, "val_size": 0}), 1);
    let out = run(&c, &d).unwrap();
    assert_eq!(out.status, TrialStatus::Complete, "{:?}", out.error);
    assert!((0.0..=1.0).contains(&out.metrics["val_error"]));
    let e = CnnConfig::from_params(
        &params(json!({"folds": 500, "train_size": 100})),
        &CnnDefaults::default(),
        1,
        None,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("folds"), "{e}");
}

#[test]
fn an_architecture_that_does_not_fit_is_invalid_with_a_reason() {
    let e = CnnConfig::from_params(
        &params(json!({"conv_layers": 4})),
        &CnnDefaults::default(),
        1,
        None,
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("conv layer 3") && e.contains("kernel_size"),
        "{e}"
    );
}

/// Issue 17 §7: Scenario 1's LR = 2 on real data ends at chance level
/// (loss ~ ln 10, validation error ~ 0.9) with finite losses, so it was
/// reported `complete` like any other run. It is now flagged `collapsed`.
#[test]
fn a_run_ending_at_chance_level_is_collapsed_and_a_learning_one_is_not() {
    let stat = |epoch, train_loss, val_error| EpochStat {
        train_error: None,
        epoch,
        elapsed_s: 1.0,
        train_loss,
        val_loss: train_loss,
        val_error,
        instruments: None,
    };
    let chance = 10f64.ln();
    assert!(collapsed(
        &[stat(1, 1.2, 0.4), stat(2, chance + 0.001, 0.9)],
        10
    ));
    assert!(collapsed(&[stat(1, chance - 0.03, 0.87)], 10));
    // Still at chance error but learning (loss well below ln 10).
    assert!(!collapsed(&[stat(1, 1.6, 0.88)], 10));
    // A good run, and no run at all.
    assert!(!collapsed(&[stat(1, 0.4, 0.15)], 10));
    assert!(!collapsed(&[], 10));
}

/// Seed 004's MLP (784 → 128 → 64 → 10, no conv, Adam; lr 1e-3 for speed)
/// on the small synthetic set.
fn mlp(epochs: u32) -> CnnConfig {
    hp(
        json!({"conv_layers": 0, "dense_widths": [128, 64], "dropout": 0.0,
               "optimizer": "adam", "lr": 0.001, "batch_size": 32}),
        epochs,
    )
}

#[test]
fn the_seed_004_mlp_learns_and_resumes_from_its_checkpoint() {
    let d = data();
    let c = mlp(4);
    assert!(c.arch.filters.is_empty());
    assert_eq!(c.arch.dense, vec![128, 64]);
    let out = run(&c, &d).unwrap();
    assert_eq!(out.status, TrialStatus::Complete);
    let loss: Vec<f64> = out.curve.iter().map(|s| s.train_loss).collect();
    assert!(loss[3] < 0.7 * loss[0], "{loss:?}");
    let names: Vec<String> = last_instruments(&out)
        .activations
        .iter()
        .map(|a| a.layer.clone())
        .collect();
    assert_eq!(names, ["dense1", "dense2"]);
    // Interrupted after epoch 2 and resumed: the same run.
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = run_ck(&c, &d, dir.path(), Some(2));
    interrupted(r);
    let (resumed, seen) = run_ck(&c, &d, dir.path(), None);
    let resumed = resumed.unwrap();
    assert_eq!(seen, vec![3, 4]);
    assert_eq!(comparable(&resumed), comparable(&out));
    let train_errors =
        |o: &CnnOutcome| -> Vec<Option<f64>> { o.curve.iter().map(|s| s.train_error).collect() };
    assert_eq!(train_errors(&resumed), train_errors(&out));
}

#[test]
fn train_error_and_the_first_layer_are_measured_every_epoch() {
    let d = data();
    for c in [hp(json!({"dropout": 0.0}), 4), mlp(4)] {
        let out = run(&c, &d).unwrap();
        let errs: Vec<f64> = out.curve.iter().map(|s| s.train_error.unwrap()).collect();
        assert!(errs.iter().all(|e| (0.0..=1.0).contains(e)), "{errs:?}");
        assert!(
            errs[3] < errs[0],
            "train error falls on learnable data: {errs:?}"
        );
        for s in &out.curve {
            let i = s.instruments.as_ref().unwrap();
            let (w, g) = (i.first_abs_weight.unwrap(), i.first_abs_grad.unwrap());
            assert!(
                w > 0.0 && w.is_finite() && g > 0.0 && g.is_finite(),
                "{i:?}"
            );
        }
    }
    // The MLP's first layer is its 784 x 128 weight, Glorot-initialised:
    // mean |w| is half the bound at the start.
    let out = run(&mlp(1), &d).unwrap();
    let w = last_instruments(&out).first_abs_weight.unwrap();
    let half_bound = model::glorot_bound(784, 128) / 2.0;
    assert!((w / half_bound - 1.0).abs() < 0.1, "{w} vs {half_bound}");
    // k-fold averages the folds' train errors.
    let out = run(&hp(json!({"folds": 2}), 2), &d).unwrap();
    assert!(out.curve.iter().all(|s| s.train_error.is_some()));
}

#[test]
fn a_step_schedule_with_gamma_above_one_grows_the_lr() {
    let d = data();
    let c = hp(
        json!({"lr_schedule": "step", "lr_step_epochs": 1, "lr_gamma": 2.0, "lr": 0.001}),
        3,
    );
    assert_eq!(c.lr_at(0, 16), 0.001);
    assert_eq!(c.lr_at(16, 16), 0.002);
    let out = run(&c, &d).unwrap();
    let lrs: Vec<f64> = out
        .curve
        .iter()
        .map(|s| s.instruments.as_ref().unwrap().lr)
        .collect();
    assert_eq!(lrs, vec![0.001, 0.002, 0.004]);
}
