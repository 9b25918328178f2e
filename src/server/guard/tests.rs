use super::*;
use crate::protocol::ErrorCode;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, v.parse().expect("header value"));
    }
    map
}

fn origin(s: &str) -> AllowedOrigin {
    AllowedOrigin::parse(s).expect("an origin")
}

fn proxy(s: &str) -> IpNet {
    crate::server::config::parse_proxy(s).expect("a network")
}

fn gate(tweak: impl FnOnce(&mut Config)) -> Arc<Gate> {
    let mut config = Config::default();
    tweak(&mut config);
    config.validate().expect("valid config");
    Gate::new(&config)
}

#[test]
fn a_page_may_open_a_socket_only_on_its_own_host_unless_allowed() {
    let g = gate(|_| {});
    let own = headers(&[
        ("host", "chat.example.com"),
        ("origin", "https://chat.example.com"),
    ]);
    assert!(g.origin_allowed(&own));
    let with_port = headers(&[
        ("host", "127.0.0.1:3000"),
        ("origin", "http://127.0.0.1:3000"),
    ]);
    assert!(g.origin_allowed(&with_port));
    assert!(
        g.origin_allowed(&headers(&[("host", "chat.example.com")])),
        "no Origin"
    );
    for bad in [
        "http://evil.example",
        "https://chat.example.com.evil.example",
        "https://chat.example.com:8443",
        "null",
        "chat.example.com",
    ] {
        let h = headers(&[("host", "chat.example.com"), ("origin", bad)]);
        assert!(!g.origin_allowed(&h), "{bad}");
    }
    let listed = gate(|c| c.limits.allowed_origins = vec![origin("https://app.example.com")]);
    let h = headers(&[
        ("host", "chat.example.com"),
        ("origin", "https://APP.example.com/"),
    ]);
    assert!(listed.origin_allowed(&h));
    let h = headers(&[
        ("host", "chat.example.com"),
        ("origin", "http://app.example.com"),
    ]);
    assert!(
        !listed.origin_allowed(&h),
        "another scheme is another origin"
    );
    let any = gate(|c| c.limits.allowed_origins = vec![AllowedOrigin::Any]);
    assert!(any.origin_allowed(&headers(&[
        ("host", "a"),
        ("origin", "http://evil.example")
    ])));
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let g = gate(|c| c.limits.trusted_proxies = vec![proxy("10.0.0.0/8")]);
    let xff = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
    let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
    let stranger: IpAddr = "198.51.100.4".parse().expect("ip");
    assert_eq!(
        g.client_address(proxy, &xff),
        "203.0.113.9".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(g.client_address(stranger, &xff), stranger);
    // A client cannot hide behind an address it writes itself in front of the real one.
    let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
    assert_eq!(
        g.client_address(proxy, &forged),
        "203.0.113.9".parse::<IpAddr>().expect("ip")
    );
    let garbage = headers(&[("x-forwarded-for", "nonsense")]);
    assert_eq!(g.client_address(proxy, &garbage), proxy);
}

#[test]
fn caps_per_node_and_per_address_give_places_back_when_connections_end() {
    let g = gate(|c| {
        c.limits.max_connections = 3;
        c.limits.max_connections_per_address = 2;
        c.limits.connects_per_sec = 0;
    });
    let a: IpAddr = "203.0.113.1".parse().expect("ip");
    let b: IpAddr = "203.0.113.2".parse().expect("ip");
    let a1 = g.admit(a).expect("first");
    let _a2 = g.admit(a).expect("second");
    assert_eq!(g.admit(a).err(), Some(Refusal::AddressFull));
    let _b1 = g.admit(b).expect("another address");
    assert_eq!(g.admit(b).err(), Some(Refusal::NodeFull));
    drop(a1);
    let _a3 = g.admit(a).expect("a place was given back");
}

#[test]
fn an_ipv6_subscriber_is_one_address_across_its_64() {
    let g = gate(|c| {
        c.limits.max_connections_per_address = 1;
        c.limits.connects_per_sec = 0;
    });
    let _one = g
        .admit("2001:db8:1:2::1".parse().expect("ip"))
        .expect("first");
    assert_eq!(
        g.admit("2001:db8:1:2:ffff::9".parse().expect("ip")).err(),
        Some(Refusal::AddressFull)
    );
    assert!(g.admit("2001:db8:1:3::1".parse().expect("ip")).is_ok());
}

#[test]
fn connects_past_the_burst_are_refused_with_a_wait() {
    let g = gate(|c| {
        c.limits.connects_per_sec = 1;
        c.limits.connect_burst = 2;
    });
    let a: IpAddr = "203.0.113.1".parse().expect("ip");
    let _t1 = g.admit(a).expect("burst");
    let _t2 = g.admit(a).expect("burst");
    match g.admit(a) {
        Err(Refusal::TooFast(wait)) => assert!(wait <= Duration::from_secs(1), "{wait:?}"),
        Err(other) => panic!("expected TooFast, got {other:?}"),
        Ok(_) => panic!("expected TooFast, got a ticket"),
    }
    assert!(
        g.admit("203.0.113.2".parse().expect("ip")).is_ok(),
        "others are unaffected"
    );
}

#[test]
fn a_flood_is_refused_with_a_wait_and_then_closed() {
    let mut config = Config::default();
    config.limits.sends_per_sec = 1;
    config.limits.send_burst = 3;
    config.limits.rate_limit_strikes = 2;
    let mut limits = FrameLimits::default();
    let now = 7_000_000_000;
    let mut check = |kind| limits.check_at(&config, kind, 10, now);
    for _ in 0..3 {
        assert_eq!(check(FrameKind::Send), Verdict::Take);
    }
    match check(FrameKind::Send) {
        Verdict::Refuse(e) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(
                e.retry_after_ms.is_some_and(|ms| (1..=1000).contains(&ms)),
                "{e:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Other kinds of frames have their own bucket.
    assert_eq!(check(FrameKind::Control), Verdict::Take);
    assert!(matches!(check(FrameKind::Send), Verdict::Refuse(_)));
    assert_eq!(check(FrameKind::Send), Verdict::Close);
}

#[test]
fn bytes_are_limited_and_a_largest_frame_always_fits_a_full_bucket() {
    let mut config = Config::default();
    config.limits.bytes_per_sec = 100;
    config.limits.sends_per_sec = 0;
    let mut limits = FrameLimits::default();
    let now = 7_000_000_000;
    assert_eq!(
        limits.check_at(&config, FrameKind::Send, config.conn.max_frame_bytes, now),
        Verdict::Take
    );
    assert!(matches!(
        limits.check_at(&config, FrameKind::Send, 1000, now),
        Verdict::Refuse(_)
    ));
}

#[test]
fn a_connection_opens_only_so_many_rooms_a_minute() {
    let mut config = Config::default();
    config.limits.rooms_created_per_min = 2;
    let mut limits = FrameLimits::default();
    for _ in 0..2 {
        assert!(limits.may_open_room(&config));
        limits.opened_room();
    }
    assert!(!limits.may_open_room(&config));
}

#[test]
fn a_connections_limits_are_small() {
    // One set per connection: they must not undo the per-connection memory work.
    assert!(
        std::mem::size_of::<FrameLimits>() <= 56,
        "{}",
        std::mem::size_of::<FrameLimits>()
    );
}
