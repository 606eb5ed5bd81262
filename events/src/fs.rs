//! Atomic file writes: every report either appears whole or not at all.
use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

/// Why a file could not be written; names the file and the step.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}: cannot write the temporary file", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot rename the temporary file over it", path.display())]
    Rename {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `bytes` to a temporary file beside `path` (named after the path and this
/// process, so two runs writing into one folder do not collide), flushes it to disk,
/// then renames it over `path`: a reader never sees half a file, and a crash leaves the
/// previous file or the new one. On failure the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let tmp = temp_path(path);
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|source| WriteError::Write {
            path: tmp.clone(),
            source,
        });
    let done = written.and_then(|()| {
        fs::rename(&tmp, path).map_err(|source| WriteError::Rename {
            path: path.to_owned(),
            source,
        })
    });
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// `dir/.name.<pid>.tmp` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("events-fs-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = scratch("replace");
        let path = dir.join("report.json");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_folder_names_the_file() {
        let dir = scratch("missing");
        let path = dir.join("no/such/dir/report.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, WriteError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("report.json"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
