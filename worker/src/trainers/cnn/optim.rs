//! The optimisers: SGD, classical and Nesterov momentum (Lasagne's
//! formulas), Adam and AdamW, with weight decay either as an L2 term
//! added to the gradient or decoupled from it.
//!
//! * `momentum`: `v = mu*v - lr*g; w += v`
//! * `nesterov`: `v = mu*v - lr*g; w += mu*v - lr*g`
//! * `adam`: `m = b1*m + (1-b1)*g; s = b2*s + (1-b2)*g^2;
//!   w -= lr * (m/(1-b1^t)) / (sqrt(s/(1-b2^t)) + eps)`
//! * weight decay `l2`: `g += wd*w` before the update, so with Adam it is
//!   rescaled per weight like the rest of the gradient; `decoupled` (and
//!   always for `adamw`): `w -= lr*wd*w` beside the update, the same
//!   shrinkage for every weight whatever its gradient history.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use hps_common::cnn::{CnnHyper, Optimizer as Kind, WeightDecay};

/// Per-step measurements, summed over an epoch by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the gradient (all vars).
    pub grad_norm: f64,
    /// `||update|| / ||w||` over all vars.
    pub update_ratio: f64,
}

/// One update rule, as candle's `Optimizer` keeps one type per rule: the
/// update of one var from its (weight-decayed) gradient at step `t`, and
/// the state the rule keeps for that var in its two slots (`first`:
/// velocity or first moment, `second`: Adam's second moment). The update
/// is added to the weights.
pub trait Rule: Send + Sync {
    fn update(
        &self,
        g: &Tensor,
        lr: f64,
        t: u64,
        first: &mut Option<Tensor>,
        second: &mut Option<Tensor>,
    ) -> Result<Tensor>;
}

/// Plain SGD: `w -= lr*g`.
#[derive(Debug, Clone, Copy)]
pub struct Sgd;

impl Rule for Sgd {
    fn update(
        &self,
        g: &Tensor,
        lr: f64,
        _: u64,
        _: &mut Option<Tensor>,
        _: &mut Option<Tensor>,
    ) -> Result<Tensor> {
        g.affine(-lr, 0.0)
    }
}

/// Classical or Nesterov momentum, Lasagne's formulas (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Momentum {
    pub momentum: f64,
    pub nesterov: bool,
}

impl Rule for Momentum {
    fn update(
        &self,
        g: &Tensor,
        lr: f64,
        _: u64,
        velocity: &mut Option<Tensor>,
        _: &mut Option<Tensor>,
    ) -> Result<Tensor> {
        if self.momentum == 0.0 {
            return g.affine(-lr, 0.0);
        }
        let v = match velocity.take() {
            Some(old) => (old.affine(self.momentum, 0.0)? - g.affine(lr, 0.0)?)?,
            None => g.affine(-lr, 0.0)?,
        };
        let u = if self.nesterov {
            (v.affine(self.momentum, 0.0)? - g.affine(lr, 0.0)?)?
        } else {
            v.clone()
        };
        *velocity = Some(v);
        Ok(u)
    }
}

/// Adam (and AdamW, whose decay the [`Optim`] decouples).
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Rule for Adam {
    fn update(
        &self,
        g: &Tensor,
        lr: f64,
        t: u64,
        first: &mut Option<Tensor>,
        second: &mut Option<Tensor>,
    ) -> Result<Tensor> {
        let m = match first.take() {
            Some(old) => (old.affine(self.beta1, 0.0)? + g.affine(1.0 - self.beta1, 0.0)?)?,
            None => g.affine(1.0 - self.beta1, 0.0)?,
        };
        let g_sq = g.sqr()?;
        let s = match second.take() {
            Some(old) => (old.affine(self.beta2, 0.0)? + g_sq.affine(1.0 - self.beta2, 0.0)?)?,
            None => g_sq.affine(1.0 - self.beta2, 0.0)?,
        };
        let bc1 = 1.0 - self.beta1.powf(t as f64);
        let bc2 = 1.0 - self.beta2.powf(t as f64);
        let denom = s.affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, self.eps)?;
        let u = m.affine(-lr / bc1, 0.0)?.div(&denom)?;
        *first = Some(m);
        *second = Some(s);
        Ok(u)
    }
}

/// The rule of `cfg.optimizer`, with its coefficients from `cfg`.
pub fn rule(cfg: &CnnHyper) -> Box<dyn Rule> {
    match cfg.optimizer {
        Kind::Sgd => Box::new(Sgd),
        Kind::Momentum | Kind::Nesterov => Box::new(Momentum {
            momentum: cfg.momentum,
            nesterov: cfg.optimizer == Kind::Nesterov,
        }),
        Kind::Adam | Kind::Adamw => Box::new(Adam {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
        }),
    }
}

/// What every rule shares: the learning rate (set per step by the
/// schedule), the step count, weight decay (L2 on the gradient, or
/// decoupled beside the update), the per-var state that checkpoints
/// carry, and the step statistics.
pub struct Optim {
    rule: Box<dyn Rule>,
    lr: f64,
    weight_decay: f64,
    decoupled: bool,
    /// Steps taken (Adam's bias correction uses it).
    t: u64,
    /// `2 * n_vars` slots: first moment / velocity of var `i` at `i`,
    /// Adam's second moment at `n_vars + i`; `None` until first used.
    state: Vec<Option<Tensor>>,
}

impl Optim {
    /// An optimiser for `n_vars` vars, of the kind and with the
    /// coefficients of `cfg`.
    pub fn new(n_vars: usize, cfg: &CnnHyper) -> Optim {
        Optim {
            rule: rule(cfg),
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            decoupled: cfg.optimizer == Kind::Adamw
                || cfg.weight_decay_mode == WeightDecay::Decoupled,
            t: 0,
            state: vec![None; 2 * n_vars],
        }
    }

    /// Plain SGD / classical momentum with the given coefficients (tests).
    #[cfg(test)]
    pub fn sgd_momentum(n_vars: usize, lr: f64, momentum: f64) -> Optim {
        let cfg = CnnHyper {
            optimizer: Kind::Momentum,
            lr,
            momentum,
            ..CnnHyper::default()
        };
        Optim::new(n_vars, &cfg)
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Steps already taken (a resumed run sets it from its checkpoint).
    pub fn set_steps(&mut self, t: u64) {
        self.t = t;
    }

    /// The optimiser state tensors (see the `state` field).
    pub fn state(&self) -> &[Option<Tensor>] {
        &self.state
    }

    /// Replace the state (checkpoint restore); same length as `state()`.
    pub fn set_state(&mut self, v: Vec<Option<Tensor>>) {
        debug_assert_eq!(v.len(), self.state.len());
        self.state = v;
    }

    /// Apply one update to `vars` from `grads`. Vars without a gradient are
    /// left alone.
    pub fn step(&mut self, vars: &[Var], grads: &GradStore) -> Result<StepStats> {
        let n = vars.len();
        debug_assert_eq!(2 * n, self.state.len());
        self.t += 1;
        let (mut g2, mut u2, mut w2) = (None::<Tensor>, None::<Tensor>, None::<Tensor>);
        let acc = |sum: &mut Option<Tensor>, t: &Tensor| -> Result<()> {
            let s = t.sqr()?.sum_all()?;
            *sum = Some(match sum.take() {
                Some(a) => (a + s)?,
                None => s,
            });
            Ok(())
        };
        let (firsts, seconds) = self.state.split_at_mut(n);
        for (i, var) in vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_detached_tensor();
            let mut g = grad.detach();
            acc(&mut g2, &g)?;
            acc(&mut w2, &w)?;
            if self.weight_decay > 0.0 && !self.decoupled {
                g = (g + w.affine(self.weight_decay, 0.0)?)?;
            }
            let mut update =
                self.rule
                    .update(&g, self.lr, self.t, &mut firsts[i], &mut seconds[i])?;
            if self.weight_decay > 0.0 && self.decoupled {
                update = (update - w.affine(self.lr * self.weight_decay, 0.0)?)?;
            }
            acc(&mut u2, &update)?;
            var.set(&(w + &update)?)?;
        }
        let scalar = |t: Option<Tensor>| -> Result<f64> {
            Ok(match t {
                Some(t) => t.to_scalar::<f32>()? as f64,
                None => 0.0,
            })
        };
        let (g2, u2, w2) = (scalar(g2)?, scalar(u2)?, scalar(w2)?);
        Ok(StepStats {
            grad_norm: g2.sqrt(),
            update_ratio: if w2 > 0.0 { (u2 / w2).sqrt() } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimise f(w) = w^2 / 2 (grad = w) with `opt` for `steps` steps.
    fn run(opt: &mut Optim, steps: usize) -> f32 {
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        for _ in 0..steps {
            let loss = (var.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(std::slice::from_ref(&var), &grads).unwrap();
        }
        var.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    fn cfg(kind: Kind, f: impl FnOnce(&mut CnnHyper)) -> CnnHyper {
        let mut c = CnnHyper {
            optimizer: kind,
            lr: 0.1,
            ..CnnHyper::default()
        };
        f(&mut c);
        c
    }

    #[test]
    fn matches_lasagne_momentum_formula() {
        for m in [0.0, 0.5, 0.9] {
            let (mut w, mut v) = (1.0f32, 0.0f32);
            for _ in 0..5 {
                v = m as f32 * v - 0.1 * w;
                w += v;
            }
            let got = run(&mut Optim::sgd_momentum(1, 0.1, m), 5);
            assert!((got - w).abs() < 1e-6, "momentum {m}: {got} vs {w}");
        }
        assert!((run(&mut Optim::sgd_momentum(1, 0.1, 0.0), 1) - 0.9).abs() < 1e-7);
    }

    #[test]
    fn nesterov_and_adam_follow_their_formulas() {
        let c = cfg(Kind::Nesterov, |c| c.momentum = 0.9);
        let (mut w, mut v) = (1.0f64, 0.0f64);
        for _ in 0..4 {
            let g = w;
            v = 0.9 * v - 0.1 * g;
            w += 0.9 * v - 0.1 * g;
        }
        let got = run(&mut Optim::new(1, &c), 4) as f64;
        assert!((got - w).abs() < 1e-6, "nesterov {got} vs {w}");

        let c = cfg(Kind::Adam, |_| {});
        let (mut w, mut m, mut s) = (1.0f64, 0.0f64, 0.0f64);
        for t in 1..=4 {
            let g = w;
            m = 0.9 * m + 0.1 * g;
            s = 0.999 * s + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let sh = s / (1.0 - 0.999f64.powi(t));
            w -= 0.1 * mh / (sh.sqrt() + 1e-8);
        }
        let got = run(&mut Optim::new(1, &c), 4) as f64;
        assert!((got - w).abs() < 1e-5, "adam {got} vs {w}");
    }

    #[test]
    fn weight_decay_l2_versus_decoupled() {
        // With a negligible loss gradient only the decay acts.
        let shrink = |c: CnnHyper| {
            let var = Var::new(&[2.0f32], &Device::Cpu).unwrap();
            let mut opt = Optim::new(1, &c);
            for _ in 0..3 {
                let loss = (var.as_tensor() * 1e-20).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                opt.step(std::slice::from_ref(&var), &grads).unwrap();
            }
            var.as_tensor().to_vec1::<f32>().unwrap()[0] as f64
        };
        let sgd_l2 = shrink(cfg(Kind::Sgd, |c| c.weight_decay = 0.5));
        assert!((sgd_l2 - 2.0 * 0.95f64.powi(3)).abs() < 1e-6, "{sgd_l2}");
        // Adam normalises an L2 gradient: every step moves ~lr whatever wd.
        let adam_l2 = shrink(cfg(Kind::Adam, |c| c.weight_decay = 0.5));
        assert!((adam_l2 - (2.0 - 3.0 * 0.1)).abs() < 1e-3, "{adam_l2}");
        // AdamW's decoupled decay shrinks by (1 - lr*wd) per step.
        let adamw = shrink(cfg(Kind::Adamw, |c| c.weight_decay = 0.5));
        assert!((adamw - 2.0 * 0.95f64.powi(3)).abs() < 1e-5, "{adamw}");
    }
}
