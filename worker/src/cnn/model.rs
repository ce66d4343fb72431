//! The seed's Lasagne `build_cnn(nf)`, with every random number drawn from
//! our own seeded RNG so training is reproducible on the CPU.
//!
//! ```text
//! input 1x28x28
//! conv 5x5, nf filters, valid, ReLU  -> nf x 24 x 24
//! max-pool 2x2                       -> nf x 12 x 12
//! conv 5x5, nf filters, valid, ReLU  -> nf x 8 x 8
//! max-pool 2x2                       -> nf x 4 x 4
//! dropout 0.5, dense 256, ReLU
//! dropout 0.5, dense 10              -> logits (softmax lives in the loss)
//! ```

use candle_core::{Device, Result, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::cpu_ops::conv_bias_relu_pool_cbhw;
use super::data::SIDE;

const KERNEL: usize = 5;
const HIDDEN: usize = 256;
pub const CLASSES: usize = 10;
/// Spatial side after the two conv+pool stages: ((28-4)/2 - 4)/2.
const FEATURE_SIDE: usize = 4;
/// Dropout keep probability (Lasagne's `p=0.5` drop).
const KEEP: f64 = 0.5;

/// Glorot-uniform bound `sqrt(6 / (fan_in + fan_out))` (Lasagne's
/// `GlorotUniform()` with gain 1). For a conv kernel both fans include the
/// receptive field: `fan_in = in_ch*kh*kw`, `fan_out = out_ch*kh*kw`.
pub fn glorot_bound(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

fn glorot(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    device: &Device,
) -> Result<Var> {
    let bound = glorot_bound(fan_in, fan_out) as f32;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, device)?)
}

fn zeros(shape: &[usize], device: &Device) -> Result<Var> {
    Var::zeros(shape, candle_core::DType::F32, device)
}

/// Size (f32 elements) of the larger of the two im2col buffers per example
/// on the CPU path: conv1 `25 x 24*24`, conv2 `nf*25 x 8*8`.
pub fn cols_per_example(nf: usize) -> usize {
    (KERNEL * KERNEL * 24 * 24).max(nf * KERNEL * KERNEL * 8 * 8)
}

/// The trainable network: `vars` in the order
/// conv1 W, conv1 b, conv2 W, conv2 b, dense1 W, dense1 b, dense2 W, dense2 b.
pub struct Cnn {
    pub vars: Vec<Var>,
    nf: usize,
}

impl Cnn {
    /// Glorot-uniform weights from `rng`, zero biases. Conv kernels are
    /// `(out, in, 5, 5)`, biases `(out,)`, dense weights `(in, out)`.
    pub fn new(nf: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Cnn> {
        let k2 = KERNEL * KERNEL;
        let flat = nf * FEATURE_SIDE * FEATURE_SIDE;
        let vars = vec![
            glorot(rng, &[nf, 1, KERNEL, KERNEL], k2, nf * k2, device)?,
            zeros(&[nf], device)?,
            glorot(rng, &[nf, nf, KERNEL, KERNEL], nf * k2, nf * k2, device)?,
            zeros(&[nf], device)?,
            glorot(rng, &[flat, HIDDEN], flat, HIDDEN, device)?,
            zeros(&[HIDDEN], device)?,
            glorot(rng, &[HIDDEN, CLASSES], HIDDEN, CLASSES, device)?,
            zeros(&[CLASSES], device)?,
        ];
        Ok(Cnn { vars, nf })
    }

    /// The shapes of `vars` for `nf` filters, in order (for checking a
    /// checkpoint before restoring it).
    pub fn var_shapes(nf: usize) -> Vec<Vec<usize>> {
        let flat = nf * FEATURE_SIDE * FEATURE_SIDE;
        vec![
            vec![nf, 1, KERNEL, KERNEL],
            vec![nf],
            vec![nf, nf, KERNEL, KERNEL],
            vec![nf],
            vec![flat, HIDDEN],
            vec![HIDDEN],
            vec![HIDDEN, CLASSES],
            vec![CLASSES],
        ]
    }

    /// Overwrite the weights with `w` (same shapes, same device).
    pub fn restore(&self, w: &Weights) -> Result<()> {
        for (var, t) in self.vars.iter().zip(&w.0) {
            var.set(t)?;
        }
        Ok(())
    }

    /// Training-mode forward pass: inverted dropout (keep 0.5, survivors
    /// scaled by 2) with masks drawn from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let b = x.dims()[0];
        let device = x.device();
        let m1 = dropout_mask(rng, b, self.nf * FEATURE_SIDE * FEATURE_SIDE, device)?;
        let m2 = dropout_mask(rng, b, HIDDEN, device)?;
        let w: Vec<&Tensor> = self.vars.iter().map(|v| v.as_tensor()).collect();
        forward(&w, x, Some((&m1, &m2)))
    }

    /// Detached copies of the current weights, for evaluation and for
    /// remembering the best epoch.
    pub fn snapshot(&self) -> Result<Weights> {
        let w = self
            .vars
            .iter()
            .map(|v| v.as_detached_tensor().copy())
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights(w))
    }
}

/// A frozen copy of the network's weights (no gradient tracking).
#[derive(Clone)]
pub struct Weights(Vec<Tensor>);

impl Weights {
    /// Wrap tensors given in the order of [`Cnn::vars`] (checkpoint restore;
    /// the caller checks the shapes).
    pub fn from_tensors(tensors: Vec<Tensor>) -> Weights {
        Weights(tensors)
    }

    /// The tensors, in the order of [`Cnn::vars`].
    pub fn tensors(&self) -> &[Tensor] {
        &self.0
    }

    /// Number of filters per conv layer.
    pub fn nf(&self) -> usize {
        self.0[0].dims()[0]
    }

    /// Evaluation-mode forward pass (no dropout): logits `(B, 10)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w: Vec<&Tensor> = self.0.iter().collect();
        forward(&w, x, None)
    }
}

fn forward(w: &[&Tensor], x: &Tensor, masks: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    forward_with(w, x, masks, x.device().is_cpu())
}

/// The forward pass; `cpu_kernels` picks our CPU custom ops (CBHW layout,
/// im2col, fused bias+ReLU+pool), otherwise candle's generic ops, which run
/// on any device.
fn forward_with(
    w: &[&Tensor],
    x: &Tensor,
    masks: Option<(&Tensor, &Tensor)>,
    cpu_kernels: bool,
) -> Result<Tensor> {
    let b = x.dims()[0];
    let nf = w[0].dims()[0];
    let x = if cpu_kernels {
        // Channels-first (C, B, H, W) with our im2col convolution; the
        // transpose back to (B, C, H, W) before flattening makes the dense
        // layer see features in the usual (c, y, x) order.
        let x = x.reshape((1, b, SIDE, SIDE))?;
        let x = conv_bias_relu_pool_cbhw(&x, w[0], w[1])?;
        let x = conv_bias_relu_pool_cbhw(&x, w[2], w[3])?;
        x.transpose(0, 1)?
    } else {
        let bias = |t: &Tensor| t.reshape((nf, 1, 1));
        let x = max_pool2x2(
            &x.conv2d(w[0], 0, 1, 1, 1)?
                .broadcast_add(&bias(w[1])?)?
                .relu()?,
        )?;
        max_pool2x2(
            &x.conv2d(w[2], 0, 1, 1, 1)?
                .broadcast_add(&bias(w[3])?)?
                .relu()?,
        )?
    };
    let mut x = x.flatten_from(1)?;
    if let Some((m1, _)) = masks {
        x = x.mul(m1)?;
    }
    let mut x = x.matmul(w[4])?.broadcast_add(w[5])?.relu()?;
    if let Some((_, m2)) = masks {
        x = x.mul(m2)?;
    }
    x.matmul(w[6])?.broadcast_add(w[7])
}

/// 2x2 max-pooling of `(N, C, H, W)` as reshape + two `max` reductions.
///
/// Not `Tensor::max_pool2d`: candle 0.11's backward pass for it scales the
/// gradient by (number of maxima)/4 instead of dividing by the number of
/// maxima, i.e. passes a quarter of the gradient. The `max` reduction's
/// backward pass is right (full gradient to every maximum).
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h / 2, 2, w / 2, 2))?.max(5)?.max(3)
}

/// A `(rows, cols)` inverted-dropout mask: each entry is `1/KEEP` with
/// probability `KEEP`, else 0. Uses one random bit per entry.
fn dropout_mask(rng: &mut ChaCha8Rng, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    debug_assert_eq!(KEEP, 0.5, "one random bit per entry assumes keep = 0.5");
    let scale = (1.0 / KEEP) as f32;
    let n = rows * cols;
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        let bits: u64 = rng.random();
        let take = (n - data.len()).min(64);
        data.extend((0..take).map(|i| if (bits >> i) & 1 == 1 { scale } else { 0.0 }));
    }
    Tensor::from_vec(data, (rows, cols), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn glorot_init_within_bounds_and_biases_zero() {
        let nf = 8;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let m = Cnn::new(nf, &mut rng, &Device::Cpu).unwrap();
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
        assert_eq!(Cnn::var_shapes(nf), dims);
        assert!((glorot_bound(25, 800) - (6.0f64 / 825.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn same_seed_same_weights() {
        let a = Cnn::new(4, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let b = Cnn::new(4, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu).unwrap();
        let c = Cnn::new(4, &mut ChaCha8Rng::seed_from_u64(10), &Device::Cpu).unwrap();
        assert_eq!(values(&a.vars[2]), values(&b.vars[2]));
        assert_ne!(values(&a.vars[2]), values(&c.vars[2]));
    }

    /// The CPU kernels and candle's generic ops (the GPU path) compute the
    /// same logits and gradients.
    #[test]
    fn cpu_kernels_match_generic_path() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let m = Cnn::new(3, &mut rng, &Device::Cpu).unwrap();
        let x = crate::cnn::Dataset::synthetic(6, 1, 1, &Device::Cpu).train_images;
        let m1 = dropout_mask(&mut rng, 6, 48, &Device::Cpu).unwrap();
        let m2 = dropout_mask(&mut rng, 6, HIDDEN, &Device::Cpu).unwrap();
        let w: Vec<&Tensor> = m.vars.iter().map(|v| v.as_tensor()).collect();
        let run = |fast| {
            let logits = forward_with(&w, &x, Some((&m1, &m2)), fast).unwrap();
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
                .max(1e-3);
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
        assert!(diff(&l1, &l2) < 1e-5, "logits differ by {}", diff(&l1, &l2));
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            assert!(
                diff(a, b) < 1e-4,
                "gradient of var {i} differs by {}",
                diff(a, b)
            );
        }
    }

    #[test]
    fn forward_shapes_and_dropout_mask() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = Cnn::new(3, &mut rng, &Device::Cpu).unwrap();
        let x = Tensor::zeros((5, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward_train(&x, &mut rng).unwrap().dims(), &[5, 10]);
        assert_eq!(m.snapshot().unwrap().forward(&x).unwrap().dims(), &[5, 10]);
        let mask = dropout_mask(&mut rng, 100, 100, &Device::Cpu).unwrap();
        let v = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|&x| x == 0.0 || x == 2.0));
        let kept = v.iter().filter(|&&x| x == 2.0).count();
        assert!((4500..5500).contains(&kept), "{kept}");
    }
}
