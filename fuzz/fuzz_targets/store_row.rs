//! What dispatchers read back from the shared store (Redis): capacity rows and merge
//! orders as JSON. Garbage must be rejected, never panic, and a row that parses must
//! survive the capability parse and the call-resolution sweep.

#![no_main]

use dispatcher::store::resolve::Resolver;
use dispatcher::store::{MergeOrder, Row};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<MergeOrder>(data);
    if let Ok(rows) = serde_json::from_slice::<Vec<Row>>(data) {
        for r in &rows {
            let _ = r.capabilities();
        }
        // Twice: a merge is ordered only for a duplicate seen in two sweeps in a row.
        let mut resolver = Resolver::default();
        let placed = std::collections::HashMap::new();
        let now = std::time::Instant::now();
        let _ = resolver.sweep(now, &rows, &placed);
        let _ = resolver.sweep(now, &rows, &placed);
    }
});
