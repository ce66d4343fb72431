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

use std::sync::{Arc, Mutex};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

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

/// The valid, stride-1 convolution of a CBHW tensor `x (C, B, H, W)` with
/// `kernel (O, C, k, k)`: `(O, B, H-k+1, W-k+1)`, as `kernel @ im2col(x)`
/// (one large matmul forward, two backward). For layers without the fused
/// [`conv_bias_relu_pool_cbhw`].
pub fn conv2d_cbhw(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let (c, b, h, w) = x.dims4()?;
    let (o, kc, k, k2) = kernel.dims4()?;
    if kc != c || k != k2 || h < k || w < k {
        candle_core::bail!(
            "conv: kernel {:?} does not fit input {:?}",
            kernel.dims(),
            x.dims()
        )
    }
    let cols = x.contiguous()?.apply_op1(Im2Col { k })?;
    kernel
        .reshape((o, c * k * k))?
        .matmul(&cols)?
        .reshape((o, b, h + 1 - k, w + 1 - k))
}

/// `relu(maxpool2x2(x + bias))` of a CBHW tensor `x (C, B, H, W)` (H, W
/// even) with `bias (C,)`: `(C, B, H/2, W/2)`, one pass forward and one
/// back. For layers without the fused [`conv_bias_relu_pool_cbhw`].
#[cfg_attr(not(test), allow(dead_code))]
pub fn bias_relu_pool_cbhw(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, b, h, w) = x.dims4()?;
    x.contiguous()?
        .apply_op2(&bias.contiguous()?, BiasReluPool { b, h, w })
}

/// One conv stage of the network on the CPU, CBHW in and out:
/// `relu(maxpool2x2(conv(x, kernel) + bias))` with `x (C, B, H, W)`,
/// `kernel (O, C, k, k)`, `bias (O,)` → `(O, B, (H-k+1)/2, (W-k+1)/2)`
/// (`H-k+1` and `W-k+1` even).
///
/// One fused op (see [`ConvBiasReluPool`]): the full-size convolution
/// output never exists as a tensor, the work is split over the rayon pool,
/// and `x`'s gradient is only computed when `x` needs one (not for the
/// data fed to the first layer). Deterministic, and independent of the
/// number of threads.
pub fn conv_bias_relu_pool_cbhw(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (c, b, h, w) = x.dims4()?;
    let (o, kc, k, k2) = kernel.dims4()?;
    if kc != c || k != k2 || h < k || w < k || (h + 1 - k) % 2 != 0 || (w + 1 - k) % 2 != 0 {
        candle_core::bail!(
            "conv-bias-relu-pool: kernel {:?} does not fit input {:?} (valid conv, even output)",
            kernel.dims(),
            x.dims()
        )
    }
    if bias.dims() != [o] {
        candle_core::bail!(
            "conv-bias-relu-pool: bias {:?} for {o} filters",
            bias.dims()
        )
    }
    let geom = ConvGeom { c, b, h, w, o, k };
    let keep_argmax = x.track_op() || kernel.track_op() || bias.track_op();
    x.contiguous()?.apply_op3(
        &kernel.contiguous()?,
        &bias.contiguous()?,
        ConvBiasReluPool {
            geom,
            keep_argmax,
            argmax: Mutex::new(None),
        },
    )
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
    if cand.iter().any(|v| v.is_nan()) {
        let i = cand.iter().position(|v| v.is_nan()).unwrap_or(0);
        return (i, cand[i]);
    }
    // Ties keep the earlier index.
    let a = if cand[1] > cand[0] {
        (1, cand[1])
    } else {
        (0, cand[0])
    };
    let b = if cand[3] > cand[2] {
        (3, cand[3])
    } else {
        (2, cand[2])
    };
    if b.1 > a.1 {
        b
    } else {
        a
    }
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

/// Shape of one valid, stride-1 convolution of `x (C, B, H, W)` with
/// `O` kernels of `k x k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConvGeom {
    c: usize,
    b: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
}

/// Target size (f32 elements) of one im2col block: a few hundred KiB, so a
/// block and its gemm output stay in the L2 cache.
const BLOCK_COLS: usize = 64 << 10;
/// The batch is cut into at most this many contiguous parts, processed in
/// parallel; the weight gradient is summed per part, then over the parts
/// in order. Fixed (not the thread count) so results do not depend on it.
const PARTS: usize = 16;

impl ConvGeom {
    fn oh(&self) -> usize {
        self.h + 1 - self.k
    }
    fn ow(&self) -> usize {
        self.w + 1 - self.k
    }
    /// Rows of the im2col matrix: `C*k*k`.
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Pooled outputs per `(channel, example)`.
    fn pooled(&self) -> usize {
        (self.oh() / 2) * (self.ow() / 2)
    }
    /// Examples per im2col block.
    fn block(&self) -> usize {
        (BLOCK_COLS / (self.ckk() * self.oh() * self.ow())).max(1)
    }
    /// The contiguous example ranges `(start, len)` the batch is split into.
    fn parts(&self) -> Vec<(usize, usize)> {
        let per = self.b.div_ceil(PARTS).max(1);
        (0..self.b)
            .step_by(per)
            .map(|s| (s, per.min(self.b - s)))
            .collect()
    }
    /// The blocks `(start, len)` of the part `(start, len)`.
    fn blocks(&self, (start, len): (usize, usize)) -> impl Iterator<Item = (usize, usize)> {
        let block = self.block();
        (start..start + len)
            .step_by(block)
            .map(move |s| (s, block.min(start + len - s)))
    }
}

/// im2col of the examples `b0..b0+nb` of `x (C, B, H, W)` into
/// `cols (C*k*k, nb*OH*OW)`: row `(c, ky, kx)`, column `(b, oy, ox)` holds
/// `x[c, b0+b, oy+ky, ox+kx]`.
fn im2col_block(g: &ConvGeom, x: &[f32], b0: usize, nb: usize, cols: &mut [f32]) {
    let (oh, ow, k) = (g.oh(), g.ow(), g.k);
    let ncols = nb * oh * ow;
    for (row, dst) in cols.chunks_exact_mut(ncols).take(g.ckk()).enumerate() {
        let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
        for bl in 0..nb {
            for oy in 0..oh {
                let src = ((ci * g.b + b0 + bl) * g.h + oy + ky) * g.w + kx;
                let d = (bl * oh + oy) * ow;
                copy_short(&mut dst[d..d + ow], &x[src..src + ow]);
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short rows of im2col (8 or 24
/// floats here), without a call to `memcpy` per row.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    let (mut d, mut s) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().expect("chunk of 8");
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// The adjoint of [`im2col_block`]: adds `cols` into `gx`, the
/// `(C, nb, H, W)` gradient of the block's examples (zeroed by the caller).
fn col2im_block(g: &ConvGeom, cols: &[f32], nb: usize, gx: &mut [f32]) {
    let (oh, ow, k) = (g.oh(), g.ow(), g.k);
    let ncols = nb * oh * ow;
    for (row, src) in cols.chunks_exact(ncols).take(g.ckk()).enumerate() {
        let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
        for bl in 0..nb {
            for oy in 0..oh {
                let d = ((ci * nb + bl) * g.h + oy + ky) * g.w + kx;
                let s = (bl * oh + oy) * ow;
                for (o, v) in gx[d..d + ow].iter_mut().zip(&src[s..s + ow]) {
                    *o += v;
                }
            }
        }
    }
}

/// A strided `m x k` matrix view: element `(i, j)` is `data[i*rs + j*cs]`.
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `dst (m x n, row-major) = lhs (m x k) @ rhs (k x n)`, plus the old `dst`
/// when `accumulate`; single-threaded (callers parallelise over blocks, so
/// the result does not depend on the thread count).
fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n, "gemm: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let fits = |a: MatRef, r: usize, c: usize| (r - 1) * a.rs + (c - 1) * a.cs < a.data.len();
    assert!(
        fits(lhs, m, k) && fits(rhs, k, n),
        "gemm: operand too small"
    );
    // SAFETY: the asserts above keep every index the gemm reads or writes
    // inside the slices, and `dst` is borrowed mutably, so it aliases
    // neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

thread_local! {
    /// Per-thread scratch (im2col block, conv output block, column
    /// gradients), reused across calls instead of reallocated.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 3]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()])
    };
}

/// `v[..n]`, growing `v` if needed; the contents are unspecified.
fn scratch(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Where the gradient of a pooled output goes: `0..4`, the position of the
/// first maximum in its 2x2 window; [`NO_GRAD`] where the result is not
/// positive (ReLU off, or NaN).
const NO_GRAD: u8 = 4;

/// `relu(maxpool2x2(conv(x, kernel)) + bias)` fused (the same as
/// `maxpool2x2(relu(conv + bias))`, both maps being monotone); inputs
/// `(x, kernel, bias)`, see [`conv_bias_relu_pool_cbhw`]. The forward pass
/// remembers, per output, where its gradient goes, for the backward pass.
struct ConvBiasReluPool {
    geom: ConvGeom,
    /// Whether to record `argmax` (only when a gradient may be asked for).
    keep_argmax: bool,
    /// One [`NO_GRAD`]-or-window-position per output, in output order.
    argmax: Mutex<Option<Arc<Vec<u8>>>>,
}

/// Gradients of [`ConvBiasReluPool`]: inputs `(x, kernel, grad_result)`;
/// output the flat concatenation of the kernel's, the bias's and (with
/// `grad_x`) `x`'s gradients.
struct ConvBiasReluPoolGrad {
    geom: ConvGeom,
    argmax: Arc<Vec<u8>>,
    grad_x: bool,
}

/// Interleave the parts' `(O, nb, PH, PW)` outputs (and argmaxes, with
/// `keep_argmax`) into `(O, B, PH, PW)`.
fn interleave_parts(
    g: &ConvGeom,
    parts: &[(Vec<f32>, Vec<u8>)],
    keep_argmax: bool,
) -> (Vec<f32>, Vec<u8>) {
    let pooled = g.pooled();
    let total = g.o * g.b * pooled;
    let mut out = Vec::with_capacity(total);
    let mut arg = Vec::with_capacity(if keep_argmax { total } else { 0 });
    for oc in 0..g.o {
        for (p, (po, pa)) in g.parts().iter().zip(parts) {
            let r = oc * p.1 * pooled..(oc + 1) * p.1 * pooled;
            out.extend_from_slice(&po[r.clone()]);
            if keep_argmax {
                arg.extend_from_slice(&pa[r]);
            }
        }
    }
    (out, arg)
}

impl CustomOp3 for ConvBiasReluPool {
    fn name(&self) -> &'static str {
        "hps-conv-bias-relu-pool"
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
        let g = self.geom;
        let x = f32_slice(s1, l1, self.name())?;
        let kernel = f32_slice(s2, l2, self.name())?;
        let bias = f32_slice(s3, l3, self.name())?;
        let (oh, ow, ckk, pooled) = (g.oh(), g.ow(), g.ckk(), g.pooled());
        let (pw, ohw) = (ow / 2, oh * ow);
        // Each part: its (O, nb, PH, PW) output and argmax.
        let parts: Vec<(Vec<f32>, Vec<u8>)> = g
            .parts()
            .into_par_iter()
            .map(|part| {
                let n = g.o * part.1 * pooled;
                let (mut out, mut arg) = (vec![0f32; n], vec![0u8; n]);
                SCRATCH.with_borrow_mut(|[cols, conv, _]| {
                    for (b0, nb) in g.blocks(part) {
                        let ncols = nb * ohw;
                        let cols = scratch(cols, ckk * ncols);
                        im2col_block(&g, x, b0, nb, cols);
                        let conv = scratch(conv, g.o * ncols);
                        let w = MatRef {
                            data: kernel,
                            rs: ckk,
                            cs: 1,
                        };
                        let c = MatRef {
                            data: cols,
                            rs: ncols,
                            cs: 1,
                        };
                        gemm_into((g.o, ncols, ckk), conv, w, c, false);
                        for (oc, plane_o) in conv.chunks_exact(ncols).enumerate() {
                            for (bl, plane) in plane_o.chunks_exact(ohw).enumerate() {
                                let at = (oc * part.1 + b0 - part.0 + bl) * pooled;
                                let out = out[at..at + pooled].chunks_exact_mut(pw);
                                let arg = arg[at..at + pooled].chunks_exact_mut(pw);
                                for (py, (out, arg)) in out.zip(arg).enumerate() {
                                    for (px, (o, a)) in out.iter_mut().zip(arg).enumerate() {
                                        let (i, v) = window_max(plane, 2 * (py * ow + px), ow);
                                        let s = v + bias[oc];
                                        *o = if s < 0.0 { 0.0 } else { s };
                                        *a = if s > 0.0 { i as u8 } else { NO_GRAD };
                                    }
                                }
                            }
                        }
                    }
                });
                (out, arg)
            })
            .collect();
        let (out, arg) = interleave_parts(&g, &parts, self.keep_argmax);
        if self.keep_argmax {
            *self.argmax.lock().expect("argmax lock") = Some(Arc::new(arg));
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.o, g.b, oh / 2, ow / 2)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let Some(argmax) = self.argmax.lock().expect("argmax lock").clone() else {
            candle_core::bail!("{}: backward pass without a recorded forward", self.name())
        };
        let grad_x = x.track_op();
        let op = ConvBiasReluPoolGrad {
            geom: g,
            argmax,
            grad_x,
        };
        let flat = x.contiguous()?.apply_op3_no_bwd(
            &kernel.contiguous()?,
            &grad_res.contiguous()?,
            &op,
        )?;
        let nk = g.o * g.ckk();
        let gk = flat.narrow(0, 0, nk)?.reshape(kernel.shape())?;
        let gb = flat.narrow(0, nk, g.o)?.reshape(bias.shape())?;
        let gx = if grad_x {
            Some(
                flat.narrow(0, nk + g.o, x.elem_count())?
                    .reshape(x.shape())?,
            )
        } else {
            None
        };
        Ok((gx, Some(gk), Some(gb)))
    }
}

/// Append the parts' x gradients, blocks of `(C, nb, H, W)`, to `out`
/// interleaved into `(C, B, H, W)`.
#[allow(clippy::type_complexity)]
fn interleave_grad_x(
    g: &ConvGeom,
    parts: &[(usize, usize)],
    grads: &[(Vec<f32>, Vec<f32>, Vec<f32>)],
    out: &mut Vec<f32>,
) {
    let plane = g.h * g.w;
    for ci in 0..g.c {
        for (part, (_, _, gx)) in parts.iter().zip(grads) {
            let mut off = 0;
            for (_, nb) in g.blocks(*part) {
                let r = off + ci * nb * plane..off + (ci + 1) * nb * plane;
                out.extend_from_slice(&gx[r]);
                off += g.c * nb * plane;
            }
        }
    }
}

impl CustomOp3 for ConvBiasReluPoolGrad {
    fn name(&self) -> &'static str {
        "hps-conv-bias-relu-pool-grad"
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
        let g = self.geom;
        let x = f32_slice(s1, l1, self.name())?;
        let kernel = f32_slice(s2, l2, self.name())?;
        let grad = f32_slice(s3, l3, self.name())?;
        let (oh, ow, ckk, pooled) = (g.oh(), g.ow(), g.ckk(), g.pooled());
        let (pw, ohw) = (ow / 2, oh * ow);
        let n_out = g.o * g.b * pooled;
        if grad.len() != n_out || self.argmax.len() != n_out || x.len() != g.c * g.b * g.h * g.w {
            candle_core::bail!("{}: input sizes do not match the forward pass", self.name())
        }
        let parts = g.parts();
        // Each part: kernel gradient, bias gradient, and its examples' x
        // gradient (C, nb, H, W).
        let grads: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = parts
            .par_iter()
            .map(|&part| {
                let mut gk = vec![0f32; g.o * ckk];
                let mut gb = vec![0f32; g.o];
                let mut gx = Vec::new();
                SCRATCH.with_borrow_mut(|[cols, gconv, gcols]| {
                    for (i, (b0, nb)) in g.blocks(part).enumerate() {
                        let ncols = nb * ohw;
                        // Every 2x2 window gets its gradient at its argmax
                        // and zeros elsewhere; the windows tile the plane.
                        let gconv = scratch(gconv, g.o * ncols);
                        for (oc, plane_o) in gconv.chunks_exact_mut(ncols).enumerate() {
                            for (bl, plane) in plane_o.chunks_exact_mut(ohw).enumerate() {
                                let at = (oc * g.b + b0 + bl) * pooled;
                                let args = self.argmax[at..at + pooled].chunks_exact(pw);
                                let grads = grad[at..at + pooled].chunks_exact(pw);
                                let rows = plane.chunks_exact_mut(2 * ow);
                                let mut sum = 0f32;
                                for ((args, grads), rows) in args.zip(grads).zip(rows) {
                                    let (top, bottom) = rows.split_at_mut(ow);
                                    let it = args.iter().zip(grads);
                                    for (px, (&a, &gr)) in it.enumerate() {
                                        let gr = if a == NO_GRAD { 0.0 } else { gr };
                                        let mut win = [0f32; 4];
                                        win[(a & 3) as usize] = gr;
                                        top[2 * px..2 * px + 2].copy_from_slice(&win[..2]);
                                        bottom[2 * px..2 * px + 2].copy_from_slice(&win[2..]);
                                        sum += gr;
                                    }
                                }
                                gb[oc] += sum;
                            }
                        }
                        let gconv = &*gconv;
                        let cols = scratch(cols, ckk * ncols);
                        im2col_block(&g, x, b0, nb, cols);
                        // gk (O, CKK) += gconv (O, ncols) @ cols^T.
                        let lhs = MatRef {
                            data: gconv,
                            rs: ncols,
                            cs: 1,
                        };
                        let rhs = MatRef {
                            data: cols,
                            rs: 1,
                            cs: ncols,
                        };
                        gemm_into((g.o, ckk, ncols), &mut gk, lhs, rhs, i > 0);
                        if self.grad_x {
                            // gcols (CKK, ncols) = kernel^T @ gconv.
                            let gcols = scratch(gcols, ckk * ncols);
                            let lhs = MatRef {
                                data: kernel,
                                rs: 1,
                                cs: ckk,
                            };
                            let rhs = MatRef {
                                data: gconv,
                                rs: ncols,
                                cs: 1,
                            };
                            gemm_into((ckk, ncols, g.o), gcols, lhs, rhs, false);
                            let plane = g.c * g.h * g.w;
                            let mut block = vec![0f32; plane * nb];
                            col2im_block(&g, gcols, nb, &mut block);
                            gx.push(block);
                        }
                    }
                });
                (gk, gb, gx.concat())
            })
            .collect();
        let mut out = vec![0f32; g.o * ckk + g.o];
        let (gk, gb) = out.split_at_mut(g.o * ckk);
        for (pk, pb, _) in &grads {
            for (o, v) in gk.iter_mut().zip(pk) {
                *o += v;
            }
            for (o, v) in gb.iter_mut().zip(pb) {
                *o += v;
            }
        }
        if self.grad_x {
            out.reserve(x.len());
            interleave_grad_x(&g, &parts, &grads, &mut out);
        }
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// Fix the number of CPU threads candle uses, by setting `RAYON_NUM_THREADS`
/// unless already set, and return the count in effect. `None` means the CPUs this process may use
/// (`std::thread::available_parallelism`, which honours affinity and cgroup
/// quotas).
///
/// Call it at the very start of `main`, before any other thread exists: it
/// sets environment variables. It matters for speed, not correctness:
/// without `RAYON_NUM_THREADS`, candle 0.11 re-reads `/proc/cpuinfo` on
/// every matmul, which made CPU training about 3x slower in our tests.
///
/// `CANDLE_NUM_THREADS` (candle's element-wise pool) is set to 1 unless
/// already set: that pool spin-waits, which cost ~25% of an epoch on a
/// busy 2-core machine, and the heavy work runs on rayon (`cpu_ops`).
pub fn init_cpu_threads(threads: Option<usize>) -> usize {
    let from_env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    let n = threads
        .filter(|&n| n > 0)
        .or_else(|| from_env("RAYON_NUM_THREADS"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads.is_some() || from_env("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if from_env("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    n
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

    /// Reference for the fused stage with candle's ops, in BCHW:
    /// conv2d + bias + ReLU + max-pool made of `max` reductions.
    fn reference_stage(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Tensor {
        let o = kernel.dims()[0];
        let y = x
            .conv2d(kernel, 0, 1, 1, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((o, 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap();
        crate::cnn::model::max_pool2x2(&y).unwrap()
    }

    /// Gradients of `sum(f(x, kernel, bias) * proj)` for the three vars.
    fn grads_of(out: &Tensor, proj: &Tensor, vars: &[&Var]) -> Vec<Option<Tensor>> {
        let g = (out * proj).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter().map(|v| g.get(v.as_tensor()).cloned()).collect()
    }

    /// Forward and all three gradients of the fused conv stage agree with
    /// candle's reference ops, on shapes with odd sizes, several parts and
    /// several im2col blocks per part.
    #[test]
    fn fused_conv_stage_matches_candle() {
        // (C, B, H, W, O, k): 75*16*16 floats per example gives blocks of
        // 3 examples, and B = 100 parts of 7, so partial blocks too.
        for (i, &(c, b, h, w, o, k)) in [
            (3, 100, 20, 20, 5, 5),
            (2, 7, 17, 21, 3, 4),
            (1, 3, 9, 7, 4, 4),
            (5, 33, 12, 12, 7, 5),
        ]
        .iter()
        .enumerate()
        {
            let seed = 10 * i as u64;
            let x = Var::from_tensor(&rand_tensor(&[b, c, h, w], seed)).unwrap();
            let kern = Var::from_tensor(&rand_tensor(&[o, c, k, k], seed + 1)).unwrap();
            let bias = Var::from_tensor(&rand_tensor(&[o], seed + 2)).unwrap();
            let (ph, pw) = ((h + 1 - k) / 2, (w + 1 - k) / 2);
            let proj = rand_tensor(&[b, o, ph, pw], seed + 3);
            let vars = [&x, &kern, &bias];

            let ref_out = reference_stage(x.as_tensor(), kern.as_tensor(), bias.as_tensor());
            let ref_grads = grads_of(&ref_out, &proj, &vars);
            let x_cbhw = x.as_tensor().transpose(0, 1).unwrap();
            let out = conv_bias_relu_pool_cbhw(&x_cbhw, kern.as_tensor(), bias.as_tensor())
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            let grads = grads_of(&out, &proj, &vars);

            assert_eq!(out.dims(), ref_out.dims());
            assert!(max_diff(&out, &ref_out) < 1e-4, "case {i}: forward");
            let active = out.gt(0f32).unwrap().to_dtype(DType::F32).unwrap();
            let frac = active.mean_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                frac > 0.05 && frac < 0.95,
                "case {i}: ReLU not exercised ({frac})"
            );
            for (j, (g, r)) in grads.iter().zip(&ref_grads).enumerate() {
                let (g, r) = (g.as_ref().unwrap(), r.as_ref().unwrap());
                let d = max_diff(g, r);
                assert!(d < 1e-3, "case {i}: gradient {j} differs by {d}");
            }
        }
    }

    /// Data input (not a var): no gradient for it, the same for the weights.
    #[test]
    fn fused_conv_stage_skips_untracked_input_gradient() {
        let (c, b, h, w, o, k) = (1, 9, 12, 12, 4, 5);
        let x = rand_tensor(&[c, b, h, w], 40);
        let kern = Var::from_tensor(&rand_tensor(&[o, c, k, k], 41)).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&[o], 42)).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let proj = rand_tensor(&[o, b, 4, 4], 43);
        let out_a = conv_bias_relu_pool_cbhw(&x, kern.as_tensor(), bias.as_tensor()).unwrap();
        let a = grads_of(&out_a, &proj, &[&kern, &bias]);
        let out_b =
            conv_bias_relu_pool_cbhw(xv.as_tensor(), kern.as_tensor(), bias.as_tensor()).unwrap();
        let b_ = grads_of(&out_b, &proj, &[&kern, &bias, &xv]);
        assert!(b_[2].is_some());
        for (ga, gb) in a.iter().zip(&b_) {
            assert_eq!(max_diff(ga.as_ref().unwrap(), gb.as_ref().unwrap()), 0.0);
        }
    }

    /// The same bits with 1 and 3 threads (fixed reduction order).
    #[test]
    fn fused_conv_stage_is_thread_count_independent() {
        let (c, b, h, w, o, k) = (4, 50, 12, 12, 6, 5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let x = Var::from_tensor(&rand_tensor(&[c, b, h, w], 50)).unwrap();
                let kern = Var::from_tensor(&rand_tensor(&[o, c, k, k], 51)).unwrap();
                let bias = Var::from_tensor(&rand_tensor(&[o], 52)).unwrap();
                let proj = rand_tensor(&[o, b, 4, 4], 53);
                let out =
                    conv_bias_relu_pool_cbhw(x.as_tensor(), kern.as_tensor(), bias.as_tensor())
                        .unwrap();
                let mut all = vec![out.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
                for g in grads_of(&out, &proj, &[&x, &kern, &bias]) {
                    all.push(g.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                all.into_iter()
                    .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn fused_conv_stage_propagates_nan() {
        let mut v = vec![0f32; 36];
        v[7] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 6, 6), &Device::Cpu).unwrap();
        let kern = Tensor::ones((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let bias = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let out = conv_bias_relu_pool_cbhw(&x, &kern, &bias)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // The NaN at (1, 1) reaches conv outputs (0..2, 0..2): window (0, 0).
        assert!(
            out[0].is_nan() && out[1..].iter().all(|&o| o == 0.0),
            "{out:?}"
        );
    }
}
