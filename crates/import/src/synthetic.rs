//! Prices and stock levels for data sets that have none.
//!
//! None of the public data sets carries prices or stock, and a shop without them cannot
//! show a product card, filter by price or rank by stock. Each product gets both,
//! generated deterministically from its sku and a fixed seed, so every import of the
//! same data gives the same catalog. Products carry `synthetic_fields` naming them.

/// The fields this module generates, as recorded on each product.
pub const SYNTHETIC_FIELDS: [&str; 2] = ["price_cents", "stock"];

/// Seed of the generator; change it and every price changes.
const SEED: u64 = 0x5348_4f50_4752_4150; // "SHOPGRAP"

/// A price band: prices are spread log-uniformly between `min_cents` and `max_cents`
/// and end in .99, as shop prices do.
#[derive(Clone, Copy, Debug)]
pub struct PriceBand {
    pub min_cents: i64,
    pub max_cents: i64,
}

/// Paperbacks to hardcovers.
pub const BOOKS: PriceBand = PriceBand { min_cents: 499, max_cents: 4_999 };
/// DVDs and downloads.
pub const MOVIES: PriceBand = PriceBand { min_cents: 299, max_cents: 2_499 };

/// The generated price of `sku`, in cents.
pub fn price_cents(sku: &str, band: PriceBand) -> i64 {
    let u = unit(hash(sku, 1));
    let (lo, hi) = ((band.min_cents as f64).ln(), (band.max_cents as f64).ln());
    let cents = (lo + u * (hi - lo)).exp();
    // Round to the next whole unit, minus one cent: 12.37 becomes 12.99.
    ((cents / 100.0).floor() as i64 * 100 + 99).clamp(band.min_cents, band.max_cents)
}

/// The generated stock level of `sku`: one product in ten is out of stock, the rest
/// hold 1 to 60 units, most of them few.
pub fn stock(sku: &str) -> i64 {
    let h = hash(sku, 2);
    if h.is_multiple_of(10) {
        return 0;
    }
    let u = unit(h >> 8);
    1 + (u * u * 60.0) as i64
}

fn hash(sku: &str, stream: u64) -> u64 {
    // FNV-1a over the sku, then splitmix64 to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ SEED ^ stream;
    for b in sku.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_band() {
        assert_eq!(price_cents("9780345339683", BOOKS), price_cents("9780345339683", BOOKS));
        let prices: Vec<i64> = (0..1000).map(|i| price_cents(&i.to_string(), BOOKS)).collect();
        assert!(prices.iter().all(|p| (499..=4_999).contains(p) && p % 100 == 99));
        let distinct: std::collections::HashSet<_> = prices.iter().collect();
        assert!(distinct.len() > 30, "prices are spread, not constant");
        let out_of_stock = (0..10_000).filter(|i| stock(&i.to_string()) == 0).count();
        assert!((800..1200).contains(&out_of_stock), "{out_of_stock}");
        assert!((0..10_000).all(|i| (0..=60).contains(&stock(&i.to_string()))));
    }
}
