//! How a study directory lays out its per-trial files: flat (directory
//! format 1, `results/t012345.json`) or sharded (directory format 2,
//! `results/t012/t012345.json`), and the offline migration from one to
//! the other.
//!
//! The folders that grow with the study ([`Sub::is_sharded`]: `settings/`,
//! `results/`, `logs/`, and `weights/`) hold one sub-folder per 1,000
//! trials in format 2, so that no folder of a 100,000-trial study holds
//! more than about 1,000 entries, which a parallel filesystem (Lustre,
//! GPFS) lists quickly. The folders bounded by the trials in flight
//! (`pending/`, `running/`, `progress/`, ...) stay flat.
//!
//! The layout is fixed per directory and recorded in it: a directory never
//! mixes layouts, or one result could exist under two names and
//! exactly-once acceptance would be lost. The record is the
//! `format_version` of `study.recorded.json`: 2 for the sharded layout, 1
//! (or no record, a directory of an older release) for the flat one.
//! Every master and worker of every release reads that file at start, and
//! releases before format 2 refuse a `format_version` they do not know,
//! so an older binary never writes flat files into a sharded directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hps_common::{parse_versioned, to_pretty_json, validate_id, Study};

use crate::atomic::write_atomic;
use crate::error::{FsError, Result};
use crate::names::{Sub, RECORDED_STUDY_FILE, STUDY_FILE, WEIGHTS_DIR};
use crate::read::{check_study_file, file_kind, is_not_found, read_json, read_text};

/// The directory format of the sharded layout (the `format_version` of its
/// `study.recorded.json`).
pub const SHARDED_FORMAT: u32 = 2;

/// Present while `hps-master migrate` converts a directory; every other
/// command refuses to open a directory that has it.
pub const MIGRATING_FILE: &str = "migrating";

/// The shard of ids that are not `t` followed by at least four digits.
pub const OTHER_SHARD: &str = "other";

/// The per-trial folders that grow with the study and are sharded in
/// directory format 2, with the extension of their files. `weights/` is
/// not a [`Sub`] (it is created on first use) but grows the same way.
pub const SHARDED_FOLDERS: [(&str, &str); 4] = [
    ("settings", ".json"),
    ("results", ".json"),
    ("logs", ".log"),
    (WEIGHTS_DIR, ".safetensors"),
];

/// How the per-trial folders of a study directory are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Directory format 1: `results/<id>.json`.
    Flat,
    /// Directory format 2: `results/<shard>/<id>.json` (see [`shard_of`]).
    Sharded,
}

impl Layout {
    /// The directory format: 1 or 2.
    pub fn format(self) -> u32 {
        match self {
            Layout::Flat => 1,
            Layout::Sharded => SHARDED_FORMAT,
        }
    }
}

/// The shard (sub-folder) that holds trial `id`'s files in a sharded
/// folder: the id minus its last three digits when it is `t` followed by at
/// least four digits (`t012345` → `t012`, `t1234567` → `t1234`), so that a
/// shard holds at most 1,000 trials; [`OTHER_SHARD`] for any other id (the
/// master names every trial `t` + six or more digits, so only files put
/// there by hand land there). The one place that decides it.
pub fn shard_of(id: &str) -> &str {
    let b = id.as_bytes();
    if b.len() >= 5 && b[0] == b't' && b[1..].iter().all(u8::is_ascii_digit) {
        &id[..id.len() - 3]
    } else {
        OTHER_SHARD
    }
}

/// Whether `name` can be a shard made by [`shard_of`].
pub fn is_shard_name(name: &str) -> bool {
    let b = name.as_bytes();
    name == OTHER_SHARD || (b.len() >= 2 && b[0] == b't' && b[1..].iter().all(u8::is_ascii_digit))
}

/// The `format_version` of `study.recorded.json`: `Ok(None)` when there is
/// none, `Err` with the reason when it cannot be read.
fn recorded_format(root: &Path) -> std::result::Result<Option<u64>, String> {
    #[derive(serde::Deserialize)]
    struct Head {
        format_version: Option<serde_json::Value>,
    }
    match read_text(&root.join(RECORDED_STUDY_FILE)) {
        Ok(text) => match serde_json::from_str::<Head>(&text) {
            Ok(h) => Ok(h.format_version.and_then(|v| v.as_u64())),
            Err(e) => Err(e.to_string()),
        },
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a sharded folder of `root` already holds the first shard
/// (`settings/t000/`, `results/t000/`): one `stat` each.
fn has_shards(root: &Path) -> bool {
    ["settings", "results"].iter().any(|sub| {
        fs::symlink_metadata(root.join(sub).join(shard_of("t000000"))).is_ok_and(|m| m.is_dir())
    })
}

/// The layout of the study directory at `root`, as recorded (see the
/// module doc). Refuses a directory whose migration did not finish, and
/// one whose record says flat while sharded folders exist (an older hps
/// replaced the record, or a migration was cut short before it wrote it):
/// `hps-master migrate` repairs both.
pub fn detect(root: &Path) -> Result<Layout> {
    if fs::symlink_metadata(root.join(MIGRATING_FILE)).is_ok() {
        return Err(FsError::MigrationUnfinished {
            dir: root.to_path_buf(),
        });
    }
    match recorded_format(root) {
        Ok(Some(v)) if v == SHARDED_FORMAT as u64 => Ok(Layout::Sharded),
        Ok(Some(1)) if has_shards(root) => Err(FsError::MixedLayout {
            dir: root.to_path_buf(),
        }),
        // No record, or one that cannot be read (check_study reports it):
        // the folders say which layout the directory has.
        Ok(None) | Err(_) if has_shards(root) => Ok(Layout::Sharded),
        _ => Ok(Layout::Flat),
    }
}

/// Read `study.recorded.json` as a [`Study`], whichever directory format
/// it records (`Ok(None)` when there is none).
pub(crate) fn read_record(path: &Path) -> Result<Option<Study>> {
    let text = match read_text(path) {
        Ok(t) => t,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut v) if v.get("format_version").and_then(|f| f.as_u64()) == Some(2) => {
            // The study schema is version 1 in both directory formats.
            v["format_version"] = serde_json::Value::from(1);
            v.to_string()
        }
        _ => text,
    };
    Ok(Some(parse_versioned(path, &text)?))
}

/// `study` as the text of `study.recorded.json` for a directory of
/// `layout`: the study file, with `format_version` the directory format.
pub(crate) fn record_text(study: &Study, layout: Layout) -> Vec<u8> {
    let text = to_pretty_json(study);
    if layout == Layout::Flat {
        return text;
    }
    let s = String::from_utf8(text).expect("JSON is UTF-8");
    // `format_version` is the study's first field.
    let from = format!("\"format_version\": {}", study.format_version);
    let to = format!("\"format_version\": {}", layout.format());
    s.replacen(&from, &to, 1).into_bytes()
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Files moved into their shard.
    pub moved: usize,
    /// Flat files whose sharded copy already existed (written by an older
    /// hps after the directory became format 2), moved to `quarantine/`.
    pub quarantined: Vec<PathBuf>,
    /// The directory was format 2 before, with nothing to move.
    pub already: bool,
}

/// Convert the study directory at `root` to the sharded layout (directory
/// format 2), offline: the caller makes sure that no master or worker
/// runs (`hps-master migrate` holds the master lease and checks the
/// heartbeats).
///
/// 1. `migrating` is created: every hps of this release refuses the
///    directory from now until step 4.
/// 2. `study.recorded.json` is rewritten with `format_version` 2 (from
///    `study.json` when there is no record): older releases refuse it.
/// 3. Every flat per-trial file is moved into its shard with `rename(2)`.
/// 4. `migrating` is removed.
///
/// A crash anywhere leaves each file in one place (a `rename` is atomic)
/// and a directory every command refuses until `migrate` is run again,
/// which picks up where it stopped: every step can be repeated.
pub fn migrate(root: &Path) -> Result<Migrated> {
    check_study_file(root)?;
    let marker = root.join(MIGRATING_FILE);
    let was_sharded = fs::symlink_metadata(&marker).is_err()
        && recorded_format(root) == Ok(Some(SHARDED_FORMAT as u64));
    // The record first: a study the record cannot be read of is not migrated.
    let record = root.join(RECORDED_STUDY_FILE);
    let study = match read_record(&record) {
        Ok(Some(s)) => s,
        Ok(None) => read_json::<Study>(&root.join(STUDY_FILE))?,
        Err(e) => {
            return Err(FsError::UnreadableRecord {
                path: record,
                dir: root.to_path_buf(),
                source: Box::new(e),
            })
        }
    };
    write_atomic(
        &marker,
        format!(
            "hps-master migrate is moving this study directory to the sharded layout \
             (directory format 2). If no migration is running, run `hps-master migrate {}` \
             again to finish it.\n",
            root.display()
        )
        .as_bytes(),
    )?;
    write_atomic(&record, &record_text(&study, Layout::Sharded))?;
    let mut out = Migrated::default();
    let quarantine = root.join(Sub::Quarantine.name());
    for (folder, ext) in SHARDED_FOLDERS {
        let dir = root.join(folder);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FsError::io("list", &dir, e)),
        };
        let mut touched = std::collections::BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Temp files and shards stay; so does what is not a trial's
            // file (local.sh's `logs/master.out`).
            let Some(id) = name.strip_suffix(ext) else {
                continue;
            };
            if name.starts_with('.') || validate_id("trial id", id).is_err() {
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let shard = dir.join(shard_of(id));
            make_dir(&shard)?;
            let to = shard.join(name);
            let from = entry.path();
            if fs::symlink_metadata(&to).is_ok() {
                // Both: an older hps wrote the flat one after the directory
                // became format 2. The sharded one came first and stays.
                fs::create_dir_all(&quarantine)
                    .map_err(|e| FsError::io("create directory", &quarantine, e))?;
                let aside =
                    quarantine.join(format!("{folder}-{name}-migrate-{}", std::process::id()));
                fs::rename(&from, &aside).map_err(|e| FsError::io("quarantine", &from, e))?;
                out.quarantined.push(aside);
            } else {
                fs::rename(&from, &to).map_err(|e| FsError::io("move", &from, e))?;
                out.moved += 1;
            }
            touched.insert(shard);
        }
        for d in touched.iter().chain([&dir]) {
            crate::atomic::sync_dir(d)?;
        }
    }
    fs::remove_file(&marker).map_err(|e| FsError::io("remove", &marker, e))?;
    crate::atomic::sync_dir(root)?;
    out.already = was_sharded && out.moved == 0 && out.quarantined.is_empty();
    Ok(out)
}

/// Create the directory `dir` (a shard) if missing, and make its name
/// durable (fsync its parent) when it was created.
pub(crate) fn make_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                crate::atomic::sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // hps creates its shards itself: a link there (`results/t000
            // -> /elsewhere`) would put results and logs outside the study.
            let meta = fs::symlink_metadata(dir).map_err(|e| FsError::io("inspect", dir, e))?;
            if meta.is_dir() {
                return Ok(());
            }
            let what = if meta.file_type().is_symlink() {
                match fs::read_link(dir) {
                    Ok(to) => format!("a symbolic link to `{}`", to.display()),
                    Err(_) => "a symbolic link".to_string(),
                }
            } else {
                file_kind(&meta).to_string()
            };
            Err(FsError::ForeignFolder {
                path: dir.to_path_buf(),
                what,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The folder itself is missing (tidied up by hand).
            fs::create_dir_all(dir).map_err(|e| FsError::io("create directory", dir, e))
        }
        Err(e) => Err(FsError::io("create directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_is_the_id_minus_its_last_three_digits() {
        assert_eq!(shard_of("t000000"), "t000");
        assert_eq!(shard_of("t000999"), "t000");
        assert_eq!(shard_of("t001000"), "t001");
        assert_eq!(shard_of("t012345"), "t012");
        assert_eq!(shard_of("t999999"), "t999");
        assert_eq!(shard_of("t1234567"), "t1234");
        assert_eq!(shard_of("t1000"), "t1");
        // Anything else, hand-written ids included, goes to one shard.
        for id in [
            "t123", "t", "trial-7", "t00001a", "x000001", "T000001", "other",
        ] {
            assert_eq!(shard_of(id), OTHER_SHARD, "{id}");
        }
        for id in ["t000000", "t1234567", "t1000", "x"] {
            assert!(is_shard_name(shard_of(id)), "{id}");
        }
        assert!(!is_shard_name("t12a") && !is_shard_name("t") && !is_shard_name(".t000"));
    }

    use crate::StudyDir;
    use hps_common::{TrialResult, TrialSetting};

    fn setting(i: u64) -> TrialSetting {
        TrialSetting::new(i, Default::default(), 1, "random")
    }

    fn fill(dir: &StudyDir, ids: &[u64]) {
        for &i in ids {
            let s = setting(i);
            assert!(dir.record_setting(&s).unwrap());
            assert!(dir
                .submit_result(&TrialResult::for_setting(&s, "w", "cpu"))
                .unwrap());
            use std::io::Write;
            writeln!(dir.open_log(&s.trial_id).unwrap(), "# trial").unwrap();
            dir.write_weights(&s.trial_id, b"w").unwrap();
        }
    }

    fn rel(dir: &StudyDir, p: PathBuf) -> String {
        p.strip_prefix(dir.root()).unwrap().display().to_string()
    }

    #[test]
    fn a_new_study_is_sharded_and_records_format_2_which_older_releases_refuse() {
        let tmp = tempfile::tempdir().unwrap();
        let study = crate::testing::branin_study(5);
        let dir = StudyDir::init(tmp.path(), &study).unwrap();
        assert_eq!(dir.layout(), Layout::Sharded);
        fill(&dir, &[0, 1, 1234]);
        assert_eq!(
            rel(&dir, dir.result_path("t001234").unwrap()),
            "results/t001/t001234.json"
        );
        assert_eq!(
            rel(&dir, dir.setting_path("t000001").unwrap()),
            "settings/t000/t000001.json"
        );
        assert_eq!(
            rel(&dir, dir.log_path("t000001").unwrap()),
            "logs/t000/t000001.log"
        );
        assert_eq!(
            rel(&dir, dir.weights_path("t001234").unwrap()),
            "weights/t001/t001234.safetensors"
        );
        for p in [
            "results/t001/t001234.json",
            "logs/t001/t001234.log",
            "weights/t000/t000000.safetensors",
        ] {
            assert!(tmp.path().join(p).is_file(), "{p}");
        }
        // Flat folders stay flat.
        dir.publish(&setting(7)).unwrap();
        assert!(tmp.path().join("pending/t000007.json").is_file());
        assert_eq!(
            dir.list(Sub::Results).unwrap(),
            ["t000000", "t000001", "t001234"]
        );
        assert_eq!(dir.shards(Sub::Results).unwrap(), ["t000", "t001"]);
        // A file in a shard that is not its own, or beside the shards, is
        // not listed: hps would look for it elsewhere.
        fs::copy(
            dir.result_path("t000000").unwrap(),
            tmp.path().join("results/t001/t000000.json"),
        )
        .unwrap();
        fs::write(tmp.path().join("results/t000005.json"), "{}").unwrap();
        assert_eq!(dir.list(Sub::Results).unwrap().len(), 3);
        // Reopened, the layout is the recorded one.
        let again = StudyDir::open(tmp.path()).unwrap();
        assert_eq!(again.layout(), Layout::Sharded);
        assert_eq!(again.read_result("t001234").unwrap().trial_id, "t001234");
        assert_eq!(
            again.check_study(&study, false).unwrap(),
            crate::StudyRecord::Same
        );
        // Recording the study again (an accepted edit) keeps the format.
        again.record_study(&study).unwrap();
        assert_eq!(
            StudyDir::open(tmp.path()).unwrap().layout(),
            Layout::Sharded
        );
        // What a release before format 2 does with the record: refuse it.
        let record = tmp.path().join(RECORDED_STUDY_FILE);
        let text = fs::read_to_string(&record).unwrap();
        assert!(text.contains("\"format_version\": 2"), "{text}");
        let e = parse_versioned::<Study>(&record, &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported version 2"), "{e}");
        // The temp sweep reaches into shards.
        let tmpfile = tmp.path().join("results/t001/.tmp.t001999.json.1.2.3");
        fs::write(&tmpfile, "{").unwrap();
        assert_eq!(again.sweep_temp_files(std::time::Duration::ZERO), 1);
        assert!(!tmpfile.exists());
    }

    #[test]
    fn the_layout_is_read_from_the_record_and_a_mixed_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let study = crate::testing::branin_study(5);
        let flat = StudyDir::init_with_layout(&tmp.path().join("f"), &study, Layout::Flat).unwrap();
        fill(&flat, &[0, 1]);
        assert!(tmp.path().join("f/results/t000001.json").is_file());
        assert!(tmp.path().join("f/logs/t000001.log").is_file());
        assert!(tmp.path().join("f/weights/t000001.safetensors").is_file());
        assert_eq!(StudyDir::open(flat.root()).unwrap().layout(), Layout::Flat);
        // No record (an older release's directory): the folders decide.
        fs::remove_file(flat.recorded_study_path()).unwrap();
        assert_eq!(StudyDir::open(flat.root()).unwrap().layout(), Layout::Flat);
        let sharded = StudyDir::init(&tmp.path().join("s"), &study).unwrap();
        fill(&sharded, &[0]);
        fs::remove_file(sharded.recorded_study_path()).unwrap();
        assert_eq!(
            StudyDir::open(sharded.root()).unwrap().layout(),
            Layout::Sharded
        );
        // A flat record beside shards (an older master's
        // --accept-study-change): refused, naming the way out.
        fs::write(sharded.recorded_study_path(), to_pretty_json(&study)).unwrap();
        let e = StudyDir::open(sharded.root()).unwrap_err().to_string();
        assert!(
            e.contains("hps-master migrate") && e.contains("format 1"),
            "{e}"
        );
        fs::write(flat.root().join(MIGRATING_FILE), "").unwrap();
        let e = StudyDir::open(flat.root()).unwrap_err().to_string();
        assert!(
            e.contains("did not finish") && e.contains("hps-master migrate"),
            "{e}"
        );
    }

    #[test]
    fn migration_moves_every_file_and_can_be_repeated_after_a_crash() {
        let tmp = tempfile::tempdir().unwrap();
        let study = crate::testing::branin_study(5);
        let root = tmp.path().join("m");
        let flat = StudyDir::init_with_layout(&root, &study, Layout::Flat).unwrap();
        fill(&flat, &[0, 1, 999, 1000, 2500]);
        fs::write(root.join("logs/master.out"), "kept").unwrap();
        fs::write(root.join("results/.tmp.t000003.json.1.2.3"), "{").unwrap();
        let before: Vec<_> = [0, 1, 999, 1000, 2500]
            .iter()
            .map(|&i| flat.read_result(&hps_common::ids::trial_id(i)).unwrap())
            .collect();
        // A crash midway: the marker is there, some files moved, the
        // record not yet rewritten.
        fs::write(root.join(MIGRATING_FILE), "").unwrap();
        fs::create_dir(root.join("results/t000")).unwrap();
        fs::rename(
            root.join("results/t000001.json"),
            root.join("results/t000/t000001.json"),
        )
        .unwrap();
        assert!(
            StudyDir::open(&root).is_err(),
            "refused while the migration is unfinished"
        );
        let m = migrate(&root).unwrap();
        assert_eq!(
            (m.moved, m.quarantined.len(), m.already),
            (5 * 4 - 1, 0, false)
        );
        assert!(!root.join(MIGRATING_FILE).exists());
        let dir = StudyDir::open(&root).unwrap();
        assert_eq!(dir.layout(), Layout::Sharded);
        let after: Vec<_> = before
            .iter()
            .map(|r| dir.read_result(&r.trial_id).unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(dir.list(Sub::Settings).unwrap().len(), 5);
        assert_eq!(dir.shards(Sub::Results).unwrap(), ["t000", "t001", "t002"]);
        assert!(root.join("weights/t002/t002500.safetensors").is_file());
        assert!(root.join("logs/t000/t000999.log").is_file());
        assert_eq!(
            fs::read_to_string(root.join("logs/master.out")).unwrap(),
            "kept"
        );
        assert_eq!(
            dir.check_study(&study, false).unwrap(),
            crate::StudyRecord::Same
        );
        // Again: nothing to do.
        assert!(migrate(&root).unwrap().already);
        // A flat file an older hps wrote beside its sharded copy: the
        // sharded one (the first) stays, the other goes to quarantine/.
        fs::write(root.join("results/t000001.json"), "late").unwrap();
        let m = migrate(&root).unwrap();
        assert_eq!((m.moved, m.quarantined.len()), (0, 1));
        assert_eq!(dir.read_result("t000001").unwrap(), before[1]);
    }
}
