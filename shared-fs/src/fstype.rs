//! Detect network and FUSE filesystems, where inotify does not see writes
//! made by other clients and polling must be the source of truth.

use std::path::Path;

/// A filesystem on which native change notification cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFs(pub &'static str);

/// Returns the kind of network/FUSE filesystem `path` lives on, or `None`
/// for a local filesystem (or when it cannot be told).
#[cfg(target_os = "linux")]
pub fn detect_remote_fs(path: &Path) -> Option<RemoteFs> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    magic_name(st.f_type as i64).map(RemoteFs)
}

#[cfg(not(target_os = "linux"))]
pub fn detect_remote_fs(_path: &Path) -> Option<RemoteFs> {
    None
}

fn magic_name(magic: i64) -> Option<&'static str> {
    Some(match magic as u32 {
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x517B => "smb",
        0x00C3_6400 => "ceph",
        0x0BD0_0BD0 => "lustre",
        0x0102_1997 => "9p",
        0x4750_4653 => "gpfs",
        0x6B41_4653 => "afs",
        0x5346_414F => "afs",
        0x0102_1994 => return None, // tmpfs: local
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_magics() {
        assert_eq!(magic_name(0x6969), Some("nfs"));
        assert_eq!(magic_name(0x65735546), Some("fuse"));
        assert_eq!(magic_name(0xEF53), None); // ext4
    }
}
