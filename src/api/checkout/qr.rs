//! QR codes rendered on the server as inline SVG: no image request, no script, nothing
//! from another origin.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// The QR code of `data` as an `<svg>` element with `label` as its accessible name.
/// `None` only when `data` is too long for a QR code (never for a payment URI).
pub fn svg(data: &str, label: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    // The renderer writes a standalone document: keep the element, give it a role and a
    // name, and let the stylesheet size it.
    let start = image.find("<svg")?;
    let element = &image[start..];
    Some(element.replacen(
        "<svg",
        &format!(
            "<svg role=\"img\" aria-label=\"{}\" class=\"qr\"",
            super::escape(label)
        ),
        1,
    ))
}

/// The dark modules of `data`'s QR code, row by row, with its width: what a test decodes.
pub fn modules(data: &str) -> Option<(usize, Vec<bool>)> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let colors = code.to_colors();
    Some((
        code.width(),
        colors
            .into_iter()
            .map(|c| c == qrcode::Color::Dark)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_is_one_element_with_a_name_and_nothing_active() {
        let s = svg("ethereum:0xabc@1?value=1", "pay <1> & more").unwrap();
        assert!(s.starts_with("<svg role=\"img\" aria-label=\"pay &lt;1&gt; &amp; more\""));
        assert!(!s.contains("<?xml"));
        assert!(!s.to_ascii_lowercase().contains("<script"));
        assert!(!s.contains("href"));
    }
}
