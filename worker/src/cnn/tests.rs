use std::cell::Cell;

use serde_json::json;

use super::*;

fn params(v: Value) -> Params {
    serde_json::from_value(v).unwrap()
}

fn cfg(p: Value) -> Result<CnnConfig, InvalidParams> {
    CnnConfig::from_params(&params(p), &CnnDefaults::default(), 7, None, 42)
}

fn tiny(lr: f64, momentum: f64, epochs: u32) -> CnnConfig {
    CnnConfig {
        lr,
        momentum,
        batch_size: 16,
        nf: 4,
        epochs,
        train_size: 384,
        val_size: 128,
        test_size: 0,
        seed: 5,
        time_limit_s: None,
    }
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
        c,
        CnnConfig {
            lr: d.lr,
            momentum: d.momentum,
            batch_size: d.batch_size as usize,
            nf: d.nf as usize,
            epochs: 7,
            train_size: d.train_size as usize,
            val_size: d.val_size as usize,
            test_size: d.test_size as usize,
            seed: 42,
            time_limit_s: None,
        }
    );
    let c = cfg(
        json!({"lr": 0.05, "momentum": 0.9, "batch_size": 64, "nf": 16.0,
                       "epochs": 3, "train_size": 100, "val_size": 0, "test_size": 0}),
    )
    .unwrap();
    assert_eq!(
        (c.lr, c.momentum, c.batch_size, c.nf, c.epochs),
        (0.05, 0.9, 64, 16, 3)
    );
    assert_eq!((c.train_size, c.val_size, c.test_size), (100, 0, 0));
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
    let e = cfg(json!({"dropout": 0.2})).unwrap_err().to_string();
    assert!(e.contains("unknown hyperparameter `dropout`"), "{e}");
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
    let c = CnnConfig {
        val_size: 0,
        train_size: 512,
        test_size: 50,
        ..tiny(0.05, 0.9, 2)
    };
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
        &CnnConfig {
            train_size: 400,
            val_size: 200,
            ..tiny(0.1, 0.0, 1)
        },
        &data(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("train_size (400)") && e.contains("val_size (200)") && e.contains("512"),
        "{e}"
    );
    let e = run(
        &CnnConfig {
            test_size: 101,
            ..tiny(0.1, 0.0, 1)
        },
        &data(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("test_size (101)"), "{e}");
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
    let c = CnnConfig {
        lr: 0.05,
        momentum: 0.9,
        batch_size: 64,
        nf: 8,
        epochs: 1,
        train_size: 2000,
        val_size: 1000,
        test_size: 1000,
        seed: 1,
        time_limit_s: None,
    };
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
    let c = CnnConfig {
        lr: f.get(4).copied().unwrap_or(0.05),
        momentum: f.get(5).copied().unwrap_or(0.9),
        batch_size: v[1],
        nf: v[0],
        epochs: v[3] as u32,
        train_size: v[2],
        val_size: 0,
        test_size: 0,
        seed: 1,
        time_limit_s: None,
    };
    let t = Instant::now();
    let out = train(&c, &d, &Device::Cpu, &mut |s| println!("{s:?}"), &|| false).unwrap();
    println!("status {:?} error {:?}", out.status, out.error);
    println!(
        "nf {} batch {} train {}: epoch_time_s {:.3} ({:.1} us/example), total with eval {:.2}s, test_error {:?}",
        c.nf,
        c.batch_size,
        c.train_size,
        out.metrics["epoch_time_s"],
        out.metrics["epoch_time_s"] * 1e6 / c.train_size as f64,
        t.elapsed().as_secs_f64(),
        out.metrics.get("test_error")
    );
}
