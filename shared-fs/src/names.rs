//! The names of the study directory's files and folders: the vocabulary
//! every other module of the protocol uses (see `docs/protocol.md` §2).

/// Where finished cnn trials keep their final weights (created on first
/// use, so studies without them have no such directory).
pub const WEIGHTS_DIR: &str = "weights";

/// The sub-directories that hold one file per trial or worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Settings,
    Pending,
    Running,
    Results,
    Heartbeats,
    Logs,
    Quarantine,
    Checkpoints,
    Progress,
    Decisions,
    Paused,
}

impl Sub {
    pub const ALL: [Sub; 11] = [
        Sub::Settings,
        Sub::Pending,
        Sub::Running,
        Sub::Results,
        Sub::Heartbeats,
        Sub::Logs,
        Sub::Quarantine,
        Sub::Checkpoints,
        Sub::Progress,
        Sub::Decisions,
        Sub::Paused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sub::Settings => "settings",
            Sub::Pending => "pending",
            Sub::Running => "running",
            Sub::Results => "results",
            Sub::Heartbeats => "heartbeats",
            Sub::Logs => "logs",
            Sub::Quarantine => "quarantine",
            Sub::Checkpoints => "checkpoints",
            Sub::Progress => "progress",
            Sub::Decisions => "decisions",
            Sub::Paused => "paused",
        }
    }

    /// Whether the folder holds one file per trial ever run, and is
    /// therefore sharded in a directory of the sharded layout (the others
    /// hold the trials in flight, or one file per worker).
    pub fn is_sharded(self) -> bool {
        matches!(self, Sub::Settings | Sub::Results | Sub::Logs)
    }
}

pub const STUDY_FILE: &str = "study.json";
pub const MASTER_FILE: &str = "master.json";
pub const FINISHED_FILE: &str = "finished.json";
/// In a trial's checkpoint directory: [`Spent`].
pub const SPENT_FILE: &str = "spent.json";

/// Separates trial id and worker id in `running/` file names. Ids may not
/// contain it (see [`hps_common::validate_id`]).
pub const CLAIM_SEP: char = '@';

pub const RECORDED_STUDY_FILE: &str = "study.recorded.json";
