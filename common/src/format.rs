//! How hps writes a number for people: one format for the terminal's
//! tables (`status`, `best`, the end-of-run table) and the HTML report.

use serde_json::Value;

/// `x` with `digits` significant digits and no trailing zeros; in
/// scientific notation outside `[10^-4, 10^digits)`. The one
/// number format of hps's tables, on the page and on the terminal.
pub fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    // Learning rates and weight decays (0.001, 0.0001) read best as
    // decimals; scientific notation only below 1e-4 or above the digits.
    if (-4..digits).contains(&mag) {
        let decimals = (digits - 1 - mag).max(0) as usize;
        let s = format!("{x:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        let decimals = (digits - 1).max(0) as usize;
        let s = format!("{x:.decimals$e}");
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        }
    }
}

/// A parameter value as text: strings unquoted, floats with `digits`
/// significant digits, integers and the rest as written.
pub fn value_text_with(v: &Value, digits: i32) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => significant(n.as_f64().unwrap_or(f64::NAN), digits),
        other => other.to_string(),
    }
}

pub fn value_text(v: &Value) -> String {
    value_text_with(v, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_same_everywhere() {
        assert_eq!(significant(0.0001234, 3), "0.000123");
        assert_eq!(significant(0.00001234, 3), "1.23e-5");
        assert_eq!(significant(123456.0, 3), "1.23e5");
        assert_eq!(significant(0.5, 4), "0.5");
        assert_eq!(significant(f64::NAN, 4), "-");
        assert_eq!(value_text(&Value::from("adam")), "adam");
        assert_eq!(value_text(&Value::from(32)), "32");
        assert_eq!(value_text_with(&Value::from(0.123456789), 6), "0.123457");
    }
}
