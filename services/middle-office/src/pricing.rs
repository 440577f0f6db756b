//! Standard prices, pure: the list in force, and what a visit's charge comes to under it.
//! A customer pays exactly the published standard: the first units of an item that the list
//! makes free are free (the first hose segment), the rest at the list price; any other price
//! is a deviation, which only a manager may charge, and which is recorded as one.
//!
//! Until the back office publishes service standards (its own issue), the middle office
//! holds a seeded list, versioned like the published ones will be.

use std::collections::HashMap;

/// Money in cents (fen).
pub type Cents = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceItem {
    pub code: &'static str,
    pub name: &'static str,
    pub unit_price: Cents,
    /// The first this many units on a work order are free.
    pub free_units: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList {
    pub version: &'static str,
    pub items: Vec<PriceItem>,
}

impl PriceList {
    pub fn item(&self, code: &str) -> Option<&PriceItem> {
        self.items.iter().find(|item| item.code == code)
    }
}

/// The list in force until the back office publishes one.
pub fn seeded() -> PriceList {
    let item = |code, name, unit_price, free_units| PriceItem {
        code,
        name,
        unit_price,
        free_units,
    };
    PriceList {
        version: "seed-2026-11",
        items: vec![
            item("VISIT", "on-site visit (labour, first hour)", 5_000, 0),
            item("LABOUR-30", "labour, each further 30 minutes", 3_000, 0),
            item("HOSE-1M", "water hose, 1 m segment", 2_500, 1),
            item("DRAIN-PUMP", "drain pump", 18_000, 0),
            item("DOOR-SEAL", "door seal", 9_500, 0),
            item("CONTROL-BOARD", "control board", 42_000, 0),
            item("LED-DRIVER", "LED driver", 6_800, 0),
            item("FUSE", "fuse", 300, 2),
        ],
    }
}

/// A line as asked: an item, how many, and a price other than the list's (a deviation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub code: String,
    pub quantity: u32,
    pub unit_price: Option<Cents>,
}

/// A line as charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedLine {
    pub code: String,
    pub name: String,
    pub quantity: u32,
    pub free_units: u32,
    pub unit_price: Cents,
    pub amount: Cents,
    /// The list's amount, when this line deviates from it.
    pub standard_amount: Option<Cents>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("lines: {0} is not on price list {1}")]
    UnknownItem(String, &'static str),
    #[error("lines: a quantity must be 1 to 1000")]
    BadQuantity,
    #[error("lines: a price must be 1 to 10,000,000 cents")]
    BadPrice,
    #[error("lines: give at least one line, at most 50")]
    BadLineCount,
    #[error(
        "{0} at {1} cents is not the standard price ({2} cents): only a manager may charge a deviation"
    )]
    DeviationNeedsApproval(String, Cents, Cents),
}

/// Prices `requested` under `list`, given the units of each item the work order was
/// charged before (free units are per work order, not per charge). A deviation is refused
/// unless `approved`.
pub fn charge(
    list: &PriceList,
    charged_before: &HashMap<String, u32>,
    requested: &[Requested],
    approved: bool,
) -> Result<Vec<ChargedLine>, PricingError> {
    if requested.is_empty() || requested.len() > 50 {
        return Err(PricingError::BadLineCount);
    }
    let mut so_far = charged_before.clone();
    let mut lines = Vec::with_capacity(requested.len());
    for line in requested {
        let item = list
            .item(&line.code)
            .ok_or_else(|| PricingError::UnknownItem(line.code.clone(), list.version))?;
        if line.quantity == 0 || line.quantity > 1_000 {
            return Err(PricingError::BadQuantity);
        }
        let before = so_far.entry(line.code.clone()).or_default();
        let free = item.free_units.saturating_sub(*before).min(line.quantity);
        *before = before.saturating_add(line.quantity);
        let paid = Cents::from(line.quantity - free);
        let standard = paid * item.unit_price;
        let (unit_price, standard_amount) = match line.unit_price {
            None => (item.unit_price, None),
            Some(price) if !(1..=10_000_000).contains(&price) => {
                return Err(PricingError::BadPrice);
            }
            Some(price) if price == item.unit_price => (item.unit_price, None),
            // Every unit free: no price to differ from.
            Some(_) if paid == 0 => (item.unit_price, None),
            Some(price) if !approved => {
                return Err(PricingError::DeviationNeedsApproval(
                    item.code.to_owned(),
                    price,
                    item.unit_price,
                ));
            }
            Some(price) => (price, Some(standard)),
        };
        lines.push(ChargedLine {
            code: item.code.to_owned(),
            name: item.name.to_owned(),
            quantity: line.quantity,
            free_units: free,
            unit_price,
            amount: paid * unit_price,
            standard_amount,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(code: &str, quantity: u32, unit_price: Option<Cents>) -> Requested {
        Requested {
            code: code.into(),
            quantity,
            unit_price,
        }
    }

    #[test]
    fn the_first_hose_segment_is_free_and_the_second_at_list_price() {
        let lines = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("HOSE-1M", 2, None), asked("VISIT", 1, None)],
            false,
        )
        .expect("standard");
        assert_eq!(
            (lines[0].free_units, lines[0].amount),
            (1, 2_500),
            "{lines:?}"
        );
        assert_eq!(lines[1].amount, 5_000);
        assert!(lines.iter().all(|line| line.standard_amount.is_none()));
    }

    #[test]
    fn free_units_count_across_the_work_order_s_charges() {
        let before = HashMap::from([("HOSE-1M".to_owned(), 1)]);
        let lines = charge(&seeded(), &before, &[asked("HOSE-1M", 1, None)], false).expect("ok");
        assert_eq!((lines[0].free_units, lines[0].amount), (0, 2_500));
        let fuses = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("FUSE", 1, None), asked("FUSE", 2, None)],
            false,
        )
        .expect("ok");
        assert_eq!(
            fuses
                .iter()
                .map(|l| (l.free_units, l.amount))
                .collect::<Vec<_>>(),
            [(1, 0), (1, 300)],
            "two fuses free in all, then list price"
        );
    }

    #[test]
    fn a_deviation_is_refused_unless_approved_and_recorded_with_the_standard() {
        let refused = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("DRAIN-PUMP", 1, Some(25_000))],
            false,
        );
        assert_eq!(
            refused,
            Err(PricingError::DeviationNeedsApproval(
                "DRAIN-PUMP".into(),
                25_000,
                18_000
            ))
        );
        let approved = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("DRAIN-PUMP", 1, Some(15_000))],
            true,
        )
        .expect("approved");
        assert_eq!(approved[0].amount, 15_000);
        assert_eq!(approved[0].standard_amount, Some(18_000));
        let at_list = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("DRAIN-PUMP", 1, Some(18_000))],
            false,
        )
        .expect("the list's own price is no deviation");
        assert_eq!(at_list[0].standard_amount, None);
    }

    #[test]
    fn a_price_on_free_units_is_no_deviation() {
        let lines = charge(
            &seeded(),
            &HashMap::new(),
            &[asked("HOSE-1M", 1, Some(9_999))],
            false,
        )
        .expect("the first hose is free whatever the price");
        assert_eq!((lines[0].amount, lines[0].standard_amount), (0, None));
    }

    #[test]
    fn bad_lines_are_refused() {
        let list = seeded();
        let none = HashMap::new();
        assert_eq!(
            charge(&list, &none, &[asked("NOPE", 1, None)], true),
            Err(PricingError::UnknownItem("NOPE".into(), "seed-2026-11"))
        );
        assert_eq!(
            charge(&list, &none, &[asked("FUSE", 0, None)], true),
            Err(PricingError::BadQuantity)
        );
        assert_eq!(
            charge(&list, &none, &[asked("FUSE", 1, Some(-5))], true),
            Err(PricingError::BadPrice)
        );
        assert_eq!(
            charge(&list, &none, &[], true),
            Err(PricingError::BadLineCount)
        );
    }
}
