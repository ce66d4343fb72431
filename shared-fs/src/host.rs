//! Facts about the host this process runs on.

/// This host's name, for heartbeats, leases and temp-file names
/// (informational: never used to order events across hosts).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

/// Whether a process `pid` exists on this host (`kill(pid, 0)`). Says
/// nothing about other hosts, nor about other PID namespaces.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_is_not_empty() {
        assert!(!super::hostname().is_empty());
    }

    #[test]
    fn this_process_is_alive() {
        assert!(super::pid_alive(std::process::id()));
        assert!(!super::pid_alive(u32::MAX), "not a pid");
    }
}
