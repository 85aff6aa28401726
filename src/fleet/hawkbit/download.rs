//! A deployment's artifact, streamed to the state dir: bounded in size,
//! resumed with `Range` after an interruption or a restart, and kept only
//! when the strongest hash the server gave matches. Never whole in memory.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ddi::{Artifact, Hash};
use super::Link;
use crate::fleet::http::Client;
use crate::text::shown;

/// A download stalls when no byte came for this long.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server or the network; worth another try after a pause.
    #[error("download of {}: {reason}", shown(file))]
    Transfer { file: String, reason: String },
    /// A 206 that is not the rest of what holdfast has: the partial file
    /// is dropped and the next try starts from the beginning.
    #[error("download of {}: {reason}", shown(file))]
    BadRange { file: String, reason: String },
    /// A link holdfast does not follow (not http or https, plain http
    /// from an https server, a redirect): the same link fails the same
    /// way, so it is not tried again until the server changes the action.
    #[error("download of {}: {reason}", shown(file))]
    Refused { file: String, reason: String },
    /// What came is not what the server announced.
    #[error(
        "download of {}: {algo} is {got}, the server announced {want}",
        shown(file)
    )]
    Mismatch {
        file: String,
        algo: &'static str,
        got: String,
        want: String,
    },
    #[error(
        "download of {}: {size} bytes is more than [fleet.hawkbit] max_download ({max})",
        shown(file)
    )]
    TooLarge { file: String, size: u64, max: u64 },
    /// More came than the `size` the deployment announced.
    #[error(
        "download of {}: more than the {announced} bytes the server announced",
        shown(file)
    )]
    LongerThanAnnounced { file: String, announced: u64 },
    /// The state dir: no space, no permission. The partial file is
    /// removed (a full disk keeps nothing half-written).
    #[error("download of {}: {reason}", shown(file))]
    Local { file: String, reason: String },
}

impl DownloadError {
    /// The same action fails the same way again: reported once, not tried
    /// again until the server offers another action or artifact.
    pub fn permanent(&self) -> bool {
        matches!(
            self,
            DownloadError::Refused { .. }
                | DownloadError::Mismatch { .. }
                | DownloadError::TooLarge { .. }
                | DownloadError::LongerThanAnnounced { .. }
        )
    }
}

enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    fn new(h: &Hash) -> Self {
        match h {
            Hash::Sha1(_) => Hasher::Sha1(Sha1::new()),
            Hash::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        crate::fsutil::hex(&match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        })
    }
}

fn algo(h: &Hash) -> &'static str {
    match h {
        Hash::Sha1(_) => "sha1",
        Hash::Sha256(_) => "sha256",
    }
}

/// Where a verified artifact is kept: named by its hash.
pub fn verified_path(dir: &Path, a: &Artifact) -> PathBuf {
    dir.join(format!("{}.swu", a.hash.hex()))
}

/// Downloads `a` from `link` (resolved by [`super::Server::resolve`]: the
/// token only for the server's own links) into `dir` (ours, 0700),
/// resuming a partial file, and answers the path of the verified file.
/// `progress` gets whole percents.
pub async fn fetch(
    client: &Client,
    a: &Artifact,
    link: &Link<'_>,
    dir: &Path,
    max: u64,
    mut progress: impl FnMut(u8),
) -> Result<PathBuf, DownloadError> {
    let file = a.filename.clone();
    let part = dir.join(format!("{}.part", a.hash.hex()));
    let local = |e: std::io::Error| {
        // Nothing half-written is kept: a full disk gets its space back.
        let _ = std::fs::remove_file(&part);
        DownloadError::Local {
            file: file.clone(),
            reason: e.to_string(),
        }
    };
    let transfer = |reason: String| DownloadError::Transfer {
        file: file.clone(),
        reason,
    };
    if a.size > max {
        return Err(DownloadError::TooLarge {
            file: file.clone(),
            size: a.size,
            max,
        });
    }
    let done = verified_path(dir, a);
    if std::fs::symlink_metadata(&done).is_ok_and(|m| m.is_file()) {
        progress(100);
        return Ok(done);
    }
    // What is there already counts toward the hash; hashed again here
    // since a restart lost the running state.
    let (mut hasher, have) = {
        let part = part.clone();
        let h = a.hash.clone();
        tokio::task::spawn_blocking(move || hash_existing(&part, &h))
            .await
            .expect("hashing does not panic")
            .map_err(&local)?
    };
    let range = format!("bytes={have}-");
    let mut hs: Vec<(&str, &str)> = link.auth.into_iter().collect();
    if have > 0 {
        tracing::info!(artifact = %shown(&file), "resuming at byte {have}");
        hs.push(("range", &range));
    }
    let mut dl = client
        .open(&link.url, &link.path, &hs, IDLE)
        .await
        .map_err(transfer)?;
    let mut written = match dl.status {
        206 => match check_range(have, dl.header("content-range")) {
            Ok(()) => have,
            Err(reason) => {
                let _ = std::fs::remove_file(&part);
                return Err(DownloadError::BadRange {
                    file: file.clone(),
                    reason,
                });
            }
        },
        200 => {
            // No resume from this server: from the start.
            hasher = Hasher::new(&a.hash);
            0
        }
        s @ 300..=399 => {
            let to = dl.header("location").map(shown).unwrap_or_default();
            return Err(DownloadError::Refused {
                file: file.clone(),
                reason: format!(
                    "the server answered HTTP {s} (to {to}); holdfast does not follow redirects: \
                     give the artifact's own link"
                ),
            });
        }
        s => {
            if s == 416 {
                // The partial file is not a prefix the server knows.
                let _ = std::fs::remove_file(&part);
            }
            return Err(transfer(format!("the server answered HTTP {s}")));
        }
    };
    let mut out = tokio::fs::File::from_std(open_part(&part, written == 0).map_err(&local)?);
    let total = if a.size > 0 { a.size } else { max };
    let mut last = None;
    while let Some(chunk) = dl.chunk().await.map_err(transfer)? {
        written += chunk.len() as u64;
        if written > max || (a.size > 0 && written > a.size) {
            drop(out);
            let _ = std::fs::remove_file(&part);
            return Err(match a.size {
                0 => DownloadError::TooLarge {
                    file: file.clone(),
                    size: written,
                    max,
                },
                announced => DownloadError::LongerThanAnnounced {
                    file: file.clone(),
                    announced,
                },
            });
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(&local)?;
        let pct = (written.min(total) * 100 / total.max(1)) as u8;
        if last != Some(pct) {
            last = Some(pct);
            progress(pct);
        }
    }
    out.sync_all().await.map_err(&local)?;
    drop(out);
    let got = hasher.hex();
    if got != a.hash.hex() {
        let _ = std::fs::remove_file(&part);
        return Err(DownloadError::Mismatch {
            file: file.clone(),
            algo: algo(&a.hash),
            got,
            want: a.hash.hex().to_owned(),
        });
    }
    std::fs::rename(&part, &done).map_err(&local)?;
    progress(100);
    Ok(done)
}

/// The partial file, opened without following a link planted in its
/// place, created 0600.
fn open_part(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn hash_existing(part: &Path, h: &Hash) -> std::io::Result<(Hasher, u64)> {
    let mut hasher = Hasher::new(h);
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(part)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            part.display()
        )));
    }
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok((hasher, n));
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
}

/// A 206 must be the rest of the file from the byte holdfast asked for
/// (`Content-Range: bytes HAVE-END/TOTAL`); anything else says what was
/// wrong with it.
fn check_range(have: u64, header: Option<&str>) -> Result<(), String> {
    if have == 0 {
        return Err(
            "the server answered 206 Partial Content to a request for the whole file".into(),
        );
    }
    let Some(v) = header else {
        return Err(format!(
            "the server answered 206 Partial Content without a Content-Range (asked from byte {have})"
        ));
    };
    match content_range_start(Some(v)) {
        Some(start) if start == have => Ok(()),
        Some(start) => Err(format!(
            "the server answered 206 Partial Content from byte {start} (Content-Range: {}), \
             asked from byte {have}; starting over",
            shown(v)
        )),
        None => Err(format!(
            "the server answered 206 Partial Content with a Content-Range that is not \
             bytes START-END/TOTAL ({}); starting over",
            shown(v)
        )),
    }
}

/// `bytes 100-199/200` -> 100.
fn content_range_start(v: Option<&str>) -> Option<u64> {
    let rest = v?.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
