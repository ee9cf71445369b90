//! Typed rows of the OVN Northbound tables ovnlb touches.
//!
//! Each table is a struct with the columns we read or write; [`Table::from_row`] and
//! [`Table::to_row`] convert to and from the generic [`Row`]. [`Table::COLUMNS`] lists the
//! typed columns with their expected shape; a test checks every one against the pinned
//! schema (`ovsdb-schema/ovn-nb.ovsschema`), so a schema change cannot silently break us.

use std::collections::{BTreeMap, BTreeSet};

pub mod southbound;

use uuid::Uuid;

use crate::ovsdb::{Atom, AtomicType, CacheRow, ColumnType, Datum, Row};

/// The shape a typed column expects of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exactly one string.
    Str,
    /// Zero or one string.
    OptStr,
    /// Exactly one integer.
    Int,
    /// Zero or one boolean.
    OptBool,
    /// Map string → string.
    StrMap,
    /// Set of strings.
    StrSet,
    /// Set of UUIDs (references).
    UuidSet,
}

impl Kind {
    /// Whether a schema column type has this shape.
    pub fn matches(self, t: &ColumnType) -> bool {
        let k = t.key.atomic;
        let v = t.value.as_ref().map(|v| v.atomic);
        match self {
            Kind::Str => k == AtomicType::String && v.is_none() && t.min == 1 && t.max == Some(1),
            Kind::OptStr => {
                k == AtomicType::String && v.is_none() && t.min == 0 && t.max == Some(1)
            }
            Kind::Int => k == AtomicType::Integer && v.is_none() && t.min == 1 && t.max == Some(1),
            Kind::OptBool => {
                k == AtomicType::Boolean && v.is_none() && t.min == 0 && t.max == Some(1)
            }
            Kind::StrMap => k == AtomicType::String && v == Some(AtomicType::String),
            Kind::StrSet => k == AtomicType::String && v.is_none() && t.max != Some(1),
            Kind::UuidSet => k == AtomicType::Uuid && v.is_none() && t.max != Some(1),
        }
    }
}

/// A Rust type a column converts to and from.
pub trait ColumnValue: Sized + Default {
    /// The schema shape.
    const KIND: Kind;
    /// From a cached value (`None` when it has the wrong shape).
    fn from_datum(d: &Datum) -> Option<Self>;
    /// To a value.
    fn to_datum(&self) -> Datum;
}

impl ColumnValue for String {
    const KIND: Kind = Kind::Str;
    fn from_datum(d: &Datum) -> Option<Self> {
        if d.is_empty() {
            return Some(String::new());
        }
        d.as_str().map(str::to_owned)
    }
    fn to_datum(&self) -> Datum {
        Datum::scalar(self.clone())
    }
}

impl ColumnValue for Option<String> {
    const KIND: Kind = Kind::OptStr;
    fn from_datum(d: &Datum) -> Option<Self> {
        if d.is_empty() {
            Some(None)
        } else {
            d.as_str().map(|s| Some(s.to_owned()))
        }
    }
    fn to_datum(&self) -> Datum {
        self.as_ref()
            .map(|s| Datum::scalar(s.clone()))
            .unwrap_or_default()
    }
}

impl ColumnValue for i64 {
    const KIND: Kind = Kind::Int;
    fn from_datum(d: &Datum) -> Option<Self> {
        if d.is_empty() {
            return Some(0);
        }
        d.as_scalar()?.as_i64()
    }
    fn to_datum(&self) -> Datum {
        Datum::scalar(*self)
    }
}

impl ColumnValue for Option<bool> {
    const KIND: Kind = Kind::OptBool;
    fn from_datum(d: &Datum) -> Option<Self> {
        if d.is_empty() {
            Some(None)
        } else {
            d.as_scalar()?.as_bool().map(Some)
        }
    }
    fn to_datum(&self) -> Datum {
        self.map(Datum::scalar).unwrap_or_default()
    }
}

impl ColumnValue for BTreeMap<String, String> {
    const KIND: Kind = Kind::StrMap;
    fn from_datum(d: &Datum) -> Option<Self> {
        d.as_map()?
            .iter()
            .map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
            .collect()
    }
    fn to_datum(&self) -> Datum {
        Datum::string_map(self.iter().map(|(k, v)| (k.clone(), v.clone())))
    }
}

impl ColumnValue for BTreeSet<String> {
    const KIND: Kind = Kind::StrSet;
    fn from_datum(d: &Datum) -> Option<Self> {
        d.atoms().map(|a| a.as_str().map(str::to_owned)).collect()
    }
    fn to_datum(&self) -> Datum {
        Datum::set(self.iter().cloned())
    }
}

impl ColumnValue for BTreeSet<Uuid> {
    const KIND: Kind = Kind::UuidSet;
    fn from_datum(d: &Datum) -> Option<Self> {
        d.atoms().map(Atom::as_uuid).collect()
    }
    fn to_datum(&self) -> Datum {
        Datum::set(self.iter().copied())
    }
}

/// A typed NB table.
pub trait Table: Sized {
    /// The table's name in the schema.
    const NAME: &'static str;
    /// Typed columns and their expected shapes.
    const COLUMNS: &'static [(&'static str, Kind)];
    /// From a cached row; `None` when a column has the wrong shape.
    fn from_row(row: &CacheRow) -> Option<Self>;
    /// The typed columns as a row (without `_uuid`).
    fn to_row(&self) -> Row;
    /// The column names, for monitor requests.
    fn column_names() -> Vec<String> {
        Self::COLUMNS.iter().map(|(c, _)| (*c).to_owned()).collect()
    }
}

macro_rules! nb_table {
    ($(#[$doc:meta])* $name:ident, $table:literal, { $($(#[$fdoc:meta])* $field:ident : $ty:ty = $col:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            /// The row's UUID.
            pub uuid: Uuid,
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl Table for $name {
            const NAME: &'static str = $table;
            const COLUMNS: &'static [(&'static str, Kind)] = &[$(($col, <$ty as ColumnValue>::KIND)),*];
            fn from_row(row: &CacheRow) -> Option<Self> {
                Some($name { uuid: row.uuid, $($field: <$ty as ColumnValue>::from_datum(row.get($col))?,)* })
            }
            fn to_row(&self) -> Row {
                Row::from([$(($col.to_owned(), self.$field.to_datum())),*])
            }
        }
    };
}

nb_table!(
    /// `Load_Balancer`: one VIP set for one protocol.
    LoadBalancer, "Load_Balancer", {
    /// Name (not unique in NB).
    name: String = "name",
    /// `"IP:port" → "IP:port,IP:port"` (portless for whole-IP forwards).
    vips: BTreeMap<String, String> = "vips",
    /// `tcp`, `udp` or `sctp`; empty means tcp.
    protocol: Option<String> = "protocol",
    /// Health checks.
    health_check: BTreeSet<Uuid> = "health_check",
    /// Backend IP → `port_name:source_ip` for health checks.
    ip_port_mappings: BTreeMap<String, String> = "ip_port_mappings",
    /// Hash fields.
    selection_fields: BTreeSet<String> = "selection_fields",
    /// Options (`reject`, `hairpin_snat_ip`, …).
    options: BTreeMap<String, String> = "options",
    /// Ownership and bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `Load_Balancer_Health_Check`.
    LoadBalancerHealthCheck, "Load_Balancer_Health_Check", {
    /// VIP checked.
    vip: String = "vip",
    /// interval, timeout, success_count, failure_count.
    options: BTreeMap<String, String> = "options",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `Load_Balancer_Group`.
    LoadBalancerGroup, "Load_Balancer_Group", {
    /// Name (indexed, unique).
    name: String = "name",
    /// Member load balancers (weak references).
    load_balancer: BTreeSet<Uuid> = "load_balancer",
});

nb_table!(
    /// `Logical_Router`.
    LogicalRouter, "Logical_Router", {
    /// Name.
    name: String = "name",
    /// Router ports.
    ports: BTreeSet<Uuid> = "ports",
    /// Attached load balancers (weak references).
    load_balancer: BTreeSet<Uuid> = "load_balancer",
    /// Attached load balancer groups.
    load_balancer_group: BTreeSet<Uuid> = "load_balancer_group",
    /// Options.
    options: BTreeMap<String, String> = "options",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `Logical_Router_Port`.
    LogicalRouterPort, "Logical_Router_Port", {
    /// Name.
    name: String = "name",
    /// MAC address.
    mac: String = "mac",
    /// `IP/prefix` networks.
    networks: BTreeSet<String> = "networks",
    /// Peer router port.
    peer: Option<String> = "peer",
    /// Gateway chassis.
    gateway_chassis: BTreeSet<Uuid> = "gateway_chassis",
    /// Options.
    options: BTreeMap<String, String> = "options",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `Logical_Switch`.
    LogicalSwitch, "Logical_Switch", {
    /// Name.
    name: String = "name",
    /// Switch ports.
    ports: BTreeSet<Uuid> = "ports",
    /// Attached load balancers (weak references).
    load_balancer: BTreeSet<Uuid> = "load_balancer",
    /// Attached load balancer groups.
    load_balancer_group: BTreeSet<Uuid> = "load_balancer_group",
    /// other_config (`subnet`, …).
    other_config: BTreeMap<String, String> = "other_config",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `Logical_Switch_Port`.
    LogicalSwitchPort, "Logical_Switch_Port", {
    /// Name.
    name: String = "name",
    /// Port type (`""`, `router`, `localnet`, …).
    kind: String = "type",
    /// `MAC IP…` addresses.
    addresses: BTreeSet<String> = "addresses",
    /// `MAC IP…` assigned by northd's IPAM (`dynamic` addresses).
    dynamic_addresses: Option<String> = "dynamic_addresses",
    /// Options (`router-port`, `network_name`, …).
    options: BTreeMap<String, String> = "options",
    /// Enabled state.
    enabled: Option<bool> = "enabled",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

nb_table!(
    /// `NB_Global`: the barrier counters.
    NbGlobal, "NB_Global", {
    /// Name.
    name: String = "name",
    /// Incremented by clients to request a barrier.
    nb_cfg: i64 = "nb_cfg",
    /// Copied by northd once SB reflects `nb_cfg`.
    sb_cfg: i64 = "sb_cfg",
    /// Copied once every hypervisor caught up.
    hv_cfg: i64 = "hv_cfg",
    /// Options.
    options: BTreeMap<String, String> = "options",
    /// Bookkeeping.
    external_ids: BTreeMap<String, String> = "external_ids",
});

/// Every typed table: name and columns.
pub const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (LoadBalancer::NAME, LoadBalancer::COLUMNS),
    (
        LoadBalancerHealthCheck::NAME,
        LoadBalancerHealthCheck::COLUMNS,
    ),
    (LoadBalancerGroup::NAME, LoadBalancerGroup::COLUMNS),
    (LogicalRouter::NAME, LogicalRouter::COLUMNS),
    (LogicalRouterPort::NAME, LogicalRouterPort::COLUMNS),
    (LogicalSwitch::NAME, LogicalSwitch::COLUMNS),
    (LogicalSwitchPort::NAME, LogicalSwitchPort::COLUMNS),
    (NbGlobal::NAME, NbGlobal::COLUMNS),
];

/// The monitor request for the typed tables and columns.
pub fn monitor_requests() -> crate::ovsdb::MonitorRequests {
    TABLES
        .iter()
        .map(|(t, cols)| {
            (
                (*t).to_owned(),
                crate::ovsdb::MonitorSelect {
                    columns: Some(cols.iter().map(|(c, _)| (*c).to_owned()).collect()),
                    conditions: None,
                },
            )
        })
        .collect()
}

/// The addresses of a switch port's `addresses` or `dynamic_addresses` entry
/// (`MAC IP…`, an IP possibly with a prefix length); other entries (`router`,
/// `unknown`, `dynamic`) have none.
pub fn port_entry_addresses(entry: &str) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    entry
        .split_whitespace()
        .skip(1)
        .filter_map(|a| a.split('/').next().and_then(|a| a.parse().ok()))
}

/// Every address a switch port row carries, in `addresses` and `dynamic_addresses`.
pub fn port_addresses(row: &CacheRow) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    row.get("addresses")
        .atoms()
        .filter_map(Atom::as_str)
        .chain(row.get_str("dynamic_addresses"))
        .flat_map(port_entry_addresses)
}

/// `Logical_Switch_Port` rows by each address they carry (its canonical text): which
/// port holds a backend is one lookup, not a pass over the switch's ports.
pub fn port_address_index() -> crate::ovsdb::IndexSpec {
    fn keys(row: &CacheRow, f: &mut dyn FnMut(Datum)) {
        let mut seen: Vec<std::net::IpAddr> = port_addresses(row).collect();
        seen.sort_unstable();
        seen.dedup();
        for ip in seen {
            f(Datum::scalar(ip.to_string()));
        }
    }
    crate::ovsdb::IndexSpec::Derived {
        table: LogicalSwitchPort::NAME.to_owned(),
        name: "addresses",
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::ovn_nb_schema;

    #[test]
    fn every_typed_column_matches_the_pinned_schema() {
        let s = ovn_nb_schema();
        for (table, cols) in TABLES {
            let t = s.table(table).unwrap_or_else(|e| panic!("{e}"));
            for (c, kind) in *cols {
                let col = t.column(c).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    kind.matches(&col.ty),
                    "{table}.{c}: schema type {:?} is not {kind:?}",
                    col.ty
                );
            }
        }
    }

    #[test]
    fn round_trip() {
        let lb = LoadBalancer {
            uuid: Uuid::new_v4(),
            name: "x".into(),
            vips: BTreeMap::from([("192.0.2.10:80".into(), "10.0.0.11:8080".into())]),
            protocol: Some("tcp".into()),
            ..Default::default()
        };
        let row = CacheRow::from_row(LoadBalancer::NAME, lb.uuid, lb.to_row());
        assert_eq!(LoadBalancer::from_row(&row), Some(lb));
        assert!(s_check(&row));
    }

    fn s_check(row: &CacheRow) -> bool {
        let s = ovn_nb_schema();
        let t = s.table("Load_Balancer").unwrap();
        row.columns()
            .all(|(c, d)| t.column(c).unwrap().ty.check(d).is_ok())
    }
}
