//! What the unit tests of this crate share.

use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{Purpose, UtcMicros};

/// A consent record granting `purposes` (made for a `userId` when `user`).
pub(crate) fn grant(purposes: &[&str], user: bool) -> ConsentRecord {
    ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at: UtcMicros::now(),
        jurisdiction: "EU".into(),
        method: ConsentMethod::Api,
        notice: NoticeRef { id: "banner".into(), version: 1, content_hash: String::new() },
        choices: purposes
            .iter()
            .map(|p| PurposeChoice {
                purpose: Purpose::parse(p).unwrap(),
                granted: true,
                legal_basis: "consent".into(),
            })
            .collect(),
        recipients: vec![],
        locale: "en".into(),
        gpc: false,
        sdk_version: None,
        subject_is_user: user,
    }
}
