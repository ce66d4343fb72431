//! The `hps-master` binary of this package, run as a user would.
//!
//! This file also has a second job: cargo builds a package's binaries only
//! when one of its integration tests is selected, so this test makes
//! `cargo test --workspace` build `hps-master` before the end-to-end tests
//! in `tests/` (which start it) run.

use std::process::Command;

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_hps-master"))
        .arg("--help")
        .output()
        .expect("run hps-master --help");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["init", "run", "status", "best", "export"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` missing from --help:\n{text}"
        );
    }
}
