//! Starting this node's part of the cluster on shard 0: the metadata
//! quorum and its peers, the controller listener, the controller's duties,
//! and the broker's own heartbeat to the active controller.
//!
//! Also the data dir's identity file, `meta.properties` (Kafka's name and
//! keys: `node.id`, `cluster.id`), which keeps a data dir from being used
//! by another node or joining another cluster.
//!
//! Runs on shard 0. Must not: serve Kafka clients (shards do) or decide
//! metadata (the controller does).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use protobuf::Message as _;
use uuid::Uuid;

use super::controller::{BrokerHeartbeat, Controller, ControllerRequest};
use super::quorum::{Install, Quorum, QuorumConfig};
use super::records::{Endpoint, MetadataRecord};
use super::rpc::{self, FrameKind};
use super::voters::VoterAddresses;
use crate::config::BrokerConfig;

pub const META_PROPERTIES_FILE_NAME: &str = "meta.properties";
/// The metadata log's directory under the data dir (Kafka's name).
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";
/// Heartbeats are this fast until the broker is registered and unfenced.
const FIRST_HEARTBEAT_INTERVAL_MS: u64 = 100;

/// What the data dir says about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaProperties {
    pub node_id: Option<i32>,
    pub cluster_id: Option<String>,
}

pub fn read_meta_properties(data_dir: &Path) -> Result<MetaProperties, String> {
    let path = data_dir.join(META_PROPERTIES_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(MetaProperties::default())
        }
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let mut meta = MetaProperties::default();
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("node.id=") {
            let id = value
                .parse()
                .map_err(|_| format!("{}: bad node.id {value:?}", path.display()))?;
            meta.node_id = Some(id);
        } else if let Some(value) = line.strip_prefix("cluster.id=") {
            meta.cluster_id = Some(value.to_string());
        }
    }
    Ok(meta)
}

/// Writes `meta.properties` atomically. Blocking.
pub fn write_meta_properties(data_dir: &Path, meta: &MetaProperties) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(META_PROPERTIES_FILE_NAME);
    let temporary = path.with_extension("properties.tmp");
    let mut text = String::from("#Written by Sluice\nversion=1\n");
    if let Some(id) = meta.node_id {
        text.push_str(&format!("node.id={id}\n"));
    }
    if let Some(id) = &meta.cluster_id {
        text.push_str(&format!("cluster.id={id}\n"));
    }
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Checks at start-up that the data dir is this node's; records the node
/// id in a new one. Blocking.
pub fn claim_data_dir(data_dir: &Path, node_id: i32) -> Result<MetaProperties, String> {
    let mut meta = read_meta_properties(data_dir)?;
    match meta.node_id {
        Some(found) if found != node_id => Err(format!(
            "data dir {} belongs to node.id {found}, but this broker is node.id {node_id} (key 'node.id')",
            data_dir.display()
        )),
        Some(_) => Ok(meta),
        None => {
            meta.node_id = Some(node_id);
            write_meta_properties(data_dir, &meta)
                .map_err(|error| format!("cannot write {}: {error}", data_dir.display()))?;
            Ok(meta)
        }
    }
}

pub struct NodeStart {
    pub config: std::sync::Arc<BrokerConfig>,
    /// This run of the broker (Kafka's incarnation id): a restart registers
    /// anew, and serves clients only once that registration is applied.
    pub incarnation: Uuid,
    pub data_dir: PathBuf,
    pub meta: MetaProperties,
    pub bootstrap: Option<Vec<MetadataRecord>>,
    pub install: Install,
    pub fatal: Box<dyn Fn(String)>,
}

/// Opens the quorum and starts everything of the cluster on this shard.
pub fn start(start: NodeStart) -> Result<Rc<Controller>, String> {
    let config = start.config;
    let voters = Rc::new(VoterAddresses::resolve(&config)?);
    let transport = Rc::new(rpc::Transport::new(
        config.security.controller_tls.as_ref(),
    )?);
    let quorum_config = QuorumConfig {
        node_id: config.node_id,
        voters: voters.all(),
        election_timeout_ms: config.controller_quorum_election_timeout_ms,
        snapshot_bytes: config.metadata_log_max_record_bytes_between_snapshots,
        cluster_id: start.meta.cluster_id.clone(),
    };
    let dir = start.data_dir.join(METADATA_LOG_DIR_NAME);
    let (quorum, queues) = Quorum::open(&dir, quorum_config, start.install, start.fatal)?;
    let peers = voters.all().into_keys().filter(|id| *id != config.node_id);
    for (peer, queue) in peers.zip(queues) {
        glommio::spawn_local(super::quorum::peer_sender(
            quorum.clone(),
            peer,
            voters.clone(),
            transport.clone(),
            queue,
        ))
        .detach();
    }
    let controller = Rc::new(Controller::new(
        quorum.clone(),
        voters.clone(),
        transport.clone(),
        config.clone(),
        start.bootstrap,
    ));
    if !config.controller_quorum_voters.is_empty() {
        let listen = config
            .controller_listen
            .ok_or("key 'controller.listen' is needed with 'controller.quorum.voters'")?;
        let listener = crate::net::bind_exclusive(listen).map_err(|error| {
            format!("cannot listen on {listen} (key 'controller.listen'): {error}")
        })?;
        let tls = config.security.controller_tls.is_some();
        tracing::info!(%listen, voters = voters.all().len(), tls, "controller listening");
        glommio::spawn_local(serve(
            listener,
            transport,
            quorum.clone(),
            controller.clone(),
        ))
        .detach();
    }
    glommio::spawn_local(quorum.clone().run()).detach();
    glommio::spawn_local(controller.clone().run_duties()).detach();
    glommio::spawn_local(heartbeat_loop(
        controller.clone(),
        config.clone(),
        start.incarnation,
        start.data_dir,
        start.meta,
    ))
    .detach();
    Ok(controller)
}

/// The broker's side of liveness: heartbeats to the active controller
/// (registering on the first), and `meta.properties` completed with the
/// cluster id once the quorum has one.
async fn heartbeat_loop(
    controller: Rc<Controller>,
    config: std::sync::Arc<BrokerConfig>,
    incarnation: Uuid,
    data_dir: PathBuf,
    mut meta: MetaProperties,
) {
    let heartbeat = BrokerHeartbeat {
        node_id: config.node_id,
        incarnation,
        host: config.advertise_host.clone(),
        port: config.advertise_port,
        rack: None,
        endpoints: config
            .security
            .listeners
            .iter()
            .map(|listener| Endpoint {
                listener: listener.name.clone(),
                host: listener.advertised_host.clone(),
                port: listener.advertised_port,
            })
            .collect(),
    };
    loop {
        let request = ControllerRequest::BrokerHeartbeat(heartbeat.clone());
        if let Err(error) = controller.call(request).await {
            tracing::debug!(error = %error.message, "heartbeat failed");
        }
        let image = controller.quorum().image();
        if meta.cluster_id.is_none() && !image.cluster_id.is_empty() {
            meta.cluster_id = Some(image.cluster_id.clone());
            let (dir, written) = (data_dir.clone(), meta.clone());
            let outcome = glommio::executor()
                .spawn_blocking(move || write_meta_properties(&dir, &written))
                .await;
            if let Err(error) = outcome {
                tracing::warn!(%error, "cannot record the cluster id in meta.properties");
            }
        }
        let interval = if image.is_live(config.node_id) {
            config.broker_heartbeat_interval_ms
        } else {
            FIRST_HEARTBEAT_INTERVAL_MS
        };
        glommio::timer::sleep(Duration::from_millis(interval)).await;
    }
}

/// Serves the controller listener: Raft messages from other voters, and
/// controller requests forwarded by other nodes. On an SSL listener, a
/// connection that does not complete mutual TLS is closed before any
/// frame of it is read.
async fn serve(
    listener: TcpListener,
    transport: Rc<rpc::Transport>,
    quorum: Rc<Quorum>,
    controller: Rc<Controller>,
) {
    loop {
        match listener.accept().await {
            Ok(tcp) => {
                let (quorum, controller) = (quorum.clone(), controller.clone());
                let transport = transport.clone();
                glommio::spawn_local(async move {
                    let stream = match transport.accept(tcp).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::warn!(%error, "controller connection refused: TLS handshake failed");
                            return;
                        }
                    };
                    if let Err(error) = serve_connection(stream, quorum, controller).await {
                        tracing::debug!(%error, "controller connection closed");
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "controller listener accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: rpc::RpcStream,
    quorum: Rc<Quorum>,
    controller: Rc<Controller>,
) -> std::io::Result<()> {
    let (kind, payload) = rpc::read_frame(&mut stream).await?;
    if kind != FrameKind::Hello {
        return Err(rpc::invalid("expected a hello"));
    }
    let theirs: rpc::Hello = rpc::decode_json(&payload)?;
    let mine = quorum.hello();
    rpc::write_frame(&mut stream, FrameKind::Hello, &rpc::encode_json(&mine)).await?;
    if let Some(why) = mine.mismatch(&theirs) {
        quorum.foreign_peer(theirs.node_id, &why);
        return Ok(());
    }
    loop {
        let (kind, payload) = rpc::read_frame(&mut stream).await?;
        match kind {
            FrameKind::Raft => {
                let message = raft::eraftpb::Message::parse_from_bytes(&payload)
                    .map_err(|error| rpc::invalid(&error.to_string()))?;
                quorum.step(message);
            }
            FrameKind::Request => {
                let request: ControllerRequest = rpc::decode_json(&payload)?;
                let reply = controller.execute(request).await;
                rpc::write_frame(&mut stream, FrameKind::Response, &rpc::encode_json(&reply))
                    .await?;
            }
            FrameKind::Hello | FrameKind::Response => return Err(rpc::invalid("unexpected frame")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_claim_a_data_dir_for_one_node() {
        let dir = tempfile::tempdir().unwrap();
        let meta = claim_data_dir(dir.path(), 2).unwrap();
        assert_eq!(meta.node_id, Some(2));
        let error = claim_data_dir(dir.path(), 3).unwrap_err();
        assert!(error.contains("belongs to node.id 2"), "{error}");
        let with_cluster = MetaProperties {
            node_id: Some(2),
            cluster_id: Some("abc".into()),
        };
        write_meta_properties(dir.path(), &with_cluster).unwrap();
        assert_eq!(read_meta_properties(dir.path()).unwrap(), with_cluster);
    }
}
