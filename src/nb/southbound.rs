//! The one OVN Southbound table ovnlb reads: `Service_Monitor`, where northd keeps one
//! row per health-checked backend (switch port, address, target port, protocol) and
//! ovn-controller writes its status. Read-only: ovnlb never writes the Southbound.

use crate::ovsdb::{DatabaseSchema, IndexSpec, MonitorRequests, MonitorSelect};

/// The pinned OVN Southbound schema (`ovsdb-schema/ovn-sb.ovsschema`).
pub const OVN_SB_SCHEMA: &str = include_str!("../../ovsdb-schema/ovn-sb.ovsschema");

/// The table.
pub const SERVICE_MONITOR: &str = "Service_Monitor";

/// Its columns ovnlb reads.
pub const COLUMNS: [&str; 5] = ["logical_port", "ip", "port", "protocol", "status"];

/// Parse [`OVN_SB_SCHEMA`].
pub fn schema() -> DatabaseSchema {
    // The pinned file is part of the crate; a parse failure is a build defect caught by tests.
    DatabaseSchema::from_json(&serde_json::from_str(OVN_SB_SCHEMA).expect("pinned schema is JSON"))
        .expect("pinned schema parses")
}

/// The monitor request: `Service_Monitor`'s [`COLUMNS`] and nothing else.
pub fn monitor_requests() -> MonitorRequests {
    MonitorRequests::from([(
        SERVICE_MONITOR.to_owned(),
        MonitorSelect {
            columns: Some(COLUMNS.iter().map(|c| (*c).to_owned()).collect()),
            conditions: None,
        },
    )])
}

/// Monitors by switch port: how a backend's row is found without a scan.
pub fn port_index() -> IndexSpec {
    IndexSpec::Column {
        table: SERVICE_MONITOR.into(),
        column: "logical_port".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_read_are_in_the_pinned_schema() {
        let s = schema();
        assert_eq!(s.name, "OVN_Southbound");
        let t = s.table(SERVICE_MONITOR).unwrap();
        for c in COLUMNS {
            t.column(c).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
