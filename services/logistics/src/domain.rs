//! The logistics service's rules, as plain Rust: which way stock moves, how a
//! delivery's outcome changes it, when a shift conflicts with a cadre's
//! others, which hours of a checkpoint are short of people, which funds
//! categories go with which direction.
use std::collections::BTreeMap;

use linli_core::text_enum;
use linli_core::time::Micros;
use linli_core::{Error, Result};

text_enum!(MovementKind: linli_proto::logistics::v1::MovementKind { DonationIn = "donation_in", PurchaseIn = "purchase_in", AllocationOut = "allocation_out", Return = "return", Adjustment = "adjustment" });
text_enum!(DeliveryStatus: linli_proto::logistics::v1::DeliveryStatus { Pending = "pending", Delivered = "delivered", Refused = "refused", Failed = "failed" });
text_enum!(DeliveryOutcome: linli_proto::logistics::v1::DeliveryOutcome { Delivered = "delivered", NotHome = "not_home", Refused = "refused" });
text_enum!(LogEntryKind: linli_proto::logistics::v1::LogEntryKind { EntryRegistered = "entry_registered", IdCheck = "id_check", Temperature = "temperature" });
text_enum!(FundsDirection: linli_proto::logistics::v1::FundsDirection { Income = "income", Expense = "expense" });
text_enum!(FundsCategory: linli_proto::logistics::v1::FundsCategory { Allocation = "allocation", Donation = "donation", Purchase = "purchase", Repair = "repair", Other = "other", Reversal = "reversal" });

pub const HOUR: Micros = 3_600_000_000;
pub const DAY: Micros = 24 * HOUR;
/// Attempts at a delivery before nobody-at-home makes it fail.
pub const MAX_DELIVERY_ATTEMPTS: i32 = 3;
/// Longest single shift.
pub const MAX_SHIFT_HOURS: i64 = 12;

/// The most one movement may move, in an item's units.
pub const MAX_MOVEMENT: u64 = 1_000_000_000;
/// The most of one item a depot may hold: far past any real depot, and far
/// enough from i64's limit that no sum of movements can overflow.
pub const MAX_STOCK: i64 = 1_000_000_000_000;

/// The signed change a movement makes to stock, or why it is not allowed.
pub fn signed_quantity(kind: MovementKind, quantity: i64, reason: &str) -> Result<i64> {
    if quantity.unsigned_abs() > MAX_MOVEMENT {
        return Err(Error::invalid(
            "quantity",
            format!("must be at most {MAX_MOVEMENT} in one movement"),
        ));
    }
    match kind {
        MovementKind::DonationIn | MovementKind::PurchaseIn | MovementKind::Return
            if quantity > 0 =>
        {
            Ok(quantity)
        }
        MovementKind::DonationIn | MovementKind::PurchaseIn | MovementKind::Return => {
            Err(Error::invalid("quantity", "must be positive"))
        }
        MovementKind::AllocationOut if quantity > 0 => Ok(-quantity),
        MovementKind::AllocationOut => Err(Error::invalid("quantity", "must be positive")),
        MovementKind::Adjustment if quantity == 0 => {
            Err(Error::invalid("quantity", "must not be zero"))
        }
        MovementKind::Adjustment if reason.trim().is_empty() => {
            Err(Error::invalid("reason", "is required for an adjustment"))
        }
        MovementKind::Adjustment => Ok(quantity),
    }
}

/// How many whole hours of [from, to) overlap any of `gaps` (each hour counted once).
pub fn hours_with_gaps(from: Micros, to: Micros, gaps: &[(Micros, Micros)]) -> i32 {
    let mut hours = 0;
    let mut h = from;
    while h < to {
        let end = h + HOUR;
        if gaps.iter().any(|&(s, e)| s < end && e > h) {
            hours += 1;
        }
        h = end;
    }
    hours
}

/// Why `have` plus `delta` is not a stock level, if it is not one.
pub fn check_stock(item_id: &str, have: i64, delta: i64) -> Result<()> {
    match have.checked_add(delta) {
        Some(after) if after < 0 => Err(Error::FailedPrecondition(format!(
            "not enough of item {item_id} at the depot: {have} left, {} needed",
            -delta
        ))),
        Some(after) if after <= MAX_STOCK => Ok(()),
        _ => Err(Error::invalid(
            "quantity",
            format!("would take the depot's stock of item {item_id} past {MAX_STOCK}"),
        )),
    }
}

/// What an outcome does to a delivery: its new status and attempts, and
/// whether its goods go back to the depot.
pub fn apply_outcome(
    status: DeliveryStatus,
    attempts: i32,
    outcome: DeliveryOutcome,
) -> Result<(DeliveryStatus, i32, bool)> {
    if status != DeliveryStatus::Pending {
        return Err(Error::FailedPrecondition(format!(
            "the delivery is already {}",
            status.as_str()
        )));
    }
    let attempts = attempts + 1;
    Ok(match outcome {
        DeliveryOutcome::Delivered => (DeliveryStatus::Delivered, attempts, false),
        DeliveryOutcome::Refused => (DeliveryStatus::Refused, attempts, true),
        DeliveryOutcome::NotHome if attempts >= MAX_DELIVERY_ATTEMPTS => {
            (DeliveryStatus::Failed, attempts, true)
        }
        DeliveryOutcome::NotHome => (DeliveryStatus::Pending, attempts, false),
    })
}

/// The start of the hour `t` falls in.
pub fn floor_hour(t: Micros) -> Micros {
    t - t.rem_euclid(HOUR)
}

/// The first whole hour at or after `t`.
pub fn ceil_hour(t: Micros) -> Micros {
    floor_hour(t + HOUR - 1)
}

/// A report period widened to whole hours (the roster counts by the hour): at
/// most 120 days, ending at `to` (default now), starting at `from` (default 30 days earlier).
pub fn report_period(
    from: Option<Micros>,
    to: Option<Micros>,
    now: Micros,
) -> Result<(Micros, Micros)> {
    let to = ceil_hour(to.unwrap_or(now));
    let from = floor_hour(from.unwrap_or(to - 30 * DAY));
    if from >= to || to - from > 120 * DAY {
        return Err(Error::invalid(
            "from",
            "must be before to, at most 120 days",
        ));
    }
    Ok((from, to))
}

/// A shift as the roster rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Micros,
    pub end: Micros,
}

impl Span {
    fn overlap(&self, other: &Span) -> Micros {
        (self.end.min(other.end) - self.start.max(other.start)).max(0)
    }
}

/// Shifts run on whole hours, for 1 to 12 hours.
pub fn parse_shift(start: Micros, end: Micros) -> Result<Span> {
    if start % HOUR != 0 {
        return Err(Error::invalid("starts_at", "must be on the hour"));
    }
    if end % HOUR != 0 {
        return Err(Error::invalid("ends_at", "must be on the hour"));
    }
    if end <= start {
        return Err(Error::invalid("ends_at", "must be after starts_at"));
    }
    if end - start > MAX_SHIFT_HOURS * HOUR {
        return Err(Error::invalid(
            "ends_at",
            format!("a shift lasts at most {MAX_SHIFT_HOURS} hours"),
        ));
    }
    Ok(Span { start, end })
}

/// Whether a cadre may take `new` given their other shifts: not two places at
/// once, and at most `max_hours_per_day` on duty in any 24 hours.
pub fn check_shift(
    new: Span,
    others: &[Span],
    max_hours_per_day: i64,
    zone: chrono::FixedOffset,
) -> Result<()> {
    if let Some(clash) = others.iter().find(|o| o.overlap(&new) > 0) {
        return Err(Error::FailedPrecondition(format!(
            "the cadre is already on duty from {} to {}",
            linli_core::time::local(clash.start, zone),
            linli_core::time::local(clash.end, zone)
        )));
    }
    // Any 24-hour window with the most duty starts where some shift starts.
    let all: Vec<Span> = others.iter().copied().chain(std::iter::once(new)).collect();
    for w in all
        .iter()
        .map(|s| s.start)
        .chain(all.iter().map(|s| s.end - DAY))
    {
        let window = Span {
            start: w,
            end: w + DAY,
        };
        if window.overlap(&new) == 0 {
            continue;
        }
        let hours: Micros = all.iter().map(|s| s.overlap(&window)).sum();
        if hours > max_hours_per_day * HOUR {
            return Err(Error::FailedPrecondition(format!(
                "the cadre would be on duty {} hours within 24 (at most {max_hours_per_day})",
                hours / HOUR
            )));
        }
    }
    Ok(())
}

/// Hours in [from, to) where fewer than `required` shifts cover the whole hour,
/// merged into runs: (start, end, fewest on duty).
pub fn gaps(
    required: i32,
    shifts: &[Span],
    from: Micros,
    to: Micros,
) -> Vec<(Micros, Micros, i32)> {
    let mut out: Vec<(Micros, Micros, i32)> = Vec::new();
    let mut h = floor_hour(from);
    while h < to {
        let hour = Span {
            start: h,
            end: h + HOUR,
        };
        let staffed = shifts
            .iter()
            .filter(|s| s.start <= hour.start && s.end >= hour.end)
            .count() as i32;
        if staffed < required {
            match out.last_mut() {
                Some(last) if last.1 == h => {
                    last.1 = h + HOUR;
                    last.2 = last.2.min(staffed);
                }
                _ => out.push((h, h + HOUR, staffed)),
            }
        }
        h += HOUR;
    }
    out
}

/// Income comes as allocations or donations, expense goes on purchases or
/// repairs; "other" may be either. Reversals are made by the service only.
pub fn check_funds_category(direction: FundsDirection, category: FundsCategory) -> Result<()> {
    use FundsCategory::*;
    match (direction, category) {
        (_, Reversal) => Err(Error::invalid(
            "category",
            "reversals are made with ReverseFundsEntry",
        )),
        (FundsDirection::Income, Allocation | Donation | Other)
        | (FundsDirection::Expense, Purchase | Repair | Other) => Ok(()),
        (d, c) => Err(Error::invalid(
            "category",
            format!("{} is not a kind of {}", c.as_str(), d.as_str()),
        )),
    }
}

/// Quantities of items, as given in a request: each item once, each quantity positive.
pub fn parse_lines(
    field: &str,
    lines: impl IntoIterator<Item = (String, i64)>,
) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for (i, (item, qty)) in lines.into_iter().enumerate() {
        let item = linli_core::validate::parse_id(&format!("{field}[{i}].item_id"), &item)?;
        if !(1..=1_000_000).contains(&qty) {
            return Err(Error::invalid(
                format!("{field}[{i}].quantity"),
                "must be from 1 to 1,000,000",
            ));
        }
        if out.insert(item, qty).is_some() {
            return Err(Error::invalid(
                format!("{field}[{i}].item_id"),
                "repeats an item",
            ));
        }
    }
    Ok(out)
}

/// A reading is flagged at or above the threshold; readings outside 30–45 °C are mistakes.
pub fn check_temperature(celsius: f64, threshold: f64) -> Result<bool> {
    if !(30.0..=45.0).contains(&celsius) {
        return Err(Error::invalid(
            "temperature_celsius",
            "must be between 30 and 45 °C",
        ));
    }
    Ok(celsius >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_cross_the_wire_both_ways() {
        linli_core::assert_enums_round_trip!(
            MovementKind,
            DeliveryStatus,
            DeliveryOutcome,
            LogEntryKind,
            FundsDirection,
            FundsCategory
        );
    }

    #[test]
    fn stock_moves_in_the_right_direction() {
        assert_eq!(
            signed_quantity(MovementKind::DonationIn, 50, "").unwrap(),
            50
        );
        assert_eq!(
            signed_quantity(MovementKind::AllocationOut, 5, "").unwrap(),
            -5
        );
        assert_eq!(
            signed_quantity(MovementKind::Adjustment, -3, "spoiled").unwrap(),
            -3
        );
        assert!(
            signed_quantity(MovementKind::Adjustment, -3, " ")
                .unwrap_err()
                .to_string()
                .starts_with("reason:")
        );
        assert!(signed_quantity(MovementKind::PurchaseIn, 0, "").is_err());
        // Extremes are refused, not overflowed (i64::MIN has no positive twin).
        for q in [i64::MAX, i64::MIN, MAX_MOVEMENT as i64 + 1] {
            assert!(signed_quantity(MovementKind::DonationIn, q, "").is_err());
            assert!(signed_quantity(MovementKind::Adjustment, q, "count").is_err());
        }
        assert!(signed_quantity(MovementKind::DonationIn, MAX_MOVEMENT as i64, "").is_ok());
        // Two checkpoints short in the same two hours, one more in a third: three hours.
        let g = |a: i64, b: i64| (a * HOUR, b * HOUR);
        assert_eq!(
            hours_with_gaps(0, 24 * HOUR, &[g(2, 4), g(2, 4), g(10, 11)]),
            3
        );
        assert_eq!(hours_with_gaps(0, 24 * HOUR, &[]), 0);
        assert!(check_stock("i", 5, -5).is_ok());
        assert!(matches!(
            check_stock("i", 5, -6),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(check_stock("i", MAX_STOCK - 1, 1).is_ok());
        assert!(matches!(
            check_stock("i", MAX_STOCK, 1),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(check_stock("i", i64::MAX, 1).is_err());
        assert!(signed_quantity(MovementKind::Return, -1, "").is_err());
    }

    #[test]
    fn nobody_home_three_times_fails_and_returns_the_goods() {
        let (s, a, back) =
            apply_outcome(DeliveryStatus::Pending, 0, DeliveryOutcome::NotHome).unwrap();
        assert_eq!((s, a, back), (DeliveryStatus::Pending, 1, false));
        let (s, a, _) = apply_outcome(s, a, DeliveryOutcome::NotHome).unwrap();
        let (s, a, back) = apply_outcome(s, a, DeliveryOutcome::NotHome).unwrap();
        assert_eq!((s, a, back), (DeliveryStatus::Failed, 3, true));
        assert!(apply_outcome(s, a, DeliveryOutcome::Delivered).is_err());
        assert_eq!(
            apply_outcome(DeliveryStatus::Pending, 1, DeliveryOutcome::Delivered).unwrap(),
            (DeliveryStatus::Delivered, 2, false)
        );
        assert_eq!(
            apply_outcome(DeliveryStatus::Pending, 0, DeliveryOutcome::Refused).unwrap(),
            (DeliveryStatus::Refused, 1, true)
        );
    }

    fn cst() -> chrono::FixedOffset {
        linli_core::time::china_standard_time()
    }

    fn span(start_h: i64, end_h: i64) -> Span {
        Span {
            start: start_h * HOUR,
            end: end_h * HOUR,
        }
    }

    #[test]
    fn shifts_are_whole_hours_up_to_twelve() {
        assert!(parse_shift(0, 8 * HOUR).is_ok());
        assert!(
            parse_shift(1, 8 * HOUR)
                .unwrap_err()
                .to_string()
                .starts_with("starts_at:")
        );
        assert!(
            parse_shift(0, 13 * HOUR)
                .unwrap_err()
                .to_string()
                .starts_with("ends_at:")
        );
        assert!(parse_shift(8 * HOUR, 8 * HOUR).is_err());
    }

    #[test]
    fn one_cadre_cannot_be_in_two_places_or_on_duty_too_long() {
        let day = [span(0, 8)];
        assert!(check_shift(span(8, 12), &day, 12, cst()).is_ok());
        assert!(
            // The clash is told in local time, with its offset (midnight UTC is 08:00 +08:00).
            matches!(check_shift(span(7, 9), &day, 12, cst()), Err(Error::FailedPrecondition(m)) if m.contains("already on duty from 1970-01-01 08:00 +08:00 to 1970-01-01 16:00 +08:00"))
        );
        // 00–08 and 16–24 make 16 hours within one 24-hour window.
        assert!(
            matches!(check_shift(span(16, 24), &day, 12, cst()), Err(Error::FailedPrecondition(m)) if m.contains("16 hours"))
        );
        // The same eight hours every day is fine.
        assert!(check_shift(span(24, 32), &day, 12, cst()).is_ok());
        assert!(check_shift(span(20, 28), &[span(4, 8)], 12, cst()).is_ok());
    }

    #[test]
    fn a_hand_built_week_of_gaps() {
        // Two people needed round the clock for a day; two 12-hour pairs, but
        // one person's night shift ends two hours early.
        let shifts = [span(0, 12), span(0, 12), span(12, 24), span(12, 22)];
        assert_eq!(
            gaps(2, &shifts, 0, 24 * HOUR),
            vec![(22 * HOUR, 24 * HOUR, 1)]
        );
        assert_eq!(gaps(1, &shifts, 0, 24 * HOUR), vec![]);
        // Nobody at all on the second day: one 24-hour gap at zero.
        assert_eq!(
            gaps(1, &shifts, 0, 48 * HOUR),
            vec![(24 * HOUR, 48 * HOUR, 0)]
        );
    }

    #[test]
    fn report_periods_are_whole_hours() {
        assert_eq!(
            (floor_hour(HOUR + 1), ceil_hour(HOUR + 1), ceil_hour(HOUR)),
            (HOUR, 2 * HOUR, HOUR)
        );
        let now = 100 * DAY + 90 * 60_000_000;
        assert_eq!(
            report_period(None, None, now).unwrap(),
            (100 * DAY + 2 * HOUR - 30 * DAY, 100 * DAY + 2 * HOUR)
        );
        assert!(
            report_period(Some(0), Some(121 * DAY), now)
                .unwrap_err()
                .to_string()
                .starts_with("from:")
        );
        assert!(report_period(Some(5 * DAY), Some(DAY), now).is_err());
    }

    #[test]
    fn funds_categories_match_their_direction() {
        assert!(check_funds_category(FundsDirection::Income, FundsCategory::Donation).is_ok());
        assert!(check_funds_category(FundsDirection::Expense, FundsCategory::Repair).is_ok());
        assert!(check_funds_category(FundsDirection::Expense, FundsCategory::Other).is_ok());
        assert!(check_funds_category(FundsDirection::Income, FundsCategory::Purchase).is_err());
        assert!(check_funds_category(FundsDirection::Expense, FundsCategory::Reversal).is_err());
    }

    #[test]
    fn lines_and_temperatures() {
        let id = "01a21b2d-93f9-7631-b9b9-c19294c582ee".to_owned();
        assert!(parse_lines("bundle", [(id.clone(), 2)]).is_ok());
        assert!(
            parse_lines("bundle", [(id.clone(), 2), (id.clone(), 1)])
                .unwrap_err()
                .to_string()
                .starts_with("bundle[1].item_id:")
        );
        assert!(
            parse_lines("bundle", [(id, 0)])
                .unwrap_err()
                .to_string()
                .starts_with("bundle[0].quantity:")
        );
        assert!(check_temperature(37.3, 37.3).unwrap());
        assert!(!check_temperature(36.5, 37.3).unwrap());
        assert!(check_temperature(60.0, 37.3).is_err());
    }
}
