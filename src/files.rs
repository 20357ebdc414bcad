//! Files cutover writes: private, and durable where they must be.
//!
//! What cutover writes — the state database, the event log, reports, saved plans, traces,
//! Maildir output, PST exports, autocomplete exports, initial passwords, scripts — holds
//! addresses, subjects, whole messages and credentials, so
//! every folder it creates is `0700` and every file `0600`. The modes are given at creation
//! and never forced afterwards, so a stricter umask still applies (`0600 & !umask`), and
//! folders that already exist keep theirs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Mode of every folder cutover creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file cutover creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents, each `0700` (less what the umask takes away).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Options that create a file `0600` (less what the umask takes away); add `write`,
/// `create`/`create_new`, `append` or `truncate` as needed.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Creates `path` if missing (`0600`), leaving an existing file as it is.
pub fn touch(path: &Path) -> io::Result<()> {
    options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old content or the new,
/// never a mix: written to a temporary file beside it (`0600`), which is fsynced, renamed over
/// `path`, and the folder fsynced so the rename itself survives a power loss. The folder is
/// created (`0700`) when missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            create_dir_all(dir)?;
            dir
        }
        None => Path::new("."),
    };
    // Beside it under its own name plus a suffix: two files of one folder never share one.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp-cutover");
    let tmp = path.with_file_name(tmp_name);
    // Left by a crash, perhaps with another mode: start over rather than reuse it.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = options().write(true).create_new(true).open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Fsyncs a folder, so entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn written_files_and_folders_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("a/b/report.md");
        write_atomically(&report, b"first").unwrap();
        write_atomically(&report, b"second").unwrap();
        assert_eq!(fs::read(&report).unwrap(), b"second");
        assert_eq!(mode(&report) & 0o077, 0, "{:o}", mode(&report));
        assert_eq!(mode(&dir.path().join("a")) & 0o077, 0);
        assert_eq!(mode(&dir.path().join("a/b")) & 0o077, 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1
        );
        // A temporary file a crash left behind, world-readable, is not reused.
        let tmp = dir.path().join("a/b/report.md.tmp-cutover");
        fs::write(&tmp, b"stale").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&report, b"third").unwrap();
        assert_eq!(mode(&report) & 0o077, 0);
    }
}
