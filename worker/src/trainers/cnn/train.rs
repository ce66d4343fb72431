//! The cnn trainer's one entry point: a plain run, or k-fold
//! cross-validation of the same run.

use hps_common::EpochStat;

use super::config::Job;
use super::folds;
use super::outcome::{CnnOutcome, EpochControl, TrainError};
use super::split;

/// Train the seed's `build_cnn(cfg.nf)` on `data`.
///
/// Per epoch: shuffle the first `train_size` training examples, train in
/// minibatches of `batch_size` (last partial batch included), then evaluate
/// without dropout on the last `val_size` training examples and call
/// `on_epoch`. Test metrics are computed once at the end, from snapshots of
/// the weights at the best and at the last epoch, on the first `test_size`
/// test examples (0 = all).
///
/// `should_stop` is polled before every batch and every evaluation chunk;
/// when it returns true the function returns [`TrainError::Interrupted`].
///
/// A non-finite batch loss (or validation loss) stops training at once with
/// status `Diverged`; the curve keeps the epochs evaluated so far.
///
/// Time limit: elapsed *training* time (evaluation excluded) is checked
/// after every batch. When it reaches `time_limit_s` at an epoch boundary,
/// training stops after that epoch's evaluation. When it is reached in the
/// middle of an epoch, the rest of the epoch is skipped, the partial epoch
/// is evaluated and recorded as an ordinary curve entry (its train_loss is
/// the mean over the batches done) and counts in `epochs_completed`. Either
/// way `stopped_by_time_limit` is set and the status is `Complete` (a limit
/// reached just as the final epoch ends is a normal finish).
///
/// With `job.checkpoint_dir` (created if missing): if it
/// holds a checkpoint written by a run of the same config (a fingerprint of
/// every [`CnnConfig`] field except `time_limit_s`, plus the dataset's
/// train and test lengths), training resumes after its last epoch. A
/// checkpoint from a different config, or an unreadable or corrupt one, is
/// ignored with a `tracing::warn!` naming the file, and training starts from
/// scratch (it never fails the run).
///
/// After every completed epoch (a time-limited partial epoch and an epoch
/// whose validation loss diverged included) the full state is saved there,
/// *before* `on_epoch` is called for that epoch: when `on_epoch` sees epoch
/// `e`, the checkpoint of epoch `e` is durable. See the `checkpoint` module
/// for the format and the atomic-write protocol. A failure to write it gives
/// [`TrainError::Checkpoint`].
///
/// When `should_stop` fires in the middle of an epoch (between batches, or
/// during the epoch's validation pass), the progress since the last epoch
/// checkpoint is saved as a *mid-epoch checkpoint* before
/// [`TrainError::Interrupted`] is returned (nothing is written when there
/// is no progress since the last save, e.g. at the start of an epoch). A
/// resumed run continues with the next batch of that epoch. A mid-epoch
/// checkpoint that is unusable is ignored with a `tracing::warn!` and
/// training resumes after the last completed epoch (or from scratch).
/// Interruptions during the final test evaluation lose nothing: the last
/// epoch's checkpoint is already in place.
///
/// On the CPU a run interrupted (by `should_stop`, or killed) and resumed
/// gives the same curve (timings aside), best epoch, steps and final
/// metrics as an uninterrupted run, wherever the interruption fell. Elapsed training time carries over, so
/// `time_limit_s` bounds the total over all resumptions; a run resumed with
/// a limit already reached (the limit is not in the fingerprint) stops at
/// once, as it would have at that epoch boundary.
///
/// One writer per directory at a time is assumed: stale `.tmp.` files left
/// by a crashed writer are removed at start.
///
/// After every epoch `on_epoch` decides whether training goes on, stops
/// there or pauses ([`EpochControl`]). With `folds` > 1 each fold is such
/// a run (see the `folds` module). This is the trainer's one entry point.
pub fn train(
    job: &Job<'_>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
) -> Result<CnnOutcome, TrainError> {
    split::check_sizes(job.cfg, job.data, job.device)?;
    if job.cfg.hyper.folds > 1 {
        return folds::train_folds(job, on_epoch);
    }
    split::train_plain(job, on_epoch)
}
