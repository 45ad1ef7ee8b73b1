//! The small toolkit of the status page: URL parts, times for people, the style.
//!
//! The page is written with [`maud`]'s `html!` templates, which escape every value spliced into
//! them (team names, venues, channel names and error texts are untrusted); only the constants of
//! this module are marked as markup ([`style`]).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped};

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub fn query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The style sheet for `<style>`: raw text there (an entity would stay an entity), and a
/// constant of this file, so it goes in unescaped.
pub fn style() -> PreEscaped<&'static str> {
    PreEscaped(STYLE)
}

/// The request's `Host` header when it looks like a host name or address with an optional port;
/// anything else (missing, or characters no host has) is not used to build links.
pub fn plausible_host(host: &str) -> Option<&str> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(host)
}

/// `Sat 28 Nov 16:00` in `tz`.
pub fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %-d %b %H:%M").to_string()
}

/// `<time>` element: the local time, the exact instant in `datetime`.
pub fn time_tag(t: DateTime<Utc>, tz: Tz) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (local(t, tz)) } }
}

/// How long ago `t` was, roughly: `just now`, `5 min ago`, `3 h ago`, `2 days ago`.
pub fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    match secs {
        s if s < 60 => "just now".to_string(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// `Sat 28 Nov 16:00 (3 h ago)`.
pub fn when(now: DateTime<Utc>, t: DateTime<Utc>, tz: Tz) -> Markup {
    html! { (time_tag(t, tz)) " (" (ago(now, t)) ")" }
}

/// The whole style: no external asset, readable on a phone, dark when the phone is.
pub const STYLE: &str = r#"
:root { --fg:#1d232a; --muted:#5b6670; --bg:#f6f7f9; --card:#fff; --line:#dde2e7;
  --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --new:#0969da; --chg:#8250df; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6edf3; --muted:#9aa5b1; --bg:#0d1117;
  --card:#161b22; --line:#30363d; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --new:#58a6ff;
  --chg:#bc8cff; } }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:60rem; margin:0 auto; padding:1rem; }
h1 { font-size:1.4rem; margin:.2rem 0 .6rem; }
h2 { font-size:1.1rem; margin:1.6rem 0 .5rem; }
h3 { font-size:.95rem; margin:1rem 0 .3rem; color:var(--muted); text-transform:uppercase;
  letter-spacing:.03em; }
a { color:var(--new); overflow-wrap:anywhere; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:.7rem .9rem; margin:.5rem 0; }
.card > :first-child { margin-top:0; } .card > :last-child { margin-bottom:0; }
.banner { border-left:6px solid var(--muted); }
.banner.ok { border-left-color:var(--ok); } .banner.warn { border-left-color:var(--warn); }
.banner.bad { border-left-color:var(--bad); }
.muted, .meta { color:var(--muted); font-size:.9rem; }
ol, ul { list-style:none; margin:0; padding:0; }
.match { display:flex; gap:.8rem; padding:.55rem 0; border-top:1px solid var(--line); }
.match:first-child { border-top:0; }
.match .when { flex:0 0 3.4rem; font-weight:600; font-variant-numeric:tabular-nums; }
.match .what { flex:1; min-width:0; }
.match .title { font-weight:600; }
.match.cancelled .name, .match.withdrawn .name { text-decoration:line-through; }
.day h3 { margin-top:0; }
.refs li { font-size:.9rem; }
.badge { display:inline-block; font-size:.75rem; font-weight:600; padding:.05rem .45rem;
  border-radius:999px; color:#fff; background:var(--muted); vertical-align:middle; }
.badge.new { background:var(--new); } .badge.updated { background:var(--chg); }
.badge.cancelled, .badge.withdrawn, .badge.rejected { background:var(--bad); }
.badge.applied, .badge.ok { background:var(--ok); } .badge.duplicate { background:var(--muted); }
.badge.warn { background:var(--warn); }
.log li { padding:.4rem 0; border-top:1px solid var(--line); overflow-wrap:anywhere; }
.log li:first-child { border-top:0; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.2rem .8rem; margin:0; }
dt { color:var(--muted); } dd { margin:0; overflow-wrap:anywhere; }
code { font-size:.85rem; overflow-wrap:anywhere; }
@media (max-width:34rem) { main { padding:.6rem; } .match .when { flex-basis:3rem; }
  dl { grid-template-columns:1fr; } dt { margin-top:.3rem; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_value("Tok-en_1.~"), "Tok-en_1.~");
        // Every other printable ASCII byte, as CPython's `urllib.parse.quote(s, safe="-._~")`.
        assert_eq!(
            query_value(" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}\u{7f}"),
            "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D%7F"
        );
    }

    #[test]
    fn only_plausible_hosts_are_used() {
        assert_eq!(plausible_host("127.0.0.1:9083"), Some("127.0.0.1:9083"));
        assert_eq!(plausible_host("[::1]:9083"), Some("[::1]:9083"));
        assert_eq!(plausible_host("cal.example.org"), Some("cal.example.org"));
        assert_eq!(plausible_host("evil\"><script>"), None);
        assert_eq!(plausible_host("a/b"), None);
        assert_eq!(plausible_host(""), None);
    }

    #[test]
    fn times_are_local_and_relative() {
        let t = Utc
            .with_ymd_and_hms(2026, 7, 4, 14, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(local(t, chrono_tz::Europe::Stockholm), "Sat 4 Jul 16:00");
        assert_eq!(ago(t + chrono::Duration::seconds(5), t), "just now");
        assert_eq!(ago(t + chrono::Duration::minutes(5), t), "5 min ago");
        assert_eq!(ago(t + chrono::Duration::hours(3), t), "3 h ago");
        assert_eq!(ago(t + chrono::Duration::days(3), t), "3 days ago");
        assert_eq!(
            time_tag(t, chrono_tz::UTC).into_string(),
            "<time datetime=\"2026-07-04T14:00:00+00:00\">Sat 4 Jul 14:00</time>"
        );
    }
}
