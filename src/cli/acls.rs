//! `sluice acls add | list | remove`: what `kafka-acls.sh` does, with its
//! flags (`--allow-principal`, `--deny-principal`, `--allow-host`,
//! `--deny-host`, `--operation`, `--topic`, `--group`, `--cluster`,
//! `--transactional-id`, `--resource-pattern-type`), over CreateAcls,
//! DescribeAcls and DeleteAcls.
//!
//! Must not: decide anything about access; names become Kafka's codes here
//! (`security::acl`) and the broker judges.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sluice_client::acls::{create_acls, delete_acls, describe_acls, Acl, AclSelector};

use super::output::{render_json, OutputFormat, Table};
use super::{write_stdout, Common};
use crate::security::acl::{
    Operation, PatternType, Permission, ResourceType, CLUSTER_NAME, WILDCARD,
};

#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// Add ACLs: each principal, host and operation on each resource.
    Add(AclArgs),
    /// List ACLs (all, or those on the named resources).
    List(AclArgs),
    /// Remove the ACLs that match (all on a resource when no principal or
    /// operation is given).
    Remove(AclArgs),
}

#[derive(Debug, Args)]
pub struct AclArgs {
    /// Principal to allow, `User:alice` or `User:*` (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    pub allow_principals: Vec<String>,
    /// Principal to deny (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    pub deny_principals: Vec<String>,
    /// Host the allow applies to (default `*`; repeatable).
    #[arg(long = "allow-host", visible_alias = "host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Host the deny applies to (default `*`; repeatable).
    #[arg(long = "deny-host", value_name = "HOST")]
    pub deny_hosts: Vec<String>,
    /// `list` only: ACLs of this principal.
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite or All (repeatable).
    #[arg(long = "operation", value_name = "OPERATION")]
    pub operations: Vec<String>,
    /// A topic (repeatable; `*` for every topic).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// A consumer group (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    pub cluster: bool,
    /// A transactional id (repeatable).
    #[arg(long = "transactional-id")]
    pub transactional_ids: Vec<String>,
    /// literal (default) or prefixed; `list` and `remove` also take any and
    /// match.
    #[arg(long, default_value = "literal", value_name = "TYPE")]
    pub resource_pattern_type: String,
}

pub fn run(common: &Common, command: AclsCommand) -> Result<ExitCode> {
    let mut client = common.connect()?;
    match command {
        AclsCommand::Add(args) => {
            let acls = bindings(&args)?;
            create_acls(&mut client, &acls)?;
            print(common.output, "Added ACLs", &acls)?;
        }
        AclsCommand::List(args) => {
            let mut acls = Vec::new();
            for selector in selectors(&args, true)? {
                acls.extend(describe_acls(&mut client, &selector)?);
            }
            acls.sort();
            acls.dedup();
            print(common.output, "Current ACLs", &acls)?;
        }
        AclsCommand::Remove(args) => {
            let selectors = selectors(&args, false)?;
            let removed = delete_acls(&mut client, &selectors)?;
            print(common.output, "Removed ACLs", &removed)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parsed<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    match parse(text) {
        Some(value) => Ok(value),
        None => bail!("unknown {what} '{text}'"),
    }
}

/// The resources named on the command line.
fn resources(args: &AclArgs) -> Vec<(ResourceType, String)> {
    let named = |resource_type, names: &Vec<String>| {
        names
            .iter()
            .map(move |name| (resource_type, name.clone()))
            .collect::<Vec<_>>()
    };
    let mut resources = named(ResourceType::Topic, &args.topics);
    resources.extend(named(ResourceType::Group, &args.groups));
    resources.extend(named(
        ResourceType::TransactionalId,
        &args.transactional_ids,
    ));
    if args.cluster {
        resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
    }
    resources
}

fn operations(args: &AclArgs) -> Result<Vec<Operation>> {
    args.operations
        .iter()
        .map(|text| parsed("operation", text, Operation::parse))
        .collect()
}

/// (permission, principal, hosts) for every principal given.
fn entries(args: &AclArgs) -> Vec<(Permission, &String, Vec<String>)> {
    let hosts = |given: &Vec<String>| {
        if given.is_empty() {
            vec![WILDCARD.to_string()]
        } else {
            given.clone()
        }
    };
    let allow = args
        .allow_principals
        .iter()
        .map(|principal| (Permission::Allow, principal, hosts(&args.allow_hosts)));
    let deny = args
        .deny_principals
        .iter()
        .map(|principal| (Permission::Deny, principal, hosts(&args.deny_hosts)));
    allow.chain(deny).collect()
}

fn bindings(args: &AclArgs) -> Result<Vec<Acl>> {
    let pattern = parsed(
        "pattern type",
        &args.resource_pattern_type,
        PatternType::parse,
    )?;
    let resources = resources(args);
    let operations = operations(args)?;
    let entries = entries(args);
    if resources.is_empty() || operations.is_empty() || entries.is_empty() {
        bail!("add needs a resource (--topic, --group, --cluster, --transactional-id), an --operation and an --allow-principal or --deny-principal");
    }
    let mut acls = Vec::new();
    for (resource_type, name) in &resources {
        for (permission, principal, hosts) in &entries {
            for host in hosts {
                for operation in &operations {
                    acls.push(Acl {
                        resource_type: resource_type.code(),
                        resource_name: name.clone(),
                        pattern_type: pattern.code(),
                        principal: principal.to_string(),
                        host: host.clone(),
                        operation: operation.code(),
                        permission: permission.code(),
                    });
                }
            }
        }
    }
    Ok(acls)
}

/// Selectors for `list` and `remove`: per resource (or every resource
/// when none is named), per principal and operation given (else any).
fn selectors(args: &AclArgs, listing: bool) -> Result<Vec<AclSelector>> {
    let pattern = parsed(
        "pattern type",
        &args.resource_pattern_type,
        PatternType::parse,
    )?;
    let resources: Vec<(ResourceType, Option<String>)> = match resources(args) {
        named if named.is_empty() => vec![(ResourceType::Any, None)],
        named => named.into_iter().map(|(t, name)| (t, Some(name))).collect(),
    };
    // Listing everything on a resource also shows prefixed ACLs unless a
    // pattern type was asked for; kafka-acls does the same.
    let pattern = match (listing, pattern) {
        (true, PatternType::Literal) if args.resource_pattern_type == "literal" => PatternType::Any,
        (_, pattern) => pattern,
    };
    let mut who: Vec<(Permission, Option<String>, Option<String>)> = entries(args)
        .into_iter()
        .flat_map(|(permission, principal, hosts)| {
            let given_hosts = !args.allow_hosts.is_empty() || !args.deny_hosts.is_empty();
            hosts.into_iter().map(move |host| {
                (
                    permission,
                    Some(principal.clone()),
                    given_hosts.then_some(host),
                )
            })
        })
        .collect();
    if let Some(principal) = &args.principal {
        who.push((Permission::Any, Some(principal.clone()), None));
    }
    if who.is_empty() {
        who.push((Permission::Any, None, None));
    }
    let operations = match operations(args)? {
        none if none.is_empty() => vec![Operation::Any],
        some => some,
    };
    let mut selectors = Vec::new();
    for (resource_type, name) in &resources {
        for (permission, principal, host) in &who {
            for operation in &operations {
                selectors.push(AclSelector {
                    resource_type: resource_type.code(),
                    resource_name: name.clone(),
                    pattern_type: pattern.code(),
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: operation.code(),
                    permission: permission.code(),
                });
            }
        }
    }
    Ok(selectors)
}

fn name_of<T: std::fmt::Display>(code: i8, from_code: fn(i8) -> Option<T>) -> String {
    from_code(code).map_or_else(|| format!("UNKNOWN({code})"), |value| value.to_string())
}

fn print(output: OutputFormat, title: &str, acls: &[Acl]) -> Result<()> {
    let rows: Vec<[String; 7]> = acls
        .iter()
        .map(|acl| {
            [
                name_of(acl.resource_type, ResourceType::from_code),
                acl.resource_name.clone(),
                name_of(acl.pattern_type, PatternType::from_code),
                acl.principal.clone(),
                acl.host.clone(),
                name_of(acl.operation, Operation::from_code),
                name_of(acl.permission, Permission::from_code),
            ]
        })
        .collect();
    match output {
        OutputFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(
                    |[resource_type, name, pattern, principal, host, operation, permission]| {
                        json!({
                            "resource_type": resource_type,
                            "resource_name": name,
                            "pattern_type": pattern,
                            "principal": principal,
                            "host": host,
                            "operation": operation,
                            "permission": permission,
                        })
                    },
                )
                .collect();
            write_stdout(&render_json(&Value::Array(list)))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "RESOURCE-TYPE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ]);
            for row in rows {
                table.row(row.to_vec());
            }
            write_stdout(&format!("{title}:\n{}", table.render()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &str) -> AclArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: AclArgs,
        }
        Wrapper::try_parse_from(std::iter::once("acls").chain(line.split_whitespace()))
            .unwrap()
            .args
    }

    #[test]
    fn add_makes_every_combination() {
        let acls = bindings(&args(
            "--allow-principal User:a --deny-principal User:b --operation Read \
             --operation Describe --topic t --group g --resource-pattern-type prefixed",
        ))
        .unwrap();
        assert_eq!(acls.len(), 2 * 2 * 2);
        assert!(acls
            .iter()
            .all(|acl| acl.pattern_type == PatternType::Prefixed.code() && acl.host == "*"));
        assert!(bindings(&args("--topic t --operation Read")).is_err());
        assert!(bindings(&args("--topic t --operation Nope --allow-principal User:a")).is_err());
        let cluster = bindings(&args(
            "--cluster --operation Alter --allow-principal User:a",
        ))
        .unwrap();
        assert_eq!(cluster[0].resource_name, CLUSTER_NAME);
    }

    #[test]
    fn list_and_remove_select_broadly_by_default() {
        let all = selectors(&args(""), true).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].resource_type, ResourceType::Any.code());
        assert_eq!(all[0].pattern_type, PatternType::Any.code());
        assert_eq!(all[0].principal, None);
        let remove = selectors(&args("--topic t --allow-principal User:a"), false).unwrap();
        assert_eq!(remove[0].pattern_type, PatternType::Literal.code());
        assert_eq!(remove[0].permission, Permission::Allow.code());
        assert_eq!(remove[0].host, None);
        assert_eq!(remove[0].operation, Operation::Any.code());
    }
}
