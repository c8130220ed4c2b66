//! Consent as event-sourced state: the consent record every change writes (R-CONSENT-1, the fields of
//! ISO/IEC TS 27560 and the Kantara Consent Receipt), and the projection that folds a subject's
//! records into the state per purpose at any instant. No IO: the caller feeds it events from the log.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use lethe_domain::{Purpose, UtcMicros};
use serde::{Deserialize, Serialize};

/// The event type of a consent change.
pub const CONSENT_CHANGED: &str = "consent.changed";
/// The payload schema version of [`ConsentRecord`].
pub const CONSENT_SCHEMA_VERSION: u16 = 1;

/// How the choice was expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    Banner,
    Api,
    /// A Global Privacy Control signal (`Sec-GPC: 1` or `navigator.globalPrivacyControl`).
    Gpc,
    Import,
}

/// The notice the subject was shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRef {
    pub id: String,
    pub version: u32,
    /// SHA-256 (hex) of the notice's canonical form, computed by the policy crate.
    pub content_hash: String,
}

/// One purpose in a consent change, with the legal basis it is processed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeChoice {
    pub purpose: Purpose,
    pub granted: bool,
    pub legal_basis: String,
}

/// A consent change as stored (encrypted) in the log: R-CONSENT-1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub record_id: uuid::Uuid,
    pub collected_at: UtcMicros,
    pub jurisdiction: String,
    pub method: ConsentMethod,
    pub notice: NoticeRef,
    pub choices: Vec<PurposeChoice>,
    pub recipients: Vec<String>,
    pub locale: String,
    pub gpc: bool,
    pub sdk_version: Option<String>,
    /// Whether the record was made for a `userId` (a signed-in account), not an `anonymousId`:
    /// anonymous ids and user ids share one pseudonym space, so this is how Lethe knows, from the
    /// log, that a pseudonym is an account's, which a public site key may not act for. Lethe's
    /// own field; absent (false) in records written before it existed and in anonymous ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub subject_is_user: bool,
}

/// For `skip_serializing_if`, which passes a reference.
const fn is_false(b: &bool) -> bool {
    !*b
}

/// The state of one purpose for one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeState {
    pub granted: bool,
    /// The notice version under which the choice was made.
    pub notice_version: u32,
    pub record_id: uuid::Uuid,
    pub since: UtcMicros,
    pub method: ConsentMethod,
}

/// A subject's consent: the fold of its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectConsent {
    pub purposes: BTreeMap<Purpose, PurposeState>,
    /// Whether a Global Privacy Control signal was ever recorded (opt-out of sale/share stands).
    pub gpc: bool,
    /// The last notice version the subject answered.
    pub notice_version: Option<u32>,
    pub last_record: Option<uuid::Uuid>,
}

/// Why processing for a purpose is or is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The purpose needs no consent (strictly necessary).
    NotRequired,
    Granted,
    /// The subject never answered for this purpose.
    NoConsent,
    Denied,
    /// Granted once, then withdrawn.
    Withdrawn,
    /// Opted out through Global Privacy Control.
    GpcOptOut,
}

impl Verdict {
    /// Whether processing may go ahead.
    pub fn allows(self) -> bool {
        matches!(self, Self::NotRequired | Self::Granted)
    }
}

impl SubjectConsent {
    /// Applies one record (the `apply` of event sourcing: no decisions, only state).
    pub fn apply(&mut self, record: &ConsentRecord) {
        for c in &record.choices {
            self.purposes.insert(
                c.purpose.clone(),
                PurposeState {
                    granted: c.granted,
                    notice_version: record.notice.version,
                    record_id: record.record_id,
                    since: record.collected_at,
                    method: record.method,
                },
            );
        }
        self.gpc |= record.gpc;
        self.notice_version = Some(record.notice.version);
        self.last_record = Some(record.record_id);
    }

    /// The verdict for a purpose. `requires_consent` comes from the policies; `sale_share` is the
    /// purpose a GPC signal opts out of.
    pub fn verdict(&self, purpose: &Purpose, requires_consent: bool, sale_share: &Purpose) -> Verdict {
        if !requires_consent {
            return Verdict::NotRequired;
        }
        if self.gpc && purpose == sale_share && !self.purposes.get(purpose).is_some_and(|s| s.granted) {
            return Verdict::GpcOptOut;
        }
        match self.purposes.get(purpose) {
            Some(s) if s.granted => Verdict::Granted,
            Some(s) if s.method == ConsentMethod::Gpc => Verdict::GpcOptOut,
            // Telling a withdrawal from a denial needs the history: see `ConsentHistory::verdict`.
            Some(_) => Verdict::Denied,
            None => Verdict::NoConsent,
        }
    }

    /// Whether the subject must be asked again: the current notice is newer than the last answer
    /// (R-CONSENT-3).
    pub fn needs_reprompt(&self, current_notice_version: u32) -> bool {
        self.notice_version.is_none_or(|v| v < current_notice_version)
    }
}

/// A subject's consent history: every record in order, so the state at any instant can be rebuilt.
/// The current state, the fold of every record, is kept as records are pushed: a decision reads it
/// without replaying the history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentHistory {
    records: Vec<ConsentRecord>,
    current: SubjectConsent,
}

impl ConsentHistory {
    /// Appends a record (records arrive in log order).
    pub fn push(&mut self, record: ConsentRecord) {
        self.current.apply(&record);
        self.records.push(record);
    }

    /// The records.
    pub fn records(&self) -> &[ConsentRecord] {
        &self.records
    }

    /// The state as it was at `at` (inclusive): replay of every record collected until then.
    pub fn state_at(&self, at: UtcMicros) -> SubjectConsent {
        let mut state = SubjectConsent::default();
        for r in self.records.iter().filter(|r| r.collected_at <= at) {
            state.apply(r);
        }
        state
    }

    /// The current state: the fold of every record ([`ConsentHistory::state_at`] the end of time),
    /// kept as records are pushed.
    pub fn current(&self) -> &SubjectConsent {
        &self.current
    }

    /// Whether a GPC signal arriving now is already answered, so that it needs no new record: by an
    /// opt-out that stands, or by a grant of `sale_share` made with the signal on (consent given
    /// knowing of the conflict, CCPA regs §7025(c)(3)). A grant made without the signal is not.
    pub fn gpc_answered(&self, sale_share: &Purpose) -> bool {
        let now = self.current();
        now.gpc
            && now
                .purposes
                .get(sale_share)
                .is_none_or(|s| !s.granted || self.records.iter().any(|r| r.record_id == s.record_id && r.gpc))
    }

    /// The verdict now, telling a withdrawal (granted before, not now) from a plain denial.
    pub fn verdict(&self, purpose: &Purpose, requires_consent: bool, sale_share: &Purpose) -> Verdict {
        self.verdict_given(self.current(), purpose, requires_consent, sale_share)
    }

    /// [`ConsentHistory::verdict`] for a caller that already folded [`ConsentHistory::current`].
    pub fn verdict_given(
        &self,
        current: &SubjectConsent,
        purpose: &Purpose,
        requires_consent: bool,
        sale_share: &Purpose,
    ) -> Verdict {
        let v = current.verdict(purpose, requires_consent, sale_share);
        if v == Verdict::Denied
            && self.records.iter().any(|r| r.choices.iter().any(|c| &c.purpose == purpose && c.granted))
        {
            return Verdict::Withdrawn;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    //! given(records).when(query).then(verdict), for R-CONSENT-1/2/3 and R-GPC-1.
    use super::*;

    fn p(s: &str) -> Purpose {
        Purpose::parse(s).unwrap()
    }

    fn record(at: i64, version: u32, method: ConsentMethod, choices: &[(&str, bool)], gpc: bool) -> ConsentRecord {
        ConsentRecord {
            record_id: uuid::Uuid::from_u128(at as u128),
            collected_at: UtcMicros(at),
            jurisdiction: "EU".into(),
            method,
            notice: NoticeRef { id: "banner".into(), version, content_hash: "00".repeat(32) },
            choices: choices
                .iter()
                .map(|(purpose, granted)| PurposeChoice {
                    purpose: p(purpose),
                    granted: *granted,
                    legal_basis: "consent".into(),
                })
                .collect(),
            recipients: vec![],
            locale: "en".into(),
            gpc,
            sdk_version: None,
            subject_is_user: false,
        }
    }

    fn given(records: Vec<ConsentRecord>) -> ConsentHistory {
        let mut h = ConsentHistory::default();
        for r in records {
            h.push(r);
        }
        h
    }

    #[test]
    fn no_record_means_no_consent_but_necessary_needs_none() {
        let h = given(vec![]);
        assert_eq!(h.verdict(&p("analytics"), true, &p("sale_share")), Verdict::NoConsent);
        assert_eq!(h.verdict(&p("necessary"), false, &p("sale_share")), Verdict::NotRequired);
        assert!(!Verdict::NoConsent.allows());
    }

    #[test]
    fn grant_then_withdraw_stops_at_once_r_consent_2() {
        let h = given(vec![
            record(10, 1, ConsentMethod::Banner, &[("analytics", true), ("personalization", true)], false),
            record(20, 1, ConsentMethod::Banner, &[("analytics", false)], false),
        ]);
        assert_eq!(h.verdict(&p("analytics"), true, &p("sale_share")), Verdict::Withdrawn);
        assert_eq!(h.verdict(&p("personalization"), true, &p("sale_share")), Verdict::Granted);
        // Replay gives the state at any instant (R-CONSENT-1).
        assert!(h.state_at(UtcMicros(15)).purposes[&p("analytics")].granted);
        assert!(!h.state_at(UtcMicros(20)).purposes[&p("analytics")].granted);
        assert!(h.state_at(UtcMicros(5)).purposes.is_empty());
    }

    #[test]
    fn denial_without_earlier_grant_is_a_denial() {
        let h = given(vec![record(10, 1, ConsentMethod::Banner, &[("analytics", false)], false)]);
        assert_eq!(h.verdict(&p("analytics"), true, &p("sale_share")), Verdict::Denied);
    }

    #[test]
    fn gpc_opts_out_of_sale_share_only_r_gpc_1() {
        let h = given(vec![
            record(10, 1, ConsentMethod::Banner, &[("analytics", true)], false),
            record(20, 1, ConsentMethod::Gpc, &[("sale_share", false)], true),
        ]);
        assert_eq!(h.verdict(&p("sale_share"), true, &p("sale_share")), Verdict::GpcOptOut);
        assert_eq!(h.verdict(&p("analytics"), true, &p("sale_share")), Verdict::Granted);
        // An explicit, recorded grant after GPC overrides it.
        let mut h = h;
        h.push(record(30, 1, ConsentMethod::Banner, &[("sale_share", true)], false));
        assert_eq!(h.verdict(&p("sale_share"), true, &p("sale_share")), Verdict::Granted);
    }

    #[test]
    fn the_kept_current_state_is_the_replay_of_every_record() {
        // Out of time order too: the current state is the fold in log order, as `state_at` the
        // end of time replays it.
        let records = vec![
            record(30, 1, ConsentMethod::Banner, &[("analytics", true), ("personalization", true)], false),
            record(10, 2, ConsentMethod::Api, &[("personalization", false)], false),
            record(20, 2, ConsentMethod::Gpc, &[("sale_share", false)], true),
            record(40, 3, ConsentMethod::Banner, &[("analytics", false)], false),
        ];
        let mut h = ConsentHistory::default();
        for r in records {
            h.push(r);
            assert_eq!(h.current(), &h.state_at(UtcMicros(i64::MAX)));
        }
        let now = h.current();
        assert!(now.gpc);
        assert_eq!(now.notice_version, Some(3));
        assert!(!now.purposes[&p("analytics")].granted);
        assert!(!now.purposes[&p("personalization")].granted);
    }

    #[test]
    fn a_newer_notice_re_prompts_and_old_grants_do_not_cover_new_purposes_r_consent_3() {
        let h = given(vec![record(10, 1, ConsentMethod::Banner, &[("analytics", true)], false)]);
        let now = h.current();
        assert!(!now.needs_reprompt(1));
        assert!(now.needs_reprompt(2));
        // Version 2 added personalization: the version-1 answer says nothing about it.
        assert_eq!(h.verdict(&p("personalization"), true, &p("sale_share")), Verdict::NoConsent);
        assert_eq!(now.purposes[&p("analytics")].notice_version, 1);
    }

    #[test]
    fn records_round_trip_as_json() {
        let r = record(10, 3, ConsentMethod::Api, &[("analytics", true)], true);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ConsentRecord>(&json).unwrap(), r);
        assert!(json.contains("\"method\":\"api\""));
    }

    /// R-CONSENT-1, R-DSR-4: a record made for a `userId` says so; one made for an `anonymousId`
    /// is stored exactly as before the field existed, and a record written before it reads as
    /// anonymous.
    #[test]
    fn a_record_for_a_user_says_so_and_older_records_read_as_anonymous() {
        let anonymous = record(10, 1, ConsentMethod::Banner, &[("analytics", true)], false);
        let json = serde_json::to_value(&anonymous).unwrap();
        assert!(json.get("subject_is_user").is_none(), "{json}");
        let old: ConsentRecord = serde_json::from_value(json).unwrap();
        assert!(!old.subject_is_user);

        let user = ConsentRecord { subject_is_user: true, ..anonymous };
        let json = serde_json::to_string(&user).unwrap();
        assert!(json.contains("\"subject_is_user\":true"), "{json}");
        assert_eq!(serde_json::from_str::<ConsentRecord>(&json).unwrap(), user);
    }
}
