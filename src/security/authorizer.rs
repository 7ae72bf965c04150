//! The authorizer: may this principal, from this host, do this operation on
//! this resource? Kafka's `StandardAuthorizer` semantics over the ACLs of
//! the metadata image:
//! - super users (`super.users`) may do everything;
//! - the bindings that cover the resource are the literal ones of its name,
//!   the literal `*`, and the prefixed ones whose prefix starts its name;
//! - none covers it: `allow.everyone.if.no.acl.found` decides (default no);
//! - a DENY that matches (principal or `User:*`, host or `*`, the operation
//!   or ALL) refuses, whatever allows;
//! - else an ALLOW that matches grants, where READ, WRITE, DELETE and ALTER
//!   imply DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS (an allow
//!   only: a DENY of READ does not deny DESCRIBE).
//!
//! Pure and shard-local: each shard asks with its own read-only image copy.
//! Must not: do I/O, or know requests (the handlers map APIs to operations).

use std::net::IpAddr;

use super::acl::{AclBinding, Operation, Permission, ResourceType, WILDCARD};
use super::Principal;

/// The broker's authorization settings (`authorizer.class.name`,
/// `super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Off (the default): every request is allowed, as in Kafka without an
    /// authorizer, and the ACL APIs answer SECURITY_DISABLED.
    pub enabled: bool,
    /// Principals as `User:alice`.
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

/// The class names `authorizer.class.name` accepts; empty is off.
pub const AUTHORIZER_CLASS_NAMES: &[&str] = &[
    "",
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// Parses `super.users`: principals separated by semicolons (Kafka's
/// format), spaces around each ignored, empty items skipped.
pub fn parse_super_users(text: &str) -> Result<Vec<String>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| super::acl::parse_principal(item).map(|_| item.to_string()))
        .collect()
}

/// Who asks and from where.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a Principal,
    /// `None` when the socket did not say; only `*` host ACLs match it.
    pub host: Option<IpAddr>,
}

/// The resource a request acts on.
#[derive(Clone, Copy, Debug)]
pub struct Resource<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::Topic,
            name,
        }
    }

    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::Group,
            name,
        }
    }

    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource {
            resource_type: ResourceType::TransactionalId,
            name,
        }
    }

    pub fn cluster() -> Resource<'static> {
        Resource {
            resource_type: ResourceType::Cluster,
            name: super::acl::CLUSTER_NAME,
        }
    }
}

/// Kafka's decision for `operation` on `resource` by `requester`.
pub fn authorize<'b>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'b AclBinding>,
    requester: Requester<'_>,
    operation: Operation,
    resource: Resource<'_>,
) -> bool {
    let Some(subject) = Subject::unless_always_allowed(config, requester) else {
        return true;
    };
    let mut covered = false;
    let mut allowed = false;
    for binding in acls {
        if !binding.covers(resource.resource_type, resource.name) {
            continue;
        }
        covered = true;
        if !subject.matches(binding) {
            continue;
        }
        match binding.permission {
            Permission::Deny if denies(binding.operation, operation) => return false,
            Permission::Allow if allows(binding.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!covered && config.allow_everyone_if_no_acl_found)
}

/// Kafka's `authorizeByResourceType`: whether the requester may do
/// `operation` on some resource of `resource_type` (InitProducerId without
/// a transactional id asks for WRITE on any topic): an ALLOW of it that no
/// DENY of the requester covers entirely.
pub fn authorize_any<'b>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'b AclBinding> + Clone,
    requester: Requester<'_>,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    let Some(subject) = Subject::unless_always_allowed(config, requester) else {
        return true;
    };
    let applies =
        |binding: &AclBinding| binding.resource_type == resource_type && subject.matches(binding);
    let denials: Vec<&AclBinding> = acls
        .clone()
        .into_iter()
        .filter(|binding| {
            applies(binding)
                && binding.permission == Permission::Deny
                && denies(binding.operation, operation)
        })
        .collect();
    acls.into_iter().any(|allow| {
        applies(allow)
            && allow.permission == Permission::Allow
            && denies(allow.operation, operation)
            && !denials.iter().any(|deny| match deny.pattern_type {
                super::acl::PatternType::Literal => {
                    deny.resource_name == WILDCARD
                        || (allow.pattern_type == deny.pattern_type
                            && allow.resource_name == deny.resource_name)
                }
                _ => allow.resource_name.starts_with(&deny.resource_name),
            })
    })
}

/// Who asks and from where, as ACL bindings spell them.
struct Subject {
    principal: String,
    wildcard_principal: String,
    host: Option<String>,
}

impl Subject {
    /// `None` when the answer is yes whatever the ACLs say: the authorizer
    /// is off, or the requester is a super user.
    fn unless_always_allowed(
        config: &AuthorizerConfig,
        requester: Requester<'_>,
    ) -> Option<Subject> {
        if !config.enabled {
            return None;
        }
        let principal = requester.principal.to_string();
        if config.super_users.contains(&principal) {
            return None;
        }
        Some(Subject {
            principal,
            wildcard_principal: format!("{}:{WILDCARD}", requester.principal.kind),
            host: requester.host.map(|ip| ip.to_string()),
        })
    }

    /// Whether `binding` names this principal (or all) and this host (or all).
    fn matches(&self, binding: &AclBinding) -> bool {
        (binding.principal == self.principal || binding.principal == self.wildcard_principal)
            && (binding.host == WILDCARD || Some(&binding.host) == self.host.as_ref())
    }
}

fn denies(acl: Operation, wanted: Operation) -> bool {
    acl == Operation::All || acl == wanted
}

/// Whether an ALLOW of `acl` grants `wanted` (Kafka's implied operations).
fn allows(acl: Operation, wanted: Operation) -> bool {
    use Operation::{All, Alter, AlterConfigs, Delete, Describe, DescribeConfigs, Read, Write};
    acl == All
        || acl == wanted
        || (wanted == Describe && matches!(acl, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && acl == AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::PatternType;
    use proptest::prelude::*;

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            ..AuthorizerConfig::default()
        }
    }

    fn acl(
        name: &str,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    fn check(
        config: &AuthorizerConfig,
        acls: &[AclBinding],
        who: &str,
        op: Operation,
        topic: &str,
    ) -> bool {
        let principal = Principal::user(who);
        let requester = Requester {
            principal: &principal,
            host: Some("10.0.0.1".parse().unwrap()),
        };
        authorize(config, acls, requester, op, Resource::topic(topic))
    }

    use Operation::{
        All, Alter, AlterConfigs, ClusterAction, Delete, Describe, DescribeConfigs, Read, Write,
    };
    use Permission::{Allow, Deny};

    #[test]
    fn off_allows_everything() {
        assert!(check(
            &AuthorizerConfig::default(),
            &[],
            "alice",
            Write,
            "t"
        ));
    }

    #[test]
    fn on_denies_by_default_and_allows_what_an_acl_allows() {
        let acls = [acl("t", "User:alice", Read, Allow)];
        assert!(check(&on(), &acls, "alice", Read, "t"));
        assert!(!check(&on(), &acls, "alice", Write, "t"));
        assert!(!check(&on(), &acls, "bob", Read, "t"));
        assert!(!check(&on(), &acls, "alice", Read, "other"));
        assert!(!check(&on(), &[], "alice", Read, "t"));
    }

    #[test]
    fn allow_everyone_if_no_acl_found_applies_only_to_uncovered_resources() {
        let config = AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..on()
        };
        let acls = [acl("t", "User:alice", Read, Allow)];
        assert!(check(&config, &acls, "bob", Write, "other"));
        // An ACL on t (for anyone) takes t out of the default.
        assert!(!check(&config, &acls, "bob", Read, "t"));
    }

    #[test]
    fn super_users_may_do_everything() {
        let config = AuthorizerConfig {
            super_users: parse_super_users("User:admin; User:broker").unwrap(),
            ..on()
        };
        let acls = [acl("t", "User:admin", All, Deny)];
        assert!(check(&config, &acls, "admin", Write, "t"));
        assert!(check(&config, &[], "broker", ClusterAction, "t"));
        assert!(!check(&config, &[], "alice", Read, "t"));
    }

    #[test]
    fn super_users_parse_kafkas_format() {
        assert_eq!(
            parse_super_users("User:a;User:b ;;").unwrap(),
            vec!["User:a".to_string(), "User:b".to_string()]
        );
        assert_eq!(parse_super_users("").unwrap(), Vec::<String>::new());
        assert!(parse_super_users("User:a,User:b").is_ok());
        assert!(parse_super_users("alice").is_err());
    }

    #[test]
    fn deny_beats_allow() {
        let acls = [
            acl("t", "User:alice", All, Allow),
            acl("t", "User:alice", Write, Deny),
        ];
        assert!(check(&on(), &acls, "alice", Read, "t"));
        assert!(!check(&on(), &acls, "alice", Write, "t"));
        // A denied READ does not deny the DESCRIBE it would imply.
        let acls = [
            acl("t", "User:alice", Describe, Allow),
            acl("t", "User:alice", Read, Deny),
        ];
        assert!(check(&on(), &acls, "alice", Describe, "t"));
    }

    #[test]
    fn implied_operations() {
        for granted in [Read, Write, Delete, Alter] {
            let acls = [acl("t", "User:alice", granted, Allow)];
            assert!(check(&on(), &acls, "alice", Describe, "t"), "{granted}");
            assert!(
                !check(&on(), &acls, "alice", DescribeConfigs, "t"),
                "{granted}"
            );
        }
        let acls = [acl("t", "User:alice", AlterConfigs, Allow)];
        assert!(check(&on(), &acls, "alice", DescribeConfigs, "t"));
        assert!(!check(&on(), &acls, "alice", Describe, "t"));
        let acls = [acl("t", "User:alice", Describe, Allow)];
        assert!(!check(&on(), &acls, "alice", Read, "t"));
    }

    #[test]
    fn wildcards_for_principal_host_and_name() {
        let acls = [acl("*", "User:*", Read, Allow)];
        assert!(check(&on(), &acls, "anyone", Read, "any-topic"));
        let hosted = AclBinding {
            host: "10.0.0.1".into(),
            ..acl("t", "User:alice", Read, Allow)
        };
        assert!(check(
            &on(),
            std::slice::from_ref(&hosted),
            "alice",
            Read,
            "t"
        ));
        let elsewhere = AclBinding {
            host: "10.0.0.2".into(),
            ..hosted
        };
        assert!(!check(&on(), &[elsewhere], "alice", Read, "t"));
    }

    #[test]
    fn prefixed_patterns() {
        let prefixed = AclBinding {
            pattern_type: PatternType::Prefixed,
            ..acl("pay", "User:alice", Write, Allow)
        };
        assert!(check(
            &on(),
            std::slice::from_ref(&prefixed),
            "alice",
            Write,
            "payments"
        ));
        assert!(!check(
            &on(),
            std::slice::from_ref(&prefixed),
            "alice",
            Write,
            "orders"
        ));
        let deny = acl("payments-secret", "User:*", All, Deny);
        assert!(!check(
            &on(),
            &[prefixed, deny],
            "alice",
            Write,
            "payments-secret"
        ));
    }

    #[test]
    fn an_unknown_host_matches_only_the_wildcard_host() {
        let principal = Principal::user("alice");
        let requester = Requester {
            principal: &principal,
            host: None,
        };
        let hosted = AclBinding {
            host: "10.0.0.1".into(),
            ..acl("t", "User:alice", Read, Allow)
        };
        assert!(!authorize(
            &on(),
            [&hosted],
            requester,
            Read,
            Resource::topic("t")
        ));
        let any_host = acl("t", "User:alice", Read, Allow);
        assert!(authorize(
            &on(),
            [&any_host],
            requester,
            Read,
            Resource::topic("t")
        ));
    }

    #[test]
    fn by_resource_type() {
        let principal = Principal::user("alice");
        let requester = Requester {
            principal: &principal,
            host: None,
        };
        let any =
            |acls: &[AclBinding]| authorize_any(&on(), acls, requester, Write, ResourceType::Topic);
        assert!(!any(&[]));
        assert!(any(&[acl("t", "User:alice", Write, Allow)]));
        assert!(!any(&[acl("t", "User:alice", Read, Allow)]));
        assert!(!any(&[
            acl("t", "User:alice", Write, Allow),
            acl("*", "User:*", All, Deny)
        ]));
        assert!(any(&[
            acl("t", "User:alice", Write, Allow),
            acl("u", "User:alice", Write, Deny)
        ]));
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop::sample::select(
            Operation::ALL
                .iter()
                .copied()
                .filter(|op| *op != Operation::Any)
                .collect::<Vec<_>>(),
        )
    }

    proptest! {
        /// Adding a matching DENY to any set of ACLs refuses the operation,
        /// and a DENY of another operation never grants anything.
        #[test]
        fn a_matching_deny_always_wins(
            allows in prop::collection::vec((operation(), prop::bool::ANY), 0..8),
            wanted in operation(),
            deny_all in prop::bool::ANY,
        ) {
            let mut acls: Vec<AclBinding> = allows
                .iter()
                .map(|(op, wildcard)| {
                    let who = if *wildcard { "User:*" } else { "User:alice" };
                    acl("t", who, *op, Allow)
                })
                .collect();
            let without_deny = check(&on(), &acls, "alice", wanted, "t");
            let denied = if deny_all { All } else { wanted };
            acls.push(acl("t", "User:*", denied, Deny));
            prop_assert!(!check(&on(), &acls, "alice", wanted, "t"));
            acls.pop();
            let other = if wanted == Read { Write } else { Read };
            acls.push(acl("t", "User:alice", other, Deny));
            prop_assert_eq!(check(&on(), &acls, "alice", wanted, "t"), without_deny);
        }
    }
}
