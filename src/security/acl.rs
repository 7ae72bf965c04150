//! Access control lists as Kafka defines them: a binding of a resource
//! pattern (type, name, LITERAL or PREFIXED) to an entry (principal, host,
//! operation, ALLOW or DENY), and the filters DescribeAcls and DeleteAcls
//! select bindings with. Kafka's wire codes (`i8`) convert both ways; names
//! parse as `kafka-acls` spells them (`Read`, `ClusterAction`, `cluster-action`).
//!
//! Owns: what a binding is and which bindings a filter selects.
//! Must not: decide access (`authorizer.rs` does), do I/O, or know the wire
//! format beyond the codes.

use serde::{Deserialize, Serialize};

/// The one name a CLUSTER resource has, as in Kafka.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal name, principal or host that matches every one.
pub const WILDCARD: &str = "*";

macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.code() == code)
            }

            /// Kafka's name in upper snake case (`CLUSTER_ACTION`).
            pub fn kafka_name(self) -> String {
                upper_snake(stringify_variant(self))
            }

            /// Parses `ClusterAction`, `cluster-action`, `CLUSTER_ACTION`.
            pub fn parse(text: &str) -> Option<$name> {
                let wanted = squash(text);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| squash(stringify_variant(*value)) == wanted)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.kafka_name())
            }
        }

        impl Variant for $name {
            fn variant(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }
    };
}

trait Variant {
    fn variant(self) -> &'static str;
}

fn stringify_variant(value: impl Variant) -> &'static str {
    value.variant()
}

fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (index, c) in camel.chars().enumerate() {
        if c.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.extend(c.to_uppercase());
    }
    out
}

kafka_enum!(
    /// Kafka's `ResourceType`; `Any` only in filters.
    ResourceType {
        Any = 1,
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

kafka_enum!(
    /// Kafka's `PatternType`; `Any` and `Match` only in filters.
    PatternType {
        Any = 1,
        Match = 2,
        Literal = 3,
        Prefixed = 4,
    }
);

kafka_enum!(
    /// Kafka's `AclOperation`; `Any` only in filters.
    Operation {
        Any = 1,
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
);

kafka_enum!(
    /// Kafka's `AclPermissionType`; `Any` only in filters.
    Permission {
        Any = 1,
        Deny = 2,
        Allow = 3,
    }
);

/// One ACL: who may (or may not) do what, from where, to which resources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// An IP address as the client connects from, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why Kafka would refuse to create this binding, if it would
    /// (CreateAcls answers INVALID_REQUEST with the message).
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == ResourceType::Any {
            return Err("the resource type must be concrete, not ANY".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err("the pattern type must be LITERAL or PREFIXED".into());
        }
        if self.operation == Operation::Any || self.permission == Permission::Any {
            return Err("the operation and permission must be concrete, not ANY".into());
        }
        if self.resource_name.is_empty() {
            return Err("the resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("the CLUSTER resource is named {CLUSTER_NAME}"));
        }
        if self.host.is_empty() {
            return Err("the host must be an address or *".into());
        }
        parse_principal(&self.principal).map(|_| ())
    }

    /// Whether this binding's pattern covers the resource `name` of
    /// `resource_type` (Kafka: literal equal, literal `*`, or a prefix).
    pub fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }
}

/// `Type:name` split at the first colon; both parts non-empty.
pub fn parse_principal(text: &str) -> Result<(&str, &str), String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok((kind, name)),
        _ => Err(format!(
            "a principal is TYPE:NAME such as User:alice, got {text:?}"
        )),
    }
}

/// What DescribeAcls and DeleteAcls select: `None` and `Any` match all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// A filter that selects every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let equal = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        (self.resource_type == ResourceType::Any || self.resource_type == binding.resource_type)
            && self.matches_pattern(binding)
            && equal(&self.principal, &binding.principal)
            && equal(&self.host, &binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }

    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        let Some(name) = &self.resource_name else {
            return match self.pattern_type {
                PatternType::Any | PatternType::Match => true,
                concrete => concrete == binding.pattern_type,
            };
        };
        match self.pattern_type {
            PatternType::Any => &binding.resource_name == name,
            // Every binding that would apply to a resource of this name.
            PatternType::Match => match binding.pattern_type {
                PatternType::Literal => {
                    &binding.resource_name == name || binding.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&binding.resource_name),
                _ => false,
            },
            concrete => concrete == binding.pattern_type && &binding.resource_name == name,
        }
    }

    /// Why Kafka would refuse this filter in DeleteAcls, if it would.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(principal) = &self.principal {
            parse_principal(principal)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        for operation in Operation::ALL {
            assert_eq!(Operation::from_code(operation.code()), Some(*operation));
            assert_eq!(Operation::parse(&operation.kafka_name()), Some(*operation));
        }
        assert_eq!(Operation::ClusterAction.kafka_name(), "CLUSTER_ACTION");
        assert_eq!(
            Operation::parse("ClusterAction"),
            Some(Operation::ClusterAction)
        );
        assert_eq!(
            Operation::parse("describe-configs"),
            Some(Operation::DescribeConfigs)
        );
        assert_eq!(Operation::parse("nope"), None);
        assert_eq!(
            ResourceType::from_code(5),
            Some(ResourceType::TransactionalId)
        );
        assert_eq!(ResourceType::from_code(0), None);
        assert_eq!(PatternType::parse("prefixed"), Some(PatternType::Prefixed));
        assert_eq!(Permission::Allow.code(), 3);
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        let good = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        assert_eq!(good.validate(), Ok(()));
        let refused = [
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                pattern_type: PatternType::Match,
                ..good.clone()
            },
            AclBinding {
                operation: Operation::Any,
                ..good.clone()
            },
            AclBinding {
                resource_type: ResourceType::Cluster,
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
        ];
        for binding in refused {
            assert!(binding.validate().is_err(), "{binding:?}");
        }
    }

    #[test]
    fn patterns_cover_names() {
        let literal = |name| {
            binding(
                ResourceType::Topic,
                name,
                PatternType::Literal,
                "User:a",
                Operation::Read,
                Permission::Allow,
            )
        };
        let prefixed = AclBinding {
            pattern_type: PatternType::Prefixed,
            ..literal("pay")
        };
        assert!(literal("orders").covers(ResourceType::Topic, "orders"));
        assert!(!literal("orders").covers(ResourceType::Topic, "orders2"));
        assert!(!literal("orders").covers(ResourceType::Group, "orders"));
        assert!(literal("*").covers(ResourceType::Topic, "anything"));
        assert!(prefixed.covers(ResourceType::Topic, "payments"));
        assert!(prefixed.covers(ResourceType::Topic, "pay"));
        assert!(!prefixed.covers(ResourceType::Topic, "orders"));
        // A prefixed "*" is a prefix like any other, not a wildcard.
        let star_prefix = AclBinding {
            pattern_type: PatternType::Prefixed,
            ..literal("*")
        };
        assert!(!star_prefix.covers(ResourceType::Topic, "orders"));
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let literal = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        let prefixed = AclBinding {
            resource_name: "ord".into(),
            pattern_type: PatternType::Prefixed,
            ..literal.clone()
        };
        let wildcard = AclBinding {
            resource_name: "*".into(),
            ..literal.clone()
        };
        let named = |pattern_type| AclFilter {
            resource_type: ResourceType::Topic,
            resource_name: Some("orders".into()),
            pattern_type,
            ..AclFilter::any()
        };
        let all = [&literal, &prefixed, &wildcard];
        let selected =
            |filter: &AclFilter| all.iter().filter(|binding| filter.matches(binding)).count();
        assert_eq!(selected(&AclFilter::any()), 3);
        assert_eq!(selected(&named(PatternType::Match)), 3);
        assert_eq!(selected(&named(PatternType::Any)), 1);
        assert_eq!(selected(&named(PatternType::Literal)), 1);
        assert_eq!(selected(&named(PatternType::Prefixed)), 0);
        let by_principal = AclFilter {
            principal: Some("User:bob".into()),
            ..AclFilter::any()
        };
        assert_eq!(selected(&by_principal), 0);
        let by_operation = AclFilter {
            operation: Operation::Read,
            permission: Permission::Allow,
            ..AclFilter::any()
        };
        assert_eq!(selected(&by_operation), 3);
        let prefixed_only = AclFilter {
            pattern_type: PatternType::Prefixed,
            ..AclFilter::any()
        };
        assert_eq!(selected(&prefixed_only), 1);
    }
}
