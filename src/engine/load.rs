//! `docker save` archives loaded through the engine (`POST /images/load`):
//! how a release from a fleet server brings its images to a device that
//! reaches no registry.

use std::path::Path;

use bollard::query_parameters::ImportImageOptions;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::{Engine, EngineError};

const CHUNK: usize = 256 * 1024;

impl Engine {
    /// Streams the archive at `path` to the engine (never whole in memory)
    /// and answers the image names it carried.
    pub async fn load_image(&self, path: &Path) -> Result<Vec<String>, EngineError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| EngineError::Api(format!("{}: {e}", path.display())))?;
        // A read error ends the stream early; the engine then refuses the
        // truncated archive, which is the error the caller sees.
        let body = futures_util::stream::unfold(Some(file), |f| async move {
            let mut f = f?;
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Bytes::from(buf), Some(f)))
                }
            }
        });
        let mut stream = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        let mut names = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.map(e))?;
            if let Some(err) = info.error {
                return Err(EngineError::Api(err));
            }
            names.extend(loaded_names(info.stream.as_deref().unwrap_or("")));
        }
        if names.is_empty() {
            return Err(EngineError::Api(format!(
                "{}: the engine loaded no named image from it (an archive from `docker save NAME:TAG` carries its names)",
                path.display()
            )));
        }
        Ok(names)
    }
}

/// `Loaded image: web:1\n` (and `Loaded image ID: sha256:...` for an
/// untagged one, which no target can name).
fn loaded_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Loaded image: "))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_from_the_engines_words() {
        let names: Vec<String> = super::loaded_names(
            "Loaded image: web:1\nLoaded image ID: sha256:abc\nLoaded image: reg:5000/db:2\n",
        )
        .collect();
        assert_eq!(names, ["web:1", "reg:5000/db:2"]);
    }
}
