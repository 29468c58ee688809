//! Precedence of the sources and every validation error.

use super::*;
use std::collections::HashMap;
use std::io::Write;

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn resolve_with(args: &RunArgs, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let var = |name: &str| env.get(name).cloned();
    Config::resolve(
        args,
        Environment {
            var: &var,
            hostname: Some("host-1"),
        },
    )
}

fn resolve(args: &RunArgs) -> Result<Config, ConfigError> {
    resolve_with(args, &HashMap::new())
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn args_with_file(f: &tempfile::NamedTempFile) -> RunArgs {
    RunArgs {
        config: Some(f.path().to_owned()),
        ..RunArgs::default()
    }
}

/// The message of the error for `args`, which must fail.
fn error(args: RunArgs) -> String {
    match resolve(&args) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_match_the_contract() {
    let c = resolve(&RunArgs::default()).expect("defaults are valid");
    assert_eq!(c.name.as_str(), "host-1");
    assert_eq!(c.listen, "0.0.0.0:6783".parse().expect("addr"));
    assert_eq!(
        c.advertise,
        AdvertiseSpec {
            ip: None,
            port: 6783
        }
    );
    assert!(c.peers.is_empty());
    assert_eq!(c.cluster, "10.32.0.0/12".parse().expect("cidr"));
    assert_eq!(c.subnet_prefix, 24);
    assert_eq!(c.iface, "ovl0");
    assert_eq!(c.api, "127.0.0.1:6784".parse().expect("addr"));
    assert_eq!(c.metrics, "0.0.0.0:6782".parse().expect("addr"));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/overlay"));
    assert_eq!(c.reclaim_after, Duration::from_secs(24 * 3600));
    assert_eq!(c.view, overlay_proto::node::ActiveView::default());
    assert_eq!((c.view.preferred, c.view.max_connections), (6, 32));
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let file = file_with(
        "name = \"from-file\"\n\
         iface = \"file0\"\n\
         subnet-prefix = 26\n\
         api = \"127.0.0.1:1111\"\n\
         peers = [\"10.0.0.1\", \"seed:7000\"]\n\
         reclaim-after = \"1h\"\n",
    );
    let mut args = args_with_file(&file);

    let c = resolve(&args).expect("valid");
    assert_eq!(c.name.as_str(), "from-file");
    assert_eq!(c.iface, "file0");
    assert_eq!(c.subnet_prefix, 26);
    assert_eq!(c.reclaim_after, Duration::from_secs(3600));
    assert_eq!(
        c.peers,
        vec![
            PeerAddr {
                host: "10.0.0.1".into(),
                port: 6783
            },
            PeerAddr {
                host: "seed".into(),
                port: 7000
            }
        ]
    );
    assert_eq!(c.listen.port(), 6783, "default where no source sets it");

    let env = env_of(&[
        ("OVERLAY_NAME", "from-env"),
        ("OVERLAY_SUBNET_PREFIX", "25"),
        ("OVERLAY_PEERS", "10.9.9.9, other:1"),
        ("OVERLAY_LISTEN", ""),
    ]);
    let c = resolve_with(&args, &env).expect("valid");
    assert_eq!(c.name.as_str(), "from-env");
    assert_eq!(c.subnet_prefix, 25);
    assert_eq!(c.iface, "file0", "file value where env has none");
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[0].host, "10.9.9.9");
    assert_eq!(c.listen.port(), 6783, "empty env var counts as unset");

    args.name = Some("from-flag".into());
    args.peers = vec!["10.7.7.7".into()];
    let c = resolve_with(&args, &env).expect("valid");
    assert_eq!(c.name.as_str(), "from-flag");
    assert_eq!(c.subnet_prefix, 25);
    assert_eq!(c.peers.len(), 1);
}

#[test]
fn config_file_can_come_from_the_environment() {
    let file = file_with("iface = \"envfile0\"\n");
    let path = file.path().to_string_lossy().into_owned();
    let c =
        resolve_with(&RunArgs::default(), &env_of(&[("OVERLAY_CONFIG", &path)])).expect("valid");
    assert_eq!(c.iface, "envfile0");
}

#[test]
fn advertise_port_defaults_to_the_listen_port() {
    let c = resolve(&RunArgs {
        listen: Some("0.0.0.0:7000".into()),
        advertise: Some("192.168.0.5".into()),
        ..RunArgs::default()
    })
    .expect("valid");
    assert_eq!(c.advertise.ip, Some([192, 168, 0, 5].into()));
    assert_eq!(c.advertise.port, 7000);
    let c = resolve(&RunArgs {
        listen: Some("0.0.0.0:7000".into()),
        ..RunArgs::default()
    })
    .expect("valid");
    assert_eq!(c.advertise.port, 7000);
}

#[test]
fn errors_name_the_field_the_value_and_the_source() {
    let env = env_of(&[("OVERLAY_SUBNET_PREFIX", "40")]);
    let e = resolve_with(&RunArgs::default(), &env)
        .expect_err("invalid")
        .to_string();
    assert_eq!(
        e,
        "invalid --subnet-prefix \"40\" (from OVERLAY_SUBNET_PREFIX): must be from 12 \
         (the prefix of the cluster range 10.32.0.0/12) to 30"
    );
    let file = file_with("listen = \"nope\"\n");
    let e = resolve(&args_with_file(&file))
        .expect_err("invalid")
        .to_string();
    assert!(e.starts_with("invalid --listen \"nope\" (from "), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn every_invalid_value_is_refused() {
    let cases: Vec<(RunArgs, &str)> = vec![
        (
            RunArgs {
                name: Some("bad name".into()),
                ..Default::default()
            },
            "invalid --name",
        ),
        (
            RunArgs {
                listen: Some("6783".into()),
                ..Default::default()
            },
            "invalid --listen",
        ),
        (
            RunArgs {
                advertise: Some("0.0.0.0".into()),
                ..Default::default()
            },
            "invalid --advertise",
        ),
        (
            RunArgs {
                peers: vec!["ok".into(), "bad host".into()],
                ..Default::default()
            },
            "invalid --peer \"bad host\"",
        ),
        (
            RunArgs {
                cluster_cidr: Some("10.32.0.0/33".into()),
                ..Default::default()
            },
            "invalid --cluster-cidr",
        ),
        (
            RunArgs {
                cluster_cidr: Some("10.32.1.0/12".into()),
                ..Default::default()
            },
            "not a network address (did you mean 10.32.0.0/12?)",
        ),
        (
            RunArgs {
                subnet_prefix: Some("8".into()),
                ..Default::default()
            },
            "invalid --subnet-prefix \"8\"",
        ),
        (
            RunArgs {
                subnet_prefix: Some("31".into()),
                ..Default::default()
            },
            "invalid --subnet-prefix \"31\"",
        ),
        (
            RunArgs {
                subnet_prefix: Some("x".into()),
                ..Default::default()
            },
            "invalid --subnet-prefix",
        ),
        (
            RunArgs {
                iface: Some("way-too-long-name".into()),
                ..Default::default()
            },
            "invalid --iface",
        ),
        (
            RunArgs {
                api: Some("localhost".into()),
                ..Default::default()
            },
            "invalid --api",
        ),
        (
            RunArgs {
                metrics: Some("1.2.3.4".into()),
                ..Default::default()
            },
            "invalid --metrics",
        ),
        (
            RunArgs {
                state_dir: Some(" ".into()),
                ..Default::default()
            },
            "invalid --state-dir",
        ),
        (
            RunArgs {
                reclaim_after: Some("soon".into()),
                ..Default::default()
            },
            "invalid --reclaim-after",
        ),
        (
            RunArgs {
                reclaim_after: Some("0s".into()),
                ..Default::default()
            },
            "must be longer than zero",
        ),
        (
            RunArgs {
                active_view: Some("0".into()),
                ..Default::default()
            },
            "invalid --active-view \"0\": expected a whole number from 1 to 64",
        ),
        (
            RunArgs {
                active_view: Some("12".into()),
                max_connections: Some("8".into()),
                ..Default::default()
            },
            "invalid --max-connections \"8\": expected a whole number from 12 to 1024",
        ),
        (
            RunArgs {
                encrypt: true,
                ..Default::default()
            },
            "--encrypt needs --secret-file",
        ),
        (
            RunArgs {
                secret_file: Some("/etc/secret".into()),
                ..Default::default()
            },
            "--secret-file /etc/secret: cannot read it",
        ),
        (
            RunArgs {
                config: Some("/nonexistent/overlay.toml".into()),
                ..Default::default()
            },
            "config file /nonexistent/overlay.toml: ",
        ),
    ];
    for (args, expected) in cases {
        let e = error(args);
        assert!(e.contains(expected), "{e:?} does not contain {expected:?}");
        assert!(!e.contains('\n'), "{e:?} is not one line");
    }
}

#[test]
fn subnet_prefix_is_checked_against_the_cluster_prefix() {
    let ok = resolve(&RunArgs {
        cluster_cidr: Some("10.0.0.0/16".into()),
        subnet_prefix: Some("16".into()),
        ..Default::default()
    });
    assert!(ok.is_ok());
    let e = error(RunArgs {
        cluster_cidr: Some("10.0.0.0/16".into()),
        subnet_prefix: Some("15".into()),
        ..Default::default()
    });
    assert!(e.contains("must be from 16"), "{e}");
}

#[test]
fn bad_hostname_asks_for_a_name() {
    let var = |_: &str| None;
    let e = Config::resolve(
        &RunArgs::default(),
        Environment {
            var: &var,
            hostname: Some("under score but space"),
        },
    )
    .expect_err("invalid hostname");
    assert!(e.to_string().contains("set one with --name"));
    let e = Config::resolve(
        &RunArgs::default(),
        Environment {
            var: &var,
            hostname: None,
        },
    )
    .expect_err("no hostname");
    assert!(matches!(e, ConfigError::NoHostname), "{e}");
}

#[test]
fn env_booleans_and_secret_settings() {
    let e = resolve_with(
        &RunArgs::default(),
        &env_of(&[("OVERLAY_ENCRYPT", "maybe")]),
    )
    .expect_err("invalid");
    assert!(e
        .to_string()
        .starts_with("invalid --encrypt \"maybe\" (from OVERLAY_ENCRYPT)"));
    assert!(resolve_with(
        &RunArgs::default(),
        &env_of(&[("OVERLAY_ENCRYPT", "false")])
    )
    .is_ok());
    let e = resolve_with(
        &RunArgs::default(),
        &env_of(&[("OVERLAY_SECRET_FILE", "/s")]),
    )
    .expect_err("missing file");
    assert!(matches!(e, ConfigError::SecretFile { .. }), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "short\n").expect("write");
    let env = [("OVERLAY_SECRET_FILE", path.to_str().expect("utf-8"))];
    let e = resolve_with(&RunArgs::default(), &env_of(&env)).expect_err("too short");
    assert_eq!(
        e.to_string(),
        format!(
            "--secret-file {}: the secret on line 1 is 5 bytes, shorter than 16",
            path.display()
        )
    );
    std::fs::write(&path, "a-long-enough-cluster-secret\n").expect("write");
    let c = resolve_with(&RunArgs::default(), &env_of(&env)).expect("valid");
    assert_eq!(c.secret_file.as_deref(), Some(path.as_path()));
    assert!(!c.encrypt);
    let args = RunArgs {
        encrypt: true,
        ..Default::default()
    };
    let c = resolve_with(&args, &env_of(&env)).expect("--encrypt with a secret is valid");
    assert!(c.encrypt);
}

#[test]
fn config_file_errors_are_one_line_and_name_the_file() {
    for (text, expected) in [
        ("nmae = \"x\"\n", "unknown key `nmae`"),
        ("name = [1]\n", "`name` must be a string"),
        ("peers = [1]\n", "`peers` must be a list of strings"),
        (
            "peer = [\"a\"]\npeers = [\"b\"]\n",
            "both `peer` and `peers`",
        ),
        ("name = \"a\"\nname = ", "line 2"),
    ] {
        let f = file_with(text);
        let e = error(args_with_file(&f));
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains(expected), "{e:?} does not contain {expected:?}");
        assert!(!e.contains('\n'), "{e:?}");
    }
}

#[test]
fn file_accepts_strings_for_numbers_and_comma_lists() {
    let f = file_with("subnet-prefix = \"20\"\npeer = \"a, b:9\"\nencrypt = false\n");
    let c = resolve(&args_with_file(&f)).expect("valid");
    assert_eq!(c.subnet_prefix, 20);
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[1].port, 9);
}

#[test]
fn kubernetes_comes_from_flag_env_or_file_and_needs_the_k8s_feature() {
    assert!(!resolve(&RunArgs::default()).expect("defaults").kubernetes);
    let file = file_with("kubernetes = true\n");
    let results = [
        resolve(&RunArgs {
            kubernetes: true,
            ..RunArgs::default()
        }),
        resolve_with(&RunArgs::default(), &env_of(&[("OVERLAY_KUBERNETES", "1")])),
        resolve(&args_with_file(&file)),
    ];
    for result in results {
        if cfg!(feature = "k8s") {
            assert!(result.expect("valid with the k8s feature").kubernetes);
        } else {
            assert!(
                matches!(result, Err(ConfigError::KubernetesNotBuilt)),
                "{result:?}"
            );
        }
    }
    assert!(ConfigError::KubernetesNotBuilt.to_string().contains(
        "built with the `k8s` feature (cargo build --release -p overlay-agent --features k8s)"
    ));
    let e = resolve_with(
        &RunArgs::default(),
        &env_of(&[("OVERLAY_KUBERNETES", "maybe")]),
    )
    .expect_err("invalid");
    assert!(e
        .to_string()
        .starts_with("invalid --kubernetes \"maybe\" (from OVERLAY_KUBERNETES)"));
}

#[test]
fn masquerade_is_on_by_default_and_turned_off_by_flag_env_or_file() {
    assert!(resolve(&RunArgs::default()).expect("defaults").masquerade);
    let off = |args: &RunArgs, env: &[(&str, &str)]| {
        !resolve_with(args, &env_of(env)).expect("valid").masquerade
    };
    let flag = |v: &str| RunArgs {
        masquerade: Some(v.into()),
        ..RunArgs::default()
    };
    assert!(off(&flag("false"), &[]));
    assert!(!off(&flag("true"), &[]));
    assert!(off(&RunArgs::default(), &[("OVERLAY_MASQUERADE", "0")]));
    let file = file_with("masquerade = false\n");
    assert!(off(&args_with_file(&file), &[]));
    // Flags beat the environment, the environment the file.
    assert!(!off(
        &RunArgs {
            masquerade: Some("yes".into()),
            ..args_with_file(&file)
        },
        &[("OVERLAY_MASQUERADE", "off")]
    ));
    assert!(!off(
        &args_with_file(&file),
        &[("OVERLAY_MASQUERADE", "on")]
    ));
    let e = resolve_with(
        &RunArgs::default(),
        &env_of(&[("OVERLAY_MASQUERADE", "sometimes")]),
    )
    .expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "invalid --masquerade \"sometimes\" (from OVERLAY_MASQUERADE): expected true or false"
    );
    let file = file_with("masquerade = \"nope\"\n");
    assert!(error(args_with_file(&file)).starts_with("invalid --masquerade \"nope\" (from "));
}

#[test]
fn masquerade_flag_takes_a_value_on_the_command_line() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let cli = Cli::try_parse_from(["run", "--masquerade", "false"]).expect("parses");
    assert!(!resolve(&cli.run).expect("valid").masquerade);
    let cli = Cli::try_parse_from(["run", "--masquerade=true"]).expect("parses");
    assert!(resolve(&cli.run).expect("valid").masquerade);
}

#[test]
fn check_config_prints_what_config_reads_back_with_origins() {
    let f = file_with("peers = [\"10.0.0.1\"]\nreclaim-after = \"90m\"\n");
    let args = RunArgs {
        name: Some("node-7".into()),
        ..args_with_file(&f)
    };
    let env = env_of(&[
        ("OVERLAY_LOG_FORMAT", "json"),
        ("OVERLAY_SUBNET_PREFIX", "26"),
    ]);
    let var = |name: &str| env.get(name).cloned();
    let text = Config::explain(
        &args,
        Environment {
            var: &var,
            hostname: Some("host-1"),
        },
    )
    .expect("valid");
    assert!(
        text.contains("name = \"node-7\"  # flag --name\n"),
        "{text}"
    );
    assert!(
        text.contains("subnet-prefix = 26  # environment OVERLAY_SUBNET_PREFIX\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "reclaim-after = \"90m\"  # file {}\n",
            f.path().display()
        )),
        "{text}"
    );
    assert!(
        text.contains("cluster-cidr = \"10.32.0.0/12\"  # default\n"),
        "{text}"
    );
    assert!(
        text.contains("log-format = \"json\"  # environment OVERLAY_LOG_FORMAT\n"),
        "{text}"
    );

    // Read back as a config file alone, it gives the same configuration.
    let back = file_with(&text);
    let expected = resolve_with(&args, &env).expect("valid");
    assert_eq!(
        resolve(&args_with_file(&back)).expect("reads back"),
        expected
    );
    assert_eq!(expected.log_format, LogFormat::Json);
}

#[test]
fn a_bad_log_format_names_the_field() {
    let e = error(RunArgs {
        log_format: Some("xml".into()),
        ..RunArgs::default()
    });
    assert_eq!(e, "invalid --log-format \"xml\": expected text or json");
}
