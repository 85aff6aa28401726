//! A `.swu` turned into what holdfast applies: its `sw-description`
//! checked, the target state or compose file in memory, the image archives
//! on disk, and every file's sha256 compared with the one listed before
//! anything is handed on. Read as a stream, in one pass.
//!
//! Signatures are out of scope here: an `sw-description.sig` right after
//! `sw-description` (where SWUpdate wants it) is returned as it is and is
//! **not verified**. Whoever relies on it has to check it against
//! `sw-description` themselves.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::description::{libconfig, Description, DescriptionError, ImageEntry, ImageKind};
use super::{Entry, SwuError, SwuReader};
use crate::names::AppName;
use crate::text::shown;

/// The caller's bound for `sw-description`.
pub const MAX_DESCRIPTION: u64 = libconfig::MAX_LEN as u64;
/// The target state or compose file, held in memory.
pub const MAX_CONTENT: u64 = 1 << 20;
/// An RSA or CMS signature is a few KiB.
pub const MAX_SIGNATURE: u64 = 64 * 1024;
const SIGNATURE: &str = "sw-description.sig";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest image archive.
    pub max_image: u64,
    /// The largest sum of all listed files (images and content).
    pub max_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub version: String,
    pub description: Option<String>,
    pub content: PayloadContent,
    /// The image archives written under `dir`, in the order listed. They
    /// are the caller's now, to load and remove.
    pub images: Vec<PathBuf>,
    /// `sw-description.sig` as found in the archive. **Not verified**:
    /// its presence says nothing about who built the update.
    pub signature: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadContent {
    /// The target state JSON (`holdfast-target`), not parsed yet.
    Target(String),
    /// A compose file (`holdfast-compose`) for `app`.
    Compose { app: AppName, yaml: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Archive(#[from] SwuError),
    #[error("the archive is empty: it holds no sw-description")]
    Empty,
    #[error(transparent)]
    Description(#[from] DescriptionError),
    #[error(
        "this update is built for hardware revisions [{}], this device is {}",
        shown(&compatible.join(", ")), shown(device)
    )]
    Hardware {
        compatible: Vec<String>,
        device: String,
    },
    #[error(
        "the archive holds {}, which sw-description does not list; holdfast takes \
         only listed files, each checked against its sha256",
        shown(name)
    )]
    Unlisted { name: String },
    #[error(
        "sw-description.sig must come right after sw-description, where SWUpdate looks for it"
    )]
    MisplacedSignature,
    #[error("the archive holds {} twice", shown(name))]
    Duplicate { name: String },
    #[error(
        "sw-description lists {}, which the archive does not hold",
        shown(name)
    )]
    Missing { name: String },
    #[error(
        "{} is damaged or not the file listed: its sha256 is {got}..., \
         sw-description lists {want}...",
        shown(name)
    )]
    Sha256 {
        name: String,
        /// The first 12 hex digits of each.
        got: String,
        want: String,
    },
    #[error(
        "{} brings the listed files to {total} bytes, more than the {max} allowed in all",
        shown(name)
    )]
    TotalTooLarge { name: String, total: u64, max: u64 },
    #[error("{} is not UTF-8 text", shown(name))]
    NotText { name: String },
    #[error(
        "{} is already there; images are written only to new files in a directory of \
         holdfast's own",
        shown(&path.display().to_string())
    )]
    Exists { path: PathBuf },
    #[error("cannot create {}: {source}", shown(&path.display().to_string()))]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", shown(&path.display().to_string()))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the `.swu` in `reader`. `board` picks the board group of the
/// description (see [`Description::parse`]); with `hw_revision`, a
/// description listing `hardware-compatibility` must name it (without
/// one, any description is taken). Image archives go to `dir/<filename>`,
/// created new with mode 0600; `dir` must be holdfast's own. On any error
/// the files written so far are removed again.
pub fn extract(
    reader: impl Read,
    board: Option<&str>,
    hw_revision: Option<&str>,
    dir: &Path,
    limits: Limits,
) -> Result<Payload, PayloadError> {
    let mut written = Written(Vec::new());
    let payload = read(reader, board, hw_revision, dir, limits, &mut written)?;
    // Success: the files are the caller's.
    written.0.clear();
    Ok(payload)
}

/// Files created so far, removed when dropped unless cleared.
struct Written(Vec<PathBuf>);

impl Drop for Written {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a partly extracted image");
            }
        }
    }
}

fn read(
    reader: impl Read,
    board: Option<&str>,
    hw_revision: Option<&str>,
    dir: &Path,
    limits: Limits,
    written: &mut Written,
) -> Result<Payload, PayloadError> {
    let mut swu = SwuReader::new(reader);
    // The reader refuses an archive whose first entry is another.
    let first = swu.next_entry()?.ok_or(PayloadError::Empty)?;
    let desc = Description::parse(&swu.read_small(&first, MAX_DESCRIPTION)?, board)?;
    check_hardware(&desc, hw_revision)?;
    let mut next = swu.next_entry()?;
    let mut signature = None;
    if let Some(e) = next.as_ref().filter(|e| e.name == SIGNATURE) {
        signature = Some(swu.read_small(e, MAX_SIGNATURE)?);
        next = swu.next_entry()?;
    }
    let mut seen = vec![false; desc.images.len()];
    let mut images: Vec<Option<PathBuf>> = vec![None; desc.images.len()];
    let mut content = None;
    let mut total: u64 = 0;
    while let Some(e) = next {
        let Some(i) = desc.images.iter().position(|l| l.filename == e.name) else {
            return Err(match e.name.as_str() {
                SIGNATURE => PayloadError::MisplacedSignature,
                _ => PayloadError::Unlisted { name: e.name },
            });
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(PayloadError::Duplicate { name: e.name });
        }
        total = total.saturating_add(e.size);
        if total > limits.max_total {
            return Err(PayloadError::TotalTooLarge {
                name: e.name,
                total,
                max: limits.max_total,
            });
        }
        let listed = &desc.images[i];
        match &listed.kind {
            ImageKind::Image => {
                let path = write_image(&mut swu, &e, listed, dir, limits.max_image, written)?;
                images[i] = Some(path);
            }
            ImageKind::Target => {
                content = Some(PayloadContent::Target(text(&mut swu, &e, listed)?))
            }
            ImageKind::Compose { app } => {
                let yaml = text(&mut swu, &e, listed)?;
                content = Some(PayloadContent::Compose {
                    app: app.clone(),
                    yaml,
                });
            }
        }
        next = swu.next_entry()?;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(PayloadError::Missing {
            name: desc.images[i].filename.clone(),
        });
    }
    // Every listed entry was there, and one of them is the content.
    let content = content.ok_or_else(|| PayloadError::Missing {
        name: "a holdfast-target or holdfast-compose entry".to_owned(),
    })?;
    Ok(Payload {
        version: desc.version,
        description: desc.description,
        content,
        images: images.into_iter().flatten().collect(),
        signature,
    })
}

/// A description listing hardware revisions is only for those; a device
/// that does not know its own takes any.
fn check_hardware(desc: &Description, device: Option<&str>) -> Result<(), PayloadError> {
    let compatible = &desc.hardware_compatibility;
    match device {
        Some(device) if !compatible.is_empty() && !compatible.iter().any(|r| r == device) => {
            Err(PayloadError::Hardware {
                compatible: compatible.clone(),
                device: device.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// The target or compose file: small, in memory, checked, UTF-8.
fn text<R: Read>(
    swu: &mut SwuReader<R>,
    e: &Entry,
    listed: &ImageEntry,
) -> Result<String, PayloadError> {
    let mut out = Hashing::new(Vec::new());
    swu.copy_to(e, &mut out, MAX_CONTENT)?;
    check_sha256(listed, out.sha)?;
    String::from_utf8(out.inner).map_err(|_| PayloadError::NotText {
        name: e.name.clone(),
    })
}

fn write_image<R: Read>(
    swu: &mut SwuReader<R>,
    e: &Entry,
    listed: &ImageEntry,
    dir: &Path,
    max: u64,
    written: &mut Written,
) -> Result<PathBuf, PayloadError> {
    // Refused before a file is made for it.
    if e.size > max {
        let name = e.name.clone();
        return Err(SwuError::TooLarge {
            name,
            size: e.size,
            max,
        }
        .into());
    }
    // The description allows only plain names, so this stays in `dir`.
    let path = dir.join(&listed.filename);
    // create_new is O_CREAT|O_EXCL: never an existing file, never through
    // a symlink, dangling or not; O_NOFOLLOW says so once more.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => PayloadError::Exists { path: path.clone() },
            _ => PayloadError::Create {
                path: path.clone(),
                source,
            },
        })?;
    written.0.push(path.clone());
    let mut out = Hashing::new(file);
    if let Err(e) = swu.copy_to(e, &mut out, max) {
        // A failed write is the disk's fault, not the archive's.
        return Err(match out.error.take() {
            Some(source) => PayloadError::Write { path, source },
            None => e.into(),
        });
    }
    check_sha256(listed, out.sha)?;
    Ok(path)
}

fn check_sha256(listed: &ImageEntry, sha: Sha256) -> Result<(), PayloadError> {
    let got: [u8; 32] = sha.finalize().into();
    if got == listed.sha256 {
        return Ok(());
    }
    let hex12 = |h: &[u8; 32]| crate::fsutil::hex(&h[..6]);
    Err(PayloadError::Sha256 {
        name: listed.filename.clone(),
        got: hex12(&got),
        want: hex12(&listed.sha256),
    })
}

/// Hashes what goes through, and keeps the inner writer's error so it is
/// not taken for the archive's.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    error: Option<io::Error>,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
            error: None,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.sha.update(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(kind.into())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
