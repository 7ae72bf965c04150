//! Kafka's listener keys: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `inter.broker.listener.name`,
//! `controller.listener.names`, and the TLS and SASL keys they need.
//!
//! Owns: turning those keys (or the older `listen`/`advertise`, which mean
//! one PLAINTEXT listener) into [`ListenerConfig`]s, with errors that name
//! the key at fault.
//!
//! Must not: open sockets or read certificate files (the TLS files are
//! read by `net::tls` at start-up and on every change).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::validate::{parse_host_port, parse_listen};
use super::values::Values;
use super::ConfigError;

/// Kafka's security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(text: &str) -> Option<SecurityProtocol> {
        match text {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One Kafka listener: where it binds, what it speaks, what Metadata
/// answers to the clients that came through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// May have port 0 (tests): the server fills in the bound port.
    pub address: SocketAddr,
    pub advertised_host: String,
    /// 0 until bound when the listener has port 0 and no advertised entry.
    pub advertised_port: u16,
}

/// Who must show a client certificate on an SSL listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Requested,
    None,
}

/// The TLS files of every SSL and SASL_SSL listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (and key, when `key` is `None`).
    pub keystore: PathBuf,
    pub key: Option<PathBuf>,
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Everything about who may connect and how they prove it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    pub listeners: Vec<ListenerConfig>,
    pub inter_broker_listener: String,
    /// Present when some listener uses TLS.
    pub tls: Option<TlsFiles>,
    pub sasl_mechanisms: Vec<String>,
    pub connections_max_reauth_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_max_idle_ms: u64,
    /// The address of a listener named in `controller.listener.names`.
    pub controller_listener: Option<SocketAddr>,
    /// Present when that listener is SSL: controllers then talk mutual TLS
    /// (client certificates always required, whatever `ssl.client.auth`).
    pub controller_tls: Option<TlsFiles>,
    /// This broker's SASL/PLAIN user and password on a SASL inter-broker
    /// listener (`inter.broker.sasl.username`, `.password`).
    pub inter_broker_credentials: (String, String),
}

impl SecurityConfig {
    /// The listener other brokers replicate through.
    pub fn inter_broker(&self) -> &ListenerConfig {
        self.listeners
            .iter()
            .find(|listener| listener.name == self.inter_broker_listener)
            .expect("validated: inter.broker.listener.name names a listener")
    }
}

fn invalid(values: &Values, key: &str, message: String) -> ConfigError {
    ConfigError::invalid(key, values.origin_of(key), message)
}

fn list(values: &Values, key: &str) -> Vec<String> {
    values
        .text(key)
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// `NAME://HOST:PORT` split into the name and `HOST:PORT`.
fn split_url(item: &str) -> Option<(String, &str)> {
    let (name, rest) = item.split_once("://")?;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    valid.then(|| (name.to_ascii_uppercase(), rest))
}

pub(super) fn security_config(values: &Values) -> Result<SecurityConfig, ConfigError> {
    let protocols = protocol_map(values)?;
    let controller_names = list(values, "controller.listener.names");
    let mut listeners = Vec::new();
    let mut controller_listener = None;
    let mut controller_protocol = None;
    if list(values, "listeners").is_empty() {
        listeners.push(legacy_listener(values));
    } else {
        for item in list(values, "listeners") {
            let message = || {
                format!("expected NAME://IP:PORT such as PLAINTEXT://127.0.0.1:9092, got {item:?}")
            };
            let (name, address) =
                split_url(&item).ok_or_else(|| invalid(values, "listeners", message()))?;
            let address =
                parse_listen(address).ok_or_else(|| invalid(values, "listeners", message()))?;
            if listeners
                .iter()
                .any(|listener: &ListenerConfig| listener.name == name)
            {
                let message = format!("listener name {name} appears twice");
                return Err(invalid(values, "listeners", message));
            }
            let protocol = protocols
                .iter()
                .find(|(mapped, _)| *mapped == name)
                .map(|(_, protocol)| *protocol)
                .ok_or_else(|| {
                    let message = format!(
                        "listener {name} has no security protocol in listener.security.protocol.map"
                    );
                    invalid(values, "listeners", message)
                })?;
            if controller_names.contains(&name) {
                if protocol.uses_sasl() {
                    let message = format!(
                        "controller listener {name} must be PLAINTEXT or SSL: controllers authenticate each other with mutual TLS, not SASL"
                    );
                    return Err(invalid(values, "controller.listener.names", message));
                }
                controller_listener = Some(address);
                controller_protocol = Some((name, protocol));
                continue;
            }
            listeners.push(ListenerConfig {
                name,
                protocol,
                address,
                advertised_host: address.ip().to_string(),
                advertised_port: address.port(),
            });
        }
    }
    if listeners.is_empty() {
        let message = "no Kafka listener: every listener is a controller listener".to_string();
        return Err(invalid(values, "listeners", message));
    }
    apply_advertised(values, &mut listeners)?;
    let inter_broker_listener = inter_broker_name(values, &listeners)?;
    let tls = tls_files(values, &listeners)?;
    let controller_tls = match controller_protocol {
        Some((name, SecurityProtocol::Ssl)) => Some(controller_tls_files(values, &name)?),
        _ => None,
    };
    let inter_broker_credentials =
        inter_broker_credentials(values, &listeners, &inter_broker_listener)?;
    let size = |key| usize::try_from(values.unsigned(key)).unwrap_or(usize::MAX);
    Ok(SecurityConfig {
        listeners,
        inter_broker_listener,
        tls,
        sasl_mechanisms: list(values, "sasl.enabled.mechanisms"),
        connections_max_reauth_ms: values.unsigned("connections.max.reauth.ms"),
        max_connections: size("max.connections"),
        max_connections_per_ip: size("max.connections.per.ip"),
        connections_max_idle_ms: values.unsigned("connections.max.idle.ms"),
        controller_listener,
        controller_tls,
        inter_broker_credentials,
    })
}

fn inter_broker_credentials(
    values: &Values,
    listeners: &[ListenerConfig],
    name: &str,
) -> Result<(String, String), ConfigError> {
    let user = values.text("inter.broker.sasl.username").to_string();
    let password = values.text("inter.broker.sasl.password").to_string();
    let listener = listeners.iter().find(|listener| listener.name == name);
    let protocol = listener.map(|listener| listener.protocol);
    if protocol.is_some_and(SecurityProtocol::uses_sasl) {
        if user.is_empty() {
            let message =
                format!("inter-broker listener {name} uses SASL: this broker needs a user");
            return Err(invalid(values, "inter.broker.sasl.username", message));
        }
        if !list(values, "sasl.enabled.mechanisms")
            .iter()
            .any(|m| m == "PLAIN")
        {
            let message = "brokers authenticate to each other with PLAIN: enable it".to_string();
            return Err(invalid(values, "sasl.enabled.mechanisms", message));
        }
    }
    let no_truststore = values.text("ssl.truststore.location").trim().is_empty();
    if protocol.is_some_and(SecurityProtocol::uses_tls) && no_truststore {
        let message =
            format!("inter-broker listener {name} uses TLS: brokers verify each other against it");
        return Err(invalid(values, "ssl.truststore.location", message));
    }
    Ok((user, password))
}

/// `listen` and `advertise`: one PLAINTEXT listener, as before `listeners`.
fn legacy_listener(values: &Values) -> ListenerConfig {
    let address = parse_listen(values.text("listen")).expect("validated listen address");
    let (advertised_host, advertised_port) = parse_host_port(values.text("advertise"))
        .unwrap_or_else(|| (address.ip().to_string(), address.port()));
    ListenerConfig {
        name: "PLAINTEXT".to_string(),
        protocol: SecurityProtocol::Plaintext,
        address,
        advertised_host,
        advertised_port,
    }
}

fn protocol_map(values: &Values) -> Result<Vec<(String, SecurityProtocol)>, ConfigError> {
    let key = "listener.security.protocol.map";
    list(values, key)
        .iter()
        .map(|pair| {
            let parsed = pair.split_once(':').and_then(|(name, protocol)| {
                Some((
                    name.trim().to_ascii_uppercase(),
                    SecurityProtocol::parse(protocol.trim())?,
                ))
            });
            parsed.ok_or_else(|| {
                let message = format!(
                    "expected NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got {pair:?}"
                );
                invalid(values, key, message)
            })
        })
        .collect()
}

fn apply_advertised(values: &Values, listeners: &mut [ListenerConfig]) -> Result<(), ConfigError> {
    let key = "advertised.listeners";
    for item in list(values, key) {
        let message =
            || format!("expected NAME://HOST:PORT such as SASL_SSL://broker1:9094, got {item:?}");
        let (name, host_port) = split_url(&item).ok_or_else(|| invalid(values, key, message()))?;
        let (host, port) =
            parse_host_port(host_port).ok_or_else(|| invalid(values, key, message()))?;
        let listener = listeners
            .iter_mut()
            .find(|listener| listener.name == name)
            .ok_or_else(|| {
                let message = format!("{name} is not a listener in listeners");
                invalid(values, key, message)
            })?;
        listener.advertised_host = host;
        listener.advertised_port = port;
    }
    for listener in listeners.iter() {
        let unroutable = listener
            .advertised_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if unroutable {
            let key = if list(values, "listeners").is_empty() {
                "advertise"
            } else {
                key
            };
            let message = format!(
                "listener {} binds {}, which clients cannot connect to; set {key} to a routable \
                 address for it",
                listener.name, listener.address
            );
            return Err(invalid(values, key, message));
        }
    }
    Ok(())
}

fn inter_broker_name(values: &Values, listeners: &[ListenerConfig]) -> Result<String, ConfigError> {
    let key = "inter.broker.listener.name";
    let named = values.text(key).trim().to_ascii_uppercase();
    if named.is_empty() {
        let plaintext = listeners
            .iter()
            .find(|listener| listener.protocol == SecurityProtocol::Plaintext);
        return Ok(plaintext.unwrap_or(&listeners[0]).name.clone());
    }
    if !listeners.iter().any(|listener| listener.name == named) {
        let message = format!("{named} is not a listener in listeners");
        return Err(invalid(values, key, message));
    }
    Ok(named)
}

fn path_of(values: &Values, key: &str) -> Option<PathBuf> {
    let text = values.text(key).trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// The files of an SSL controller listener: each controller shows its
/// keystore certificate and verifies the other's against the truststore,
/// as server and as client.
fn controller_tls_files(values: &Values, name: &str) -> Result<TlsFiles, ConfigError> {
    let needed = |key: &str, what: &str| {
        path_of(values, key).ok_or_else(|| {
            let message = format!("controller listener {name} uses SSL: controllers need {what}");
            invalid(values, key, message)
        })
    };
    Ok(TlsFiles {
        keystore: needed("ssl.keystore.location", "a certificate to show each other")?,
        key: path_of(values, "ssl.key.location"),
        truststore: Some(needed(
            "ssl.truststore.location",
            "the CAs to verify each other against",
        )?),
        client_auth: ClientAuth::Required,
    })
}

fn tls_files(
    values: &Values,
    listeners: &[ListenerConfig],
) -> Result<Option<TlsFiles>, ConfigError> {
    let Some(listener) = listeners
        .iter()
        .find(|listener| listener.protocol.uses_tls())
    else {
        return Ok(None);
    };
    let path = |key| path_of(values, key);
    let keystore = path("ssl.keystore.location").ok_or_else(|| {
        let message = format!(
            "listener {} uses TLS and needs a certificate",
            listener.name
        );
        invalid(values, "ssl.keystore.location", message)
    })?;
    let client_auth = match values.text("ssl.client.auth") {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        _ => ClientAuth::None,
    };
    let truststore = path("ssl.truststore.location");
    if client_auth != ClientAuth::None && truststore.is_none() {
        let message = "client certificates need the CAs to verify them against".to_string();
        return Err(invalid(values, "ssl.truststore.location", message));
    }
    Ok(Some(TlsFiles {
        keystore,
        key: path("ssl.key.location"),
        truststore,
        client_auth,
    }))
}
