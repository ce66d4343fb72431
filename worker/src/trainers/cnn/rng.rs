//! The run's random streams: ChaCha8 streams derived from the trial seed
//! (see the module doc of the cnn trainer), so no RNG state needs a
//! checkpoint.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub(super) fn rng_stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Stream of the initial weights.
pub(super) const INIT_STREAM: u64 = 1;
/// Base of the per-epoch shuffle streams (`| epoch`).
pub(super) const SHUFFLE_STREAM: u64 = 2 << 32;
/// Base of the per-epoch dropout streams (`| epoch`).
pub(super) const DROPOUT_STREAM: u64 = 3 << 32;
/// Base of the per-batch augmentation streams (`| epoch << 24 | batch`).
pub(super) const AUG_STREAM: u64 = 4 << 56;

/// The RNG of one batch (augmentation): no state to checkpoint.
pub(super) fn batch_rng(seed: u64, kind: u64, epoch: u32, batch: usize) -> ChaCha8Rng {
    rng_stream(
        seed,
        kind | ((epoch as u64) << 24) | (batch as u64 & 0xFF_FFFF),
    )
}

/// The RNG of one kind (`SHUFFLE_STREAM`, `DROPOUT_STREAM`) for one epoch.
pub(super) fn epoch_rng(seed: u64, kind: u64, epoch: u32) -> ChaCha8Rng {
    rng_stream(seed, kind | epoch as u64)
}
