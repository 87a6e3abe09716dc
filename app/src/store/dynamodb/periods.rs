//! A route's days and months, kept on its item beside the total, so that the total, the day
//! and the month move in the one write that was already there (one write unit while the item
//! stays under 1 KB).
//!
//! Names are short: `d<days since 2020-01-01>` and `m<months since 2020-01>` (`d2516`,
//! `m82`). Every write removes the day and the month that just fell out of the window, so a
//! route written every day never carries more than the window; a route written now and then
//! may still carry older ones, which the store sees in the item a write hands back and removes
//! in the route's next write.
//!
//! A day leaves the window once a day, so only a route's first keyless write of the day (in
//! this instance) carries the removals and asks for the whole item back; the route's later
//! writes that day are a bare `ADD` that hands back only what it changed. On a busy route that
//! is nearly every write, and each asks less of DynamoDB.

use std::{collections::HashMap, sync::Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{DynamoStore, count_value};
use crate::{
    calendar::{DAYS_KEPT, Day, MONTHS_KEPT, Month},
    route::Route,
    store::StoreError,
};

/// 2020-01-01 in days since 1970-01-01, and 2020-01 in months since 1970-01.
const ORIGIN_DAY: i32 = 18_262;
const ORIGIN_MONTH: i32 = 600;
/// Most routes whose stale periods are remembered between two writes.
const MAX_REMEMBERED_ROUTES: usize = 10_000;
/// Most routes remembered as swept today (a few bytes each). Past it the set starts again:
/// those routes' next writes sweep once more, which costs a little and is always correct.
const MAX_SWEPT_ROUTES: usize = 100_000;

pub(super) fn day_attribute(day: Day) -> String {
    format!("d{}", day.number() - ORIGIN_DAY)
}

pub(super) fn month_attribute(month: Month) -> String {
    format!("m{}", month.number() - ORIGIN_MONTH)
}

/// A period attribute's day or month number (since 1970), if the name is one.
enum Period {
    Day(i32),
    Month(i32),
}

fn period(name: &str) -> Option<Period> {
    let number = |rest: &str| {
        let digits = rest.strip_prefix('-').unwrap_or(rest);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| rest.parse::<i32>().ok())
            .flatten()
    };
    if let Some(rest) = name.strip_prefix('d') {
        return number(rest).map(|n| Period::Day(n + ORIGIN_DAY));
    }
    if let Some(rest) = name.strip_prefix('m') {
        return number(rest).map(|n| Period::Month(n + ORIGIN_MONTH));
    }
    None
}

/// Periods seen out of the window on route items, to be removed by the routes' next writes.
#[derive(Default)]
pub(super) struct StalePeriods(Mutex<FxHashMap<Route, Vec<String>>>);

impl StalePeriods {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<Route, Vec<String>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What a write of `route` on `day` removes: the day and month that just fell out of the
    /// window, and those an earlier write saw.
    pub fn removals(&self, route: Route, day: Day) -> Vec<String> {
        let mut names = vec![
            day.plus(-(DAYS_KEPT as i32))
                .map(day_attribute)
                .unwrap_or_default(),
            month_attribute(day.month().plus(-(MONTHS_KEPT as i32))),
        ];
        names.retain(|n| !n.is_empty());
        if let Some(stale) = self.lock().remove(&route) {
            for name in stale {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Notes the periods out of the window on `route`'s item, as a write on `day` left it.
    pub fn observe(&self, route: Route, day: Day, item: &HashMap<String, AttributeValue>) {
        let first_day = day.window_start().number();
        let first_month = day.month().window_start().number();
        let stale: Vec<String> = item
            .keys()
            .filter(|name| match period(name) {
                Some(Period::Day(n)) => n < first_day,
                Some(Period::Month(n)) => n < first_month,
                None => false,
            })
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        let mut remembered = self.lock();
        if remembered.len() >= MAX_REMEMBERED_ROUTES {
            // Forgetting costs only a few bytes on some items until they are seen again.
            remembered.clear();
        }
        remembered.insert(route, stale);
    }
}

/// What a keyless write of a route asks of its item besides the `ADD`.
pub(super) struct Upkeep {
    /// Period attributes to remove in the same write.
    pub removals: Vec<String>,
    /// The write sweeps the window: it asks for the whole item back, to see what else fell
    /// out of it, and is noted with [`SweptToday::note`] once it succeeds.
    pub sweeps: bool,
}

/// Routes whose first keyless write of the day (the one that sweeps the window) succeeded in
/// this instance.
#[derive(Default)]
pub(super) struct SweptToday(Mutex<(Option<Day>, FxHashSet<Route>)>);

impl SweptToday {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Day>, FxHashSet<Route>)> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn contains(&self, route: Route, day: Day) -> bool {
        let swept = self.lock();
        swept.0 == Some(day) && swept.1.contains(&route)
    }

    /// Notes that a write of `route` on `day` swept the window.
    pub fn note(&self, route: Route, day: Day) {
        let mut swept = self.lock();
        if swept.0 != Some(day) || swept.1.len() >= MAX_SWEPT_ROUTES {
            *swept = (Some(day), FxHashSet::default());
        }
        swept.1.insert(route);
    }
}

impl StalePeriods {
    /// What a keyless write of `route` on `day` removes: everything [`StalePeriods::removals`]
    /// gives on the route's first write of the day, and after that only periods an earlier
    /// write saw stale (seldom any).
    pub fn upkeep(&self, route: Route, day: Day, swept: &SweptToday) -> Upkeep {
        if !swept.contains(route, day) {
            return Upkeep {
                removals: self.removals(route, day),
                sweeps: true,
            };
        }
        Upkeep {
            removals: self.lock().remove(&route).unwrap_or_default(),
            sweeps: false,
        }
    }
}

impl DynamoStore {
    /// The counts of the periods `names` on the route's item, in order (0 where absent).
    pub(super) async fn read_periods(
        &self,
        route: Route,
        names: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let mut request = self
            .client
            .get_item()
            .table_name(self.table())
            .key(
                super::KEY_ATTRIBUTE,
                AttributeValue::S(route.as_str().to_owned()),
            )
            .consistent_read(true);
        let mut projection = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            request = request.expression_attribute_names(format!("#p{i}"), name);
            projection.push(format!("#p{i}"));
        }
        let out = request
            .projection_expression(projection.join(", "))
            .send()
            .await
            .map_err(|err| self.failed("GetItem", err))?;
        let item = out.item.unwrap_or_default();
        names
            .iter()
            .map(|name| match item.get(name) {
                None => Ok(0),
                Some(value) => value
                    .as_n()
                    .map_err(|_| {
                        StoreError::Unavailable(format!("route {route} holds a non-number {name}"))
                    })
                    .and_then(|n| count_value(n, name, self.table())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        Day::parse(s).expect("day")
    }

    #[test]
    fn names_are_short_and_read_back() {
        let d = day("2026-11-21");
        assert_eq!(day_attribute(d), "d2516");
        assert_eq!(month_attribute(d.month()), "m82");
        assert!(matches!(period("d2516"), Some(Period::Day(n)) if n == d.number()));
        assert!(matches!(period("m82"), Some(Period::Month(n)) if n == d.month().number()));
        assert!(matches!(period("d-3"), Some(Period::Day(_))));
        for other in [
            "transactions",
            "route",
            "d",
            "m",
            "dx1",
            "p0123abcd",
            "d1-2",
        ] {
            assert!(period(other).is_none(), "{other}");
        }
    }

    #[test]
    fn a_write_removes_what_just_left_the_window_and_what_was_seen_stale() {
        let stale = StalePeriods::default();
        let route = Route::parse("AR1").expect("route");
        let today = day("2026-11-21");
        assert_eq!(
            stale.removals(route, today),
            vec![
                day_attribute(today.plus(-62).expect("day")),
                month_attribute(today.month().plus(-24))
            ]
        );
        let old_day = day_attribute(day("2026-08-01"));
        let item: HashMap<String, AttributeValue> = [
            (old_day.clone(), AttributeValue::N("3".into())),
            (day_attribute(today), AttributeValue::N("1".into())),
            ("transactions".to_owned(), AttributeValue::N("4".into())),
        ]
        .into_iter()
        .collect();
        stale.observe(route, today, &item);
        assert!(stale.removals(route, today).contains(&old_day));
        // Removed once: the next write does not repeat it.
        assert!(!stale.removals(route, today).contains(&old_day));
    }

    #[test]
    fn only_the_first_write_of_a_day_sweeps_the_window() {
        let stale = StalePeriods::default();
        let swept = SweptToday::default();
        let route = Route::parse("AR1").expect("route");
        let other = Route::parse("LA2").expect("route");
        let today = day("2026-11-21");
        let first = stale.upkeep(route, today, &swept);
        assert!(first.sweeps);
        assert_eq!(first.removals, stale.removals(route, today));
        // Until the sweeping write succeeds, the next one sweeps too.
        assert!(stale.upkeep(route, today, &swept).sweeps);
        swept.note(route, today);
        let later = stale.upkeep(route, today, &swept);
        assert!(!later.sweeps);
        assert!(later.removals.is_empty());
        // A period seen stale meanwhile still goes with the next write.
        let old_day = day_attribute(day("2026-08-01"));
        let item: HashMap<String, AttributeValue> =
            [(old_day.clone(), AttributeValue::N("3".into()))]
                .into_iter()
                .collect();
        stale.observe(route, today, &item);
        assert_eq!(stale.upkeep(route, today, &swept).removals, vec![old_day]);
        // Other routes, and the same route the next day, sweep again.
        assert!(stale.upkeep(other, today, &swept).sweeps);
        let tomorrow = today.plus(1).expect("day");
        assert!(stale.upkeep(route, tomorrow, &swept).sweeps);
        swept.note(route, tomorrow);
        assert!(!stale.upkeep(route, tomorrow, &swept).sweeps);
        assert!(stale.upkeep(route, today, &swept).sweeps);
    }
}
