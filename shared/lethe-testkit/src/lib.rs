//! Helpers shared by Lethe's test suites: looking at a data directory as raw bytes (the privacy
//! tests search it for plaintext that must not be there), reopening sled right after a drop, and a
//! banner's consent record. A dev-dependency only: no service links it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every regular file under `dir`, recursively, sorted.
///
/// # Panics
/// A directory or entry cannot be read.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read directory") {
            let entry = entry.expect("directory entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Every regular file under `dir` with its bytes, sorted by path. A file removed between the
/// listing and the read is left out; any other file that cannot be read fails the test (a scan for
/// what must not be on disk may not skip a file it could not look at).
///
/// # Panics
/// A file cannot be read for another reason than its removal.
pub fn file_contents_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .filter_map(|p| match std::fs::read(&p) {
            Ok(bytes) => Some((p, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {}: {e}", p.display()),
        })
        .collect()
}

/// Whether `needle` occurs in `haystack` (an empty needle occurs everywhere).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` that hold `needle`, each with the offset of its first occurrence.
///
/// # Panics
/// An empty needle (it would be found everywhere), or as [`file_contents_under`].
pub fn find_in_files(dir: &Path, needle: &[u8]) -> Vec<(PathBuf, usize)> {
    assert!(!needle.is_empty(), "an empty needle is in every file");
    file_contents_under(dir)
        .into_iter()
        .filter_map(|(p, bytes)| bytes.windows(needle.len()).position(|w| w == needle).map(|at| (p, at)))
        .collect()
}

/// Opens a sled database, waiting up to 5 s for a just-dropped handle's background threads to
/// release the file lock (they let go a moment after the drop).
///
/// # Panics
/// The database cannot be opened, or stays locked.
pub fn sled_open_retrying(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open sled at {}: {e}", path.display()),
        }
    }
}

/// The consent record of a choice made on the banner (EU, notice `banner` version 1): each purpose
/// of `choices` granted or denied, under a random record id.
///
/// # Panics
/// A purpose name is not valid.
#[must_use]
pub fn banner_record(choices: &[(&str, bool)], collected_at: lethe_domain::UtcMicros) -> lethe_consent::ConsentRecord {
    use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
    ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at,
        jurisdiction: "EU".into(),
        method: ConsentMethod::Banner,
        notice: NoticeRef { id: "banner".into(), version: 1, content_hash: "test".into() },
        choices: choices
            .iter()
            .map(|(p, granted)| PurposeChoice {
                purpose: lethe_domain::Purpose::parse(p).expect("a valid purpose"),
                granted: *granted,
                legal_basis: "consent".into(),
            })
            .collect(),
        recipients: vec![],
        locale: "en".into(),
        gpc: false,
        sdk_version: None,
        subject_is_user: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_at_any_depth_and_needles_at_their_first_offset() {
        let dir = std::env::temp_dir().join(format!("lethe-testkit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("top"), b"xxneedle-needle").unwrap();
        std::fs::write(dir.join("a/b/deep"), b"needle").unwrap();
        std::fs::write(dir.join("a/none"), b"nothing here").unwrap();
        let files = files_under(&dir);
        assert_eq!(files, vec![dir.join("a/b/deep"), dir.join("a/none"), dir.join("top")]);
        assert_eq!(find_in_files(&dir, b"needle"), vec![(dir.join("a/b/deep"), 0), (dir.join("top"), 2)]);
        assert!(find_in_files(&dir, b"absent").is_empty());
        assert!(contains(b"abc", b"bc") && !contains(b"abc", b"cb") && contains(b"abc", b""));
        assert_eq!(file_contents_under(&dir)[1], (dir.join("a/none"), b"nothing here".to_vec()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sled_reopens_once_the_dropped_handle_lets_go() {
        let dir = std::env::temp_dir().join(format!("lethe-testkit-sled-{}", std::process::id()));
        let db = sled::open(&dir).unwrap();
        db.insert(b"k", b"v").unwrap();
        db.flush().unwrap();
        drop(db);
        let db = sled_open_retrying(&dir);
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
