//! Giving memory back after a burst. An apply parses engine answers for
//! every container and leaves glibc's heap at its high-water mark; the
//! daemon then idles for days. glibc returns free heap pages on its own only
//! at the top of the heap, so after a burst we ask it to return the rest.
//!
//! Most of an idle holdfastd's resident memory is not heap but code: the
//! start-up, config, D-Bus and engine paths of the binary and of libc,
//! mapped by page faults (and the kernel's fault-around, 16 pages at a
//! time) and kept mapped for the life of the process though the idle
//! daemon runs a small part of them. After a burst those mappings are
//! dropped from our page tables: the pages stay in the page cache (clean,
//! shared, reclaimable), and the code that runs next maps back only the
//! pages it touches (MADV_RANDOM turns fault-around off for them), a minor
//! fault each, no I/O while the page cache has them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Returns free heap pages to the kernel and unmaps idle code pages.
/// Costs a walk of the heap and of /proc/self/maps (well under a
/// millisecond at holdfastd's size); call it when a burst of work ends,
/// never on the lock path.
pub fn give_back() {
    // SAFETY: malloc_trim only releases pages malloc itself holds free.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        nix::libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    drop_code_pages();
}

/// An input at least this big (a target document) leaves enough freed
/// heap behind to be worth a [`give_back_soon`] once it is handled.
pub const BIG_INPUT: usize = 64 << 10;

/// A give-back is on its way: a burst of big inputs asks for one.
static PENDING: AtomicBool = AtomicBool::new(false);

/// [`give_back`] shortly, on the blocking pool: for the adapter that
/// handled or refused a big input. The short wait lets the buffers still
/// held while the answer goes out (the D-Bus message) be freed first.
/// Needs a tokio runtime (it is called from async code).
pub fn give_back_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(SETTLE).await;
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(give_back).await;
    });
}

/// How long after a big input its buffers are expected to be gone.
const SETTLE: Duration = Duration::from_millis(200);

/// The executable file mappings (ours and the shared libraries'), unmapped
/// from this process; their content is the file's, so nothing is lost.
#[cfg(target_os = "linux")]
fn drop_code_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, len) in code_mappings(&maps) {
        // SAFETY: the ranges are whole, private, read-only executable file
        // mappings of this process, never written: advising them away
        // only drops page table entries, and the next access maps the same
        // file content again. The vDSO and anonymous memory are excluded.
        unsafe {
            let p = start as *mut nix::libc::c_void;
            nix::libc::madvise(p, len, nix::libc::MADV_RANDOM);
            nix::libc::madvise(p, len, nix::libc::MADV_DONTNEED);
        }
    }
}

/// `(start, length)` of each `r-xp` mapping backed by a file.
fn code_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?;
            if perms != "r-xp" || !path.starts_with('/') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (b > a).then_some((a, b - a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_executable_file_mappings() {
        // Addresses that fit 32 bits: the tests also run on armv7.
        let maps = "\
5581e000-55a2f000 r--p 00000000 fe:01 123 /usr/bin/holdfastd
55a2f000-55d10000 r-xp 00211000 fe:01 123 /usr/bin/holdfastd
55d10000-55d90000 rw-p 004f2000 fe:01 123 /usr/bin/holdfastd
7f000000-7f021000 rw-p 00000000 00:00 0 [heap]
b7100000-b7258000 r-xp 00026000 fe:01 9 /usr/lib/x86_64-linux-gnu/libc.so.6
bffd0000-bffd2000 r-xp 00000000 00:00 0 [vdso]
b7300000-b7301000 r-xp 00000000 00:00 0
";
        assert_eq!(
            code_mappings(maps),
            [(0x55a2f000, 0x2e1000), (0xb7100000, 0x158000)]
        );
    }

    #[test]
    fn the_code_still_runs_after_its_pages_are_dropped() {
        give_back();
        // Code and libc called again after the drop: mapped back on use.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v.len(), 1000);
        give_back();
        assert!(std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("VmRSS"));
    }
}
