//! Evaluation of weights on a set of examples: mean loss and error rate,
//! in chunks that bound the im2col buffers.

use candle_core::{DType, Tensor};

use super::model::{Arch, Weights};
use super::outcome::TrainError;

/// At most this many examples per forward pass when evaluating.
pub(super) const EVAL_CHUNK: usize = 1000;
/// Bound on the im2col buffer (f32 elements) of one evaluation chunk.
pub(super) const EVAL_COLS: usize = 8 << 20;

/// Examples per evaluation forward pass: at most [`EVAL_CHUNK`], fewer for
/// wide networks so the im2col buffers stay under [`EVAL_COLS`].
pub(super) fn eval_chunk(arch: &Arch) -> usize {
    let per_example = arch.cols_per_example();
    (EVAL_COLS / per_example).clamp(16, EVAL_CHUNK)
}

/// How many rows of `logits` do not pick their label in `y`.
pub(super) fn misclassified(logits: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    let miss = logits.argmax(1)?.ne(y)?.to_dtype(DType::F32)?.sum_all()?;
    Ok(miss.to_scalar::<f32>()? as f64)
}

/// The mean absolute value of `t`'s entries.
pub(super) fn mean_abs(t: &Tensor) -> candle_core::Result<f64> {
    Ok(t.abs()?.mean_all()?.to_scalar::<f32>()? as f64)
}

/// Mean loss and error rate of `w` on `(x, y)`, in chunks of
/// [`eval_chunk`]. NaN for an empty set.
pub(super) fn evaluate(
    w: &Weights,
    x: &Tensor,
    y: &Tensor,
    should_stop: &dyn Fn() -> bool,
) -> Result<(f64, f64), TrainError> {
    let n = y.dims()[0];
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let chunk = eval_chunk(w.arch());
    let (mut loss_sum, mut wrong) = (0.0f64, 0.0f64);
    for start in (0..n).step_by(chunk) {
        if should_stop() {
            return Err(TrainError::Interrupted);
        }
        let len = chunk.min(n - start);
        let (xs, ys) = (x.narrow(0, start, len)?, y.narrow(0, start, len)?);
        let logits = w.forward(&xs)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &ys)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * len as f64;
        wrong += misclassified(&logits, &ys)?;
    }
    Ok((loss_sum / n as f64, wrong / n as f64))
}
