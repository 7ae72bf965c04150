//! `sluice users create | list | delete`: SCRAM users, as Kafka's
//! `kafka-configs.sh --entity-type users --alter --add-config
//! 'SCRAM-SHA-512=[password=...]'` manages them, over
//! AlterUserScramCredentials and DescribeUserScramCredentials.
//!
//! Talks to a listener that needs no SASL (the first user's bootstrap: a
//! PLAINTEXT listener on 127.0.0.1; README "Securing Sluice").

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use sluice_client::users::{self, mechanism_code, mechanism_name};

use super::output::{render_json, OutputFormat, Table};
use super::{write_stdout, Common};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user, or set a new password (for one mechanism).
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (Kafka: 4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Every user with a SCRAM credential, its mechanisms and iterations.
    List,
    /// Delete a user's credential (every mechanism unless one is named).
    Delete {
        #[arg(long)]
        user: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
}

pub fn run(common: &Common, command: UsersCommand) -> Result<ExitCode> {
    let mut cluster = common.connect()?;
    match command {
        UsersCommand::Create {
            user,
            password,
            mechanism,
            iterations,
        } => {
            let code = mechanism_code(&mechanism)?;
            users::upsert_user(&mut cluster, &user, code, iterations, &password)?;
            write_stdout(&format!(
                "Created {mechanism} credential for user {user}.\n"
            ))?;
        }
        UsersCommand::List => {
            let described = users::describe_users(&mut cluster, &[])?;
            write_stdout(&render(&described, common.output))?;
        }
        UsersCommand::Delete { user, mechanism } => {
            let codes = match mechanism {
                Some(name) => vec![mechanism_code(&name)?],
                None => users::describe_users(&mut cluster, std::slice::from_ref(&user))?
                    .into_iter()
                    .flat_map(|(_, infos)| infos.into_iter().map(|(code, _)| code))
                    .collect(),
            };
            for code in codes {
                users::delete_user(&mut cluster, &user, code)?;
                write_stdout(&format!(
                    "Deleted {} credential of user {user}.\n",
                    mechanism_name(code)
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(described: &[users::UserCredentials], format: OutputFormat) -> String {
    let rows = described.iter().flat_map(|(user, infos)| {
        infos
            .iter()
            .map(move |(code, iterations)| (user.clone(), mechanism_name(*code), *iterations))
    });
    match format {
        OutputFormat::Json => {
            let users: Vec<_> = rows
                .map(|(user, mechanism, iterations)| {
                    json!({"user": user, "mechanism": mechanism, "iterations": iterations})
                })
                .collect();
            render_json(&json!(users))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
            for (user, mechanism, iterations) in rows {
                table.row(vec![user, mechanism, iterations.to_string()]);
            }
            table.render()
        }
    }
}
