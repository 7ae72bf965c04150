//! DescribeUserScramCredentials (key 50): which SCRAM mechanisms each user
//! has, with their iteration counts (never salts or keys), from this
//! node's metadata image.

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    ApiKey, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::DescribeUserScramCredentials, 0, 0);

pub fn handle(
    context: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // Kafka: DESCRIBE on the cluster, or nothing but the error.
    if let Some(code) = context.cluster_refusal(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes("Authorization failed.".to_string())));
    }
    let image = context.shard.image();
    // None or empty: every user with a credential (Kafka's "describe all").
    let users: Vec<String> = match request.users.filter(|users| !users.is_empty()) {
        Some(users) => users
            .into_iter()
            .map(|user| user.name.to_string())
            .collect(),
        None => image.scram_credentials.keys().cloned().collect(),
    };
    let results = users
        .iter()
        .enumerate()
        .map(|(index, user)| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user.clone()));
            if users[..index].contains(user) {
                return result
                    .with_error_code(error_codes::DUPLICATE_RESOURCE)
                    .with_error_message(Some(str_bytes(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}"))));
            }
            match image.scram_credentials.get(user) {
                Some(mechanisms) => result.with_credential_infos(
                    mechanisms
                        .iter()
                        .map(|(mechanism, credential)| {
                            CredentialInfo::default()
                                .with_mechanism(mechanism.code())
                                .with_iterations(i32::try_from(credential.iterations).unwrap_or(i32::MAX))
                        })
                        .collect(),
                ),
                None => result
                    .with_error_code(error_codes::RESOURCE_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!("Attempt to describe a user credential that does not exist: {user}")))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
