//! The cnn trainer's hyperparameters: every knob of the seed's exercises
//! (architecture, optimiser, schedule, augmentation, early stopping, data
//! splits), with the seed's Lasagne `build_cnn` as the default.
//!
//! A study sets them in `trainer.defaults` or searches them in `space`
//! under the same names; a trial's value overrides the default. The
//! reference is `docs/study-file.md`.
//!
//! [`CnnHyper`] is the one typed home of these hyperparameters: the study's
//! `trainer.defaults` are one (validated at `hps-master init`), and a
//! trial's are the defaults with its params on top ([`CnnHyper::with_params`],
//! validated in the worker, where a bad value makes the trial `invalid`).
//! The worker's trainer and optimiser read them from there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Params;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Tanh,
    Gelu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    Max,
    Avg,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding: each conv shrinks the map by `kernel_size - 1` (the seed).
    Valid,
    /// Zero padding keeping the map size (odd kernels).
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Uniform in ±sqrt(6 / (fan_in + fan_out)) (Lasagne's default).
    Glorot,
    /// Normal with std sqrt(2 / fan_in) (He et al. 2015, for ReLU).
    He,
    /// Normal with std 0.01 (Lasagne's `Normal()`).
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Plain SGD (`momentum` ignored).
    Sgd,
    /// SGD with classical momentum (Lasagne's `momentum`).
    Momentum,
    /// SGD with Nesterov momentum (Lasagne's `nesterov_momentum`).
    Nesterov,
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecay {
    /// `weight_decay * w` added to the gradient (an L2 term in the loss);
    /// with Adam it is rescaled by the adaptive step like any gradient.
    L2,
    /// `w -= lr * weight_decay * w` applied beside the optimiser step,
    /// independent of the gradient's scale (AdamW's decay).
    Decoupled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Multiply by `lr_gamma` every `lr_step_epochs` epochs.
    Step,
    /// Cosine decay from `lr` to 0 over the run (per step).
    Cosine,
}

/// Whether a trial starts from another trial's weights (seed 003's
/// transfer learning); the source is the study's `trainer.transfer_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// Fresh weights.
    None,
    /// Start from the source's weights and train every layer.
    Finetune,
    /// Start from the source's weights; the conv layers (kernels, biases
    /// and their batch norm) get no update, only the dense layers train.
    FreezeConv,
}

impl Transfer {
    /// The name in study files.
    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::None => "none",
            Transfer::Finetune => "finetune",
            Transfer::FreezeConv => "freeze_conv",
        }
    }
}

/// `trainer.transfer_from`: the trial whose final weights a trial with
/// `transfer` other than `none` starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferFrom {
    /// Another study's directory, relative to this study's directory (or
    /// absolute); absent: this study.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    /// A trial id (`t000003`), or `best`: the study's best finished trial
    /// by its objective (only with `study`).
    pub trial: String,
}

impl TransferFrom {
    /// The trial id, or `None` for `best`.
    pub fn trial_id(&self) -> Option<&str> {
        (self.trial != "best").then_some(self.trial.as_str())
    }

    /// `study` and `trial` well formed: `best` needs `study`, a trial id
    /// is a valid id, a study path is not empty. The error is
    /// `(field, message)`, the field under `transfer_from`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.study.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err((
                "study",
                "must be a study directory, got an empty path".into(),
            ));
        }
        match self.trial_id() {
            None if self.study.is_none() => Err((
                "trial",
                "`best` needs `study` (another study's directory): this study's best trial \
                 is not known before it ends; name a trial id such as `t000003`"
                    .into(),
            )),
            None => Ok(()),
            Some(id) => crate::validate_id("trial id", id).map_err(|e| {
                (
                    "trial",
                    format!("{e}; use a trial id such as `t000003` or `best`"),
                )
            }),
        }
    }

    /// "trial t000003 of this study", "the best trial of study `../base`".
    pub fn describe(&self) -> String {
        let study = match &self.study {
            Some(s) => format!("study `{s}`"),
            None => "this study".into(),
        };
        match self.trial_id() {
            Some(id) => format!("trial {id} of {study}"),
            None => format!("the best trial of {study}"),
        }
    }
}

/// A hyperparameter outside its domain, or of the wrong type; `message`
/// names it (`lr must be a positive number, got -0.1`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HyperError {
    /// The hyperparameter (`lr`, `epochs`, ...).
    pub field: String,
    pub message: String,
}

impl HyperError {
    fn new(field: &str, message: String) -> HyperError {
        HyperError {
            field: field.to_string(),
            message,
        }
    }
}

/// The study's `trainer.defaults`: a [`CnnHyper`].
pub type CnnDefaults = CnnHyper;

/// Every cnn hyperparameter with its default (the seed's settings).
/// Epoch counts are `u64` in the file and at most `u32::MAX` once
/// validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnHyper {
    // --- optimisation
    pub lr: f64,
    /// Momentum coefficient of `momentum`/`nesterov` in [0, 1).
    pub momentum: f64,
    pub optimizer: Optimizer,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// How `weight_decay` is applied (`adamw` is always decoupled).
    pub weight_decay_mode: WeightDecay,
    pub batch_size: usize,
    // --- learning-rate schedule
    pub lr_schedule: Schedule,
    pub lr_step_epochs: u64,
    pub lr_gamma: f64,
    /// Linear warm-up from 0 over the first epochs (per step); 0 = off.
    pub warmup_epochs: u64,
    // --- architecture
    /// Number of conv blocks (conv + activation + pool); 0 makes an MLP.
    pub conv_layers: usize,
    /// Filters of the first conv layer.
    pub nf: usize,
    /// Each further conv layer has `nf_mult` times the filters of the
    /// previous one (rounded).
    pub nf_mult: f64,
    pub kernel_size: usize,
    pub padding: Padding,
    pub pool: Pool,
    pub pool_size: usize,
    /// Hidden dense layers between the conv blocks and the output.
    pub dense_layers: usize,
    pub dense_units: usize,
    /// The hidden dense layers' widths, one per layer (seed 004's MLP:
    /// `[128, 64]`); when non-empty it replaces `dense_layers` x
    /// `dense_units`.
    pub dense_widths: Vec<usize>,
    /// Dropout rate on the input of every dense layer (the seed's 0.5).
    pub dropout: f64,
    /// Dropout rate after every conv block.
    pub conv_dropout: f64,
    pub batchnorm: bool,
    pub activation: Activation,
    pub init: Init,
    // --- augmentation (training batches only)
    /// Random shifts of up to this many pixels in x and y (zero fill).
    pub aug_shift: usize,
    /// Random horizontal flips (half of the images).
    pub aug_flip: bool,
    /// Random rotations of up to ± this many degrees; off by default: on
    /// digits a large rotation turns a 6 into a 9.
    pub aug_rotate: f64,
    // --- transfer learning
    /// Start from the weights of `trainer.transfer_from` (`none`: fresh).
    pub transfer: Transfer,
    // --- early stopping
    /// Stop after this many epochs without a lower validation loss; 0 = off.
    pub patience: u64,
    /// Report metrics at the best epoch (true) or at the last one.
    pub restore_best: bool,
    // --- data
    /// Training examples taken from the start of the training file.
    pub train_size: usize,
    /// Validation examples, taken from the end of the training file.
    pub val_size: usize,
    /// Test examples (from the test file) evaluated at the best epoch;
    /// 0 means the whole test file.
    pub test_size: usize,
    /// k-fold cross-validation over the first `train_size` examples (each
    /// fold validates on its k-th and trains on the rest); 1 = off.
    pub folds: usize,
}

impl Default for CnnHyper {
    fn default() -> Self {
        CnnHyper {
            lr: 0.1,
            momentum: 0.0,
            optimizer: Optimizer::Momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            weight_decay_mode: WeightDecay::L2,
            batch_size: 100,
            lr_schedule: Schedule::Constant,
            lr_step_epochs: 10,
            lr_gamma: 0.1,
            warmup_epochs: 0,
            conv_layers: 2,
            nf: 32,
            nf_mult: 1.0,
            kernel_size: 5,
            padding: Padding::Valid,
            pool: Pool::Max,
            pool_size: 2,
            dense_layers: 1,
            dense_units: 256,
            dense_widths: Vec::new(),
            dropout: 0.5,
            conv_dropout: 0.0,
            batchnorm: false,
            activation: Activation::Relu,
            init: Init::Glorot,
            aug_shift: 0,
            aug_flip: false,
            aug_rotate: 0.0,
            transfer: Transfer::None,
            patience: 0,
            restore_best: true,
            train_size: 5000,
            val_size: 1000,
            test_size: 1000,
            folds: 1,
        }
    }
}

/// Hyperparameter names the cnn trainer understands: the fields of
/// [`CnnHyper`] plus `epochs`.
pub fn cnn_params() -> Vec<String> {
    let mut names: Vec<String> = match serde_json::to_value(CnnHyper::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.push("epochs".into());
    names.sort();
    names
}

/// A non-negative integer parameter: integral floats (`64.0`) are
/// accepted, since samplers produce them.
fn integer(name: &str, v: &Value) -> Result<u64, HyperError> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Ok(f as u64),
        _ => Err(HyperError::new(
            name,
            format!("{name} must be a non-negative integer, got {v}"),
        )),
    }
}

/// The number of epochs of a trial: its `epochs` param, else the study
/// budget's `budget`.
pub fn epochs_param(params: &Params, budget: u32) -> Result<u32, HyperError> {
    let epochs = match params.get("epochs") {
        None => budget as u64,
        Some(v) => integer("epochs", v)?,
    };
    if epochs == 0 {
        return Err(HyperError::new(
            "epochs",
            "epochs must be a positive integer, got 0".into(),
        ));
    }
    at_most_u32("epochs", epochs)
}

fn at_most_u32(name: &str, v: u64) -> Result<u32, HyperError> {
    u32::try_from(v).map_err(|_| {
        HyperError::new(
            name,
            format!("{name} must be at most {}, got {v}", u32::MAX),
        )
    })
}

impl CnnHyper {
    /// `self` with `params` applied on top (`epochs` aside, see
    /// [`epochs_param`]), validated. Integral floats (`64.0`) are accepted
    /// for integer hyperparameters, since samplers produce them. The error
    /// names the parameter and says what it expects.
    pub fn with_params(&self, params: &Params) -> Result<CnnHyper, HyperError> {
        // Defaults that cannot round-trip through JSON (NaN) are named here.
        self.validate()?;
        let Ok(Value::Object(mut map)) = serde_json::to_value(self) else {
            return Err(HyperError::new(
                "defaults",
                "cannot represent the cnn defaults".into(),
            ));
        };
        for (k, v) in params {
            if k == "epochs" {
                continue;
            }
            let Some(old) = map.get(k) else {
                return Err(HyperError::new(
                    k,
                    format!(
                        "unknown hyperparameter `{k}` for the cnn trainer (known: {})",
                        cnn_params().join(", ")
                    ),
                ));
            };
            let bad = |m: String| Err(HyperError::new(k, m));
            let v = match (old, v) {
                (Value::Number(o), v) if o.is_u64() && !v.is_number() => {
                    return bad(format!("{k} must be a non-negative integer, got {v}"))
                }
                (Value::Number(_), v) if !v.is_number() => {
                    return bad(format!("{k} must be a number, got {v}"))
                }
                (Value::Bool(_), v) if !v.is_boolean() => {
                    return bad(format!("{k} must be true or false, got {v}"))
                }
                (Value::Number(o), v) if o.is_u64() => Value::from(integer(k, v)?),
                _ => v.clone(),
            };
            map.insert(k.clone(), v);
        }
        let out: CnnHyper = from_map(map)?;
        out.validate()?;
        Ok(out)
    }

    /// The hidden dense layers' widths: `dense_widths` when given, else
    /// `dense_layers` layers of `dense_units`.
    pub fn hidden_widths(&self) -> Vec<usize> {
        if self.dense_widths.is_empty() {
            vec![self.dense_units; self.dense_layers]
        } else {
            self.dense_widths.clone()
        }
    }

    /// Range checks; the message names the hyperparameter. In this order:
    /// the optimiser and its schedule, the network, the data.
    pub fn validate(&self) -> Result<(), HyperError> {
        self.validate_optimizer()?;
        self.validate_network()?;
        self.validate_data()
    }

    fn validate_optimizer(&self) -> Result<(), HyperError> {
        positive_f("lr", self.lr)?;
        unit("momentum", self.momentum)?;
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        positive_f("eps", self.eps)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!(
                    "weight_decay must be a number >= 0, got {}",
                    self.weight_decay
                ),
            );
        }
        at_least_1("batch_size", self.batch_size)?;
        if self.lr_step_epochs == 0 {
            return bad(
                "lr_step_epochs",
                "lr_step_epochs must be a positive integer, got 0".into(),
            );
        }
        // Above 1 a `step` schedule grows the LR: seed 002's bug, kept
        // expressible so its instruments can be shown.
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0 && self.lr_gamma <= 10.0) {
            return bad(
                "lr_gamma",
                format!("lr_gamma must be in (0, 10], got {}", self.lr_gamma),
            );
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), HyperError> {
        at_least_1("nf", self.nf)?;
        positive_f("nf_mult", self.nf_mult)?;
        at_least_1("kernel_size", self.kernel_size)?;
        if self.padding == Padding::Same && self.kernel_size.is_multiple_of(2) {
            return bad(
                "padding",
                format!(
                    "padding `same` needs an odd kernel_size, got {}",
                    self.kernel_size
                ),
            );
        }
        at_least_1("pool_size", self.pool_size)?;
        at_least_1("dense_units", self.dense_units)?;
        if self.dense_widths.contains(&0) {
            return bad(
                "dense_widths",
                format!(
                    "every dense width must be a positive integer, got {:?}",
                    self.dense_widths
                ),
            );
        }
        unit("dropout", self.dropout)?;
        unit("conv_dropout", self.conv_dropout)
    }

    fn validate_data(&self) -> Result<(), HyperError> {
        if !(self.aug_rotate.is_finite() && (0.0..=180.0).contains(&self.aug_rotate)) {
            return bad(
                "aug_rotate",
                format!(
                    "aug_rotate must be in [0, 180] degrees, got {}",
                    self.aug_rotate
                ),
            );
        }
        if self.aug_shift > 27 {
            return bad(
                "aug_shift",
                format!(
                    "aug_shift must be at most 27 pixels, got {}",
                    self.aug_shift
                ),
            );
        }
        at_least_1("train_size", self.train_size)?;
        at_least_1("folds", self.folds)?;
        if self.folds > 1 && self.folds > self.train_size {
            return bad(
                "folds",
                format!(
                    "folds ({}) exceeds train_size ({})",
                    self.folds, self.train_size
                ),
            );
        }
        at_most_u32("lr_step_epochs", self.lr_step_epochs)?;
        at_most_u32("warmup_epochs", self.warmup_epochs)?;
        at_most_u32("patience", self.patience)?;
        Ok(())
    }
}

fn bad(name: &str, message: String) -> Result<(), HyperError> {
    Err(HyperError::new(name, message))
}

fn positive_f(name: &str, v: f64) -> Result<(), HyperError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        bad(name, format!("{name} must be a positive number, got {v}"))
    }
}

fn unit(name: &str, v: f64) -> Result<(), HyperError> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        bad(name, format!("{name} must be a number in [0, 1), got {v}"))
    }
}

fn at_least_1(name: &str, v: usize) -> Result<(), HyperError> {
    if v >= 1 {
        Ok(())
    } else {
        bad(name, format!("{name} must be a positive integer, got {v}"))
    }
}

fn from_map(map: Map<String, Value>) -> Result<CnnHyper, HyperError> {
    let v = Value::Object(map);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        let message = format!("{field}: {}", e.into_inner());
        HyperError { field, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Params {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn params_override_defaults_with_types_checked() {
        let d = CnnHyper::default();
        let h = d
            .with_params(&params(
                json!({"optimizer": "adamw", "nf": 16.0, "aug_flip": true}),
            ))
            .unwrap();
        assert_eq!(h.optimizer, Optimizer::Adamw);
        assert_eq!(h.nf, 16);
        assert!(h.aug_flip);
        let e = d
            .with_params(&params(json!({"activation": "swish"})))
            .unwrap_err();
        assert_eq!(e.field, "activation");
        assert!(e.message.contains("relu"), "{e}");
        let e = d.with_params(&params(json!({"nf": 2.5}))).unwrap_err();
        assert_eq!(e.to_string(), "nf must be a non-negative integer, got 2.5");
        let e = d.with_params(&params(json!({"dropout": 1.0}))).unwrap_err();
        assert_eq!(e.field, "dropout");
        let e = d
            .with_params(&params(json!({"lerning_rate": 1})))
            .unwrap_err();
        assert!(
            e.message.contains("lerning_rate") && e.message.contains("known"),
            "{e}"
        );
        let e = d
            .with_params(&params(json!({"patience": 5_000_000_000u64})))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "patience must be at most 4294967295, got 5000000000"
        );
        let p = params(json!({"epochs": 3.0}));
        assert_eq!(epochs_param(&p, 7), Ok(3));
        assert_eq!(epochs_param(&Params::new(), 7), Ok(7));
        let e = epochs_param(&params(json!({"epochs": 0})), 7).unwrap_err();
        assert_eq!(e.to_string(), "epochs must be a positive integer, got 0");
    }

    #[test]
    fn every_field_is_a_known_parameter() {
        let names = cnn_params();
        for n in [
            "lr",
            "epochs",
            "optimizer",
            "folds",
            "aug_rotate",
            "batchnorm",
        ] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
    }
}
