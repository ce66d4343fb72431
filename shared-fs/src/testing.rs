//! Small study directories for unit tests (feature `test-support`): the
//! one fixture the tests of shared-fs, master and worker share.

use std::path::Path;

use hps_common::Study;

use crate::StudyDir;

/// A random-sampler study of `trials` trials on the branin function.
pub fn branin_study(trials: u64) -> Study {
    let text = format!(
        r#"{{"format_version":1,"name":"test",
        "space":{{"x0":{{"type":"float","low":-5,"high":10}},"x1":{{"type":"float","low":0,"high":15}}}},
        "objective":{{"metric":"value","direction":"minimize"}},
        "sampler":{{"kind":"random","seed":0}},"budget":{{"trials":{trials}}},
        "trainer":{{"kind":"function","name":"branin"}}}}"#
    );
    hps_common::parse_versioned(Path::new("study.json"), &text).expect("the test study parses")
}

/// A new study directory at `root` holding [`branin_study`].
pub fn branin_study_dir(root: &Path, trials: u64) -> StudyDir {
    StudyDir::init(root, &branin_study(trials)).expect("the test study directory")
}
