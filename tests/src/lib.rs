//! Cross-crate scenarios live in `tests/tests/`. This library holds only what the test binaries and
//! the `crash_writer` helper process must agree on: the master key of test data directories and the
//! wire format of the crash test (event payloads and acknowledgement lines).
#![forbid(unsafe_code)]

/// The master secret of every test data directory (never a real key).
pub const TEST_MASTER_HEX: &str = "4c657468652074657374206d6173746572206b6579202d206e6f742072656121";

/// The crash test's protocol between `crash_writer` and the test that kills it.
pub mod crash {
    use std::fmt;

    /// How many subjects the crash writer appends to.
    pub const SUBJECTS: usize = 6;

    /// The external id of crash-test subject `i`.
    pub fn subject_id(i: usize) -> String {
        format!("crash-subject-{i}")
    }

    /// What one event of the crash test carries: which batch it belongs to, its place in the batch
    /// and the batch's size, so that a torn batch can be recognised after a crash.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BatchEvent {
        pub subject: usize,
        pub batch: u64,
        pub index: u32,
        pub size: u32,
    }

    impl BatchEvent {
        /// The payload bytes.
        pub fn encode(&self) -> Vec<u8> {
            format!("subject={};batch={};index={};size={}", self.subject, self.batch, self.index, self.size)
                .into_bytes()
        }

        /// Parses [`Self::encode`]; `None` for anything else.
        pub fn parse(bytes: &[u8]) -> Option<Self> {
            let text = std::str::from_utf8(bytes).ok()?;
            let mut fields = text.split(';').map(|kv| kv.split_once('='));
            let mut next = |name: &str| -> Option<u64> {
                let (k, v) = fields.next()??;
                (k == name).then(|| v.parse().ok())?
            };
            let ev = Self {
                subject: usize::try_from(next("subject")?).ok()?,
                batch: next("batch")?,
                index: u32::try_from(next("index")?).ok()?,
                size: u32::try_from(next("size")?).ok()?,
            };
            fields.next().is_none().then_some(ev)
        }
    }

    /// A line `crash_writer` prints to stdout, each flushed as soon as it is true.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Line {
        /// The log is open with this incarnation.
        Opened { incarnation: u32 },
        /// An append was acknowledged (so it is durable).
        Acked { batch: u64, subject: usize, size: u32, first_position: u64, last_position: u64, last_seq: u64 },
    }

    impl fmt::Display for Line {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Opened { incarnation } => write!(f, "opened {incarnation}"),
                Self::Acked { batch, subject, size, first_position, last_position, last_seq } => {
                    write!(f, "acked {batch} {subject} {size} {first_position} {last_position} {last_seq}")
                }
            }
        }
    }

    impl Line {
        /// Parses a line printed by [`fmt::Display`]; `None` for a torn or foreign line.
        pub fn parse(line: &str) -> Option<Self> {
            let mut words = line.split(' ');
            let tag = words.next()?;
            let nums: Vec<u64> = words.map(str::parse).collect::<Result<_, _>>().ok()?;
            match (tag, nums.as_slice()) {
                ("opened", [inc]) => Some(Self::Opened { incarnation: u32::try_from(*inc).ok()? }),
                ("acked", [batch, subject, size, first, last, seq]) => Some(Self::Acked {
                    batch: *batch,
                    subject: usize::try_from(*subject).ok()?,
                    size: u32::try_from(*size).ok()?,
                    first_position: *first,
                    last_position: *last,
                    last_seq: *seq,
                }),
                _ => None,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn payload_and_lines_round_trip() {
            let ev = BatchEvent { subject: 3, batch: 2_000_017, index: 4, size: 19 };
            assert_eq!(BatchEvent::parse(&ev.encode()), Some(ev));
            assert_eq!(BatchEvent::parse(b"subject=3;batch=1;index=0"), None);
            assert_eq!(BatchEvent::parse(b"subject=3;batch=1;index=0;size=1;x=2"), None);
            let acked =
                Line::Acked { batch: 9, subject: 1, size: 3, first_position: 10, last_position: 12, last_seq: 7 };
            assert_eq!(Line::parse(&acked.to_string()), Some(acked));
            assert_eq!(Line::parse("opened 4"), Some(Line::Opened { incarnation: 4 }));
            assert_eq!(Line::parse("acked 9 1 3 10"), None);
        }
    }
}
