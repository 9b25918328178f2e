//! The reactive UI: rendered on the server, hydrated in the browser.
//!
//! Everything the page shows derives from one [`model::Model`] signal that the WebSocket client
//! updates; the components only read it and turn clicks and key presses into protocol frames.

pub mod client;
pub mod markup;
pub mod mention;
pub mod model;
pub mod reading;
pub mod rooms;
pub mod status;
pub mod typing;

use crate::{
    i18n::{Lang, Strings},
    protocol::{ChatMessage, DEFAULT_ROOM, ErrorCode, NoticeKind, RoomName},
};
use leptos::{
    either::{Either, EitherOf3, EitherOf4, EitherOf5},
    ev, html,
    prelude::*,
    wasm_bindgen::JsCast,
};
use leptos_meta::{HashedStylesheet, Html, MetaTags, Title, provide_meta_context};
use model::{Changed, Edge, Hold, Item, Model, Notify, SendState, Status};
use reading::Theme;
use rooms::{ROOMS_KEY, Rooms};
use std::collections::HashMap;
use typing::{Typing, Typists};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_content_security_policy(&options);
    view! {
        <!DOCTYPE html>
        // `lang` comes from the app (`Html`), in the visitor's language.
        <html>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1, interactive-widget=resizes-content" />
                // Named, so that browsers do not ask for a /favicon.ico there is not.
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                // chorus.css, or chorus.<hash>.css when cargo-leptos hashed the files.
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy: scripts only from this site or inline with this
/// response's nonce (the hydration script), WebAssembly compiled from them, connections only back
/// to this site (the chat WebSocket, and cargo-leptos's reload socket while developing), and no
/// framing by other sites.
#[cfg(feature = "ssr")]
fn set_content_security_policy(options: &LeptosOptions) {
    use axum::http::{HeaderValue, header};
    let Some(nonce) = leptos::nonce::use_nonce() else {
        return;
    };
    let Some(response) = use_context::<leptos_axum::ResponseOptions>() else {
        return;
    };
    // Under `cargo leptos watch` only: its reload script connects to the host the page was
    // asked for (`localhost`, `127.0.0.1`, a LAN address…), on the reload port.
    let reload = match options.env {
        leptos::config::Env::DEV => {
            let asked = use_context::<axum::http::request::Parts>().and_then(|parts| {
                let host = parts.headers.get(header::HOST)?.to_str().ok()?;
                crate::server::net::split_host_port(host, 0).map(|(host, _)| host)
            });
            let host = asked.unwrap_or_else(|| match options.site_addr {
                std::net::SocketAddr::V4(a) => a.ip().to_string(),
                std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
            });
            format!(" ws://{host}:{}", options.reload_port)
        }
        leptos::config::Env::PROD => String::new(),
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{reload}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    match HeaderValue::from_str(&policy) {
        Ok(value) => response.insert_header(header::CONTENT_SECURITY_POLICY, value),
        Err(e) => tracing::error!(cause = %e, "cannot build the Content-Security-Policy"),
    }
    // The page is in the visitor's language (see `page_language`): a shared cache must keep one
    // copy per language.
    response.insert_header(
        header::VARY,
        HeaderValue::from_static("cookie, accept-language"),
    );
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let lang = RwSignal::new(page_language());
    provide_context(lang);
    let theme = RwSignal::new(page_theme());
    provide_context(theme);
    view! {
        <Html {..} lang=move || lang.get().tag() data-theme=move || theme.get().map(Theme::tag) />
        <Title text="Chorus" />
        // The page is the address's, chosen once: rooms switch in place (`switch_to`), and
        // every other link loads a page. No router: it would hold the page as an `AnyView`,
        // whose hydration code for every view in it (sync and async) made the WASM a fifth
        // larger (BENCHMARKS.md).
        {match Page::for_path(&page_path()) {
            Page::Chat(room) => EitherOf4::A(view! { <ChatPage room /> }),
            Page::BadRoom(code) => EitherOf4::B(view! { <NotFound code=Some(code) /> }),
            Page::Status => EitherOf4::C(view! { <status::StatusPage /> }),
            Page::NotFound => EitherOf4::D(view! { <NotFound code=None /> }),
        }}
    }
}

/// Where the status page is (served only when the node is configured to).
pub const STATUS_PATH: &str = "/status";

/// What an address shows. The server routes these same paths to the app (`server::site`);
/// any other address is answered 404 with [`Page::NotFound`].
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    /// `/` (the default room) or `/r/<room>`.
    Chat(String),
    /// `/r/<room>` with a name no room can have.
    BadRoom(ErrorCode),
    Status,
    NotFound,
}

impl Page {
    pub fn for_path(path: &str) -> Page {
        if path == "/" {
            return Page::Chat(DEFAULT_ROOM.to_owned());
        }
        if path == STATUS_PATH {
            return Page::Status;
        }
        match path.strip_prefix("/r/") {
            Some(room) if !room.is_empty() && !room.contains('/') => match RoomName::parse(room) {
                Ok(room) => Page::Chat(room.to_string()),
                Err(e) => Page::BadRoom(e.code),
            },
            _ => Page::NotFound,
        }
    }
}

/// The path of the address the page is for: on the server, the request's; in the browser,
/// the one the server rendered (the address bar, before any room switch).
fn page_path() -> String {
    #[cfg(feature = "ssr")]
    {
        use_context::<axum::http::request::Parts>()
            .map(|parts| parts.uri.path().to_owned())
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        client::page_path().unwrap_or_default()
    }
}

/// The language the page is rendered in: on the server, the visitor's (see
/// [`Lang::for_request`]); in the browser, the one the server rendered (`<html lang>`), so that
/// hydration finds the same text.
fn page_language() -> Lang {
    #[cfg(feature = "ssr")]
    {
        use axum::http::header;
        let (cookie, accept) = (
            request_header(header::COOKIE),
            request_header(header::ACCEPT_LANGUAGE),
        );
        Lang::for_request(cookie.as_deref(), accept.as_deref())
    }
    #[cfg(not(feature = "ssr"))]
    {
        client::page_language()
            .and_then(|tag| Lang::from_tag(&tag))
            .unwrap_or_default()
    }
}

/// A header of the request the page is rendered for (on the server).
#[cfg(feature = "ssr")]
fn request_header(name: axum::http::HeaderName) -> Option<String> {
    let parts = use_context::<axum::http::request::Parts>()?;
    Some(parts.headers.get(name)?.to_str().ok()?.to_owned())
}

/// The colour scheme the reader chose over their system's, if any: on the server, from its
/// cookie; in the browser, the one the server rendered.
fn page_theme() -> Option<Theme> {
    #[cfg(feature = "ssr")]
    {
        request_header(axum::http::header::COOKIE).and_then(|c| Theme::from_cookies(&c))
    }
    #[cfg(not(feature = "ssr"))]
    {
        reading::page_theme()
    }
}

/// The strings of the language in use.
fn use_strings() -> impl Fn() -> &'static Strings + Copy {
    let lang = expect_context::<RwSignal<Lang>>();
    move || lang.get().strings()
}

/// No such page; with `code`, a room address whose name no room can have (why, said).
#[component]
fn NotFound(code: Option<ErrorCode>) -> impl IntoView {
    let t = use_strings();
    let why = move || match code {
        Some(code) => {
            Either::Left(view! { <p class="error" data-testid="error">{(t().error)(code)}</p> })
        }
        None => Either::Right(view! { <p>{t().not_found}</p> }),
    };
    view! {
        <main class="not-found">
            {why}
            <a href="/">{move || t().back_to_lobby}</a>
        </main>
    }
}

/// The page: every room this browser is in, on one connection, one of them in view (the
/// address's). Switching rooms changes what is shown, never the page.
#[component]
fn ChatPage(room: String) -> impl IntoView {
    let first = RwSignal::new(Model::new(&room, None));
    let rooms = Rooms::new(first);
    // Runs in the browser only, after hydration. A reload carries on where the tab was: its
    // session (others see no left/joined), what it had not sent yet, and the other rooms open.
    Effect::new({
        let room = room.clone();
        move |_| {
            let remembered = client::storage_get(client::NAME_KEY);
            // The browser's person; a tab of a version before it kept its own.
            let session = client::storage_get(client::SESSION_KEY)
                .or_else(|| client::tab_get(client::SESSION_KEY));
            let others: Vec<String> = client::storage_get(ROOMS_KEY)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default();
            let operator = client::tab_get(client::OPERATOR_KEY).unwrap_or_default();
            first.update_untracked(|m| {
                if m.wanted_name.is_none() {
                    m.wanted_name = remembered.filter(|n| !n.trim().is_empty());
                }
                m.restore_operator_token(operator);
                if let Some(session) = session {
                    m.resume_session(session);
                }
            });
            load_room(first);
            for other in others
                .iter()
                .filter(|r| **r != room)
                .take(ROOMS_OPEN_MAX - 1)
            {
                if RoomName::parse(other).is_ok() {
                    let _ = open_room(rooms, other, false);
                }
            }
            client::start(rooms);
        }
    });
    // What each room keeps in this browser: the rooms open, each one's unsent messages and
    // where its reader left it; written when it changes.
    let written = StoredValue::new(HashMap::<String, (Vec<(String, String)>, String)>::new());
    let names = Memo::new(move |_| rooms.names());
    Effect::new(move |_| {
        let json = names.with(|names| serde_json::to_string(names).unwrap_or_default());
        client::storage_set(ROOMS_KEY, &json);
    });
    Effect::new(move |_| {
        for model in rooms.open.get() {
            let (room, outbox, seen) = model.with(|m| {
                let seen = m
                    .seen
                    .as_ref()
                    .map(|(e, s)| format!("{e} {s}"))
                    .unwrap_or_default();
                (m.room.clone(), m.outbox(), seen)
            });
            if written.with_value(|w| w.get(&room) == Some(&(outbox.clone(), seen.clone()))) {
                continue;
            }
            client::save_outbox(&room, &outbox);
            if !seen.is_empty() {
                client::storage_set(&rooms::seen_key(&room), &seen);
            }
            written.update_value(|w| {
                w.insert(room, (outbox, seen));
            });
        }
    });
    // Once it holds a name, the session is the browser's person: every tab resumes it.
    keep_from_view(rooms, Model::named_session, |session| {
        client::storage_set(client::SESSION_KEY, session)
    });
    // A moderator by the operator token stays one across a reload of this tab.
    keep_from_view(rooms, Model::operator_token_to_keep, |token| {
        client::tab_set(client::OPERATOR_KEY, token)
    });
    // Built again only when another room comes into view: untracked, so that what the view
    // reads as it is built does not rebuild it.
    view! {
        {move || {
            let model = rooms.current.get();
            untrack(|| view! { <RoomView model rooms /> })
        }}
    }
}

/// Writes what `pick` reads of the room in view, with `write`, whenever it changes to a value.
fn keep_from_view(
    rooms: Rooms,
    pick: impl Fn(&Model) -> Option<&str> + Send + Sync + 'static,
    write: impl Fn(&str) + 'static,
) {
    let value = Memo::new(move |_| rooms.current.get().with(|m| pick(m).map(str::to_owned)));
    Effect::new(move |_| {
        if let Some(value) = value.get() {
            write(&value);
        }
    });
}

/// Most rooms a page keeps open (the server may allow fewer: `max_rooms_per_connection`).
const ROOMS_OPEN_MAX: usize = 16;

/// What a room's model takes from this browser when it opens: its unsent messages, where its
/// reader left it, and their notification choice.
fn load_room(model: RwSignal<Model>) {
    let room = model.with_untracked(|m| m.room.clone());
    let outbox = client::load_outbox(&room);
    let seen = client::storage_get(&rooms::seen_key(&room)).and_then(|s| rooms::parse_seen(&s));
    let notify = client::storage_get(&client::notify_key(&room)).and_then(|t| Notify::from_tag(&t));
    model.update_untracked(|m| {
        m.restore_outbox(outbox);
        if m.seen.is_none() {
            m.seen = seen;
        }
        if let Some(notify) = notify {
            m.notify = notify;
        }
    });
}

/// Opens `room` beside the rooms open (on the same connection), or finds it open; with `show`,
/// puts it in view. Refused past the connection's most rooms.
fn open_room(rooms: Rooms, room: &str, show: bool) -> Result<(), ErrorCode> {
    if let Some(model) = rooms.find(room) {
        if show {
            switch_to(rooms, model);
        }
        return Ok(());
    }
    let in_view = rooms.in_view();
    let max = match in_view.with_untracked(|m| m.max_rooms) {
        0 => ROOMS_OPEN_MAX,
        n => n.min(ROOMS_OPEN_MAX),
    };
    if rooms.open.with_untracked(Vec::len) >= max {
        return Err(ErrorCode::TooManyRooms);
    }
    let (model, join) = in_view.with_untracked(|m| m.beside(room, None));
    let model = rooms.model(model);
    load_room(model);
    rooms.open.update(|open| open.push(model));
    join.into_iter().for_each(client::send);
    if show {
        switch_to(rooms, model);
    }
    Ok(())
}

/// Puts an open room in view: the one that was is read as if the tab were hidden (what comes
/// counts as unread), and the address says the room, without loading a page.
fn switch_to(rooms: Rooms, model: RwSignal<Model>) {
    let was = rooms.in_view();
    if was == model {
        return;
    }
    was.update(|m| m.set_away(true));
    model.update(|m| m.set_away(client::tab_hidden()));
    rooms.current.set(model);
    let room = model.with_untracked(|m| m.room.clone());
    client::show_path(&match room.as_str() {
        DEFAULT_ROOM => "/".to_owned(),
        room => format!("/r/{room}"),
    });
}

/// Leaves `model`'s room and closes it; the room in view goes to the one opened before it.
fn close_room(rooms: Rooms, model: RwSignal<Model>) {
    let next = rooms.open.with_untracked(|open| {
        let at = open.iter().position(|m| *m == model).unwrap_or_default();
        open.iter()
            .copied()
            .filter(|m| *m != model)
            .nth(at.saturating_sub(1))
    });
    // The last room stays: a page is in one room at least.
    let Some(next) = next else { return };
    client::act(model, Model::leave);
    switch_to(rooms, next);
    rooms.open.update(|open| open.retain(|m| *m != model));
}

/// The rooms this page is in, each with what came while it was not in view (a count, and a
/// mark when it named the reader); joining another by name, and leaving the one in view.
#[component]
fn RoomList(model: RwSignal<Model>, rooms: Rooms) -> impl IntoView {
    let t = use_strings();
    let room = model.with_untracked(|m| m.room.clone());
    let refused = RwSignal::new(None::<ErrorCode>);
    let input = NodeRef::<html::Input>::new();
    let on_submit = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let Some(el) = input.get() else { return };
        let raw = el.value();
        let opened = RoomName::parse(raw.trim().trim_start_matches('#'))
            .map_err(|e| e.code)
            .and_then(|name| open_room(rooms, name.as_str(), true));
        match opened {
            Ok(()) => {
                refused.set(None);
                el.set_value("");
            }
            Err(code) => refused.set(Some(code)),
        }
    };
    let several = Memo::new(move |_| rooms.open.with(|open| open.len() > 1));
    view! {
        <nav class="rooms" aria-labelledby="rooms-heading">
            <h2 id="rooms-heading">{move || t().rooms_heading}</h2>
            <ul data-testid="rooms">
                <For
                    each=move || rooms.open.get()
                    key=|each| each.with_untracked(|m| m.room.clone())
                    let:each
                >
                    {
                        let name = each.with_untracked(|m| m.room.clone());
                        let here = each == model;
                        let news = Memo::new(move |_| each.with(|m| (m.unread, m.unread_mentions)));
                        view! {
                            <li>
                                <button
                                    type="button"
                                    class="room-link"
                                    class:here=here
                                    aria-current=here.then_some("page")
                                    data-testid="room"
                                    data-room=name.clone()
                                    on:click=move |_| switch_to(rooms, each)
                                >
                                    <span class="room-name">{format!("#{name}")}</span>
                                    <Show when=move || !here && news.get().1 != 0>
                                        <span class="mention-mark" data-testid="mention-mark" title=move || t().mentioned>"@"</span>
                                    </Show>
                                    <Show when=move || !here && news.get().0 != 0>
                                        <span class="unread" data-testid="unread" title=move || (t().unread_label)(news.get().0)>
                                            {move || news.get().0}
                                        </span>
                                    </Show>
                                </button>
                            </li>
                        }
                    }
                </For>
            </ul>
            <form class="join-room" on:submit=on_submit>
                <label for="join-room">{move || t().join_room_label}</label>
                <div class="row">
                    <input
                        id="join-room"
                        node_ref=input
                        data-testid="join-room"
                        autocomplete="off"
                        autocapitalize="none"
                        placeholder=move || t().join_room_placeholder
                    />
                    <button type="submit" data-testid="join-room-submit">{move || t().join_room_submit}</button>
                </div>
            </form>
            <Show when=move || refused.get().is_some()>
                <p class="error" role="alert" data-testid="room-error">
                    {move || refused.get().map(|code| (t().error)(code))}
                </p>
            </Show>
            <Show when=move || several.get()>
                <button
                    type="button"
                    class="leave-room"
                    data-testid="leave-room"
                    on:click=move |_| close_room(rooms, model)
                >
                    {
                        let room = room.clone();
                        move || (t().leave_room)(&room)
                    }
                </button>
            </Show>
        </nav>
    }
}

/// One room in view: its header, conversation and side panel.
#[component]
fn RoomView(model: RwSignal<Model>, rooms: Rooms) -> impl IntoView {
    let room = model.with_untracked(|m| m.room.clone());
    let t = use_strings();
    let room_title = format!("#{room}");
    // On a phone the name form, the rooms and the member list are a panel over the
    // conversation: open until a name is taken, then behind the header's button.
    let toggled = RwSignal::new(false);
    // Named once is named: a dropped link does not bring the form back over the conversation.
    let named = Memo::new(move |_| model.with(|m| m.name.is_some() || m.named_once));
    let side_open = move || toggled.get() || !named.get();
    let count = Memo::new(move |_| model.with(Model::member_total));
    // The title counts what others said and those that named us, in the rooms not in view
    // and, while the tab is hidden, in this one: seen from another tab, the news of every room.
    let unread = Memo::new(move |_| {
        rooms.open.with(|open| {
            open.iter().fold((0, 0), |(n, m), room| {
                room.with(|r| (n + r.unread, m + r.unread_mentions))
            })
        })
    });
    let title = {
        let room_title = room_title.clone();
        move || match unread.get() {
            (0, _) => format!("{room_title} · Chorus"),
            (n, 0) => format!("({n}) {room_title} · Chorus"),
            (n, m) => format!("(@{m} · {n}) {room_title} · Chorus"),
        }
    };
    // Other rooms with news: a dot on the panel's button, on a phone.
    let news_beside = Memo::new(move |_| {
        rooms
            .open
            .with(|open| open.iter().any(|m| *m != model && m.with(|m| m.unread > 0)))
    });
    view! {
        <Title text=title />
        <div class="chat" class:side-open=side_open>
            <header class="topbar">
                <h1>{move || t().app_title}</h1>
                <span class="room" title=move || t().room_label>{room_title}</span>
                <StatusBadge model />
                <button
                    type="button"
                    class="side-toggle"
                    class:news=move || news_beside.get()
                    data-testid="side-toggle"
                    aria-controls="side"
                    aria-expanded=move || side_open().to_string()
                    aria-label=move || format!("{} ({})", t().members_heading, count.get())
                    on:click=move |_| toggled.update(|open| *open = !*open)
                >
                    <svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
                        <circle cx="9" cy="8" r="3.5" fill="currentColor" />
                        <path d="M2 20c0-3.9 3.1-6.5 7-6.5s7 2.6 7 6.5z" fill="currentColor" />
                        <circle cx="17" cy="9" r="2.8" fill="currentColor" opacity=".7" />
                        <path d="M15.5 14c3.6 0 6.5 2.2 6.5 6h-4.5c0-2.3-.7-4.3-2-6z" fill="currentColor" opacity=".7" />
                    </svg>
                    " "
                    {move || count.get()}
                </button>
                <ThemeToggle />
                <LangPicker />
            </header>
            <main class="main">
                <NextTry model />
                <ErrorBanner model />
                <div class="body">
                    <section class="conversation" aria-label=move || t().conversation_label>
                        <MessageList model />
                        <TypingLine model />
                        <RoomRules model />
                        <Composer model />
                    </section>
                    <aside class="side" id="side" aria-label=move || t().members_heading>
                        <NameForm model />
                        <RoomList model rooms />
                        <NotifyPicker model />
                        <MemberList model />
                    </aside>
                </div>
            </main>
        </div>
    }
}

#[component]
fn StatusBadge(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let status = Memo::new(move |_| model.with(|m| m.status));
    let (class, text) = (
        move || match status.get() {
            Status::Connecting => "status connecting",
            Status::Online => "status online",
            Status::Reconnecting => "status reconnecting",
            Status::Offline => "status offline",
        },
        move || match status.get() {
            Status::Connecting => t().status_connecting,
            Status::Online => t().status_online,
            Status::Reconnecting => t().status_reconnecting,
            Status::Offline => t().status_offline,
        },
    );
    view! { <span class=class data-testid="status" role="status">{text}</span> }
}

/// While waiting to reconnect: when the next try is, and a way to try now. A line of its own
/// under the header (a phone's header has no room for it), outside the status so that a
/// screen reader is not told every second.
#[component]
fn NextTry(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let next_try = Memo::new(move |_| model.with(|m| m.reconnect_in_s));
    view! {
        <Show when=move || next_try.get().is_some()>
            <div class="next-try">
                <span aria-hidden="true">{move || t().status_reconnecting} " "</span>
                <span data-testid="countdown" aria-hidden="true">
                    {move || next_try.get().map(|n| (t().reconnect_in)(n))}
                </span>
                " · "
                <TryNow model class="retry-now" label=|s| s.retry_now />
            </div>
        </Show>
    }
}

/// A button that tries now what waits: the link, and every message not yet stored.
#[component]
fn TryNow(
    model: RwSignal<Model>,
    /// Its class, also its `data-testid`.
    class: &'static str,
    label: fn(&Strings) -> &'static str,
) -> impl IntoView {
    let t = use_strings();
    view! {
        <button
            type="button"
            class=class
            data-testid=class
            on:click=move |_| client::act(model, Model::try_now)
        >
            {move || label(t())}
        </button>
    }
}

/// Keeps a chosen language in this browser, and in a cookie so the server renders the next page
/// in it from the first byte.
fn remember(lang: Lang) {
    client::storage_set(client::LANG_KEY, lang.tag());
    client::keep_cookie(Lang::COOKIE, Some(lang.tag()));
}

#[component]
fn LangPicker() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = use_strings();
    // The server rendered the page in the remembered choice (its cookie) or the browser's
    // language. A choice remembered before the cookie existed is carried over once.
    Effect::new(move |_| {
        let remembered = client::storage_get(client::LANG_KEY).and_then(|tag| Lang::from_tag(&tag));
        if let Some(picked) = remembered
            && picked != lang.get_untracked()
        {
            remember(picked);
            lang.set(picked);
        }
    });
    let on_change = move |ev: ev::Event| {
        if let Some(picked) = Lang::from_tag(&event_target_value(&ev)) {
            remember(picked);
            lang.set(picked);
        }
    };
    view! {
        <label class="lang">
            <span class="visually-hidden">{move || t().language_label}</span>
            <select data-testid="lang" on:change=on_change prop:value=move || lang.get().tag()>
                {Lang::ALL
                    .into_iter()
                    .map(|l| view! { <option value=l.tag()>{l.native_name()}</option> })
                    .collect_view()}
            </select>
        </label>
    }
}

/// Dark or light: the system's scheme until the reader picks the other one. Picking the system's
/// own scheme again follows the system again.
#[component]
fn ThemeToggle() -> impl IntoView {
    let theme = expect_context::<RwSignal<Option<Theme>>>();
    let t = use_strings();
    // Known in the browser only: the page is rendered as if light, then told.
    let system_dark = RwSignal::new(false);
    Effect::new(move |_| system_dark.set(reading::system_dark()));
    let dark = move || match theme.get() {
        Some(chosen) => chosen == Theme::Dark,
        None => system_dark.get(),
    };
    let toggle = move |_| {
        let want_dark = !dark();
        let chosen = (want_dark != system_dark.get_untracked()).then_some(if want_dark {
            Theme::Dark
        } else {
            Theme::Light
        });
        client::keep_cookie(Theme::COOKIE, chosen.map(Theme::tag));
        theme.set(chosen);
    };
    view! {
        <button
            type="button"
            class="theme-toggle"
            data-testid="theme"
            aria-pressed=move || dark().to_string()
            aria-label=move || t().dark_mode
            title=move || t().dark_mode
            on:click=toggle
        >
            <svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
                <path d="M20 14.5A8.5 8.5 0 0 1 9.5 4a8.5 8.5 0 1 0 10.5 10.5z" fill="currentColor" />
            </svg>
        </button>
    }
}

#[component]
fn ErrorBanner(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let error = Memo::new(move |_| model.with(|m| m.error));
    // Being asked to slow down is not a failure: a quiet note, read out politely, that goes away
    // by itself once the message is sent.
    let slow = move || error.get() == Some(ErrorCode::RateLimited);
    view! {
        <Show when=move || error.get().is_some()>
            <div
                class=move || if slow() { "error-banner calm" } else { "error-banner" }
                role=move || if slow() { "status" } else { "alert" }
                data-testid="error"
                data-code=move || error.get().map(|c| c.as_str())
            >
                <span>{move || error.get().map(|code| (t().error)(code))}</span>
                <button on:click=move |_| model.update(|m| m.error = None)>
                    {move || t().dismiss}
                </button>
            </div>
        </Show>
    }
}

#[component]
fn NameForm(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let input = NodeRef::<html::Input>::new();
    let confirmed = Memo::new(move |_| model.with(|m| m.name.clone()));
    let online = Memo::new(move |_| model.with(|m| m.status == Status::Online));
    let wanted = Memo::new(move |_| model.with(|m| m.wanted_name.clone()));
    let on_submit = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let Some(el) = input.get() else { return };
        client::act(model, |m| m.request_name(&el.value()));
    };
    view! {
        <form class="name-form" on:submit=on_submit>
            <Show when=move || confirmed.get().is_some()>
                <p class="me">
                    {move || t().signed_in_as} " "
                    <strong data-testid="my-name">{move || confirmed.get()}</strong>
                </p>
            </Show>
            <label for="name-input">
                {move || if confirmed.get().is_some() { t().name_change } else { t().name_label }}
            </label>
            <div class="row">
                <input
                    id="name-input"
                    node_ref=input
                    data-testid="name-input"
                    maxlength="32"
                    autocomplete="nickname"
                    placeholder=move || t().name_placeholder
                    prop:value=move || wanted.get().unwrap_or_default()
                />
                <button type="submit" data-testid="name-submit" disabled=move || !online.get()>
                    {move || if confirmed.get().is_some() { t().rename_submit } else { t().name_submit }}
                </button>
            </div>
        </form>
    }
}

/// This room's notifications while the tab is hidden: every message, mentions (the default), or
/// nothing. Kept in this browser per room; choosing one that notifies asks the browser's leave.
#[component]
fn NotifyPicker(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let key = StoredValue::new(client::notify_key(
        &model.with_untracked(|m| m.room.clone()),
    ));
    let level = Memo::new(move |_| model.with(|m| m.notify));
    Effect::new(move |_| {
        let kept = key
            .with_value(|k| client::storage_get(k))
            .and_then(|t| Notify::from_tag(&t));
        if let Some(kept) = kept {
            model.update(|m| m.notify = kept);
        }
    });
    let on_change = move |ev: ev::Event| {
        let Some(picked) = Notify::from_tag(&event_target_value(&ev)) else {
            return;
        };
        key.with_value(|k| client::storage_set(k, picked.tag()));
        model.update(|m| m.notify = picked);
        if picked != Notify::Nothing {
            client::ask_to_notify();
        }
    };
    let label = move |n: Notify| match n {
        Notify::All => t().notify_all,
        Notify::Mentions => t().notify_mentions,
        Notify::Nothing => t().notify_nothing,
    };
    view! {
        <label class="notify-pick">
            <span>{move || t().notify_label}</span>
            <select data-testid="notify" on:change=on_change prop:value=move || level.get().tag()>
                {Notify::ALL
                    .into_iter()
                    .map(|n| view! { <option value=n.tag()>{move || label(n)}</option> })
                    .collect_view()}
            </select>
        </label>
    }
}

#[component]
fn MemberList(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let members = Memo::new(move |_| model.with(|m| m.members.clone()));
    let count = Memo::new(move |_| model.with(Model::member_total));
    // In a big room the server sends the first page of names only.
    let more = Memo::new(move |_| count.get().saturating_sub(members.with(Vec::len)));
    let me = Memo::new(move |_| model.with(|m| m.name.clone()));
    view! {
        <section class="members">
            <h2 data-testid="member-count" data-count=move || count.get()>
                {move || t().members_heading} " (" {move || count.get()} ")"
            </h2>
            <ul data-testid="members">
                <For each=move || members.get() key=|name| name.clone() let:name>
                    <li>
                        <span class=reading::name_class(&name)>{name.clone()}</span>
                        <Show when={
                            let name = name.clone();
                            move || me.get().as_deref() == Some(name.as_str())
                        }>
                            " " <span class="you">{move || t().you}</span>
                        </Show>
                    </li>
                </For>
            </ul>
            <Show when=move || { more.get() > 0 }>
                <p class="more-members" data-testid="more-members">
                    {move || (t().more_members)(more.get())}
                </p>
            </Show>
        </section>
    }
}

/// The list's item with this key (`Item::key`), if it is shown.
fn item_by_key(
    list: &leptos::web_sys::HtmlElement,
    key: &str,
) -> Option<leptos::web_sys::HtmlElement> {
    let found = list
        .query_selector(&format!("[data-key=\"{key}\"]"))
        .ok()??;
    found.dyn_into().ok()
}

/// How long a finger rests on a message before its full time is shown.
const LONG_PRESS: std::time::Duration = std::time::Duration::from_millis(450);

#[component]
fn MessageList(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let list = NodeRef::<html::Div>::new();
    // Follow new messages unless the reader scrolled up to read older ones.
    let follow = RwSignal::new(true);
    let items = Memo::new(move |_| model.with(|m| m.items.clone()));
    let pending = Memo::new(move |_| model.with(|m| m.pending.clone()));
    let me = Memo::new(move |_| model.with(|m| m.name.clone()));
    // Who wrote what is waiting: the name, also while the link is down and it is being claimed.
    let author = Memo::new(move |_| model.with(|m| m.name.clone().or(m.wanted_name.clone())));
    let edge = Memo::new(move |_| model.with(Model::edge));
    let first_unread = Memo::new(move |_| model.with(Model::first_unread));
    let lang = expect_context::<RwSignal<Lang>>();
    // Where days begin and which messages run on from the one before.
    let changes = Memo::new(move |_| model.with(Model::changes));
    let looks =
        Memo::new(move |_| items.with(|i| reading::layout(i, reading::day_of, first_unread.get())));
    // The newest message the reader has had in view; what others said after it, while they
    // read further up, is offered with a button down to it.
    let seen = RwSignal::new(0u64);
    let unseen = Memo::new(move |_| model.with(|m| m.newer_than(seen.get())));
    // The first item shown and where it was: when older ones are put above it, the list is
    // scrolled by as much as they pushed it down, so what the reader sees does not move.
    let anchor = StoredValue::new(None::<(String, i32)>);
    let note_anchor = move || {
        let Some(el) = list.get_untracked() else {
            return;
        };
        let first = el
            .query_selector("[data-key]")
            .ok()
            .flatten()
            .and_then(|f| f.dyn_into::<leptos::web_sys::HtmlElement>().ok());
        anchor.set_value(first.and_then(|f| Some((f.get_attribute("data-key")?, f.offset_top()))));
    };
    // Where the reader was before a reload, if scrolled up (the first message in view): found
    // again once shown, paging back for it if need be. Kept as the reader scrolls.
    let place_key = StoredValue::new(client::place_key(&model.with_untracked(|m| m.room.clone())));
    let returning = StoredValue::new(place_key.with_value(|k| client::tab_get(k)));
    // The place is looked for at most this many pages back.
    let pages_left = StoredValue::new(40u32);
    // Kept a moment after scrolling, not at every scroll event: finding the first message in
    // view costs a look at each message above it.
    let saving = StoredValue::new(false);
    let keep_place = move || {
        if returning.with_value(Option::is_some) {
            return;
        }
        let Some(el) = list.get_untracked() else {
            return;
        };
        let place = match follow.get_untracked() {
            true => None,
            false => client::first_in_view(&el),
        };
        place_key.with_value(|k| client::tab_set(k, place.as_deref().unwrap_or_default()));
    };
    let save_place = move || {
        if !saving.get_value() {
            saving.set_value(true);
            set_timeout(
                move || {
                    saving.set_value(false);
                    keep_place();
                },
                std::time::Duration::from_millis(200),
            );
        }
    };
    // And at once when the page goes (a reload within the moment).
    Effect::new(move |_| {
        let handle = window_event_listener(ev::pagehide, move |_| keep_place());
        on_cleanup(move || handle.remove());
    });
    // The reader scrolled up only if the list moved up: a scroll event can come after new
    // content made the list longer than where it was scrolled to, and that is no reason to
    // stop following.
    let last_top = StoredValue::new(0);
    let on_scroll = move |_| {
        let Some(el) = list.get() else { return };
        let gap = el.scroll_height() - el.scroll_top() - el.client_height();
        let went_up = el.scroll_top() < last_top.get_value() - 1;
        last_top.set_value(el.scroll_top());
        if gap < 48 {
            follow.set(true);
            seen.set(model.with_untracked(Model::last_seq));
            if model.with_untracked(Model::reading_back) {
                model.update(Model::at_newest);
            }
        } else if went_up {
            follow.set(false);
            model.update_untracked(Model::hold_items);
        }
        save_place();
        note_anchor();
        // Near the top: the next older page, before the reader gets there.
        if el.scroll_top() < 400 && edge.get_untracked() == Edge::More {
            client::act(model, Model::older);
        }
    };
    // Once laid out and before it is drawn, whenever the list or anything in it changes size:
    // follow the newest, or keep what the reader looks at where it was.
    let settle = move || {
        let Some(el) = list.get_untracked() else {
            return;
        };
        let moved = anchor
            .get_value()
            .and_then(|(key, top)| Some(item_by_key(&el, &key)?.offset_top() - top));
        if let Some(key) = returning.get_value()
            && model.with_untracked(|m| m.joined && !m.items.is_empty())
            && (!model.with_untracked(|m| m.may_page_to(&key)) || pages_left.get_value() == 0)
        {
            // Another life of the room, or too far back: the newest, then.
            returning.set_value(None);
        }
        if let Some(key) = returning.get_value()
            && model.with_untracked(|m| m.joined)
        {
            match (item_by_key(&el, &key), edge.get_untracked()) {
                (Some(place), _) => {
                    returning.set_value(None);
                    follow.set(false);
                    el.set_scroll_top(place.offset_top());
                    note_anchor();
                    return;
                }
                (None, Edge::More) => {
                    pages_left.update_value(|n| *n = n.saturating_sub(1));
                    client::act(model, Model::older);
                }
                (None, Edge::Loading) => {}
                // Not kept any more (or another life of the room): the newest, then.
                (None, _) => returning.set_value(None),
            }
        }
        if follow.get_untracked() {
            el.set_scroll_top(el.scroll_height());
            seen.set(model.with_untracked(Model::last_seq));
        } else if let Some(by) = moved.filter(|by| *by != 0) {
            el.set_scroll_top(el.scroll_top() + by);
        }
        note_anchor();
    };
    Effect::new(move |_| {
        if let Some(el) = list.get() {
            client::on_resize(&el, settle);
        }
    });
    let to_newest = move || {
        follow.set(true);
        settle();
    };
    // One's own new message is always brought into view.
    Effect::new(move |sent_before: Option<usize>| {
        let sent = pending.with(Vec::len);
        if sent > sent_before.unwrap_or(sent) {
            follow.set(true);
        }
        sent
    });
    view! {
        <div class="messages" node_ref=list on:scroll=on_scroll data-testid="messages">
            <div class="edge" data-testid="history-edge" data-edge=move || format!("{:?}", edge.get())>
                {move || match edge.get() {
                    Edge::Empty => None,
                    Edge::Begins => Some(view! { <p class="edge-note">{t().history_begins}</p> }.into_any()),
                    Edge::Trimmed => Some(view! { <p class="edge-note">{t().history_trimmed}</p> }.into_any()),
                    Edge::Loading => Some(view! { <p class="edge-note" role="status">{t().loading_older}</p> }.into_any()),
                    Edge::More => Some(
                        view! {
                            <button
                                type="button"
                                class="older"
                                data-testid="load-older"
                                on:click=move |_| client::act(model, Model::older)
                            >
                                {t().show_older}
                            </button>
                        }
                            .into_any(),
                    ),
                }}
            </div>
            // Read out as messages arrive; what is still being sent is outside it, so one's own
            // message is read once, when stored.
            <div role="log" aria-live="polite" class="log">
            <Show when=move || items.with(|i| i.is_empty())>
                <p class="empty">{move || t().no_messages}</p>
            </Show>
            <For each=move || items.get() key=|item| item.key() let:item>
                {let key = item.key();
                match item {
                    // A change of an earlier message: shown in that message's place.
                    Item::Message(m) if m.edits.is_some() => EitherOf5::A(()),
                    // A moderator's action: a notice.
                    Item::Message(ChatMessage { moderation: Some(md), from, .. }) => {
                        let text = move || {
                            let s = t();
                            let d = match md.seconds {
                                0 => String::new(),
                                n => (s.duration)(n),
                            };
                            (s.moderation)(&from, md.action, md.name.as_deref().unwrap_or_default(), &d)
                        };
                        EitherOf5::B(view! { <div class="notice moderation" data-testid="moderation" data-key=key>{text}</div> })
                    }
                    Item::Message(m) => {
                        let seq = m.seq;
                        let ts = m.ts;
                        let mine = {
                            let from = m.from.clone();
                            move || me.get().as_deref() == Some(from.as_str())
                        };
                        let look = Memo::new(move |_| looks.with(|l| l.get(&seq).copied().unwrap_or_default()));
                        // As edited or deleted since, if it was.
                        let change = Memo::new(move |_| changes.with(|c| c.get(&seq).cloned()));
                        let deleted = move || change.with(|c| c.as_ref().is_some_and(|c| c.deleted));
                        let body = {
                            let original = m.text.clone();
                            move || match change.get() {
                                Some(Changed { deleted: true, by_moderator, .. }) => EitherOf3::A(view! {
                                    <p class="text deleted" data-testid="deleted">
                                        {move || match by_moderator {
                                            true => t().deleted_by_moderator,
                                            false => t().message_deleted,
                                        }}
                                    </p>
                                }),
                                Some(Changed { text, .. }) => EitherOf3::B(view! {
                                    <div class="text">{markup::render(markup::parse(&text))}</div>
                                    <span class="edited" data-testid="edited">{move || t().edited}</span>
                                }),
                                None => EitherOf3::C(view! {
                                    <div class="text">{markup::render(markup::parse(&original))}</div>
                                }),
                            }
                        };
                        let changeable = {
                            let m = m.clone();
                            Memo::new(move |_| model.with(|md| md.may_change(&m, reading::wall_ms())))
                        };
                        let deletable = {
                            let m = m.clone();
                            Memo::new(move |_| model.with(|md| md.may_delete(&m, reading::wall_ms())))
                        };
                        let mentioned = {
                            let (from, text) = (m.from.clone(), m.text.clone());
                            move || me.with(|me| mention::names_reader(&text, &from, me.as_deref()))
                        };
                        let tag = move || lang.get().tag();
                        // When it was said, in full and how long ago: worked out as the pointer
                        // comes over it (hover), or held down on it (a long press on a phone).
                        let when = RwSignal::new(String::new());
                        let show_when = RwSignal::new(false);
                        let press = StoredValue::new(None::<TimeoutHandle>);
                        let release = move || {
                            if let Some(handle) = press.get_value() {
                                handle.clear();
                                press.set_value(None);
                            }
                        };
                        let on_down = move |ev: ev::PointerEvent| {
                            release();
                            if show_when.get_untracked() {
                                show_when.set(false);
                            } else if ev.pointer_type() == "touch" {
                                let handle = set_timeout_with_handle(
                                    move || {
                                        when.set(reading::when(ts, lang.get_untracked().tag()));
                                        show_when.set(true);
                                    },
                                    LONG_PRESS,
                                );
                                press.set_value(handle.ok());
                            }
                        };
                        let view = view! {
                            <Show when=move || look.get().new_day>
                                <div class="day" data-testid="day">
                                    <span>{move || reading::day_label(ts, tag(), t().today, t().yesterday)}</span>
                                </div>
                            </Show>
                            <Show when=move || first_unread.get() == Some(seq)>
                                <div class="divider" role="separator" data-testid="new-divider">
                                    <span>{move || t().new_messages}</span>
                                </div>
                            </Show>
                            <div
                                class="message"
                                class:mine=mine
                                class:grouped=move || look.get().grouped
                                class:mention=mentioned
                                data-testid="message"
                                data-key=key
                                title=move || when.get()
                                on:pointerenter=move |_| when.set(reading::when(ts, lang.get_untracked().tag()))
                                on:pointerdown=on_down
                                on:pointerup=move |_| release()
                                on:pointercancel=move |_| release()
                            >
                                <span class=format!("from {}", reading::name_class(&m.from))>{m.from.clone()}</span>
                                <time class="ts">{move || reading::time_of_day(ts, tag())}</time>
                                <Show when=move || deletable.get() && !deleted()>
                                    <span class="actions">
                                        <Show when=move || changeable.get()>
                                            <button type="button" class="act" data-testid="edit" on:click=move |_| client::act(model, |md| md.start_edit(seq))>
                                                {move || t().edit}
                                            </button>
                                        </Show>
                                        <button type="button" class="act" data-testid="delete" on:click=move |_| client::act(model, |md| md.delete(seq))>
                                            {move || t().delete}
                                        </button>
                                    </span>
                                </Show>
                                <Show when=move || show_when.get()>
                                    <span class="when" data-testid="when" role="status">{move || when.get()}</span>
                                </Show>
                                {body}
                            </div>
                        };
                        EitherOf5::C(view)
                    }
                    Item::Notice { kind, names, old_name, .. } => {
                        let text = move || {
                            let s = t();
                            let first = names.first().map_or("?", String::as_str);
                            let (joined, left) = match names.get(1) {
                                None => ((s.notice_joined)(first), (s.notice_left)(first)),
                                Some(second) => {
                                    let others = names.len() - 2;
                                    (
                                        (s.notice_joined_many)(first, second, others),
                                        (s.notice_left_many)(first, second, others),
                                    )
                                }
                            };
                            match kind {
                                NoticeKind::Joined => joined,
                                NoticeKind::Left => left,
                                NoticeKind::Renamed => {
                                    (s.notice_renamed)(old_name.as_deref().unwrap_or("?"), first)
                                }
                            }
                        };
                        EitherOf5::D(view! { <div class="notice" data-testid="notice" data-key=key>{text}</div> })
                    }
                    Item::Gap { .. } => EitherOf5::E(view! {
                        <div class="notice gap" data-testid="gap" role="status" data-key=key>
                            {move || t().gap}
                        </div>
                    }),
                }}
            </For>
            </div>
            // Sent, not yet acknowledged: shown as sending until the server has stored them.
            <div class="outgoing">
            <For each=move || pending.get() key=|p| p.client_id.clone() let:p>
                {
                    let state = {
                        let id = p.client_id.clone();
                        Memo::new(move |_| {
                            model.with(|m| {
                                let now = m.pending.iter().find(|x| x.client_id == id);
                                now.map_or(SendState::Sending, |p| m.send_state(p))
                            })
                        })
                    };
                    view! {
                        <div
                            class="message mine pending"
                            class:failed=move || state.get() == SendState::Failed
                            data-testid="pending"
                            data-state=move || format!("{:?}", state.get())
                        >
                            <span class="from">{move || author.get().unwrap_or_default()}</span>
                            <span class="ts">
                                {move || match state.get() {
                                    SendState::Queued => t().queued,
                                    SendState::Sending => t().sending,
                                    SendState::Failed => t().not_sent,
                                }}
                            </span>
                            <Show when=move || state.get() == SendState::Failed>
                                <TryNow model class="retry-send" label=|s| s.retry />
                            </Show>
                            <div class="text">{markup::render(markup::parse(&p.text))}</div>
                        </div>
                    }
                }
            </For>
            </div>
            <Show when=move || { !follow.get() && unseen.get() > 0 }>
                <button type="button" class="jump" data-testid="jump-new" on:click=move |_| to_newest()>
                    {move || (t().new_below)(unseen.get())}
                </button>
            </Show>
        </div>
    }
}

/// Who is typing: "Ann is typing…", "Ann and Bo are typing…", "Several people are typing…".
/// Always there, one line high, so the conversation does not move when it changes; not read
/// out as it changes (it would talk over the messages), but there to read.
#[component]
fn TypingLine(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let typists = Memo::new(move |_| model.with(|m| m.typists.clone()));
    // Each time someone is heard typing, look again once they would have stopped.
    Effect::new(move |_| {
        typists.track();
        set_timeout(
            move || client::act(model, Model::expire_typing),
            std::time::Duration::from_millis(crate::protocol::TYPING_SHOWN_MS + 100),
        );
    });
    let text = move || match typists.with(Typists::line) {
        Typing::Nobody => String::new(),
        Typing::One(a) => (t().typing_one)(&a),
        Typing::Two(a, b) => (t().typing_two)(&a, &b),
        Typing::Several => t().typing_several.to_owned(),
    };
    view! { <p class="typing" data-testid="typing">{text}</p> }
}

/// The room's rules as they touch the reader, above the composer: how long until slow mode,
/// a mute or a removal lets them write (counting down), that slow mode is on, or that they
/// moderate here.
#[component]
fn RoomRules(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let held = Memo::new(move |_| model.with(Model::held));
    // Counts down: the model looks at the clock again each second while something holds.
    Effect::new(move |_| {
        if held.get().is_some() {
            set_timeout(
                move || client::act(model, |_| Vec::new()),
                std::time::Duration::from_secs(1),
            );
        }
    });
    let rules = Memo::new(move |_| model.with(|m| (m.slow_mode_s, m.moderator)));
    let line = move || {
        let s = t();
        match (held.get(), rules.get()) {
            (Some((hold, left)), _) => {
                let code = match hold {
                    Hold::Slow => ErrorCode::SlowMode,
                    Hold::Muted => ErrorCode::Muted,
                    Hold::Kicked => ErrorCode::Kicked,
                };
                Some((s.hold)(code, &(s.duration)(left)))
            }
            (None, (_, true)) => Some(s.moderator.to_owned()),
            (None, (slow, false)) if slow > 0 => Some((s.slow_mode_on)(&(s.duration)(slow))),
            _ => None,
        }
    };
    view! {
        <Show when=move || line().is_some()>
            <p class="rules" data-testid="rules" role="status">{line}</p>
        </Show>
    }
}

#[component]
fn Composer(model: RwSignal<Model>) -> impl IntoView {
    let t = use_strings();
    let input = NodeRef::<html::Textarea>::new();
    // Open once a name was ours, also while the link is down: what is sent then waits.
    let can_send = Memo::new(move |_| model.with(|m| m.can_compose()));
    // Closed by a moderator (muted, or out of the room), not for want of a name.
    let silenced = Memo::new(move |_| {
        model.with(|m| matches!(m.held(), Some((Hold::Muted | Hold::Kicked, _))))
    });
    // The room's draft is kept as it is typed, and is there again after a reload.
    let draft_key = StoredValue::new(client::draft_key(&model.with_untracked(|m| m.room.clone())));
    let keep_draft = move |text: &str| draft_key.with_value(|key| client::storage_set(key, text));
    Effect::new(move |_| {
        let draft = draft_key.with_value(|key| client::storage_get(key));
        if let (Some(el), Some(draft)) = (input.get(), draft)
            && el.value().is_empty()
        {
            el.set_value(&draft);
        }
    });
    // Editing one of the reader's messages: the composer holds its text meanwhile, and the
    // draft comes back after.
    let editing = Memo::new(move |_| model.with(|m| m.editing));
    let kept_draft = StoredValue::new(None::<String>);
    Effect::new(move |was: Option<Option<u64>>| {
        let now = editing.get();
        let Some(el) = input.get() else { return now };
        match (was.flatten(), now) {
            (_, Some(seq)) if was.flatten() != Some(seq) => {
                if kept_draft.with_value(Option::is_none) {
                    kept_draft.set_value(Some(el.value()));
                }
                el.set_value(&model.with_untracked(|m| m.text_of(seq)).unwrap_or_default());
                let _ = el.focus();
            }
            (Some(_), None) => {
                el.set_value(&kept_draft.with_value(|d| d.clone()).unwrap_or_default());
                kept_draft.set_value(None);
            }
            _ => {}
        }
        now
    });
    let submit = move || {
        let Some(el) = input.get() else { return };
        let text = el.value();
        if editing.get_untracked().is_some() {
            client::act(model, |m| m.save_edit(&text));
            return;
        }
        let mut accepted = false;
        client::act(model, |m| {
            let frames = m.compose(&text, client::random_id());
            accepted = frames.is_some();
            frames.unwrap_or_default()
        });
        if accepted {
            el.set_value("");
            keep_draft("");
        }
    };
    // Names offered after an `@` just before the caret, and the one the arrows are on.
    let suggest = RwSignal::new(Vec::<String>::new());
    let active = RwSignal::new(0usize);
    let caret = move |el: &leptos::web_sys::HtmlTextAreaElement, text: &str| {
        let units = el.selection_start().ok().flatten().unwrap_or_default();
        mention::byte_offset(text, units as usize)
    };
    let close_suggest = move || {
        if !suggest.with_untracked(Vec::is_empty) {
            suggest.set(Vec::new());
        }
    };
    let look_for_names = move || {
        let Some(el) = input.get_untracked() else {
            return;
        };
        let text = el.value();
        let before = &text[..caret(&el, &text)];
        let names = mention::at_caret(before).map(|(_, prefix)| {
            // In a big room, the server is asked too; its answer offers again (below).
            client::act_quietly(model, |m| m.look_up(prefix));
            model.with_untracked(|m| m.offer(prefix))
        });
        match names {
            Some(names) if !names.is_empty() => {
                active.set(0);
                suggest.set(names);
            }
            _ => close_suggest(),
        }
    };
    // Names the server found for what is typed after `@`: offered as they come.
    let found = Memo::new(move |_| model.with(|m| m.found().to_vec()));
    Effect::new(move |prev: Option<()>| {
        // Read, not only tracked: a memo nobody reads is not looked at again.
        found.with(|_| ());
        // Not on the first run: nothing was asked yet.
        if prev.is_some() {
            look_for_names();
        }
    });
    let pick = move |name: &str| {
        let Some(el) = input.get_untracked() else {
            return;
        };
        let text = el.value();
        // Where the `@` is now: the caret may have moved since the names were offered.
        let end = caret(&el, &text);
        let Some((start, _)) = mention::at_caret(&text[..end]) else {
            close_suggest();
            return;
        };
        let (done, end) = mention::complete(&text, start, end, name);
        el.set_value(&done);
        let end = mention::utf16_offset(&done, end) as u32;
        let _ = el.set_selection_range(end, end);
        keep_draft(&done);
        close_suggest();
    };
    let on_key = move |ev: ev::KeyboardEvent| {
        let offered = suggest.with_untracked(Vec::len);
        if offered > 0 && !ev.is_composing() {
            let key = ev.key();
            match key.as_str() {
                "ArrowDown" | "ArrowUp" => {
                    ev.prevent_default();
                    let step = if key == "ArrowDown" { 1 } else { offered - 1 };
                    active.update(|i| *i = (*i + step) % offered);
                    return;
                }
                "Enter" | "Tab" if !ev.shift_key() => {
                    ev.prevent_default();
                    let name = suggest.with_untracked(|s| s.get(active.get_untracked()).cloned());
                    if let Some(name) = name {
                        pick(&name);
                    }
                    return;
                }
                "Escape" => {
                    ev.prevent_default();
                    close_suggest();
                    return;
                }
                _ => {}
            }
        }
        if ev.key() == "Escape" && editing.get_untracked().is_some() {
            ev.prevent_default();
            client::act(model, Model::cancel_edit);
            return;
        }
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            submit();
        }
    };
    let offering = move || !suggest.with(Vec::is_empty);
    view! {
        <Show when=move || editing.get().is_some()>
            <div class="editing-bar" data-testid="editing">
                <span>{move || t().editing}</span>
                <button type="button" data-testid="cancel-edit" on:click=move |_| client::act(model, Model::cancel_edit)>
                    {move || t().cancel}
                </button>
            </div>
        </Show>
        <form class="composer" on:submit=move |ev: ev::SubmitEvent| {
            ev.prevent_default();
            submit();
        }>
            <textarea
                node_ref=input
                data-testid="composer"
                aria-label=move || t().composer_label
                rows="2"
                placeholder=move || {
                    if can_send.get() {
                        t().composer_placeholder
                    } else if silenced.get() {
                        // The rules line above says why and for how long.
                        ""
                    } else {
                        t().composer_placeholder_no_name
                    }
                }
                disabled=move || !can_send.get()
                on:keydown=on_key
                on:input=move |ev| {
                    let text = event_target_value(&ev);
                    if editing.get_untracked().is_none() {
                        keep_draft(&text);
                        client::act_quietly(model, |m| m.typed(&text));
                    }
                    look_for_names();
                }
                on:click=move |_| look_for_names()
                on:blur=move |_| close_suggest()
                aria-autocomplete="list"
                aria-controls=move || offering().then_some("mention-list")
                aria-activedescendant=move || offering().then(|| format!("mention-{}", active.get()))
            ></textarea>
            <button type="submit" data-testid="send" disabled=move || !can_send.get()>
                {move || t().send}
            </button>
            <Show when=offering>
                <ul class="suggest" role="listbox" id="mention-list" data-testid="suggest" aria-label=move || t().mention_label>
                    <For
                        each=move || suggest.get().into_iter().enumerate()
                        key=|(i, name)| format!("{i}\n{name}")
                        let:((i, name))
                    >
                        <li
                            role="option"
                            id=format!("mention-{i}")
                            class:active=move || active.get() == i
                            aria-selected=move || (active.get() == i).to_string()
                            // Before the composer's blur, which would close the list.
                            on:mousedown={
                                let name = name.clone();
                                move |ev: ev::MouseEvent| {
                                    ev.prevent_default();
                                    pick(&name);
                                }
                            }
                        >
                            <span class=reading::name_class(&name)>{name.clone()}</span>
                        </li>
                    </For>
                </ul>
            </Show>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_shows_its_page() {
        assert_eq!(Page::for_path("/"), Page::Chat(DEFAULT_ROOM.to_owned()));
        assert_eq!(
            Page::for_path("/r/rust-fans"),
            Page::Chat("rust-fans".into())
        );
        assert_eq!(Page::for_path("/status"), Page::Status);
        assert!(matches!(Page::for_path("/r/Bad%20Room"), Page::BadRoom(_)));
        for path in ["", "/r/", "/r/a/b", "/nope", "/status/x", "/rooms/lobby"] {
            assert_eq!(Page::for_path(path), Page::NotFound, "{path}");
        }
    }
}
