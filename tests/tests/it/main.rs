//! The integration tests: the real `hps-master` and `hps-worker` binaries
//! on temp study directories. One test binary with a module per topic (as
//! ripgrep and cargo do), so the workspace links one executable, not one
//! per file. Run one topic with `cargo test -p hps-tests --test it chaos::`.
//! The launch helpers live in `tests/src/lib.rs` (`hps_tests`).

mod architecture;
mod browser;
mod careless;
mod chaos;
mod compat;
mod e2e;
mod failfast;
mod faults;
mod fuse;
mod gp;
mod gpu_check;
mod hardening;
mod hostile;
mod idle;
mod k8s;
mod links;
mod master_cli;
mod masters;
mod presets;
mod pruning;
mod report;
mod samplers_ux;
mod scale;
mod slurm;
mod sshfs;
mod stops;
mod terminal;
mod transfer;
mod worker_cli;
