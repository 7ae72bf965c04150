//! TLS for SSL and SASL_SSL listeners: rustls (ring as its crypto, no
//! OpenSSL) over glommio's `TcpStream` through `futures-rustls`.
//!
//! Owns: reading the PEM files (`ssl.keystore.location`,
//! `ssl.key.location`, `ssl.truststore.location`), the rustls server
//! config with the client-certificate policy (`ssl.client.auth`), reloading
//! it when a file's modification time changes (looked at on a new
//! handshake, at most once per [`RELOAD_CHECK_MS`]), and Kafka's default
//! principal from a client certificate (`User:` + the subject in RFC 2253
//! order, `CN=alice,OU=eng,O=Sluice`).
//!
//! One `TlsServer` per shard (no sharing between shards); each reloads on
//! its own. A reload that fails keeps the previous config and logs why.
//!
//! Must not: touch a connection after the handshake: the connection's
//! reader and writer own the stream (`net/mod.rs`).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{self, RootCertStore, ServerConfig};
use futures_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsFiles};
use crate::security::Principal;

/// How often, at most, a new handshake looks at the files' mtimes.
const RELOAD_CHECK_MS: u64 = 1_000;

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<SystemTime>>,
    checked_at: Instant,
}

pub struct TlsServer {
    files: TlsFiles,
    loaded: RefCell<Loaded>,
}

impl TlsServer {
    /// Reads the files; an error names the key of the file at fault.
    pub fn load(files: &TlsFiles) -> Result<TlsServer, String> {
        let config = server_config(files)?;
        Ok(TlsServer {
            files: files.clone(),
            loaded: RefCell::new(Loaded {
                acceptor: TlsAcceptor::from(config),
                stamps: stamps(files),
                checked_at: Instant::now(),
            }),
        })
    }

    /// The acceptor for a new handshake, reloaded first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut loaded = self.loaded.borrow_mut();
        if loaded.checked_at.elapsed().as_millis() >= u128::from(RELOAD_CHECK_MS) {
            loaded.checked_at = Instant::now();
            let now = stamps(&self.files);
            if now != loaded.stamps {
                loaded.stamps = now;
                match server_config(&self.files) {
                    Ok(config) => {
                        tracing::info!("TLS certificate files changed; reloaded");
                        loaded.acceptor = TlsAcceptor::from(config);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS files changed but cannot be loaded; keeping the previous ones")
                    }
                }
            }
        }
        loaded.acceptor.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [
        Some(&files.keystore),
        files.key.as_ref(),
        files.truststore.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    })
    .collect()
}

fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("key '{key}': cannot read {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "key '{key}': no PEM certificate in {}",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The rustls config of these files; errors name the key at fault.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(&files.keystore, "ssl.keystore.location")?;
    let (key_path, key_name) = match &files.key {
        Some(path) => (path, "ssl.key.location"),
        None => (&files.keystore, "ssl.keystore.location"),
    };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        format!(
            "key '{key_name}': no usable private key in {}: {error}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?;
    let builder = match (&files.truststore, files.client_auth) {
        (Some(truststore), ClientAuth::Required | ClientAuth::Requested) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(truststore, "ssl.truststore.location")? {
                roots.add(certificate).map_err(|error| {
                    format!(
                        "key 'ssl.truststore.location': {}: {error}",
                        truststore.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match files.client_auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            }
            .build()
            .map_err(|error| format!("key 'ssl.truststore.location': {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("key 'ssl.keystore.location': certificate and key do not match or are unusable: {error}"))?;
    Ok(Arc::new(config))
}

/// A TLS client for this broker's own connections to other brokers'
/// inter-broker listeners: it trusts `ssl.truststore.location` and shows
/// the broker's keystore certificate when the peer asks for one.
pub fn client_connector(files: &TlsFiles) -> Result<futures_rustls::TlsConnector, String> {
    let truststore = files
        .truststore
        .as_ref()
        .ok_or("key 'ssl.truststore.location': needed to verify other brokers over TLS")?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates(truststore, "ssl.truststore.location")? {
        roots
            .add(certificate)
            .map_err(|error| format!("key 'ssl.truststore.location': {error}"))?;
    }
    let chain = certificates(&files.keystore, "ssl.keystore.location")?;
    let key_path = files.key.as_ref().unwrap_or(&files.keystore);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| format!("no usable private key in {}: {error}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| format!("key 'ssl.keystore.location': {error}"))?;
    Ok(futures_rustls::TlsConnector::from(Arc::new(config)))
}

/// Kafka's default principal for a verified client certificate:
/// `User:` and the subject as `X500Principal.getName()` writes it (RFC
/// 2253: the last RDN first, `,` between RDNs, `+` inside one).
pub fn principal_of(connection: &rustls::ServerConnection) -> Option<Principal> {
    let certificate = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let subject: Vec<_> = parsed.subject().iter().collect();
    let rdns: Vec<String> = subject
        .into_iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let name = x509_parser::objects::oid2abbrev(oid, registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| oid.to_id_string());
                    let value = attribute.as_str().unwrap_or("");
                    format!("{name}={}", escape_rfc2253(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(Principal::user(rdns.join(",")))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, '#' | ' '))
            || (index + 1 == value.chars().count() && character == ' ');
        if special {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2253_escapes_the_specials() {
        assert_eq!(escape_rfc2253("alice"), "alice");
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253("#x "), "\\#x\\ ");
    }

    #[test]
    fn a_missing_keystore_is_an_error_naming_the_key() {
        let files = TlsFiles {
            keystore: "/nonexistent/cert.pem".into(),
            key: None,
            truststore: None,
            client_auth: ClientAuth::None,
        };
        let error = server_config(&files).err().unwrap();
        assert!(error.contains("ssl.keystore.location"), "{error}");
    }
}
