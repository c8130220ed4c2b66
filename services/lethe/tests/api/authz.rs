//! R-DSR-4: each role against each endpoint; tokens bound to a subject reach only that subject;
//! tampered, expired and forged tokens are refused.

use lethe_auth::Role;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn each_role_against_each_collection_endpoint() {
    let app = spawn_app().await;
    app.consent("a1", &["analytics"], &[]).await;
    let track = json!({"anonymousId": "a1", "event": "Clicked", "messageId": "t"});
    let cases = [
        (Role::Site, "/v1/track", true),
        (Role::Admin, "/v1/track", true),
        (Role::Cms, "/v1/track", false),
        (Role::Dpo, "/v1/track", false),
    ];
    for (i, (role, path, allowed)) in cases.into_iter().enumerate() {
        let mut body = track.clone();
        body["messageId"] = json!(format!("t{i}"));
        let (status, resp) = app.post(path, Some(&app.token(role, None)), &body).await;
        assert_eq!(status == 200, allowed, "{role:?} {path}: {status} {resp}");
        if !allowed {
            assert_eq!(status, 403);
        }
    }
    let subject = app.token(Role::Subject, Some("a1"));
    let (status, _) = app.post("/v1/track", Some(&subject), &track).await;
    assert_eq!(status, 403);
    for role in [Role::Site, Role::Cms] {
        let (status, _) = app.get("/v1/consent/a1", Some(&app.token(role, None))).await;
        assert_eq!(status, 403, "{role:?} must not read consent state");
    }
    for role in [Role::Dpo, Role::Admin] {
        let (status, _) = app.get("/v1/consent/a1", Some(&app.token(role, None))).await;
        assert_eq!(status, 200, "{role:?}");
    }
}

#[actix_web::test]
async fn a_subject_token_reaches_only_its_subject() {
    let app = spawn_app().await;
    app.consent("alice", &["analytics"], &[]).await;
    let alice = app.token(Role::Subject, Some("alice"));
    assert_eq!(app.get("/v1/consent/alice", Some(&alice)).await.0, 200);
    let (status, body) = app.get("/v1/consent/bob", Some(&alice)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden_subject")));
    let body = json!({"anonymousId": "bob", "notice": app.notice(), "granted": ["analytics"], "method": "api",
        "jurisdiction": "EU", "locale": "en"});
    let (status, _) = app.post("/v1/consent", Some(&alice), &body).await;
    assert_eq!(status, 403);
    assert_eq!(app.stored("bob"), 0);
}

#[actix_web::test]
async fn missing_tampered_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let body = json!({"anonymousId": "x", "event": "Clicked"});
    let (status, err) = app.post("/v1/track", None, &body).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("missing_credentials")));
    let mut token = app.site();
    let mid = token.find('.').unwrap() + 3;
    let flipped = if &token[mid..=mid] == "A" { "B" } else { "A" };
    token.replace_range(mid..=mid, flipped);
    let (status, _) = app.post("/v1/track", Some(&token), &body).await;
    assert_eq!(status, 401);
    // A token signed by another installation's keys.
    let other = lethe_auth::SigningKeys::generate().unwrap();
    let foreign = lethe_auth::Issuer::issue(
        &other,
        &lethe_auth::AuthConfig::default(),
        Role::Admin,
        std::time::Duration::from_secs(60),
        None,
        None,
        &[],
    )
    .unwrap();
    let (status, _) = app.post("/v1/track", Some(&foreign), &body).await;
    assert_eq!(status, 401);
    // alg: none
    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(
            br#"{"iss":"lethe","aud":"lethe-api","sub":"x","role":"admin","exp":9999999999,"nbf":0,"iat":0,"jti":"j"}"#
        )
    );
    let (status, _) = app.post("/v1/track", Some(&none), &body).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn a_write_key_is_refused_from_an_origin_it_does_not_list() {
    let app = spawn_app().await;
    app.consent("o1", &["analytics"], &[]).await;
    let send = |origin: &'static str| {
        app.client
            .post(format!("{}/v1/track", app.address))
            .basic_auth(app.site(), Some(""))
            .header("Origin", origin)
            .json(&json!({"anonymousId": "o1", "event": "Clicked", "messageId": origin}))
            .send()
    };
    assert_eq!(send("https://shop.example").await.unwrap().status(), 200);
    assert_eq!(send("https://evil.example").await.unwrap().status(), 403);
}

fn base64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[actix_web::test]
async fn cors_preflight_is_answered_and_only_authorized_answers_carry_the_origin() {
    let app = spawn_app().await;
    app.consent("c1", &["analytics"], &[]).await;
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/track", app.address))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://shop.example");
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    // A CMS in the browser may also maintain the catalog (`PUT`/`DELETE /v1/items`).
    let methods = pre.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.split(", ").any(|x| x == m), "{m} in {methods}");
    }
    let send = |origin: &'static str| {
        app.client
            .post(format!("{}/v1/track", app.address))
            .bearer_auth(app.site())
            .header("Origin", origin)
            .json(&json!({"anonymousId": "c1", "event": "Clicked", "messageId": origin}))
            .send()
    };
    let ok = send("https://shop.example").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://shop.example");
    let refused = send("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

/// `navigator.sendBeacon` sends `text/plain` and cannot set headers: the write key rides in the body,
/// as Segment's browser library does it.
#[actix_web::test]
async fn a_beacon_with_the_write_key_in_the_body_is_accepted() {
    let app = spawn_app().await;
    app.consent("beacon", &["analytics"], &[]).await;
    let body = json!({"writeKey": app.site(), "batch": [{"type": "track", "anonymousId": "beacon", "event": "Clicked", "messageId": "b"}]});
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.stored("beacon"), 2);
    let forged = json!({"writeKey": "nope", "batch": [{"type": "track", "anonymousId": "beacon", "event": "Clicked"}]});
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .body(serde_json::to_vec(&forged).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
