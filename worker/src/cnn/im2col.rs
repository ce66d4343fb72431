//! A fast CPU convolution path: im2col / col2im as candle custom ops, so a
//! valid, stride-1 convolution is one large matmul forward and two large
//! matmuls backward.
//!
//! candle 0.11's CPU `conv2d` runs one small gemm per example and its
//! backward pass goes through a naive `conv_transpose2d`; for this small
//! network that is several times slower than im2col + gemm.
//!
//! Activations use a channels-first "CBHW" layout `(C, B, H, W)`: then
//! `W (O, C*k*k) @ cols (C*k*k, B*OH*OW)` is directly the `(O, B, OH, OW)`
//! output, with no transposes, and 2x2 max-pooling works unchanged (it pools
//! the last two dims).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// `(C, B, H, W)` → `(C*k*k, B*OH*OW)` with `OH = H-k+1`, `OW = W-k+1`;
/// row `(c, ky, kx)`, column `(b, oy, ox)` holds `x[c, b, oy+ky, ox+kx]`.
#[derive(Debug, Clone, Copy)]
struct Im2Col {
    k: usize,
}

/// The adjoint of [`Im2Col`]: sums columns back into a `(C, B, H, W)` tensor.
#[derive(Debug, Clone, Copy)]
struct Col2Im {
    c: usize,
    b: usize,
    h: usize,
    w: usize,
    k: usize,
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &'static str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{op}: only f32 is supported")
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::RequiresContiguous { op }.bt()),
    }
}

/// Call `f(src_offset, dst_offset)` for each contiguous run of `ow` elements
/// that im2col copies (and col2im adds back).
#[inline]
fn for_each_run(c: usize, b: usize, h: usize, w: usize, k: usize, mut f: impl FnMut(usize, usize)) {
    let (oh, ow) = (h + 1 - k, w + 1 - k);
    let ncols = b * oh * ow;
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                for bi in 0..b {
                    for oy in 0..oh {
                        let src = ((ci * b + bi) * h + oy + ky) * w + kx;
                        let dst = row * ncols + (bi * oh + oy) * ow;
                        f(src, dst);
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "hps-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (c, b, h, w) = layout.shape().dims4()?;
        let k = self.k;
        if h < k || w < k {
            candle_core::bail!("im2col: input {h}x{w} smaller than kernel {k}x{k}")
        }
        let x = f32_slice(storage, layout, "hps-im2col")?;
        let (oh, ow) = (h + 1 - k, w + 1 - k);
        let mut out = vec![0f32; c * k * k * b * oh * ow];
        for_each_run(c, b, h, w, k, |s, d| out[d..d + ow].copy_from_slice(&x[s..s + ow]));
        Ok((CpuStorage::F32(out), Shape::from((c * k * k, b * oh * ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (c, b, h, w) = arg.dims4()?;
        let op = Col2Im { c, b, h, w, k: self.k };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "hps-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Col2Im { c, b, h, w, k } = *self;
        let (oh, ow) = (h + 1 - k, w + 1 - k);
        let want = Shape::from((c * k * k, b * oh * ow));
        if layout.shape() != &want {
            candle_core::bail!("col2im: expected {want:?}, got {:?}", layout.shape())
        }
        let cols = f32_slice(storage, layout, "hps-col2im")?;
        let mut out = vec![0f32; c * b * h * w];
        for_each_run(c, b, h, w, k, |s, d| {
            for (o, v) in out[s..s + ow].iter_mut().zip(&cols[d..d + ow]) {
                *o += v;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((c, b, h, w))))
    }
}

/// Valid, stride-1 convolution in CBHW layout: `x (C, B, H, W)`,
/// `kernel (O, C, k, k)` → `(O, B, H-k+1, W-k+1)`. CPU only.
pub fn conv2d_cbhw(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let (c, b, h, w) = x.dims4()?;
    let (o, kc, k, k2) = kernel.dims4()?;
    if kc != c || k != k2 {
        candle_core::bail!("conv2d_cbhw: kernel {:?} does not fit input {:?}", kernel.dims(), x.dims())
    }
    let cols = x.contiguous()?.apply_op1(Im2Col { k })?;
    kernel.reshape((o, c * k * k))?.matmul(&cols)?.reshape((o, b, h + 1 - k, w + 1 - k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// Forward and both gradients agree with candle's own conv2d.
    #[test]
    fn matches_candle_conv2d() {
        let (c, b, h, w, o, k) = (3, 4, 12, 10, 5, 5);
        let x = Var::from_tensor(&rand_tensor(&[b, c, h, w], 1)).unwrap();
        let kern = Var::from_tensor(&rand_tensor(&[o, c, k, k], 2)).unwrap();
        let proj = rand_tensor(&[b, o, h - k + 1, w - k + 1], 3);

        let ref_out = x.as_tensor().conv2d(kern.as_tensor(), 0, 1, 1, 1).unwrap();
        let ref_grads = (&ref_out * &proj).unwrap().sum_all().unwrap().backward().unwrap();

        let x_cbhw = x.as_tensor().transpose(0, 1).unwrap();
        let out = conv2d_cbhw(&x_cbhw, kern.as_tensor()).unwrap().transpose(0, 1).unwrap();
        let grads = (&out * &proj).unwrap().sum_all().unwrap().backward().unwrap();

        assert!(max_diff(&out, &ref_out) < 1e-4);
        for v in [&x, &kern] {
            let (g, r) = (grads.get(v.as_tensor()).unwrap(), ref_grads.get(v.as_tensor()).unwrap());
            assert!(max_diff(g, r) < 1e-3, "gradient mismatch {}", max_diff(g, r));
        }
    }
}
