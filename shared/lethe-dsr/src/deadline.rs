//! Deadline arithmetic: which periods each law sets for each kind of request ([`Rules`]), the controller's
//! calendar ([`DeadlinePolicy`]: time zone and holidays), and the due instants of one request
//! ([`Deadlines`]).
//!
//! # How periods are counted
//!
//! Every period is counted on the controller's local calendar: the receipt instant is first turned into
//! a local date in the policy's IANA time zone, the period is added to that date, and the deadline is
//! the **end of the resulting local day**, that is the last microsecond before the next local day begins
//! (23:59:59.999999 local on every ordinary day), converted to a UTC instant. Taking "the instant before
//! the next day starts" rather than "23:59:59.999999 resolved in the zone" keeps the result right on days
//! whose midnight falls into a daylight-saving gap or fold.
//!
//! * **Months (GDPR, Art. 12(3))**: the deadline day is the day in the following month with the same
//!   number as the receipt day; if that month is too short (receipt on 31 January), it is the last day
//!   of that month (28 or 29 February). This follows Regulation (EEC, Euratom) No 1182/71 determining
//!   the rules applicable to periods, dates and time limits, which the CJEU applies to EU-law periods:
//!   Art. 3(1) second subparagraph (the day of the event is not counted) and Art. 3(2)(c) (a period in
//!   months ends with the last hour of the day in the last month bearing the same date as the day the
//!   period runs from, or of the last day of that month if there is no such date). The two-month
//!   extension is added to the original due *date* with the same rule. **Not applied:** the roll-over of
//!   Art. 3(4) (a period ending on a Saturday, Sunday or public holiday ends on the next working day).
//!   Leaving it out can only make a deadline earlier, never later than the law's, so the platform errs
//!   toward the data subject; `holidays` therefore never moves a GDPR deadline.
//! * **Calendar days (CCPA, §7021(b))**: receipt date + 45 days (the receipt day is day 0), extension
//!   + 45 days on the original due date (90 days in total).
//! * **Business days (CCPA, §7021(a), §7026(f))**: a business day is Monday to Friday and not one of the
//!   policy's holidays. Counting starts on the first business day *after* the local receipt date, which
//!   is day 1; so a request received on a Saturday or a holiday counts from the next business day, and
//!   one received on a business day counts from the business day after. The deadline is the end of the
//!   n-th such day.

use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DsrError, Law, RequestKind, Result, Verification};

/// A period on the civil calendar, where weekends and holidays do not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarPeriod {
    /// Whole months; a day missing from the target month becomes that month's last day.
    Months(u8),
    /// Calendar days.
    Days(u16),
}

/// A period a law sets for a step of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Months or calendar days.
    Calendar(CalendarPeriod),
    /// Business days (Monday–Friday, not a policy holiday), counted from the day after receipt.
    BusinessDays(u16),
}

/// What a law prescribes for one kind of request: verification, and the periods to acknowledge,
/// complete and (at most once) extend.
///
/// | law  | kinds                                                        | verify   | acknowledge | complete | extension |
/// |------|--------------------------------------------------------------|----------|-------------|----------|-----------|
/// | GDPR | access, portability, erasure, rectification                  | required | —           | 1 month  | +2 months |
/// | GDPR | withdraw_consent (Art. 7(3), outside Art. 12(3))              | no       | —           | 1 month  | none      |
/// | CCPA | know, access, portability, erasure, rectification            | required | 10 bus. d.  | 45 days  | +45 days  |
/// | CCPA | opt_out_sale_share, withdraw_consent                          | no       | —           | 15 bus. d. | none    |
///
/// GDPR has no `know` or `opt_out_sale_share` (use access and withdraw_consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    verification: Verification,
    acknowledge: Option<Period>,
    complete: Period,
    extension: Option<CalendarPeriod>,
}

impl Rules {
    /// The rules for `kind` under `law`.
    ///
    /// # Errors
    /// [`DsrError::UnsupportedKind`] when the law has no such right.
    pub const fn of(kind: RequestKind, law: Law) -> Result<Self> {
        use CalendarPeriod::{Days, Months};
        use RequestKind as K;
        let rules = match (law, kind) {
            (Law::Gdpr, K::Access | K::Portability | K::Erasure | K::Rectification) => Self {
                verification: Verification::Required,
                acknowledge: None,
                complete: Period::Calendar(Months(1)),
                extension: Some(Months(2)),
            },
            (Law::Gdpr, K::WithdrawConsent) => Self {
                verification: Verification::NotRequired,
                acknowledge: None,
                complete: Period::Calendar(Months(1)),
                extension: None,
            },
            (Law::Gdpr, K::Know | K::OptOutSaleShare) => return Err(DsrError::UnsupportedKind { kind, law }),
            (Law::Ccpa, K::Know | K::Access | K::Portability | K::Erasure | K::Rectification) => Self {
                verification: Verification::Required,
                acknowledge: Some(Period::BusinessDays(10)),
                complete: Period::Calendar(Days(45)),
                extension: Some(Days(45)),
            },
            (Law::Ccpa, K::OptOutSaleShare | K::WithdrawConsent) => Self {
                verification: Verification::NotRequired,
                acknowledge: None,
                complete: Period::BusinessDays(15),
                extension: None,
            },
        };
        Ok(rules)
    }

    /// Whether identity must be verified before work starts.
    #[must_use]
    pub const fn verification(&self) -> Verification {
        self.verification
    }

    /// The period to confirm receipt in, if the law sets one.
    #[must_use]
    pub const fn acknowledge(&self) -> Option<Period> {
        self.acknowledge
    }

    /// The period to complete (or deny) the request in.
    #[must_use]
    pub const fn complete(&self) -> Period {
        self.complete
    }

    /// The one extension the law allows, added to the original due date.
    #[must_use]
    pub const fn extension(&self) -> Option<CalendarPeriod> {
        self.extension
    }
}

/// An IANA time zone, resolved against jiff's database (the system's, or the bundled copy on machines
/// without `/usr/share/zoneinfo`). Serialized as its canonical name.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Looks up an IANA name such as `Europe/Berlin` (case-insensitive; stored canonically).
    ///
    /// # Errors
    /// [`DsrError::UnknownTimeZone`] when the database has no such zone.
    pub fn parse(name: &str) -> Result<Self> {
        let tz = jiff::tz::db().get(name).map_err(|_| DsrError::UnknownTimeZone)?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Self { name, tz })
    }

    /// The canonical IANA name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The jiff time zone.
    #[must_use]
    pub const fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The local calendar date of an instant in this zone.
    #[must_use]
    pub fn local_date(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz.clone()).date()
    }

    /// The last microsecond of `date` in this zone: one microsecond before the next local day starts.
    ///
    /// # Errors
    /// [`DsrError::DateOutOfRange`] at the edges of jiff's range.
    pub fn end_of_day(&self, date: Date) -> Result<Timestamp> {
        let next_day_starts = date
            .tomorrow()
            .and_then(|next| next.to_zoned(self.tz.clone()))
            .map_err(|_| DsrError::DateOutOfRange)?
            .timestamp();
        next_day_starts.checked_sub(SignedDuration::from_micros(1)).map_err(|_| DsrError::DateOutOfRange)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The controller's calendar: the time zone deadlines are counted in, and the holidays that are not
/// business days (for CCPA, California state holidays; list the observed dates).
///
/// Deserializes from `{"time_zone": "America/Los_Angeles", "holidays": ["2026-11-26"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PolicyRepr", into = "PolicyRepr")]
pub struct DeadlinePolicy {
    zone: Zone,
    holidays: BTreeSet<Date>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRepr {
    time_zone: String,
    #[serde(default)]
    holidays: Vec<Date>,
}

impl TryFrom<PolicyRepr> for DeadlinePolicy {
    type Error = DsrError;

    fn try_from(repr: PolicyRepr) -> Result<Self> {
        Self::new(&repr.time_zone, repr.holidays)
    }
}

impl From<DeadlinePolicy> for PolicyRepr {
    fn from(p: DeadlinePolicy) -> Self {
        Self { time_zone: p.zone.name, holidays: p.holidays.into_iter().collect() }
    }
}

impl DeadlinePolicy {
    /// A policy for an IANA time zone and a list of holidays (order and duplicates do not matter).
    ///
    /// # Errors
    /// [`DsrError::UnknownTimeZone`] when the zone is not in the database.
    pub fn new(time_zone: &str, holidays: impl IntoIterator<Item = Date>) -> Result<Self> {
        Ok(Self { zone: Zone::parse(time_zone)?, holidays: holidays.into_iter().collect() })
    }

    /// The controller's time zone.
    #[must_use]
    pub const fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The holidays, ascending.
    pub fn holidays(&self) -> impl Iterator<Item = Date> + '_ {
        self.holidays.iter().copied()
    }

    /// Monday to Friday and not a listed holiday.
    #[must_use]
    pub fn is_business_day(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.holidays.contains(&date)
    }

    /// The `n`-th business day strictly after `date` (`n = 0` gives `date` itself).
    ///
    /// # Errors
    /// [`DsrError::DateOutOfRange`] when the count runs past the end of the calendar.
    pub fn business_days_after(&self, date: Date, n: u16) -> Result<Date> {
        let mut day = date;
        let mut left = n;
        while left > 0 {
            day = day.tomorrow().map_err(|_| DsrError::DateOutOfRange)?;
            if self.is_business_day(day) {
                left -= 1;
            }
        }
        Ok(day)
    }

    /// The local date `period` after `date`.
    ///
    /// # Errors
    /// [`DsrError::DateOutOfRange`] when the result is past the end of the calendar.
    pub fn add(&self, date: Date, period: Period) -> Result<Date> {
        match period {
            Period::Calendar(p) => add_calendar(date, p),
            Period::BusinessDays(n) => self.business_days_after(date, n),
        }
    }
}

/// `date` plus a calendar period; months clamp to the end of a shorter month (jiff's default).
fn add_calendar(date: Date, period: CalendarPeriod) -> Result<Date> {
    let span = match period {
        CalendarPeriod::Months(n) => Span::new().try_months(n),
        CalendarPeriod::Days(n) => Span::new().try_days(n),
    };
    span.and_then(|s| date.checked_add(s)).map_err(|_| DsrError::DateOutOfRange)
}

/// The due instants of one request, and the zone they were counted in (kept so that an extension and
/// [`crate::Request::days_left`] use the same calendar as receipt did, whatever the policy is later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    time_zone: Zone,
    acknowledge_by: Option<Timestamp>,
    complete_by: Timestamp,
    extended_complete_by: Option<Timestamp>,
}

impl Deadlines {
    /// The deadlines of a `kind` request under `law` received at `received_at`, counted on `policy`'s
    /// calendar (see the module docs for the rules). `extended_complete_by` starts empty.
    ///
    /// # Errors
    /// [`DsrError::UnsupportedKind`] when the law has no such right; [`DsrError::DateOutOfRange`] near
    /// the ends of the calendar.
    pub fn compute(kind: RequestKind, law: Law, received_at: Timestamp, policy: &DeadlinePolicy) -> Result<Self> {
        let rules = Rules::of(kind, law)?;
        let zone = policy.zone();
        let receipt_date = zone.local_date(received_at);
        let due = |period: Period| policy.add(receipt_date, period).and_then(|d| zone.end_of_day(d));
        let acknowledge_by = rules.acknowledge().map(due).transpose()?;
        let complete_by = due(rules.complete())?;
        Ok(Self { time_zone: zone.clone(), acknowledge_by, complete_by, extended_complete_by: None })
    }

    /// The zone the deadlines were counted in.
    #[must_use]
    pub const fn time_zone(&self) -> &Zone {
        &self.time_zone
    }

    /// When receipt must be confirmed (CCPA know/delete/correct only).
    #[must_use]
    pub const fn acknowledge_by(&self) -> Option<Timestamp> {
        self.acknowledge_by
    }

    /// The original completion deadline.
    #[must_use]
    pub const fn complete_by(&self) -> Timestamp {
        self.complete_by
    }

    /// The completion deadline after the one extension, if granted.
    #[must_use]
    pub const fn extended_complete_by(&self) -> Option<Timestamp> {
        self.extended_complete_by
    }

    /// The deadline in force: the extended one if there is one, else the original.
    #[must_use]
    pub fn effective_complete_by(&self) -> Timestamp {
        self.extended_complete_by.unwrap_or(self.complete_by)
    }

    /// The extended deadline: `period` after the original due date, end of that local day.
    pub(crate) fn extended_by(&self, period: CalendarPeriod) -> Result<Timestamp> {
        let original_date = self.time_zone.local_date(self.complete_by);
        add_calendar(original_date, period).and_then(|d| self.time_zone.end_of_day(d))
    }

    pub(crate) fn set_extended(&mut self, due: Timestamp) {
        self.extended_complete_by = Some(due);
    }

    /// Calendar days from `now`'s local date to the effective due date (negative when overdue).
    #[must_use]
    pub fn days_left(&self, now: Timestamp) -> i64 {
        let today = self.time_zone.local_date(now);
        let due = self.time_zone.local_date(self.effective_complete_by());
        // Both dates are valid, so a day-unit difference cannot fail; 0 is never reached in practice.
        due.since(today).map_or(0, |span| i64::from(span.get_days()))
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    #[test]
    fn end_of_day_handles_midnight_transitions() {
        // São Paulo skipped 2018-11-04 00:00 → 01:00 and repeated 2019-02-16 23:00–24:00.
        let zone = Zone::parse("America/Sao_Paulo").unwrap();
        assert_eq!(zone.end_of_day(date(2018, 11, 3)).unwrap().to_string(), "2018-11-04T02:59:59.999999Z");
        // The fold repeats the evening of the 16th; the day ends after the second pass, at -03:00.
        assert_eq!(zone.end_of_day(date(2019, 2, 16)).unwrap().to_string(), "2019-02-17T02:59:59.999999Z");
    }

    #[test]
    fn unknown_zone_is_refused() {
        assert_eq!(Zone::parse("Mars/Olympus_Mons").unwrap_err(), DsrError::UnknownTimeZone);
        assert_eq!(Zone::parse("europe/berlin").unwrap().name(), "Europe/Berlin");
    }

    #[test]
    fn business_days_at_the_end_of_time_error() {
        let p = DeadlinePolicy::new("UTC", []).unwrap();
        assert_eq!(p.business_days_after(date(9999, 12, 30), 10).unwrap_err(), DsrError::DateOutOfRange);
        let z = p.zone();
        assert_eq!(z.end_of_day(date(9999, 12, 31)).unwrap_err(), DsrError::DateOutOfRange);
    }

    #[test]
    fn policy_deserializes_and_rejects_unknown_zones() {
        let p: DeadlinePolicy =
            serde_json::from_str(r#"{"time_zone":"America/Los_Angeles","holidays":["2026-11-26"]}"#).unwrap();
        assert!(!p.is_business_day(date(2026, 11, 26)));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"time_zone":"America/Los_Angeles","holidays":["2026-11-26"]}"#
        );
        assert!(serde_json::from_str::<DeadlinePolicy>(r#"{"time_zone":"Nowhere/City"}"#).is_err());
    }
}
