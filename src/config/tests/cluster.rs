//! Unit tests of the cluster keys: each parses from the file, `--set` and
//! (where it has one) its flag; their defaults; every validation error names
//! the key; `controller.listen` defaulting from the voters; a single node
//! still needs none of them.

use super::*;

/// (key, TOML value, `--set` value, normalized text): every new cluster
/// key with a value other than its default.
#[rustfmt::skip]
const KEYS: &[(&str, &str, &str, &str)] = &[
    ("process.roles", "[\"controller\", \"broker\"]", "controller, broker", "controller,broker"),
    ("controller.quorum.voters", "[\"1@127.0.0.1:9191\", \"2@localhost:9192\"]",
        " 1@127.0.0.1:9191, 2@localhost:9192", "1@127.0.0.1:9191,2@localhost:9192"),
    ("controller.listen", "\"localhost:9301\"", "localhost:9301", "127.0.0.1:9301"),
    ("broker.session.timeout.ms", "18000", "18000", "18000"),
    ("broker.heartbeat.interval.ms", "3000", "3000", "3000"),
    ("controller.quorum.election.timeout.ms", "1500", "1500", "1500"),
    ("metadata.log.max.record.bytes.between.snapshots", "1048576", "1048576", "1048576"),
    ("replica.lag.time.max.ms", "45000", "45000", "45000"),
    ("replica.fetch.max.bytes", "2097152", "2097152", "2097152"),
    ("replica.fetch.wait.max.ms", "250", "250", "250"),
    ("replica.fetch.min.bytes", "16", "16", "16"),
    ("replica.fetch.response.max.bytes", "5242880", "5242880", "5242880"),
    ("replica.fetch.backoff.ms", "2000", "2000", "2000"),
    ("unclean.leader.election.enable", "true", "TRUE", "true"),
    ("min.insync.replicas", "2", "2", "2"),
    ("auto.leader.rebalance.enable", "false", "false", "false"),
    ("leader.imbalance.check.interval.seconds", "60", "60", "60"),
    ("leader.imbalance.per.broker.percentage", "25", "25", "25"),
    ("offsets.topic.replication.factor", "1", "1", "1"),
];

#[test]
fn cluster_keys_parse_from_file_and_set() {
    for (key, toml, set, expected) in KEYS {
        let file = format!("{key} = {toml}");
        check(&[], Some(&file), Values(&[]));
        let config = load(&[], Some(&file)).unwrap();
        assert_eq!(config.value(key), Some(*expected), "{key} from the file");
        assert_eq!(config.source(key), ConfigSource::StaticBrokerConfig);
        let assignment = format!("{key}={set}");
        let config = load(&["--set", &assignment], None).unwrap();
        assert_eq!(config.value(key), Some(*expected), "{key} from --set");
        assert_eq!(config.origin(key), Some("flag --set"));
    }
}

#[test]
fn cluster_flags_win_over_set_and_file() {
    let file =
        "controller.quorum.voters = \"1@127.0.0.1:9001\"\ncontroller.listen = \"127.0.0.1:9001\"";
    let args = [
        "--set",
        "controller.listen=127.0.0.1:9002",
        "--controller-listen",
        "127.0.0.1:9003",
        "--controller-quorum-voters",
        "1@127.0.0.1:9003,2@127.0.0.1:9004",
    ];
    let config = load(&args, Some(file)).unwrap();
    assert_eq!(
        config.controller_listen,
        Some("127.0.0.1:9003".parse().unwrap())
    );
    assert_eq!(
        config.origin("controller.listen"),
        Some("flag --controller-listen")
    );
    assert_eq!(
        config.origin("controller.quorum.voters"),
        Some("flag --controller-quorum-voters")
    );
    assert_eq!(config.controller_quorum_voters.len(), 2);
    let help = load(&["--help"], None).unwrap_err().to_string();
    assert!(help.contains("--controller-listen"), "{help}");
    assert!(help.contains("--controller-quorum-voters"), "{help}");
}

#[test]
fn typed_cluster_fields() {
    let file: String = KEYS
        .iter()
        .map(|(key, toml, _, _)| format!("{key} = {toml}\n"))
        .collect();
    let config = load(&[], Some(&file)).unwrap();
    assert_eq!(config.process_roles, ["controller", "broker"]);
    assert_eq!(
        config.controller_listen,
        Some("127.0.0.1:9301".parse().unwrap())
    );
    assert_eq!(
        config.controller_quorum_voters,
        [
            QuorumVoter {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9191
            },
            QuorumVoter {
                node_id: 2,
                host: "localhost".into(),
                port: 9192
            },
        ]
    );
    assert_eq!(config.broker_session_timeout_ms, 18_000);
    assert_eq!(config.broker_heartbeat_interval_ms, 3000);
    assert_eq!(config.controller_quorum_election_timeout_ms, 1500);
    assert_eq!(
        config.metadata_log_max_record_bytes_between_snapshots,
        1 << 20
    );
    assert_eq!(config.replica_lag_time_max_ms, 45_000);
    assert_eq!(config.replica_fetch_max_bytes, 2 << 20);
    assert_eq!(config.replica_fetch_wait_max_ms, 250);
    assert_eq!(config.replica_fetch_min_bytes, 16);
    assert_eq!(config.replica_fetch_response_max_bytes, 5 << 20);
    assert_eq!(config.replica_fetch_backoff_ms, 2000);
    assert!(config.unclean_leader_election_enable);
    assert!(
        config.log.unclean_leader_election_enable,
        "topics inherit it"
    );
    assert_eq!(config.log.min_insync_replicas, 2, "topics inherit it");
    assert!(!config.auto_leader_rebalance_enable);
    assert_eq!(config.leader_imbalance_check_interval_seconds, 60);
    assert_eq!(config.leader_imbalance_per_broker_percentage, 25);
    assert_eq!(config.offsets_topic_replication_factor, 1);
}

#[test]
fn cluster_defaults() {
    let config = BrokerConfig::default();
    assert_eq!(config.process_roles, ["broker", "controller"]);
    assert_eq!(config.controller_listen, None);
    assert_eq!(config.controller_quorum_voters, []);
    assert_eq!(config.broker_session_timeout_ms, 9000);
    assert_eq!(config.broker_heartbeat_interval_ms, 2000);
    assert_eq!(config.controller_quorum_election_timeout_ms, 1000);
    assert_eq!(
        config.metadata_log_max_record_bytes_between_snapshots,
        20_971_520
    );
    assert_eq!(config.replica_lag_time_max_ms, 30_000);
    assert_eq!(config.replica_fetch_max_bytes, 1_048_576);
    assert_eq!(config.replica_fetch_wait_max_ms, 500);
    assert_eq!(config.replica_fetch_min_bytes, 1);
    assert_eq!(config.replica_fetch_response_max_bytes, 10_485_760);
    assert_eq!(config.replica_fetch_backoff_ms, 1000);
    assert!(!config.unclean_leader_election_enable);
    assert!(config.auto_leader_rebalance_enable);
    assert_eq!(config.leader_imbalance_check_interval_seconds, 300);
    assert_eq!(config.leader_imbalance_per_broker_percentage, 10);
    assert_eq!(config.offsets_topic_replication_factor, 3, "Kafka's");
    assert_eq!(config.default_replication_factor, 1);
    assert_eq!(config.log.min_insync_replicas, 1);
    assert!(!config.log.unclean_leader_election_enable);

    // Read-only as in Kafka, except the two that Kafka updates dynamically.
    let entries = config.describe();
    let dynamic = ["unclean.leader.election.enable", "min.insync.replicas"];
    for (key, ..) in KEYS {
        let described = entry(&entries, key);
        assert_eq!(described.read_only, !dynamic.contains(key), "{key}");
        assert_eq!(described.source, ConfigSource::DefaultConfig, "{key}");
        let is_dynamic = validate_dynamic_broker_config(key, Some("1")).map_or_else(
            |error| !error.message.contains("cannot be updated dynamically"),
            |()| true,
        );
        assert_eq!(is_dynamic, dynamic.contains(key), "{key}");
    }
    let listen = entry(&entries, "controller.listen");
    assert_eq!(listen.value, None, "no voters, no controller listener");
    assert_eq!(
        entry(&entries, "controller.quorum.voters").config_type,
        ConfigType::List
    );
    assert_eq!(
        entry(&entries, "process.roles").config_type,
        ConfigType::List
    );
}

#[test]
fn single_node_needs_no_cluster_keys() {
    let config = load(&["--node-id", "7", "--listen", "127.0.0.1:0"], None).unwrap();
    assert_eq!(config.node_id, 7, "any node id: no voters to be among");
    assert_eq!(config.controller_listen, None);
    assert!(config.controller_quorum_voters.is_empty());
    // A controller listener may still be named; nothing requires it.
    let config = load(&["--controller-listen", "127.0.0.1:9191"], None).unwrap();
    assert_eq!(
        config.controller_listen,
        Some("127.0.0.1:9191".parse().unwrap())
    );
    let config = load(&["--controller-quorum-voters", ""], None).unwrap();
    assert!(config.controller_quorum_voters.is_empty());
}

#[test]
fn controller_listen_defaults_to_own_voter_entry() {
    let voters = "1@localhost:9191,2@127.0.0.2:9192,3@[::1]:9193";
    let cases = [
        ("1", "127.0.0.1:9191"),
        ("2", "127.0.0.2:9192"),
        ("3", "[::1]:9193"),
    ];
    for (node, expected) in cases {
        let args = ["--node-id", node, "--controller-quorum-voters", voters];
        let config = load(&args, None).unwrap();
        assert_eq!(
            config.controller_listen,
            Some(expected.parse().unwrap()),
            "node {node}"
        );
        let described = entry(&config.describe(), "controller.listen").clone();
        assert_eq!(described.value.as_deref(), Some(expected));
        assert_eq!(described.source, ConfigSource::DefaultConfig);
        assert_eq!(config.controller_quorum_voters[2].host, "::1");
    }
    // An explicit controller.listen wins over the voter entry.
    let args = [
        "--controller-quorum-voters",
        voters,
        "--controller-listen",
        "0.0.0.0:9191",
    ];
    let config = load(&args, None).unwrap();
    assert_eq!(
        config.controller_listen,
        Some("0.0.0.0:9191".parse().unwrap())
    );
    // Read-only, and resolved once: runtime overrides keep it.
    let dynamic = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    let next = config.with_dynamic(&dynamic);
    assert_eq!(next.controller_listen, config.controller_listen);
    assert_eq!(next.log.min_insync_replicas, 2);
}

#[rustfmt::skip]
const ERRORS: &[(&[&str], Option<&str>, &str)] = &[
    (&["--set", "process.roles=broker"], None, "process.roles"),
    (&["--set", "process.roles=controller"], None, "process.roles"),
    (&["--set", "process.roles=broker,broker"], None, "process.roles"),
    (&["--set", "process.roles="], None, "process.roles"),
    (&[], Some("process.roles = \"worker\""), "process.roles"),
    (&["--controller-quorum-voters", "1@127.0.0.1"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1-127.0.0.1:9191"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "x@127.0.0.1:9191"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters=-1@127.0.0.1:9191"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@:9191"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@127.0.0.1:9191,"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@a@b:9191"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@127.0.0.1:70000"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@127.0.0.1:0"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "1@127.0.0.1:9191,1@127.0.0.1:9192"], None, "controller.quorum.voters"),
    (&["--controller-quorum-voters", "2@127.0.0.1:9191,3@127.0.0.1:9192"], None, "controller.quorum.voters"),
    (&[], Some("controller.quorum.voters = [\"1@127.0.0.1:9191\", \"2@h\"]"), "controller.quorum.voters"),
    (&["--controller-listen", "example.com:9191"], None, "controller.listen"),
    (&["--controller-listen", "127.0.0.1:9092"], None, "controller.listen"),
    (&["--controller-listen", "0.0.0.0:9092"], None, "controller.listen"),
    (&["--controller-quorum-voters", "1@nonexistent.invalid:9191"], None, "controller.listen"),
    (&["--set", "broker.session.timeout.ms=0"], None, "broker.session.timeout.ms"),
    (&["--set", "broker.heartbeat.interval.ms=9000"], None, "broker.heartbeat.interval.ms"),
    (&[], Some("broker.session.timeout.ms = 1000"), "broker.heartbeat.interval.ms"),
    (&["--set", "controller.quorum.election.timeout.ms=0"], None, "controller.quorum.election.timeout.ms"),
    (&["--set", "metadata.log.max.record.bytes.between.snapshots=0"], None, "metadata.log.max.record.bytes.between.snapshots"),
    (&["--set", "replica.lag.time.max.ms=-1"], None, "replica.lag.time.max.ms"),
    (&["--set", "replica.lag.time.max.ms=400"], None, "replica.fetch.wait.max.ms"),
    (&["--set", "replica.fetch.max.bytes=2147483648"], None, "replica.fetch.max.bytes"),
    (&["--set", "replica.fetch.wait.max.ms=-1"], None, "replica.fetch.wait.max.ms"),
    (&["--set", "replica.fetch.min.bytes=x"], None, "replica.fetch.min.bytes"),
    (&["--set", "replica.fetch.response.max.bytes=-5"], None, "replica.fetch.response.max.bytes"),
    (&["--set", "replica.fetch.backoff.ms=-1"], None, "replica.fetch.backoff.ms"),
    (&["--set", "unclean.leader.election.enable=yes"], None, "unclean.leader.election.enable"),
    (&["--set", "min.insync.replicas=0"], None, "min.insync.replicas"),
    (&["--set", "auto.leader.rebalance.enable=1"], None, "auto.leader.rebalance.enable"),
    (&["--set", "leader.imbalance.check.interval.seconds=0"], None, "leader.imbalance.check.interval.seconds"),
    (&["--set", "leader.imbalance.per.broker.percentage=101"], None, "leader.imbalance.per.broker.percentage"),
    (&["--set", "offsets.topic.replication.factor=0"], None, "offsets.topic.replication.factor"),
];

#[test]
fn cluster_errors_name_the_key() {
    for (args, toml, key) in ERRORS {
        check(args, *toml, ErrorKey(key));
    }
}

#[test]
fn cluster_error_messages() {
    let error = load(&["--set", "process.roles=broker"], None).unwrap_err();
    assert!(
        error
            .message
            .contains("only combined mode (broker,controller) is supported in this version"),
        "{error}"
    );
    let error = load(&["--set", "broker.heartbeat.interval.ms=9000"], None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "config error: key 'broker.heartbeat.interval.ms' in flag --set: \
         9000 is not less than broker.session.timeout.ms 9000"
    );
    let voters = "2@127.0.0.1:9191,3@127.0.0.1:9192";
    let error = load(&["--controller-quorum-voters", voters], None).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "config error: key 'controller.quorum.voters' in flag --controller-quorum-voters: \
             node.id 1 is not among the voters {voters}"
        )
    );
    let error = load(&["--controller-quorum-voters", "1@h:1,1@h:2"], None).unwrap_err();
    assert!(
        error.message.contains("node id 1 is listed twice"),
        "{error}"
    );
    let error = load(&["--controller-quorum-voters", "1@h:0"], None).unwrap_err();
    assert!(error.message.contains("port 0"), "{error}");
    let error = load(&["--controller-quorum-voters", "1@h"], None).unwrap_err();
    assert!(error.message.contains("ID@HOST:PORT"), "{error}");
}

#[test]
fn cluster_topic_keys() {
    let broker = load(&["--set", "min.insync.replicas=2"], None).unwrap();
    let topic = broker.topic_config(&overrides(&[("unclean.leader.election.enable", "true")]));
    assert_eq!(
        topic.min_insync_replicas, 2,
        "inherited from the broker key"
    );
    assert!(topic.unclean_leader_election_enable);
    let topic = broker.topic_config(&overrides(&[("min.insync.replicas", "3")]));
    assert_eq!(topic.min_insync_replicas, 3);
    assert!(!topic.unclean_leader_election_enable);
    let entries = describe_topic(&broker, &BTreeMap::new());
    let min_isr = entry(&entries, "min.insync.replicas");
    assert_eq!(min_isr.value.as_deref(), Some("2"));
    assert_eq!(min_isr.source, ConfigSource::StaticBrokerConfig);
    // Runtime changes of the two dynamic keys reach the broker and topics.
    let dynamic = overrides(&[("unclean.leader.election.enable", "true")]);
    let next = broker.with_dynamic(&dynamic);
    assert!(next.unclean_leader_election_enable);
    assert!(
        next.topic_config(&BTreeMap::new())
            .unclean_leader_election_enable
    );
}

#[test]
fn example_cluster_node1_loads() {
    let (path, _) = example("cluster-node1.toml");
    let path = path.display().to_string();
    let config = load(&["-c", &path], None).unwrap();
    assert_eq!(config.node_id, 1);
    assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(
        config.controller_listen,
        Some("127.0.0.1:9191".parse().unwrap())
    );
    assert_eq!(config.data_dir, PathBuf::from("./data/node1"));
    let ids: Vec<i32> = config
        .controller_quorum_voters
        .iter()
        .map(|v| v.node_id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    // Node 3 from the same file, as its comment says.
    let args = [
        "-c",
        &path,
        "--node-id",
        "3",
        "--data-dir",
        "./data/node3",
        "--listen",
        "127.0.0.1:9094",
        "--controller-listen",
        "127.0.0.1:9193",
    ];
    let config = load(&args, None).unwrap();
    assert_eq!(config.node_id, 3);
    assert_eq!(
        config.controller_listen,
        Some("127.0.0.1:9193".parse().unwrap())
    );
}

#[test]
fn an_ssl_controller_listener_needs_both_tls_files_and_requires_client_certificates() {
    let listeners = "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093";
    let base = [
        "--set",
        listeners,
        "--set",
        "controller.listener.names=CONTROLLER",
    ];
    let with = |protocol: &str, files: &[&'static str]| {
        let map =
            format!("listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:{protocol}");
        let mut args: Vec<String> = base.iter().map(|arg| arg.to_string()).collect();
        args.extend(["--set".to_string(), map]);
        for file in files {
            args.extend(["--set".to_string(), file.to_string()]);
        }
        args
    };
    let run = |args: Vec<String>| load(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let keystore = "ssl.keystore.location=/certs/server.pem";
    let truststore = "ssl.truststore.location=/certs/ca.pem";

    let plain = run(with("PLAINTEXT", &[])).unwrap();
    assert_eq!(plain.security.controller_tls, None);
    assert_eq!(
        plain.controller_listen,
        Some("127.0.0.1:9093".parse().unwrap())
    );

    let ssl = run(with("SSL", &[keystore, truststore])).unwrap();
    let files = ssl
        .security
        .controller_tls
        .expect("an SSL controller listener");
    assert_eq!(files.client_auth, ClientAuth::Required);
    assert_eq!(files.truststore, Some("/certs/ca.pem".into()));
    assert_eq!(
        ssl.controller_listen,
        Some("127.0.0.1:9093".parse().unwrap())
    );

    for (protocol, files, key) in [
        ("SSL", vec![truststore], "ssl.keystore.location"),
        ("SSL", vec![keystore], "ssl.truststore.location"),
        (
            "SASL_SSL",
            vec![keystore, truststore],
            "controller.listener.names",
        ),
    ] {
        let error = run(with(protocol, &files)).unwrap_err();
        assert_eq!(error.key, key, "{error}");
        assert!(error.to_string().contains(&format!("'{key}'")), "{error}");
    }
}
