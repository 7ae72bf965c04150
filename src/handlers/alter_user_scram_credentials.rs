//! AlterUserScramCredentials (key 51): add, replace or delete users' SCRAM
//! credentials. The client sends the salted password (never the
//! password); the active controller checks each change
//! (`cluster::credentials`) and writes the records through the metadata
//! log, so every node's image, and so every listener, knows the user.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::commands::TopicError;
use crate::cluster::controller::{ControllerRequest, ControllerResponse};
use crate::cluster::credentials::ScramChange;
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::scram::ScramMechanism;

pub const API: ApiSupport = super::api(ApiKey::AlterUserScramCredentials, 0, 0);

fn mechanism(code: i8) -> Result<ScramMechanism, TopicError> {
    ScramMechanism::from_code(code).ok_or_else(|| {
        TopicError::new(
            error_codes::UNSUPPORTED_SASL_MECHANISM,
            format!("Unknown SCRAM mechanism {code}"),
        )
    })
}

pub async fn handle(
    context: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let deletions = request.deletions.into_iter().map(|deletion| {
        let user = deletion.name.to_string();
        let change = mechanism(deletion.mechanism).map(|mechanism| ScramChange::Delete {
            user: user.clone(),
            mechanism,
        });
        (user, change)
    });
    let upsertions = request.upsertions.into_iter().map(|upsertion| {
        let user = upsertion.name.to_string();
        let change = mechanism(upsertion.mechanism).map(|mechanism| ScramChange::Upsert {
            user: user.clone(),
            mechanism,
            salt: upsertion.salt.to_vec(),
            salted_password: upsertion.salted_password.to_vec(),
            iterations: u32::try_from(upsertion.iterations).unwrap_or(0),
        });
        (user, change)
    });
    // Kafka: ALTER on the cluster, else every user's result refused.
    let refusal = context.cluster_refusal(Operation::Alter);
    let changes: Vec<(String, Result<ScramChange, TopicError>)> = deletions
        .chain(upsertions)
        .map(|(user, change)| match refusal {
            Some(code) => (user, Err(TopicError::new(code, "Authorization failed."))),
            None => (user, change),
        })
        .collect();
    let valid: Vec<ScramChange> = changes
        .iter()
        .filter_map(|(_, change)| change.as_ref().ok().cloned())
        .collect();
    let count = valid.len();
    let outcome = if valid.is_empty() {
        Ok(ControllerResponse::Outcomes(Vec::new()))
    } else {
        let request = ControllerRequest::AlterScramCredentials { changes: valid };
        super::call_controller(context, request).await
    };
    let mut answers = match outcome {
        Ok(ControllerResponse::Outcomes(answers)) => answers.into_iter(),
        Ok(_) => {
            let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, "unexpected answer");
            vec![Err(failure); count].into_iter()
        }
        Err(error) => vec![Err(error); count].into_iter(),
    };
    let results = changes
        .into_iter()
        .map(|(user, change)| {
            let outcome = change.and_then(|_| answers.next().unwrap_or(Ok(())));
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match outcome {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(error.code)
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
