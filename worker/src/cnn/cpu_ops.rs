//! Fast CPU kernels for the CNN, as candle custom ops with their own
//! backward passes.
//!
//! * im2col / col2im, so a valid, stride-1 convolution is one large matmul
//!   forward and two large matmuls backward. candle 0.11's CPU `conv2d` runs
//!   one small gemm per example and its backward pass goes through a naive
//!   `conv_transpose2d`; for this network that is several times slower.
//! * bias + ReLU + 2x2 max-pool fused into one pass (and one pass back),
//!   instead of the ~15 full-size temporaries candle's autograd creates for
//!   `broadcast_add`, `relu` and `max_pool2d`.
//!
//! Activations use a channels-first "CBHW" layout `(C, B, H, W)`: then
//! `W (O, C*k*k) @ cols (C*k*k, B*OH*OW)` is directly the `(O, B, OH, OW)`
//! output, with no transposes.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

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
/// that im2col copies (and col2im adds back), in increasing `dst_offset`
/// order with no gaps.
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
        // Runs come in increasing, gap-free destination order, so the output
        // is built by appending (no zero-fill pass).
        let mut out = Vec::with_capacity(c * k * k * b * oh * ow);
        for_each_run(c, b, h, w, k, |s, d| {
            debug_assert_eq!(d, out.len());
            out.extend_from_slice(&x[s..s + ow]);
        });
        Ok((CpuStorage::F32(out), Shape::from((c * k * k, b * oh * ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (c, b, h, w) = arg.dims4()?;
        let op = Col2Im {
            c,
            b,
            h,
            w,
            k: self.k,
        };
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

/// `W (O, C*k*k) @ im2col(x)`: the valid, stride-1 convolution of a CBHW
/// tensor `x (C, B, H, W)` with `kernel (O, C, k, k)`, as `(O, B*OH*OW)`.
fn conv_matmul(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let (c, _, _, _) = x.dims4()?;
    let (o, kc, k, k2) = kernel.dims4()?;
    if kc != c || k != k2 {
        candle_core::bail!(
            "conv: kernel {:?} does not fit input {:?}",
            kernel.dims(),
            x.dims()
        )
    }
    let cols = x.contiguous()?.apply_op1(Im2Col { k })?;
    kernel.reshape((o, c * k * k))?.matmul(&cols)
}

/// The valid, stride-1 convolution of a CBHW tensor `x (C, B, H, W)` with
/// `kernel (O, C, k, k)`: `(O, B, H-k+1, W-k+1)` (no bias), with im2col's
/// backward pass.
pub fn conv2d_cbhw(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let (_, b, h, w) = x.dims4()?;
    let (o, _, k, _) = kernel.dims4()?;
    if h < k || w < k {
        candle_core::bail!("conv: input {h}x{w} smaller than kernel {k}x{k}")
    }
    conv_matmul(x, kernel)?.reshape((o, b, h + 1 - k, w + 1 - k))
}

/// One conv stage of the network on the CPU, CBHW in and out:
/// `relu(maxpool2x2(conv(x, kernel) + bias))` with `x (C, B, H, W)`,
/// `kernel (O, C, k, k)`, `bias (O,)` → `(O, B, (H-k+1)/2, (W-k+1)/2)`.
pub fn conv_bias_relu_pool_cbhw(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, b, h, w) = x.dims4()?;
    let k = kernel.dim(2)?;
    let op = BiasReluPool {
        b,
        h: h + 1 - k,
        w: w + 1 - k,
    };
    conv_matmul(x, kernel)?.apply_op2(&bias.contiguous()?, op)
}

/// `relu(maxpool2x2(x) + bias[c])` for `x` holding `C` channels of `B`
/// planes of `H x W` (H, W even) in CBHW order, whatever its shape (the
/// conv matmul's `(C, B*H*W)` output is used as is, saving a reshape node in
/// the autograd graph), and `bias (C,)`; the result is `(C, B, H/2, W/2)`.
/// Equal to `maxpool2x2(relu(x + bias))` since both maps are monotone. NaN
/// propagates.
#[derive(Debug, Clone, Copy)]
struct BiasReluPool {
    b: usize,
    h: usize,
    w: usize,
}

/// Gradient of [`BiasReluPool`] with respect to `x`: arguments
/// `(x, result, grad_result)`; each pooled cell's gradient goes to the first
/// maximum of its window, where the result is positive.
#[derive(Debug, Clone, Copy)]
struct BiasReluPoolGrad(BiasReluPool);

impl BiasReluPool {
    /// `(C, B, H, W)` of an input with this layout.
    fn dims(&self, layout: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
        let BiasReluPool { b, h, w } = *self;
        let (n, plane) = (layout.shape().elem_count(), b * h * w);
        if h % 2 != 0 || w % 2 != 0 || plane == 0 || n / plane * plane != n {
            candle_core::bail!("{op}: {n} elements do not form {b} planes of {h}x{w} (even sizes)")
        }
        Ok((n / plane, b, h, w))
    }
}

/// Index (0..4) of the first maximum of the 2x2 window at `at` (row length
/// `w`), NaN counting as the maximum; and that value.
#[inline]
fn window_max(x: &[f32], at: usize, w: usize) -> (usize, f32) {
    let cand = [x[at], x[at + 1], x[at + w], x[at + w + 1]];
    let mut best = (0, cand[0]);
    for (i, &v) in cand.iter().enumerate().skip(1) {
        if best.1.is_nan() {
            break;
        }
        if v > best.1 || v.is_nan() {
            best = (i, v);
        }
    }
    best
}

impl CustomOp2 for BiasReluPool {
    fn name(&self) -> &'static str {
        "hps-bias-relu-pool"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, b, h, w) = self.dims(l1, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let bias = f32_slice(s2, l2, self.name())?;
        if bias.len() != c {
            candle_core::bail!(
                "{}: bias has {} entries for {c} channels",
                self.name(),
                bias.len()
            )
        }
        let (ph, pw) = (h / 2, w / 2);
        let mut out = Vec::with_capacity(c * b * ph * pw);
        for (plane, xp) in x.chunks_exact(h * w).enumerate() {
            let bc = bias[plane / b];
            for oy in 0..ph {
                for ox in 0..pw {
                    let s = window_max(xp, 2 * oy * w + 2 * ox, w).1 + bc;
                    out.push(if s < 0.0 { 0.0 } else { s });
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((c, b, ph, pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let grad_x = x
            .contiguous()?
            .apply_op3_no_bwd(res, &grad_res, &BiasReluPoolGrad(*self))?;
        let c = res.dims()[0];
        let active = res.gt(0f32)?.to_dtype(DType::F32)?;
        let grad_bias = (grad_res * active)?.reshape((c, ()))?.sum(1)?;
        Ok((Some(grad_x), Some(grad_bias)))
    }
}

impl CustomOp3 for BiasReluPoolGrad {
    fn name(&self) -> &'static str {
        "hps-bias-relu-pool-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c, b, h, w) = self.0.dims(l1, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let res = f32_slice(s2, l2, self.name())?;
        let grad = f32_slice(s3, l3, self.name())?;
        let (ph, pw) = (h / 2, w / 2);
        if res.len() != c * b * ph * pw || grad.len() != res.len() {
            candle_core::bail!("{}: result/gradient size mismatch", self.name())
        }
        let mut out = vec![0f32; x.len()];
        for (plane, (xp, op)) in x
            .chunks_exact(h * w)
            .zip(out.chunks_exact_mut(h * w))
            .enumerate()
        {
            let base = plane * ph * pw;
            for oy in 0..ph {
                for ox in 0..pw {
                    let r = base + oy * pw + ox;
                    if res[r] > 0.0 {
                        let at = 2 * oy * w + 2 * ox;
                        let (i, _) = window_max(xp, at, w);
                        op[at + (i / 2) * w + (i % 2)] = grad[r];
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn conv2d_cbhw(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        let (_, b, h, w) = x.dims4()?;
        let (o, _, k, _) = kernel.dims4()?;
        conv_matmul(x, kernel)?.reshape((o, b, h + 1 - k, w + 1 - k))
    }

    fn bias_relu_pool_cbhw(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (_, b, h, w) = x.dims4()?;
        x.contiguous()?
            .apply_op2(&bias.contiguous()?, BiasReluPool { b, h, w })
    }

    fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Forward and both gradients agree with candle's own conv2d.
    #[test]
    fn matches_candle_conv2d() {
        let (c, b, h, w, o, k) = (3, 4, 12, 10, 5, 5);
        let x = Var::from_tensor(&rand_tensor(&[b, c, h, w], 1)).unwrap();
        let kern = Var::from_tensor(&rand_tensor(&[o, c, k, k], 2)).unwrap();
        let proj = rand_tensor(&[b, o, h - k + 1, w - k + 1], 3);

        let ref_out = x.as_tensor().conv2d(kern.as_tensor(), 0, 1, 1, 1).unwrap();
        let ref_grads = (&ref_out * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();

        let x_cbhw = x.as_tensor().transpose(0, 1).unwrap();
        let out = conv2d_cbhw(&x_cbhw, kern.as_tensor())
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let grads = (&out * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();

        assert!(max_diff(&out, &ref_out) < 1e-4);
        for v in [&x, &kern] {
            let (g, r) = (
                grads.get(v.as_tensor()).unwrap(),
                ref_grads.get(v.as_tensor()).unwrap(),
            );
            assert!(
                max_diff(g, r) < 1e-3,
                "gradient mismatch {}",
                max_diff(g, r)
            );
        }
    }

    /// Value and gradients agree with candle's broadcast_add + relu + a
    /// max-pool made of `max` reductions (see `model::max_pool2x2`).
    #[test]
    fn fused_bias_relu_pool_matches_candle() {
        let (c, b, h, w) = (3, 4, 8, 6);
        let x = Var::from_tensor(&rand_tensor(&[c, b, h, w], 4)).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&[c], 5)).unwrap();
        let proj = rand_tensor(&[c, b, h / 2, w / 2], 6);

        let ref_out = x
            .as_tensor()
            .broadcast_add(&bias.as_tensor().reshape((c, 1, 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap();
        let ref_out = crate::cnn::model::max_pool2x2(&ref_out).unwrap();
        let ref_grads = (&ref_out * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let out = bias_relu_pool_cbhw(x.as_tensor(), bias.as_tensor()).unwrap();
        let grads = (&out * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();

        assert_eq!(out.dims(), &[c, b, h / 2, w / 2]);
        assert!(max_diff(&out, &ref_out) < 1e-6);
        let zeros = out
            .eq(0f32)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .sum_all()
            .unwrap();
        assert!(
            zeros.to_scalar::<f32>().unwrap() > 0.0,
            "test should exercise the ReLU"
        );
        for v in [&x, &bias] {
            let (g, r) = (
                grads.get(v.as_tensor()).unwrap(),
                ref_grads.get(v.as_tensor()).unwrap(),
            );
            assert!(
                max_diff(g, r) < 1e-5,
                "gradient mismatch {}",
                max_diff(g, r)
            );
        }
    }

    #[test]
    fn fused_pool_propagates_nan() {
        let mut v = vec![0f32; 16];
        v[5] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let bias = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let out = bias_relu_pool_cbhw(&x, &bias)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            out[0].is_nan() && out[1..].iter().all(|&o| o == 0.0),
            "{out:?}"
        );
    }
}
