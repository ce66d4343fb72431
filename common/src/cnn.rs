//! The cnn trainer's hyperparameters: every knob of the seed's exercises
//! (architecture, optimiser, schedule, augmentation, early stopping, data
//! splits), with the seed's Lasagne `build_cnn` as the default.
//!
//! A study sets them in `trainer.defaults` or searches them in `space`
//! under the same names; a trial's value overrides the default. The
//! reference is `docs/study-file.md`.

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

/// Every cnn hyperparameter with its default (the seed's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnDefaults {
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
    pub batch_size: u64,
    // --- learning-rate schedule
    pub lr_schedule: Schedule,
    pub lr_step_epochs: u64,
    pub lr_gamma: f64,
    /// Linear warm-up from 0 over the first epochs (per step); 0 = off.
    pub warmup_epochs: u64,
    // --- architecture
    /// Number of conv blocks (conv + activation + pool).
    pub conv_layers: u64,
    /// Filters of the first conv layer.
    pub nf: u64,
    /// Each further conv layer has `nf_mult` times the filters of the
    /// previous one (rounded).
    pub nf_mult: f64,
    pub kernel_size: u64,
    pub padding: Padding,
    pub pool: Pool,
    pub pool_size: u64,
    /// Hidden dense layers between the conv blocks and the output.
    pub dense_layers: u64,
    pub dense_units: u64,
    /// Dropout rate on the input of every dense layer (the seed's 0.5).
    pub dropout: f64,
    /// Dropout rate after every conv block.
    pub conv_dropout: f64,
    pub batchnorm: bool,
    pub activation: Activation,
    pub init: Init,
    // --- augmentation (training batches only)
    /// Random shifts of up to this many pixels in x and y (zero fill).
    pub aug_shift: u64,
    /// Random horizontal flips (half of the images).
    pub aug_flip: bool,
    /// Random rotations of up to ± this many degrees; off by default: on
    /// digits a large rotation turns a 6 into a 9.
    pub aug_rotate: f64,
    // --- early stopping
    /// Stop after this many epochs without a lower validation loss; 0 = off.
    pub patience: u64,
    /// Report metrics at the best epoch (true) or at the last one.
    pub restore_best: bool,
    // --- data
    /// Training examples taken from the start of the training file.
    pub train_size: u64,
    /// Validation examples, taken from the end of the training file.
    pub val_size: u64,
    /// Test examples (from the test file) evaluated at the best epoch;
    /// 0 means the whole test file.
    pub test_size: u64,
    /// k-fold cross-validation over the first `train_size` examples (each
    /// fold validates on its k-th and trains on the rest); 1 = off.
    pub folds: u64,
}

impl Default for CnnDefaults {
    fn default() -> Self {
        CnnDefaults {
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
            dropout: 0.5,
            conv_dropout: 0.0,
            batchnorm: false,
            activation: Activation::Relu,
            init: Init::Glorot,
            aug_shift: 0,
            aug_flip: false,
            aug_rotate: 0.0,
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
/// [`CnnDefaults`] plus `epochs`.
pub fn cnn_params() -> Vec<String> {
    let mut names: Vec<String> = match serde_json::to_value(CnnDefaults::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.push("epochs".into());
    names.sort();
    names
}

impl CnnDefaults {
    /// `self` with `params` applied on top. Integral floats (`64.0`) are
    /// accepted for integer hyperparameters, since samplers produce them.
    /// The error names the parameter and says what it expects.
    pub fn with_params(&self, params: &Params) -> Result<CnnDefaults, String> {
        self.validate()?;
        let Ok(Value::Object(mut map)) = serde_json::to_value(self) else {
            return Err("cannot represent the cnn defaults".into());
        };
        for (k, v) in params {
            if k == "epochs" {
                continue;
            }
            let Some(old) = map.get(k) else {
                return Err(format!(
                    "unknown hyperparameter `{k}` for the cnn trainer (known: {})",
                    cnn_params().join(", ")
                ));
            };
            let v = match (old, v) {
                (Value::Number(o), v) if o.is_u64() && !v.is_number() => {
                    return Err(format!("{k} must be a non-negative integer, got {v}"))
                }
                (Value::Number(_), v) if !v.is_number() => {
                    return Err(format!("{k} must be a number, got {v}"))
                }
                (Value::Bool(_), v) if !v.is_boolean() => {
                    return Err(format!("{k} must be true or false, got {v}"))
                }
                (Value::Number(o), Value::Number(n)) if o.is_u64() && !n.is_u64() => {
                    match n.as_f64() {
                        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => {
                            Value::from(f as u64)
                        }
                        _ => return Err(format!("{k} must be a non-negative integer, got {n}")),
                    }
                }
                _ => v.clone(),
            };
            map.insert(k.clone(), v);
        }
        let out: CnnDefaults = from_map(map)?;
        out.validate()?;
        Ok(out)
    }

    /// Range checks; the message names the hyperparameter.
    pub fn validate(&self) -> Result<(), String> {
        let positive_f = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive number, got {v}"))
            }
        };
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be a number in [0, 1), got {v}"))
            }
        };
        let at_least_1 = |name: &str, v: u64| {
            if v >= 1 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive integer, got {v}"))
            }
        };
        positive_f("lr", self.lr)?;
        unit("momentum", self.momentum)?;
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        positive_f("eps", self.eps)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "weight_decay must be a number >= 0, got {}",
                self.weight_decay
            ));
        }
        at_least_1("batch_size", self.batch_size)?;
        at_least_1("lr_step_epochs", self.lr_step_epochs)?;
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0 && self.lr_gamma <= 1.0) {
            return Err(format!("lr_gamma must be in (0, 1], got {}", self.lr_gamma));
        }
        at_least_1("conv_layers", self.conv_layers)?;
        at_least_1("nf", self.nf)?;
        positive_f("nf_mult", self.nf_mult)?;
        at_least_1("kernel_size", self.kernel_size)?;
        if self.padding == Padding::Same && self.kernel_size.is_multiple_of(2) {
            return Err(format!(
                "padding `same` needs an odd kernel_size, got {}",
                self.kernel_size
            ));
        }
        at_least_1("pool_size", self.pool_size)?;
        at_least_1("dense_units", self.dense_units)?;
        unit("dropout", self.dropout)?;
        unit("conv_dropout", self.conv_dropout)?;
        if !(self.aug_rotate.is_finite() && (0.0..=180.0).contains(&self.aug_rotate)) {
            return Err(format!(
                "aug_rotate must be in [0, 180] degrees, got {}",
                self.aug_rotate
            ));
        }
        if self.aug_shift > 27 {
            return Err(format!(
                "aug_shift must be at most 27 pixels, got {}",
                self.aug_shift
            ));
        }
        at_least_1("train_size", self.train_size)?;
        at_least_1("folds", self.folds)?;
        if self.folds > 1 && self.folds > self.train_size {
            return Err(format!(
                "folds ({}) exceeds train_size ({})",
                self.folds, self.train_size
            ));
        }
        Ok(())
    }
}

fn from_map(map: Map<String, Value>) -> Result<CnnDefaults, String> {
    let v = Value::Object(map);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        format!("{field}: {}", e.into_inner())
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
        let d = CnnDefaults::default();
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
        assert!(e.contains("activation") && e.contains("relu"), "{e}");
        let e = d.with_params(&params(json!({"nf": 2.5}))).unwrap_err();
        assert!(e.contains("nf"), "{e}");
        let e = d.with_params(&params(json!({"dropout": 1.0}))).unwrap_err();
        assert!(e.contains("dropout"), "{e}");
        let e = d
            .with_params(&params(json!({"lerning_rate": 1})))
            .unwrap_err();
        assert!(e.contains("lerning_rate") && e.contains("known"), "{e}");
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
