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

use super::errors::Fault;
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

/// What the store remembers to keep route items within the window: periods seen out of it on
/// items, to be removed by the routes' next writes, and the routes whose window a keyless write
/// swept today. One lock, taken once per write (and once more after a sweeping write).
#[derive(Default)]
pub(super) struct WindowUpkeep(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    stale: FxHashMap<Route, Vec<String>>,
    /// The day `swept` is about.
    swept_day: Option<Day>,
    /// Routes whose first keyless write of `swept_day` (the one that sweeps the window)
    /// succeeded in this instance.
    swept: FxHashSet<Route>,
}

/// What a keyless write of a route asks of its item besides the `ADD`.
pub(super) struct Upkeep {
    /// Period attributes to remove in the same write.
    pub removals: Vec<String>,
    /// The write sweeps the window: it asks for the whole item back, to see what else fell
    /// out of it, and is noted with [`WindowUpkeep::swept`] once it succeeds.
    pub sweeps: bool,
}

impl WindowUpkeep {
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What a write of `route` on `day` removes: the day and month that just fell out of the
    /// window, and those an earlier write saw.
    pub fn removals(&self, route: Route, day: Day) -> Vec<String> {
        let stale = self.lock().stale.remove(&route);
        Self::window_removals(day, stale)
    }

    fn window_removals(day: Day, stale: Option<Vec<String>>) -> Vec<String> {
        let mut names = vec![
            day.plus(-(DAYS_KEPT as i32))
                .map(day_attribute)
                .unwrap_or_default(),
            month_attribute(day.month().plus(-(MONTHS_KEPT as i32))),
        ];
        names.retain(|n| !n.is_empty());
        for name in stale.into_iter().flatten() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// What a keyless write of `route` on `day` removes: everything [`WindowUpkeep::removals`]
    /// gives on the route's first write of the day, and after that only periods an earlier
    /// write saw stale (seldom any).
    pub fn upkeep(&self, route: Route, day: Day) -> Upkeep {
        let mut remembered = self.lock();
        let sweeps = remembered.swept_day != Some(day) || !remembered.swept.contains(&route);
        let stale = remembered.stale.remove(&route);
        drop(remembered);
        let removals = if sweeps {
            Self::window_removals(day, stale)
        } else {
            stale.unwrap_or_default()
        };
        Upkeep { removals, sweeps }
    }

    /// Notes that a write of `route` on `day` swept the window, and the periods out of it on
    /// the item that write handed back, if any, under the same lock.
    pub fn swept(&self, route: Route, day: Day, item: Option<&HashMap<String, AttributeValue>>) {
        let stale = item
            .map(|item| stale_periods(day, item))
            .unwrap_or_default();
        let mut remembered = self.lock();
        if remembered.swept_day != Some(day) || remembered.swept.len() >= MAX_SWEPT_ROUTES {
            remembered.swept_day = Some(day);
            remembered.swept = FxHashSet::default();
        }
        remembered.swept.insert(route);
        remembered.remember_stale(route, stale);
    }

    /// Notes the periods out of the window on `route`'s item, as a write on `day` left it.
    pub fn observe(&self, route: Route, day: Day, item: &HashMap<String, AttributeValue>) {
        let stale = stale_periods(day, item);
        if !stale.is_empty() {
            self.lock().remember_stale(route, stale);
        }
    }
}

impl Remembered {
    fn remember_stale(&mut self, route: Route, stale: Vec<String>) {
        if stale.is_empty() {
            return;
        }
        if self.stale.len() >= MAX_REMEMBERED_ROUTES {
            // Forgetting costs only a few bytes on some items until they are seen again.
            self.stale.clear();
        }
        self.stale.insert(route, stale);
    }
}

/// The period attributes on `item` that are out of the window of `day`.
fn stale_periods(day: Day, item: &HashMap<String, AttributeValue>) -> Vec<String> {
    let first_day = day.window_start().number();
    let first_month = day.month().window_start().number();
    item.keys()
        .filter(|name| match period(name) {
            Some(Period::Day(n)) => n < first_day,
            Some(Period::Month(n)) => n < first_month,
            None => false,
        })
        .cloned()
        .collect()
}

/// The days and months on a route's item that the window of `today` keeps (those a write on
/// `today` would not remove as stale), in order, with their counts: what a snapshot of the
/// item holds. A later day (another instance's clock ahead) is kept, as the writes keep it.
pub(super) type KeptPeriods = (Vec<(Day, u64)>, Vec<(Month, u64)>);

pub(super) fn kept_periods(
    today: Day,
    item: &HashMap<String, AttributeValue>,
    table: &str,
) -> Result<KeptPeriods, StoreError> {
    let first_day = today.window_start().number();
    let first_month = today.month().window_start().number();
    let count = |name: &str, value: &AttributeValue| {
        value
            .as_n()
            .map_err(|_| {
                StoreError::unavailable(
                    format!("DynamoDB table {table} holds a non-number {name}"),
                    Fault::NotANumber,
                )
            })
            .and_then(|n| count_value(n, name, table))
    };
    let mut days = Vec::new();
    let mut months = Vec::new();
    for (name, value) in item {
        match period(name) {
            Some(Period::Day(n)) if n >= first_day => {
                if let Some(day) = Day::from_number(n) {
                    days.push((day, count(name, value)?));
                }
            }
            Some(Period::Month(n)) if n >= first_month => {
                months.push((Month::from_number(n), count(name, value)?));
            }
            _ => {}
        }
    }
    days.sort_unstable();
    months.sort_unstable();
    Ok((days, months))
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
                        StoreError::unavailable(
                            format!("route {route} holds a non-number {name}"),
                            Fault::NotANumber,
                        )
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
        let stale = WindowUpkeep::default();
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
        let window = WindowUpkeep::default();
        let route = Route::parse("AR1").expect("route");
        let other = Route::parse("LA2").expect("route");
        let today = day("2026-11-21");
        let first = window.upkeep(route, today);
        assert!(first.sweeps);
        assert_eq!(first.removals, window.removals(route, today));
        // Until the sweeping write succeeds, the next one sweeps too.
        assert!(window.upkeep(route, today).sweeps);
        window.swept(route, today, None);
        let later = window.upkeep(route, today);
        assert!(!later.sweeps);
        assert!(later.removals.is_empty());
        // A period seen stale meanwhile still goes with the next write.
        let old_day = day_attribute(day("2026-08-01"));
        let item: HashMap<String, AttributeValue> =
            [(old_day.clone(), AttributeValue::N("3".into()))]
                .into_iter()
                .collect();
        window.observe(route, today, &item);
        assert_eq!(window.upkeep(route, today).removals, vec![old_day]);
        // Other routes, and the same route the next day, sweep again.
        assert!(window.upkeep(other, today).sweeps);
        let tomorrow = today.plus(1).expect("day");
        assert!(window.upkeep(route, tomorrow).sweeps);
        window.swept(route, tomorrow, None);
        assert!(!window.upkeep(route, tomorrow).sweeps);
        assert!(window.upkeep(route, today).sweeps);
    }
}
