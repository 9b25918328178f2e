//! Every string the UI shows, in one place, per language.
//!
//! A struct with one field per string (rather than a key → text map) makes a missing translation a
//! compile error. Strings that embed a value are functions.

use crate::protocol::{ErrorCode, ModAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhHans,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::ZhHans, Lang::Ja];

    /// The BCP 47 tag, for `<html lang>` and storage.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHans => "zh-Hans",
            Lang::Ja => "ja",
        }
    }

    /// The language's own name, as shown in the switcher.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhHans => "简体中文",
            Lang::Ja => "日本語",
        }
    }

    /// Picks a supported language for a browser language tag such as `zh-CN` or `ja-JP`.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let tag = tag.to_ascii_lowercase();
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        match primary {
            "en" => Some(Lang::En),
            // Traditional-script tags are not served by this translation.
            "zh" if !(tag.contains("hant") || tag.ends_with("-tw") || tag.ends_with("-hk")) => {
                Some(Lang::ZhHans)
            }
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The supported language a browser prefers most, from its `Accept-Language` header
    /// (`ja,en-US;q=0.9,en;q=0.8`): entries by falling `q`, the first one supported.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut wanted: Vec<(f32, usize, &str)> = header
            .split(',')
            .enumerate()
            .filter_map(|(i, entry)| {
                let mut parts = entry.split(';');
                let tag = parts.next()?.trim();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (q > 0.0 && !tag.is_empty()).then_some((q, i, tag))
            })
            .collect();
        // Highest q first; equal q in the header's order.
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        wanted
            .into_iter()
            .find_map(|(_, _, tag)| Lang::from_tag(tag))
    }

    /// The cookie that carries a visitor's choice to the server, so the first byte is in it.
    pub const COOKIE: &'static str = "chorus_lang";

    /// The language a page is rendered in: the visitor's remembered choice (the cookie), else
    /// the browser's preference, else English.
    pub fn for_request(cookie_header: Option<&str>, accept_language: Option<&str>) -> Lang {
        let chosen = cookie_header
            .and_then(|cookies| cookie(cookies, Self::COOKIE))
            .and_then(Lang::from_tag);
        chosen
            .or_else(|| accept_language.and_then(Lang::from_accept_language))
            .unwrap_or_default()
    }

    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::ZhHans => &ZH_HANS,
            Lang::Ja => &JA,
        }
    }
}

/// The value of the cookie `name` in a request's `Cookie` header (`a=1; b=2`), if there.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|c| {
        let (key, value) = c.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

pub struct Strings {
    pub app_title: &'static str,
    pub room_label: &'static str,
    pub status_connecting: &'static str,
    pub status_online: &'static str,
    pub status_reconnecting: &'static str,
    /// When the next try is, beside "Reconnecting…".
    pub reconnect_in: fn(u32) -> String,
    pub retry_now: &'static str,
    pub status_offline: &'static str,
    pub language_label: &'static str,
    pub name_label: &'static str,
    pub name_placeholder: &'static str,
    pub name_submit: &'static str,
    pub name_change: &'static str,
    pub rename_submit: &'static str,
    pub signed_in_as: &'static str,
    pub composer_placeholder: &'static str,
    /// The composer's accessible name.
    pub composer_label: &'static str,
    /// The conversation's (messages and composer) accessible name.
    pub conversation_label: &'static str,
    pub composer_placeholder_no_name: &'static str,
    pub send: &'static str,
    pub members_heading: &'static str,
    pub you: &'static str,
    pub no_messages: &'static str,
    pub gap: &'static str,
    pub show_older: &'static str,
    /// The divider before the first message that came while the reader was away.
    pub new_messages: &'static str,
    /// Day separators for the last two days; older days are written by the browser.
    pub today: &'static str,
    pub yesterday: &'static str,
    /// Who is typing: one name, two, or more.
    pub typing_one: fn(&str) -> String,
    pub typing_two: fn(&str, &str) -> String,
    pub typing_several: &'static str,
    /// The per-room notification choice, and its options.
    pub notify_label: &'static str,
    pub notify_all: &'static str,
    pub notify_mentions: &'static str,
    pub notify_nothing: &'static str,
    /// The names offered after an `@` in the composer.
    pub mention_label: &'static str,
    /// Editing and deleting one's own messages.
    pub edit: &'static str,
    pub delete: &'static str,
    pub edited: &'static str,
    pub message_deleted: &'static str,
    pub deleted_by_moderator: &'static str,
    /// A length of time, from seconds: "30 s", "10 min", "2 h".
    pub duration: fn(u64) -> String,
    /// A moderator's action, as a notice: who did it, what, to whom, for how long (written
    /// by `duration`; empty when it ends something).
    pub moderation: fn(&str, ModAction, &str, &str) -> String,
    /// What holds the composer (`slow_mode`, `muted` or `kicked`), for how much longer.
    pub hold: fn(ErrorCode, &str) -> String,
    /// Slow mode is on: one message per this long.
    pub slow_mode_on: fn(&str) -> String,
    pub moderator: &'static str,
    /// The rooms the page is in, joining another, leaving one.
    pub rooms_heading: &'static str,
    pub join_room_label: &'static str,
    pub join_room_placeholder: &'static str,
    pub join_room_submit: &'static str,
    pub leave_room: fn(&str) -> String,
    pub unread_label: fn(usize) -> String,
    pub mentioned: &'static str,
    pub editing: &'static str,
    pub cancel: &'static str,
    /// The colour-scheme switch's name.
    pub dark_mode: &'static str,
    /// The button that scrolls down to messages that came while the reader was scrolled up.
    pub new_below: fn(usize) -> String,
    pub loading_older: &'static str,
    /// Where the room's stored history begins: at its first message, or where older ones
    /// were let go.
    pub history_begins: &'static str,
    pub history_trimmed: &'static str,
    pub sending: &'static str,
    /// A message waiting for the link (or for its turn).
    pub queued: &'static str,
    /// A message the server has not acknowledged after several tries.
    pub not_sent: &'static str,
    pub retry: &'static str,
    pub dismiss: &'static str,
    pub not_found: &'static str,
    pub back_to_lobby: &'static str,
    pub notice_joined: fn(&str) -> String,
    pub notice_left: fn(&str) -> String,
    /// Two names and how many others, for notices folded together.
    pub notice_joined_many: fn(&str, &str, usize) -> String,
    pub notice_left_many: fn(&str, &str, usize) -> String,
    pub notice_renamed: fn(&str, &str) -> String,
    /// Below a big room's first page of members: how many more there are.
    pub more_members: fn(usize) -> String,
    pub error: fn(ErrorCode) -> &'static str,
}

pub static EN: Strings = Strings {
    app_title: "Chorus",
    room_label: "Room",
    status_connecting: "Connecting…",
    status_online: "Online",
    status_reconnecting: "Reconnecting…",
    reconnect_in: |n| format!("in {n} s"),
    retry_now: "Retry now",
    status_offline: "Offline",
    language_label: "Language",
    name_label: "Your name",
    name_placeholder: "Pick a name",
    name_submit: "Join",
    name_change: "Change name",
    rename_submit: "Rename",
    signed_in_as: "You are",
    composer_placeholder: "Write a message — Enter sends",
    composer_label: "Message",
    conversation_label: "Conversation",
    composer_placeholder_no_name: "Pick a name to start chatting",
    send: "Send",
    members_heading: "Online",
    you: "(you)",
    no_messages: "No messages yet. Say hello!",
    gap: "Some messages from while you were away could not be recovered; the recent ones are below.",
    show_older: "Show older messages",
    new_messages: "New messages",
    today: "Today",
    yesterday: "Yesterday",
    dark_mode: "Dark mode",
    edit: "Edit",
    delete: "Delete",
    edited: "(edited)",
    message_deleted: "This message was deleted.",
    deleted_by_moderator: "This message was deleted by a moderator.",
    duration: |s| match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h", s.div_ceil(3600)),
    },
    moderation: |by, action, name, d| match (action, d.is_empty()) {
        (ModAction::Mute, false) => format!("{by} muted {name} for {d}"),
        (ModAction::Mute, true) => format!("{by} let {name} speak again"),
        (ModAction::Kick, _) => format!("{by} removed {name} from the room for {d}"),
        (ModAction::SlowMode, false) => format!("{by} turned on slow mode: one message every {d}"),
        (ModAction::SlowMode, true) => format!("{by} turned off slow mode"),
        (ModAction::Delete, _) => format!("{by} deleted a message by {name}"),
    },
    hold: |code, d| match code {
        ErrorCode::Muted => format!("A moderator muted you here for {d}."),
        ErrorCode::Kicked => {
            format!("A moderator removed you from this room. You can come back in {d}.")
        }
        _ => format!("Slow mode: you can send again in {d}."),
    },
    slow_mode_on: |d| format!("Slow mode: one message every {d}."),
    moderator: "You are a moderator here: /mute, /unmute, /kick, /slow",
    rooms_heading: "Rooms",
    join_room_label: "Join a room",
    join_room_placeholder: "room name",
    join_room_submit: "Open",
    leave_room: |r| format!("Leave #{r}"),
    unread_label: |n| match n {
        1 => "1 unread message".to_owned(),
        n => format!("{n} unread messages"),
    },
    mentioned: "You were mentioned",
    editing: "Editing your message — Enter saves, Esc cancels",
    cancel: "Cancel",
    notify_label: "Notify me of",
    notify_all: "Every message",
    notify_mentions: "Mentions of me",
    notify_nothing: "Nothing",
    mention_label: "People to mention",
    typing_one: |a| format!("{a} is typing…"),
    typing_two: |a, b| format!("{a} and {b} are typing…"),
    typing_several: "Several people are typing…",
    new_below: |n| match n {
        1 => "1 new message ↓".to_owned(),
        n => format!("{n} new messages ↓"),
    },
    loading_older: "Loading older messages…",
    history_begins: "This is the beginning of the room.",
    history_trimmed: "Older messages are no longer kept.",
    sending: "sending…",
    queued: "waiting to send",
    not_sent: "not sent yet",
    retry: "Retry",
    dismiss: "Dismiss",
    not_found: "There is no such page.",
    back_to_lobby: "Go to the lobby",
    notice_joined: |n| format!("{n} joined"),
    notice_left: |n| format!("{n} left"),
    notice_joined_many: |a, b, others| match others {
        0 => format!("{a} and {b} joined"),
        1 => format!("{a}, {b} and 1 other joined"),
        n => format!("{a}, {b} and {n} others joined"),
    },
    notice_left_many: |a, b, others| match others {
        0 => format!("{a} and {b} left"),
        1 => format!("{a}, {b} and 1 other left"),
        n => format!("{a}, {b} and {n} others left"),
    },
    notice_renamed: |old, new| format!("{old} is now {new}"),
    more_members: |n| format!("and {n} more"),
    error: |code| match code {
        ErrorCode::NameRequired => "Pick a name first.",
        ErrorCode::NameTaken => "That name is taken by someone online. Pick another.",
        ErrorCode::InvalidName => {
            "Names have 1 to 32 characters and no control or invisible characters."
        }
        ErrorCode::InvalidRoom => "Room names use only letters a–z, digits, - and _.",
        ErrorCode::EmptyText => "The message is empty.",
        ErrorCode::TooLong => "The message is too long; nothing was sent.",
        ErrorCode::NotInRoom => "You are not in this room yet.",
        ErrorCode::TooManyRooms => "Too many rooms open.",
        ErrorCode::Internal => "The server could not do that. Try again.",
        ErrorCode::RateLimited => "A little slower, please: your message goes out in a moment.",
        ErrorCode::TokenExpired => {
            "Your sign-in has expired: reload the page from the site you came from."
        }
        ErrorCode::TokenRequired | ErrorCode::InvalidToken => {
            "This chat needs you to come from the site that signs you in."
        }
        ErrorCode::NameBound => "Your name comes from your sign-in and cannot be changed here.",
        ErrorCode::NotYours => "That message is someone else's.",
        ErrorCode::EditWindowPassed => "That message is too old to change.",
        ErrorCode::NotModerator => "Only moderators can do that.",
        ErrorCode::NoSuchMessage => "That message is no longer kept.",
        _ => "The server refused that request.",
    },
};

pub static ZH_HANS: Strings = Strings {
    app_title: "Chorus",
    room_label: "房间",
    status_connecting: "正在连接…",
    status_online: "在线",
    status_reconnecting: "正在重新连接…",
    reconnect_in: |n| format!("{n} 秒后"),
    retry_now: "立即重试",
    status_offline: "离线",
    language_label: "语言",
    name_label: "你的名字",
    name_placeholder: "起个名字",
    name_submit: "加入",
    name_change: "改名",
    rename_submit: "更改",
    signed_in_as: "你是",
    composer_placeholder: "输入消息 — 按 Enter 发送",
    composer_label: "消息",
    conversation_label: "对话",
    composer_placeholder_no_name: "先起个名字再聊天",
    send: "发送",
    members_heading: "在线",
    you: "（你）",
    no_messages: "还没有消息。打个招呼吧！",
    gap: "离线期间的部分消息无法恢复；以下是最近的消息。",
    show_older: "显示更早的消息",
    new_messages: "新消息",
    today: "今天",
    yesterday: "昨天",
    dark_mode: "深色模式",
    edit: "编辑",
    delete: "删除",
    edited: "（已编辑）",
    message_deleted: "此消息已删除。",
    deleted_by_moderator: "此消息已被管理员删除。",
    duration: |s| match s {
        0..120 => format!("{s} 秒"),
        120..7200 => format!("{} 分钟", s.div_ceil(60)),
        _ => format!("{} 小时", s.div_ceil(3600)),
    },
    moderation: |by, action, name, d| match (action, d.is_empty()) {
        (ModAction::Mute, false) => format!("{by} 已将 {name} 禁言 {d}"),
        (ModAction::Mute, true) => format!("{by} 已解除 {name} 的禁言"),
        (ModAction::Kick, _) => format!("{by} 已将 {name} 移出房间 {d}"),
        (ModAction::SlowMode, false) => format!("{by} 开启了慢速模式：每 {d} 一条消息"),
        (ModAction::SlowMode, true) => format!("{by} 关闭了慢速模式"),
        (ModAction::Delete, _) => format!("{by} 删除了 {name} 的一条消息"),
    },
    hold: |code, d| match code {
        ErrorCode::Muted => format!("管理员已将你在此禁言，剩余 {d}。"),
        ErrorCode::Kicked => format!("管理员已将你移出此房间，{d}后可以回来。"),
        _ => format!("慢速模式：{d}后可以再发送。"),
    },
    slow_mode_on: |d| format!("慢速模式：每 {d} 一条消息。"),
    moderator: "你是这里的管理员：/mute、/unmute、/kick、/slow",
    rooms_heading: "房间",
    join_room_label: "加入房间",
    join_room_placeholder: "房间名",
    join_room_submit: "打开",
    leave_room: |r| format!("离开 #{r}"),
    unread_label: |n| format!("{n} 条未读消息"),
    mentioned: "有人提到了你",
    editing: "正在编辑你的消息 — Enter 保存，Esc 取消",
    cancel: "取消",
    notify_label: "通知我",
    notify_all: "所有消息",
    notify_mentions: "提及我的消息",
    notify_nothing: "不通知",
    mention_label: "可提及的人",
    typing_one: |a| format!("{a} 正在输入…"),
    typing_two: |a, b| format!("{a} 和 {b} 正在输入…"),
    typing_several: "多人正在输入…",
    new_below: |n| format!("{n} 条新消息 ↓"),
    loading_older: "正在加载更早的消息…",
    history_begins: "这是房间的第一条消息。",
    history_trimmed: "更早的消息已不再保留。",
    sending: "发送中…",
    queued: "等待发送",
    not_sent: "尚未发出",
    retry: "重试",
    dismiss: "关闭",
    not_found: "没有这个页面。",
    back_to_lobby: "前往大厅",
    notice_joined: |n| format!("{n} 加入了"),
    notice_left: |n| format!("{n} 离开了"),
    notice_joined_many: |a, b, others| match others {
        0 => format!("{a} 和 {b} 加入了"),
        n => format!("{a}、{b} 等 {} 人加入了", n + 2),
    },
    notice_left_many: |a, b, others| match others {
        0 => format!("{a} 和 {b} 离开了"),
        n => format!("{a}、{b} 等 {} 人离开了", n + 2),
    },
    notice_renamed: |old, new| format!("{old} 改名为 {new}"),
    more_members: |n| format!("还有 {n} 人"),
    error: |code| match code {
        ErrorCode::NameRequired => "请先起个名字。",
        ErrorCode::NameTaken => "这个名字已被在线用户使用，请换一个。",
        ErrorCode::InvalidName => "名字为 1 到 32 个字符，且不能含控制字符或不可见字符。",
        ErrorCode::InvalidRoom => "房间名只能使用字母 a–z、数字、- 和 _。",
        ErrorCode::EmptyText => "消息是空的。",
        ErrorCode::TooLong => "消息太长，未发送。",
        ErrorCode::NotInRoom => "你还没有进入这个房间。",
        ErrorCode::TooManyRooms => "打开的房间太多。",
        ErrorCode::Internal => "服务器暂时无法完成，请重试。",
        ErrorCode::NotYours => "那是别人的消息。",
        ErrorCode::EditWindowPassed => "那条消息太久了，不能再更改。",
        ErrorCode::NotModerator => "只有管理员可以这样做。",
        ErrorCode::NoSuchMessage => "那条消息已不再保留。",
        ErrorCode::RateLimited => "请稍慢一点：你的消息马上就会发出。",
        _ => "服务器拒绝了该请求。",
    },
};

pub static JA: Strings = Strings {
    app_title: "Chorus",
    room_label: "ルーム",
    status_connecting: "接続中…",
    status_online: "オンライン",
    status_reconnecting: "再接続中…",
    reconnect_in: |n| format!("{n} 秒後"),
    retry_now: "今すぐ再試行",
    status_offline: "オフライン",
    language_label: "言語",
    name_label: "名前",
    name_placeholder: "名前を入力",
    name_submit: "参加",
    name_change: "名前を変更",
    rename_submit: "変更",
    signed_in_as: "あなた:",
    composer_placeholder: "メッセージを入力 — Enter で送信",
    composer_label: "メッセージ",
    conversation_label: "会話",
    composer_placeholder_no_name: "チャットするには名前を決めてください",
    send: "送信",
    members_heading: "オンライン",
    you: "（あなた）",
    no_messages: "まだメッセージはありません。挨拶してみましょう！",
    gap: "離れていた間のメッセージの一部を復元できませんでした。最近のメッセージを以下に表示します。",
    show_older: "以前のメッセージを表示",
    new_messages: "新着メッセージ",
    today: "今日",
    yesterday: "昨日",
    dark_mode: "ダークモード",
    edit: "編集",
    delete: "削除",
    edited: "（編集済み）",
    message_deleted: "このメッセージは削除されました。",
    deleted_by_moderator: "このメッセージはモデレーターが削除しました。",
    duration: |s| match s {
        0..120 => format!("{s} 秒"),
        120..7200 => format!("{} 分", s.div_ceil(60)),
        _ => format!("{} 時間", s.div_ceil(3600)),
    },
    moderation: |by, action, name, d| match (action, d.is_empty()) {
        (ModAction::Mute, false) => format!("{by} が {name} を {d} ミュートしました"),
        (ModAction::Mute, true) => format!("{by} が {name} のミュートを解除しました"),
        (ModAction::Kick, _) => format!("{by} が {name} をルームから {d} 退出させました"),
        (ModAction::SlowMode, false) => format!("{by} がスローモードにしました：{d} に 1 件まで"),
        (ModAction::SlowMode, true) => format!("{by} がスローモードを解除しました"),
        (ModAction::Delete, _) => format!("{by} が {name} のメッセージを削除しました"),
    },
    hold: |code, d| match code {
        ErrorCode::Muted => format!("モデレーターによりここでミュートされています（残り {d}）。"),
        ErrorCode::Kicked => {
            format!("モデレーターによりこのルームから退出させられました。{d} 後に戻れます。")
        }
        _ => format!("スローモード：あと {d} で送信できます。"),
    },
    slow_mode_on: |d| format!("スローモード：{d} に 1 件まで。"),
    moderator: "ここではモデレーターです：/mute、/unmute、/kick、/slow",
    rooms_heading: "ルーム",
    join_room_label: "ルームに参加",
    join_room_placeholder: "ルーム名",
    join_room_submit: "開く",
    leave_room: |r| format!("#{r} から退出"),
    unread_label: |n| format!("未読 {n} 件"),
    mentioned: "あなたへのメンションがあります",
    editing: "メッセージを編集中 — Enter で保存、Esc で取消",
    cancel: "キャンセル",
    notify_label: "通知",
    notify_all: "すべてのメッセージ",
    notify_mentions: "自分へのメンション",
    notify_nothing: "通知しない",
    mention_label: "メンションする相手",
    typing_one: |a| format!("{a} さんが入力中…"),
    typing_two: |a, b| format!("{a} さんと {b} さんが入力中…"),
    typing_several: "複数の人が入力中…",
    new_below: |n| format!("新着 {n} 件 ↓"),
    loading_older: "以前のメッセージを読み込み中…",
    history_begins: "ここがこのルームの始まりです。",
    history_trimmed: "これより前のメッセージは保存されていません。",
    sending: "送信中…",
    queued: "送信待ち",
    not_sent: "未送信",
    retry: "再送",
    dismiss: "閉じる",
    not_found: "このページはありません。",
    back_to_lobby: "ロビーへ",
    notice_joined: |n| format!("{n} さんが参加しました"),
    notice_left: |n| format!("{n} さんが退出しました"),
    notice_joined_many: |a, b, others| match others {
        0 => format!("{a} さんと {b} さんが参加しました"),
        n => format!("{a} さん、{b} さんほか {n} 人が参加しました"),
    },
    notice_left_many: |a, b, others| match others {
        0 => format!("{a} さんと {b} さんが退出しました"),
        n => format!("{a} さん、{b} さんほか {n} 人が退出しました"),
    },
    notice_renamed: |old, new| format!("{old} さんは {new} さんになりました"),
    more_members: |n| format!("ほか {n} 人"),
    error: |code| match code {
        ErrorCode::NameRequired => "先に名前を決めてください。",
        ErrorCode::NameTaken => {
            "その名前はオンラインの誰かが使っています。別の名前にしてください。"
        }
        ErrorCode::InvalidName => "名前は 1〜32 文字で、制御文字や見えない文字は使えません。",
        ErrorCode::InvalidRoom => "ルーム名には英小文字 a–z、数字、- と _ だけが使えます。",
        ErrorCode::EmptyText => "メッセージが空です。",
        ErrorCode::TooLong => "メッセージが長すぎるため、送信されませんでした。",
        ErrorCode::NotInRoom => "まだこのルームに参加していません。",
        ErrorCode::TooManyRooms => "開いているルームが多すぎます。",
        ErrorCode::Internal => "サーバーで処理できませんでした。もう一度お試しください。",
        ErrorCode::NotYours => "他の人のメッセージです。",
        ErrorCode::EditWindowPassed => "古すぎて変更できないメッセージです。",
        ErrorCode::NotModerator => "モデレーターだけができる操作です。",
        ErrorCode::NoSuchMessage => "そのメッセージはもう保存されていません。",
        ErrorCode::RateLimited => "少しゆっくりお願いします。メッセージはまもなく送信されます。",
        _ => "サーバーがリクエストを拒否しました。",
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_tags_map_to_supported_languages() {
        assert_eq!(Lang::from_tag("en-US"), Some(Lang::En));
        assert_eq!(Lang::from_tag("zh-CN"), Some(Lang::ZhHans));
        assert_eq!(Lang::from_tag("zh-Hans-SG"), Some(Lang::ZhHans));
        assert_eq!(Lang::from_tag("zh-TW"), None);
        assert_eq!(Lang::from_tag("ja"), Some(Lang::Ja));
        assert_eq!(Lang::from_tag("fr-FR"), None);
    }

    #[test]
    fn a_page_is_in_the_chosen_language_else_the_browsers_best_supported_one() {
        let accept = |h| Lang::from_accept_language(h);
        assert_eq!(accept("ja,en-US;q=0.9,en;q=0.8"), Some(Lang::Ja));
        assert_eq!(
            accept("fr-FR,fr;q=0.9,zh-CN;q=0.8,en;q=0.7"),
            Some(Lang::ZhHans)
        );
        assert_eq!(accept("en;q=0.5, ja;q=0.8"), Some(Lang::Ja));
        assert_eq!(accept("zh-TW,de"), None);
        assert_eq!(accept("ja;q=0, en"), Some(Lang::En));
        assert_eq!(accept(""), None);
        let page = |cookie, accept| Lang::for_request(cookie, accept);
        assert_eq!(page(Some("a=1; chorus_lang=ja"), Some("en")), Lang::Ja);
        assert_eq!(page(Some("chorus_lang=xx"), Some("zh-CN")), Lang::ZhHans);
        assert_eq!(page(None, None), Lang::En);
    }

    #[test]
    fn every_language_translates_every_string() {
        for lang in Lang::ALL {
            let s = lang.strings();
            assert!(!s.send.is_empty() && !s.name_submit.is_empty(), "{lang:?}");
            assert!((s.notice_joined)("ann").contains("ann"));
            assert!((s.notice_renamed)("ann", "bo").contains("bo"));
            for many in [s.notice_joined_many, s.notice_left_many] {
                let two = many("ann", "bo", 0);
                assert!(two.contains("ann") && two.contains("bo"), "{two}");
                // Twelve in all: the other ten are counted (Chinese counts everyone).
                let twelve = many("ann", "bo", 10);
                assert!(twelve.contains("10") || twelve.contains("12"), "{twelve}");
            }
            assert!(!(s.more_members)(5).is_empty());
            assert!((s.new_below)(7).contains('7'));
            assert!((s.reconnect_in)(4).contains('4'));
            assert!(!(s.error)(ErrorCode::NameTaken).is_empty());
        }
        // Translations differ from English where they should.
        assert_ne!(ZH_HANS.send, EN.send);
        assert_ne!(JA.send, EN.send);
        assert_eq!(
            (EN.notice_joined_many)("ann", "bo", 10),
            "ann, bo and 10 others joined"
        );
        assert_eq!(
            (EN.notice_left_many)("ann", "bo", 1),
            "ann, bo and 1 other left"
        );
    }
}
