//! The allocator the binaries install (`#[global_allocator]`): jemalloc with the default `jemalloc`
//! feature, the system allocator without it.
//!
//! A library does not choose the allocator of the programs that link it, so each binary (the daemon,
//! the bench tool, the criterion benches) declares its own global from [`ALLOCATOR`], and the choice is
//! made in one place. Why jemalloc: glibc's malloc gives busy threads arenas of their own and keeps
//! what they free; 9 minutes into the memory soak it held 184 MiB for 92 MiB in use (README, Memory).
//! jemalloc is built unprefixed, so it serves C's malloc too (librdkafka's fetch buffers), with the
//! settings `.cargo/config.toml` compiles in.

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

/// What the allocator holds, in bytes (jemalloc's `stats.*`), read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Handed out and not had back: the heap in use.
    pub allocated: u64,
    /// In pages that hold at least one allocation: `allocated` plus the free room inside those pages.
    pub active: u64,
    /// The allocator's own bookkeeping.
    pub metadata: u64,
    /// Pages physically resident: `active`, `metadata`, and freed pages not yet returned to the kernel.
    pub resident: u64,
}

impl Stats {
    /// Each figure with its `state` label, as `hestyna_obsd_allocator_bytes` reports them.
    pub fn states(&self) -> [(&'static str, u64); 4] {
        [
            ("allocated", self.allocated),
            ("active", self.active),
            ("metadata", self.metadata),
            ("resident", self.resident),
        ]
    }
}

/// What the allocator holds now; `None` with the system allocator, which does not say.
pub fn stats() -> Option<Stats> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        epoch::advance().ok()?;
        Some(Stats {
            allocated: stats::allocated::read().ok()? as u64,
            active: stats::active::read().ok()? as u64,
            metadata: stats::metadata::read().ok()? as u64,
            resident: stats::resident::read().ok()? as u64,
        })
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_reports_what_it_holds() {
        // Test binaries install no global allocator, but jemalloc serves C's malloc, which Rust's
        // system allocator calls; the daemon's figures are checked end to end (tests/signals.rs).
        let s = super::stats().expect("jemalloc answers");
        assert!(
            s.allocated <= s.active && s.active <= s.resident && s.metadata > 0,
            "{s:?}"
        );
    }
}
