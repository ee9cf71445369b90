//! The SQLite schema: the spec's tables (`networks_load_balancers`,
//! `networks_load_balancers_config`, as LXD's DDL) and their siblings for networks and
//! forwards, each object with a revision (its ETag). Listen addresses are unique per
//! uplink in the database itself: LXD's `UNIQUE (network_id, node_id, listen_address)`
//! never holds because `node_id` is NULL, so triggers keep `uplink_listeners` whose
//! primary key refuses a second listener on one address of one uplink, whether load
//! balancer or forward.

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE networks (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    type TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE networks_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    network_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (network_id, key),
    FOREIGN KEY (network_id) REFERENCES networks (id) ON DELETE CASCADE
);
CREATE TABLE networks_load_balancers (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    network_id INTEGER NOT NULL,
    node_id INTEGER,
    listen_address TEXT NOT NULL,
    description TEXT NOT NULL,
    backends TEXT NOT NULL,
    ports TEXT NOT NULL,
    uplink TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    UNIQUE (network_id, node_id, listen_address),
    FOREIGN KEY (network_id) REFERENCES networks (id) ON DELETE CASCADE
);
CREATE TABLE networks_load_balancers_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    network_load_balancer_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (network_load_balancer_id, key),
    FOREIGN KEY (network_load_balancer_id) REFERENCES networks_load_balancers (id) ON DELETE CASCADE
);
CREATE TABLE networks_forwards (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    network_id INTEGER NOT NULL,
    node_id INTEGER,
    listen_address TEXT NOT NULL,
    description TEXT NOT NULL,
    ports TEXT NOT NULL,
    uplink TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    UNIQUE (network_id, node_id, listen_address),
    FOREIGN KEY (network_id) REFERENCES networks (id) ON DELETE CASCADE
);
CREATE TABLE networks_forwards_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    network_forward_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (network_forward_id, key),
    FOREIGN KEY (network_forward_id) REFERENCES networks_forwards (id) ON DELETE CASCADE
);
CREATE TABLE uplink_listeners (
    uplink TEXT NOT NULL,
    listen_address TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (uplink, listen_address)
);
CREATE TRIGGER lb_listen_insert AFTER INSERT ON networks_load_balancers BEGIN
    INSERT INTO uplink_listeners (uplink, listen_address, owner) VALUES (NEW.uplink, NEW.listen_address, 'load-balancer');
END;
CREATE TRIGGER lb_listen_delete AFTER DELETE ON networks_load_balancers BEGIN
    DELETE FROM uplink_listeners WHERE uplink = OLD.uplink AND listen_address = OLD.listen_address;
END;
CREATE TRIGGER lb_listen_update AFTER UPDATE OF uplink ON networks_load_balancers BEGIN
    DELETE FROM uplink_listeners WHERE uplink = OLD.uplink AND listen_address = OLD.listen_address;
    INSERT INTO uplink_listeners (uplink, listen_address, owner) VALUES (NEW.uplink, NEW.listen_address, 'load-balancer');
END;
CREATE TRIGGER fwd_listen_insert AFTER INSERT ON networks_forwards BEGIN
    INSERT INTO uplink_listeners (uplink, listen_address, owner) VALUES (NEW.uplink, NEW.listen_address, 'forward');
END;
CREATE TRIGGER fwd_listen_delete AFTER DELETE ON networks_forwards BEGIN
    DELETE FROM uplink_listeners WHERE uplink = OLD.uplink AND listen_address = OLD.listen_address;
END;
CREATE TRIGGER fwd_listen_update AFTER UPDATE OF uplink ON networks_forwards BEGIN
    DELETE FROM uplink_listeners WHERE uplink = OLD.uplink AND listen_address = OLD.listen_address;
    INSERT INTO uplink_listeners (uplink, listen_address, owner) VALUES (NEW.uplink, NEW.listen_address, 'forward');
END;
"#,
    // 2: lookups by (network, listen address) without scanning the network's objects (the
    // spec's UNIQUE has node_id in the middle, so SQLite cannot use it for them). Also the
    // uniqueness LXD meant: one object per listen address per network.
    r#"
CREATE UNIQUE INDEX networks_load_balancers_listen ON networks_load_balancers (network_id, listen_address);
CREATE UNIQUE INDEX networks_forwards_listen ON networks_forwards (network_id, listen_address);
"#,
];
