//! `flotta token ...` (API tokens: create, list, delete) and `flotta auth can-i`
//! (a `SelfSubjectAccessReview`).

use std::io::Write as _;

use flotta_core::kind::ResourceKind;
use serde_json::{Value, json};

use crate::commands::client;
use crate::{CanIArgs, CliError, GlobalArgs, TokenCommand};

/// Runs a `token` subcommand.
pub async fn token(global: &GlobalArgs, command: TokenCommand) -> Result<(), CliError> {
    let client = client(global)?;
    let mut out = std::io::stdout().lock();
    match command {
        TokenCommand::Create {
            name,
            role,
            groups,
            expires_in,
            description,
        } => {
            let mut request = json!({"name": name, "groups": groups, "description": description});
            if let Some(map) = request.as_object_mut() {
                if let Some(role) = role {
                    map.insert("role".into(), json!(role));
                }
                if let Some(lifetime) = expires_in {
                    map.insert("expiresIn".into(), json!(lifetime));
                }
            }
            let created = client.create_token(&request).await?;
            let secret = created["secret"].as_str().unwrap_or_default();
            writeln!(out, "{secret}")?;
        }
        TokenCommand::List => {
            let list = client.list_tokens().await?;
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let mut rows = vec![["ID", "NAME", "ROLE", "GROUPS", "EXPIRES"].map(str::to_owned)];
            for item in list["items"].as_array().into_iter().flatten() {
                let groups: Vec<&str> = item["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                rows.push([
                    text(&item["id"]),
                    text(&item["name"]),
                    text(&item["role"]),
                    if groups.is_empty() {
                        "-".into()
                    } else {
                        groups.join(",")
                    },
                    item["expiresAt"].as_str().unwrap_or("never").to_owned(),
                ]);
            }
            let widths: Vec<usize> = (0..5)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                writeln!(out, "{}", cells.join("   ").trim_end())?;
            }
        }
        TokenCommand::Delete { id } => {
            client.delete_token(&id).await?;
            writeln!(out, "token {id} deleted")?;
        }
    }
    Ok(())
}

/// `auth can-i VERB RESOURCE[/SUBRESOURCE] [NAME]`: prints `yes` or `no` (and fails
/// with `no`), as `kubectl auth can-i`.
pub async fn can_i(global: &GlobalArgs, args: CanIArgs) -> Result<(), CliError> {
    let client = client(global)?;
    let spec = if args.resource.starts_with('/') {
        json!({"nonResourceAttributes": {"path": args.resource, "verb": args.verb}})
    } else {
        let (resource, subresource) = match args.resource.split_once('/') {
            Some((r, s)) => (r.to_owned(), s.to_owned()),
            None => (args.resource.clone(), String::new()),
        };
        let kind = ResourceKind::lookup(&resource);
        let plural = kind.map_or(resource.clone(), |k| k.plural().to_owned());
        let group = kind.map_or(String::new(), |k| k.info().group.to_owned());
        let namespace = match kind {
            Some(k) if !k.namespaced() => String::new(),
            _ if args.all_namespaces => String::new(),
            _ => global.namespace.clone(),
        };
        json!({"resourceAttributes": {
            "verb": args.verb, "group": group, "resource": plural,
            "subresource": subresource, "namespace": namespace,
            "name": args.name.unwrap_or_default(),
        }})
    };
    let review = client.access_review(&spec).await?;
    let allowed = review["status"]["allowed"].as_bool().unwrap_or(false);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", if allowed { "yes" } else { "no" })?;
    if allowed {
        Ok(())
    } else {
        Err(CliError::Failed(
            review["status"]["reason"]
                .as_str()
                .unwrap_or("denied")
                .to_owned(),
        ))
    }
}
