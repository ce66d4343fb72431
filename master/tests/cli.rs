//! The hps-master command line: errors a user sees.

use std::process::Command;

fn master() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hps-master"))
}

#[test]
fn init_rejects_a_bad_study_naming_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.json");
    std::fs::write(
        &f,
        r#"{"format_version":1,"name":"x","space":{"lr":{"type":"float","low":-1,"high":1,"log":true}},
            "objective":{"metric":"val_error","direction":"minimize"},
            "sampler":{"kind":"random","seed":0},"budget":{"trials":3},"trainer":{"kind":"cnn"}}"#,
    )
    .unwrap();
    let out = master()
        .args(["init"])
        .arg(tmp.path().join("s"))
        .arg("--study")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("space.lr.low") && err.contains("log-scale"),
        "{err}"
    );
    assert!(
        !tmp.path().join("s").join("study.json").exists(),
        "nothing created for a bad study"
    );
}

#[test]
fn init_from_preset_and_refuse_a_second_init() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s5");
    let out = master()
        .arg("init")
        .arg(&dir)
        .args(["--preset", "s5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 trials"));
    let out = master()
        .arg("init")
        .arg(&dir)
        .args(["--preset", "s5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a study"));
}

#[test]
fn unknown_preset_lists_the_presets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = master()
        .arg("init")
        .arg(tmp.path().join("x"))
        .args(["--preset", "s9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s9") && err.contains("quickstart"), "{err}");
}

#[test]
fn commands_on_a_non_study_say_how_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["run", "status", "best", "export"] {
        let out = master().arg(cmd).arg(tmp.path()).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not an hps study directory") && err.contains("hps-master init"),
            "{cmd}: {err}"
        );
    }
}
