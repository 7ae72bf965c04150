//! AlterUserScramCredentials on the active controller: each change checked
//! against the image, and the records that make it.
//!
//! Owns: the rules of a SCRAM credential change (Kafka's error codes).
//! Pure: no I/O; the controller proposes what `alter` returns.
//!
//! Must not: see a password. Clients send salted passwords (Kafka's
//! protocol); the records carry only the stored and server keys.

use serde::{Deserialize, Serialize};

use super::commands::TopicError;
use super::metadata::MetadataImage;
use super::records::MetadataRecord;
use crate::protocol::error_codes;
use crate::security::scram::{self, ScramCredential, ScramMechanism};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScramChange {
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: Vec<u8>,
        iterations: u32,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

impl ScramChange {
    pub fn user(&self) -> &str {
        match self {
            ScramChange::Upsert { user, .. } | ScramChange::Delete { user, .. } => user,
        }
    }
}

/// One result per change, in order, and the records of those that pass.
/// As Kafka: a user named twice in one request fails every change of it.
pub fn alter(
    image: &MetadataImage,
    changes: Vec<ScramChange>,
) -> (Vec<Result<(), TopicError>>, Vec<MetadataRecord>) {
    let mut records = Vec::new();
    let results = changes
        .iter()
        .map(|change| {
            let named = changes.iter().filter(|other| other.user() == change.user());
            if named.count() > 1 {
                let message = format!("Request has multiple changes for user {}", change.user());
                return Err(TopicError::new(error_codes::DUPLICATE_RESOURCE, message));
            }
            let record = check(image, change)?;
            records.push(record);
            Ok(())
        })
        .collect();
    (results, records)
}

fn check(image: &MetadataImage, change: &ScramChange) -> Result<MetadataRecord, TopicError> {
    let unacceptable =
        |message: String| TopicError::new(error_codes::UNACCEPTABLE_CREDENTIAL, message);
    if change.user().is_empty() {
        return Err(unacceptable("Username must not be empty".to_string()));
    }
    match change {
        ScramChange::Upsert {
            user,
            mechanism,
            salt,
            salted_password,
            iterations,
        } => {
            if !(scram::ITERATIONS_MIN..=scram::ITERATIONS_MAX).contains(iterations) {
                return Err(unacceptable(format!(
                    "Iterations {iterations} must be between {} and {}",
                    scram::ITERATIONS_MIN,
                    scram::ITERATIONS_MAX
                )));
            }
            if salt.is_empty() || salted_password.is_empty() {
                return Err(unacceptable(
                    "Salt and salted password must not be empty".into(),
                ));
            }
            let credential = ScramCredential::from_salted_password(
                *mechanism,
                salt.clone(),
                salted_password,
                *iterations,
            );
            Ok(MetadataRecord::UserScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential,
            })
        }
        ScramChange::Delete { user, mechanism } => {
            let exists = image
                .scram_credentials
                .get(user)
                .is_some_and(|mechanisms| mechanisms.contains_key(mechanism));
            if !exists {
                let message = "Attempt to delete a user credential that does not exist";
                return Err(TopicError::new(error_codes::RESOURCE_NOT_FOUND, message));
            }
            Ok(MetadataRecord::RemoveUserScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(user: &str, iterations: u32) -> ScramChange {
        ScramChange::Upsert {
            user: user.into(),
            mechanism: ScramMechanism::Sha256,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 32],
            iterations,
        }
    }

    #[test]
    fn changes_are_checked_one_by_one() {
        let mut image = MetadataImage::default();
        let delete = ScramChange::Delete {
            user: "bob".into(),
            mechanism: ScramMechanism::Sha256,
        };
        let (results, records) = alter(
            &image,
            vec![upsert("alice", 4096), upsert("carol", 10), delete.clone()],
        );
        let codes: Vec<i16> = results
            .iter()
            .map(|result| result.as_ref().map_or_else(|error| error.code, |()| 0))
            .collect();
        assert_eq!(
            codes,
            [
                0,
                error_codes::UNACCEPTABLE_CREDENTIAL,
                error_codes::RESOURCE_NOT_FOUND
            ]
        );
        image.apply_batch(1, &records);
        assert!(image.scram_credentials["alice"].contains_key(&ScramMechanism::Sha256));
        let (results, _) = alter(&image, vec![upsert("alice", 4096), upsert("alice", 8192)]);
        assert!(results.iter().all(|result| result
            .as_ref()
            .is_err_and(|error| error.code == error_codes::DUPLICATE_RESOURCE)));
        let remove = ScramChange::Delete {
            user: "alice".into(),
            mechanism: ScramMechanism::Sha256,
        };
        let (results, records) = alter(&image, vec![remove]);
        assert!(results[0].is_ok());
        image.apply_batch(2, &records);
        assert!(image.scram_credentials.is_empty());
    }
}
