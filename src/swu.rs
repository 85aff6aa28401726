//! SWUpdate archives (`.swu`), read as a stream: a cpio archive in the
//! "newc" (`070701`) or "crc" (`070702`, SWUpdate's own) format whose first
//! entry is `sw-description`. Entries are read one after the other, never
//! the whole archive in memory: an image archive inside goes straight to
//! where it is wanted, with a size bound and the crc format's checksum
//! checked on the way.

use std::io::{self, Read, Write};

use crate::text::shown;

pub mod description;
pub mod payload;

const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// Entry names in a .swu are plain file names; longer is not one.
const MAX_NAME: usize = 256;
pub const DESCRIPTION: &str = "sw-description";

#[derive(Debug, thiserror::Error)]
pub enum SwuError {
    #[error("not a SWUpdate archive: no cpio newc/crc header at byte {offset}")]
    BadMagic { offset: u64 },
    #[error("damaged cpio header at byte {offset}: {field} is not hexadecimal")]
    BadHeader { offset: u64, field: &'static str },
    #[error("entry name at byte {offset} is {why}")]
    BadName { offset: u64, why: &'static str },
    #[error("the archive ends inside {}", shown(name))]
    Truncated { name: String },
    #[error("{}: the archive's checksum does not match its content", shown(name))]
    Checksum { name: String },
    #[error(
        "the first entry is {}, not sw-description (SWUpdate puts it first)",
        shown(name)
    )]
    DescriptionNotFirst { name: String },
    #[error("{} is {size} bytes, more than the {max} allowed for it", shown(name))]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("reading the archive: {0}")]
    Io(#[from] io::Error),
}

/// One entry's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// The crc format's sum of the content bytes; `None` for plain newc.
    pub checksum: Option<u32>,
}

/// Reads entries in order. `next_entry` skips whatever of the previous
/// entry was not read.
pub struct SwuReader<R> {
    inner: R,
    offset: u64,
    /// Content bytes of the current entry not read yet, then its padding.
    left: u64,
    pad: u64,
    started: bool,
    done: bool,
}

impl<R: Read> SwuReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            left: 0,
            pad: 0,
            started: false,
            done: false,
        }
    }

    /// The next entry, or `None` after the trailer. The first one must be
    /// `sw-description`.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, SwuError> {
        if self.done {
            return Ok(None);
        }
        let skip = self.left + self.pad;
        self.skip(skip, "the previous entry")?;
        self.left = 0;
        self.pad = 0;
        let at = self.offset;
        let mut h = [0u8; HEADER_LEN];
        self.read_exact(&mut h, "a cpio header")?;
        let crc = match &h[..6] {
            b"070701" => false,
            b"070702" => true,
            _ => return Err(SwuError::BadMagic { offset: at }),
        };
        // Fields after the magic: ino mode uid gid nlink mtime filesize
        // devmajor devminor rdevmajor rdevminor namesize check.
        let field = |i: usize, name: &'static str| {
            let raw = &h[6 + 8 * i..14 + 8 * i];
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or(SwuError::BadHeader {
                    offset: at,
                    field: name,
                })
        };
        let size = u64::from(field(6, "filesize")?);
        let name_len = field(11, "namesize")? as usize;
        let check = field(12, "check")?;
        if name_len == 0 || name_len > MAX_NAME + 1 {
            return Err(SwuError::BadName {
                offset: at,
                why: "empty or too long",
            });
        }
        let mut name = vec![0u8; name_len];
        self.read_exact(&mut name, "an entry name")?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(SwuError::BadName {
                offset: at,
                why: "not NUL-terminated",
            });
        }
        let name = String::from_utf8(name).map_err(|_| SwuError::BadName {
            offset: at,
            why: "not UTF-8",
        })?;
        // Header and name are padded to a multiple of 4.
        let head_pad = (4 - (HEADER_LEN + name_len) % 4) % 4;
        self.skip(head_pad as u64, &name)?;
        if name == TRAILER {
            self.done = true;
            return Ok(None);
        }
        if name.contains('/') || name == "." || name == ".." {
            return Err(SwuError::BadName {
                offset: at,
                why: "a path, not a file name",
            });
        }
        if !self.started && name != DESCRIPTION {
            return Err(SwuError::DescriptionNotFirst { name });
        }
        self.started = true;
        self.left = size;
        self.pad = (4 - size % 4) % 4;
        Ok(Some(Entry {
            name,
            size,
            checksum: crc.then_some(check),
        }))
    }

    /// Copies the current entry's content to `out`, refusing more than
    /// `max` bytes before reading any, and checks the crc format's sum.
    pub fn copy_to(
        &mut self,
        entry: &Entry,
        out: &mut impl Write,
        max: u64,
    ) -> Result<u64, SwuError> {
        if entry.size > max {
            return Err(SwuError::TooLarge {
                name: entry.name.clone(),
                size: entry.size,
                max,
            });
        }
        let mut sum: u32 = 0;
        let mut buf = [0u8; 64 * 1024];
        while self.left > 0 {
            let want = buf.len().min(self.left as usize);
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 {
                return Err(SwuError::Truncated {
                    name: entry.name.clone(),
                });
            }
            sum = buf[..n]
                .iter()
                .fold(sum, |s, b| s.wrapping_add(u32::from(*b)));
            out.write_all(&buf[..n])?;
            self.left -= n as u64;
            self.offset += n as u64;
        }
        if entry.checksum.is_some_and(|c| c != sum) {
            return Err(SwuError::Checksum {
                name: entry.name.clone(),
            });
        }
        Ok(entry.size)
    }

    /// The current entry's content in memory, for small entries only.
    pub fn read_small(&mut self, entry: &Entry, max: u64) -> Result<Vec<u8>, SwuError> {
        let mut v = Vec::with_capacity(entry.size.min(max) as usize);
        self.copy_to(entry, &mut v, max)?;
        Ok(v)
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), SwuError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(SwuError::Truncated {
                name: what.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), SwuError> {
        let got = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += got;
        if got < n {
            return Err(SwuError::Truncated {
                name: what.to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
