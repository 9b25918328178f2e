//! The supervisor's rooms: subscribing and unsubscribing their channels, and routing each
//! pushed message to its room's subscribers.

use super::*;

impl Supervisor {
    /// Subscribes the asker to the room: at once if the node already has the channel, else
    /// once Redis confirms it.
    pub(super) fn subscribe(&mut self, room: RoomName, reply: Reply) {
        let channel = room_channel(&room);
        if let Some(route) = self.routes.get_mut(&channel) {
            let rx = route.tx.subscribe();
            match route.sub {
                Sub::On => {
                    let _ = reply.send(Ok(self.subscription(room, rx)));
                }
                Sub::Subscribing | Sub::Leaving => route.waiting.push((reply, rx)),
                Sub::Off => {
                    route.waiting.push((reply, rx));
                    self.send_subscribe(&channel);
                }
            }
            return;
        }
        let (tx, rx) = broadcast::channel(ROOM_CAPACITY);
        let slot = slot(&channel);
        self.routes.insert(
            channel.clone(),
            Route {
                room,
                slot,
                tx,
                waiting: vec![(reply, rx)],
                sub: Sub::Off,
                via: None,
                lost: false,
            },
        );
        self.send_subscribe(&channel);
    }

    /// Sends the channel's SUBSCRIBE (SSUBSCRIBE on a cluster) on the shard that owns it, if
    /// that shard is up; otherwise those waiting are refused and the room waits for the shard.
    pub(super) fn send_subscribe(&mut self, channel: &str) {
        let Some(route) = self.routes.get(channel) else {
            return;
        };
        let Some((via, mut conn)) = self.owner(route.slot).and_then(|s| self.up(&s)) else {
            self.lose_route(channel);
            return;
        };
        let Some(route) = self.routes.get_mut(channel) else {
            return;
        };
        route.sub = Sub::Subscribing;
        route.via = Some(via.clone());
        let mut cmd = redis::cmd(if self.cluster {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        });
        cmd.arg(channel);
        let channel = channel.to_owned();
        let work = async move { cmd.exec_async(&mut conn).await };
        beside(&self.done.0, work, move |r| {
            Done::Subscribed(via, channel, r)
        });
    }

    /// Redis confirmed the channel: everyone waiting for it gets its subscription, and a room
    /// that had lost it resyncs.
    pub(super) fn subscribed(&mut self, via: Via, channel: String, result: Result<(), String>) {
        let Some(route) = self.routes.get_mut(&channel) else {
            return;
        };
        if route.via.as_ref() != Some(&via) || route.sub != Sub::Subscribing {
            return; // asked on a connection that is gone
        }
        if let Err(why) = result {
            if why.contains("MOVED") {
                // The slot map was stale: read it again, then subscribe where it says.
                self.lose_route(&channel);
                self.read_topology();
            } else {
                self.shard_lost(&via, &why);
            }
            return;
        }
        route.sub = Sub::On;
        if std::mem::take(&mut route.lost) {
            let _ = route.tx.send(BusItem::Resync);
        }
        let (room, waiting) = (route.room.clone(), std::mem::take(&mut route.waiting));
        for (reply, rx) in waiting {
            let _ = reply.send(Ok(self.subscription(room.clone(), rx)));
        }
        self.register(room.to_string());
        // Everyone may have left while it was being subscribed.
        self.leave_if_unused(&room);
    }

    /// A room's last local subscriber left: unsubscribe, beside.
    pub(super) fn leave_if_unused(&mut self, room: &RoomName) {
        let channel = room_channel(room);
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if route.tx.receiver_count() > 0 || !route.waiting.is_empty() {
            return;
        }
        match (route.sub, route.via.clone()) {
            (Sub::On, Some(via)) => {
                let Some((_, mut conn)) = self.up(&via.shard).filter(|(v, _)| *v == via) else {
                    self.forget(&channel);
                    return;
                };
                if let Some(route) = self.routes.get_mut(&channel) {
                    route.sub = Sub::Leaving;
                }
                let mut cmd = redis::cmd(if self.cluster {
                    "SUNSUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                });
                cmd.arg(&channel);
                self.unsubscribing.sent(&channel, &via);
                let work = async move { cmd.exec_async(&mut conn).await };
                beside(&self.done.0, work, move |r| {
                    Done::Unsubscribed(via, channel, r)
                });
            }
            // Its SUBSCRIBE or UNSUBSCRIBE is in flight: decided when it comes back.
            (Sub::Subscribing, _) | (Sub::Leaving, _) => {}
            _ => self.forget(&channel),
        }
    }

    pub(super) fn unsubscribed(&mut self, via: Via, channel: String, result: Result<(), String>) {
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if route.via.as_ref() != Some(&via) || route.sub != Sub::Leaving {
            return;
        }
        if let Err(why) = result {
            self.shard_lost(&via, &why);
            return;
        }
        if route.waiting.is_empty() && route.tx.receiver_count() == 0 {
            self.forget(&channel);
        } else {
            // Someone joined while it was leaving: subscribe again.
            self.send_subscribe(&channel);
        }
    }

    /// Drops the route and takes the room off this node's list.
    pub(super) fn forget(&mut self, channel: &str) {
        if let Some(route) = self.routes.remove(channel) {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(&self.rooms_key).arg(route.room.as_str());
            let _ = self.listing.send(cmd);
        }
    }

    /// Lists the room in this node's set, for the reaper should the node die; beside the
    /// supervisor. Best effort: a room missing from it only delays ghost removal until the
    /// members' own sessions expire (and each resync lists it again).
    pub(super) fn register(&self, room: String) {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&self.rooms_key).arg(room);
        let _ = self.listing.send(cmd);
    }

    /// A room task's subscription: its receiver, and a notice to the supervisor when dropped.
    pub(super) fn subscription(
        &self,
        room: RoomName,
        rx: broadcast::Receiver<BusItem>,
    ) -> Subscription {
        Subscription::with_drop_notice(rx, self.unsubscribed.0.clone(), room)
    }

    pub(super) fn ping_all(&self) {
        let up: Vec<(Via, MultiplexedConnection)> =
            self.shards.keys().filter_map(|s| self.up(s)).collect();
        for (via, mut conn) in up {
            let work = async move { redis::cmd("PING").exec_async(&mut conn).await };
            beside(&self.done.0, work, move |r| Done::Pinged(via, r));
        }
    }

    /// A push from one of the connections: a room's message, or news about the connection.
    pub(super) fn pushed(&mut self, via: Via, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => self.route(push.data),
            PushKind::Disconnection => self.shard_lost(&via, "connection closed"),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                let channel = push
                    .data
                    .into_iter()
                    .next()
                    .and_then(|c| redis::from_owned_redis_value::<String>(c).ok())
                    .unwrap_or_default();
                if !self.unsubscribing.noticed(channel, via.clone()) {
                    // Redis dropped the subscription itself: the slot moved to another master,
                    // or this one was demoted. The connection's replies are out of step from
                    // here (the notice looks like a reply), so it is replaced.
                    self.shard_lost(&via, "redis ended a subscription (slot moved?)");
                }
            }
            _ => {}
        }
    }

    pub(super) fn route(&self, data: Vec<redis::Value>) {
        let mut data = data.into_iter();
        let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
            return;
        };
        let (Ok(channel), Ok(payload)) = (
            redis::from_owned_redis_value::<String>(channel),
            redis::from_owned_redis_value::<String>(payload),
        ) else {
            tracing::error!("non-text message on the bus; dropped");
            return;
        };
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if let Some(event) = BusEvent::decode(&route.room, &payload) {
            let _ = route.tx.send(BusItem::Event(event));
        }
    }
}
