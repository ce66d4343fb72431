//! The built-in CNN trainer: the seed's Lasagne `build_cnn(nf)` by default,
//! with every knob of the exercises as a hyperparameter (architecture,
//! optimiser, schedule, augmentation, early stopping, k-fold; see
//! [`hps_common::cnn::CnnHyper`]), trained on an MNIST-format data set
//! (Fashion-MNIST by default) on candle.
//!
//! Everything random comes from ChaCha8 streams derived from the trial
//! seed, so the same [`CnnConfig`] on the CPU gives a bit-identical curve
//! (we also observed identical curves with 1 and 2 threads).
//!
//! # Sources of run-to-run randomness
//!
//! * Initial weights: `ChaCha8(seed, stream 1)`, drawn once before epoch 1.
//! * The shuffle of epoch `e`: `ChaCha8(seed, stream 2<<32 | e)`, applied to
//!   the identity permutation of the `train_size` examples (so no state
//!   carries over from one epoch to the next).
//! * The dropout masks of epoch `e`: `ChaCha8(seed, stream 3<<32 | e)`.
//! * The augmentation of batch `b` of epoch `e`:
//!   `ChaCha8(seed, stream 4<<56 | e<<24 | b)` (only with `aug_*` on).
//! * Wall-clock time: only the timing fields (`elapsed_s`, `epoch_time_s`)
//!   and, with `time_limit_s`, where training stops.
//!
//! Because the random streams are a function of `(seed, epoch)`, an epoch
//! checkpoint (see [`train`]) needs no RNG state: the
//! weights, the optimizer's velocities and the bookkeeping are enough for a
//! resumed run to continue bit-identically on the CPU. A mid-epoch
//! checkpoint adds the position in the epoch: the next batch (the shuffle
//! is re-derived), the dropout stream's word position and the epoch's
//! running loss sum. (GPU kernels need
//! not be deterministic, so there a resumed run is merely equivalent.)
//!
//! On the CPU the conv stages use our own kernels (`cpu_ops`: im2col + one
//! gemm, fused bias+ReLU+max-pool); on other devices candle's `conv2d` and a
//! max-pool built from `max` reductions (candle 0.11's `max_pool2d` backward
//! pass returns a quarter of the true gradient). A test checks that both
//! paths give the same logits and gradients. Call [`init_cpu_threads`] at
//! start-up.

mod augment;
mod checkpoint;
mod config;
mod cpu_ops;
mod data;
mod eval;
mod folds;
mod model;
mod optim;
mod outcome;
mod rng;
mod run;
mod split;
mod train;
mod trainer;
pub mod transfer;

pub use augment::Augment;
pub use config::{collapsed, CnnConfig, InvalidParams, Job};
pub use cpu_ops::init_cpu_threads;
pub use data::{write_idx_dir, DataError, Dataset, DEFAULT_DATA_DIR};
pub use model::{Arch, ArchError};
pub use outcome::{CnnOutcome, EpochControl, TrainError};
pub use split::checkpoint_epochs;
pub use train::train;
pub use trainer::CnnTrainer;

#[cfg(test)]
mod tests;
