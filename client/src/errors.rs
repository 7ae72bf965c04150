//! Kafka error codes in one place: the codes this client acts on, by
//! name; Kafka's name for any code (`TOPIC_ALREADY_EXISTS`); and
//! [`KafkaError`], the error value a broker's non-zero code becomes.

use std::fmt;

use anyhow::Result;
use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

/// The error codes this client names, as in Kafka's `Errors` enum.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NETWORK_EXCEPTION: i16 = 13;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

/// A Kafka error code answered by a broker, shown with Kafka's name:
/// `TOPIC_ALREADY_EXISTS: Topic 'x' already exists.`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
    /// What was being done, when the broker's message does not say it.
    pub context: String,
}

impl KafkaError {
    /// `Ok` for code 0 (no error), otherwise the error.
    pub fn check(code: i16, message: Option<&StrBytes>, context: impl Into<String>) -> Result<()> {
        if code == codes::NONE {
            return Ok(());
        }
        Err(KafkaError {
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
            context: context.into(),
        }
        .into())
    }

    pub fn name(&self) -> String {
        error_name(self.code)
    }

    /// The Kafka error code in `error`'s chain, if any.
    pub fn code_of(error: &anyhow::Error) -> Option<i16> {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<KafkaError>())
            .map(|kafka| kafka.code)
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match &self.message {
            Some(message) => write!(f, "{message}"),
            None => write!(f, "{}", self.context),
        }
    }
}

impl std::error::Error for KafkaError {}

/// Kafka's name for an error code, as in the Java client's `Errors` enum
/// (`TOPIC_ALREADY_EXISTS`), or `UNKNOWN_ERROR_CODE_<n>`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(known) => screaming_snake(&known.to_string()),
    }
}

/// `TopicAlreadyExists` -> `TOPIC_ALREADY_EXISTS`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(
            error_name(codes::NOT_LEADER_OR_FOLLOWER),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(30000), "UNKNOWN_ERROR_CODE_30000");
    }

    #[test]
    fn kafka_error_shows_the_brokers_message_or_the_context() {
        let with_message = KafkaError {
            code: 36,
            message: Some("Topic 'x' already exists.".into()),
            context: "creating topic 'x'".into(),
        };
        assert_eq!(
            with_message.to_string(),
            "TOPIC_ALREADY_EXISTS: Topic 'x' already exists."
        );
        let without = KafkaError {
            message: None,
            ..with_message
        };
        assert_eq!(
            without.to_string(),
            "TOPIC_ALREADY_EXISTS: creating topic 'x'"
        );
        let wrapped = anyhow::Error::from(without).context("outer");
        assert_eq!(KafkaError::code_of(&wrapped), Some(36));
        assert_eq!(KafkaError::code_of(&anyhow::anyhow!("plain")), None);
    }
}
