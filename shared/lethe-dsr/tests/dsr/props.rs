//! R-DSR-1 properties over random receipt instants, zones and holidays: deadlines never precede receipt,
//! business-day deadlines never land on a weekend or holiday, every deadline is the end of a local day,
//! and the GDPR month is 28 to 31 local days; decoding arbitrary bytes never panics.

use lethe_dsr::jiff::civil::Date;
use lethe_dsr::jiff::{SignedDuration, Timestamp};
use lethe_dsr::{decode, DeadlinePolicy, Deadlines, Law, Period, RequestKind, Rules, FORMAT_V1};
use proptest::prelude::*;

/// Zones with DST in both hemispheres, half-hour DST, extreme offsets and past midnight transitions.
const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/Los_Angeles",
    "UTC",
    "Australia/Lord_Howe",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "America/Santiago",
];

fn supported() -> Vec<(RequestKind, Law)> {
    let mut out = Vec::new();
    for &law in Law::ALL {
        for &kind in RequestKind::ALL {
            if Rules::of(kind, law).is_ok() {
                out.push((kind, law));
            }
        }
    }
    out
}

/// The local date an instant falls on, and whether the instant is the last microsecond of that day.
fn is_end_of_local_day(policy: &DeadlinePolicy, due: Timestamp) -> bool {
    let zone = policy.zone();
    let next = due.checked_add(SignedDuration::from_micros(1)).unwrap();
    zone.local_date(next) == zone.local_date(due).tomorrow().unwrap()
}

fn days_between(a: Date, b: Date) -> i32 {
    b.since(a).unwrap().get_days()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn r_dsr_1_deadline_invariants(
        // 1990-01-01 to 2090-01-01, to the microsecond.
        micros in 631_152_000_000_000i64..3_786_912_000_000_000i64,
        zone in prop::sample::select(ZONES),
        which in any::<prop::sample::Index>(),
        holiday_offsets in prop::collection::vec(0i32..80, 0..25),
    ) {
        let received = Timestamp::from_microsecond(micros).unwrap();
        let probe = DeadlinePolicy::new(zone, []).unwrap();
        let receipt_date = probe.zone().local_date(received);
        let holidays: Vec<Date> =
            holiday_offsets.iter().map(|&d| receipt_date.checked_add(lethe_dsr::jiff::Span::new().days(d)).unwrap()).collect();
        let policy = DeadlinePolicy::new(zone, holidays).unwrap();
        let cases = supported();
        let (kind, law) = cases[which.index(cases.len())];
        let rules = Rules::of(kind, law).unwrap();
        let d = Deadlines::compute(kind, law, received, &policy).unwrap();

        let mut all = vec![(rules.complete(), d.complete_by())];
        if let (Some(p), Some(t)) = (rules.acknowledge(), d.acknowledge_by()) {
            all.push((p, t));
        }
        prop_assert_eq!(rules.acknowledge().is_some(), d.acknowledge_by().is_some());
        for (period, due) in all {
            prop_assert!(due > received, "{kind}/{law}: {due} not after {received}");
            prop_assert!(is_end_of_local_day(&policy, due), "{due} is not the end of a local day in {zone}");
            let due_date = policy.zone().local_date(due);
            match period {
                Period::BusinessDays(n) => {
                    prop_assert!(policy.is_business_day(due_date), "{due_date} is not a business day");
                    let counted = (1..=days_between(receipt_date, due_date))
                        .filter(|&i| policy.is_business_day(receipt_date.checked_add(lethe_dsr::jiff::Span::new().days(i)).unwrap()))
                        .count();
                    prop_assert_eq!(counted, usize::from(n));
                }
                Period::Calendar(lethe_dsr::CalendarPeriod::Months(1)) => {
                    let days = days_between(receipt_date, due_date);
                    prop_assert!((28..=31).contains(&days), "one month is {days} days");
                    // 28 to 31 days plus what was left of the receipt day, give or take a DST hour or two:
                    // received 23:00 CET on 26 Feb 1990, due at the end of 26 Mar in CEST, is 28 days
                    // less a microsecond.
                    let span = due.duration_since(received);
                    prop_assert!(span >= SignedDuration::from_hours(28 * 24 - 2));
                    prop_assert!(span <= SignedDuration::from_hours(32 * 24 + 2));
                    let same_day = due_date.day() == receipt_date.day();
                    let clamped = due_date.day() < receipt_date.day() && due_date == due_date.last_of_month();
                    prop_assert!(same_day || clamped, "{receipt_date} + 1 month = {due_date}");
                }
                Period::Calendar(lethe_dsr::CalendarPeriod::Days(n)) => {
                    prop_assert_eq!(days_between(receipt_date, due_date), i32::from(n));
                }
                Period::Calendar(other) => prop_assert!(false, "unexpected period {other:?}"),
            }
        }
    }

    #[test]
    fn r_dsr_1_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), json_like in "[{}\\[\\]\":,a-z0-9 -]{0,200}") {
        let _ = decode(&bytes);
        let mut framed = vec![FORMAT_V1];
        framed.extend_from_slice(json_like.as_bytes());
        prop_assert!(decode(&framed).is_err());
    }
}
