//! Chunk files: where the log keeps the bytes of its larger chunks, outside sled (layout 7).
//!
//! sled keeps a value inside its B-tree leaf and rewrites the leaf whole each time it consolidates or
//! splits it, and a leaf past 128 KiB goes to a file of its own, synced twice. A leaf of 64 KB chunks
//! was therefore written many times over. A chunk never changes once written (the log is
//! append-only), so it needs no tree: its bytes are appended to a chunk file (`log/chunks/`), and
//! its `e/<pos>` value in sled is a *pointer* (format byte 5: file, offset, length, CRC-32). A chunk
//! under [`crate::LogConfig::chunk_file_min_bytes`] stays in sled, where a small value costs less
//! than a file write and its sync.
//!
//! Crash safety. The writer syncs the chunk files it wrote (and the directory, after creating a
//! file) before it applies the batch that holds their pointers, so no pointer sled recovers can
//! point past durable bytes, whatever sled makes durable on its own. The same batch stores where the
//! chunk files end (`m/chunk_end`): an open cuts off what lies past it (the chunks of a group whose
//! batch never became durable, never acknowledged) and removes later files. Chunk files are only
//! ever appended to; erasure destroys keys, so a chunk file holds ciphertext that outlives its key
//! like the rest of the log.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::layout::{be_u32, be_u64};
use crate::{LogError, Result};

/// The first byte of an `e/` value that points into a chunk file (chunk formats are 1–4).
pub(crate) const POINTER_FORMAT: u8 = 5;
/// The directory of the chunk files, inside the log database's directory (so that whatever moves
/// or copies the log, a restore's move aside included, takes its chunks along).
pub const CHUNKS_DIR: &str = "chunks";
/// The default [`crate::LogConfig::chunk_file_max_bytes`]: a new chunk file is started once the
/// current one would pass this size.
pub const DEFAULT_CHUNK_FILE_MAX_BYTES: u64 = 256 << 20;
/// Most chunk files kept open for reading at once (a replay of a large log walks them all).
const MAX_OPEN_FILES: usize = 64;

/// Where a chunk's bytes are: file number, offset, length, and their CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkPointer {
    pub file: u32,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

impl ChunkPointer {
    const LEN: usize = 1 + 4 + 8 + 4 + 4;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        v[0] = POINTER_FORMAT;
        v[1..5].copy_from_slice(&self.file.to_be_bytes());
        v[5..13].copy_from_slice(&self.offset.to_be_bytes());
        v[13..17].copy_from_slice(&self.len.to_be_bytes());
        v[17..].copy_from_slice(&self.crc.to_be_bytes());
        v
    }

    /// The pointer an `e/` value holds, or `None` when the value is a chunk itself.
    pub(crate) fn parse(v: &[u8]) -> Option<Result<Self>> {
        if v.first() != Some(&POINTER_FORMAT) {
            return None;
        }
        if v.len() != Self::LEN {
            return Some(Err(LogError::Corrupt("malformed chunk pointer".into())));
        }
        Some((|| {
            Ok(Self {
                file: be_u32(&v[1..5])?,
                offset: be_u64(&v[5..13])?,
                len: be_u32(&v[13..17])?,
                crc: be_u32(&v[17..])?,
            })
        })())
    }
}

/// The value of `m/chunk_end`: the last chunk file a durable pointer names, and its length.
pub(crate) fn end_value(file: u32, len: u64) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&file.to_be_bytes());
    v[4..].copy_from_slice(&len.to_be_bytes());
    v
}

fn parse_end(v: &[u8]) -> Result<(u32, u64)> {
    if v.len() != 12 {
        return Err(LogError::Corrupt("malformed chunk file end".into()));
    }
    Ok((be_u32(&v[..4])?, be_u64(&v[4..])?))
}

fn file_name(file: u32) -> String {
    format!("{file:08}.chunks")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The chunk files of a log, for reading: open files are kept, one handle each.
#[derive(Debug)]
pub(crate) struct ChunkFiles {
    dir: PathBuf,
    open: RwLock<HashMap<u32, Arc<File>>>,
}

impl ChunkFiles {
    /// The chunk files under the log database's directory `log_dir`.
    pub(crate) fn new(log_dir: &Path) -> Self {
        Self { dir: log_dir.join(CHUNKS_DIR), open: RwLock::new(HashMap::new()) }
    }

    /// The bytes of the chunk an `e/` value holds: the value itself, or the chunk its pointer names,
    /// checked against the pointer's CRC.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] for a malformed pointer, a missing or short file, or bytes that fail
    /// their checksum; IO errors.
    pub(crate) fn resolve(&self, value: sled::IVec) -> Result<sled::IVec> {
        match ChunkPointer::parse(&value) {
            None => Ok(value),
            Some(p) => self.read(&p?).map(sled::IVec::from),
        }
    }

    /// `f` of the bytes of the chunk that the `e/` value `value` holds: the value itself, or the bytes
    /// its pointer names, read into `buf` (a reader of many chunks reuses one buffer).
    ///
    /// # Errors
    /// As [`ChunkFiles::resolve`], and `f`'s.
    pub(crate) fn with_chunk<T>(
        &self,
        value: &sled::IVec,
        buf: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        match ChunkPointer::parse(value) {
            None => f(value),
            Some(p) => {
                self.read_into(&p?, buf)?;
                f(buf)
            }
        }
    }

    fn read(&self, p: &ChunkPointer) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(p, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, p: &ChunkPointer, buf: &mut Vec<u8>) -> Result<()> {
        let file = self.handle(p.file)?;
        let name = file_name(p.file);
        // Checked before anything is allocated: a damaged pointer may name any length.
        let size = file.metadata().map_err(|e| LogError::Io { path: self.dir.join(&name), source: e })?.len();
        if p.offset.checked_add(u64::from(p.len)).is_none_or(|end| end > size) {
            return Err(LogError::Corrupt(format!(
                "chunk file {name} ends at {size}, before {} bytes at {}",
                p.len, p.offset
            )));
        }
        buf.clear();
        buf.resize(p.len as usize, 0);
        file.read_exact_at(buf, p.offset).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => {
                LogError::Corrupt(format!("chunk file {name} ends before {} bytes at {}", p.len, p.offset))
            }
            _ => LogError::Io { path: self.dir.join(&name), source: e },
        })?;
        if crc32fast::hash(buf) != p.crc {
            return Err(LogError::Corrupt(format!("chunk file {name}: checksum mismatch at {}", p.offset)));
        }
        Ok(())
    }

    fn handle(&self, file: u32) -> Result<Arc<File>> {
        if let Some(f) = self.open.read().expect("chunk files lock").get(&file) {
            return Ok(Arc::clone(f));
        }
        let path = self.dir.join(file_name(file));
        let f = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(LogError::Corrupt(format!("chunk file {} is missing", file_name(file))));
            }
            Err(e) => return Err(LogError::Io { path, source: e }),
        };
        let mut open = self.open.write().expect("chunk files lock");
        if open.len() >= MAX_OPEN_FILES {
            open.clear();
        }
        open.insert(file, Arc::clone(&f));
        Ok(f)
    }
}

/// The writer's side of the chunk files: appends to the newest one.
#[derive(Debug)]
pub(crate) struct ChunkAppender {
    dir: PathBuf,
    max_file_bytes: u64,
    /// The file appended to (number `file`, `len` bytes); `None` until the first append needs one.
    current: Option<File>,
    file: u32,
    len: u64,
    /// Files rolled over from since the last sync, with where their cached bytes begin and their length.
    unsynced: Vec<(File, u64, u64)>,
    /// A file was created since the last sync: the directory entry must be made durable too.
    dir_unsynced: bool,
    /// Where the bytes of the current file that are still in the page cache begin.
    cached_from: u64,
    /// How many of the newest durable bytes stay in the page cache ([`crate::LogConfig::chunk_cache_tail_bytes`]).
    cached_tail: u64,
}

impl ChunkAppender {
    /// Opens the chunk files of the log database in `log_dir`, whose `m/chunk_end` is `end`: cuts off
    /// whatever lies past it and removes later files. Without an `end`, the files are removed only
    /// when `has_pointers` says no `e/` value points into them (a crash before the first batch with a
    /// pointer became durable). Returns the appender, and the damage found (a file shorter than the
    /// log's pointers need, pointers without an end): the log then refuses appends.
    ///
    /// # Errors
    /// A malformed `end`; IO errors.
    pub(crate) fn open(
        log_dir: &Path,
        end: Option<&[u8]>,
        max_file_bytes: u64,
        has_pointers: impl FnOnce() -> Result<bool>,
    ) -> Result<(Self, Vec<String>)> {
        let dir = log_dir.join(CHUNKS_DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            sync_dir(log_dir)?;
        }
        let (file, len) = end.map(parse_end).transpose()?.unwrap_or((0, 0));
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".chunks"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(number) = number {
                files.push((number, path));
            }
        }
        if end.is_none() && !files.is_empty() && has_pointers()? {
            problems.push("the log points into chunk files but does not say where they end (m/chunk_end)".into());
            let file = files.iter().map(|(n, _)| *n).max().unwrap_or(0);
            return Ok((Self::at(dir, max_file_bytes, None, file, 0), problems));
        }
        let mut changed = false;
        for (number, path) in files {
            // No durable pointer names a later file, nor (with no end) any file.
            if number > file || end.is_none() {
                std::fs::remove_file(&path).map_err(io(&path))?;
                changed = true;
            }
        }
        let mut current = None;
        if end.is_some() {
            let path = dir.join(file_name(file));
            match OpenOptions::new().write(true).open(&path) {
                Ok(f) => {
                    let found = f.metadata().map_err(io(&path))?.len();
                    if found > len {
                        f.set_len(len).map_err(io(&path))?;
                        f.sync_all().map_err(io(&path))?;
                    } else if found < len {
                        problems.push(format!(
                            "chunk file {} holds {found} bytes; the log's pointers need {len}",
                            file_name(file)
                        ));
                    }
                    current = Some(f);
                }
                Err(e) if e.kind() == ErrorKind::NotFound && len == 0 => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    problems.push(format!(
                        "chunk file {} is missing; the log's pointers need {len} bytes of it",
                        file_name(file)
                    ));
                }
                Err(e) => return Err(LogError::Io { path, source: e }),
            }
        }
        if changed {
            sync_dir(&dir)?;
        }
        Ok((Self::at(dir, max_file_bytes, current, file, len), problems))
    }

    fn at(dir: PathBuf, max_file_bytes: u64, current: Option<File>, file: u32, len: u64) -> Self {
        Self {
            dir,
            max_file_bytes,
            current,
            file,
            len,
            unsynced: Vec::new(),
            dir_unsynced: false,
            cached_from: 0,
            cached_tail: DEFAULT_CHUNK_CACHE_TAIL_BYTES,
        }
    }

    /// Keeps only the newest `bytes` of what is durable in the page cache (see [`forget_pages`]).
    pub(crate) fn with_cached_tail(mut self, bytes: u64) -> Self {
        self.cached_tail = bytes;
        self
    }

    /// Appends a chunk's bytes; they are durable after the next [`Self::sync`].
    ///
    /// # Errors
    /// IO errors (the caller stops writing: the file may hold part of the chunk).
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<ChunkPointer> {
        let len = u32::try_from(bytes.len()).map_err(|_| LogError::Corrupt("chunk too large".into()))?;
        if self.current.is_none() || (self.len > 0 && self.len + u64::from(len) > self.max_file_bytes) {
            let next = if self.current.is_some() { self.file + 1 } else { self.file.max(1) };
            let path = self.dir.join(file_name(next));
            let f = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io(&path))?;
            if let Some(old) = self.current.replace(f) {
                self.unsynced.push((old, self.cached_from, self.len));
            }
            self.file = next;
            self.len = 0;
            self.cached_from = 0;
            self.dir_unsynced = true;
        }
        let f = self.current.as_ref().expect("a current file");
        f.write_all_at(bytes, self.len).map_err(io(&self.dir.join(file_name(self.file))))?;
        let pointer = ChunkPointer { file: self.file, offset: self.len, len, crc: crc32fast::hash(bytes) };
        self.len += u64::from(len);
        Ok(pointer)
    }

    /// Makes every appended byte durable, and the directory entries of new files; then lets the kernel
    /// drop all but the newest `cached_tail` durable bytes from the page cache. Returns the value of
    /// `m/chunk_end` for the batch that holds the pointers.
    ///
    /// # Errors
    /// IO errors.
    pub(crate) fn sync(&mut self) -> Result<[u8; 12]> {
        // The newest `cached_tail` bytes stay cached, across the files rolled over from (oldest first
        // in `unsynced`) and the current one.
        let mut newer = self.len;
        for (f, from, len) in std::mem::take(&mut self.unsynced).into_iter().rev() {
            // A file rolled over from: its name is gone with its number, the folder names it well enough.
            f.sync_data().map_err(io(&self.dir))?;
            forget_pages(&f, from, len.saturating_sub(self.cached_tail.saturating_sub(newer)));
            newer = newer.saturating_add(len);
        }
        if let Some(f) = &self.current {
            f.sync_data().map_err(io(&self.dir.join(file_name(self.file))))?;
            let keep_from = self.len.saturating_sub(self.cached_tail);
            // At least a megabyte at a time; every byte at once when none is to stay cached.
            if keep_from >= self.cached_from + FORGET_AT_LEAST.min(self.cached_tail).max(1) {
                forget_pages(f, self.cached_from, keep_from);
                self.cached_from = keep_from;
            }
        }
        if std::mem::take(&mut self.dir_unsynced) {
            sync_dir(&self.dir)?;
        }
        Ok(end_value(self.file, self.len))
    }
}

/// The default [`crate::LogConfig::chunk_cache_tail_bytes`]: a couple of seconds of receipts at full
/// load, which the feature views (they catch up every second) read back.
pub const DEFAULT_CHUNK_CACHE_TAIL_BYTES: u64 = 64 << 20;

/// The fewest bytes dropped from the page cache at once (one call per megabyte, not per group).
const FORGET_AT_LEAST: u64 = 1 << 20;

/// Lets the kernel drop the page cache of the durable bytes `from..to` of `file`. A chunk is written
/// once; past the newest ones (which readers following the log read back at once), chunks are read
/// rarely (replay at open, exports, backups). Kept cached, they would take fresh memory for every chunk
/// written, and push out pages that are read. A refusal changes nothing but memory.
fn forget_pages(file: &File, from: u64, to: u64) {
    let Some(len) = to.checked_sub(from).and_then(std::num::NonZeroU64::new) else { return };
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed) {
        tracing::debug!(error = %e, "the kernel kept a chunk file's pages");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_reads_back_and_anything_else_is_a_chunk_or_damage() {
        let p = ChunkPointer { file: 7, offset: 1 << 40, len: 65_000, crc: 0xDEAD_BEEF };
        let v = p.encode();
        assert_eq!(v[0], POINTER_FORMAT);
        assert_eq!(ChunkPointer::parse(&v).expect("a pointer").expect("well formed"), p);
        // Chunk formats 1–4 are not pointers.
        for format in 1..=4u8 {
            assert!(ChunkPointer::parse(&[format, 0, 0]).is_none());
        }
        assert!(ChunkPointer::parse(&[]).is_none());
        let short = ChunkPointer::parse(&v[..20]).expect("a pointer");
        assert_eq!(short.expect_err("too short").code(), "log_corrupt");
        assert_eq!(parse_end(&end_value(3, 99)).expect("end"), (3, 99));
        assert!(parse_end(&[0; 11]).is_err());
    }
}
