//! Where things live in Redis (see the layout in the module above) and the Lua scripts.

use super::*;

pub(super) const NAMES: &str = "chorus:{u}:names";
pub(super) const NODES: &str = "chorus:{u}:nodes";
pub(super) const SESSION_PREFIX: &str = "chorus:{u}:s:";
pub(super) const NODE_PREFIX: &str = "chorus:{u}:node:";
/// How long `/readyz` waits for Redis to answer.
pub(super) const READY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a node may take to remove a dead node's members before another may try.
pub(super) const REAP_CLAIM_MS: u64 = 30_000;

pub(super) fn room_key(room: &RoomName, part: &str) -> String {
    format!("chorus:{{r:{room}}}:{part}")
}
pub(super) fn session_key(session: &str) -> String {
    format!("{SESSION_PREFIX}{session}")
}
pub(super) fn node_key(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}
pub(super) fn node_rooms_key(node: &str) -> String {
    format!("chorus:{{u}}:nr:{node}")
}
/// Held by the node sweeping the names, so that one node does it at a time.
pub(super) const SWEEP_KEY: &str = "chorus:{u}:sweep";
/// Names looked at per step of a sweep.
pub(super) const SWEEP_BATCH: u64 = 500;

/// A node's last status, for the status pages (expires unless refreshed).
pub(super) fn status_key(node: &str) -> String {
    format!("chorus:{{u}}:status:{node}")
}

pub(super) fn reap_key(node: &str) -> String {
    format!("chorus:{{u}}:reap:{node}")
}

pub(super) struct Scripts {
    pub(super) claim: Script,
    pub(super) resume: Script,
    pub(super) release: Script,
    pub(super) join: Script,
    pub(super) reassert: Script,
    pub(super) leave: Script,
    pub(super) rename: Script,
    pub(super) append: Script,
    pub(super) since: Script,
    pub(super) page: Script,
    pub(super) peek: Script,
    pub(super) reap: Script,
    pub(super) sweep_names: Script,
    pub(super) reclaim: Script,
    pub(super) verify: Script,
    pub(super) rule: Script,
    pub(super) gate: Script,
}

impl Scripts {
    /// The scripts; on a cluster their events go out on sharded pub/sub (`SPUBLISH`, heard by
    /// the nodes subscribed on the master of the room's slot) instead of `PUBLISH`, which a
    /// cluster would copy to every one of its servers.
    pub(super) fn new(sharded: bool) -> Self {
        let script = |source: &str| match sharded {
            true => Script::new(&source.replace(PUBLISH, SPUBLISH)),
            false => Script::new(source),
        };
        // The scripts that read or write a room's messages share the history's functions; those
        // that change who holds a session or a member, the owner lists'.
        let with_log = |source: &str| script(&format!("{LOG}\n{source}"));
        let with_owners = |source: &str| script(&format!("{OWNERS}\n{source}"));
        Self {
            claim: with_owners(include_str!("../lua/claim.lua")),
            resume: with_owners(include_str!("../lua/resume.lua")),
            release: with_owners(include_str!("../lua/release.lua")),
            join: script(&format!(
                "{LOG}\n{OWNERS}\n{}",
                include_str!("../lua/join.lua")
            )),
            reassert: with_owners(include_str!("../lua/reassert.lua")),
            leave: with_owners(include_str!("../lua/leave.lua")),
            rename: with_owners(include_str!("../lua/rename.lua")),
            append: with_log(include_str!("../lua/append.lua")),
            since: with_log(include_str!("../lua/since.lua")),
            page: with_log(include_str!("../lua/page.lua")),
            peek: with_log(include_str!("../lua/peek.lua")),
            sweep_names: with_owners(include_str!("../lua/sweep_names.lua")),
            reap: with_owners(include_str!("../lua/reap.lua")),
            reclaim: with_owners(include_str!("../lua/reclaim.lua")),
            verify: script(include_str!("../lua/verify.lua")),
            rule: script(include_str!("../lua/rule.lua")),
            gate: script(include_str!("../lua/gate.lua")),
        }
    }
}

/// The functions of a room's history (`lua/log.lua`).
const LOG: &str = include_str!("../lua/log.lua");
/// The functions of owner lists: who holds a session or a member (`lua/owners.lua`).
const OWNERS: &str = include_str!("../lua/owners.lua");

/// How the scripts publish; replaced by [`SPUBLISH`] on a cluster.
pub(super) const PUBLISH: &str = "redis.call('PUBLISH',";
pub(super) const SPUBLISH: &str = "redis.call('SPUBLISH',";
