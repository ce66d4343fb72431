//! Reading a live study whole without stopping at a bad file: the HTML
//! report and the inspection commands (`status`, `best`, `export`) read
//! every file of a folder this way, skipping each unreadable one with a
//! warning that names it.

use crate::dir::StudyDir;
use crate::error::FsError;
use crate::names::Sub;

/// Every readable file of `sub`; unreadable ones are skipped with a
/// warning that names them (the report and the master's `status`, `best`
/// and `export` read a live study this way). Fails only when `sub` itself
/// cannot be listed.
pub fn load_all<T: Send>(
    dir: &StudyDir,
    sub: Sub,
    read: impl Fn(&str) -> Result<T, FsError> + Sync,
) -> Result<Vec<T>, FsError> {
    let names = dir.list(sub)?;
    Ok(load_some(dir, sub, &names, read))
}

/// The readable files of `sub` among `names`, in their order; unreadable
/// ones are skipped with a warning as in [`load_all`].
pub fn load_some<T: Send>(
    dir: &StudyDir,
    sub: Sub,
    names: &[String],
    read: impl Fn(&str) -> Result<T, FsError> + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    // Parsing dominates for big studies (10,000 results with curves): read
    // the files on every core, keeping the listing's order.
    let read = |name: &String| match read(name) {
        Ok(v) => Some(v),
        Err(e) => {
            // Schema and I/O errors already name the file; don't say it twice.
            let msg = e.to_string();
            let path = dir.json_path(sub, name);
            if msg.contains(&*path.to_string_lossy()) {
                tracing::warn!("skipping unreadable file: {msg}");
            } else {
                tracing::warn!("skipping unreadable file `{}`: {msg}", path.display());
            }
            None
        }
    };
    names.par_iter().filter_map(read).collect()
}
