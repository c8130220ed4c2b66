//! Bad input gets a clear 4xx with a stable code, nothing is stored, and the service keeps serving.

use serde_json::json;

use std::time::Duration;

use lethe_auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_settings};

#[actix_web::test]
async fn the_malformed_input_matrix() {
    let app = spawn_app().await;
    app.consent("mal", &["analytics"], &[]).await;
    let site = app.site();
    let send = |path: &'static str, body: Vec<u8>, ctype: &'static str| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(&site)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let big_event = json!({"anonymousId": "mal", "event": "Clicked", "properties": {"pad": "x".repeat(40_000)}});
    let huge_batch = json!({"batch": (0..2_501).map(|i| json!({"type": "track", "anonymousId": "mal", "event": "Clicked", "messageId": i.to_string()})).collect::<Vec<_>>()});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/track", b"{not json".to_vec(), 400, "invalid_json"),
        ("/v1/track", vec![0xff, 0xfe, b'{', b'}'], 400, "invalid_utf8"),
        ("/v1/track", b"[1,2,3]".to_vec(), 400, "invalid_event"),
        ("/v1/track", br#"{"event":"Clicked"}"#.to_vec(), 400, "missing_id"),
        ("/v1/track", br#"{"anonymousId":5.5,"event":{"a":1}}"#.to_vec(), 400, "invalid_field"),
        ("/v1/track", serde_json::to_vec(&big_event).unwrap(), 413, "payload_too_large"),
        ("/v1/batch", br#"{"batch": "nope"}"#.to_vec(), 400, "invalid_batch"),
        ("/v1/batch", br#"{"batch": []}"#.to_vec(), 400, "empty_batch"),
        ("/v1/batch", serde_json::to_vec(&huge_batch).unwrap(), 413, "batch_too_large"),
        ("/v1/batch", vec![b' '; 600_000], 413, "payload_too_large"),
        ("/v1/consent", br#"{"anonymousId": 3}"#.to_vec(), 400, "invalid_json"),
        // A struct's fields as an array, in order, read as the struct by serde: refused.
        (
            "/v1/consent",
            br#"["arr1", null, {}, ["analytics"], [], "banner", "EU", "en", false, null]"#.to_vec(),
            400,
            "invalid_json",
        ),
        ("/v1/decide", br#"["arr1", "home-hero"]"#.to_vec(), 400, "invalid_json"),
    ];
    for (path, body, status, code) in cases {
        let r = send(path, body, "application/json").await.unwrap();
        let got = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    // Nothing of any of it was stored, and the service still serves.
    assert_eq!(app.stored("mal"), 1, "only the consent record");
    let ok = send(
        "/v1/track",
        serde_json::to_vec(&json!({"anonymousId": "mal", "event": "Clicked", "messageId": "fine"})).unwrap(),
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200, "sendBeacon's text/plain bodies are accepted");
    assert_eq!(app.stored("mal"), 2);
}

/// Errors raised by the HTTP layer itself are JSON with a stable code too.
#[actix_web::test]
async fn transport_level_errors_are_json_with_codes() {
    let app = spawn_app().await;
    // A method an endpoint does not take gets 405 with the methods it does take; an unknown path
    // gets 404.
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/track", "POST"),
        (reqwest::Method::DELETE, "/v1/consent", "POST"),
        (reqwest::Method::PUT, "/v1/decide", "POST"),
        (reqwest::Method::POST, "/v1/items", "PUT"),
        (reqwest::Method::POST, "/v1/consent/someone", "GET"),
    ] {
        let r = app.client.request(method.clone(), format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
    }
    for path in ["/v1/nothing", "/v1/consent/a/b", "/v1/consent/"] {
        let r = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{path}");
    }
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .bearer_auth(app.site())
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200, "the service keeps serving");
}

/// `%xx` escapes that do not decode to UTF-8 are refused, in the path and in the query: decoded
/// with U+FFFD in their place, `%ff` and `%fe` would name the same subject.
#[actix_web::test]
async fn url_escapes_that_are_not_utf8_are_refused() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin, None);
    let cms = app.token(Role::Cms, None);
    for (path, token) in [
        ("/v1/consent/%ff", &admin),
        ("/v1/consent/%C0", &admin),
        ("/v1/recommendations?anonymousId=%fe", &cms),
        ("/v1/me/export?subject=a%ff", &admin),
    ] {
        let (status, body) = app.get(path, Some(token)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_utf8")), "{path}: {body}");
    }
    // Escapes of UTF-8 and lone `%` signs still pass.
    app.consent("caf\u{e9}", &["analytics"], &[]).await;
    let (status, body) = app.get("/v1/consent/caf%C3%A9", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purposes"]["analytics"]["state"], "granted", "{body}");
    let (status, body) = app.get("/v1/consent/100%", Some(&admin)).await;
    assert_ne!(body["code"].as_str(), Some("invalid_utf8"), "{status} {body}");
}

/// A body that stops arriving fails with 408 once it stalled past the idle timeout, and its
/// connection closes; a body that arrives slowly but steadily is served.
#[actix_web::test]
async fn a_stalled_body_times_out_and_a_slow_one_does_not() {
    let app = spawn_app_settings(|s| s.body_idle_timeout = Duration::from_millis(400)).await;
    let cms = app.token(Role::Cms, None);
    let addr = app.address.trim_start_matches("http://").to_owned();
    let body = br#"{"anonymousId":"slow","slot":"home-hero","context":{"device":"mobile"}}"#;
    let head = |length: usize| {
        format!(
            "POST /v1/decide HTTP/1.1\r\nHost: lethe\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {cms}\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // What a client that sends `head` and `first` and then nothing reads until the server closes.
    let stall = |head: String, first: &'static [u8]| {
        let addr = addr.clone();
        async move {
            let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stalled.write_all(head.as_bytes()).await.unwrap();
            stalled.write_all(first).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer))
                .await
                .expect("the server answers and closes the connection")
                .unwrap();
            let answer = String::from_utf8_lossy(&answer).into_owned();
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            answer
        }
    };
    // Announces 50 kB, sends three bytes.
    let answer = stall(head(50_000), b"{\"a").await;
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    // Chunked: one chunk, then nothing. Its connection closes too (actix would otherwise wait to
    // drain the rest of a chunked body).
    let answer = stall(head(0).replace("Content-Length: 0", "Transfer-Encoding: chunked"), b"3\r\n{\"a\r\n").await;
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    // On the Personalizer routes the answer takes Azure's shape.
    let azure = head(50_000)
        .replace("/v1/decide", "/personalizer/v1.0/rank")
        .replace("Authorization: Bearer", "Ocp-Apim-Subscription-Key:");
    let answer = stall(azure, b"{\"a").await;
    assert!(answer.contains("\"innerError\":{\"code\":\"request_timeout\"}"), "{answer}");
    // Slow: the same decision request, a few bytes every 150 ms.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(head(body.len()).as_bytes()).await.unwrap();
    for chunk in body.chunks(body.len() / 4 + 1) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        slow.write_all(chunk).await.unwrap();
    }
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200, "the service keeps serving");
}

/// A query string that does not fit its endpoint gets `invalid_query` and says what is wrong; a
/// refusal that quotes its input quotes at most [`lethe_collect::MAX_MESSAGE`] bytes of it.
#[actix_web::test]
async fn query_errors_say_why_and_refusals_do_not_echo_megabytes() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    for (query, says) in [("count=abc", "invalid digit"), ("count=5&count=6", "duplicate"), ("bogus=1", "bogus")] {
        let (status, body) = app.get(&format!("/v1/recommendations?anonymousId=a1&{query}"), Some(&cms)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{query}: {body}");
    }
    let dpo = app.token(Role::Dpo, None);
    let huge = "k".repeat(1_000_000);
    let (status, body) = app
        .post("/v1/requests", Some(&dpo), &json!({"kind": huge, "law": "gdpr", "channel": "email", "subject": "echo"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.len() <= 600 && message.ends_with('…'), "{} bytes", message.len());
}

/// Every API endpoint `/openapi.json` documents takes the query parameters its description lists and
/// no other: an unknown one is refused with 400 `invalid_query` naming it (Azure's shape on the
/// Personalizer routes), before any credentials are looked at, where it used to be passed over on
/// the endpoints that take no query; documented ones still work; the SDK's files and the health
/// checks pass over any query (a cache buster).
#[actix_web::test]
async fn api_endpoints_refuse_query_parameters_they_do_not_document() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut asked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !(path.starts_with("/v1/") || path.starts_with("/personalizer/")) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let url = format!("{}{}?zz_misspelt=1", app.address, path.replace('{', "x").replace('}', ""));
            let request = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                "put" => app.client.put(&url).json(&json!({})),
                "delete" => app.client.delete(&url),
                _ => continue,
            };
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            let (code, message) = if path.starts_with("/personalizer/") {
                (&body["error"]["innerError"]["code"], &body["error"]["message"])
            } else {
                (&body["code"], &body["message"])
            };
            assert_eq!((status, code.as_str()), (400, Some("invalid_query")), "{method} {path}: {body}");
            let message = message.as_str().unwrap();
            assert!(message.contains("`zz_misspelt`"), "{method} {path}: {message}");
            let documented: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for name in &documented {
                assert!(message.contains(&format!("`{name}`")), "{method} {path} names what it takes: {message}");
            }
            if documented.is_empty() {
                assert!(message.ends_with("takes none"), "{method} {path}: {message}");
            }
            asked += 1;
        }
    }
    assert!(asked >= 30, "every documented API operation was asked: {asked}");

    // A misspelt parameter beside documented ones; the documented ones alone are served.
    let dpo = app.token(Role::Dpo, None);
    let (status, body) = app.get("/v1/requests?status=all&limt=5", Some(&dpo)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("`limt`"), "{body}");
    let (status, body) = app.get("/v1/requests?status=all&kind=erasure", Some(&dpo)).await;
    assert_eq!(status, 200, "{body}");
    let admin = app.token(Role::Admin, None);
    let (status, body) = app.get("/v1/audit/chain?from=5", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    let (status, body) = app.get("/v1/audit/chain", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    // An admin opting a subject out names it with the documented `?subject=`.
    app.consent("opted-by-admin", &["analytics", "sale_share"], &[]).await;
    let (status, body) = app.post("/v1/me/opt-out?subject=opted-by-admin", Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    // Outside the API, a query is passed over.
    for path in ["/sdk.js?v=3", "/healthz?probe=1", "/openapi.json?x=1"] {
        let status = app.client.get(format!("{}{path}", app.address)).send().await.unwrap().status().as_u16();
        assert_eq!(status, 200, "{path}");
    }
}

/// A near-valid body of every POST route, mutated at random (values of the wrong type, out of
/// range, huge or nested deep, fields dropped or added, the JSON cut short or not JSON at all),
/// each answered under 500 with a JSON error that names its code, and the service serving after.
/// Seeded: a failure names its route and body and repeats.
#[actix_web::test]
async fn mutated_bodies_on_every_post_route_get_coded_errors_never_a_5xx() {
    use rand::{Rng, SeedableRng};
    let app = spawn_app().await;
    app.consent("fz", &["personalization", "analytics"], &[]).await;
    let (site, cms, admin, subject) =
        (app.site(), app.token(Role::Cms, None), app.token(Role::Admin, None), app.token(Role::Subject, Some("fz")));
    let d = app.post("/v1/decide", Some(&cms), &json!({"anonymousId": "fz", "slot": "home-hero"})).await.1;
    let routes: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "/v1/track",
            &site,
            json!({"anonymousId": "fz", "event": "Product Viewed", "messageId": "m1",
            "properties": {"product_id": "p1", "category": "outdoor"}, "timestamp": "2026-01-01T00:00:00Z"}),
        ),
        (
            "/v1/page",
            &site,
            json!({"anonymousId": "fz", "name": "Home", "properties": {"url": "https://shop.example/"}}),
        ),
        ("/v1/identify", &admin, json!({"anonymousId": "fz", "userId": "u-fz", "traits": {"plan": "gold"}})),
        (
            "/v1/batch",
            &site,
            json!({"batch": [{"type": "track", "anonymousId": "fz", "event": "Clicked", "messageId": "m2"}]}),
        ),
        (
            "/v1/consent",
            &site,
            json!({"anonymousId": "fz", "notice": app.notice(), "granted": ["analytics"],
            "denied": ["advertising"], "method": "banner", "jurisdiction": "EU", "locale": "en", "sdkVersion": "test"}),
        ),
        (
            "/v1/decide",
            &cms,
            json!({"anonymousId": "fz", "slot": "home-hero", "count": 2,
            "context": {"device": "mobile", "page": "/", "referrer": "https://search.example/"},
            "candidates": ["default", {"id": "outdoor-gear", "category": "outdoor", "content": {"title": "Gear"}}]}),
        ),
        ("/v1/outcomes", &cms, json!({"decisionId": d["decisionId"], "type": "click", "value": 1.5})),
        ("/v1/decide/slots/home-hero/canary", &admin, json!({"share_permille": 100})),
        ("/v1/decide/slots/home-hero/evaluate", &cms, json!({"params": {"alpha": 1.0}})),
        (
            "/personalizer/v1.0/rank",
            &cms,
            json!({"eventId": "e1", "contextFeatures": [{"device": "mobile"}],
            "actions": [{"id": "a", "features": [{"x": 1}]}, {"id": "b", "features": [{"x": 2}]}], "excludedActions": ["b"]}),
        ),
        ("/personalizer/v1.0/events/e1/reward", &cms, json!({"value": 1.0})),
        ("/v1/requests", &admin, json!({"kind": "access", "subject": {"anonymousId": "fz"}})),
        ("/v1/me/withdraw", &subject, json!({"purposes": ["personalization"]})),
        ("/v1/me/opt-out", &subject, json!({"anonymousId": "fz"})),
    ];
    fn scalar(rng: &mut impl Rng) -> serde_json::Value {
        match rng.gen_range(0..16) {
            0 => json!(null),
            1 => json!(true),
            2 => json!(-1),
            3 => json!(i64::MIN),
            4 => json!(u64::MAX),
            5 => json!(1e308),
            6 => json!(""),
            7 => json!("x".repeat(70_000)),
            8 => json!("\u{0}\u{7f}\u{ffff}"),
            9 => json!("💥 ../../etc/passwd <script>"),
            10 => json!([]),
            11 => json!({}),
            12 => json!([1, [2, [3, {"a": null}]]]),
            13 => json!(0.5),
            14 => json!("NaN"),
            _ => json!({"a": {"b": {"c": "d"}}}),
        }
    }
    fn mutate(v: &serde_json::Value, rng: &mut impl Rng) -> serde_json::Value {
        if rng.gen_bool(0.15) {
            return scalar(rng);
        }
        match v {
            serde_json::Value::Object(m) => {
                let mut m = m.clone();
                for k in m.keys().cloned().collect::<Vec<_>>() {
                    if rng.gen_bool(0.3) {
                        let x = mutate(&m[&k], rng);
                        m.insert(k, x);
                    } else if rng.gen_bool(0.1) {
                        m.remove(&k);
                    }
                }
                if rng.gen_bool(0.1) {
                    m.insert(["extra", "__proto__", "", "ü"][rng.gen_range(0..4)].to_owned(), scalar(rng));
                }
                m.into()
            }
            serde_json::Value::Array(a) => {
                let mut a: Vec<_> =
                    a.iter().map(|x| if rng.gen_bool(0.3) { mutate(x, rng) } else { x.clone() }).collect();
                if rng.gen_bool(0.1) {
                    a = a.iter().cycle().take(100 * a.len()).cloned().collect();
                }
                a.into()
            }
            other => other.clone(),
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1e7e);
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..600 {
        let (path, token, seed) = &routes[rng.gen_range(0..routes.len())];
        let text = serde_json::to_vec(&mutate(seed, &mut rng)).unwrap();
        let body = match rng.gen_range(0..20) {
            0 => text[..rng.gen_range(0..=text.len())].to_vec(),
            1 => [b"[".repeat(5_000), b"]".repeat(5_000)].concat(),
            2 => (0..rng.gen_range(0..200)).map(|_| rng.gen::<u8>()).collect(),
            3 => [b"{\"a\":".repeat(300), b"1".to_vec(), b"}".repeat(300)].concat(),
            _ => text,
        };
        // What a failure shows of the body.
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let r = app
            .client
            .post(format!("{}{path}", app.address))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: no answer ({e}) to {shown}"));
        let status = r.status().as_u16();
        let answer: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status < 500, "{path}: {status} {answer} to {shown}");
        if status >= 400 {
            // The Personalizer routes answer in Azure's shape, `{"error": {"code", "message"}}`.
            let code = if path.starts_with("/personalizer/") { &answer["error"]["code"] } else { &answer["code"] };
            assert!(code.is_string(), "{path}: {status} without a coded JSON error ({answer}) to {shown}");
        }
        *answered.entry(status).or_default() += 1;
    }
    // Refusals and acceptances both: the mutations stayed near enough to valid to reach the handlers.
    assert!(answered.keys().any(|s| *s < 300) && answered.keys().any(|s| *s == 400), "{answered:?}");
    let (status, _) = app.post("/v1/decide", Some(&cms), &json!({"anonymousId": "fz", "slot": "home-hero"})).await;
    assert_eq!(status, 200, "still serving");
}
