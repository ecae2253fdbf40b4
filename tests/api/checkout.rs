//! The payer's page over real HTTP: what it shows, the QR code it serves (decoded from the
//! served SVG), its headers, and that it reaches nothing outside this origin.

use serde_json::{json, Value};

use crate::helpers::{metric, spawn_app, TestApp, TKN};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn fetch(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app.client.get(app.url(path)).send().await.expect("sent");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

/// The value of the first `name="..."` attribute in `html`, unescaped.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + html[start..].find('"')?;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Decodes the QR code of the served `<svg>`: the renderer draws the dark modules as
/// rectangles in one path (`M{x} {y}h{w}v{h}H{x}V{y}`, in pixels), so the image is
/// rebuilt from the path and read by a decoder.
fn decode_qr(html: &str) -> String {
    let start = html.find("<svg").expect("an inline svg");
    let svg = &html[start..start + html[start..].find("</svg>").expect("closed svg")];
    let size: usize = attribute(svg, " width")
        .expect("width")
        .parse()
        .expect("number");
    let path = attribute(svg, " d").expect("a path");
    let mut dark = vec![false; size * size];
    for cmd in path.split('M').filter(|c| !c.is_empty()) {
        let n: Vec<usize> = cmd
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .take(4)
            .map(|n| n.parse().expect("number"))
            .collect();
        let (x, y, w, h) = (n[0], n[1], n[2], n[3]);
        for row in y..(y + h).min(size) {
            for col in x..(x + w).min(size) {
                dark[row * size + col] = true;
            }
        }
    }
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        if dark[y * size + x] {
            0
        } else {
            255
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("decodes").1
}

#[tokio::test]
async fn the_page_shows_the_request_and_its_qr_decodes_to_it() {
    let app = spawn_app().await;
    let p = app.create_payment("0.25").await;
    let id = p["id"].as_str().unwrap();
    let address = p["address"].as_str().unwrap();
    let (status, headers, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.contains(">0.25</output>"), "{html}");
    assert!(html.contains(address), "the checksummed address");
    assert!(html.contains("Test merchant"));
    assert!(html.contains("data-state=\"waiting\""));
    let request = format!("ethereum:{address}@31337?value=250000000000000000");
    assert_eq!(
        attribute(&html, "data-qr").as_deref(),
        Some(request.as_str())
    );
    assert_eq!(
        decode_qr(&html),
        request,
        "the served QR code holds the request"
    );
    // Nothing from another origin, no inline script: every reference is a path of ours
    // (or the wallet link), and every script element is empty with a src of ours.
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            assert!(
                url.starts_with("/pay/") || url.starts_with("ethereum:"),
                "{attr}{url}"
            );
        }
    }
    for part in html.split("<script").skip(1) {
        assert!(part.starts_with(" src=\"/pay/assets/"));
        assert!(part[part.find('>').unwrap() + 1..].starts_with("</script>"));
    }
    // No metadata, order id or merchant id on the payer's page.
    assert!(!html.contains(&app.merchant_id.to_string()));

    // The status document the script re-reads.
    let (status, headers, body) = fetch(&app, &format!("/pay/{id}/status")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-security-policy"], CSP);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "waiting");
    assert_eq!(v["due"], "0.25");
    assert_eq!(v["final"], false);
    assert!(v["expires_in"].as_i64().unwrap() > 3000);

    // Canceled by the merchant: the page stops asking for money and stops refreshing.
    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 200);
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert!(html.contains("data-state=\"canceled\""));
    assert!(!html.contains("<svg"), "no QR code once it takes no funds");
    assert!(!html.contains("http-equiv=\"refresh\""));
    let (_, _, body) = fetch(&app, &format!("/pay/{id}/status")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["final"].as_bool()),
        (Some("canceled"), Some(true))
    );
}

#[tokio::test]
async fn a_token_qr_holds_the_plain_address_and_the_transfer_request_is_a_link() {
    let app = spawn_app().await;
    let r = app
        .post_payment(&json!({"chain": "devchain", "asset": "TKN", "amount": "1.5"}))
        .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    let (id, address) = (p["id"].as_str().unwrap(), p["address"].as_str().unwrap());
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert_eq!(decode_qr(&html), address);
    let token = TKN;
    let link =
        format!("ethereum:{token}@31337/transfer?address={address}&uint256=1500000000000000000");
    assert!(
        html.contains(&format!("href=\"{}\"", link.replace('&', "&amp;"))),
        "{html}"
    );
}

#[tokio::test]
async fn a_return_url_is_kept_and_offered_once_confirmed() {
    let app = spawn_app().await;
    for bad in [
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "/relative",
    ] {
        let r = app
            .post_payment(
                &json!({"chain": "devchain", "asset": "native", "amount": "1", "return_url": bad}),
            )
            .await;
        let err = crate::helpers::expect_error(r, 400, "invalid_request").await;
        assert_eq!(err["param"], "return_url", "{bad}");
    }
    let back = "https://shop.example/orders/42?paid=1&x=\"y\"";
    let r = app
        .post_payment(
            &json!({"chain": "devchain", "asset": "native", "amount": "1", "return_url": back}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["return_url"], back);
    let id = p["id"].as_str().unwrap();
    let link = format!(
        "href=\"{}\"",
        back.replace('&', "&amp;").replace('"', "&quot;")
    );
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert!(
        html.contains("<p id=\"return\" hidden>"),
        "hidden while not confirmed"
    );
    assert!(html.contains(&link));
    // Confirmed (set in the database: this test is about the page, not the chain).
    let c = app.store.client().await.unwrap();
    c.execute(
        "UPDATE payments SET status = 'confirmed', amount_received_raw = amount_raw WHERE id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert!(html.contains("<p id=\"return\">"), "{html}");
    assert!(html.contains("data-state=\"confirmed\""));
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_the_same_plain_404() {
    let app = spawn_app().await;
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().unwrap();
    let mut pages = Vec::new();
    for path in [
        "/pay/01a2306c-8890-7161-98c0-9d7d1ecb4ef3".to_string(),
        "/pay/not-an-id".to_string(),
        "/pay/%3Cscript%3E".to_string(),
        // Another id that differs from a real one in its last digit.
        format!(
            "/pay/{}{}",
            &id[..id.len() - 1],
            if id.ends_with('0') { '1' } else { '0' }
        ),
        "/pay/not-an-id/status".to_string(),
    ] {
        let (status, headers, html) = fetch(&app, &path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-security-policy"], CSP);
        assert!(html.contains("Payment not found"));
        assert!(!html.contains("<script"));
        pages.push(html);
    }
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "one page for all");
    let (status, headers, js) = fetch(&app, "/pay/assets/checkout.js").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert!(js.contains("data-status-url"));
    let (status, _, _) = fetch(&app, "/pay/assets/other.js").await;
    assert_eq!(status, 404);
}

/// Reads the event stream until it holds `n` events (blank-line separated); keep-alive
/// comments are not events.
async fn events(r: &mut reqwest::Response, n: usize) -> Vec<String> {
    let mut text = String::new();
    loop {
        let events: Vec<String> = text
            .split("\n\n")
            .filter(|e| e.lines().any(|l| l.starts_with("data:")))
            .map(str::to_string)
            .collect();
        let complete = text.ends_with("\n\n") || events.len() > n;
        if events.len() >= n && complete {
            return events;
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), r.chunk())
            .await
            .expect("an event in time")
            .expect("reads")
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

#[tokio::test]
async fn the_event_stream_says_changed_when_the_payment_changes() {
    let app = spawn_app().await;
    // This replica's subscription to payment changes must be in place first: a change
    // before it would be missed (a page polls as well, so that costs it one poll).
    let changes = app.state.changes.clone();
    crate::helpers::eventually(20, "the subscription", || {
        let c = changes.clone();
        async move { c.is_listening().then_some(()) }
    })
    .await;
    let p = app.create_payment("1").await;
    let id = p["id"].as_str().unwrap();
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    let events_url = attribute(&html, "data-events-url").expect("the page names its stream");
    assert_eq!(events_url, format!("/pay/{id}/events"));

    let mut stream = app.client.get(app.url(&events_url)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(stream.headers()["content-security-policy"], CSP);
    assert_eq!(stream.headers()["cache-control"], "no-store");
    // First a nudge (the payment may have changed since the page was rendered), with the
    // reconnect delay.
    let first = events(&mut stream, 1).await;
    assert!(first[0].contains("data:changed") && first[0].contains("retry:3000"));
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "ctrip_checkout_event_streams"), Some(1.0));

    // The merchant cancels: a write on the payment, which the database announces to every
    // replica, reaches the open stream. It says nothing but "changed".
    let other = app.create_payment("2").await;
    let r = app
        .post(&format!(
            "/v1/payments/{}/cancel",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 200);
    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 200);
    let next = events(&mut stream, 1).await;
    assert_eq!(next[0].trim(), "data:changed");

    // Unknown ids get the plain 404; other methods are refused.
    let (status, _, html) = fetch(&app, "/pay/not-an-id/events").await;
    assert_eq!(status, 404);
    assert!(html.contains("Payment not found"));
    let r = app.client.post(app.url(&events_url)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    drop(stream);
    crate::helpers::eventually(20, "the closed stream's release", || async {
        let text = app.metrics_text().await;
        (metric(&text, "ctrip_checkout_event_streams") == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn past_the_stream_cap_a_page_is_told_to_poll() {
    let app = crate::helpers::spawn_app_with(|s| s.server.max_event_streams = 1).await;
    let p = app.create_payment("1").await;
    let url = app.url(&format!("/pay/{}/events", p["id"].as_str().unwrap()));
    let mut first = app.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    events(&mut first, 1).await;
    let second = app.client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "30");
    assert_eq!(second.headers()["content-security-policy"], CSP);
}

#[tokio::test]
async fn a_merchants_branding_reaches_its_pages_and_nothing_else_does() {
    let app = spawn_app().await;
    assert!(ctrip::ops::set_branding(
        &app.store,
        app.merchant_id,
        Some("Corner <Shop>"),
        Some(ctrip::domain::checkout::Accent::parse("#FFCC00")),
        Some(ctrip::domain::checkout::TokenQr::Eip681),
    )
    .await
    .unwrap());
    let r = app
        .post_payment(&json!({"chain": "devchain", "asset": "TKN", "amount": "1.5"}))
        .await;
    let p: Value = r.json().await.unwrap();
    let (id, address) = (p["id"].as_str().unwrap(), p["address"].as_str().unwrap());
    let (_, _, html) = fetch(&app, &format!("/pay/{id}")).await;
    assert!(html.contains("Corner &lt;Shop&gt;"), "the name, escaped");
    assert!(html.contains("href=\"/pay/assets/accent-ffcc00.css\""));
    // This merchant chose the transfer request for its token QR codes.
    assert_eq!(
        decode_qr(&html),
        format!("ethereum:{TKN}@31337/transfer?address={address}&uint256=1500000000000000000")
    );
    // The accent comes as a stylesheet of ours (no inline style under the policy), with
    // text that stays readable on it.
    let (status, headers, css) = fetch(&app, "/pay/assets/accent-ffcc00.css").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert!(
        css.contains("--accent: #ffcc00; --on-accent: #000000;"),
        "{css}"
    );
    for bad in [
        "accent-FFCC00.css",
        "accent-ffcc0.css",
        "accent-ffcc00;x.css",
        "accent-.css",
    ] {
        let (status, _, _) = fetch(&app, &format!("/pay/assets/{bad}")).await;
        assert_eq!(status, 404, "{bad}");
    }
    // Another merchant's page keeps the defaults.
    let created = ctrip::ops::create_merchant(&app.store, "Plain")
        .await
        .unwrap();
    let r = app
        .post_payment_as(
            &created.api_key,
            &json!({"chain": "devchain", "asset": "TKN", "amount": "1"}),
            None,
        )
        .await;
    let p: Value = r.json().await.unwrap();
    let (_, _, html) = fetch(&app, &format!("/pay/{}", p["id"].as_str().unwrap())).await;
    assert!(!html.contains("accent-"));
    assert!(!html.contains("Corner"));
    assert_eq!(decode_qr(&html), p["address"].as_str().unwrap());
}
