//! `/1.0/networks`: the two network types ovnlb models (`physical` uplinks and `ovn`
//! networks adopting NB routers and switches, `decisions.md` §1).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::response::{created, sync, sync_etag};
use super::{if_match, json_body, ApiError, AppState, Common};
use crate::lb::model::{Config, Network};
use crate::lb::network::{self, Topology};
use crate::lb::validate;
use crate::store::Stored;

/// A network as LXD serves it.
fn served(n: &Network) -> Value {
    json!({
        "name": n.name,
        "description": n.description,
        "type": n.kind,
        "managed": true,
        "status": "Created",
        "config": n.config,
        "used_by": [],
        "locations": [],
    })
}

fn url(name: &str) -> String {
    format!("/1.0/networks/{}", super::response::segment(name))
}

async fn all(st: &AppState) -> Result<Vec<Stored<Network>>, ApiError> {
    st.store
        .call(|s| s.networks())
        .await
        .map_err(ApiError::internal_from)
}

async fn network(st: &AppState, name: &str) -> Result<Stored<Network>, crate::store::StoreError> {
    let name = name.to_owned();
    st.store.call(move |s| s.network(&name)).await
}

/// Check `n` among `others` (every other network), and for an `ovn` network look its
/// router and switch up in NB (when connected), deriving `ipv4.address`/`ipv6.address`
/// from the router port peered with the switch when not given.
fn checked(st: &AppState, n: &mut Network, others: &[Network]) -> Result<(), ApiError> {
    n.config.retain(|_, v| !v.is_empty());
    let mut errors = validate::check_network_common(n);
    if !errors.is_empty() {
        return Err(ApiError::invalid(&errors));
    }
    let mut everything: Vec<Network> = others.to_vec();
    everything.push(n.clone());
    match n.kind.as_str() {
        "physical" => {
            validate::parse_uplink(n).map_err(|e| ApiError::invalid(&e))?;
        }
        _ => {
            let mut net = validate::parse_ovn(n, &everything).map_err(|e| ApiError::invalid(&e))?;
            let nb = st.nb.as_deref().filter(|nb| nb.ready());
            for (what, name, key) in [
                (Topology::Router, &net.router, "config.ovn.router"),
                (Topology::Switch, &net.switch, "config.ovn.switch"),
            ] {
                let Some(found) = nb.map(|nb| nb.named(what, name)) else {
                    continue;
                };
                let table = what.table();
                if found != 1 {
                    errors.push(validate::ValidationError {
                        object: format!("network {}", n.name),
                        field: key.into(),
                        message: if found == 0 {
                            format!("{table} \"{name}\" not found in OVN")
                        } else {
                            format!("{found} {table} rows are named \"{name}\": ambiguous")
                        },
                        kind: validate::ErrorKind::Invalid,
                    });
                }
            }
            if !errors.is_empty() {
                return Err(ApiError::invalid(&errors));
            }
            if !net.subnets_given {
                network::fill_subnets(&mut net, nb).map_err(|e| ApiError::invalid(&[e]))?;
                for (k, s) in [("ipv4.address", net.subnet4), ("ipv6.address", net.subnet6)] {
                    n.config
                        .insert(k.into(), s.map_or("none".into(), |s| s.to_string()));
                }
            }
            let errors = validate::settle_checkers(&mut net);
            if !errors.is_empty() {
                return Err(ApiError::invalid(&errors));
            }
        }
    }
    Ok(())
}

/// Every load balancer and forward must still hold with `n` as it is about to be: an
/// uplink's routes or ranges, an `ovn` network's subnets or uplink cannot change under
/// them. Only errors the change would add count (the whole desired state is resolved
/// before and after).
async fn still_valid(st: &AppState, n: &Network) -> Result<(), ApiError> {
    let before = st
        .store
        .call(|s| s.desired_state())
        .await
        .map_err(ApiError::internal_from)?;
    let mut after = before.clone();
    for d in &mut after.networks {
        if d.network.name == n.name {
            d.network = n.clone();
        }
    }
    let nb = st.nb.as_deref().filter(|nb| nb.ready());
    let errors = |state: &crate::lb::state::DesiredState| -> Vec<String> {
        match crate::lb::state::resolve(state, &st.limits, nb) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    };
    let old = errors(&before);
    let new: Vec<String> = errors(&after)
        .into_iter()
        .filter(|e| !old.contains(e))
        .collect();
    if new.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "The network is in use and the change would break: {}",
            new.join("; ")
        )))
    }
}

/// Give a starting NB session a moment to become ready (an `ovn` network is checked
/// against NB while it is reachable).
async fn nb_settle(st: &AppState) {
    if let Some(nb) = &st.nb {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), nb.wait_ready()).await;
    }
}

/// `GET /1.0/networks`: URLs, or objects with `recursion=1`.
///
/// # Errors
/// 404 for another project.
pub async fn list(
    State(st): State<AppState>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let nets = all(&st).await?;
    if q.recursive() {
        Ok(sync(
            nets.iter().map(|n| served(&n.value)).collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            nets.iter().map(|n| url(&n.value.name)).collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/networks`: 201 + `Location`.
///
/// # Errors
/// 400 (the rule named), 409 (exists), 503 (subnets to derive, NB away).
pub async fn create(
    State(st): State<AppState>,
    Query(q): Query<Common>,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let mut n: Network = json_body(&body)?;
    let others: Vec<Network> = all(&st).await?.into_iter().map(|s| s.value).collect();
    if others.iter().any(|o| o.name == n.name) {
        return Err(ApiError::conflict(format!(
            "Network \"{}\" already exists",
            n.name
        )));
    }
    if n.kind == "ovn" {
        nb_settle(&st).await;
    }
    checked(&st, &mut n, &others)?;
    let location = url(&n.name);
    st.store
        .call(move |s| s.create_network(&n))
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    Ok(created(&location))
}

/// `GET /1.0/networks/<name>` with `ETag`.
///
/// # Errors
/// 404.
pub async fn show(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let s = network(&st, &name)
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    Ok(sync_etag(served(&s.value), s.revision))
}

async fn write(
    st: AppState,
    name: String,
    headers: HeaderMap,
    description: String,
    config: Config,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let nets: Vec<Network> = all(&st).await?.into_iter().map(|s| s.value).collect();
    let Some(current) = nets.iter().find(|n| n.name == name).cloned() else {
        return Err(ApiError::not_found("Network not found"));
    };
    let others: Vec<Network> = nets.into_iter().filter(|n| n.name != name).collect();
    let mut n = Network {
        name,
        description,
        kind: current.kind.clone(),
        config,
    };
    if n.kind == "ovn" {
        nb_settle(&st).await;
    }
    checked(&st, &mut n, &others)?;
    still_valid(&st, &n).await?;
    st.store
        .call(move |s| s.update_network(&n, expected))
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    Ok(sync(Value::Null))
}

/// The writable fields of a network.
#[derive(Debug, Default, serde::Deserialize)]
struct NetworkPut {
    #[serde(default, deserialize_with = "crate::lb::model::null_default")]
    description: String,
    #[serde(default, deserialize_with = "crate::lb::model::null_default")]
    config: Config,
}

/// `PUT /1.0/networks/<name>`: replace description and config (`If-Match` checked).
///
/// # Errors
/// 400, 404, 412, 503.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Common>,
    headers: HeaderMap,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let p: NetworkPut = json_body(&body)?;
    write(st, name, headers, p.description, p.config).await
}

/// `PATCH /1.0/networks/<name>`: config merged key by key (`""` removes), an omitted
/// description kept.
///
/// # Errors
/// 400, 404, 412, 503.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Common>,
    headers: HeaderMap,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let stored = network(&st, &name)
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    let patch: Value = json_body(&body)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "Invalid request body: a JSON object is expected",
        ));
    };
    let mut description = stored.value.description.clone();
    let mut config: BTreeMap<String, String> = stored.value.config.clone();
    if let Some(Value::String(d)) = patch.get("description") {
        description = d.clone();
    }
    match patch.get("config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(c)) => {
            for (k, v) in c {
                match v {
                    Value::String(s) => {
                        config.insert(k.clone(), s.clone());
                    }
                    Value::Null => {
                        config.remove(k);
                    }
                    other => {
                        config.insert(k.clone(), other.to_string());
                    }
                }
            }
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "config: a map of strings is expected",
            ))
        }
    }
    let mut headers = headers;
    if if_match(&headers)?.is_none() {
        if let Ok(v) = stored.revision.to_string().parse() {
            headers.insert(axum::http::header::IF_MATCH, v);
        }
    }
    write(st, name, headers, description, config).await
}

/// `DELETE /1.0/networks/<name>`: with its load balancers and forwards (the controller
/// removes their NB rows).
///
/// # Errors
/// 404, 412.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Common>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    q.check_project()?;
    // An uplink still used by an ovn network stays.
    let nets: Vec<Network> = all(&st).await?.into_iter().map(|s| s.value).collect();
    if let Some(user) = nets
        .iter()
        .find(|n| n.kind == "ovn" && n.config.get("network") == Some(&name))
    {
        return Err(ApiError::bad_request(format!(
            "The network is currently in use by network \"{}\"",
            user.name
        )));
    }
    let expected = if_match(&headers)?;
    st.store
        .call(move |s| s.delete_network(&name, expected))
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    Ok(sync(Value::Null))
}
