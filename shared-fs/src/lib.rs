//! The hps file protocol: how a master and its workers talk through one
//! shared directory. The normative description is `docs/protocol.md`; this
//! crate is its implementation.
//!
//! Principles (see the spec for the why):
//! - every file is written with [`atomic::write_atomic`] (temp file, fsync,
//!   rename, fsync the directory), so a reader never sees half a file;
//! - a setting is claimed by `rename(2)`, which exactly one worker wins, and
//!   a result is published with `link(2)`, which exactly one writer wins;
//! - nothing uses `flock`/`fcntl`, which are unreliable or hang on NFS;
//! - watcher events are wake-up hints, a periodic rescan is the truth.

pub mod atomic;
pub mod beat;
pub mod dir;
pub mod error;
pub mod fstype;
pub mod host;
pub mod layout;
pub mod links;
pub mod logging;
pub mod names;
pub mod read;
pub mod record;
pub mod shutdown;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tolerant;
pub mod watch;

pub use atomic::{write_atomic, write_atomic_with, write_new};
pub use beat::{watch_beats, BeatId, Beating, Periodic, Watched};
pub use dir::{Claim, StudyDir, Sub, TakenClaim};
pub use error::{Damage, FsError};
pub use fstype::{detect_remote_fs, RemoteFs};
pub use host::hostname;
pub use layout::{shard_of, Layout};
pub use record::StudyRecord;
pub use watch::{Waker, WatchMode};
