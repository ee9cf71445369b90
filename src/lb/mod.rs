//! Load balancers and forwards: the API model, validation, and rendering into OVN
//! Northbound rows. Pure: no I/O.

pub mod health;
pub mod model;
pub mod network;
pub mod options;
pub mod ports;
pub mod render;
pub mod state;
pub mod validate;
