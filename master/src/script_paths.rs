//! `init` checks the exec trainer's script paths, so that a study whose
//! script cannot be found is refused at once instead of failing every
//! trial with "can't open file".
//!
//! The rule (docs/study-file.md, exec section): a *script path* in
//! `trainer.argv` is the program when it holds a `/` (`./train.sh`,
//! `bin/train`), or an argument ending in a script suffix ([`SUFFIXES`]),
//! without placeholders or spaces. A relative one is looked up
//!
//! 1. in the study file's directory, like any path in a configuration
//!    file: found there, it is recorded absolute in `study.json`, so the
//!    study runs wherever its directory is created;
//! 2. else where the command will run (`trainer.workdir`, relative to the
//!    new study directory, by default the study directory itself), as
//!    before this rule: found there, it is kept as written.
//!
//! A script path found in neither (or an absolute one that does not exist)
//! is refused, naming the field and both places looked in. A working
//! directory with placeholders cannot be known at init, so step 2 is then
//! skipped and nothing is refused.

use std::path::{Component, Path, PathBuf};

use hps_common::exec::{placeholders, ExecSpec};
use hps_common::{FieldError, Study, TrainerSpec};

/// Suffixes of the arguments taken for scripts.
pub const SUFFIXES: &[&str] = &["py", "sh", "bash", "R", "jl", "pl", "rb", "js", "lua"];

/// Resolve and check the script paths of `study` (an exec study) created
/// from `study_file` in `study_dir`; other trainers are left alone.
/// `study_file` is `None` for a built-in preset.
pub fn resolve(
    study: &mut Study,
    study_file: Option<&Path>,
    study_dir: &Path,
) -> Result<(), FieldError> {
    let TrainerSpec::Exec(spec) = &mut study.trainer else {
        return Ok(());
    };
    let here = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let file_dir = study_file.and_then(|f| here(f).parent().map(Path::to_path_buf));
    let workdir = command_dir(spec, &here(study_dir));
    for i in 0..spec.argv.len() {
        let arg = &spec.argv[i];
        if !is_script(i, arg) {
            continue;
        }
        let path = Path::new(arg);
        let field = format!("trainer.argv[{i}]");
        if path.is_absolute() {
            if !path.is_file() {
                return Err(FieldError::new(
                    field,
                    format!("the script `{arg}` does not exist"),
                ));
            }
            continue;
        }
        if let Some(found) = file_dir.as_ref().map(|d| clean_join(d, path)) {
            if found.is_file() {
                spec.argv[i] = found.to_string_lossy().into_owned();
                continue;
            }
        }
        let Some(cwd) = &workdir else {
            continue; // the working directory depends on the trial
        };
        if lexical(&cwd.join(path)).is_file() {
            continue;
        }
        let looked = match &file_dir {
            Some(d) => format!(
                "in the study file's directory `{}` (where relative script paths are read \
                 from), nor in the command's working directory `{}`",
                d.display(),
                cwd.display()
            ),
            None => format!("in the command's working directory `{}`", cwd.display()),
        };
        return Err(FieldError::new(
            field,
            format!(
                "the script `{arg}` is not found {looked}; put the path relative to the study \
                 file, or give an absolute one"
            ),
        ));
    }
    Ok(())
}

/// Whether argv element `i` is a script path (see the module doc).
fn is_script(i: usize, arg: &str) -> bool {
    // A shell snippet (`sh -c "cd x && python3 t.py"`) is not a path.
    if arg.is_empty()
        || arg.starts_with('-')
        || arg.contains(['{', '}'])
        || arg.contains(char::is_whitespace)
    {
        return false;
    }
    if i == 0 {
        return arg.contains('/');
    }
    Path::new(arg)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SUFFIXES.contains(&e))
}

/// Where the command will run: `trainer.workdir` (relative to the study
/// directory) or the study directory; `None` when it has placeholders.
fn command_dir(spec: &ExecSpec, study_dir: &Path) -> Option<PathBuf> {
    match &spec.workdir {
        None => Some(study_dir.to_path_buf()),
        Some(w) if placeholders(w).map_or(true, |p| !p.is_empty()) || w.contains("{{") => None,
        Some(w) => Some(lexical(&study_dir.join(w))),
    }
}

/// `dir` joined with `rel`, without `.` components.
fn clean_join(dir: &Path, rel: &Path) -> PathBuf {
    let mut out = dir.to_path_buf();
    out.extend(rel.components().filter(|c| *c != Component::CurDir));
    out
}

/// `p` with `.` and `..` taken out lexically: the study directory does not
/// exist yet at init, so the kernel cannot resolve `new-study/../..`.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_study(argv: &[&str], workdir: Option<&str>) -> Study {
        let text = serde_json::json!({
            "format_version": 1, "name": "x",
            "space": {"lr": {"type": "float", "low": 0.1, "high": 1}},
            "objective": {"metric": "val_error", "direction": "minimize"},
            "sampler": {"kind": "random", "seed": 0}, "budget": {"trials": 2},
            "trainer": {"kind": "exec", "argv": argv, "workdir": workdir}
        });
        hps_common::parse_versioned(Path::new("s.json"), &text.to_string()).unwrap()
    }

    fn argv(s: &Study) -> Vec<String> {
        match &s.trainer {
            TrainerSpec::Exec(e) => e.argv.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_script_next_to_the_study_file_is_recorded_absolute() {
        let tmp = tempfile::tempdir().unwrap();
        let files = tmp.path().join("files");
        std::fs::create_dir_all(files.join("bin")).unwrap();
        std::fs::write(files.join("train.py"), "").unwrap();
        std::fs::write(files.join("bin/run"), "").unwrap();
        let mut s = exec_study(&["python3", "./train.py", "--lr", "{lr}", "data.csv"], None);
        let file = files.join("study.json");
        resolve(&mut s, Some(&file), &tmp.path().join("runs/s")).unwrap();
        let want = files.join("train.py").to_string_lossy().into_owned();
        assert_eq!(argv(&s), ["python3", &want, "--lr", "{lr}", "data.csv"]);
        let mut s = exec_study(&["bin/run"], None);
        resolve(&mut s, Some(&file), &tmp.path().join("runs/s")).unwrap();
        assert_eq!(argv(&s), [files.join("bin/run").to_string_lossy()]);
    }

    #[test]
    fn a_copied_example_whose_script_is_elsewhere_is_refused_naming_both_places() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = exec_study(&["python3", "../../deploy/examples/train_logreg.py"], None);
        let file = tmp.path().join("mine/exec-logreg.json");
        let e = resolve(&mut s, Some(&file), &tmp.path().join("runs/s")).unwrap_err();
        assert_eq!(e.field, "trainer.argv[1]");
        let mine = tmp.path().join("mine");
        let run_dir = tmp.path().join("runs/s");
        for part in [
            "../../deploy/examples/train_logreg.py",
            &*mine.to_string_lossy(),
            &*run_dir.to_string_lossy(),
        ] {
            assert!(e.message.contains(part), "{part}: {e}");
        }
    }

    #[test]
    fn a_script_found_where_the_command_runs_is_kept_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("repo/deploy")).unwrap();
        std::fs::write(tmp.path().join("repo/deploy/t.py"), "").unwrap();
        let file = tmp.path().join("elsewhere/s.json");
        let study_dir = tmp.path().join("repo/runs/s");
        let mut s = exec_study(&["python3", "../../deploy/t.py"], None);
        resolve(&mut s, Some(&file), &study_dir).unwrap();
        assert_eq!(argv(&s)[1], "../../deploy/t.py");
        // The same through trainer.workdir; unknown with a placeholder.
        let mut s = exec_study(&["python3", "deploy/t.py"], Some("../.."));
        resolve(&mut s, Some(&file), &study_dir).unwrap();
        let mut s = exec_study(&["python3", "nowhere.py"], Some("w/{lr}"));
        resolve(&mut s, Some(&file), &study_dir).unwrap();
        let mut s = exec_study(&["python3", "nowhere.py"], Some("w"));
        assert!(resolve(&mut s, Some(&file), &study_dir).is_err());
    }

    #[test]
    fn words_flags_placeholders_and_programs_on_the_path_are_not_scripts() {
        for (i, a) in [
            (0, "python3"),
            (1, "train"),
            (1, "--script=x.py"),
            (1, "{lr}.py"),
            (1, "/data/set"),
            (2, "cd x && python3 t.py"),
        ] {
            assert!(!is_script(i, a), "{a}");
        }
        for (i, a) in [(0, "./run"), (1, "x.py"), (1, "/abs/run.sh"), (1, "a/b.R")] {
            assert!(is_script(i, a), "{a}");
        }
        let mut s = exec_study(&["python3", "/no/such/train.py"], None);
        let e = resolve(&mut s, None, Path::new("/tmp/x")).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
    }
}
