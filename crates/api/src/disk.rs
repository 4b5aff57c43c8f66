//! Free space of the data directory's filesystem (`/health`, `pynomaly_data_dir_free_bytes`).

use std::path::Path;

/// `/health` says `degraded` when the data directory's filesystem has less than this
/// many bytes free for unprivileged writers…
pub(crate) const LOW_FREE_BYTES: u64 = 64 * 1024 * 1024;
/// …and less than this fraction of its size (1%): on filesystems under 6.4 GiB (a small
/// volume or tmpfs) the 1% decides, on larger ones the 64 MiB.
pub(crate) const LOW_FREE_FRACTION: f64 = 0.01;

/// The space of one filesystem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreeSpace {
    /// Bytes an unprivileged process may still write.
    pub(crate) available: u64,
    /// The filesystem's size in bytes.
    pub(crate) total: u64,
}

impl FreeSpace {
    /// Whether the space left is below both [`LOW_FREE_BYTES`] and [`LOW_FREE_FRACTION`].
    pub(crate) fn is_low(self) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let fraction = self.available as f64 / self.total.max(1) as f64;
        self.available < LOW_FREE_BYTES && fraction < LOW_FREE_FRACTION
    }
}

/// The free space of the filesystem holding `dir` (`statvfs`).
///
/// # Errors
/// `dir` does not exist or cannot be examined.
pub(crate) fn free_bytes(dir: &Path) -> std::io::Result<FreeSpace> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let frag = st.fragment_size().max(1);
    Ok(FreeSpace {
        available: st.blocks_available().saturating_mul(frag),
        total: st.blocks().saturating_mul(frag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_space_of_a_real_directory() {
        let dir = std::env::temp_dir();
        let space = free_bytes(&dir).unwrap();
        assert!(
            space.total > 0 && space.available <= space.total,
            "{space:?}"
        );
        assert!(free_bytes(Path::new("/no/such/dir/anywhere")).is_err());
    }

    #[test]
    fn low_below_64_mib_and_one_percent() {
        let (mib, gib) = (1024 * 1024, 1024 * 1024 * 1024);
        assert!(
            !FreeSpace {
                available: gib,
                total: 10 * gib
            }
            .is_low()
        );
        assert!(
            FreeSpace {
                available: 63 * mib,
                total: 10 * gib
            }
            .is_low()
        );
        // A large disk with 1 GiB left is not low; a 32 MiB tmpfs with 1 MiB left is not.
        assert!(
            !FreeSpace {
                available: gib,
                total: 1000 * gib
            }
            .is_low()
        );
        assert!(
            !FreeSpace {
                available: mib,
                total: 32 * mib
            }
            .is_low()
        );
        assert!(
            FreeSpace {
                available: 100 * 1024,
                total: 32 * mib
            }
            .is_low()
        );
        assert!(
            FreeSpace {
                available: 0,
                total: 32 * mib
            }
            .is_low()
        );
    }
}
