//! `study.recorded.json`: the study as it was when the directory was
//! created, so that an edit of `study.json` that would mix old and new
//! trials is noticed (see [`Study::edits_since`]) instead of accepted
//! silently. Written by `hps-master init`; a directory made by an older
//! release gets it on its first `hps-master run`.

use std::path::PathBuf;

use hps_common::Study;

use crate::atomic::write_atomic;
use crate::dir::StudyDir;
use crate::error::{FsError, Result};
use crate::names::RECORDED_STUDY_FILE;

/// How `study.json` compares with the study recorded at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyRecord {
    /// Nothing changed but the tolerated fields.
    Same,
    /// No record (a directory made by an older release): record it now.
    Unrecorded,
    /// These fields changed (see [`Study::edits_since`]), and the caller
    /// accepted that.
    Accepted(Vec<String>),
}

impl StudyDir {
    pub fn recorded_study_path(&self) -> PathBuf {
        self.root().join(RECORDED_STUDY_FILE)
    }

    /// Record `study` as the one `study.json` is compared with from now on.
    pub fn record_study(&self, study: &Study) -> Result<()> {
        write_atomic(
            &self.recorded_study_path(),
            &crate::layout::record_text(study, self.layout()),
        )
    }

    /// Compare `study` (as read from `study.json`) with the recorded one.
    /// An edit of a field that matters is an error naming the fields,
    /// unless `accept` (then it is [`StudyRecord::Accepted`], and the
    /// caller records the new study). An unreadable record is an error
    /// too, unless `accept`.
    pub fn check_study(&self, study: &Study, accept: bool) -> Result<StudyRecord> {
        let path = self.recorded_study_path();
        let recorded = match crate::layout::read_record(&path) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(StudyRecord::Unrecorded),
            Err(e) if accept => return Ok(StudyRecord::Accepted(vec![format!("({e})")])),
            Err(e) => {
                return Err(FsError::UnreadableRecord {
                    path,
                    dir: self.root().to_path_buf(),
                    source: Box::new(e),
                })
            }
        };
        let fields = study.edits_since(&recorded);
        if fields.is_empty() {
            Ok(StudyRecord::Same)
        } else if accept {
            Ok(StudyRecord::Accepted(fields))
        } else {
            Err(FsError::StudyEdited {
                path: self.study_path(),
                recorded: path,
                dir: self.root().to_path_buf(),
                fields,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::parse_versioned;
    use std::path::Path;

    fn study(seed: u64, trials: u64) -> Study {
        let text = format!(
            r#"{{"format_version":1,"name":"t",
            "space":{{"x0":{{"type":"float","low":-5,"high":10}},"x1":{{"type":"float","low":0,"high":15}}}},
            "objective":{{"metric":"value","direction":"minimize"}},
            "sampler":{{"kind":"random","seed":{seed}}},"budget":{{"trials":{trials}}},
            "trainer":{{"kind":"function","name":"branin"}}}}"#
        );
        parse_versioned(Path::new("s.json"), &text).unwrap()
    }

    #[test]
    fn editing_study_json_after_init_is_refused_unless_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study(0, 5)).unwrap();
        assert_eq!(
            dir.check_study(&study(0, 5), false).unwrap(),
            StudyRecord::Same
        );
        assert_eq!(
            dir.check_study(&study(0, 50), false).unwrap(),
            StudyRecord::Same,
            "raising the budget is the tolerated edit"
        );
        let e = dir
            .check_study(&study(1, 5), false)
            .unwrap_err()
            .to_string();
        for part in [
            "study.json",
            "sampler.seed: 0 → 1",
            RECORDED_STUDY_FILE,
            "--accept-study-change",
        ] {
            assert!(e.contains(part), "`{part}` missing from: {e}");
        }
        assert_eq!(
            dir.check_study(&study(1, 5), true).unwrap(),
            StudyRecord::Accepted(vec!["sampler.seed: 0 → 1".into()])
        );
        // A directory of an older release has no record; a damaged record
        // is named, and accepting replaces it.
        std::fs::remove_file(dir.recorded_study_path()).unwrap();
        assert_eq!(
            dir.check_study(&study(1, 5), false).unwrap(),
            StudyRecord::Unrecorded
        );
        std::fs::write(dir.recorded_study_path(), b"{").unwrap();
        let e = dir
            .check_study(&study(1, 5), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(RECORDED_STUDY_FILE) && e.contains("--accept-study-change"),
            "{e}"
        );
        assert!(matches!(
            dir.check_study(&study(1, 5), true).unwrap(),
            StudyRecord::Accepted(_)
        ));
    }
}
