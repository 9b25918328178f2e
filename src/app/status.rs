//! `/status`: every live node at a glance — connections, rooms, messages and deliveries per
//! second over the last five minutes as small charts, Redis reachable or not, version, uptime.
//! Rendered on the server with the numbers in it, then refreshed in the browser every
//! [`REFRESH_MS`] from `/status.json`.

use crate::status::{NodeStatus, StatusReport, short_number, sparkline, uptime};
use leptos::prelude::*;
use leptos_meta::Title;

/// How often the page asks for fresh numbers.
pub const REFRESH_MS: u64 = 2_000;

type Loaded = Result<StatusReport, String>;

/// On the server: the node's own report, read from the state the route provides.
#[cfg(feature = "ssr")]
fn load() -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Loaded> + Send>> {
    let app = use_context::<crate::server::AppState>();
    move |_| {
        let app = app.clone();
        Box::pin(async move {
            match app {
                Some(app) => Ok(crate::server::status::report(&app).await),
                None => Err("The status page is not served here.".to_owned()),
            }
        })
    }
}

/// In the browser: `/status.json`.
#[cfg(not(feature = "ssr"))]
fn load() -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Loaded> + Send>> {
    |_| {
        #[cfg(feature = "hydrate")]
        {
            Box::pin(send_wrapper::SendWrapper::new(async {
                let response = gloo_net::http::Request::get("/status.json")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !response.ok() {
                    return Err(format!("the node answered {}", response.status()));
                }
                response
                    .json::<StatusReport>()
                    .await
                    .map_err(|e| e.to_string())
            }))
        }
        #[cfg(not(feature = "hydrate"))]
        {
            Box::pin(async { Err("no way to load the status here".to_owned()) })
        }
    }
}

#[component]
pub fn StatusPage() -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    // In the browser only (effects do not run on the server): ask again every few seconds.
    Effect::new(move |_| {
        let every = std::time::Duration::from_millis(REFRESH_MS);
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), every) {
            on_cleanup(move || handle.clear());
        }
    });
    let report = Resource::new(move || tick.get(), load());
    view! {
        <Title text="Chorus status" />
        <main class="ops">
            <header class="ops-top">
                <h1>"Chorus status"</h1>
                <a href="/">"Chat"</a>
            </header>
            <p class="ops-note">"Charts: the last five minutes, a point every 5 s."</p>
            // Keeps the last numbers on screen while the next ones load.
            <Transition fallback=|| view! { <p class="ops-note">"Loading…"</p> }>
                {move || {
                    report
                        .get()
                        .map(|loaded| match loaded {
                            Ok(report) => {
                                report
                                    .nodes
                                    .into_iter()
                                    .enumerate()
                                    .map(|(i, node)| view! { <NodeCard node here=i == 0 /> })
                                    .collect_view()
                                    .into_any()
                            }
                            Err(why) => view! { <p class="ops-note">{why}</p> }.into_any(),
                        })
                }}
            </Transition>
        </main>
    }
}

#[component]
fn NodeCard(node: NodeStatus, here: bool) -> impl IntoView {
    let (redis, redis_class) = match node.redis {
        None => ("not used (one node)", "muted"),
        Some(true) => ("reachable", "good"),
        Some(false) => ("unreachable", "bad"),
    };
    let series = node.series;
    view! {
        <section class="ops-node" class:here=here data-node=node.node.clone()>
            <h2>
                {node.node.clone()}
                {here.then(|| view! { <span class="ops-badge">"this node"</span> })}
                {node.draining.then(|| view! { <span class="ops-badge bad">"draining"</span> })}
            </h2>
            <dl class="ops-facts">
                <div>
                    <dt>"Connections"</dt>
                    <dd class="ops-connections">{node.connections}</dd>
                </div>
                <div>
                    <dt>"Rooms"</dt>
                    <dd class="ops-rooms">{node.rooms}</dd>
                </div>
                <div>
                    <dt>"Redis"</dt>
                    <dd class=redis_class>{redis}</dd>
                </div>
                <div>
                    <dt>"Version"</dt>
                    <dd>{node.version}</dd>
                </div>
                <div>
                    <dt>"Uptime"</dt>
                    <dd>{uptime(node.uptime_secs)}</dd>
                </div>
            </dl>
            <div class="ops-charts">
                <Chart title="Connections" values=series.connections />
                <Chart title="Rooms" values=series.rooms />
                <Chart title="Messages/s" values=series.messages_per_sec />
                <Chart title="Deliveries/s" values=series.deliveries_per_sec />
            </div>
        </section>
    }
}

/// Chart box, in SVG units; the SVG stretches to the card's width.
const W: f64 = 118.0;
const H: f64 = 30.0;

#[component]
fn Chart(title: &'static str, values: Vec<f64>) -> impl IntoView {
    let latest = values.last().copied().map(short_number);
    let peak = values.iter().copied().fold(0.0_f64, f64::max);
    let label = format!(
        "{title}, last five minutes: now {}, peak {}",
        latest.clone().unwrap_or_else(|| "-".into()),
        short_number(peak)
    );
    view! {
        <figure class="ops-chart">
            <figcaption>
                {title} <b>{latest.unwrap_or_else(|| "-".into())}</b>
            </figcaption>
            <svg viewBox=format!("-1 -1 {} {}", W + 2.0, H + 2.0) preserveAspectRatio="none" role="img" aria-label=label>
                <line x1="0" y1=H x2=W y2=H class="ops-axis" />
                <polyline points=sparkline(&values, W, H) class="ops-line" />
            </svg>
        </figure>
    }
}
