//! The entries of `images`: holdfast's three types, each file named
//! plainly, listed once, with its sha256.

use super::libconfig::{Node, Setting, Value};
use super::{group, invalid, string, unhandled, wrong, DescriptionError, ImageEntry, ImageKind};
use crate::names::AppName;

/// Longest entry name: NAME_MAX, since images are written under it.
const MAX_FILENAME: usize = 255;
const SIGNATURE: &str = "sw-description.sig";

pub(super) fn images(node: &Node, path: &str) -> Result<Vec<ImageEntry>, DescriptionError> {
    let Value::List(items) = &node.value else {
        return Err(wrong(node, path, "a list ( ) of groups"));
    };
    let mut out: Vec<ImageEntry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let entry = image(item, &path)?;
        if let Some(j) = out.iter().position(|e| e.filename == entry.filename) {
            let why = format!(
                "lists {} again (also entry {j}); file names must be unique",
                entry.filename
            );
            return Err(invalid(&path, item.pos, why));
        }
        out.push(entry);
    }
    let content: Vec<String> = out
        .iter()
        .filter(|e| e.kind != ImageKind::Image)
        .map(|e| e.filename.clone())
        .collect();
    if content.len() != 1 {
        return Err(DescriptionError::ContentCount { found: content });
    }
    Ok(out)
}

fn image(node: &Node, path: &str) -> Result<ImageEntry, DescriptionError> {
    let mut filename = None;
    let mut kind = None;
    let mut sha256 = None;
    let mut properties = None;
    for s in group(node, path)? {
        let field = format!("{path}.{}", s.name);
        let value = (s, field);
        match s.name.as_str() {
            "filename" => filename = Some(value),
            "type" => kind = Some(value),
            "sha256" => sha256 = Some(value),
            "properties" => properties = Some(value),
            _ => {
                let why = "holdfast's entries have filename, type, sha256 and (for \
                           holdfast-compose) properties; SWUpdate would act on this one";
                return Err(unhandled(&value.1, s.pos, why));
            }
        }
    }
    let (s, field) = filename.ok_or_else(|| invalid(path, node.pos, "has no filename"))?;
    let name = string(&s.value, &field)?;
    check_filename(name).map_err(|why| invalid(&field, s.value.pos, why))?;
    let path = format!("{path} ({name})");
    let why = "has no type (holdfast-target, holdfast-compose or holdfast-image)";
    let (t, type_path) = kind.ok_or_else(|| invalid(&path, node.pos, why))?;
    let why = "has no sha256; holdfast never applies a file it cannot check";
    let (h, sha_path) = sha256.ok_or_else(|| invalid(&path, node.pos, why))?;
    let sha256 = parse_sha256(string(&h.value, &sha_path)?)
        .ok_or_else(|| invalid(&sha_path, h.value.pos, "is not 64 hex digits"))?;
    let kind = match string(&t.value, &type_path)? {
        "holdfast-target" => ImageKind::Target,
        "holdfast-image" => ImageKind::Image,
        "holdfast-compose" => ImageKind::Compose {
            app: app(properties.as_ref(), node, &path)?,
        },
        other => {
            let why = format!(
                "is {other:?}, not a type holdfast handles (holdfast-target, \
                 holdfast-compose, holdfast-image)"
            );
            return Err(invalid(&type_path, t.value.pos, why));
        }
    };
    if let (Some((p, field)), ImageKind::Target | ImageKind::Image) = (&properties, &kind) {
        let why = "only holdfast-compose entries take properties (app)";
        return Err(unhandled(field, p.pos, why));
    }
    Ok(ImageEntry {
        filename: name.to_owned(),
        kind,
        sha256,
    })
}

/// The `app` of a compose entry's `properties = { app = "NAME"; }`.
fn app(
    properties: Option<&(&Setting, String)>,
    entry: &Node,
    path: &str,
) -> Result<AppName, DescriptionError> {
    let why = "is holdfast-compose and needs properties = { app = \"NAME\"; }";
    let (p, field) = properties.ok_or_else(|| invalid(path, entry.pos, why))?;
    let mut app = None;
    for s in group(&p.value, field)? {
        let sub = format!("{field}.{}", s.name);
        if s.name != "app" {
            return Err(unhandled(&sub, s.pos, "holdfast-compose takes only app"));
        }
        let name = string(&s.value, &sub)?;
        let named = AppName::new(name).map_err(|e| invalid(&sub, s.value.pos, e.to_string()))?;
        app = Some(named);
    }
    app.ok_or_else(|| invalid(field, p.value.pos, "has no app"))
}

fn check_filename(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_FILENAME {
        return Err(format!("is longer than {MAX_FILENAME} bytes"));
    }
    if name.contains('/') || name == "." || name == ".." {
        return Err(format!("{name:?} is not a plain file name"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} holds a control character"));
    }
    if name == crate::swu::DESCRIPTION || name == SIGNATURE {
        return Err(format!("{name} is the name of SWUpdate's own entry"));
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
