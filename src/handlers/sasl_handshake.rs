//! SaslHandshake (key 17): the client names its SASL mechanism; the
//! tokens follow in SaslAuthenticate (key 36).
//!
//! After a version 0 handshake the tokens come as bare frames (size and
//! bytes, no Kafka header), which the connection hands to
//! `sasl_authenticate::exchange`; after version 1 they come in
//! SaslAuthenticate requests.

use kafka_protocol::messages::{ApiKey, SaslHandshakeRequest, SaslHandshakeResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::sasl::Mechanism;

pub const API: ApiSupport = super::api(ApiKey::SaslHandshake, 0, 1);

pub fn handle(context: &RequestContext, request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let enabled = &context.shard.config.security.sasl_mechanisms;
    let response = SaslHandshakeResponse::default()
        .with_mechanisms(enabled.iter().cloned().map(str_bytes).collect());
    let Some(sasl) = &context.session.sasl else {
        // Not a SASL listener: nothing to authenticate.
        return response.with_error_code(error_codes::ILLEGAL_SASL_STATE);
    };
    let requested = request.mechanism.as_str();
    let mechanism = enabled
        .iter()
        .any(|name| name == requested)
        .then(|| Mechanism::from_name(requested))
        .flatten();
    match mechanism {
        Some(mechanism) => {
            sasl.borrow_mut()
                .handshake(mechanism, context.api_version == 0);
            response
        }
        None => response.with_error_code(error_codes::UNSUPPORTED_SASL_MECHANISM),
    }
}
