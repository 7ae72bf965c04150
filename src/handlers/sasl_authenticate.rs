//! SaslAuthenticate (key 36): one SASL token each way, after SaslHandshake
//! (key 17) chose the mechanism; KIP-368 re-authentication on an
//! authenticated connection, with the session lifetime in the response.
//!
//! The exchange itself is `security::sasl` (pure); [`exchange`] looks the
//! credentials up in the metadata image, sets the connection's principal,
//! and counts and logs failures; the connection calls it too for the bare
//! tokens that follow a version 0 handshake. A failure answers
//! SASL_AUTHENTICATION_FAILED with one message whatever was wrong.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse};
use sha2::{Digest, Sha256};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::metrics::ShardMetrics;
use crate::protocol::error_codes;
use crate::security::sasl::{Mechanism, Step};
use crate::security::scram::{ScramCredential, ScramMechanism, ITERATIONS_MIN};
use crate::security::{Principal, Session};
use crate::shard::Shard;

pub const API: ApiSupport = super::api(ApiKey::SaslAuthenticate, 0, 2);

/// One step's outcome for the connection.
pub enum Exchanged {
    /// Send these bytes; more tokens follow.
    Continue(Vec<u8>),
    /// Authenticated: send these bytes; the session lasts this long (0:
    /// forever).
    Done(Vec<u8>, u64),
    /// The message for SASL_AUTHENTICATION_FAILED.
    Failed(String),
}

pub fn handle(
    context: &RequestContext,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let exchanged = exchange(
        &context.shard,
        &context.session,
        context.client_address,
        &request.auth_bytes,
    );
    let response = SaslAuthenticateResponse::default();
    match exchanged {
        Exchanged::Continue(bytes) => response.with_auth_bytes(Bytes::from(bytes)),
        Exchanged::Failed(message) => response
            .with_error_code(error_codes::SASL_AUTHENTICATION_FAILED)
            .with_error_message(Some(str_bytes(message))),
        Exchanged::Done(bytes, lifetime_ms) if context.api_version >= 1 => response
            .with_auth_bytes(Bytes::from(bytes))
            .with_session_lifetime_ms(i64::try_from(lifetime_ms).unwrap_or(i64::MAX)),
        Exchanged::Done(bytes, _) => response.with_auth_bytes(Bytes::from(bytes)),
    }
}

/// One token of `session`'s exchange.
pub fn exchange(
    shard: &Shard,
    session: &Session,
    peer: Option<SocketAddr>,
    token: &[u8],
) -> Exchanged {
    let Some(sasl) = &session.sasl else {
        return Exchanged::Failed("This listener does not use SASL".to_string());
    };
    let image = shard.image();
    let lookup = |user: &str, mechanism: ScramMechanism| {
        image.scram_credentials.get(user)?.get(&mechanism).cloned()
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut state = sasl.borrow_mut();
    let previous = state.authenticated_user().map(str::to_string);
    let step = state.step(token, lookup, &nonce, |_| decoy(token));
    let failed = |mechanism: Option<Mechanism>, why: &str| {
        ShardMetrics::count(&shard.metrics.sasl_authentication_failures);
        let mechanism = mechanism.map_or("(none)", Mechanism::name);
        tracing::warn!(?peer, listener = %session.listener(), mechanism, why,
            "SASL authentication failed");
        Exchanged::Failed(format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
        ))
    };
    match step {
        Step::Continue(bytes) => Exchanged::Continue(bytes),
        Step::Failed { mechanism } => failed(mechanism, "invalid credentials or token"),
        Step::Done { user, .. } if previous.as_ref().is_some_and(|before| *before != user) => {
            failed(None, "re-authentication as another user")
        }
        Step::Done { user, response } => {
            let lifetime_ms = shard.config.security.connections_max_reauth_ms;
            let expires_at =
                (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms));
            tracing::info!(?peer, user, "SASL authenticated");
            state.authenticated(user.clone(), expires_at);
            session.set_principal(Principal::user(user));
            Exchanged::Done(response, lifetime_ms)
        }
    }
}

/// A made-up credential for a user with none, the same for the same user
/// while this broker runs, so repeated tries show a stable salt and an
/// unknown user cannot be told from a wrong password.
fn decoy(client_first: &[u8]) -> ScramCredential {
    static SECRET: OnceLock<[u8; 16]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| *uuid::Uuid::new_v4().as_bytes());
    let user = crate::security::scram::parse_client_first(client_first)
        .map(|client| client.user)
        .unwrap_or_default();
    let salt = Sha256::new()
        .chain_update(secret)
        .chain_update(user.as_bytes())
        .finalize()[..16]
        .to_vec();
    ScramCredential {
        salt,
        stored_key: Vec::new(),
        server_key: Vec::new(),
        iterations: ITERATIONS_MIN,
    }
}
