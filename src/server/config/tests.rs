use super::*;
use std::time::Duration;

#[test]
fn later_layers_win_key_by_key() {
    let mut config = Config::default();
    let file: Layer = toml::from_str("history_size = 5\nmax_text_chars = 100").expect("parses");
    config.apply(file).expect("applies");
    config
        .apply(Layer {
            history_size: Some(7),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!(config.rooms.history_size, 7);
    assert_eq!(config.conn.max_text_chars, 100);
    assert_eq!(
        config.conn.outbound_queue,
        Config::default().conn.outbound_queue
    );
}

#[test]
fn the_shipped_leptos_toml_parses_and_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
    let mut config = Config::default();
    config
        .apply(read_layer(&path).expect("Leptos.toml parses"))
        .expect("applies");
    config.validate().expect("Leptos.toml is valid");
}

#[test]
fn the_logged_config_hides_the_redis_password() {
    let mut config = Config::default();
    config.redis.redis_url = Some("redis://user:s3cret@db:6379/0".into());
    let shown = format!("{:?}", config.redacted());
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("db:6379/0"), "{shown}");
}

#[test]
fn an_idle_timeout_shorter_than_the_ping_interval_is_refused() {
    let mut config = Config::default();
    config.conn.ping_interval_ms = Duration::from_secs(30);
    config.conn.idle_timeout_ms = Duration::from_secs(20);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "idle_timeout_ms",
            ..
        })
    ));
}

#[test]
fn a_misspelt_key_is_an_error_not_a_silent_default() {
    assert!(toml::from_str::<Layer>("histroy_size = 5").is_err());
}

#[test]
fn a_frame_limit_too_small_for_the_text_limit_is_refused() {
    let mut config = Config::default();
    config.conn.max_frame_bytes = 1000;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "max_frame_bytes",
            ..
        })
    ));
}

#[test]
fn signed_identity_needs_a_strong_secret_or_a_public_key() {
    let jwt = |tweak: fn(&mut Config)| {
        let mut config = Config::default();
        config.identity.auth = Auth::Jwt;
        tweak(&mut config);
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("{other}"),
        })
    };
    assert_eq!(jwt(|_| {}), Err("jwt_secret"));
    assert_eq!(
        jwt(|c| c.identity.jwt_secret = Some("short".into())),
        Err("jwt_secret")
    );
    assert_eq!(
        jwt(|c| c.identity.jwt_secret = Some("x".repeat(32))),
        Ok(())
    );
    assert_eq!(
        jwt(|c| c.identity.jwt_algorithm = JwtAlgorithm::EdDsa),
        Err("jwt_public_key")
    );
    // An unknown algorithm does not even parse: refused where its layer is applied.
    let unknown = Config::default().apply(Layer {
        auth: Some("jwt".into()),
        jwt_algorithm: Some("none".into()),
        ..Layer::default()
    });
    assert!(matches!(
        unknown,
        Err(ConfigError::Invalid {
            key: "jwt_algorithm",
            ..
        })
    ));
    let mut config = Config::default();
    config.identity.jwt_secret = Some("x".repeat(40));
    assert!(!format!("{:?}", config.redacted()).contains(&"x".repeat(40)));
}

/// The key `validate` names after `tweak` is applied to a copy of `config`.
fn invalid_key(config: &Config, tweak: fn(&mut Config)) -> &'static str {
    let mut c = config.clone();
    tweak(&mut c);
    match c.validate() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cluster_settings_name_the_target_and_are_checked() {
    let mut config = Config::default();
    let file: Layer = toml::from_str(
        "redis_cluster = [\"10.0.0.5:7000\", \"redis://chat:hunter2@10.0.0.6:7001\"]",
    )
    .expect("parses");
    config.apply(file).expect("applies");
    config.validate().expect("valid");
    assert!(config.redis.in_use());
    assert_eq!(
        config.redis.target(),
        Some(Target::Cluster {
            nodes: vec![
                "10.0.0.5:7000".into(),
                "redis://chat:hunter2@10.0.0.6:7001".into()
            ],
        })
    );
    assert!(!format!("{:?}", config.redacted()).contains("hunter2"));
    let invalid = |tweak: fn(&mut Config)| invalid_key(&config, tweak);
    assert_eq!(
        invalid(|c| c.redis.redis_url = Some("redis://db/".into())),
        "redis_cluster"
    );
    assert_eq!(
        invalid(|c| c.redis.redis_sentinels = vec!["s:26379".into()]),
        "redis_cluster"
    );
    assert_eq!(
        invalid(|c| c.redis.redis_cluster = vec!["no-port".into()]),
        "redis_cluster"
    );
    assert_eq!(
        invalid(|c| c.redis.redis_cluster = vec!["unix:///tmp/redis.sock".into()]),
        "redis_cluster"
    );
}

#[test]
fn sentinel_settings_name_the_target_and_are_checked() {
    let mut config = Config::default();
    let file: Layer = toml::from_str(
        "redis_sentinels = [\"10.0.0.5:26379\", \"sentinel-b:26379\"]\nredis_sentinel_master = \"chat\"",
    )
    .expect("parses");
    config.apply(file).expect("applies");
    config.validate().expect("valid");
    assert_eq!(
        config.redis.target(),
        Some(Target::Sentinel {
            sentinels: vec!["10.0.0.5:26379".into(), "sentinel-b:26379".into()],
            master: "chat".into(),
        })
    );
    let invalid = |tweak: fn(&mut Config)| invalid_key(&config, tweak);
    assert_eq!(
        invalid(|c| c.redis.redis_url = Some("redis://db/".into())),
        "redis_sentinels"
    );
    assert_eq!(
        invalid(|c| c.redis.redis_sentinels = vec!["no-port".into()]),
        "redis_sentinels"
    );
    assert_eq!(
        invalid(|c| c.redis.redis_wait_timeout_ms = Duration::ZERO),
        "redis_wait_timeout_ms"
    );
    // WAIT needs Redis; an empty list switches Sentinel off again.
    config
        .apply(Layer {
            redis_sentinels: Some(vec![String::new()]),
            redis_wait_replicas: Some(1),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!(config.redis.target(), None);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "redis_wait_replicas",
            ..
        })
    ));
}

#[test]
fn an_empty_value_unsets_an_optional_text_setting() {
    let mut config = Config::default();
    config
        .apply(Layer {
            redis_url: Some("redis://db/".into()),
            tls_cert: Some("cert.pem".into()),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!(config.node.tls_cert.as_deref(), Some("cert.pem"));
    config
        .apply(Layer {
            redis_url: Some(String::new()),
            tls_cert: Some(String::new()),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!((config.redis.redis_url, config.node.tls_cert), (None, None));
}

#[test]
fn values_are_parsed_where_their_layer_is_applied_and_refused_naming_the_key() {
    let refused = |layer: Layer| match Config::default().apply(layer) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        refused(Layer {
            log_format: Some("xml".into()),
            ..Layer::default()
        }),
        "log_format"
    );
    assert_eq!(
        refused(Layer {
            auth: Some("ldap".into()),
            ..Layer::default()
        }),
        "auth"
    );
    assert_eq!(
        refused(Layer {
            allowed_origins: strings(&["https://ok.example", "ftp://no.example"]),
            ..Layer::default()
        }),
        "allowed_origins"
    );
    assert_eq!(
        refused(Layer {
            trusted_proxies: strings(&["10.0.0.0/8", "not-a-network"]),
            ..Layer::default()
        }),
        "trusted_proxies"
    );
    assert_eq!(
        refused(Layer {
            metrics_listen: Some("9100".into()),
            ..Layer::default()
        }),
        "metrics_listen"
    );
    assert_eq!(
        refused(Layer {
            status_listen: Some("localhost".into()),
            ..Layer::default()
        }),
        "status_listen"
    );

    let mut config = Config::default();
    assert_eq!(
        config.limits.trusted_proxies.len(),
        6,
        "every default network parses"
    );
    config
        .apply(Layer {
            metrics_listen: Some("127.0.0.1:9100".into()),
            allowed_origins: strings(&["*"]),
            log_format: Some("json".into()),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!(
        config.observe.metrics_listen,
        Some(([127, 0, 0, 1], 9100).into())
    );
    assert_eq!(config.limits.allowed_origins, [AllowedOrigin::Any]);
    assert_eq!(config.observe.log_format, LogFormat::Json);
    // An empty value unsets an address again.
    config
        .apply(Layer {
            metrics_listen: Some(String::new()),
            ..Layer::default()
        })
        .expect("applies");
    assert_eq!(config.observe.metrics_listen, None);
}

#[test]
fn only_the_value_that_wins_is_parsed_and_every_value_that_wins_is() {
    let path = std::env::temp_dir().join(format!("chorus-config-{}.toml", std::process::id()));
    std::fs::write(&path, "log_format = \"pretty\"\njwt_algorithm = \"none\"\n").expect("written");
    let load = |overrides: Layer| {
        Config::load(Cli {
            config: Some(path.clone()),
            overrides,
            leptos_site_addr: None,
        })
    };
    // The file's values are replaced before they are parsed.
    let config = load(Layer {
        log_format: Some("json".into()),
        jwt_algorithm: Some("EdDSA".into()),
        ..Layer::default()
    })
    .expect("loads");
    assert_eq!(config.observe.log_format, LogFormat::Json);
    assert_eq!(config.identity.jwt_algorithm, JwtAlgorithm::EdDsa);
    // Left to win, each of the file's values is refused, naming its key; the algorithm too,
    // though it is unused without signed identity (a typo there is still a typo).
    let refused = |overrides: Layer| match load(overrides) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(Layer {
            jwt_algorithm: Some("HS256".into()),
            ..Layer::default()
        }),
        "log_format"
    );
    assert_eq!(
        refused(Layer {
            log_format: Some("json".into()),
            ..Layer::default()
        }),
        "jwt_algorithm"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn every_key_has_its_flag_and_variable_and_the_readme_table_names_them() {
    use clap::CommandFactory;
    let command = Cli::command();
    command.clone().debug_assert();
    let readme = include_str!("../../../README.md");
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").collect())
        .collect();
    // A column names a key, variable or flag exactly, or by a shared prefix ending in `…`.
    let names = |column: &str, name: &str| {
        column.split(", ").any(|c| {
            let c = c.trim_matches(|c| c == '`' || c == '|' || c == ' ');
            c == name || c.strip_suffix("…").is_some_and(|p| name.starts_with(p))
        })
    };
    let mut keys = 0;
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let (Some(flag), Some(env)) = (arg.get_long(), arg.get_env()) else {
            panic!("{:?} has no flag or no variable", arg.get_id());
        };
        let env = env.to_str().expect("ASCII");
        if flag == "config" {
            continue;
        }
        keys += 1;
        let key = flag.replace('-', "_");
        assert!(env == format!("CHORUS_{}", key.to_uppercase()) || key == "site_root");
        let row = rows
            .iter()
            .find(|row| names(row[0], &key))
            .unwrap_or_else(|| panic!("README's table lacks {key}"));
        assert!(
            names(row[1], env),
            "README names another variable for {key}"
        );
        assert!(
            names(row[2], &format!("--{flag}")),
            "README names another flag for {key}"
        );
    }
    assert_eq!(keys, 56);
}

#[test]
fn flags_fill_a_layer_and_lists_are_comma_separated() {
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "chorus",
        "--history-size",
        "7",
        "--allowed-origins",
        "https://a.example,https://b.example",
        "--metrics-listen",
        "127.0.0.1:9100",
        "--drain-ms",
        "250",
        "--session-ttl-secs",
        "5",
    ])
    .expect("parses");
    let mut config = Config::default();
    config.apply(cli.overrides).expect("applies");
    assert_eq!(config.rooms.history_size, 7);
    assert_eq!(config.limits.allowed_origins.len(), 2);
    assert_eq!(
        config.observe.metrics_listen,
        Some(([127, 0, 0, 1], 9100).into())
    );
    assert_eq!(config.node.drain_ms, Duration::from_millis(250));
    assert_eq!(config.rooms.session_ttl_secs, Duration::from_secs(5));
    assert!(Cli::try_parse_from(["chorus", "--histroy-size", "7"]).is_err());
    assert!(Cli::try_parse_from(["chorus", "--drain-ms", "1.5"]).is_err());
    let file: Layer = toml::from_str("drain_ms = 1500\nroom_idle_secs = 60").expect("parses");
    config.apply(file).expect("applies");
    assert_eq!(config.node.drain_ms, Duration::from_millis(1500));
    assert_eq!(config.rooms.room_idle_secs, Duration::from_secs(60));
}

#[test]
fn the_server_cargo_leptos_runs_listens_where_cargo_leptos_says_unless_listen_is_given() {
    use clap::Parser;
    let load = |args: &[&str]| {
        let mut cli = Cli::try_parse_from(args).expect("parses");
        // The shipped file sets `listen` too: the address cargo-leptos was given beats it.
        cli.config = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE));
        Config::load(cli).expect("loads").node.listen
    };
    let site: SocketAddr = ([127, 0, 0, 1], 3400).into();
    assert_eq!(
        load(&["chorus", "--leptos-site-addr", "127.0.0.1:3400"]),
        site
    );
    assert_eq!(
        load(&[
            "chorus",
            "--leptos-site-addr",
            "127.0.0.1:3400",
            "--listen",
            "127.0.0.1:3500"
        ]),
        SocketAddr::from(([127, 0, 0, 1], 3500))
    );
    assert_eq!(load(&["chorus"]), Config::default().node.listen);
}
