//! What moderators set for a room, and the one check everything said or joined passes:
//! mutes and kicks (per person, until a time), and slow mode (one message per person per
//! interval). [`RoomRules`] keeps them in this process (the memory store); Redis keeps the same
//! rules in the room's `rules` hash and checks them in `lua/gate.lua`.

use super::StoreError;
use std::collections::HashMap;

/// What a moderator sets for a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// One message per this many seconds per person (0: off).
    Slow(u64),
    /// The person with the key `who` may not speak until `until_ms` (0 lets them).
    Mute { who: String, until_ms: u64 },
    /// The person with the key `who` is kept out of the room until `until_ms`.
    Kick { who: String, until_ms: u64 },
}

/// What someone is about to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Join,
    /// Change what was said (an edit, a delete): mutes and kicks apply, slow mode does not.
    Change,
    /// Say something new: it takes the person's turn in slow mode.
    Say,
}

impl Act {
    /// As `gate.lua` is told.
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Join => "join",
            Act::Change => "change",
            Act::Say => "say",
        }
    }
}

/// The keys a person is known by to the rules: their name's (`n:` and its look-alike key) and
/// their author key (their session's, or their signed identity's). The first is the one slow
/// mode counts turns by.
pub fn name_key(key: &str) -> String {
    format!("n:{key}")
}

/// The author key of a session (see `Connection::author`): a digest, as the session is a
/// bearer secret.
pub fn session_key(session: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(session.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("s:{hex}")
}

/// Until when a mute or a kick of `seconds` from `at_ms` lasts: 0 (lifted) for 0 seconds.
pub fn until(at_ms: u64, seconds: u64) -> u64 {
    match seconds {
        0 => 0,
        s => at_ms.saturating_add(s.saturating_mul(1000)),
    }
}

/// One room's rules, in memory.
#[derive(Debug, Default)]
pub struct RoomRules {
    slow_s: u64,
    /// Key → until when (ms since the epoch).
    muted: HashMap<String, u64>,
    kicked: HashMap<String, u64>,
    /// Key → when its next message may go, in slow mode.
    turns: HashMap<String, u64>,
}

impl RoomRules {
    pub fn set(&mut self, rule: Rule, now_ms: u64) {
        match rule {
            // A turn taken under the old interval runs its course (as in Redis).
            Rule::Slow(seconds) => self.slow_s = seconds,
            Rule::Mute { who, until_ms } => {
                self.muted.insert(who, until_ms);
            }
            Rule::Kick { who, until_ms } => {
                self.kicked.insert(who, until_ms);
            }
        }
        for map in [&mut self.muted, &mut self.kicked] {
            map.retain(|_, until| *until > now_ms);
        }
    }

    /// Whether the person known by `who` may `act` now: the slow-mode interval when they may
    /// (and, saying something, their turn is taken), or why not and for how long.
    pub fn gate(&mut self, who: &[String], act: Act, now_ms: u64) -> Result<u64, StoreError> {
        let until = |map: &HashMap<String, u64>| {
            who.iter()
                .filter_map(|k| map.get(k))
                .copied()
                .filter(|until| *until > now_ms)
                .max()
        };
        if let Some(until) = until(&self.kicked) {
            return Err(StoreError::Kicked(until - now_ms));
        }
        if act != Act::Join
            && let Some(until) = until(&self.muted)
        {
            return Err(StoreError::Muted(until - now_ms));
        }
        if act == Act::Say
            && self.slow_s > 0
            && let Some(key) = who.first()
        {
            if let Some(next) = self.turns.get(key).filter(|next| **next > now_ms) {
                return Err(StoreError::Slowed(next - now_ms));
            }
            if self.turns.len() >= TURNS_MAX {
                self.turns.retain(|_, next| *next > now_ms);
            }
            self.turns
                .insert(key.clone(), now_ms + self.slow_s.saturating_mul(1000));
        }
        Ok(self.slow_s)
    }
}

/// Turns remembered before the passed ones are swept.
const TURNS_MAX: usize = 1024;

/// The rules a node has seen set for a room (in the moderation entries it delivered, and those
/// it set itself for the sessions holding a name), to put back when the store lost them: a
/// Redis restart without persistence must not lift a mute.
#[derive(Debug, Default)]
pub struct KnownRules {
    slow_s: u64,
    /// (kick?, who) → until when (ms since the epoch).
    held: HashMap<(bool, String), u64>,
}

impl KnownRules {
    pub fn keep(&mut self, rule: &Rule, now_ms: u64) {
        let (kick, who, until_ms) = match rule {
            Rule::Slow(seconds) => {
                self.slow_s = *seconds;
                return;
            }
            Rule::Mute { who, until_ms } => (false, who, *until_ms),
            Rule::Kick { who, until_ms } => (true, who, *until_ms),
        };
        self.held.insert((kick, who.clone()), until_ms);
        self.held.retain(|_, until| *until > now_ms);
    }

    /// What still holds at `now_ms`, as the store is told it.
    pub fn live(&self, now_ms: u64) -> Vec<Rule> {
        let slow = (self.slow_s > 0).then_some(Rule::Slow(self.slow_s));
        let held =
            self.held
                .iter()
                .filter(|(_, until)| **until > now_ms)
                .map(|((kick, who), until)| {
                    let (who, until_ms) = (who.clone(), *until);
                    match kick {
                        true => Rule::Kick { who, until_ms },
                        false => Rule::Mute { who, until_ms },
                    }
                });
        slow.into_iter().chain(held).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_rules_are_what_still_holds() {
        let mut known = KnownRules::default();
        let mute = |who: &str, until_ms| Rule::Mute {
            who: who.into(),
            until_ms,
        };
        known.keep(&Rule::Slow(30), 0);
        known.keep(&mute("n:bo", 5_000), 0);
        known.keep(&mute("n:cy", 9_000), 0);
        known.keep(
            &Rule::Kick {
                who: "n:cy".into(),
                until_ms: 9_000,
            },
            0,
        );
        // Lifted (0), and passed by the time it is asked.
        known.keep(&mute("n:cy", 0), 1_000);
        let mut live = known.live(6_000);
        live.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            live,
            [
                Rule::Kick {
                    who: "n:cy".into(),
                    until_ms: 9_000
                },
                Rule::Slow(30)
            ]
        );
        known.keep(&Rule::Slow(0), 6_000);
        assert_eq!(known.live(10_000), []);
    }

    fn who(k: &str) -> Vec<String> {
        vec![k.to_owned(), name_key(k)]
    }

    #[test]
    fn a_mute_silences_until_its_time_and_a_kick_also_keeps_out() {
        let mut rules = RoomRules::default();
        rules.set(
            Rule::Mute {
                who: name_key("bo"),
                until_ms: 10_000,
            },
            0,
        );
        assert_eq!(
            rules.gate(&who("bo"), Act::Say, 1_000),
            Err(StoreError::Muted(9_000))
        );
        assert_eq!(
            rules.gate(&who("bo"), Act::Change, 1_000),
            Err(StoreError::Muted(9_000))
        );
        assert_eq!(rules.gate(&who("bo"), Act::Join, 1_000), Ok(0));
        assert_eq!(rules.gate(&who("ann"), Act::Say, 1_000), Ok(0));
        assert_eq!(rules.gate(&who("bo"), Act::Say, 10_000), Ok(0));
        rules.set(
            Rule::Kick {
                who: "bo".into(),
                until_ms: 20_000,
            },
            10_000,
        );
        assert_eq!(
            rules.gate(&who("bo"), Act::Join, 15_000),
            Err(StoreError::Kicked(5_000))
        );
        assert_eq!(
            rules.gate(&who("bo"), Act::Say, 15_000),
            Err(StoreError::Kicked(5_000))
        );
        // Lifting: a mute until now.
        rules.set(
            Rule::Mute {
                who: name_key("bo"),
                until_ms: 0,
            },
            0,
        );
        assert_eq!(rules.gate(&who("bo"), Act::Join, 20_000), Ok(0));
    }

    #[test]
    fn slow_mode_gives_each_person_one_message_per_interval() {
        let mut rules = RoomRules::default();
        rules.set(Rule::Slow(30), 0);
        assert_eq!(rules.gate(&who("ann"), Act::Say, 1_000), Ok(30));
        assert_eq!(
            rules.gate(&who("ann"), Act::Say, 2_000),
            Err(StoreError::Slowed(29_000))
        );
        // Others have their own turn; edits are not slowed.
        assert_eq!(rules.gate(&who("bo"), Act::Say, 2_000), Ok(30));
        assert_eq!(rules.gate(&who("ann"), Act::Change, 2_000), Ok(30));
        assert_eq!(rules.gate(&who("ann"), Act::Say, 31_000), Ok(30));
        rules.set(Rule::Slow(0), 31_000);
        assert_eq!(rules.gate(&who("ann"), Act::Say, 31_500), Ok(0));
    }
}
