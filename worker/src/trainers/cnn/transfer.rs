//! Transfer learning (seed 003): a trial starts from the final weights of
//! another trial, fine-tuning every layer or with its conv blocks frozen.
//!
//! Every cnn trial that finishes (complete or pruned) keeps the weights
//! its metrics are reported at (the best epoch with `restore_best`, else
//! the last; a k-fold trial keeps fold 1's) in
//! `weights/<id>.safetensors` of its study directory
//! ([`StudyDir::weights_path`]), one tensor per name of [`layer_names`].
//! A trial with `transfer` other than `none` reads the source named by
//! the study's `trainer.transfer_from` when it starts ([`resolve`],
//! [`SourceWeights::read`]) and copies it into its fresh network
//! ([`SourceWeights::apply`]): conv layers must have the source's shapes
//! (else the trial is `invalid`); a dense layer whose shapes differ stays
//! freshly initialised.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hps_common::cnn::TransferFrom;
use hps_common::{Study, TrialStatus};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::{FsError, StudyDir};

use super::model::Arch;
use super::model::{Cnn, Weights};

/// The names of the trainable tensors (in the order of
/// [`Arch::var_shapes`]) and of the batch-norm running statistics (in the
/// order of [`Arch::stat_shapes`]): `conv1.kernel`, `conv1.bias`,
/// `conv1.gamma`, `conv1.beta`, ..., `dense1.weight`, ..., `out.weight`,
/// `out.bias`; `conv1.mean`, `conv1.var`, ....
pub fn layer_names(arch: &Arch) -> (Vec<String>, Vec<String>) {
    let layers: Vec<String> = (1..=arch.filters.len())
        .map(|i| format!("conv{i}"))
        .chain((1..=arch.dense.len()).map(|i| format!("dense{i}")))
        .collect();
    let mut vars = Vec::new();
    let mut stats = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let (w, b) = if i < arch.filters.len() {
            ("kernel", "bias")
        } else {
            ("weight", "bias")
        };
        vars.push(format!("{layer}.{w}"));
        vars.push(format!("{layer}.{b}"));
        if arch.batchnorm {
            vars.push(format!("{layer}.gamma"));
            vars.push(format!("{layer}.beta"));
            stats.push(format!("{layer}.mean"));
            stats.push(format!("{layer}.var"));
        }
    }
    vars.push("out.weight".into());
    vars.push("out.bias".into());
    (vars, stats)
}

/// Why a trial cannot start from another trial's weights, or its own
/// weights cannot be kept. Each names the study, the trial or the file.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot serialise the weights: {0}")]
    Serialise(#[source] candle_core::Error),
    #[error(transparent)]
    Fs(Box<FsError>),
    #[error("the weights of {label} (`{}`) cannot be read: {source}", path.display())]
    Unreadable {
        label: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the weights of {label} (`{}`) are corrupt: {why}", path.display())]
    Corrupt {
        label: String,
        path: PathBuf,
        why: String,
    },
    #[error(
        "cannot start from {label}: its layer {layer} does not match this trial's ({why}); \
         transfer needs the source's conv layers (conv_layers, nf, nf_mult, kernel_size, batchnorm)"
    )]
    ConvMismatch {
        label: String,
        layer: String,
        why: String,
    },
    #[error("cannot copy {name}: {source}")]
    Copy {
        name: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("transfer needs `trainer.transfer_from` in the study file, which is missing")]
    NoSource,
    #[error(
        "transfer_from names {study} (`{}`), which is not a study directory ({source}); \
         create and run it first (`hps-master init`, `hps-master run`)",
        root.display()
    )]
    NoStudy {
        study: String,
        root: PathBuf,
        #[source]
        source: Box<FsError>,
    },
    #[error(
        "{label} finished without keeping its weights (`{}`; trials pruned while paused, and \
         trials finished by hps before transfer learning, keep none): name another trial, or \
         run that one again",
        path.display()
    )]
    NoWeights { label: String, path: PathBuf },
    #[error(
        "trial {id} of {study} ended `{status}`, with no weights to start from; name another \
         trial in transfer_from"
    )]
    NotComplete {
        id: String,
        study: String,
        status: &'static str,
    },
    #[error(
        "trial {id} of {study} has not finished: run that study (`hps-master run {}` and a \
         worker) until it has, then this trial again",
        root.display()
    )]
    NotFinished {
        id: String,
        study: String,
        root: PathBuf,
    },
    #[error("trial {id} of {study}: {source}")]
    Result {
        id: String,
        study: String,
        #[source]
        source: Box<FsError>,
    },
    #[error(
        "{study} has no complete trial yet to take the best of: run it first (`hps-master run \
         {}` and a worker)",
        root.display()
    )]
    NoBest { study: String, root: PathBuf },
}

impl From<FsError> for TransferError {
    fn from(e: FsError) -> TransferError {
        TransferError::Fs(Box::new(e))
    }
}

/// `w` as safetensors bytes, one tensor per name of [`layer_names`].
pub fn to_bytes(w: &Weights) -> candle_core::Result<Vec<u8>> {
    let (vars, stats) = layer_names(w.arch());
    let mut map = HashMap::new();
    for (name, t) in vars
        .iter()
        .zip(w.tensors())
        .chain(stats.iter().zip(w.stats()))
    {
        map.insert(name.clone(), t.to_device(&Device::Cpu)?);
    }
    safetensors::serialize(&map, None).map_err(candle_core::Error::wrap)
}

/// Write the final weights of trial `id` into its study's `weights/`.
pub fn keep(dir: &StudyDir, id: &str, w: &Weights) -> Result<PathBuf, TransferError> {
    let bytes = to_bytes(w).map_err(TransferError::Serialise)?;
    Ok(dir.write_weights(id, &bytes)?)
}

/// A source trial's weights, on the CPU, by layer name.
#[derive(Clone, PartialEq)]
pub struct SourceWeights {
    /// Which trial they come from, for messages and the checkpoint
    /// fingerprint ("trial t000003 of study `../base`").
    pub label: String,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl std::fmt::Debug for SourceWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceWeights")
            .field("label", &self.label)
            .field("tensors", &self.tensors.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SourceWeights {
    /// Read a weights file written by [`keep`].
    pub fn read(path: &Path, label: String) -> Result<SourceWeights, TransferError> {
        let corrupt = |why: String| TransferError::Corrupt {
            label: label.clone(),
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| TransferError::Unreadable {
            label: label.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in map {
            let data = t
                .flatten_all()
                .and_then(|f| f.to_dtype(candle_core::DType::F32))
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
            tensors.insert(name, (t.dims().to_vec(), data));
        }
        Ok(SourceWeights { label, tensors })
    }

    /// Weights of `w` under `label` (tests).
    #[cfg(test)]
    pub fn from_weights(w: &Weights, label: &str) -> SourceWeights {
        let bytes = to_bytes(w).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, bytes).unwrap();
        SourceWeights::read(&path, label.into()).unwrap()
    }

    /// Copy the source into `model`, layer by layer: every conv layer
    /// must match (the error names the source and the layer); a dense
    /// layer is copied when all its tensors match, else it keeps its
    /// fresh weights (logged). The output layer counts as a dense layer.
    pub fn apply(&self, model: &Cnn) -> Result<(), TransferError> {
        let arch = model.arch.clone();
        let (vars, stats) = layer_names(&arch);
        let named: Vec<(&String, Vec<usize>)> = vars
            .iter()
            .zip(arch.var_shapes())
            .chain(stats.iter().zip(arch.stat_shapes()))
            .collect();
        let layers: Vec<&str> = {
            let mut l: Vec<&str> = named.iter().map(|(n, _)| layer_of(n)).collect();
            l.dedup();
            l
        };
        for layer in layers {
            let mine: Vec<&(&String, Vec<usize>)> =
                named.iter().filter(|(n, _)| layer_of(n) == layer).collect();
            let mismatch =
                mine.iter()
                    .find_map(|(name, shape)| match self.tensors.get(name.as_str()) {
                        Some((s, _)) if s == shape => None,
                        Some((s, _)) => {
                            Some(format!("{name} has shape {s:?} there, {shape:?} here"))
                        }
                        None => Some(format!("{name} is missing there")),
                    });
            match mismatch {
                Some(why) if layer.starts_with("conv") => {
                    return Err(TransferError::ConvMismatch {
                        label: self.label.clone(),
                        layer: layer.to_string(),
                        why,
                    })
                }
                Some(why) => {
                    tracing::info!(
                        "layer {layer} starts fresh: it does not match {} ({why})",
                        self.label
                    );
                }
                None => {
                    for (name, _) in mine {
                        self.copy_into(model, &vars, &stats, name)
                            .map_err(|source| TransferError::Copy {
                                name: name.to_string(),
                                source,
                            })?;
                    }
                }
            }
        }
        Ok(())
    }

    fn copy_into(
        &self,
        model: &Cnn,
        vars: &[String],
        stats: &[String],
        name: &str,
    ) -> candle_core::Result<()> {
        let Some((shape, data)) = self.tensors.get(name) else {
            return Ok(());
        };
        let device = model.vars[0].device();
        let t = Tensor::from_vec(data.clone(), shape.as_slice(), device)?;
        if let Some(i) = vars.iter().position(|v| v == name) {
            model.vars[i].set(&t)?;
        } else if let Some(i) = stats.iter().position(|v| v == name) {
            model.set_stat(i, t);
        }
        Ok(())
    }
}

/// `conv1` of `conv1.kernel`.
fn layer_of(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// The weights file named by `from`, resolved against the study
/// directory `dir`, and a label for it; or why there is none yet (the
/// message says which study and trial, and what to run first).
pub fn resolve(dir: &StudyDir, from: &TransferFrom) -> Result<(PathBuf, String), TransferError> {
    let (root, study_name) = match &from.study {
        Some(p) => (dir.root().join(p), format!("study `{p}`")),
        None => (dir.root().to_path_buf(), "this study".to_string()),
    };
    let source = StudyDir::open(&root).map_err(|source| TransferError::NoStudy {
        study: study_name.clone(),
        root: root.clone(),
        source: Box::new(source),
    })?;
    let id = match from.trial_id() {
        Some(id) => finished(&source, id, &study_name)?,
        None => best(&source, &study_name)?,
    };
    let label = format!("trial {id} of {study_name}");
    let path = source.weights_path(&id)?;
    if !path.is_file() {
        return Err(TransferError::NoWeights { label, path });
    }
    Ok((path, label))
}

/// `id`, if it finished with weights to start from.
fn finished(source: &StudyDir, id: &str, study_name: &str) -> Result<String, TransferError> {
    let (id, study) = (id.to_string(), study_name.to_string());
    match source.read_result(&id) {
        Ok(r) if matches!(r.status, TrialStatus::Complete | TrialStatus::Pruned) => Ok(id),
        Ok(r) => Err(TransferError::NotComplete {
            id,
            study,
            status: r.status.as_str(),
        }),
        Err(e) if is_not_found(&e) => Err(TransferError::NotFinished {
            id,
            study,
            root: source.root().to_path_buf(),
        }),
        Err(source) => Err(TransferError::Result {
            id,
            study,
            source: Box::new(source),
        }),
    }
}

/// The best complete trial of `source` by its objective.
fn best(source: &StudyDir, study_name: &str) -> Result<String, TransferError> {
    let study: Study = source.read_study()?;
    let dir = study.objective.direction;
    let ids = source.list(hps_shared_fs::Sub::Results)?;
    let best = ids
        .iter()
        .filter_map(|id| source.read_result(id).ok())
        .filter(|r| r.status == TrialStatus::Complete)
        .filter_map(|r| {
            r.objective
                .filter(|v| v.is_finite())
                .map(|v| (r.trial_id, v))
        })
        .min_by(|a, b| dir.cmp(a.1, b.1));
    best.map(|(id, _)| id).ok_or_else(|| TransferError::NoBest {
        study: study_name.to_string(),
        root: source.root().to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::rng::rng_stream;
    use super::super::{train, CnnConfig, CnnOutcome, Dataset, EpochControl, Job, TrainError};
    use super::*;
    use hps_common::{CnnDefaults, Params};

    fn cfg(p: serde_json::Value, epochs: u32) -> CnnConfig {
        let mut base = json!({"nf": 4, "batch_size": 16, "train_size": 256, "val_size": 128,
                              "test_size": 0, "lr": 0.05, "momentum": 0.9, "dropout": 0.0});
        for (k, v) in p.as_object().unwrap() {
            base[k] = v.clone();
        }
        let params: Params = serde_json::from_value(base).unwrap();
        CnnConfig::from_params(&params, &CnnDefaults::default(), epochs, None, 3).unwrap()
    }

    fn data() -> Dataset {
        Dataset::synthetic(512, 100, 11, &Device::Cpu)
    }

    fn run(c: &CnnConfig, d: &Dataset) -> Result<CnnOutcome, TrainError> {
        train(&Job::new(c, d, &Device::Cpu), &mut |_| {
            EpochControl::Continue
        })
    }

    /// `c` starting from `src` with `transfer`.
    fn from(c: &CnnConfig, transfer: &str, src: &SourceWeights) -> CnnConfig {
        let mut c = c.with_hyper(|h| {
            h.transfer = serde_json::from_value(json!(transfer)).unwrap();
        });
        c.transfer = Some(Arc::new(src.clone()));
        c
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn layer_names_follow_the_var_and_stat_order() {
        let c = cfg(json!({"batchnorm": true, "conv_layers": 1}), 1);
        let (vars, stats) = layer_names(&c.arch);
        assert_eq!(vars.len(), c.arch.var_shapes().len());
        assert_eq!(stats.len(), c.arch.stat_shapes().len());
        assert_eq!(
            vars,
            [
                "conv1.kernel",
                "conv1.bias",
                "conv1.gamma",
                "conv1.beta",
                "dense1.weight",
                "dense1.bias",
                "dense1.gamma",
                "dense1.beta",
                "out.weight",
                "out.bias"
            ]
        );
        assert_eq!(
            stats,
            ["conv1.mean", "conv1.var", "dense1.mean", "dense1.var"]
        );
    }

    #[test]
    fn frozen_conv_layers_stay_bit_identical_while_the_dense_layers_train() {
        let d = data();
        for bn in [false, true] {
            let c = cfg(json!({"batchnorm": bn}), 2);
            let source = run(&c, &d).unwrap().weights.unwrap();
            let src = SourceWeights::from_weights(&source, "trial t000000 of this study");
            // Another seed, so fresh weights would differ everywhere.
            let mut target = from(&c, "freeze_conv", &src);
            target.seed = 9;
            let out = run(&target, &d).unwrap();
            let after = out.weights.unwrap();
            let n_conv = if bn { 4 } else { 2 } * c.arch.filters.len();
            for i in 0..source.tensors().len() {
                let (a, b) = (values(&source.tensors()[i]), values(&after.tensors()[i]));
                if i < n_conv {
                    assert_eq!(a, b, "conv var {i} (batchnorm {bn}) changed");
                } else {
                    assert_ne!(a, b, "dense var {i} (batchnorm {bn}) did not train");
                }
            }
            for i in 0..2 * c.arch.filters.len() * usize::from(bn) {
                let (a, b) = (values(&source.stats()[i]), values(&after.stats()[i]));
                assert_eq!(a, b, "conv running statistic {i} changed");
            }
            // A frozen first layer has no gradient to report.
            let i = out.curve[0].instruments.as_ref().unwrap();
            assert!(i.first_abs_grad.is_none() && i.first_abs_weight.unwrap() > 0.0);
        }
    }

    #[test]
    fn finetuning_starts_from_the_source_weights() {
        let d = data();
        let c = cfg(json!({}), 4);
        let source = run(&c, &d).unwrap();
        let src = SourceWeights::from_weights(source.weights.as_ref().unwrap(), "trial t000001");
        let one = c.with_hyper(|_| {});
        let one = CnnConfig {
            epochs: 1,
            seed: 9,
            ..one
        };
        let fresh = run(&one, &d).unwrap().curve[0].train_loss;
        let tuned = run(&from(&one, "finetune", &src), &d).unwrap();
        let tuned_loss = tuned.curve[0].train_loss;
        assert!(
            tuned_loss < 0.5 * fresh,
            "first-epoch loss {tuned_loss} from the source vs {fresh} fresh"
        );
        // Every layer trains.
        let (a, b) = (source.weights.unwrap(), tuned.weights.unwrap());
        assert_ne!(values(&a.tensors()[0]), values(&b.tensors()[0]));
    }

    #[test]
    fn mismatching_layers_invalid_for_conv_and_fresh_for_dense() {
        let d = data();
        let c = cfg(json!({}), 1);
        let source = run(&c, &d).unwrap().weights.unwrap();
        let src = SourceWeights::from_weights(&source, "trial t000004 of study `../base`");
        let wider = cfg(json!({"nf": 6}), 1);
        match run(&from(&wider, "finetune", &src), &d) {
            Err(TrainError::InvalidCombination(m)) => {
                assert!(
                    m.contains("trial t000004 of study `../base`") && m.contains("conv1"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Other dense widths: the conv layers come from the source, the
        // dense ones start fresh.
        let other_dense = cfg(json!({"dense_units": 32}), 1);
        let t = from(&other_dense, "finetune", &src);
        let model = Cnn::new(&t.arch, &mut rng_stream(1, 1), &Device::Cpu).unwrap();
        src.apply(&model).unwrap();
        assert_eq!(
            values(model.vars[0].as_tensor()),
            values(&source.tensors()[0])
        );
        assert_eq!(
            values(model.vars[2].as_tensor()),
            values(&source.tensors()[2])
        );
        let dense_before = {
            let m = Cnn::new(&t.arch, &mut rng_stream(1, 1), &Device::Cpu).unwrap();
            values(m.vars[4].as_tensor())
        };
        assert_eq!(values(model.vars[4].as_tensor()), dense_before);
    }

    #[test]
    fn an_unfinished_or_missing_source_says_what_to_run_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hps_shared_fs::testing::branin_study_dir(&tmp.path().join("here"), 3);
        let missing = TransferFrom {
            study: Some("../base".into()),
            trial: "best".into(),
        };
        let e = resolve(&dir, &missing).unwrap_err().to_string();
        assert!(
            e.contains("study `../base`") && e.contains("hps-master init"),
            "{e}"
        );
        let t = TransferFrom {
            study: None,
            trial: "t000001".into(),
        };
        let e = resolve(&dir, &t).unwrap_err().to_string();
        assert!(
            e.contains("trial t000001 of this study has not finished"),
            "{e}"
        );
        assert!(e.contains("hps-master run"), "{e}");
        let best = TransferFrom {
            study: Some(".".into()),
            trial: "best".into(),
        };
        let e = resolve(&dir, &best).unwrap_err().to_string();
        assert!(e.contains("no complete trial yet"), "{e}");
    }
}
