//! The process's open-files limit: each simulated connection is one descriptor.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit; returns the soft limit
/// now in force.
pub fn raise_open_files_limit() -> Result<u64, rustix::io::Errno> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Descriptors this process has open.
pub fn open_files() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count)
}

/// Descriptors process `pid` has open.
pub fn open_files_of(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("raise");
        assert_eq!(
            Some(limit),
            getrlimit(Resource::Nofile).maximum.or(Some(u64::MAX))
        );
        assert!(open_files().is_some_and(|n| n >= 3));
        assert_eq!(open_files_of(std::process::id()).map(|n| n > 0), Some(true));
    }
}
