//! Each kind of event lands in the right feature.

use lethe_features::{Daypart, DeviceClass, ReferrerClass};
use serde_json::json;

use crate::helpers::{page, project, subject, track, Log, S, T0};

fn names(p: &lethe_features::Projector, ids: impl Iterator<Item = lethe_features::ItemId>) -> Vec<&str> {
    ids.filter_map(|i| p.catalog().item_key(i)).collect()
}

#[test]
fn ratings_purchases_and_likes_land_in_their_fields() {
    let a = subject(30);
    let mut log = Log::default();
    log.consent(a, T0, &[("analytics", true), ("personalization", true)]);
    let mut t = T0;
    let mut at = || {
        t += S;
        t
    };
    log.event(a, at(), "item.rated", &track("Product Rated", json!({"item": "sku-1", "rating": 4})))
        .event(a, at(), "item.rated", &track("Product Rated", json!({"item": "sku-2", "rating": 6, "scale": 10})))
        .event(
            a,
            at(),
            "review.submitted",
            &track("Product Reviewed", json!({"item": "sku-2", "rating": 5, "text": "great"})),
        )
        .event(a, at(), "review.submitted", &track("Product Reviewed", json!({"item": "sku-3", "text": "meh"})))
        .event(
            a,
            at(),
            "purchase.completed",
            &track(
                "Order Completed",
                json!({"order_id": "o-1", "revenue": 30.5,
            "products": [{"product_id": "sku-1", "price": 10.5}, {"product_id": "sku-4", "price": 20}]}),
            ),
        )
        .event(
            a,
            at(),
            "purchase.completed",
            &track(
                "Order Completed",
                json!({"order_id": "o-2",
            "products": [{"sku": "sku-5", "price": 2.25, "quantity": 2}]}),
            ),
        )
        .event(a, at(), "item.liked", &track("Product Liked", json!({"item": "sku-1"})))
        .event(a, at(), "item.liked", &track("Product Liked", json!({"product_id": "sku-6"})))
        .event(a, at(), "item.disliked", &track("Product Disliked", json!({"item": "sku-7"})))
        .event(a, at(), "item.disliked", &track("Product Disliked", json!({"item": "sku-1"})))
        .event(a, at(), "survey.answered", &track("Survey Answered", json!({"survey": "nps", "answer": "9"})));
    let p = project(&log.events);
    let v = p.view(&a).unwrap();

    let r = v.ratings();
    assert_eq!((r.count, r.reviews), (3, 2));
    assert!((r.mean - (0.8 + 0.6 + 1.0) / 3.0).abs() < 1e-9, "{}", r.mean);

    assert_eq!(v.purchases().count, 2);
    assert_eq!(v.purchases().value_cents, 3050 + 450);
    assert_eq!(names(&p, v.recent_purchases()), ["sku-5", "sku-1", "sku-4"]);
    let s1 = p.catalog().stats("sku-1").unwrap();
    assert_eq!((s1.purchases, s1.users), (1, 1));

    assert_eq!(v.likes(), (2, 2));
    assert_eq!(names(&p, v.recently_liked()), ["sku-6"], "disliking sku-1 took it off the liked list");
    assert_eq!(names(&p, v.recently_disliked()), ["sku-1", "sku-7"]);
    assert_eq!(v.surveys(), 1);
    assert_eq!(v.last_event().unwrap().0, T0 + 11 * S);
}

#[test]
fn behaviour_and_context_land_in_their_fields() {
    let (a, b) = (subject(31), subject(32));
    let mut log = Log::default();
    log.item(T0, &json!({"id": "sku-9", "category": "boots"}));
    for s in [a, b] {
        log.consent(s, T0, &[("analytics", true), ("personalization", true)]);
    }
    log.event(a, T0 + S, "page.viewed", &page(json!({"category": "tents"})))
        .event(a, T0 + 2 * S, "product.viewed", &track("Product Viewed", json!({"product_id": "sku-9"})))
        .event(a, T0 + 3 * S, "element.clicked", &track("Product Clicked", json!({"product_id": "sku-9"})))
        .event(
            a,
            T0 + 4 * S,
            "element.clicked",
            &track("Element Clicked", json!({"element": "button", "label": "buy"})),
        )
        .event(a, T0 + 5 * S, "scroll.depth", &track("Scroll Depth", json!({"depth": 30})))
        .event(a, T0 + 6 * S, "scroll.depth", &track("Scroll Depth", json!({"percent": 90})))
        .event(a, T0 + 7 * S, "time.spent", &track("Time Spent", json!({"seconds": 20})))
        .event(a, T0 + 8 * S, "time.spent", &track("Time Spent", json!({"duration": 40})))
        .event(a, T0 + 9 * S, "session.ended", &track("Session Ended", json!({"seconds": 300, "pages": 4})))
        .event(a, T0 + 10 * S, "session.ended", &track("Session Ended", json!({"seconds": 100, "pages": 2})))
        .event(a, T0 + 11 * S, "decision.served", &json!({"properties": {"slot": "hero", "segment": "campers"}}))
        .event(a, T0 + 12 * S, "outcome.recorded", &json!({"properties": {"outcome": "click"}}))
        .event(b, T0 + S, "product.viewed", &track("Product Viewed", json!({"product_id": "sku-9"})));
    let p = project(&log.events);
    let v = p.view(&a).unwrap();
    assert_eq!((v.views(), v.clicks()), (2, 2));
    let top = v.top_categories();
    let top: Vec<_> = top.iter().map(|c| (p.catalog().category_name(c.category).unwrap(), c.views, c.clicks)).collect();
    assert_eq!(top, [("boots", 1, 1), ("tents", 1, 0)], "the catalog gives a product view its category");
    let sc = v.scroll();
    assert_eq!((sc.events, sc.max_percent), (2, 90));
    assert!((sc.mean_percent - 60.0).abs() < 1e-9);
    assert_eq!(v.dwell().total_seconds, 60);
    let se = v.sessions();
    assert_eq!(se.count, 2);
    assert!((se.mean_seconds - 200.0).abs() < 1e-9 && (se.mean_pages - 3.0).abs() < 1e-9);
    assert_eq!(v.decisions(), (1, 1));
    let segments: Vec<_> = v.segments().filter_map(|s| p.segment_name(s)).collect();
    assert_eq!(segments, ["campers"]);

    // Context: the page view was on a desktop in the morning, direct; the rest mobile, evening,
    // from search, in Bavaria. The collector's payloads without context fall back to the time.
    assert_eq!(v.last_device(), Some(DeviceClass::Mobile));
    assert_eq!(v.frequent_device(), Some(DeviceClass::Mobile));
    assert_eq!(v.last_referrer(), Some(ReferrerClass::Search));
    assert_eq!(v.referrers()[ReferrerClass::Direct as usize], 1);
    assert_eq!(v.dayparts()[Daypart::Evening as usize], 9);
    assert_eq!(v.dayparts()[Daypart::Morning as usize], 3, "the page view, and 10:00 UTC for the two without context");
    assert_eq!(p.location_name(v.location().unwrap()), Some("DE/BY"));

    // Item statistics over both subjects, and a's user-item row.
    let s9 = p.catalog().stats("sku-9").unwrap();
    assert_eq!((s9.views, s9.clicks, s9.purchases, s9.users), (2, 1, 0, 2));
    let row: Vec<_> = p.interactions(&a).collect();
    assert_eq!(row, [("sku-9", 1, 1, 0)]);

    // The access export resolves names.
    let export = p.export(&a).unwrap();
    assert_eq!(export["top_categories"][0]["category"], "boots");
    assert_eq!(export["location"], "DE/BY");
    assert_eq!(export["segments"][0], "campers");
}
