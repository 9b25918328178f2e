//! A message's text as the page shows it: a small, safe subset of Markdown — `inline code`,
//! code blocks, **bold**, *italic*, ~~struck~~ and > quotes — and links: `[text](url)`,
//! `<url>`, and the bare `http(s)://` URLs in plain text. The stored text stays what was typed.
//!
//! [`parse`] turns the text into [`Node`]s (plain data, unit-tested natively); [`render`] turns
//! those into DOM nodes with Leptos, which sets text as text, never as HTML. Nothing a message
//! says is ever run: raw HTML in it is shown as the text it is, a link goes only to `http`,
//! `https` or `mailto` (anything else, `javascript:` first, is shown as typed), and images are not
//! loaded (shown as typed). Whatever else Markdown has (headings, lists, tables) is shown as typed
//! too: a chat line that starts with "1." or "#" means what it says.

use leptos::prelude::*;
use linkify::{LinkFinder, LinkKind};
use pulldown_cmark::{
    CodeBlockKind, Event, Options, Parser, Tag, TagEnd, utils::TextMergeWithOffset,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Text(String),
    Code(String),
    /// A line break where the text had one.
    Break,
    Link {
        href: String,
        children: Vec<Node>,
    },
    Strong(Vec<Node>),
    Emphasis(Vec<Node>),
    Strike(Vec<Node>),
    Paragraph(Vec<Node>),
    Quote(Vec<Node>),
    CodeBlock(String),
}

/// What an open element becomes when it ends.
enum Open {
    Root,
    Paragraph,
    Quote,
    CodeBlock,
    Strong,
    Emphasis,
    Strike,
    Link(String),
}

/// The link a message may make to `url`: only to the web or to mail.
fn safe_href(url: &str) -> Option<String> {
    let lower = url.trim_start().to_ascii_lowercase();
    ["https://", "http://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme) && lower.len() > scheme.len())
        .then(|| url.trim().to_owned())
}

/// Plain text with its `http(s)://` URLs as links.
fn linkified(text: &str, into: &mut Vec<Node>) {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    for span in finder.spans(text) {
        let piece = span.as_str();
        match span.kind().and_then(|_| safe_href(piece)) {
            Some(href) if !href.starts_with("mailto:") => into.push(Node::Link {
                href,
                children: vec![Node::Text(piece.to_owned())],
            }),
            _ => push_text(into, piece),
        }
    }
}

/// Appends text, joined to the text before it.
fn push_text(into: &mut Vec<Node>, text: &str) {
    match into.last_mut() {
        Some(Node::Text(before)) => before.push_str(text),
        _ => into.push(Node::Text(text.to_owned())),
    }
}

/// The nodes of a message's `text`.
pub fn parse(text: &str) -> Vec<Node> {
    let mut stack: Vec<(Open, Vec<Node>)> = vec![(Open::Root, Vec::new())];
    // Inside an element shown as typed: events are skipped until it ends.
    let mut as_typed = 0usize;
    let options = Options::ENABLE_STRIKETHROUGH;
    // Consecutive text events joined first: the parser splits a run of text at characters
    // such as `~`, `_` or `&`, and a URL cut in two would link to its first half.
    let events = TextMergeWithOffset::new(Parser::new_ext(text, options).into_offset_iter());
    for (event, range) in events {
        if as_typed > 0 {
            match event {
                Event::Start(_) => as_typed += 1,
                Event::End(_) => as_typed -= 1,
                _ => {}
            }
            continue;
        }
        let Some((open, children)) = stack.last_mut() else {
            break;
        };
        match event {
            Event::Start(tag) => {
                let opened = match tag {
                    Tag::Paragraph => Some(Open::Paragraph),
                    Tag::BlockQuote(_) => Some(Open::Quote),
                    Tag::CodeBlock(CodeBlockKind::Fenced(_) | CodeBlockKind::Indented) => {
                        Some(Open::CodeBlock)
                    }
                    Tag::Strong => Some(Open::Strong),
                    Tag::Emphasis => Some(Open::Emphasis),
                    Tag::Strikethrough => Some(Open::Strike),
                    Tag::Link { dest_url, .. } => safe_href(&dest_url).map(Open::Link),
                    // Outside the subset (headings, lists, images, HTML blocks, …).
                    _ => None,
                };
                match opened {
                    Some(opened) => stack.push((opened, Vec::new())),
                    None => {
                        let typed = text.get(range).unwrap_or_default().trim_end_matches('\n');
                        match matches!(open, Open::Root | Open::Quote) {
                            // A block shown as typed is a paragraph of its own.
                            true => children.push(Node::Paragraph(vec![Node::Text(typed.into())])),
                            false => push_text(children, typed),
                        }
                        as_typed = 1;
                    }
                }
            }
            Event::End(end) => {
                if matches!(end, TagEnd::Paragraph) && matches!(open, Open::Root) {
                    continue;
                }
                let Some((open, children)) = stack.pop() else {
                    break;
                };
                let node = match open {
                    Open::Root => {
                        stack.push((Open::Root, children));
                        continue;
                    }
                    Open::Paragraph => Node::Paragraph(children),
                    Open::Quote => Node::Quote(children),
                    Open::CodeBlock => {
                        let code: String = children
                            .into_iter()
                            .filter_map(|n| match n {
                                Node::Text(t) => Some(t),
                                _ => None,
                            })
                            .collect();
                        Node::CodeBlock(code.trim_end_matches('\n').to_owned())
                    }
                    Open::Strong => Node::Strong(children),
                    Open::Emphasis => Node::Emphasis(children),
                    Open::Strike => Node::Strike(children),
                    Open::Link(href) => Node::Link { href, children },
                };
                if let Some((_, parent)) = stack.last_mut() {
                    parent.push(node);
                }
            }
            Event::Text(t) => {
                // No link in a link (nor in code).
                let in_link = stack
                    .iter()
                    .any(|(o, _)| matches!(o, Open::Link(_) | Open::CodeBlock));
                let Some((_, children)) = stack.last_mut() else {
                    break;
                };
                match in_link {
                    true => push_text(children, &t),
                    false => linkified(&t, children),
                }
            }
            Event::Code(code) => children.push(Node::Code(code.into_string())),
            Event::SoftBreak | Event::HardBreak => children.push(Node::Break),
            // Raw HTML, and anything else: as typed.
            _ => push_text(children, text.get(range).unwrap_or_default()),
        }
    }
    let mut nodes = stack
        .into_iter()
        .next()
        .map(|(_, nodes)| nodes)
        .unwrap_or_default();
    if nodes.is_empty() && !text.is_empty() {
        nodes.push(Node::Paragraph(vec![Node::Text(text.to_owned())]));
    }
    nodes
}

/// The DOM of `nodes`: text is set as text, links open in a new tab and tell the site nothing.
pub fn render(nodes: Vec<Node>) -> Vec<AnyView> {
    nodes.into_iter().map(render_node).collect()
}

fn render_node(node: Node) -> AnyView {
    match node {
        Node::Text(t) => t.into_any(),
        Node::Code(c) => view! { <code>{c}</code> }.into_any(),
        Node::Break => view! { <br /> }.into_any(),
        Node::Link { href, children } => view! {
            <a href=href target="_blank" rel="noopener noreferrer nofollow">{render(children)}</a>
        }
        .into_any(),
        Node::Strong(c) => view! { <strong>{render(c)}</strong> }.into_any(),
        Node::Emphasis(c) => view! { <em>{render(c)}</em> }.into_any(),
        Node::Strike(c) => view! { <s>{render(c)}</s> }.into_any(),
        Node::Paragraph(c) => view! { <p>{render(c)}</p> }.into_any(),
        Node::Quote(c) => view! { <blockquote>{render(c)}</blockquote> }.into_any(),
        Node::CodeBlock(code) => view! { <pre><code>{code}</code></pre> }.into_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Node::*;

    fn text(s: &str) -> Node {
        Text(s.into())
    }

    fn p(children: Vec<Node>) -> Node {
        Paragraph(children)
    }

    #[test]
    fn the_subset_is_rendered() {
        assert_eq!(
            parse("**bold** *it* ~~no~~ `a < b`"),
            [p(vec![
                Strong(vec![text("bold")]),
                text(" "),
                Emphasis(vec![text("it")]),
                text(" "),
                Strike(vec![text("no")]),
                text(" "),
                Code("a < b".into()),
            ])]
        );
        assert_eq!(
            parse("> said\n\n```\nfn main() {}\n<b>\n```"),
            [
                Quote(vec![p(vec![text("said")])]),
                CodeBlock("fn main() {}\n<b>".into())
            ]
        );
        // Lines stay lines.
        assert_eq!(
            parse("one\ntwo"),
            [p(vec![text("one"), Break, text("two")])]
        );
    }

    #[test]
    fn urls_become_links_and_only_to_the_web() {
        assert_eq!(
            parse("see https://example.com/a?b=1, and [docs](https://docs.rs)"),
            [p(vec![
                text("see "),
                Link {
                    href: "https://example.com/a?b=1".into(),
                    children: vec![text("https://example.com/a?b=1")]
                },
                text(", and "),
                Link {
                    href: "https://docs.rs".into(),
                    children: vec![text("docs")]
                },
            ])]
        );
        for hostile in [
            "[x](javascript:alert(1))",
            "[x](JavaScript:alert(1))",
            "[x]( javascript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "[x](vbscript:msgbox)",
            "<javascript:alert(1)>",
            "javascript:alert(1)",
        ] {
            let nodes = format!("{:?}", parse(hostile));
            assert!(!nodes.contains("Link"), "{hostile}: {nodes}");
        }
        // Shown as typed, not dropped.
        assert_eq!(
            parse("[x](javascript:alert(1))"),
            [p(vec![text("[x](javascript:alert(1))")])]
        );
    }

    #[test]
    fn a_url_is_linked_whole_and_never_inside_a_link() {
        let url = "https://host.example/~ann/a_b?x=1&y=2";
        assert_eq!(
            parse(url),
            [p(vec![Link {
                href: url.into(),
                children: vec![text(url)]
            }])]
        );
        assert_eq!(
            parse("[**https://a.example**](https://b.example)"),
            [p(vec![Link {
                href: "https://b.example".into(),
                children: vec![Strong(vec![text("https://a.example")])]
            }])]
        );
    }

    #[test]
    fn html_is_text() {
        for html in [
            "<img src=x onerror=alert(1)>",
            "<script>alert(1)</script>",
            "hi <b onmouseover=alert(1)>there</b>",
            "*<img src=x onerror=alert(1)>*",
        ] {
            let nodes = parse(html);
            let shown: String = flat(&nodes);
            assert_eq!(shown.replace('*', ""), html.replace('*', ""), "{nodes:?}");
        }
    }

    #[test]
    fn the_rest_of_markdown_is_shown_as_typed() {
        assert_eq!(parse("# not a heading"), [p(vec![text("# not a heading")])]);
        assert_eq!(parse("1. one\n2. two"), [p(vec![text("1. one\n2. two")])]);
        assert_eq!(
            parse("![cat](https://x/cat.png)"),
            [p(vec![text("![cat](https://x/cat.png)")])]
        );
        assert_eq!(parse(""), Vec::<Node>::new());
        assert_eq!(parse("   "), [p(vec![text("   ")])]);
    }

    /// All the text of `nodes`, as shown.
    fn flat(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| match n {
                Text(t) | Code(t) | CodeBlock(t) => t.clone(),
                Break => "\n".into(),
                Link { children, .. }
                | Strong(children)
                | Emphasis(children)
                | Strike(children)
                | Paragraph(children)
                | Quote(children) => flat(children),
            })
            .collect()
    }
}
