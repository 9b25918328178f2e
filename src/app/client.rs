//! The browser side of the WebSocket: connects, feeds server frames to the model, sends what the
//! model answers, and reconnects with exponential backoff and full jitter when the link drops.
//!
//! A browser cannot see WebSocket pings, and a link that died silently (Wi-Fi gone, laptop
//! asleep, a balancer that forgot the connection) may never report an error. So the page sends its
//! own `ping` every `ping_interval_ms` (from `welcome`) and counts the link dead when nothing at
//! all arrived for two intervals; then it reconnects, resumes its session and recovers what it
//! missed.
//! Only the hydrated (WASM) build has a body here; on the server these are no-ops.

use super::model::Model;
use crate::protocol::ClientMsg;
use leptos::prelude::*;

/// Where the name and language are remembered between visits.
pub const NAME_KEY: &str = "chorus.name";
pub const LANG_KEY: &str = "chorus.lang";
/// Where the browser keeps the session of the person its tabs are (localStorage: every tab
/// resumes it, and a reload too), once it holds a name.
pub const SESSION_KEY: &str = "chorus.session";
/// Where a tab keeps the operator token the server took from it (sessionStorage: this tab, for
/// a reload, and gone with the tab), so a moderator stays one across a reload.
pub const OPERATOR_KEY: &str = "chorus.operator";

/// Where this tab keeps the message a reader had at the top of the view, when scrolled up
/// (sessionStorage: a reload returns there).
pub fn place_key(room: &str) -> String {
    format!("chorus.place.{room}")
}

/// Keeps a choice of this page in a cookie for a year (`None` forgets it), so the server renders
/// the next page with it from the first byte.
pub fn keep_cookie(name: &str, value: Option<&str>) {
    set_cookie(&match value {
        Some(value) => format!("{name}={value}; path=/; max-age=31536000; samesite=lax"),
        None => format!("{name}=; path=/; max-age=0; samesite=lax"),
    });
}

/// Where a room's notification choice is kept (localStorage).
pub fn notify_key(room: &str) -> String {
    format!("chorus.notify.{room}")
}

/// Where a room's unsent draft is kept (localStorage: it is there in the next visit too).
pub fn draft_key(room: &str) -> String {
    format!("chorus.draft.{room}")
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::*;
    use crate::{
        app::{
            model::Status,
            rooms::{Rooms, beside_may_send},
        },
        protocol::ServerMsg,
    };
    use futures::{SinkExt, StreamExt, channel::mpsc};
    use gloo_net::websocket::{Message as WsMessage, futures::WebSocket};
    use std::cell::{Cell, RefCell};
    use wasm_bindgen::JsCast;

    thread_local! {
        /// The open connection's outgoing queue; WASM is single-threaded.
        static OUTBOX: RefCell<Option<mpsc::UnboundedSender<ClientMsg>>> = const { RefCell::new(None) };
    }

    pub fn send(msg: ClientMsg) {
        OUTBOX.with(|o| {
            if let Some(tx) = o.borrow().as_ref() {
                let _ = tx.unbounded_send(msg);
            }
        });
    }

    pub fn storage_get(key: &str) -> Option<String> {
        let storage = web_sys::window()?.local_storage().ok()??;
        storage.get_item(key).ok()?
    }

    /// Remembers `value` under `key` in this browser (an empty value forgets it).
    pub fn storage_set(key: &str, value: &str) {
        let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
        put(storage, key, value);
    }

    fn put(storage: Option<web_sys::Storage>, key: &str, value: &str) {
        let Some(storage) = storage else { return };
        // Full or refused (private mode): the page works on without it.
        let _ = match value {
            "" => storage.remove_item(key),
            value => storage.set_item(key, value),
        };
    }

    /// Where this tab keeps a room's unsent messages across a reload (sessionStorage).
    fn outbox_key(room: &str) -> String {
        format!("chorus.outbox.{room}")
    }

    fn tab_storage() -> Option<web_sys::Storage> {
        web_sys::window()?.session_storage().ok()?
    }

    /// What this tab kept under `key` (it survives a reload, not the tab).
    pub fn tab_get(key: &str) -> Option<String> {
        tab_storage()?.get_item(key).ok()?.filter(|v| !v.is_empty())
    }

    pub fn tab_set(key: &str, value: &str) {
        put(tab_storage(), key, value);
    }

    /// The room's unsent messages this tab kept, oldest first.
    pub fn load_outbox(room: &str) -> Vec<(String, String)> {
        tab_get(&outbox_key(room))
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    pub fn save_outbox(room: &str, outbox: &[(String, String)]) {
        let json = match outbox {
            [] => String::new(),
            some => serde_json::to_string(some).unwrap_or_default(),
        };
        tab_set(&outbox_key(room), &json);
    }

    /// The language the server rendered the page in (`<html lang>`).
    pub fn page_language() -> Option<String> {
        web_sys::window()?
            .document()?
            .document_element()?
            .get_attribute("lang")
    }

    /// The path of the page's address (`/r/lobby`).
    pub fn page_path() -> Option<String> {
        web_sys::window()?.location().pathname().ok()
    }

    /// Sets a cookie of this page (`name=value; attributes`).
    pub fn set_cookie(cookie: &str) {
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            let _ = js_sys::Reflect::set(&document, &"cookie".into(), &cookie.into());
        }
    }

    pub fn random_id() -> String {
        let a = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        let b = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        format!("{a:08x}{b:08x}")
    }

    fn ws_url() -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        // A site that signs its users in passes their token in the page's address (?token=…);
        // it goes on to the socket, where the server checks it.
        let token = location
            .search()
            .ok()
            .and_then(|q| {
                q.trim_start_matches('?')
                    .split('&')
                    .find_map(|p| p.strip_prefix("token=").map(str::to_owned))
            })
            .map(|t| format!("?token={t}"))
            .unwrap_or_default();
        Some(format!("{scheme}://{}/ws{token}", location.host().ok()?))
    }

    /// The heartbeat before the server has said its own (in `welcome`).
    const DEFAULT_PING_MS: u64 = 25_000;

    /// Milliseconds to wait before reconnect attempt `attempt` (0-based): uniformly random up to
    /// an exponentially growing cap, so thousands of clients of a restarted node spread out.
    fn backoff_ms(attempt: u32) -> u32 {
        let cap = (500u32 << attempt.min(5)).min(15_000);
        (js_sys::Math::random() * f64::from(cap)) as u32 + 100
    }

    /// Claims the wanted name again after `ms`, if we are still online without one.
    async fn reclaim_name_after(model: RwSignal<Model>, ms: u32) {
        gloo_timers::future::TimeoutFuture::new(ms).await;
        let pending = model.with_untracked(|m| {
            (m.status == Status::Online && m.name.is_none())
                .then(|| m.wanted_name.clone())
                .flatten()
        });
        if let Some(name) = pending {
            send(ClientMsg::SetName { name });
        }
    }

    /// Sends what waited for the pace, or what the server refused for speed, once the wait is
    /// over.
    async fn retry_after(model: RwSignal<Model>, ms: u32) {
        gloo_timers::future::TimeoutFuture::new(ms).await;
        act(model, Model::retry_now);
    }

    /// Milliseconds since the page loaded: the clock the model paces sending by.
    fn now_ms() -> f64 {
        web_sys::window()
            .and_then(|w| w.performance())
            .map_or(0.0, |p| p.now())
    }

    /// Runs `f` on the model at the current time, sends the frames it answers, and schedules
    /// the retries it asks for (a name claim, or frames held back for speed).
    pub fn act(model: RwSignal<Model>, f: impl FnOnce(&mut Model) -> Vec<ClientMsg>) {
        act_as(model, true, f);
    }

    /// As [`act`], for a room in view (which answers for the connection) or not (which sends
    /// only its own room's frames: see `rooms::beside_may_send`).
    fn act_as(model: RwSignal<Model>, in_view: bool, f: impl FnOnce(&mut Model) -> Vec<ClientMsg>) {
        let (frames, reclaim, retry, notes) = model
            .try_update(|m| {
                m.set_clock(now_ms());
                let frames = f(m);
                let notes = std::mem::take(&mut m.to_notify);
                (
                    frames,
                    m.retry_name_in_ms.take(),
                    m.retry_in_ms.take(),
                    notes,
                )
            })
            .unwrap_or_default();
        frames
            .into_iter()
            .filter(|f| in_view || beside_may_send(f))
            .for_each(send);
        if !notes.is_empty() {
            let room = model.with_untracked(|m| m.room.clone());
            for (from, text) in notes {
                notify(&room, &from, &text);
            }
        }
        if let Some(ms) = reclaim.filter(|_| in_view) {
            leptos::task::spawn_local(reclaim_name_after(model, ms));
        }
        if let Some(ms) = retry {
            leptos::task::spawn_local(retry_after(model, ms));
        }
    }

    /// As [`act`], without telling the page the model changed: for what nothing shows (when
    /// the page last said it was typing), so a keystroke does not redraw the conversation.
    pub fn act_quietly(model: RwSignal<Model>, f: impl FnOnce(&mut Model) -> Vec<ClientMsg>) {
        let frames = model
            .try_update_untracked(|m| {
                m.set_clock(now_ms());
                f(m)
            })
            .unwrap_or_default();
        frames.into_iter().for_each(send);
    }

    /// Asks the browser for leave to notify, unless it was already given or refused. Call it
    /// from a click (or a choice made): browsers ignore the question otherwise.
    pub fn ask_to_notify() {
        if web_sys::Notification::permission() == web_sys::NotificationPermission::Default {
            let _ = web_sys::Notification::request_permission();
        }
    }

    /// Shows a notification of `from`'s message in `room`, if the browser lets the page. One
    /// per room at a time (a newer one replaces it); a click brings the tab forward.
    fn notify(room: &str, from: &str, text: &str) {
        if web_sys::Notification::permission() != web_sys::NotificationPermission::Granted {
            return;
        }
        let options = web_sys::NotificationOptions::new();
        let body: String = text.chars().take(160).collect();
        options.set_body(&body);
        options.set_tag(&format!("chorus-{room}"));
        let Ok(shown) =
            web_sys::Notification::new_with_options(&format!("{from} · #{room}"), &options)
        else {
            return;
        };
        ON_NOTIFICATION_CLICK
            .with(|on_click| shown.set_onclick(Some(on_click.as_ref().unchecked_ref())));
    }

    thread_local! {
        /// A click on any of the page's notifications brings the tab forward: one closure for
        /// the page's life, not one kept per notification shown.
        static ON_NOTIFICATION_CLICK: wasm_bindgen::closure::Closure<dyn Fn()> =
            wasm_bindgen::closure::Closure::new(|| {
                if let Some(window) = web_sys::window() {
                    let _ = window.focus();
                }
            });
    }

    /// Follows what the browser says of its network (`online` and `offline` events).
    fn watch_network(rooms: Rooms) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let on_line = window.navigator().on_line();
        rooms
            .each()
            .into_iter()
            .for_each(|model| model.update(|m| m.set_network(on_line)));
        for (event, online) in [("online", true), ("offline", false)] {
            let on_event = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || {
                for model in rooms.each() {
                    model.update(|m| m.set_network(online));
                }
            });
            let _ =
                window.add_event_listener_with_callback(event, on_event.as_ref().unchecked_ref());
            // The page keeps listening as long as it lives.
            on_event.forget();
        }
    }

    /// Follows the browser's other tabs (`storage` events): one that took a name makes this one
    /// the same person, and a rename in one is made in all.
    fn watch_other_tabs(rooms: Rooms) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let on_change = wasm_bindgen::closure::Closure::<dyn Fn(web_sys::Event)>::new(
            move |event: web_sys::Event| {
                let key = js_sys::Reflect::get(&event, &"key".into())
                    .ok()
                    .and_then(|k| k.as_string());
                if !matches!(key.as_deref(), Some(SESSION_KEY | NAME_KEY)) {
                    return;
                }
                let (session, name) = (storage_get(SESSION_KEY), storage_get(NAME_KEY));
                act(rooms.in_view(), |m| m.other_tab(session, name));
            },
        );
        let _ =
            window.add_event_listener_with_callback("storage", on_change.as_ref().unchecked_ref());
        // The page keeps listening as long as it lives.
        on_change.forget();
    }

    /// Follows whether the tab is shown (`visibilitychange`): while hidden, what others say is
    /// counted in the title and marked new.
    fn watch_visibility(rooms: Rooms) {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        rooms.in_view().update(|m| m.set_away(document.hidden()));
        let on_change = wasm_bindgen::closure::Closure::<dyn Fn()>::new({
            let document = document.clone();
            move || rooms.in_view().update(|m| m.set_away(document.hidden()))
        });
        let _ = document.add_event_listener_with_callback(
            "visibilitychange",
            on_change.as_ref().unchecked_ref(),
        );
        // The page keeps listening as long as it lives.
        on_change.forget();
    }

    /// The `data-key` of the first message at least partly in view in `list`.
    pub fn first_in_view(list: &web_sys::HtmlElement) -> Option<String> {
        let top = list.get_bounding_client_rect().top();
        let messages = list.query_selector_all("[data-testid=message]").ok()?;
        (0..messages.length())
            .filter_map(|i| messages.item(i)?.dyn_into::<web_sys::Element>().ok())
            .find(|m| m.get_bounding_client_rect().bottom() > top + 1.0)
            .and_then(|m| m.get_attribute("data-key"))
    }

    /// Calls `settle` after layout and before drawing whenever `list` or one of its children
    /// changes size (a `ResizeObserver`), and once at the start.
    pub fn on_resize(list: &web_sys::HtmlElement, settle: impl Fn() + 'static) {
        let on_resize = wasm_bindgen::closure::Closure::<dyn Fn()>::new(settle);
        let Ok(observer) = web_sys::ResizeObserver::new(on_resize.as_ref().unchecked_ref()) else {
            return;
        };
        observer.observe(list);
        let children = list.children();
        for i in 0..children.length() {
            if let Some(child) = children.item(i) {
                observer.observe(&child);
            }
        }
        // Both live as long as the page.
        on_resize.forget();
        std::mem::forget(observer);
    }

    /// Whether the tab is hidden.
    pub fn tab_hidden() -> bool {
        web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.hidden())
    }

    /// Shows `path` in the address bar without loading anything (the rooms switch in place).
    pub fn show_path(path: &str) {
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(path));
        }
    }

    /// A server frame to the rooms it concerns: a room's to that room's model; the
    /// connection's to every one, answered by the room in view only.
    fn route(rooms: Rooms, msg: ServerMsg) {
        if let Some(room) = msg.room() {
            if let Some(model) = rooms.find(room) {
                act_as(model, true, |m| m.apply(msg));
            }
            return;
        }
        // The room in view first: its answers (a `welcome`'s name claim) go out before the
        // others' (their `join`s, which count as the named member's only after the claim).
        let in_view = rooms.in_view();
        act_as(in_view, true, |m| m.apply(msg.clone()));
        for model in rooms.each().into_iter().filter(|m| *m != in_view) {
            let msg = msg.clone();
            act_as(model, false, |m| m.apply(msg));
        }
    }

    pub fn start(rooms: Rooms) {
        watch_network(rooms);
        watch_visibility(rooms);
        watch_other_tabs(rooms);
        leptos::task::spawn_local(async move {
            let Some(url) = ws_url() else { return };
            let attempt = Cell::new(0u32);
            loop {
                if let Ok(ws) = WebSocket::open(&url) {
                    let (mut write, mut read) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded::<ClientMsg>();
                    OUTBOX.with(|o| *o.borrow_mut() = Some(tx));
                    let writer = async {
                        while let Some(msg) = rx.next().await {
                            let Ok(json) = serde_json::to_string(&msg) else {
                                continue;
                            };
                            if write.send(WsMessage::Text(json)).await.is_err() {
                                break;
                            }
                        }
                    };
                    let last_heard = Cell::new(js_sys::Date::now());
                    let drops = rooms.in_view().with_untracked(|m| m.drops);
                    let heartbeat = async {
                        let mut last_tick = js_sys::Date::now();
                        loop {
                            // Looks four times a second: the browser may say it went offline
                            // (and maybe back already: the link is made again either way).
                            gloo_timers::future::TimeoutFuture::new(250).await;
                            let model = rooms.in_view();
                            if model.with_untracked(|m| m.offline || m.drops != drops) {
                                leptos::logging::warn!("the browser is offline: closing the link");
                                break;
                            }
                            // Until `welcome` says the interval, the default.
                            let known = model.with_untracked(|m| m.ping_interval_ms);
                            let every = match known {
                                0 => DEFAULT_PING_MS,
                                ms => ms.max(250),
                            } as f64;
                            let now = js_sys::Date::now();
                            if now - last_heard.get() > 2.0 * every {
                                leptos::logging::warn!("no answer from the server: reconnecting");
                                break;
                            }
                            if known != 0 && now - last_tick >= every {
                                last_tick = now;
                                for each in rooms.each() {
                                    act_as(each, each == model, Model::tick);
                                }
                            }
                        }
                    };
                    let reader = async {
                        while let Some(Ok(frame)) = read.next().await {
                            last_heard.set(js_sys::Date::now());
                            let WsMessage::Text(text) = frame else {
                                continue;
                            };
                            let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else {
                                leptos::logging::warn!("unreadable server frame: {text}");
                                continue;
                            };
                            if matches!(msg, ServerMsg::Welcome { .. }) {
                                attempt.set(0);
                            }
                            let confirmed = match &msg {
                                ServerMsg::NameSet { name } => Some(name.clone()),
                                _ => None,
                            };
                            route(rooms, msg);
                            if let Some(name) = confirmed {
                                storage_set(NAME_KEY, &name);
                            }
                        }
                    };
                    futures::pin_mut!(reader, writer, heartbeat);
                    futures::future::select(reader, futures::future::select(writer, heartbeat))
                        .await;
                    OUTBOX.with(|o| *o.borrow_mut() = None);
                }
                for each in rooms.each() {
                    each.update(|m| m.disconnected());
                }
                let wait = backoff_ms(attempt.get());
                attempt.set(attempt.get() + 1);
                // While offline, wait for the network; once it is back (or the user asks), try at
                // once. Meanwhile the page says when the next try is.
                let mut waited = 0;
                loop {
                    let (offline, wake) = rooms
                        .in_view()
                        .try_update_untracked(|m| (m.offline, std::mem::take(&mut m.wake)))
                        .unwrap_or_default();
                    if wake || (waited >= wait && !offline) {
                        break;
                    }
                    let left = (!offline).then(|| (wait - waited).div_ceil(1000));
                    let model = rooms.in_view();
                    if model.with_untracked(|m| m.reconnect_in_s != left) {
                        model.update(|m| m.reconnect_in_s = left);
                    }
                    gloo_timers::future::TimeoutFuture::new(250).await;
                    waited += 250;
                }
                for each in rooms.each() {
                    each.update(|m| m.reconnect_in_s = None);
                }
            }
        });
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::*;
    pub fn send(_msg: ClientMsg) {}
    pub fn storage_get(_key: &str) -> Option<String> {
        None
    }
    pub fn storage_set(_key: &str, _value: &str) {}
    pub fn tab_get(_key: &str) -> Option<String> {
        None
    }
    pub fn tab_set(_key: &str, _value: &str) {}
    pub fn load_outbox(_room: &str) -> Vec<(String, String)> {
        Vec::new()
    }
    pub fn save_outbox(_room: &str, _outbox: &[(String, String)]) {}
    pub fn page_language() -> Option<String> {
        None
    }
    pub fn page_path() -> Option<String> {
        None
    }
    pub fn set_cookie(_cookie: &str) {}
    pub fn random_id() -> String {
        String::new()
    }
    pub fn start(_rooms: super::super::rooms::Rooms) {}
    pub fn tab_hidden() -> bool {
        false
    }
    pub fn show_path(_path: &str) {}
    pub fn on_resize(_list: &leptos::web_sys::HtmlElement, _settle: impl Fn() + 'static) {}
    pub fn first_in_view(_list: &leptos::web_sys::HtmlElement) -> Option<String> {
        None
    }
    pub fn ask_to_notify() {}
    pub fn act_quietly(model: RwSignal<Model>, f: impl FnOnce(&mut Model) -> Vec<ClientMsg>) {
        model.update_untracked(|m| {
            f(m);
        });
    }
    /// Nothing is sent from the server's render: the model changes, the frames are dropped.
    pub fn act(model: RwSignal<Model>, f: impl FnOnce(&mut Model) -> Vec<ClientMsg>) {
        model.update(|m| {
            f(m);
        });
    }
}

pub use imp::{
    act, act_quietly, ask_to_notify, first_in_view, load_outbox, on_resize, page_language,
    page_path, random_id, save_outbox, send, set_cookie, show_path, start, storage_get,
    storage_set, tab_get, tab_hidden, tab_set,
};
