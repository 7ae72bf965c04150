//! Codec glue over `kafka-protocol`: request frames in, response frames out.
//!
//! Runs on whichever shard accepted the connection. It does no I/O and keeps
//! no state, so it can be fuzzed and reused by the load generator. It knows
//! which API versions the broker serves only through the table it is given
//! ([`crate::handlers::supported_range`]).
//!
//! A frame on the wire is `size: i32` then `size` bytes of request. The
//! network layer strips the size; [`decode_request`] takes the rest.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, VersionRange};

pub mod error_codes;
pub mod response_errors;
pub mod splice;

/// The smallest request: api key, api version and correlation id.
pub const REQUEST_BYTES_MIN: usize = 8;

/// A decoded request, ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a frame could not become a [`Request`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A known API at a version this broker does not serve. Kafka answers
    /// ApiVersions with UNSUPPORTED_VERSION and closes the connection for
    /// every other API.
    #[error("{api_key:?} version {api_version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
}

/// Decodes one request frame (without its size prefix). `supported` answers
/// the version range this broker serves for an API, or `None`.
pub fn decode_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<VersionRange>,
) -> Result<Request, DecodeError> {
    if frame.len() < REQUEST_BYTES_MIN {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let served = supported(api_key).ok_or(DecodeError::UnknownApiKey(raw_key))?;
    if api_version < served.min || api_version > served.max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    let malformed = |error: anyhow::Error| DecodeError::Malformed {
        api_key,
        api_version,
        reason: error.to_string(),
    };
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, api_version).map_err(malformed)?;
    Ok(Request {
        api_key,
        api_version,
        header,
        body,
    })
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut buffer = BytesMut::with_capacity(256);
    buffer.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buffer, api_key.response_header_version(api_version))?;
    body.encode(&mut buffer, api_version)?;
    let size = i32::try_from(buffer.len() - 4)?;
    buffer[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buffer.freeze())
}

/// Encodes a response frame as parts: bytes, and holes where the body held
/// placeholders ([`splice::placeholder`]) for bytes to be sent from files.
pub fn encode_response_parts(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Vec<splice::Part>> {
    use kafka_protocol::protocol::buf::ByteBufMut;
    // Only Fetch carries placeholders; `ResponseKind::encode` wants a
    // `BytesMut`, so the other bodies take the plain path.
    let ResponseKind::Fetch(fetch) = body else {
        let bytes = encode_response(api_key, api_version, correlation_id, body)?;
        return Ok(vec![splice::Part::Bytes(bytes)]);
    };
    let mut buffer = splice::SpliceBuf::new();
    buffer.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buffer, api_key.response_header_version(api_version))?;
    fetch.encode(&mut buffer, api_version)?;
    let size = i32::try_from(buffer.len() - 4)?;
    buffer.range(0..4).copy_from_slice(&size.to_be_bytes());
    Ok(buffer.into_parts())
}

/// The answer Kafka gives an ApiVersions request at a version it does not
/// know: a v0 body with UNSUPPORTED_VERSION, listing at least its own range
/// so that the client can retry at a version both speak.
pub fn encode_unsupported_api_versions(
    correlation_id: i32,
    api_versions: ApiVersionsResponse,
) -> anyhow::Result<Bytes> {
    let body =
        ResponseKind::ApiVersions(api_versions.with_error_code(error_codes::UNSUPPORTED_VERSION));
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

/// Reads the size prefix of a frame, if `buffer` holds it.
pub fn frame_size(mut buffer: &[u8]) -> Option<i32> {
    (buffer.len() >= 4).then(|| buffer.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, CreateTopicsRequest};

    fn all_versions(key: ApiKey) -> Option<VersionRange> {
        Some(key.valid_versions())
    }

    fn request_frame(key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buffer = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42);
        header
            .encode(&mut buffer, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buffer, version).unwrap();
        buffer.freeze()
    }

    #[test]
    fn round_trips_an_api_versions_request() {
        let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
        for version in 0..=3 {
            let decoded = decode_request(
                request_frame(ApiKey::ApiVersions, version, &body),
                all_versions,
            )
            .unwrap();
            assert_eq!(decoded.api_key, ApiKey::ApiVersions);
            assert_eq!(decoded.api_version, version);
            assert_eq!(decoded.header.correlation_id, 42);
        }
    }

    #[test]
    fn rejects_short_unknown_and_unsupported_frames() {
        let check = |frame: &[u8], expected: &str| {
            let error = decode_request(Bytes::copy_from_slice(frame), all_versions).unwrap_err();
            assert!(
                format!("{error:?}").contains(expected),
                "{frame:?}: {error:?}"
            );
        };
        check(&[0, 18, 0], "TooShort");
        check(&[0x7f, 0, 0, 0, 0, 0, 0, 1], "UnknownApiKey");
        check(&[0, 18, 0, 99, 0, 0, 0, 7], "UnsupportedVersion");
        check(&[0, 19, 0, 5, 0, 0, 0, 7, 0xff], "Malformed");
    }

    #[test]
    fn a_huge_claimed_array_is_an_error_not_an_abort() {
        // CreateTopics v4: header v1 (client id null), then topics: i32 count.
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::CreateTopics as i16);
        frame.put_i16(4);
        frame.put_i32(1);
        frame.put_i16(-1);
        frame.put_i32(i32::MAX);
        let error = decode_request(frame.freeze(), all_versions).unwrap_err();
        assert!(matches!(error, DecodeError::Malformed { .. }), "{error:?}");
    }

    #[test]
    fn every_truncation_of_a_valid_request_is_an_error() {
        let body = RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(5));
        let frame = request_frame(ApiKey::CreateTopics, 5, &body);
        assert!(decode_request(frame.clone(), all_versions).is_ok());
        for cut in 0..frame.len() - 1 {
            assert!(
                decode_request(frame.slice(..cut), all_versions).is_err(),
                "cut {cut}"
            );
        }
    }

    proptest::proptest! {
        /// Any bytes after a valid API key and version (every API and
        /// version the broker serves) decode to a request or an error,
        /// never a panic or an abort.
        #[test]
        fn arbitrary_bodies_never_panic(
            api in 0usize..crate::handlers::SUPPORTED.len(),
            version_offset in 0i16..20,
            correlation_id in proptest::prelude::any::<i32>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let support = crate::handlers::SUPPORTED[api];
            let span = support.versions.max - support.versions.min + 1;
            let version = support.versions.min + version_offset % span;
            let mut frame = BytesMut::new();
            frame.put_i16(support.api_key as i16);
            frame.put_i16(version);
            frame.put_i32(correlation_id);
            frame.extend_from_slice(&body);
            let _ = decode_request(frame.freeze(), crate::handlers::supported_range);
        }
    }

    #[test]
    fn response_frames_carry_their_size_and_correlation_id() {
        let body = ResponseKind::ApiVersions(ApiVersionsResponse::default());
        let frame = encode_response(ApiKey::ApiVersions, 3, 9, &body).unwrap();
        assert_eq!(frame_size(&frame), Some(frame.len() as i32 - 4));
        assert_eq!(&frame[4..8], &9i32.to_be_bytes());
    }
}
