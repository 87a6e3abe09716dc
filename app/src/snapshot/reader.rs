//! Reads a snapshot back, line by line, checking each record as it comes and the order of
//! the whole (routes ascending, then keys ascending, then the end line), so that a file of any
//! size is checked with memory that does not grow with it.

use std::{
    collections::BTreeMap,
    io::{self, BufRead},
};

use serde_json::{Map, Value};

use super::format::{
    FORMAT, FormatError, Header, KeyRecord, MAX_LINE_BYTES, Record, RouteRecord, VERSION, field,
};
use crate::{
    auth::ClientName,
    calendar::{Day, Month},
    idempotency::IdempotencyKey,
    route::Route,
};

/// Reads a snapshot record by record, checking each line and the order of the whole.
pub struct SnapshotReader<R: BufRead> {
    input: R,
    line: u64,
    header: Header,
    last_route: Option<Route>,
    last_key: Option<String>,
    routes: u64,
    keys: u64,
    ended: bool,
    buffer: String,
}

impl<R: BufRead> SnapshotReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, FormatError> {
        let mut buffer = String::new();
        let object =
            next_object(&mut input, &mut buffer, 1)?.ok_or(FormatError::Truncated { line: 0 })?;
        let format = text(&object, 1, "format")?;
        if format != FORMAT {
            return Err(field(1, "format", format!("{format:?} is not {FORMAT:?}")));
        }
        let version = number(&object, 1, "version")?;
        if version != VERSION {
            return Err(field(
                1,
                "version",
                format!("version {version} is not known (this build reads version {VERSION})"),
            ));
        }
        let id = text(&object, 1, "id")?;
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(field(1, "id", "1 to 64 letters, digits or '-'"));
        }
        let header = Header {
            id: id.to_owned(),
            source: text(&object, 1, "source")?.to_owned(),
            taken_at: number(&object, 1, "taken_at")?,
        };
        Ok(Self {
            input,
            line: 1,
            header,
            last_route: None,
            last_key: None,
            routes: 0,
            keys: 0,
            ended: false,
            buffer,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The line last read (for progress and messages).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next record; `None` after the end line, once it has checked that nothing follows.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        let Some(object) = next_object(&mut self.input, &mut self.buffer, line)? else {
            return Err(FormatError::Truncated { line: line - 1 });
        };
        match text(&object, line, "type")? {
            "route" => {
                if self.last_key.is_some() {
                    return Err(FormatError::Line {
                        line,
                        reason: "a route after the keys: routes come first".into(),
                    });
                }
                let record = route_record(&object, line)?;
                if let Some(last) = self.last_route
                    && record.route.as_str() <= last.as_str()
                {
                    return Err(field(
                        line,
                        "route",
                        if record.route == last {
                            format!("{} is listed twice", record.route)
                        } else {
                            format!(
                                "{} comes after {last}: routes are in ascending order",
                                record.route
                            )
                        },
                    ));
                }
                self.last_route = Some(record.route);
                self.routes += 1;
                Ok(Some(Record::Route(record)))
            }
            "key" => {
                let record = key_record(&object, line)?;
                let id = record.key.record_id().into_owned();
                if let Some(last) = &self.last_key
                    && id.as_str() <= last.as_str()
                {
                    return Err(field(
                        line,
                        "key",
                        if &id == last {
                            "the key is listed twice".to_owned()
                        } else {
                            "keys are in ascending order of client and key".to_owned()
                        },
                    ));
                }
                self.last_key = Some(id);
                self.keys += 1;
                Ok(Some(Record::Key(record)))
            }
            "end" => {
                for (name, counted) in [("routes", self.routes), ("keys", self.keys)] {
                    let said = number(&object, line, name)?;
                    if said != counted {
                        return Err(field(
                            line,
                            name,
                            format!("the end line says {said}, the file has {counted}"),
                        ));
                    }
                }
                self.ended = true;
                self.buffer.clear();
                if self.input.read_line(&mut self.buffer)? > 0 {
                    return Err(FormatError::Line {
                        line: line + 1,
                        reason: "a line after the end line".into(),
                    });
                }
                Ok(None)
            }
            other => Err(field(
                line,
                "type",
                format!("{other:?} is not route, key or end"),
            )),
        }
    }
}

/// The next line as a JSON object; `None` at the end of the input.
fn next_object<R: BufRead>(
    input: &mut R,
    buffer: &mut String,
    line: u64,
) -> Result<Option<Map<String, Value>>, FormatError> {
    buffer.clear();
    let read = io::Read::take(&mut *input, MAX_LINE_BYTES as u64 + 1)
        .read_line(buffer)
        .map_err(|err| match err.kind() {
            io::ErrorKind::InvalidData => FormatError::Line {
                line,
                reason: "not UTF-8".into(),
            },
            _ => FormatError::Io(err),
        })?;
    if read == 0 {
        return Ok(None);
    }
    if read > MAX_LINE_BYTES {
        return Err(FormatError::Line {
            line,
            reason: format!("longer than {MAX_LINE_BYTES} bytes"),
        });
    }
    let Some(content) = buffer.strip_suffix('\n') else {
        return Err(FormatError::Line {
            line,
            reason: "the line has no end: the file was cut short".into(),
        });
    };
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => Err(FormatError::Line {
            line,
            reason: "not a JSON object".into(),
        }),
        Err(err) => Err(FormatError::Line {
            line,
            reason: format!("not JSON: {err}"),
        }),
    }
}

fn text<'a>(
    object: &'a Map<String, Value>,
    line: u64,
    name: &'static str,
) -> Result<&'a str, FormatError> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(field(line, name, "must be a string")),
        None => Err(field(line, name, "missing")),
    }
}

/// A count: a whole number from 0 to 2^64-1, refused when negative, fractional or larger.
fn count_of(value: &Value, line: u64, name: &'static str) -> Result<u64, FormatError> {
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            field(
                line,
                name,
                format!("{n} is not a whole number from 0 to 18446744073709551615"),
            )
        }),
        _ => Err(field(line, name, "must be a number")),
    }
}

fn number(object: &Map<String, Value>, line: u64, name: &'static str) -> Result<u64, FormatError> {
    count_of(
        object
            .get(name)
            .ok_or_else(|| field(line, name, "missing"))?,
        line,
        name,
    )
}

fn route_of(object: &Map<String, Value>, line: u64) -> Result<Route, FormatError> {
    let text = text(object, line, "route")?;
    let route = Route::parse(text).map_err(|err| field(line, "route", err.to_string()))?;
    if route.as_str() != text {
        return Err(field(
            line,
            "route",
            format!("{text:?} is not in canonical form ({route})"),
        ));
    }
    Ok(route)
}

fn periods<P: Ord>(
    object: &Map<String, Value>,
    line: u64,
    name: &'static str,
    parse: impl Fn(&str) -> Option<P>,
) -> Result<Vec<(P, u64)>, FormatError> {
    let Some(value) = object.get(name) else {
        return Err(field(line, name, "missing"));
    };
    let Value::Object(entries) = value else {
        return Err(field(line, name, "must be an object of period to count"));
    };
    let mut parsed = BTreeMap::new();
    for (period, count) in entries {
        let Some(at) = parse(period) else {
            return Err(field(
                line,
                name,
                format!("{period:?} is not a valid period"),
            ));
        };
        parsed.insert(at, count_of(count, line, name)?);
    }
    Ok(parsed.into_iter().collect())
}

fn route_record(object: &Map<String, Value>, line: u64) -> Result<RouteRecord, FormatError> {
    let record = RouteRecord {
        route: route_of(object, line)?,
        total: number(object, line, "transactions")?,
        days: periods(object, line, "days", |d| Day::parse(d).ok())?,
        months: periods(object, line, "months", |m| Month::parse(m).ok())?,
    };
    // A route's days (or months) can never hold more than its lifetime total.
    for (name, sum) in [
        (
            "days",
            record
                .days
                .iter()
                .map(|(_, n)| u128::from(*n))
                .sum::<u128>(),
        ),
        (
            "months",
            record
                .months
                .iter()
                .map(|(_, n)| u128::from(*n))
                .sum::<u128>(),
        ),
    ] {
        if sum > u128::from(record.total) {
            return Err(field(
                line,
                name,
                format!(
                    "they add up to {sum}, more than the route's {} transactions",
                    record.total
                ),
            ));
        }
    }
    Ok(record)
}

fn key_record(object: &Map<String, Value>, line: u64) -> Result<KeyRecord, FormatError> {
    let key = IdempotencyKey::parse(text(object, line, "key")?.as_bytes())
        .map_err(|err| field(line, "key", err.to_string()))?;
    let key = match object.get("client") {
        None | Some(Value::Null) => key,
        Some(Value::String(name)) => {
            let client = ClientName::parse(name).map_err(|err| field(line, "client", err))?;
            key.scoped(&client)
        }
        Some(_) => return Err(field(line, "client", "must be a string or null")),
    };
    let count = number(object, line, "count")?;
    if count == 0 {
        return Err(field(line, "count", "a key's count is at least 1"));
    }
    Ok(KeyRecord {
        key,
        route: route_of(object, line)?,
        count,
        expires_at: number(object, line, "expires_at")?,
    })
}
