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
