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

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_is_not_empty() {
        assert!(!super::hostname().is_empty());
    }
}
