//! Reading comfort: where a day begins, which messages run on from the one before, a colour per
//! name, when a message was said (as a day, a time, and "5 minutes ago"), and the page's colour
//! scheme.
//!
//! The layout is worked out here from the items and a "which day is this" function, so it is the
//! same in unit tests (UTC) as in the browser (the reader's own time zone). The dates and times
//! themselves are written by the browser (`Intl`), in the page's language.

use super::model::Item;
use std::collections::HashMap;

/// Messages from one person closer together than this, with nothing between, are one group.
pub const GROUP_WITHIN_MS: u64 = 5 * 60 * 1000;

/// How one message sits in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    /// The first message of a day: a day separator goes above it.
    pub new_day: bool,
    /// Runs on from the message before it (same person, same day, soon after): its name and time
    /// are not repeated.
    pub grouped: bool,
}

/// The look of each message in `items`, by `seq`. `day_of` says which day a timestamp falls on,
/// in the reader's time zone; a "new messages" divider above `first_unread` starts a new run.
pub fn layout(
    items: &[Item],
    day_of: impl Fn(u64) -> i64,
    first_unread: Option<u64>,
) -> HashMap<u64, Look> {
    let mut looks = HashMap::with_capacity(items.len());
    // The message just before, if nothing else came between: its author and time.
    let mut before: Option<(&str, u64)> = None;
    let mut last_day = None;
    for item in items {
        let Item::Message(m) = item else {
            before = None;
            continue;
        };
        if m.edits.is_some() {
            // A change of an earlier message: not shown where it stands.
            continue;
        }
        if m.moderation.is_some() {
            // A moderator's action, shown as a notice.
            before = None;
            continue;
        }
        let day = day_of(m.ts);
        let new_day = last_day != Some(day);
        let grouped = !new_day
            && first_unread != Some(m.seq)
            && before.is_some_and(|(from, ts)| {
                from == m.from && m.ts.saturating_sub(ts) < GROUP_WITHIN_MS
            });
        looks.insert(m.seq, Look { new_day, grouped });
        before = Some((m.from.as_str(), m.ts));
        last_day = Some(day);
    }
    looks
}

/// How many name colours there are (`name-0` … `name-7` in the stylesheet, each with enough
/// contrast in both schemes).
pub const NAME_COLOURS: u32 = 8;

/// The colour class of a name: the same for everyone who sees it, on every node and every visit
/// (FNV-1a of its bytes; names are compared case-sensitively as shown).
pub fn name_class(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("name-{}", hash % NAME_COLOURS)
}

/// The page's colour scheme, when the reader chose one over their system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
}

impl Theme {
    /// The cookie that carries the choice, so the server renders the page in it from the first
    /// byte (no flash of the other scheme).
    pub const COOKIE: &'static str = "chorus_theme";

    pub fn tag(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Theme> {
        match tag {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    /// The choice in a request's `Cookie` header, if any.
    pub fn from_cookies(header: &str) -> Option<Theme> {
        Theme::from_tag(crate::i18n::cookie(header, Self::COOKIE)?)
    }
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::Theme;
    use js_sys::{Array, Date, Intl, Object, Reflect};
    use wasm_bindgen::JsValue;

    fn options(pairs: &[(&str, &str)]) -> Object {
        let o = Object::new();
        for (k, v) in pairs {
            let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
        }
        o
    }

    fn date(ts: u64) -> Date {
        Date::new(&JsValue::from_f64(ts as f64))
    }

    fn day_number(d: &Date) -> i64 {
        i64::from(d.get_full_year()) * 512 + i64::from(d.get_month()) * 32 + i64::from(d.get_date())
    }

    /// The day `ts` falls on in the reader's time zone.
    pub fn day_of(ts: u64) -> i64 {
        day_number(&date(ts))
    }

    /// Today's and yesterday's day numbers.
    fn today_and_yesterday() -> (i64, i64) {
        let now = Date::new_0();
        let today = day_number(&now);
        now.set_date(now.get_date().saturating_sub(1));
        (today, day_number(&now))
    }

    /// A day as a separator says it: "Today", "Yesterday", else "Friday 4 December" (with the
    /// year when it is not this year), in the page's language.
    pub fn day_label(ts: u64, lang: &str, today: &str, yesterday: &str) -> String {
        let d = date(ts);
        let (now, before) = today_and_yesterday();
        match day_of(ts) {
            day if day == now => today.to_owned(),
            day if day == before => yesterday.to_owned(),
            _ => {
                let mut parts = vec![("weekday", "long"), ("month", "long"), ("day", "numeric")];
                if d.get_full_year() != Date::new_0().get_full_year() {
                    parts.push(("year", "numeric"));
                }
                d.to_locale_date_string(lang, &options(&parts)).into()
            }
        }
    }

    /// The time of day, "19:55", in the page's language's way.
    pub fn time_of_day(ts: u64, lang: &str) -> String {
        date(ts)
            .to_locale_time_string_with_options(
                lang,
                &options(&[("hour", "numeric"), ("minute", "2-digit")]),
            )
            .into()
    }

    /// When, in full and relative to now: "Friday, 4 December 2026 at 19:55 · 5 minutes ago".
    pub fn when(ts: u64, lang: &str) -> String {
        let absolute: String = date(ts)
            .to_locale_string(
                lang,
                &options(&[("dateStyle", "full"), ("timeStyle", "short")]),
            )
            .into();
        let ago_s = ((Date::now() - ts as f64) / 1000.0).max(0.0);
        let (value, unit) = match ago_s {
            s if s < 60.0 => (s, "second"),
            s if s < 3600.0 => (s / 60.0, "minute"),
            s if s < 86_400.0 => (s / 3600.0, "hour"),
            s => (s / 86_400.0, "day"),
        };
        let locales = Array::of1(&JsValue::from_str(lang));
        let relative = Intl::RelativeTimeFormat::new(&locales, &options(&[("numeric", "auto")]))
            .format(-value.floor(), unit);
        format!("{absolute} · {}", String::from(relative))
    }

    /// The wall clock, ms since the Unix epoch.
    pub fn wall_ms() -> u64 {
        Date::now() as u64
    }

    /// Whether the system asks for dark colours.
    pub fn system_dark() -> bool {
        web_sys::window()
            .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
            .is_some_and(|m| m.matches())
    }

    /// The scheme the server rendered the page in (`<html data-theme>`), if one was chosen.
    pub fn page_theme() -> Option<Theme> {
        let root = web_sys::window()?.document()?.document_element()?;
        Theme::from_tag(&root.get_attribute("data-theme")?)
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    //! On the server no message is rendered (they come over the socket); these keep the types.
    use super::Theme;

    pub fn day_of(ts: u64) -> i64 {
        (ts / 86_400_000) as i64
    }

    pub fn day_label(_ts: u64, _lang: &str, today: &str, _yesterday: &str) -> String {
        today.to_owned()
    }

    pub fn time_of_day(ts: u64, _lang: &str) -> String {
        let minutes = (ts / 60_000) % (24 * 60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }

    pub fn when(ts: u64, lang: &str) -> String {
        time_of_day(ts, lang)
    }

    pub fn system_dark() -> bool {
        false
    }

    pub fn wall_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub fn page_theme() -> Option<Theme> {
        None
    }
}

pub use imp::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, NoticeKind};

    const MIN: u64 = 60_000;
    const DAY: u64 = 86_400_000;

    fn msg(seq: u64, from: &str, ts: u64) -> Item {
        Item::Message(ChatMessage {
            room: "r".into(),
            seq,
            epoch: "e".into(),
            from: from.into(),
            text: "hi".into(),
            ts,
            client_id: None,
            edits: None,
            deleted: false,
            moderation: None,
            author: None,
        })
    }

    fn utc_day(ts: u64) -> i64 {
        (ts / DAY) as i64
    }

    #[test]
    fn runs_of_one_person_are_grouped_within_a_day() {
        let t0 = 10 * DAY + 9 * 60 * MIN;
        let items = vec![
            msg(1, "ann", t0),
            msg(2, "ann", t0 + MIN),
            msg(3, "bo", t0 + 2 * MIN),
            msg(4, "ann", t0 + 3 * MIN),
            // Too long after.
            msg(5, "ann", t0 + 3 * MIN + GROUP_WITHIN_MS),
            msg(6, "ann", t0 + 4 * MIN + GROUP_WITHIN_MS),
            Item::Notice {
                key: 0,
                kind: NoticeKind::Joined,
                names: vec!["cy".into()],
                old_name: None,
            },
            // A notice between: a new group.
            msg(7, "ann", t0 + 5 * MIN + GROUP_WITHIN_MS),
            // The next day, a minute after the last: a new day and a new group.
            msg(8, "ann", 11 * DAY),
            msg(9, "ann", 11 * DAY + MIN),
        ];
        let looks = layout(&items, utc_day, None);
        let grouped: Vec<u64> = (1..=9).filter(|s| looks[s].grouped).collect();
        let new_days: Vec<u64> = (1..=9).filter(|s| looks[s].new_day).collect();
        assert_eq!(grouped, vec![2, 6, 9]);
        assert_eq!(new_days, vec![1, 8]);
        // Below the "new messages" divider, a run starts again.
        let looks = layout(&items, utc_day, Some(6));
        let grouped: Vec<u64> = (1..=9).filter(|s| looks[s].grouped).collect();
        assert_eq!(grouped, vec![2, 9]);
    }

    #[test]
    fn a_day_separator_counts_days_not_gaps() {
        // Across midnight is another day however close; later the same day is not.
        let items = vec![
            msg(1, "ann", DAY - 30 * MIN),
            msg(2, "bo", DAY + 30 * MIN),
            msg(3, "bo", 2 * DAY - MIN),
        ];
        let looks = layout(&items, utc_day, None);
        assert!(looks[&1].new_day && looks[&2].new_day && !looks[&3].new_day);
    }

    #[test]
    fn a_name_has_one_colour() {
        assert_eq!(name_class("ann"), name_class("ann"));
        let classes: std::collections::HashSet<String> = [
            "ann", "bo", "cy", "dee", "eve", "finn", "gus", "hal", "ivy", "jo", "鈴木", "李",
        ]
        .iter()
        .map(|n| name_class(n))
        .collect();
        // Twelve names do not all land on one colour.
        assert!(classes.len() >= 4, "{classes:?}");
        assert!(classes.iter().all(|c| c.starts_with("name-")));
    }

    #[test]
    fn the_theme_cookie_is_read_among_others() {
        assert_eq!(
            Theme::from_cookies("chorus_lang=ja; chorus_theme=dark"),
            Some(Theme::Dark)
        );
        assert_eq!(
            Theme::from_cookies("chorus_theme=light"),
            Some(Theme::Light)
        );
        assert_eq!(Theme::from_cookies("chorus_theme=purple; x=y"), None);
        assert_eq!(Theme::from_cookies(""), None);
    }
}
