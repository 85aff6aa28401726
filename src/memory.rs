//! Giving memory back after a burst. An apply parses engine answers for
//! every container and leaves glibc's heap at its high-water mark; the
//! daemon then idles for days. glibc returns free heap pages on its own only
//! at the top of the heap, so after a burst we ask it to return the rest.

/// Returns free heap pages to the kernel. Costs a walk of the heap
/// (microseconds at holdfastd's size); call it when a burst of work ends,
/// never on the lock path.
pub fn give_back() {
    // SAFETY: malloc_trim only releases pages malloc itself holds free.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
