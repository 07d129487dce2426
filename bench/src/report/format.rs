//! Number formatting shared by the table and the charts.

/// `x` with 3 significant digits: 2.3148 → "2.31", 0.012345 → "0.0123", 99.96 → "100".
/// Numbers of 1000 and more keep their whole integer part (12345.6 → "12346") rather than
/// turning digits into zeros. Non-finite values are "n/a".
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    // Scientific formatting rounds to 3 significant digits first, so the exponent it reports is
    // that of the rounded value (9.996 → 1.00e1), which fixes the number of decimals.
    let sci = format!("{:.2e}", x.abs());
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let decimals = usize::try_from(2 - exp).unwrap_or(0);
    format!("{x:.decimals$}")
}

/// A ratio as "×1.23" (two decimals), "n/a" if not finite.
pub fn ratio(r: f64) -> String {
    if r.is_finite() {
        format!("×{r:.2}")
    } else {
        "n/a".to_string()
    }
}

/// A signed difference with 3 significant digits: "+4.20", "-1.50", "0".
pub fn signed(x: f64) -> String {
    let s = sig3(x);
    if x > 0.0 && s != "0" && x.is_finite() {
        format!("+{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(2.3148), "2.31");
        assert_eq!(sig3(2.0), "2.00");
        assert_eq!(sig3(0.5), "0.500");
        assert_eq!(sig3(0.012345), "0.0123");
        assert_eq!(sig3(0.000123456), "0.000123");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(123.4), "123");
        assert_eq!(sig3(999.4), "999");
        assert_eq!(sig3(12345.6), "12346");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(-2.3148), "-2.31");
        assert_eq!(sig3(f64::NAN), "n/a");
        assert_eq!(sig3(f64::INFINITY), "n/a");
    }

    #[test]
    fn rounding_across_a_decade() {
        assert_eq!(sig3(9.996), "10.0");
        assert_eq!(sig3(99.96), "100");
        assert_eq!(sig3(0.09996), "0.100");
    }

    #[test]
    fn ratios_and_signs() {
        assert_eq!(ratio(0.5), "×0.50");
        assert_eq!(ratio(1.234), "×1.23");
        assert_eq!(ratio(12.0), "×12.00");
        assert_eq!(ratio(f64::INFINITY), "n/a");
        assert_eq!(signed(4.2), "+4.20");
        assert_eq!(signed(-1.5), "-1.50");
        assert_eq!(signed(0.0), "0");
    }
}
