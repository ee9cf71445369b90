//! The NB fence: one writer per owner id. The token
//! `NB_Global.external_ids:ovnlb:fence:<owner> = "<holder>:<epoch>"` is claimed with one
//! compare-and-swap (a `wait` on the whole `external_ids` as read, then a `mutate` that
//! replaces the key only), and every NB transaction of the holder starts with a `wait`
//! that the token is still its own. A `wait` in replicated data is checked against the
//! state the transaction commits on, also through a Raft follower (an OVSDB lock is per
//! server, so it is never the fence: `../shared/docs/ha-design.md` §2). A writer whose
//! guard fails, or that sees another token, has been fenced out: it stops writing and
//! never retries. Two ovnlbd pointed at one NB therefore never both write; the later
//! claim wins.

use std::collections::BTreeMap;

use crate::nb::{ColumnValue, NbGlobal, Table};
use crate::ovsdb::{
    Atom, CacheView, Condition, Datum, Error, Function, Mutation, Mutator, Row, Session,
    Transaction, WaitUntil,
};

/// The `external_ids` key of `owner`'s token.
pub fn key(owner: &str) -> String {
    format!("ovnlb:fence:{owner}")
}

/// The epoch of a token `<holder>:<epoch>` (`None`: not a token).
pub fn epoch(token: &str) -> Option<u64> {
    token.rsplit_once(':')?.1.parse().ok()
}

/// A claimed fence: the key and the token that is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// `ovnlb:fence:<owner>`.
    pub key: String,
    /// `<holder>:<epoch>`.
    pub token: String,
    /// The token it replaced (`None`: the first claim).
    pub previous: Option<String>,
}

/// Why a claim did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The compare-and-swap lost every time (others keep changing `external_ids`).
    #[error("the fence token could not be claimed: {0}")]
    Lost(Error),
    /// NB refused or could not be reached.
    #[error("claiming the fence token: {0}")]
    Nb(Error),
}

/// The token `owner`'s key holds in a view, and `NB_Global`'s whole `external_ids`.
fn read(v: &CacheView, key: &str) -> Option<(Option<String>, BTreeMap<String, String>)> {
    let row = v.rows(NbGlobal::NAME).next()?;
    let ids = BTreeMap::<String, String>::from_datum(row.get("external_ids")).unwrap_or_default();
    Some((ids.get(key).cloned(), ids))
}

/// The token `key` holds in a view of NB.
pub fn token_in(v: &CacheView, key: &str) -> Option<String> {
    v.rows(NbGlobal::NAME)
        .next()?
        .get("external_ids")
        .map_get(key)
        .map(str::to_owned)
}

/// The token `owner`'s key holds in NB's cache now.
pub fn current(session: &Session, owner: &str) -> Option<String> {
    let key = key(owner);
    session.cache().read(|v| token_in(v, &key))
}

/// Claim `owner`'s fence for `holder`: the epoch after the one NB holds (1 when none).
///
/// # Errors
/// [`ClaimError`].
pub async fn claim(session: &Session, owner: &str, holder: &str) -> Result<Fence, ClaimError> {
    let key = key(owner);
    let mut last = None;
    for _ in 0..5 {
        session.sync().await.map_err(ClaimError::Nb)?;
        let mut t = Transaction::with_schema(session.schema().clone());
        let Some((old, ids)) = session.cache().read(|v| read(v, &key)) else {
            // No NB_Global yet: create it holding the token (at most one row: of two
            // creators, one fails and reads the other's).
            let token = format!("{holder}:1");
            t.insert(
                NbGlobal::NAME,
                Row::from([(
                    "external_ids".to_owned(),
                    Datum::string_map([(key.as_str(), token.as_str())]),
                )]),
            );
            match session.transact(&t).await {
                Ok(_) => {
                    return Ok(Fence {
                        key,
                        token,
                        previous: None,
                    })
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            }
        };
        let next = old.as_deref().and_then(epoch).unwrap_or(0) + 1;
        let token = format!("{holder}:{next}");
        t.comment(&format!("ovnlb: fence {key} = {token}"));
        t.wait(
            NbGlobal::NAME,
            vec![],
            &["external_ids"],
            WaitUntil::Eq,
            vec![Row::from([(
                "external_ids".to_owned(),
                Datum::string_map(ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            )])],
        );
        t.mutate(
            NbGlobal::NAME,
            vec![],
            vec![
                Mutation::new(
                    "external_ids",
                    Mutator::Delete,
                    Datum::set([Atom::from(key.clone())]),
                ),
                Mutation::new(
                    "external_ids",
                    Mutator::Insert,
                    Datum::string_map([(key.as_str(), token.as_str())]),
                ),
            ],
        );
        match session.transact(&t).await {
            Ok(_) => {
                return Ok(Fence {
                    key,
                    token,
                    previous: old,
                })
            }
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(ClaimError::Nb(e)),
        }
    }
    Err(ClaimError::Lost(last.expect("an error each time")))
}

impl Fence {
    /// Start `t` with the guard: the token is still ours (`wait` until some
    /// `NB_Global` row's `external_ids` includes it). It must be `t`'s first operation:
    /// [`Fence::refused`] knows it by its index.
    pub fn guard(&self, t: &mut Transaction) {
        debug_assert_eq!(t.len(), 0, "the fence guard comes first");
        t.wait(
            NbGlobal::NAME,
            vec![Condition::new(
                "external_ids",
                Function::Includes,
                Datum::string_map([(self.key.as_str(), self.token.as_str())]),
            )],
            &[],
            WaitUntil::Ne,
            vec![],
        );
    }

    /// Whether `e` is the guard failing: the token is no longer ours.
    pub fn refused(e: &Error) -> bool {
        matches!(e, Error::Transaction(t) if t.op_index == Some(0)) && e.is_conflict()
    }

    /// Whether `token` (what NB holds now) is still ours.
    pub fn holds(&self, token: Option<&str>) -> bool {
        token == Some(self.token.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_holder_and_an_epoch_after_its_last_colon() {
        assert_eq!(epoch("ovnlbd-12-ab:7"), Some(7));
        assert_eq!(epoch("h:with:colons:12"), Some(12));
        assert_eq!(epoch("no-epoch"), None);
        assert_eq!(key("ovnlb"), "ovnlb:fence:ovnlb");
    }
}
