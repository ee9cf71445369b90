//! `/1.0/networks/<net>/load-balancers` and `/1.0/networks/<net>/forwards`: one set of
//! handlers, generic over the [`Object`] (its kind defined once, in [`crate::lb::model`]).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::response::{created, sync, sync_etag};
use super::{if_match, json_body, ApiError, AppState, Common};
use crate::lb::model::{canonical_ip, Object};
use crate::lb::validate::{OvnNetwork, Uplink};
use crate::lb::{health, network};
use crate::store::{Objects, StoreError, Stored};

/// The object as `GET` returns it: the stored fields plus `location` (always empty:
/// OVN load balancers are not member-specific).
/// Serialized straight from the stored object (no intermediate `Value`: a
/// `recursion=1` list holds the objects and the reply's bytes, nothing more).
#[derive(serde::Serialize)]
struct Served<'a, T: serde::Serialize> {
    #[serde(flatten)]
    object: &'a T,
    location: &'static str,
}

fn served<O: Object>(o: &O) -> Served<'_, O> {
    Served {
        object: o,
        location: "",
    }
}

fn url<O: Object>(net: &str, listen: &str) -> String {
    use super::response::segment;
    format!(
        "/1.0/networks/{}/{}/{}",
        segment(net),
        O::KIND.collection(),
        segment(listen)
    )
}

/// An `ovn` network ready to validate against: parsed, its uplink parsed, subnets from
/// its config (derived from NB when absent and NB is at hand).
///
/// # Errors
/// 404 for an unknown network, 400 for one that cannot have load balancers or forwards.
pub async fn ovn_context(
    st: &AppState,
    network: &str,
    what: &str,
) -> Result<(OvnNetwork, Uplink), ApiError> {
    // The network and its uplink only: a request costs the same with many networks.
    let name = network.to_owned();
    let (n, up) = st
        .store
        .call(move |s| {
            let n = s.network(&name)?.value;
            let up = match n.config.get("network").map(|u| u.trim()) {
                Some(up) if n.kind == "ovn" => match s.network(up) {
                    Ok(u) => Some(u.value),
                    Err(StoreError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                },
                _ => None,
            };
            Ok((n, up))
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::not_found("Network not found"),
            e => ApiError::internal_from(e),
        })?;
    if n.kind != "ovn" {
        return Err(ApiError::bad_request(format!(
            "Network driver \"{}\" does not support {what}s",
            n.kind
        )));
    }
    let mut all = vec![n];
    all.extend(up);
    let nb = st.nb.as_deref().filter(|nb| nb.ready());
    let c = network::context(&all[0], &all, nb).map_err(|e| ApiError::invalid(&e))?;
    Ok((c.net, c.uplink))
}

/// One object, read off the runtime's workers.
async fn get<O: Object>(
    st: &AppState,
    network: &str,
    listen: &str,
) -> Result<Stored<O>, StoreError> {
    let (net, l) = (network.to_owned(), listen.to_owned());
    st.store.call(move |s| s.get::<O>(&net, &l)).await
}

/// The listen address of a path, canonical.
fn path_listen(addr: &str) -> String {
    canonical_ip(addr).unwrap_or_else(|| addr.to_owned())
}

/// Normalise and validate `o` for `network`; `ctx` is its [`ovn_context`] when the
/// caller has it already.
async fn checked<O: Object>(
    st: &AppState,
    network: &str,
    ctx: Option<(OvnNetwork, Uplink)>,
    o: &mut O,
) -> Result<(), ApiError> {
    o.normalise();
    let (net, up) = match ctx {
        Some(c) => c,
        None => ovn_context(st, network, O::KIND.what()).await?,
    };
    let mut errors = o.validate(&net, &up, &st.limits);
    if errors.is_empty() && o.reads_neighbours() {
        // Against NB when NB is at hand (else the controller finds the same when it
        // applies, and `/state` says so; rules of northd's version pass unknown), and
        // against the network's other objects of the kind.
        let nb = st.nb.as_deref().filter(|nb| nb.ready());
        if let (Some(nb), true) = (nb, o.checks_health()) {
            errors.extend(o.check_with_nb(&net, nb));
        }
        let name = network.to_owned();
        let others = st
            .store
            .call(move |s| s.list::<O>(&name))
            .await
            .map_err(ApiError::internal_from)?;
        let others: Vec<O> = others.into_iter().map(|s| s.value).collect();
        if o.checks_health() {
            errors.extend(o.check_shared_backends(&others, &net));
        }
        let version = nb.and_then(|nb| nb.northd_version());
        errors.extend(o.check_with_version(&others, &net, version.as_ref()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&errors))
    }
}

/// Drop config keys whose value is `""` (how lxc's `unset` removes a key).
fn drop_empty<O: Object>(put: &mut O::Put) {
    O::config_mut(put).retain(|_, v| !v.is_empty());
}

/// What a write waits for: the `?wait` timeout and the status to watch. Checked before
/// anything is written, so a bad `?wait` changes nothing.
pub(crate) struct Wait<'a>(Option<(std::time::Duration, &'a crate::progress::Status)>);

impl<'a> Wait<'a> {
    /// The wait a write asked for.
    ///
    /// # Errors
    /// 400 for a `wait` that is not a number of seconds, or when no controller runs.
    pub(crate) fn of(st: &'a AppState, q: &Common) -> Result<Wait<'a>, ApiError> {
        let Some(timeout) = q.wait()? else {
            return Ok(Wait(None));
        };
        match &st.status {
            Some(s) => Ok(Wait(Some((timeout, s)))),
            None => Err(ApiError::bad_request(
                "wait: no controller runs in this server",
            )),
        }
    }

    /// Wait until the controller has applied `revision` of the object (`None`: its
    /// removal), if the client asked to.
    async fn applied(
        self,
        network: &str,
        listen: &str,
        revision: Option<u64>,
    ) -> Result<(), ApiError> {
        let Some((timeout, status)) = self.0 else {
            return Ok(());
        };
        let (k, done) = status
            .wait_for(network, listen, timeout, |k| match revision {
                Some(r) => k.is_some_and(|k| {
                    k.applied_revision.is_some_and(|a| a >= r) && k.error.is_empty()
                }),
                None => k.is_none(),
            })
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{e}: the write is stored, and will be applied when the server runs again"
                    ),
                )
            })?;
        if done {
            return Ok(());
        }
        let why = k
            .map(|k| k.error)
            .filter(|e| !e.is_empty())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "Stored, but not yet applied in OVN within {:.3} s{why}",
                timeout.as_secs_f64()
            ),
        ))
    }
}

/// `GET …/<kind>`: URLs, or objects with `recursion=1`.
///
/// # Errors
/// 404 for an unknown network or project.
pub async fn list<O: Object>(
    State(st): State<AppState>,
    Path(network): Path<String>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    ovn_context(&st, &network, O::KIND.what()).await?;
    let net = network.clone();
    let objs = st
        .store
        .call(move |s| s.list::<O>(&net))
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    if q.recursive() {
        let v: Vec<Served<'_, O>> = objs.iter().map(|s| served::<O>(&s.value)).collect();
        Ok(sync(v))
    } else {
        let v: Vec<String> = objs
            .into_iter()
            .map(|s| url::<O>(&network, s.value.listen()))
            .collect();
        Ok(sync(v))
    }
}

/// `POST …/<kind>`: 201 + `Location`.
///
/// # Errors
/// 400 (the rule named), 404, 409 (address taken).
pub async fn create<O: Object>(
    State(st): State<AppState>,
    Path(network): Path<String>,
    Query(q): Query<Common>,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let wait = Wait::of(&st, &q)?;
    let mut o: O = json_body(&body)?;
    drop_empty::<O>(o.put_mut());
    if o.listen().trim().is_empty() {
        return Err(ApiError::bad_request(
            "listen_address: a listen address is required (allocation is not supported)",
        ));
    }
    checked::<O>(&st, &network, None, &mut o).await?;
    // (The object goes to the store's thread and comes back: no copy.)
    let net = network.clone();
    let (revision, o) = st
        .store
        .call(move |s| s.create(&net, &o).map(|r| (r, o)))
        .await
        .map_err(|e| ApiError::from_store(e, "Network not found"))?;
    let listen = o.listen();
    wait.applied(&network, listen, Some(revision)).await?;
    Ok(created(&url::<O>(&network, listen)))
}

/// `GET …/<kind>/<addr>` with `ETag`.
///
/// # Errors
/// 404.
pub async fn show<O: Object>(
    State(st): State<AppState>,
    Path((network, addr)): Path<(String, String)>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    ovn_context(&st, &network, O::KIND.what()).await?;
    let s = get::<O>(&st, &network, &path_listen(&addr))
        .await
        .map_err(|e| ApiError::from_store(e, O::KIND.not_found()))?;
    Ok(sync_etag(served::<O>(&s.value), s.revision))
}

async fn write<O: Object>(
    st: AppState,
    ctx: Option<(OvnNetwork, Uplink)>,
    network: String,
    addr: String,
    q: Common,
    headers: HeaderMap,
    put: O::Put,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let wait = Wait::of(&st, &q)?;
    let listen = path_listen(&addr);
    let mut put = put;
    drop_empty::<O>(&mut put);
    let mut o = O::new(listen.clone(), put);
    checked::<O>(&st, &network, ctx, &mut o).await?;
    let (listen, put) = o.into_parts();
    let (net, l) = (network.clone(), listen.clone());
    let revision = st
        .store
        .call(move |s| s.update::<O>(&net, &l, &put, expected))
        .await
        .map_err(|e| ApiError::from_store(e, O::KIND.not_found()))?;
    wait.applied(&network, &listen, Some(revision)).await?;
    Ok(sync(Value::Null))
}

/// `PUT …/<kind>/<addr>`: replace the editable fields (`If-Match` checked).
///
/// # Errors
/// 400, 404, 409, 412.
pub async fn put<O: Object>(
    State(st): State<AppState>,
    Path((network, addr)): Path<(String, String)>,
    Query(q): Query<Common>,
    headers: HeaderMap,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let put: O::Put = json_body(&body)?;
    // The object must exist first (404 before any validation message).
    let (net, l) = (network.clone(), path_listen(&addr));
    let missing = st
        .store
        .call(move |s| match s.get::<O>(&net, &l) {
            Ok(_) => Ok(None),
            Err(StoreError::NotFound(_)) => Ok(Some(if s.network(&net).is_ok() {
                O::KIND.not_found()
            } else {
                "Network not found"
            })),
            Err(e) => Err(e),
        })
        .await
        .map_err(ApiError::internal_from)?;
    if let Some(what) = missing {
        return Err(ApiError::not_found(what));
    }
    write::<O>(st, None, network, addr, q, headers, put).await
}

/// Merge a PATCH body into the stored editable fields: keys present replace the stored
/// ones (`null` leaves them), `config` merges key by key (`""` removes a key), an omitted
/// `description` is kept.
///
/// # Errors
/// 400 when the body is not an object or the result does not decode.
pub fn merge<O: Object>(stored: &O::Put, body: &[u8]) -> Result<O::Put, ApiError> {
    let patch: Value = json_body(body)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "Invalid request body: a JSON object is expected",
        ));
    };
    let mut base = serde_json::to_value(stored).map_err(ApiError::internal_from)?;
    let Value::Object(m) = &mut base else {
        return Err(ApiError::internal("stored object is not a map"));
    };
    for (k, v) in patch {
        if !m.contains_key(&k) {
            // listen_address, location and unknown keys: not editable, ignored as LXD does.
            continue;
        }
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("config", Value::Object(c)) => {
                let mut cfg: BTreeMap<String, Value> = m
                    .get("config")
                    .and_then(|c| serde_json::from_value(c.clone()).ok())
                    .unwrap_or_default();
                for (ck, cv) in c {
                    cfg.insert(ck, cv);
                }
                m.insert("config".into(), json!(cfg));
            }
            (_, v) => {
                m.insert(k, v);
            }
        }
    }
    serde_json::from_value(base)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// `PATCH …/<kind>/<addr>`: merge (see [`merge`]), then as PUT.
///
/// # Errors
/// 400, 404, 409, 412.
pub async fn patch<O: Object>(
    State(st): State<AppState>,
    Path((network, addr)): Path<(String, String)>,
    Query(q): Query<Common>,
    headers: HeaderMap,
    super::Body(body): super::Body,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let ctx = ovn_context(&st, &network, O::KIND.what()).await?;
    let stored = get::<O>(&st, &network, &path_listen(&addr))
        .await
        .map_err(|e| ApiError::from_store(e, O::KIND.not_found()))?;
    // A PATCH builds on what it read: with no If-Match, on exactly that revision.
    let expected = if_match(&headers)?.unwrap_or(stored.revision);
    let put = merge::<O>(&stored.value.into_parts().1, &body)?;
    let mut headers = headers;
    if let Ok(v) = expected.to_string().parse() {
        headers.insert(axum::http::header::IF_MATCH, v);
    }
    // The network as checked above (not read and parsed a second time).
    write::<O>(st, Some(ctx), network, addr, q, headers, put).await
}

/// `DELETE …/<kind>/<addr>` (a body is ignored; `If-Match` checked when sent).
///
/// # Errors
/// 404, 412.
pub async fn delete<O: Object>(
    State(st): State<AppState>,
    Path((network, addr)): Path<(String, String)>,
    Query(q): Query<Common>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let wait = Wait::of(&st, &q)?;
    ovn_context(&st, &network, O::KIND.what()).await?;
    let listen = path_listen(&addr);
    let expected = if_match(&headers)?;
    let (net, l) = (network.clone(), listen.clone());
    st.store
        .call(move |s| s.delete::<O>(&net, &l, expected))
        .await
        .map_err(|e| ApiError::from_store(e, O::KIND.not_found()))?;
    wait.applied(&network, &listen, None).await?;
    Ok(sync(Value::Null))
}

/// `GET …/<kind>/<addr>/state`: desired vs applied revision, the NB rows, whether they
/// are attached, the last error (`decisions.md` §4).
///
/// # Errors
/// 404.
pub async fn state<O: Object>(
    State(st): State<AppState>,
    Path((network, addr)): Path<(String, String)>,
    Query(q): Query<Common>,
) -> Result<Response, ApiError> {
    q.check_project()?;
    let (net, _) = ovn_context(&st, &network, O::KIND.what()).await?;
    let listen = path_listen(&addr);
    let s = get::<O>(&st, &network, &listen)
        .await
        .map_err(|e| ApiError::from_store(e, O::KIND.not_found()))?;
    let key = st.status.as_ref().and_then(|s| s.key(&network, &listen));
    let net_error = st.status.as_ref().and_then(|s| s.network_error(&network));
    let rows: Vec<(String, uuid::Uuid, String)> =
        key.as_ref().map(|k| k.rows.clone()).unwrap_or_default();
    let uuids: Vec<uuid::Uuid> = rows.iter().map(|(_, u, _)| *u).collect();
    let (on_router, on_switch) = st
        .nb
        .as_ref()
        .map_or((false, false), |nb| nb.attached(&net, &uuids));
    let error = key
        .as_ref()
        .map(|k| k.error.clone())
        .filter(|e| !e.is_empty())
        .or(net_error)
        .unwrap_or_default();
    let lbs: Vec<Value> = rows
        .iter()
        .map(|(name, uuid, protocol)| json!({"name": name, "uuid": uuid, "protocol": protocol}))
        .collect();
    let (backend_health, healthcheck, health_error) =
        health_state(&st, &net, s.value.as_load_balancer())?;
    // Ports whose last backend left: their VIPs have no backends (OVN drops, or rejects
    // with ovn.reject=true).
    let without: Vec<Value> = s
        .value
        .as_load_balancer()
        .map(|lb| {
            lb.put
                .ports
                .iter()
                .filter(|p| p.target_backend.is_empty())
                .map(|p| json!({"protocol": p.protocol, "listen_port": p.listen_port}))
                .collect()
        })
        .unwrap_or_default();
    Ok(sync(json!({
        "ports_without_backends": without,
        "backend_health": backend_health,
        "healthcheck": healthcheck,
        "backend_health_error": health_error,
        "revision": s.revision,
        "applied_revision": key.and_then(|k| k.applied_revision),
        "ovn": {
            "load_balancers": lbs,
            "router_attached": on_router,
            "switch_attached": on_switch,
        },
        "error": error,
    })))
}

/// What `/state` says of a load balancer's health checks: `backend_health` (Incus's
/// map, `null` while the checks are off or no SB is configured), the effective settings
/// (`null` while off) and why there is no health when it is on (no SB configured).
///
/// # Errors
/// 503 while the SB cache is not ready: a page of `unknown` would be a lie.
fn health_state(
    st: &AppState,
    net: &OvnNetwork,
    lb: Option<&crate::lb::model::LoadBalancersPost>,
) -> Result<(Value, Value, String), ApiError> {
    let Some((lb, hc)) = lb.and_then(|lb| {
        health::parse(&lb.put.config)
            .ok()
            .flatten()
            .map(|hc| (lb, hc))
    }) else {
        return Ok((Value::Null, Value::Null, String::new()));
    };
    let sources: Vec<String> = [net.checker4, net.checker6]
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    let nb = st.nb.as_deref().filter(|nb| nb.ready());
    let warnings = nb
        .map(|nb| health::checker_warnings(net, nb))
        .unwrap_or_default();
    let settings = json!({
        "warnings": warnings,
        "interval": hc.interval,
        "timeout": hc.timeout,
        "success_count": hc.success_count,
        "failure_count": hc.failure_count,
        "source_addresses": sources,
    });
    let Some(sb) = st.sb.as_deref() else {
        return Ok((
            Value::Null,
            settings,
            "no OVN Southbound database configured (--sb): backend health is not known".into(),
        ));
    };
    if !sb.ready() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVN southbound database not available",
        ));
    }
    let map = health::backend_health(lb, net, nb, sb);
    let map = serde_json::to_value(map).map_err(ApiError::internal_from)?;
    Ok((map, settings, String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::model::{LoadBalancerBackend, LoadBalancerPut, LoadBalancersPost};

    #[test]
    fn patch_merges_as_documented() {
        let stored = LoadBalancerPut {
            description: "web".into(),
            config: [
                ("user.a".to_owned(), "1".to_owned()),
                ("user.b".to_owned(), "2".to_owned()),
            ]
            .into(),
            backends: vec![LoadBalancerBackend {
                name: "b1".into(),
                target_address: "10.0.0.11".into(),
                ..Default::default()
            }],
            ports: vec![],
        };
        // config merged key by key ("" stays for the caller to drop), description kept,
        // null leaves a field, listen_address ignored.
        let m = merge::<LoadBalancersPost>(&stored, br#"{"config":{"user.a":"","user.c":"3"},"backends":null,"listen_address":"192.0.2.99"}"#).unwrap();
        assert_eq!(m.description, "web");
        assert_eq!(m.config.get("user.a").map(String::as_str), Some(""));
        assert_eq!(m.config.get("user.b").map(String::as_str), Some("2"));
        assert_eq!(m.config.get("user.c").map(String::as_str), Some("3"));
        assert_eq!(m.backends.len(), 1);
        // No config at all: not a crash, config kept.
        let m = merge::<LoadBalancersPost>(&stored, br#"{"description":"x"}"#).unwrap();
        assert_eq!((m.description.as_str(), m.config.len()), ("x", 2));
        assert!(merge::<LoadBalancersPost>(&stored, b"[1]").is_err());
        assert!(merge::<LoadBalancersPost>(&stored, br#"{"backends":"nope"}"#).is_err());
    }

    #[test]
    fn if_match_forms() {
        use axum::http::{HeaderMap, HeaderValue};
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("if-match", HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&h("\"7\"")).unwrap(), Some(7));
        assert_eq!(if_match(&h("W/\"7\"")).unwrap(), Some(7));
        assert_eq!(if_match(&h("*")).unwrap(), None);
        assert_eq!(
            if_match(&h("\"abc\"")).unwrap_err().status,
            StatusCode::PRECONDITION_FAILED
        );
    }
}
