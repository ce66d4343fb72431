//! SGD with (classical) momentum, Lasagne's formula:
//! `v = momentum*v - lr*grad; w = w + v`. Momentum 0 is plain SGD.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

pub struct SgdMomentum {
    lr: f64,
    momentum: f64,
    /// One velocity per var, created on its first update (starts at zero).
    velocity: Vec<Option<Tensor>>,
}

impl SgdMomentum {
    pub fn new(n_vars: usize, lr: f64, momentum: f64) -> SgdMomentum {
        SgdMomentum {
            lr,
            momentum,
            velocity: vec![None; n_vars],
        }
    }

    /// The velocities (momentum buffers), one per var; `None` until the
    /// var's first update, and always `None` with momentum 0.
    pub fn velocities(&self) -> &[Option<Tensor>] {
        &self.velocity
    }

    /// Replace the velocities (checkpoint restore); `v` has one entry per
    /// var.
    pub fn set_velocities(&mut self, v: Vec<Option<Tensor>>) {
        debug_assert_eq!(v.len(), self.velocity.len());
        self.velocity = v;
    }

    /// Apply one update to `vars` from `grads`. Vars without a gradient are
    /// left alone.
    pub fn step(&mut self, vars: &[Var], grads: &GradStore) -> Result<()> {
        debug_assert_eq!(vars.len(), self.velocity.len());
        for (var, vel) in vars.iter().zip(self.velocity.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_detached_tensor();
            let grad = grad.detach();
            if self.momentum == 0.0 {
                var.set(&(w - grad.affine(self.lr, 0.0)?)?)?;
                continue;
            }
            let v = match vel.take() {
                Some(old) => (old.affine(self.momentum, 0.0)? - grad.affine(self.lr, 0.0)?)?,
                None => grad.affine(-self.lr, 0.0)?,
            };
            var.set(&(w + &v)?)?;
            *vel = Some(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimise f(w) = w^2 / 2 (grad = w) by hand and compare.
    fn run(momentum: f64, steps: usize) -> (f32, f32) {
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = SgdMomentum::new(1, 0.1, momentum);
        let (mut w, mut v) = (1.0f32, 0.0f32);
        for _ in 0..steps {
            let loss = (var.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(std::slice::from_ref(&var), &grads).unwrap();
            v = momentum as f32 * v - 0.1 * w;
            w += v;
        }
        (var.as_tensor().to_vec1::<f32>().unwrap()[0], w)
    }

    #[test]
    fn matches_lasagne_momentum_formula() {
        for m in [0.0, 0.5, 0.9] {
            let (got, want) = run(m, 5);
            assert!((got - want).abs() < 1e-6, "momentum {m}: {got} vs {want}");
        }
        let (got, _) = run(0.0, 1);
        assert!((got - 0.9).abs() < 1e-7);
    }
}
