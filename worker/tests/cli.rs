//! The `hps-worker` binary of this package, run as a user would.
//!
//! This file also has a second job: cargo builds a package's binaries only
//! when one of its integration tests is selected, so this test makes
//! `cargo test --workspace` build `hps-worker` before the end-to-end tests
//! in `tests/` (which start it) run.

use std::process::Command;

#[test]
fn help_lists_the_device_and_slot_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_hps-worker"))
        .arg("--help")
        .output()
        .expect("run hps-worker --help");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--device", "--id", "--data", "--poll", "--slots", "--once"] {
        assert!(text.contains(flag), "`{flag}` missing from --help:\n{text}");
    }
}
