//! The allocator the binaries install (`#[global_allocator]`): jemalloc with the default `jemalloc`
//! feature, the system allocator without it.
//!
//! A library does not choose the allocator of the programs that link it, so each binary (the daemon,
//! the bench tool, the criterion benches) declares its own global from [`ALLOCATOR`], and the choice is
//! made in one place. Why jemalloc: glibc's malloc gives busy threads arenas of their own and keeps
//! what they free; 9 minutes into the memory soak it held 184 MiB for 92 MiB in use (README, Memory).

/// The type of [`ALLOCATOR`].
#[cfg(feature = "jemalloc")]
pub type Allocator = tikv_jemallocator::Jemalloc;
/// The type of [`ALLOCATOR`].
#[cfg(not(feature = "jemalloc"))]
pub type Allocator = std::alloc::System;

/// The allocator for a binary's `#[global_allocator]`.
#[cfg(feature = "jemalloc")]
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;
/// The allocator for a binary's `#[global_allocator]`.
#[cfg(not(feature = "jemalloc"))]
pub const ALLOCATOR: Allocator = std::alloc::System;

/// Its name, as `hestyna_obsd_build_info` reports it.
pub const NAME: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system"
};

/// Bytes the allocator has handed out and not had back, and bytes of its pages resident in memory
/// (jemalloc's `stats.allocated` and `stats.resident`): the heap in use, and what it costs. `None` with
/// the system allocator, which does not say.
pub fn stats() -> Option<(u64, u64)> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        epoch::advance().ok()?;
        let allocated = stats::allocated::read().ok()?;
        let resident = stats::resident::read().ok()?;
        Some((allocated as u64, resident as u64))
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_reports_what_it_holds() {
        // Test binaries allocate with the system allocator, so jemalloc's own figures are small but
        // there; the daemon's are checked end to end (tests/signals.rs).
        let (allocated, resident) = super::stats().expect("jemalloc answers");
        assert!(
            resident >= allocated,
            "{allocated} allocated, {resident} resident"
        );
    }
}
