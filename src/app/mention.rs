//! Mentions: "@ann" in a message names ann. The page highlights and counts the messages that name
//! its person, may raise a notification for them, and completes names after an `@` in the
//! composer.

/// Most names offered at once while completing.
pub const SUGGEST_MAX: usize = 6;

/// Whether `text` mentions `name`: `@name` (ignoring case), not inside a word or a longer name.
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let (text, name) = (text.to_lowercase(), name.to_lowercase());
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices('@').any(|(at, _)| {
        let before_ok = text[..at].chars().next_back().is_none_or(|c| !word(c));
        let rest = &text[at + 1..];
        before_ok
            && rest.starts_with(&name)
            && rest[name.len()..].chars().next().is_none_or(|c| !word(c))
    })
}

/// Whether a message `from` someone with `text` names the reader `me` (never their own).
pub fn names_reader(text: &str, from: &str, me: Option<&str>) -> bool {
    me.is_some_and(|me| me != from && mentions(text, me))
}

/// The name being typed after an `@` just before the caret: where its `@` is (a byte offset in
/// `before`) and what follows it. The `@` must start the text or follow a space.
pub fn at_caret(before: &str) -> Option<(usize, &str)> {
    let at = before.rfind('@')?;
    let prefix = &before[at + 1..];
    let starts_word = before[..at]
        .chars()
        .next_back()
        .is_none_or(char::is_whitespace);
    let plausible =
        !prefix.contains('\n') && prefix.chars().count() <= crate::protocol::MAX_NAME_CHARS;
    (starts_word && plausible).then_some((at, prefix))
}

/// The names among `names` that begin with `prefix` (ignoring case), not `me`, at most
/// [`SUGGEST_MAX`], in the order given.
pub fn suggest<'a>(
    names: impl IntoIterator<Item = &'a String>,
    prefix: &str,
    me: Option<&str>,
) -> Vec<String> {
    let prefix = prefix.to_lowercase();
    names
        .into_iter()
        .filter(|n| Some(n.as_str()) != me && n.to_lowercase().starts_with(&prefix))
        .take(SUGGEST_MAX)
        .cloned()
        .collect()
}

/// `text` with the `@…` that starts at byte `at` and ends at byte `caret` replaced by `@name `,
/// and the new caret (a byte offset) after it.
pub fn complete(text: &str, at: usize, caret: usize, name: &str) -> (String, usize) {
    let (head, tail) = (&text[..at], &text[caret.min(text.len())..]);
    let inserted = format!("@{name} ");
    (format!("{head}{inserted}{tail}"), at + inserted.len())
}

/// The byte offset in `text` of a caret given in UTF-16 code units (as a textarea counts).
pub fn byte_offset(text: &str, utf16: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        if units >= utf16 {
            return i;
        }
        units += c.len_utf16();
    }
    text.len()
}

/// The UTF-16 offset of byte offset `byte` in `text`.
pub fn utf16_offset(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_at_name_as_a_word() {
        assert!(mentions("hi @ann", "ann"));
        assert!(mentions("@Ann, look", "ann"));
        assert!(mentions("(@ann)", "ann"));
        assert!(mentions("hey @Ann Lee!", "ann lee"));
        assert!(mentions("@鈴木 さん", "鈴木"));
        assert!(!mentions("hi ann", "ann"));
        assert!(!mentions("@anna", "ann"));
        assert!(!mentions("mail ann@ann.org", "ann"));
        assert!(!mentions("@ann_b", "ann"));
        assert!(!mentions("@", ""));
    }

    #[test]
    fn the_name_being_typed_is_the_word_after_the_last_at() {
        assert_eq!(at_caret("@"), Some((0, "")));
        assert_eq!(at_caret("hi @an"), Some((3, "an")));
        assert_eq!(at_caret("hi @ann l"), Some((3, "ann l")));
        assert_eq!(at_caret("mail a@b"), None);
        assert_eq!(at_caret("hi"), None);
        assert_eq!(at_caret("@ann\nnext"), None);
    }

    #[test]
    fn completing_puts_the_name_and_a_space() {
        let names: Vec<String> = ["ann", "Anna", "bo", "me"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(suggest(&names, "an", Some("me")), ["ann", "Anna"]);
        assert_eq!(suggest(&names, "", Some("me")), ["ann", "Anna", "bo"]);
        assert_eq!(
            complete("hi @an and", 3, 6, "Anna"),
            ("hi @Anna  and".into(), 9)
        );
        // Carets in UTF-16 units, as the browser gives them.
        let text = "é😀 @a";
        let byte = byte_offset(text, 5);
        assert_eq!(&text[..byte], "é😀 @");
        assert_eq!(utf16_offset(text, byte), 5);
    }
}
