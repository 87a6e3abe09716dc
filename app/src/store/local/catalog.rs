//! Listing routes in route order, for both local stores: their tables keep routes sorted by
//! name (redb's B-tree, the memtables' ordered maps), so a page is one ranged read from where
//! the last page stopped.

use super::snapshot::{BadEntry, Listing};
use crate::{
    route::{Airline, Route},
    store::StoreError,
};

/// Names read from the tables at a time while skipping routes that count nothing.
const READ_AHEAD: usize = 256;

/// Up to `limit` routes after `after`, ascending, only `airline`'s if given, each with its
/// total; routes whose row counts nothing are left out.
pub(in crate::store) fn list_routes(
    tables: &impl Listing,
    after: Option<Route>,
    airline: Option<Airline>,
    limit: usize,
) -> Result<Vec<(Route, u64)>, StoreError> {
    // An airline's routes are its code and a digit onwards; the code alone sorts just before
    // the first of them, and past the cursor only if the cursor is before the airline.
    let mut from: Option<String> = match (after, airline) {
        (Some(route), Some(code)) if route.as_str() < code.as_str() => {
            Some(code.as_str().to_owned())
        }
        (Some(route), _) => Some(route.as_str().to_owned()),
        (None, Some(code)) => Some(code.as_str().to_owned()),
        (None, None) => None,
    };
    let mut listed = Vec::with_capacity(limit.min(1024));
    while listed.len() < limit {
        let chunk = READ_AHEAD.max(limit - listed.len());
        let names = tables.routes_after(from.as_deref(), chunk)?;
        for name in &names {
            let route = Route::parse(name).map_err(|_| {
                StoreError::unavailable("listing routes", BadEntry::Route(name.clone()))
            })?;
            if let Some(code) = airline
                && !code.flies(&route)
            {
                // Past the airline's routes: they are all together.
                return Ok(listed);
            }
            let total = tables.row(route)?.total;
            if total > 0 {
                listed.push((route, total));
                if listed.len() == limit {
                    return Ok(listed);
                }
            }
        }
        match names.last() {
            Some(last) if names.len() == chunk => from = Some(last.clone()),
            _ => break,
        }
    }
    Ok(listed)
}
