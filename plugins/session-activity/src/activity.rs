//! The pure rule of the `session_activity` aggregate: one session's state and
//! how an event folds into it.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_plugin_sdk::batch::with_record;
use weir_plugin_sdk::{Field, Fields, PluginError, Value, plugin_error};

/// The largest amount of cents the state holds: up to 2^53 every whole
/// number is a double, so `cents / 100` is the double nearest to the exact
/// decimal amount, which is what makes REVENUE an exact sum.
const MAX_CENTS: i64 = 1 << 53;

/// One session's running aggregate (state version 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityState {
    /// The `timestamp` of the newest event that had one, as written.
    pub last_event_at: Option<String>,
    /// Purchase events.
    pub orders: i64,
    /// The sum of the purchases' `total`, in whole cents; `None` until a
    /// purchase with a total arrives. Cents, not a double, so that the sum
    /// is exact however many orders a session has.
    pub revenue_cents: Option<i64>,
    /// The sum of the quantities of the purchases' items.
    pub items_purchased: i64,
}

/// The fields of an event the aggregate reads (the plugin's `reads`); the
/// host finds them, so nothing else of the event is parsed.
pub const READS: [&str; 4] = ["event_type", "timestamp", "total", "items"];

/// [`READS`] as the plugin declares them.
pub fn reads() -> Vec<String> {
    READS.iter().map(|name| (*name).to_owned()).collect()
}

/// One event's fields, read (and type-checked) before the state changes.
struct Event<'a> {
    event_type: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    /// `total` in whole cents.
    total_cents: Option<i64>,
    /// The sum of the quantities in `items`.
    quantity: Option<i64>,
}

impl<'a> Event<'a> {
    fn read(fields: &Fields<'a>) -> Result<Self, PluginError> {
        let total: Option<f64> = field(fields, 2)?;
        let items: Option<Vec<HashMap<Cow<'a, str>, &'a RawValue>>> = field(fields, 3)?;
        Ok(Self {
            event_type: field(fields, 0)?,
            timestamp: field::<Cow<'a, str>>(fields, 1)?
                .map(|timestamp| rfc3339(timestamp))
                .transpose()?,
            total_cents: total.map(cents).transpose()?,
            quantity: items.map(|items| quantity(&items)).transpose()?,
        })
    }
}

/// Field `index` of [`READS`], `None` when it is missing or `null`; a value
/// of another type is an error that names the field.
fn field<'a, T: Deserialize<'a>>(
    fields: &Fields<'a>,
    index: usize,
) -> Result<Option<T>, PluginError> {
    let Some(value) = fields.get(index).and_then(Field::non_null) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|error| {
        plugin_error(
            "malformed-json",
            format!("field `{}`: {}", READS[index], error.message),
        )
    })
}

/// An amount as whole cents, to the nearest cent (the generator writes
/// totals with at most two decimals, which this recovers exactly).
fn cents(amount: f64) -> Result<i64, PluginError> {
    let cents = (amount * 100.0).round();
    // The bound is a power of two, so the comparison is exact.
    if cents.is_nan() || cents.abs() > MAX_CENTS as f64 {
        return Err(out_of_range(format!(
            "field `total`: {amount} is too large"
        )));
    }
    Ok(cents as i64)
}

/// The sum of the items' `quantity` (an item without one counts none).
/// Each item must be an object and each quantity an integer: a purchase
/// whose items cannot be counted is bad data, not a purchase of nothing.
fn quantity(items: &[HashMap<Cow<'_, str>, &RawValue>]) -> Result<i64, PluginError> {
    items.iter().try_fold(0_i64, |sum, item| {
        let Some(raw) = item.get("quantity") else {
            return Ok(sum);
        };
        let quantity: Option<i64> = serde_json::from_str(raw.get()).map_err(|error| {
            plugin_error(
                "malformed-json",
                format!("field `items`: quantity {}: {error}", raw.get()),
            )
        })?;
        sum.checked_add(quantity.unwrap_or(0))
            .ok_or_else(|| out_of_range("field `items`: the quantities overflow".to_owned()))
    })
}

/// `timestamp` if it is an RFC 3339 date and time. The dashboards order
/// sessions by it as a `timestamptz`: a value PostgreSQL could not read would
/// break them, so such an event is refused like any other of the wrong type.
fn rfc3339(timestamp: Cow<'_, str>) -> Result<Cow<'_, str>, PluginError> {
    match chrono::DateTime::parse_from_rfc3339(&timestamp) {
        Ok(_) => Ok(timestamp),
        Err(error) => Err(plugin_error(
            "malformed-json",
            format!("field `timestamp`: {timestamp:?} is not an RFC 3339 date and time: {error}"),
        )),
    }
}

fn out_of_range(message: String) -> PluginError {
    plugin_error("out-of-range", message)
}

impl ActivityState {
    /// Folds one event in. Every field is read and every sum checked first:
    /// an event that is rejected leaves the state as it was.
    pub fn fold(&mut self, fields: &Fields<'_>) -> Result<(), PluginError> {
        let event = Event::read(fields)?;
        let purchase = event.event_type.as_deref() == Some("purchase");
        let (mut revenue_cents, mut items_purchased) = (self.revenue_cents, self.items_purchased);
        if purchase {
            if let Some(total) = event.total_cents {
                let sum = revenue_cents.unwrap_or(0) + total;
                if sum.abs() > MAX_CENTS {
                    return Err(out_of_range(
                        "field `total`: the session's revenue is too large to sum exactly"
                            .to_owned(),
                    ));
                }
                revenue_cents = Some(sum);
            }
            if let Some(quantity) = event.quantity {
                items_purchased = items_purchased.checked_add(quantity).ok_or_else(|| {
                    out_of_range("field `items`: the session's quantities overflow".to_owned())
                })?;
            }
            self.orders += 1;
        }
        self.revenue_cents = revenue_cents;
        self.items_purchased = items_purchased;
        if let Some(timestamp) = event.timestamp {
            match &self.last_event_at {
                Some(current) if current == timestamp.as_ref() => {}
                _ => self.last_event_at = Some(timestamp.into_owned()),
            }
        }
        Ok(())
    }

    /// Folds one event given as JSON text, its fields found as the host
    /// would find them (tests, natively).
    pub fn fold_json(&mut self, event: &[u8]) -> Result<(), PluginError> {
        with_record(event, &reads(), |record| self.fold(&record.fields()?))
    }

    /// The four value columns, in the output schema's order.
    pub fn row(&self) -> Vec<Value> {
        vec![
            self.last_event_at.clone().map_or(Value::Null, Value::Text),
            Value::Long(self.orders),
            // Cents below 2^53 and 100 are exact doubles, and a division of
            // exact doubles is correctly rounded: the result is the double
            // nearest to the decimal sum, as PostgreSQL would read it.
            self.revenue_cents
                .map_or(Value::Null, |cents| Value::Double(cents as f64 / 100.0)),
            Value::Long(self.items_purchased),
        ]
    }
}
