//! The network: the seed's Lasagne `build_cnn(nf)` by default, and every
//! architecture knob of the exercises (depth, width, kernel size, padding,
//! pooling, dense layers, dropout, batch norm, activation, initialisation),
//! with every random number drawn from our own seeded RNG so training is
//! reproducible on the CPU.
//!
//! ```text
//! input 1x28x28
//! conv_layers x [conv k x k, nf*nf_mult^i filters, valid|same,
//!                (batch norm), activation, pool (max|avg|none), (dropout)]
//! dense_layers x [dropout, dense dense_units, (batch norm), activation]
//! dropout, dense 10                  -> logits (softmax lives in the loss)
//! ```
//!
//! The default (2 conv layers of nf 5x5 valid filters, ReLU, 2x2 max-pool,
//! one dense layer of 256, dropout 0.5, Glorot-uniform) is the seed's net.
//!
//! Batch norm normalises with the batch's statistics when training and
//! with running averages (momentum 0.1, as PyTorch and Lasagne's alpha)
//! when evaluating; the running averages live beside the weights.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor, Var};
pub use hps_common::arch::{Arch, ArchError, CLASSES};
use hps_common::cnn::{Activation, Init, Padding, Pool};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::cpu_ops::{conv2d_cbhw, conv_bias_relu_pool_cbhw};
use super::data::SIDE;

/// Running-average momentum of batch norm's statistics.
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// Whether a conv block of `arch` can use the fused CPU kernel (bias +
/// ReLU + 2x2 max-pool in one pass, with its own backward).
fn fused_block(arch: &Arch, conv_side: usize) -> bool {
    arch.activation == Activation::Relu
        && arch.pool == Pool::Max
        && arch.pool_size == 2
        && !arch.batchnorm
        && arch.padding == Padding::Valid
        && conv_side.is_multiple_of(2)
}

/// Glorot-uniform bound `sqrt(6 / (fan_in + fan_out))` (Lasagne's
/// `GlorotUniform()` with gain 1). For a conv kernel both fans include the
/// receptive field: `fan_in = in_ch*kh*kw`, `fan_out = out_ch*kh*kw`.
pub fn glorot_bound(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// A standard normal draw (Box–Muller; one of the pair is used).
fn std_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn init_weight(
    init: Init,
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    device: &Device,
) -> Result<Var> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match init {
        Init::Glorot => {
            let bound = glorot_bound(fan_in, fan_out) as f32;
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        }
        Init::He => {
            let std = (2.0 / fan_in as f64).sqrt() as f32;
            (0..n).map(|_| std * std_normal(rng)).collect()
        }
        Init::Normal => (0..n).map(|_| 0.01 * std_normal(rng)).collect(),
    };
    Var::from_tensor(&Tensor::from_vec(data, shape, device)?)
}

fn filled(shape: &[usize], v: f32, device: &Device) -> Result<Var> {
    Var::from_tensor(&Tensor::full(v, shape, device)?)
}

/// The trainable network: `vars` in the order of [`Arch::var_shapes`].
pub struct Cnn {
    pub vars: Vec<Var>,
    pub arch: Arc<Arch>,
    /// Batch-norm running statistics (see [`Arch::stat_shapes`]).
    stats: std::cell::RefCell<Vec<Tensor>>,
    /// The leading vars that get no gradient (transfer's `freeze_conv`).
    frozen: usize,
    /// The leading running statistics that training leaves alone.
    frozen_stats: usize,
}

impl Cnn {
    /// Initial weights from `rng` (the arch's `init`), zero biases, batch
    /// norm gamma 1 and beta 0.
    pub fn new(arch: &Arch, rng: &mut ChaCha8Rng, device: &Device) -> Result<Cnn> {
        let mut vars = Vec::new();
        for shape in arch.var_shapes() {
            let v = match shape.len() {
                4 => {
                    let rf = shape[2] * shape[3];
                    init_weight(arch.init, rng, &shape, shape[1] * rf, shape[0] * rf, device)?
                }
                2 => init_weight(arch.init, rng, &shape, shape[0], shape[1], device)?,
                _ => filled(&shape, 0.0, device)?,
            };
            vars.push(v);
        }
        // Batch norm's gammas start at 1.
        for i in bn_gamma_indices(arch) {
            vars[i] = filled(vars[i].dims(), 1.0, device)?;
        }
        let stats = arch
            .stat_shapes()
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor::full(if i % 2 == 0 { 0f32 } else { 1f32 }, s.as_slice(), device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Cnn {
            vars,
            arch: Arc::new(arch.clone()),
            stats: std::cell::RefCell::new(stats),
            frozen: 0,
            frozen_stats: 0,
        })
    }

    /// Freeze the conv blocks: their kernels, biases and batch norm
    /// (parameters and running statistics) stay as they are; the forward
    /// pass gives them no gradient, so the optimiser neither updates nor
    /// decays them.
    pub fn freeze_conv(&mut self) {
        let per_layer = if self.arch.batchnorm { 4 } else { 2 };
        self.frozen = self.arch.filters.len() * per_layer;
        self.frozen_stats = if self.arch.batchnorm {
            2 * self.arch.filters.len()
        } else {
            0
        };
    }

    /// How many leading vars are frozen (0 unless [`Cnn::freeze_conv`]).
    pub fn frozen_vars(&self) -> usize {
        self.frozen
    }

    /// Replace running statistic `i` (transfer learning).
    pub fn set_stat(&self, i: usize, t: Tensor) {
        self.stats.borrow_mut()[i] = t;
    }

    /// Overwrite the weights (and batch-norm statistics) with `w`.
    pub fn restore(&self, w: &Weights) -> Result<()> {
        for (var, t) in self.vars.iter().zip(&w.tensors) {
            var.set(t)?;
        }
        *self.stats.borrow_mut() = w.stats.clone();
        Ok(())
    }

    /// Training-mode forward pass: batch statistics for batch norm (the
    /// running averages are updated), inverted dropout with masks drawn
    /// from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let detached: Vec<Tensor> = self.vars[..self.frozen]
            .iter()
            .map(|v| v.as_detached_tensor())
            .collect();
        let w: Vec<&Tensor> = detached
            .iter()
            .chain(self.vars[self.frozen..].iter().map(|v| v.as_tensor()))
            .collect();
        let mut stats = self.stats.borrow_mut();
        let kept: Vec<Tensor> = stats[..self.frozen_stats].to_vec();
        let mut mode = Mode::Train {
            rng,
            stats: &mut stats,
        };
        let logits = forward(&self.arch, &w, x, &mut mode, x.device().is_cpu(), None);
        stats[..self.frozen_stats].clone_from_slice(&kept);
        logits
    }

    /// Detached copies of the current weights and statistics, for
    /// evaluation and for remembering the best epoch.
    pub fn snapshot(&self) -> Result<Weights> {
        let tensors = self
            .vars
            .iter()
            .map(|v| v.as_detached_tensor().copy())
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights {
            tensors,
            stats: self.stats.borrow().clone(),
            arch: self.arch.clone(),
        })
    }
}

/// Indices of batch-norm gammas in `vars` (each followed by its beta).
fn bn_gamma_indices(arch: &Arch) -> Vec<usize> {
    if !arch.batchnorm {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    for _ in &arch.filters {
        out.push(i + 2);
        i += 4;
    }
    for _ in &arch.dense {
        out.push(i + 2);
        i += 4;
    }
    out
}

/// A frozen copy of the network's weights (no gradient tracking).
#[derive(Clone)]
pub struct Weights {
    tensors: Vec<Tensor>,
    stats: Vec<Tensor>,
    arch: Arc<Arch>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("tensors", &self.tensors.len())
            .field("stats", &self.stats.len())
            .field("arch", &self.arch)
            .finish()
    }
}

impl Weights {
    /// Wrap tensors given in the order of [`Arch::var_shapes`] and
    /// [`Arch::stat_shapes`] (checkpoint restore; the caller checks the
    /// shapes).
    pub fn from_tensors(arch: &Arch, tensors: Vec<Tensor>, stats: Vec<Tensor>) -> Weights {
        Weights {
            tensors,
            stats,
            arch: Arc::new(arch.clone()),
        }
    }

    /// The trainable tensors, in the order of [`Arch::var_shapes`].
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// The batch-norm statistics, in the order of [`Arch::stat_shapes`].
    pub fn stats(&self) -> &[Tensor] {
        &self.stats
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Evaluation-mode forward pass (no dropout, running statistics):
    /// logits `(B, 10)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w: Vec<&Tensor> = self.tensors.iter().collect();
        forward(
            &self.arch,
            &w,
            x,
            &mut Mode::Eval(&self.stats),
            x.device().is_cpu(),
            None,
        )
    }

    /// Like [`Weights::forward`], also returning the mean and standard
    /// deviation of every block's output (conv blocks, then dense layers).
    pub fn forward_probe(&self, x: &Tensor) -> Result<(Tensor, Vec<(f64, f64)>)> {
        let w: Vec<&Tensor> = self.tensors.iter().collect();
        let mut probe = Vec::new();
        let logits = forward(
            &self.arch,
            &w,
            x,
            &mut Mode::Eval(&self.stats),
            x.device().is_cpu(),
            Some(&mut probe),
        )?;
        Ok((logits, probe))
    }
}

enum Mode<'a> {
    Train {
        rng: &'a mut ChaCha8Rng,
        stats: &'a mut Vec<Tensor>,
    },
    Eval(&'a [Tensor]),
}

fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => x.gelu(),
    }
}

/// Batch norm of `x` over every dimension but `channel`, with `gamma`,
/// `beta` of shape `(C,)`; `stat` is the index of this layer's running
/// mean in the statistics (its variance follows).
fn batch_norm(
    x: &Tensor,
    channel: usize,
    gamma: &Tensor,
    beta: &Tensor,
    mode: &mut Mode,
    stat: usize,
) -> Result<Tensor> {
    let c = x.dim(channel)?;
    // Move channels last and flatten the rest: (N, C).
    let rank = x.rank();
    let xt = if channel == rank - 1 {
        x.clone()
    } else {
        x.transpose(channel, rank - 1)?
    };
    let shape = xt.dims().to_vec();
    let flat = xt.reshape(((), c))?;
    let (mean, var) = match mode {
        Mode::Train { stats, .. } => {
            let mean = flat.mean(0)?;
            let centred = flat.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean(0)?;
            let (m, v) = (mean.detach(), var.detach());
            stats[stat] = ((&stats[stat] * (1.0 - BN_MOMENTUM))? + (m * BN_MOMENTUM)?)?;
            stats[stat + 1] = ((&stats[stat + 1] * (1.0 - BN_MOMENTUM))? + (v * BN_MOMENTUM)?)?;
            (mean, var)
        }
        Mode::Eval(stats) => (stats[stat].clone(), stats[stat + 1].clone()),
    };
    let y = flat
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + BN_EPS)?.sqrt()?)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)?;
    let y = y.reshape(shape)?;
    if channel == rank - 1 {
        Ok(y)
    } else {
        y.transpose(channel, rank - 1)
    }
}

/// Pool over dims 2 and 3 (H, W in both layouts) with window = stride
/// `p`, dropping a ragged border (Lasagne's `ignore_border=True`).
fn pool(x: &Tensor, kind: Pool, p: usize) -> Result<Tensor> {
    if kind == Pool::None || p == 1 {
        return Ok(x.clone());
    }
    let (a, b, h, w) = x.dims4()?;
    let (oh, ow) = (h / p, w / p);
    let x = if oh * p != h || ow * p != w {
        x.narrow(2, 0, oh * p)?.narrow(3, 0, ow * p)?
    } else {
        x.clone()
    };
    let x = x.reshape((a, b, oh, p, ow, p))?;
    match kind {
        Pool::Max => x.max(5)?.max(3),
        Pool::Avg => x.mean(5)?.mean(3),
        Pool::None => unreachable!(),
    }
}

/// A `(rows, cols)` inverted-dropout mask for drop rate `rate`: each entry
/// is `1/(1-rate)` with probability `1-rate`, else 0. Rate 0.5 uses one
/// random bit per entry (the seed's masks), other rates one f32 draw.
fn dropout_mask(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    rate: f64,
    device: &Device,
) -> Result<Tensor> {
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let n: usize = shape.iter().product();
    let mut data = Vec::with_capacity(n);
    if rate == 0.5 {
        while data.len() < n {
            let bits: u64 = rng.random();
            let take = (n - data.len()).min(64);
            data.extend((0..take).map(|i| if (bits >> i) & 1 == 1 { scale } else { 0.0 }));
        }
    } else {
        let keep = keep as f32;
        data.extend((0..n).map(|_| {
            if rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        }));
    }
    Tensor::from_vec(data, shape, device)
}

fn record(probe: &mut Option<&mut Vec<(f64, f64)>>, x: &Tensor) -> Result<()> {
    if let Some(p) = probe.as_mut() {
        let flat = x.flatten_all()?;
        let mean = flat.mean_all()?.to_scalar::<f32>()? as f64;
        let var = flat
            .broadcast_sub(&Tensor::new(mean as f32, x.device())?)?
            .sqr()?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        p.push((mean, var.sqrt()));
    }
    Ok(())
}

/// The forward pass. `cpu_kernels` picks our CPU kernels (channels-first
/// CBHW layout, im2col convolution, the fused bias+ReLU+max-pool where the
/// block allows it), otherwise candle's generic ops in NCHW, which run on
/// any device.
fn forward(
    arch: &Arch,
    w: &[&Tensor],
    x: &Tensor,
    mode: &mut Mode,
    cpu_kernels: bool,
    mut probe: Option<&mut Vec<(f64, f64)>>,
) -> Result<Tensor> {
    let b = x.dims()[0];
    // Channel dimension: 0 in CBHW, 1 in NCHW.
    let ch = if cpu_kernels { 0 } else { 1 };
    let mut x = if cpu_kernels {
        x.reshape((1, b, SIDE, SIDE))?
    } else {
        x.clone()
    };
    let mut wi = 0;
    let mut si = 0;
    let pad = match arch.padding {
        Padding::Valid => 0,
        Padding::Same => arch.kernel / 2,
    };
    for &f in &arch.filters {
        let (kernel, bias) = (w[wi], w[wi + 1]);
        wi += 2;
        let (h, _) = (x.dim(2)?, x.dim(3)?);
        let conv_side = h + 2 * pad + 1 - arch.kernel;
        if cpu_kernels && fused_block(arch, conv_side) {
            x = conv_bias_relu_pool_cbhw(&x, kernel, bias)?;
        } else {
            let conv = if cpu_kernels {
                let xp = if pad > 0 {
                    x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?
                } else {
                    x.clone()
                };
                conv2d_cbhw(&xp, kernel)?.broadcast_add(&bias.reshape((f, 1, 1, 1))?)?
            } else {
                x.conv2d(kernel, pad, 1, 1, 1)?
                    .broadcast_add(&bias.reshape((1, f, 1, 1))?)?
            };
            let conv = if arch.batchnorm {
                let y = batch_norm(&conv, ch, w[wi], w[wi + 1], mode, si)?;
                wi += 2;
                si += 2;
                y
            } else {
                conv
            };
            x = pool(
                &activate(&conv, arch.activation)?,
                arch.pool,
                arch.pool_size,
            )?;
        }
        if arch.conv_dropout > 0.0 {
            if let Mode::Train { rng, .. } = mode {
                let m = dropout_mask(rng, x.dims(), arch.conv_dropout, x.device())?;
                x = x.mul(&m)?;
            }
        }
        record(&mut probe, &x)?;
    }
    if cpu_kernels {
        // Back to (B, C, H, W) so the dense layer sees features in the
        // usual (c, y, x) order.
        x = x.transpose(0, 1)?;
    }
    let mut x = x.flatten_from(1)?;
    for _ in &arch.dense {
        if arch.dropout > 0.0 {
            if let Mode::Train { rng, .. } = mode {
                let m = dropout_mask(rng, x.dims(), arch.dropout, x.device())?;
                x = x.mul(&m)?;
            }
        }
        let mut y = x.matmul(w[wi])?.broadcast_add(w[wi + 1])?;
        wi += 2;
        if arch.batchnorm {
            y = batch_norm(&y, 1, w[wi], w[wi + 1], mode, si)?;
            wi += 2;
            si += 2;
        }
        x = activate(&y, arch.activation)?;
        record(&mut probe, &x)?;
    }
    if arch.dropout > 0.0 {
        if let Mode::Train { rng, .. } = mode {
            let m = dropout_mask(rng, x.dims(), arch.dropout, x.device())?;
            x = x.mul(&m)?;
        }
    }
    x.matmul(w[wi])?.broadcast_add(w[wi + 1])
}

/// 2x2 max-pooling of `(N, C, H, W)` as reshape + two `max` reductions.
///
/// Not `Tensor::max_pool2d`: candle 0.11's backward pass for it scales the
/// gradient by (number of maxima)/4 instead of dividing by the number of
/// maxima, i.e. passes a quarter of the gradient. The `max` reduction's
/// backward pass is right (full gradient to every maximum).
#[cfg(test)]
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    pool(x, Pool::Max, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::cnn::CnnHyper;
    use rand::SeedableRng;

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    fn arch(f: impl FnOnce(&mut CnnHyper)) -> Arch {
        let mut h = CnnHyper::default();
        f(&mut h);
        Arch::from_hyper(&h).unwrap()
    }

    #[test]
    fn glorot_init_within_bounds_and_biases_zero() {
        let nf = 8;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let m = Cnn::new(&Arch::seed(nf), &mut rng, &Device::Cpu).unwrap();
        let fans = [(25, nf * 25), (nf * 25, nf * 25), (nf * 16, 256), (256, 10)];
        for (i, &(fi, fo)) in fans.iter().enumerate() {
            let bound = glorot_bound(fi, fo) as f32;
            let w = values(&m.vars[2 * i]);
            assert!(
                w.iter().all(|x| x.abs() <= bound),
                "layer {i} exceeds ±{bound}"
            );
            // Actually spread over the range, not e.g. all zero.
            let max = w.iter().fold(0f32, |a, x| a.max(x.abs()));
            assert!(
                max > 0.9 * bound,
                "layer {i}: max |w| {max} vs bound {bound}"
            );
            assert!(values(&m.vars[2 * i + 1]).iter().all(|&b| b == 0.0));
        }
        assert_eq!(m.vars[0].dims(), &[nf, 1, 5, 5]);
        assert_eq!(m.vars[2].dims(), &[nf, nf, 5, 5]);
        assert_eq!(m.vars[4].dims(), &[nf * 16, 256]);
        assert_eq!(m.vars[6].dims(), &[256, 10]);
        let dims: Vec<Vec<usize>> = m.vars.iter().map(|v| v.dims().to_vec()).collect();
        assert_eq!(Arch::seed(nf).var_shapes(), dims);
        assert!((glorot_bound(25, 800) - (6.0f64 / 825.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn he_and_normal_init_have_their_spread() {
        let std_of = |init: Init| {
            let a = arch(|h| {
                h.init = init;
                h.nf = 16;
            });
            let m = Cnn::new(&a, &mut ChaCha8Rng::seed_from_u64(1), &Device::Cpu).unwrap();
            let w = values(&m.vars[4]); // dense (256, 256)
            let n = w.len() as f64;
            let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
            (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
        };
        let fan_in = 16.0 * 16.0;
        let he = std_of(Init::He);
        assert!((he / (2.0f64 / fan_in).sqrt() - 1.0).abs() < 0.05, "{he}");
        let normal = std_of(Init::Normal);
        assert!((normal / 0.01 - 1.0).abs() < 0.05, "{normal}");
    }

    #[test]
    fn same_seed_same_weights() {
        let a4 = Arch::seed(4);
        let a = Cnn::new(&a4, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let b = Cnn::new(&a4, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let c = Cnn::new(&a4, &mut ChaCha8Rng::seed_from_u64(10), &Device::Cpu).unwrap();
        assert_eq!(values(&a.vars[2]), values(&b.vars[2]));
        assert_ne!(values(&a.vars[2]), values(&c.vars[2]));
    }

    #[test]
    fn architecture_knobs_shape_the_network() {
        let a = arch(|h| {
            h.conv_layers = 3;
            h.nf = 4;
            h.nf_mult = 2.0;
            h.kernel_size = 3;
            h.padding = Padding::Same;
            h.dense_layers = 2;
            h.dense_units = 32;
        });
        assert_eq!(a.filters, vec![4, 8, 16]);
        assert_eq!(a.sides, vec![14, 7, 3]);
        assert_eq!(a.flat(), 16 * 9);
        assert_eq!(a.var_shapes().len(), 3 * 2 + 2 * 2 + 2);
        let e = Arch::from_hyper(&CnnHyper {
            conv_layers: 3,
            ..CnnHyper::default()
        })
        .unwrap_err();
        let e = e.to_string();
        assert!(e.contains("conv layer 3") && e.contains("padding"), "{e}");
        let none = arch(|h| h.pool = Pool::None);
        assert_eq!(none.sides, vec![24, 20]);
    }

    /// Our CPU kernels and candle's generic ops (the GPU path) compute the
    /// same logits and gradients, for the seed's net and for variants that
    /// leave the fused kernel (avg-pool, same padding, tanh, batch norm).
    #[test]
    fn cpu_kernels_match_generic_path() {
        let variants: Vec<Arch> = vec![
            Arch::seed(3),
            arch(|h| {
                h.nf = 3;
                h.pool = Pool::Avg;
                h.kernel_size = 3;
                h.padding = Padding::Same;
                h.activation = Activation::Tanh;
                h.conv_dropout = 0.25;
            }),
            arch(|h| {
                h.nf = 2;
                h.pool = Pool::Max;
                h.pool_size = 3;
                h.batchnorm = true;
                h.activation = Activation::Gelu;
                h.dense_layers = 2;
                h.dense_units = 7;
                h.dropout = 0.2;
            }),
        ];
        let x = crate::cnn::Dataset::synthetic(6, 1, 1, &Device::Cpu).train_images;
        for a in variants {
            let m = Cnn::new(&a, &mut ChaCha8Rng::seed_from_u64(2), &Device::Cpu).unwrap();
            let w: Vec<&Tensor> = m.vars.iter().map(|v| v.as_tensor()).collect();
            let run = |fast| {
                let mut rng = ChaCha8Rng::seed_from_u64(5);
                let mut stats = m.stats.borrow().clone();
                let mut mode = Mode::Train {
                    rng: &mut rng,
                    stats: &mut stats,
                };
                // The conv dropout masks are drawn in each layout's order,
                // so compare without them.
                let mut a = a.clone();
                a.conv_dropout = 0.0;
                let logits = forward(&a, &w, &x, &mut mode, fast, None).unwrap();
                let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let g: Vec<Tensor> = m
                    .vars
                    .iter()
                    .map(|v| grads.get(v).unwrap().clone())
                    .collect();
                (logits, g)
            };
            let ((l1, g1), (l2, g2)) = (run(true), run(false));
            let diff = |a: &Tensor, b: &Tensor| {
                let scale = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .max(1e-2);
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    / scale
            };
            assert!(
                diff(&l1, &l2) < 1e-4,
                "{a:?}: logits differ by {}",
                diff(&l1, &l2)
            );
            for (i, (p, q)) in g1.iter().zip(&g2).enumerate() {
                // Batch norm makes the conv biases' true gradient zero:
                // what is left is rounding noise, hence the looser bound.
                assert!(
                    diff(p, q) < 5e-3,
                    "{a:?}: gradient of var {i} differs by {}",
                    diff(p, q)
                );
            }
        }
    }

    #[test]
    fn forward_shapes_and_dropout_mask() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = Cnn::new(&Arch::seed(3), &mut rng, &Device::Cpu).unwrap();
        let x = Tensor::zeros((5, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward_train(&x, &mut rng).unwrap().dims(), &[5, 10]);
        assert_eq!(m.snapshot().unwrap().forward(&x).unwrap().dims(), &[5, 10]);
        for (rate, scale) in [(0.5, 2.0f32), (0.9, 10.0)] {
            let mask = dropout_mask(&mut rng, &[100, 100], rate, &Device::Cpu).unwrap();
            let v = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v.iter().all(|&x| x == 0.0 || (x - scale).abs() < 1e-5));
            let kept = v.iter().filter(|&&x| x != 0.0).count() as f64 / 1e4;
            assert!((kept - (1.0 - rate)).abs() < 0.02, "{rate}: {kept}");
        }
    }

    #[test]
    fn batch_norm_tracks_running_statistics() {
        let a = arch(|h| {
            h.nf = 2;
            h.batchnorm = true;
        });
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = Cnn::new(&a, &mut rng, &Device::Cpu).unwrap();
        let x = crate::cnn::Dataset::synthetic(8, 1, 1, &Device::Cpu).train_images;
        let before = m.snapshot().unwrap();
        m.forward_train(&x, &mut rng).unwrap();
        let after = m.snapshot().unwrap();
        assert_eq!(before.stats().len(), 2 * 3);
        let moved = before.stats().iter().zip(after.stats()).any(|(p, q)| {
            (p - q)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        });
        assert!(moved, "running statistics updated by a training pass");
    }
}
