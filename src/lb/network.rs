//! What the API needs to know of NB about a network, behind a small trait: whether NB is
//! at hand, its routers and switches by name, the subnets of a network derived from its
//! router port, whether rows are attached, and the session's gauges. `reconcile`
//! implements it over the live cache ([`crate::reconcile::facts`]); the API holds it as
//! `dyn NbFacts` and never reaches NB itself.

use std::future::Future;
use std::pin::Pin;

use ipnet::IpNet;
use uuid::Uuid;

use super::validate::OvnNetwork;

/// A kind of NB topology row a network names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `Logical_Router` (`ovn.router`).
    Router,
    /// `Logical_Switch` (`ovn.switch`).
    Switch,
}

impl Topology {
    /// The NB table's name (as error messages name it).
    pub fn table(self) -> &'static str {
        match self {
            Topology::Router => "Logical_Router",
            Topology::Switch => "Logical_Switch",
        }
    }
}

/// The session's gauges, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NbGauges {
    /// Connected to a usable server.
    pub connected: bool,
    /// Connections made since start.
    pub connections: u64,
    /// `Load_Balancer` rows owned by the owner asked about.
    pub owned_rows: usize,
}

/// Facts of NB, read from a live view of it.
pub trait NbFacts: Send + Sync {
    /// Whether the view holds a full snapshot of NB now.
    fn ready(&self) -> bool;
    /// Resolves once [`NbFacts::ready`] (the caller bounds the wait).
    fn wait_ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// How many rows of `what` are named `name`.
    fn named(&self, what: Topology, name: &str) -> usize;
    /// The subnets (IPv4, IPv6) of the router port peered with the network's switch.
    ///
    /// # Errors
    /// A message asking for the explicit keys when NB does not tell.
    fn derive_subnets(&self, net: &OvnNetwork) -> Result<(Option<IpNet>, Option<IpNet>), String>;
    /// Whether every one of `rows` is in the `load_balancer` column of the network's
    /// (unique) router, and of its switch.
    fn attached(&self, net: &OvnNetwork, rows: &[Uuid]) -> (bool, bool);
    /// The session's gauges, counting the rows `owner` owns.
    fn gauges(&self, owner: &str) -> NbGauges;
}
