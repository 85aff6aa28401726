//! Best-effort: which processes hold a lock file, from `/proc`. Used for
//! reporting only; it never decides whether something is locked. A walk
//! of `/proc` takes milliseconds and grows with the process count, so it
//! runs on a thread of its own, at a lower priority, at most every 50 ms:
//! lock events never wait behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::state::{HoldKind, Holder, LockEvent};
use crate::names::ServiceId;

pub use super::state::FileKey;

/// "Who holds these files of this service?"
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub id: ServiceId,
    pub keys: Vec<FileKey>,
}

/// Scans at most this often: a burst of lock events costs one walk.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The walk runs below the event path's priority: on a busy two-core
/// device it never takes CPU from the lock watcher, the core or logind.
const NICENESS: i32 = 10;

/// Answers scan requests with `HoldersObserved` events, one `/proc` walk
/// for everything queued meanwhile, on a thread of its own. Runs until
/// either side goes away.
pub async fn run(
    proc_root: PathBuf,
    requests: mpsc::Receiver<ScanRequest>,
    events: mpsc::Sender<LockEvent>,
) {
    let _ = tokio::task::spawn_blocking(move || scan_loop(&proc_root, requests, events)).await;
}

fn scan_loop(
    proc_root: &Path,
    mut requests: mpsc::Receiver<ScanRequest>,
    events: mpsc::Sender<LockEvent>,
) {
    // SAFETY: setpriority has no memory effects; on Linux, PRIO_PROCESS
    // with 0 applies to the calling thread only, and this thread runs
    // nothing but this loop until the daemon ends.
    unsafe {
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, NICENESS);
    }
    let mut last: Option<Instant> = None;
    while let Some(first) = requests.blocking_recv() {
        if let Some(wait) = last.and_then(|t| MIN_INTERVAL.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        // The latest keys per service: earlier requests are superseded.
        let mut batch: BTreeMap<ServiceId, Vec<FileKey>> = BTreeMap::new();
        batch.insert(first.id, first.keys);
        while let Ok(r) = requests.try_recv() {
            batch.insert(r.id, r.keys);
        }
        let all: Vec<FileKey> = batch.values().flatten().copied().collect();
        let found = scan(proc_root, &all);
        last = Some(Instant::now());
        for (id, keys) in batch {
            let holders = holders_of(&found, &keys);
            if events
                .blocking_send(LockEvent::HoldersObserved { id, keys, holders })
                .is_err()
            {
                return;
            }
        }
    }
}

/// The holders of any of `keys`, one per process, sorted.
pub fn holders_of(found: &HashMap<FileKey, Vec<Holder>>, keys: &[FileKey]) -> Vec<Holder> {
    let mut hs: Vec<Holder> = keys
        .iter()
        .filter_map(|k| found.get(k))
        .flatten()
        .cloned()
        .collect();
    hs.sort();
    hs.dedup_by(|a, b| a.pid == b.pid);
    hs
}

/// Finds, for each key, the processes that have the file open or hold a
/// `flock`/POSIX lock on it. Our own process is left out.
pub fn scan(proc_root: &Path, keys: &[FileKey]) -> HashMap<FileKey, Vec<Holder>> {
    let mut found: HashMap<FileKey, BTreeSet<Holder>> =
        keys.iter().map(|k| (*k, BTreeSet::new())).collect();
    if keys.is_empty() {
        return HashMap::new();
    }
    let me = std::process::id();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut comm = |pid: u32| -> String {
        comms
            .entry(pid)
            .or_insert_with(|| {
                fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_default()
            })
            .clone()
    };

    if let Ok(text) = fs::read_to_string(proc_root.join("locks")) {
        for (pid, key) in parse_proc_locks(&text) {
            if pid != me {
                if let Some(set) = found.get_mut(&key) {
                    set.insert(Holder {
                        pid,
                        comm: comm(pid),
                        how: HoldKind::Flock,
                    });
                }
            }
        }
    }

    if let Ok(procs) = fs::read_dir(proc_root) {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                // stat() through the magic link reaches the open file even
                // when it lives in another mount namespace (a container).
                let Ok(md) = fs::metadata(fd.path()) else {
                    continue;
                };
                if let Some(set) = found.get_mut(&(md.dev(), md.ino())) {
                    set.insert(Holder {
                        pid,
                        comm: comm(pid),
                        how: HoldKind::Open,
                    });
                    break;
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(k, set)| {
            // One line per process: a flock implies the file is open too.
            let mut v: Vec<Holder> = Vec::new();
            for h in set {
                if let Some(prev) = v.iter_mut().find(|p| p.pid == h.pid) {
                    if h.how == HoldKind::Flock {
                        prev.how = HoldKind::Flock;
                    }
                } else {
                    v.push(h);
                }
            }
            (k, v)
        })
        .collect()
}

/// Parses `/proc/locks` into (pid, file key) pairs of granted locks.
/// A line: `1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`; waiters are
/// marked with `->` and are not holders.
pub fn parse_proc_locks(text: &str) -> Vec<(u32, FileKey)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let _index = words.next()?;
            let kind = words.next()?;
            if kind == "->" {
                return None;
            }
            let _mode = words.next()?;
            let _access = words.next()?;
            let pid: u32 = words.next()?.parse().ok()?;
            let mut dev = words.next()?.split(':');
            let maj = u64::from_str_radix(dev.next()?, 16).ok()?;
            let min = u64::from_str_radix(dev.next()?, 16).ok()?;
            let ino: u64 = dev.next()?.parse().ok()?;
            Some((pid, (makedev(maj, min), ino)))
        })
        .collect()
}

fn makedev(maj: u64, min: u64) -> u64 {
    nix::sys::stat::makedev(maj, min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 999 00:2a:5678 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 42 fd:01:77 0 EOF\n\
                    3: OFDLCK ADVISORY  READ  -1 00:05:9 0 EOF\n";
        let got = parse_proc_locks(text);
        assert_eq!(
            got,
            vec![
                (1234, (makedev(0, 0x2a), 5678)),
                (42, (makedev(0xfd, 1), 77))
            ]
        );
    }

    #[test]
    fn finds_a_process_holding_a_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.lock");
        fs::write(&path, b"").unwrap();
        let md = fs::metadata(&path).unwrap();
        let key = (md.dev(), md.ino());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; read _ <&0")
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the shell has the file open.
        let pid = child.id();
        let mut holders = Vec::new();
        for _ in 0..200 {
            holders = scan(Path::new("/proc"), &[key]).remove(&key).unwrap();
            if !holders.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(child.stdin.take());
        child.wait().unwrap();
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].pid, pid);
        assert_eq!(holders[0].how, HoldKind::Open);
        let after = scan(Path::new("/proc"), &[key]).remove(&key).unwrap();
        assert!(after.is_empty());
    }
}
