//! `sw-description`, the manifest at the head of a `.swu`, read as holdfast
//! needs it (docs/hawkbit.md): the version, the hardware revisions it is
//! for, and the files to apply with their sha256. Only holdfast's own entry
//! types are taken. Whatever else SWUpdate knows (scripts, bootenv,
//! selections, `#RE:` revisions, ...) is refused by name rather than
//! skipped: applying part of what the author wrote is worse than applying
//! none of it.

mod entry;
pub mod libconfig;
mod version;

use libconfig::{Node, Pos, Setting, SyntaxError, Value};

use crate::names::AppName;
use crate::text::{no_controls, shown};

pub use version::is_swupdate_version;

const NOT_HANDLED: &str = "holdfast reads version, description, hardware-compatibility, \
                           images and board groups, and refuses the rest rather than skip \
                           something meant to be applied";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// `software.version`, in one of SWUpdate's forms.
    pub version: String,
    pub description: Option<String>,
    /// Empty: any hardware revision.
    pub hardware_compatibility: Vec<String>,
    /// In the order listed; exactly one is a target or a compose file.
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// A plain file name (no `/`), unique in the description.
    pub filename: String,
    pub kind: ImageKind,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// `holdfast-target`: the target state JSON.
    Target,
    /// `holdfast-compose`: a compose file for one app.
    Compose { app: AppName },
    /// `holdfast-image`: a `docker save` archive.
    Image,
}

#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    #[error("sw-description: {}", shown(&.0.to_string()))]
    Syntax(#[from] SyntaxError),
    #[error("sw-description has no {}", shown(path))]
    Missing { path: String },
    #[error(
        "sw-description line {}, column {}: {} is {found}; holdfast needs {want}",
        at.line, at.col, shown(path)
    )]
    WrongType {
        path: String,
        at: Pos,
        found: &'static str,
        want: &'static str,
    },
    #[error("sw-description line {}, column {}: {} {}", at.line, at.col, shown(path), no_controls(why))]
    Invalid { path: String, at: Pos, why: String },
    #[error(
        "sw-description line {}, column {}: holdfast does not handle {}: {}",
        at.line, at.col, shown(path), no_controls(why)
    )]
    Unhandled { path: String, at: Pos, why: String },
    #[error("sw-description lists no images for this device: {}", no_images(board.as_deref(), groups))]
    NoImages {
        board: Option<String>,
        /// The groups in `software`, boards or selections.
        groups: Vec<String>,
    },
    #[error(
        "sw-description must list exactly one entry of type holdfast-target or \
         holdfast-compose; it lists {}",
        if found.is_empty() { "none".to_owned() } else { shown(&found.join(", ")) }
    )]
    ContentCount { found: Vec<String> },
}

fn no_images(board: Option<&str>, groups: &[String]) -> String {
    let groups = shown(
        &groups
            .iter()
            .map(|g| format!("software.{g}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let board = board.map(shown);
    let board = board.as_deref();
    match (board, groups.is_empty()) {
        (Some(b), true) => format!("neither software.images nor a group software.{b}"),
        (Some(b), false) => {
            format!("neither software.images nor a group software.{b} (there are {groups})")
        }
        (None, true) => "no software.images".to_owned(),
        (None, false) => {
            format!("no software.images, and no board name was given to choose among {groups}")
        }
    }
}

/// Where `hardware-compatibility` and `images` were found, with their
/// paths for messages.
#[derive(Default)]
struct Found<'a> {
    hardware: Option<(&'a Setting, String)>,
    images: Option<(&'a Setting, String)>,
}

impl Description {
    /// `src` is the `sw-description` entry (at most 64 KiB). `board` is the
    /// device's board name (what it sends hawkBit as `hw_boardname`): when
    /// `software.<board>` is a group, its `hardware-compatibility` and
    /// `images` come before the top-level ones, each on its own, the way
    /// SWUpdate looks them up. Other boards' groups are left alone.
    pub fn parse(src: &[u8], board: Option<&str>) -> Result<Self, DescriptionError> {
        let root = libconfig::parse(src)?;
        let mut software = None;
        for s in &root {
            if s.name != "software" {
                let why = "holdfast reads only the software group";
                return Err(unhandled(&s.name, s.pos, why));
            }
            software = Some(s);
        }
        let software = software.ok_or_else(|| missing("software"))?;
        let mut version = None;
        let mut description = None;
        let mut found = Found::default();
        let mut groups: Vec<&Setting> = Vec::new();
        for s in group(&software.value, "software")? {
            let path = format!("software.{}", s.name);
            match s.name.as_str() {
                "version" => version = Some((string(&s.value, &path)?, s.value.pos)),
                "description" => description = Some(string(&s.value, &path)?.to_owned()),
                "hardware-compatibility" => found.hardware = Some((s, path)),
                "images" => found.images = Some((s, path)),
                _ if matches!(s.value.value, Value::Group(_)) => groups.push(s),
                _ => return Err(unhandled(&path, s.pos, NOT_HANDLED)),
            }
        }
        let (version, at) = version.ok_or_else(|| missing("software.version"))?;
        if !is_swupdate_version(version) {
            let why = format!(
                "\"{}\" is not a SWUpdate version: up to four dot-separated numbers \
                 (1.2.3.4) or semver (1.2.3-rc.1)",
                shown(version)
            );
            return Err(invalid("software.version", at, why));
        }
        if let Some(g) = board.and_then(|b| groups.iter().find(|g| g.name == b)) {
            let own = board_group(g)?;
            found.hardware = own.hardware.or(found.hardware);
            found.images = own.images.or(found.images);
        }
        let hardware_compatibility = match found.hardware {
            Some((s, path)) => hardware(&s.value, &path)?,
            None => Vec::new(),
        };
        let Some((images_at, images_path)) = found.images else {
            return Err(DescriptionError::NoImages {
                board: board.map(str::to_owned),
                groups: groups.iter().map(|g| g.name.clone()).collect(),
            });
        };
        Ok(Self {
            version: version.to_owned(),
            description,
            hardware_compatibility,
            images: entry::images(&images_at.value, &images_path)?,
        })
    }

    /// The target or compose entry.
    pub fn content(&self) -> Option<&ImageEntry> {
        self.images.iter().find(|e| e.kind != ImageKind::Image)
    }

    pub fn entry(&self, filename: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|e| e.filename == filename)
    }
}

/// What `software.<board>` holds for holdfast.
fn board_group(g: &Setting) -> Result<Found<'_>, DescriptionError> {
    let mut own = Found::default();
    for s in group(&g.value, &format!("software.{}", g.name))? {
        let path = format!("software.{}.{}", g.name, s.name);
        match s.name.as_str() {
            "hardware-compatibility" => own.hardware = Some((s, path)),
            "images" => own.images = Some((s, path)),
            _ if matches!(s.value.value, Value::Group(_)) => {
                let why = "SWUpdate's selections (-e SET,MODE) are not handled; \
                           put hardware-compatibility and images in the board group";
                return Err(unhandled(&path, s.pos, why));
            }
            _ => {
                let why = "a board group holds hardware-compatibility and images, and \
                           holdfast refuses the rest rather than skip something meant to \
                           be applied";
                return Err(unhandled(&path, s.pos, why));
            }
        }
    }
    Ok(own)
}

fn missing(path: &str) -> DescriptionError {
    DescriptionError::Missing {
        path: path.to_owned(),
    }
}

fn invalid(path: &str, at: Pos, why: impl Into<String>) -> DescriptionError {
    DescriptionError::Invalid {
        path: path.to_owned(),
        at,
        why: why.into(),
    }
}

fn unhandled(path: &str, at: Pos, why: impl Into<String>) -> DescriptionError {
    DescriptionError::Unhandled {
        path: path.to_owned(),
        at,
        why: why.into(),
    }
}

fn wrong(node: &Node, path: &str, want: &'static str) -> DescriptionError {
    DescriptionError::WrongType {
        path: path.to_owned(),
        at: node.pos,
        found: node.value.kind(),
        want,
    }
}

fn string<'a>(node: &'a Node, path: &str) -> Result<&'a str, DescriptionError> {
    match &node.value {
        Value::Str(s) => Ok(s),
        _ => Err(wrong(node, path, "a string")),
    }
}

fn group<'a>(node: &'a Node, path: &str) -> Result<&'a [Setting], DescriptionError> {
    match &node.value {
        Value::Group(g) => Ok(g),
        _ => Err(wrong(node, path, "a group { }")),
    }
}

fn hardware(node: &Node, path: &str) -> Result<Vec<String>, DescriptionError> {
    let (Value::Array(items) | Value::List(items)) = &node.value else {
        return Err(wrong(node, path, "an array [ ] of strings"));
    };
    if items.is_empty() {
        let why = "is empty; leave it out to allow every hardware revision";
        return Err(invalid(path, node.pos, why));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let rev = string(item, &path)?;
        if rev.is_empty() {
            return Err(invalid(&path, item.pos, "is empty"));
        }
        if rev.starts_with("#RE:") {
            let why = "SWUpdate's regular expressions are not handled; list the revisions";
            return Err(unhandled(&path, item.pos, why));
        }
        out.push(rev.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
