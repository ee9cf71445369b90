//! Monitor replies and update notifications applied to a cache: arbitrary JSON must be
//! applied or flag a resync, never panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ovnlb::ovsdb::{ovn_nb_schema, Cache, MonitorHandler, MonitorMethod, MonitorRequests, MonitorSelect};
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else { return };
    let req: MonitorRequests = ["Load_Balancer", "Logical_Switch", "Logical_Switch_Port"]
        .iter()
        .map(|t| (t.to_string(), MonitorSelect::default()))
        .collect();
    let cache = Cache::new(Arc::new(ovn_nb_schema()), req, vec![]);
    cache.on_reply(MonitorMethod::Cond, raw);
    cache.on_update("update2", raw);
    cache.on_update("update3", raw);
    cache.on_update("update", raw);
    cache.on_reply(MonitorMethod::CondSince, raw);
    cache.on_reply(MonitorMethod::Plain, raw);
    let _ = cache.dump();
});
