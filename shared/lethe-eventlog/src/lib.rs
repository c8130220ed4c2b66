//! Lethe's append-only, encrypted event log: the [`EventStore`] contract, the stored record format
//! and its versions, the on-disk layout and its migrations, and the embedded sled backend with
//! group commit, erasure fences and key-epoch rotation.
#![forbid(unsafe_code)]

pub mod backup;
mod chunk_files;
pub mod codec;
mod error;
pub mod layout;
mod sled_log;
mod store;
mod unindexed;

pub use backup::{restore, BackupFile, BackupHeader, BackupReport, RestoreReport};
pub use chunk_files::{CHUNKS_DIR, DEFAULT_CHUNK_CACHE_TAIL_BYTES, DEFAULT_CHUNK_FILE_MAX_BYTES};
pub use error::{LogError, Result};
pub use sled_log::{
    LogConfig, RawChunkReader, SledEventLog, DEFAULT_CHUNK_FILE_MIN_BYTES, DEFAULT_DEFER_LINGER, DEFAULT_DEFER_WINDOW,
    DEFAULT_MAX_UNINDEXED_RUNS, LOG_DIR,
};
pub use store::{
    AppendDone, AppendRequest, Appended, ErasureReceipt, EventStore, IndexedRuns, Note, RetentionReport,
    RotationReport, SubjectState, SubjectVerify, TakesNote, VerifyReport,
};
