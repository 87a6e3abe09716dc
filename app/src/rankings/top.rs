//! The leading routes of one period, kept as a pass over every route goes by: a bounded heap,
//! so a ranking costs memory for its length, not for the number of routes.

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::route::Route;

/// The `len` routes with the most transactions, ties by route (the earlier first).
pub struct TopRoutes {
    len: usize,
    /// The smallest of those kept on top: a smaller count, or the same count and a later route.
    heap: BinaryHeap<Reverse<(u64, Reverse<Route>)>>,
}

impl TopRoutes {
    pub fn new(len: usize) -> Self {
        Self {
            len,
            heap: BinaryHeap::with_capacity(len + 1),
        }
    }

    /// Offers one route's count (routes with none are never ranked).
    pub fn offer(&mut self, route: Route, count: u64) {
        if count == 0 || self.len == 0 {
            return;
        }
        let entry = Reverse((count, Reverse(route)));
        if self.heap.len() < self.len {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|least| entry < *least) {
            // `entry < least` under Reverse: the entry ranks above the least kept.
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    /// Most transactions first, ties by route.
    pub fn into_ranking(self) -> Vec<(Route, u64)> {
        let mut ranked: Vec<(Route, u64)> = self
            .heap
            .into_iter()
            .map(|Reverse((count, Reverse(route)))| (route, count))
            .collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str) -> Route {
        Route::parse(name).expect("route")
    }

    #[test]
    fn keeps_the_most_ties_by_route_whatever_the_order_offered() {
        let offered = [
            ("LA0001", 5),
            ("AR0001", 7),
            ("IB0002", 5),
            ("IB0001", 5),
            ("UX0001", 9),
            ("QF0001", 0),
            ("AA0001", 1),
        ];
        let expected = vec![
            (route("UX0001"), 9),
            (route("AR0001"), 7),
            (route("IB0001"), 5),
            (route("IB0002"), 5),
        ];
        for rotation in 0..offered.len() {
            let mut top = TopRoutes::new(4);
            for (name, count) in offered.iter().cycle().skip(rotation).take(offered.len()) {
                top.offer(route(name), *count);
            }
            assert_eq!(top.into_ranking(), expected, "rotation {rotation}");
        }
        let mut all = TopRoutes::new(100);
        for (name, count) in offered {
            all.offer(route(name), count);
        }
        assert_eq!(
            all.into_ranking().len(),
            6,
            "routes with no count are not ranked"
        );
    }
}
