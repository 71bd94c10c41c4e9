//! One process per results file: an operating-system lock on `RESULTS.lock`,
//! taken before the results file or journal is read, held until the process
//! ends (the system releases it even after `kill -9`). The file names its
//! holder (process id and command) so that a second run can say who has it.
//! The file is left in place: removing it would let two processes lock two
//! different files of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::exit::Fatal;

/// The lock file of a results file: `RESULTS.lock`.
pub fn path_for(results: &Path) -> PathBuf {
    let mut name = results
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    results.with_file_name(name)
}

/// The lock on a results file, released when dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the lock on `results` for `command` (what the holder is running,
/// shown to a second run), or says which process holds it.
pub fn take(results: &Path, command: &str) -> Result<RunLock, Fatal> {
    let path = path_for(results);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            Fatal::usage(format!(
                "cannot create the lock file {} beside the results file: {e}",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another digidesk-upload process".to_string()
            } else {
                holder.to_string()
            };
            return Err(Fatal::usage(format!(
                "{} is in use by {holder}. One run per results file: wait for it to finish (or stop it), then --resume",
                results.display()
            )));
        }
        Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            tracing::warn!(
                "the file system of {} cannot lock files: nothing stops a second run on the same results file",
                path.display()
            );
            return Ok(RunLock { _file: file });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Fatal::usage(format!("cannot lock {}: {e}", path.display())))
        }
    }
    let holder = format!("process {} (`{command}`)\n", std::process::id());
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(holder.as_bytes()));
    if let Err(e) = written {
        // The lock holds all the same; only the message of a second run is poorer.
        tracing::debug!("cannot write {}: {e}", path.display());
    }
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_results_file_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r.csv");
        let first = take(&results, "digidesk-upload send a.csv").unwrap();
        let e = take(&results, "digidesk-upload send b.csv").unwrap_err();
        assert_eq!(e.exit, crate::Exit::Usage);
        let pid = format!(
            "process {} (`digidesk-upload send a.csv`)",
            std::process::id()
        );
        assert!(e.message.contains(&pid), "{}", e.message);
        drop(first);
        take(&results, "digidesk-upload send b.csv").unwrap();
    }
}
