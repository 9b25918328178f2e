//! A room's member names in the protocol's order, kept sorted as members come and go, so that a
//! join or a page reads the names it shows and no more (not all of a room of 10,000, sorted
//! again for every joiner).

use crate::server::store::{MemberPage, MemberQuery, order_key};
use std::{collections::BTreeMap, ops::Bound};

#[derive(Debug, Default)]
pub(in crate::server::store) struct Roster {
    /// Order key → the name as its holder spells it, and how many members go by it (one, but
    /// for look-alikes the name rules should have kept apart).
    names: BTreeMap<String, (String, usize)>,
}

impl Roster {
    pub(in crate::server::store) fn add(&mut self, name: &str) {
        let entry = self
            .names
            .entry(order_key(name))
            .or_insert_with(|| (name.to_owned(), 0));
        entry.1 += 1;
    }

    pub(in crate::server::store) fn remove(&mut self, name: &str) {
        let key = order_key(name);
        if let Some(entry) = self.names.get_mut(&key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.names.remove(&key);
            }
        }
    }

    /// The page `query` asks for, of a room of `count` members.
    pub(in crate::server::store) fn page(&self, query: &MemberQuery, count: usize) -> MemberPage {
        let prefix = query.prefix.as_str();
        // Past `after`, and from the first name the prefix allows.
        let start = match &query.after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let mut matching = self
            .names
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, (name, _))| name);
        let names: Vec<String> = matching.by_ref().take(query.limit).cloned().collect();
        let next = matching.next().and(names.last().cloned());
        MemberPage { names, next, count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_in_order_from_after_and_by_prefix_ignoring_case() {
        let mut roster = Roster::default();
        for name in ["Dee", "bo", "abe", "cyd", "Ann", "Cy"] {
            roster.add(name);
        }
        let page = |roster: &Roster, after, prefix, limit| {
            let p = roster.page(&MemberQuery::new(after, prefix, limit), 6);
            (p.names, p.next)
        };
        assert_eq!(
            page(&roster, None, None, 2),
            (vec!["abe".into(), "Ann".into()], Some("Ann".into()))
        );
        assert_eq!(
            page(&roster, Some("ANN"), None, 3),
            (
                vec!["bo".into(), "Cy".into(), "cyd".into()],
                Some("cyd".into())
            )
        );
        assert_eq!(
            page(&roster, Some("cyd"), None, 3),
            (vec!["Dee".into()], None)
        );
        assert_eq!(
            page(&roster, None, Some("CY"), 5),
            (vec!["Cy".into(), "cyd".into()], None)
        );
        assert_eq!(
            page(&roster, Some("Cy"), Some("cy"), 1),
            (vec!["cyd".into()], None)
        );
        assert_eq!(
            page(&roster, Some("a"), Some("d"), 5),
            (vec!["Dee".into()], None)
        );
        assert_eq!(page(&roster, None, None, 0).0.len(), 1, "at least one");
        roster.remove("cy");
        assert_eq!(
            page(&roster, None, Some("c"), 5),
            (vec!["cyd".into()], None)
        );
    }
}
