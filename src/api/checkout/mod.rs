//! The payer's page: `GET /pay/{payment_id}`, public (a payment id is unguessable), with
//! its status document and its two assets. Everything is served by this binary; the page
//! is complete without JavaScript (it then refreshes itself), and the script only keeps it
//! live and copies to the clipboard. Nothing about the merchant is shown beyond its name.

pub mod changes;
mod qr;
pub mod strings;

use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;
use warp::http::{header, HeaderValue, Response, StatusCode};

use super::{ApiError, ApiRequest, ApiResult, AppState, Reply};
use crate::domain::checkout::{self, Accent, Branding, PayerState, TokenQr};
use crate::domain::{format_units, Payment};
use crate::store::{merchants, payments};
use strings::{Strings, EN};

pub use qr::modules as qr_modules;

/// Script and style are files of this binary; no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("checkout.js");
const STYLE: &str = include_str!("checkout.css");

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page response with the headers every checkout response carries.
fn page(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    cache: &'static str,
) -> ApiResult {
    let mut r = Response::new(bytes::Bytes::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    protect(r.headers_mut(), cache);
    Ok(r)
}

/// The headers every checkout response carries: this origin only, no referrer, no
/// framing, no sniffing.
fn protect(h: &mut warp::http::HeaderMap, cache: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
}

/// The same plain page for an unknown and a malformed id: it tells nothing.
fn not_found(s: &Strings) -> ApiResult {
    let body = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/pay/assets/checkout.css\"></head>\
         <body><main class=\"checkout\"><h1>{title}</h1><p>{text}</p></main></body></html>\n",
        lang = s.lang,
        title = escape(s.not_found_title),
        text = escape(s.not_found_text),
    );
    page(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        body,
        "no-store",
    )
}

/// The payment behind a page address, with its merchant's branding.
async fn load(state: &AppState, id: &str) -> Result<Option<(Payment, Branding)>, ApiError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let client = state.store.client().await?;
    let Some(p) = payments::get_any(&client, id).await? else {
        return Ok(None);
    };
    let branding = merchants::branding(&client, p.merchant_id)
        .await?
        .unwrap_or_default();
    Ok(Some((p, branding)))
}

/// What the page shows of a payment now, also sent as its status document.
#[derive(Debug, Serialize)]
struct View {
    state: &'static str,
    message: &'static str,
    due_label: &'static str,
    /// Still due (the full amount once nothing more is due), as a decimal string.
    due: String,
    /// Whether `due` is what is left to pay (else it is the requested amount).
    due_is_remaining: bool,
    symbol: String,
    confirmations: u32,
    confirmations_required: u32,
    /// Seconds until the window closes (0 once closed); the page counts down from it, so
    /// the payer's clock does not matter.
    expires_in: i64,
    #[serde(rename = "final")]
    done: bool,
}

fn view(p: &Payment, s: &Strings) -> View {
    let state = PayerState::of(p);
    let remaining = checkout::remaining(p);
    let due_is_remaining = state.accepts_funds();
    let due = if due_is_remaining {
        remaining
    } else {
        p.amount_raw
    };
    View {
        state: state.as_str(),
        message: s.state(state),
        due_label: if due_is_remaining {
            s.amount_due
        } else {
            s.amount
        },
        due: format_units(due, p.asset.decimals),
        due_is_remaining,
        symbol: p.asset.symbol.clone(),
        confirmations: p.confirmations.min(p.confirmations_required),
        confirmations_required: p.confirmations_required,
        expires_in: (p.expires_at - Utc::now()).num_seconds().max(0),
        done: state.is_final(),
    }
}

/// `GET /pay/{id}`
pub async fn show(state: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let s = &EN;
    let Some((p, brand)) = load(state, id).await? else {
        return not_found(s);
    };
    let merchant = &brand.name;
    let v = view(&p, s);
    let payer_state = PayerState::of(&p);
    let address = p.address.to_checksum(None);
    let remaining = checkout::remaining(&p);
    // Native coin: an EIP-681 request with the amount. Token: the plain address unless
    // the merchant chose otherwise (some wallets misread token requests), with the
    // transfer request offered as a link.
    let (qr_data, wallet_link, wallet_text) = match p.asset.contract {
        None => {
            let uri = checkout::native_uri(p.address, p.chain_id, remaining);
            (uri.clone(), uri, s.open_wallet)
        }
        Some(token) => {
            let uri = checkout::token_transfer_uri(token, p.chain_id, p.address, remaining);
            let qr = match brand.token_qr {
                TokenQr::Address => address.clone(),
                TokenQr::Eip681 => uri.clone(),
            };
            (qr, uri, s.open_wallet_transfer)
        }
    };
    let pay_block = if payer_state.accepts_funds() {
        let label = format!(
            "{} {} {} on {} to {}",
            s.qr_label, v.due, v.symbol, p.chain, address
        );
        let qr = qr::svg(&qr_data, &label).unwrap_or_default();
        format!(
            "<div id=\"pay\"><figure class=\"qr-box\">{qr}<figcaption>{scan}</figcaption></figure>\n\
             <div class=\"field\"><label for=\"address\">{address_label}</label>\
             <input id=\"address\" class=\"mono\" readonly value=\"{address}\" data-qr=\"{qr_data}\">\
             <button type=\"button\" class=\"copy\" data-copy=\"{address}\">{copy_address}</button></div>\n\
             <p><a class=\"wallet\" href=\"{link}\">{wallet_text}</a></p></div>\n",
            scan = escape(s.scan),
            address_label = escape(s.address),
            address = escape(&address),
            qr_data = escape(&qr_data),
            copy_address = escape(s.copy_address),
            link = escape(&wallet_link),
            wallet_text = escape(wallet_text),
        )
    } else {
        String::new()
    };
    let refresh = if v.done {
        String::new()
    } else {
        "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>".to_string()
    };
    let note = if v.done {
        String::new()
    } else {
        format!(
            "<noscript><p class=\"note\">{}</p></noscript>",
            escape(s.refresh_note)
        )
    };
    // The way back to the merchant, shown once confirmed (the script reveals it when the
    // payment confirms while the page is open).
    let back = match &p.return_url {
        Some(url) => format!(
            "<p id=\"return\"{hidden}><a class=\"wallet\" href=\"{url}\">{text}</a></p>\n",
            hidden = if payer_state == PayerState::Confirmed {
                ""
            } else {
                " hidden"
            },
            url = escape(url),
            text = escape(s.return_to_merchant),
        ),
        None => String::new(),
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n{refresh}\n\
         <title>{pay} {merchant}</title>\n\
         <link rel=\"stylesheet\" href=\"/pay/assets/checkout.css\">\n{accent}\
         <script src=\"/pay/assets/checkout.js\" defer></script>\n</head>\n<body>\n\
         <main class=\"checkout\" id=\"checkout\" data-status-url=\"/pay/{id}/status\" \
         data-events-url=\"/pay/{id}/events\" data-state=\"{state}\">\n\
         <h1>{pay} {merchant}</h1>\n\
         <p id=\"message\" class=\"message state-{state}\" role=\"status\" aria-live=\"polite\">{message}</p>\n\
         <div class=\"field\"><span id=\"due-label\">{due_label}</span>\
         <p class=\"amount\"><output id=\"due\" aria-labelledby=\"due-label\">{due}</output> \
         <span id=\"symbol\">{symbol}</span></p>\
         <button type=\"button\" class=\"copy\" id=\"copy-due\" data-copy=\"{due}\">{copy_amount}</button></div>\n\
         <p>{network_label}: <span id=\"network\">{chain}</span> (chain id {chain_id})</p>\n\
         {pay_block}\
         <p id=\"confirmations-line\"{hide_conf}>{conf_label}: <span id=\"confirmations\">{conf}</span> / \
         <span id=\"confirmations-required\">{conf_req}</span></p>\n\
         <p id=\"expiry-line\"{hide_exp}>{expires_label}: <time id=\"expires\" data-expires-in=\"{expires_in}\">{countdown}</time></p>\n\
         {back}{note}\n<p id=\"copied\" class=\"copied\" role=\"status\" aria-live=\"polite\" data-text=\"{copied}\"></p>\n\
         </main>\n</body>\n</html>\n",
        lang = s.lang,
        pay = escape(s.pay),
        merchant = escape(merchant),
        id = p.id,
        state = v.state,
        message = escape(v.message),
        due_label = escape(v.due_label),
        due = escape(&v.due),
        symbol = escape(&v.symbol),
        copy_amount = escape(s.copy_amount),
        network_label = escape(s.network),
        chain = escape(&p.chain),
        chain_id = p.chain_id,
        hide_conf = if payer_state == PayerState::Processing { "" } else { " hidden" },
        conf_label = escape(s.confirmations),
        conf = v.confirmations,
        conf_req = v.confirmations_required,
        hide_exp = if payer_state.accepts_funds() { "" } else { " hidden" },
        expires_label = escape(s.expires_in),
        expires_in = v.expires_in,
        countdown = countdown(v.expires_in),
        copied = escape(s.copied),
        back = back,
        accent = match brand.accent {
            Some(a) => format!(
                "<link rel=\"stylesheet\" href=\"/pay/assets/accent-{}.css\">\n",
                a.hex()
            ),
            None => String::new(),
        },
    );
    page(StatusCode::OK, "text/html; charset=utf-8", body, "no-store")
}

/// `h:mm:ss` or `m:ss`.
fn countdown(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `GET /pay/{id}/status`: what the page re-reads to stay live.
pub async fn status(state: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let s = &EN;
    let Some((p, _)) = load(state, id).await? else {
        return not_found(s);
    };
    let body = serde_json::to_string(&view(&p, s)).map_err(|e| ApiError::Internal(e.into()))?;
    page(StatusCode::OK, "application/json", body, "no-store")
}

/// `GET /pay/{id}/events`: server-sent events that only say "changed" (the page then
/// re-reads its status). 503 when this replica already follows its maximum of pages; the
/// page then keeps polling.
pub async fn events(state: &AppState, _req: &ApiRequest, id: &str) -> Result<Reply, ApiError> {
    let Some((p, _)) = load(state, id).await? else {
        return not_found(&EN).map(|r| r.map(Into::into));
    };
    let Some(nudges) = state.changes.follow(p.id) else {
        let mut r = page(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "busy: poll the status instead\n".into(),
            "no-store",
        )?;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return Ok(r.map(Into::into));
    };
    // A comment now and then keeps the connection under the server's idle timeout and
    // tells intermediaries it is alive.
    let keep_alive =
        (state.settings.server.idle_timeout / 2).min(std::time::Duration::from_secs(15));
    let stream = warp::sse::keep_alive().interval(keep_alive).stream(nudges);
    let mut r = warp::reply::Reply::into_response(warp::sse::reply(stream));
    protect(r.headers_mut(), "no-store");
    // Proxies that buffer responses would hold the nudges back.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// `GET /pay/assets/{name}`: the page's script and stylesheet.
pub async fn asset(name: &str) -> ApiResult {
    match name {
        "checkout.js" => page(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT.to_string(),
            "public, max-age=3600",
        ),
        "checkout.css" => page(
            StatusCode::OK,
            "text/css; charset=utf-8",
            STYLE.to_string(),
            "public, max-age=3600",
        ),
        // A merchant's accent, as a stylesheet of its own (the policy allows no inline
        // style). The name is the colour, so it is cached like the other assets.
        _ => match name
            .strip_prefix("accent-")
            .and_then(|n| n.strip_suffix(".css"))
            .filter(|hex| {
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .and_then(|hex| Accent::parse(&format!("#{hex}")))
        {
            Some(a) => page(
                StatusCode::OK,
                "text/css; charset=utf-8",
                format!(
                    ":root {{ --accent: #{}; --on-accent: {}; }}\n",
                    a.hex(),
                    a.text_on()
                ),
                "public, max-age=86400",
            ),
            None => not_found(&EN),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href='x'>\"&"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;"
        );
    }

    #[test]
    fn the_countdown_reads_naturally() {
        assert_eq!(countdown(0), "0:00");
        assert_eq!(countdown(61), "1:01");
        assert_eq!(countdown(3600 + 5), "1:00:05");
    }

    #[test]
    fn the_assets_are_ours_alone() {
        for text in [SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("@import"));
        }
    }
}
