//! SCRAM users (KIP-554): DescribeUserScramCredentials and
//! AlterUserScramCredentials. The password never leaves this process: the
//! request carries a random salt and the salted password (PBKDF2), as
//! Kafka's admin client sends them.

use std::io::Read;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use sha2::{Sha256, Sha512};

use crate::{retrying, Cluster, KafkaError};

/// Kafka's SCRAM mechanisms, by name and wire code.
pub const MECHANISMS: &[(&str, i8)] = &[("SCRAM-SHA-256", 1), ("SCRAM-SHA-512", 2)];

pub fn mechanism_code(name: &str) -> Result<i8> {
    match MECHANISMS.iter().find(|(known, _)| *known == name) {
        Some((_, code)) => Ok(*code),
        None => bail!("unknown SCRAM mechanism {name}: expected SCRAM-SHA-256 or SCRAM-SHA-512"),
    }
}

pub fn mechanism_name(code: i8) -> String {
    MECHANISMS
        .iter()
        .find(|(_, known)| *known == code)
        .map_or_else(|| format!("UNKNOWN({code})"), |(name, _)| name.to_string())
}

/// A user and its mechanisms with their iteration counts.
pub type UserCredentials = (String, Vec<(i8, i32)>);

/// Every user with a SCRAM credential (`users` empty), or those named.
pub fn describe_users(cluster: &mut Cluster, users: &[String]) -> Result<Vec<UserCredentials>> {
    let names = (!users.is_empty()).then(|| {
        users
            .iter()
            .map(|user| UserName::default().with_name(StrBytes::from_string(user.clone())))
            .collect()
    });
    let request = DescribeUserScramCredentialsRequest::default().with_users(names);
    let response = retrying(cluster, |cluster| cluster.any()?.call(&request, 0))?;
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        "describing SCRAM users",
    )?;
    response
        .results
        .into_iter()
        .map(|result| {
            let user = result.user.to_string();
            KafkaError::check(
                result.error_code,
                result.error_message.as_ref(),
                format!("describing user '{user}'"),
            )?;
            let infos = result
                .credential_infos
                .iter()
                .map(|info| (info.mechanism, info.iterations))
                .collect();
            Ok((user, infos))
        })
        .collect()
}

/// Creates or replaces `user`'s credential for `mechanism`.
pub fn upsert_user(
    cluster: &mut Cluster,
    user: &str,
    mechanism: i8,
    iterations: i32,
    password: &str,
) -> Result<()> {
    let mut salt = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut salt))
        .context("cannot read /dev/urandom for a salt")?;
    let rounds = u32::try_from(iterations).context("iterations must be positive")?;
    let salted: Vec<u8> = match mechanism {
        1 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, rounds).to_vec(),
        2 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), &salt, rounds).to_vec(),
        other => bail!("unknown SCRAM mechanism code {other}"),
    };
    let upsertion = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(salt.to_vec().into())
        .with_salted_password(salted.into());
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
    alter(cluster, &request, user)
}

/// Deletes `user`'s credential for `mechanism`.
pub fn delete_user(cluster: &mut Cluster, user: &str, mechanism: i8) -> Result<()> {
    let deletion = ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism);
    let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
    alter(cluster, &request, user)
}

fn alter(
    cluster: &mut Cluster,
    request: &AlterUserScramCredentialsRequest,
    user: &str,
) -> Result<()> {
    let response = retrying(cluster, |cluster| cluster.any()?.call(request, 0))?;
    for result in &response.results {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            format!("changing the SCRAM credential of user '{user}'"),
        )?;
    }
    Ok(())
}
