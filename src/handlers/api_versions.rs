//! ApiVersions (key 18): the APIs and version ranges this broker serves,
//! straight from [`super::SUPPORTED`].

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{ApiSupport, RequestContext};

pub const API: ApiSupport = super::api(ApiKey::ApiVersions, 0, 4);

pub fn handle(_context: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    advertised()
}

/// The response body, without error: also sent (with UNSUPPORTED_VERSION)
/// to clients that ask at a version we do not know.
pub fn advertised() -> ApiVersionsResponse {
    let api_keys = super::SUPPORTED
        .iter()
        .map(|support| {
            ApiVersion::default()
                .with_api_key(support.api_key as i16)
                .with_min_version(support.versions.min)
                .with_max_version(support.versions.max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}
