//! Who is typing in the room, as the page shows it: each name heard in a `typing` frame for
//! [`TYPING_SHOWN_MS`], or until that person's message (or leave, or rename) comes.

use crate::protocol::TYPING_SHOWN_MS;

/// The people typing now, oldest first, each with when it stops being shown (ms, on the model's
/// clock).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Typists(Vec<(String, u64)>);

/// What the typing line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typing {
    Nobody,
    One(String),
    Two(String, String),
    Several,
}

impl Typists {
    /// A `typing` frame named `names`; `me` is never shown to itself.
    pub fn heard(&mut self, names: &[String], me: Option<&str>, now_ms: u64) {
        for name in names.iter().filter(|n| Some(n.as_str()) != me) {
            let until = now_ms + TYPING_SHOWN_MS;
            match self.0.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = until,
                None => self.0.push((name.clone(), until)),
            }
        }
    }

    /// `name` said something, left, or is called something else now: not typing (as `name`).
    pub fn stopped(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Forgets whoever was shown for long enough; true if anyone was.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|(_, until)| *until > now_ms);
        self.0.len() != before
    }

    pub fn line(&self) -> Typing {
        match self.0.as_slice() {
            [] => Typing::Nobody,
            [(a, _)] => Typing::One(a.clone()),
            [(a, _), (b, _)] => Typing::Two(a.clone(), b.clone()),
            _ => Typing::Several,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_two_several_and_never_oneself() {
        let mut t = Typists::default();
        assert_eq!(t.line(), Typing::Nobody);
        t.heard(&names(&["me", "ann"]), Some("me"), 0);
        assert_eq!(t.line(), Typing::One("ann".into()));
        t.heard(&names(&["bo", "ann"]), Some("me"), 10);
        assert_eq!(t.line(), Typing::Two("ann".into(), "bo".into()));
        t.heard(&names(&["cy"]), Some("me"), 20);
        assert_eq!(t.line(), Typing::Several);
        t.stopped("bo");
        assert_eq!(t.line(), Typing::Two("ann".into(), "cy".into()));
    }

    #[test]
    fn a_name_is_shown_for_a_while_after_the_last_frame_that_named_it() {
        let mut t = Typists::default();
        t.heard(&names(&["ann"]), None, 0);
        t.heard(&names(&["bo"]), None, 2_000);
        t.heard(&names(&["ann"]), None, 4_000);
        assert!(t.expire(TYPING_SHOWN_MS + 2_000));
        assert_eq!(t.line(), Typing::One("ann".into()));
        assert!(!t.expire(TYPING_SHOWN_MS + 3_999));
        assert!(t.expire(TYPING_SHOWN_MS + 4_000));
        assert_eq!(t.line(), Typing::Nobody);
    }
}
