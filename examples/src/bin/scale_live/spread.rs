//! Median and maximum over the agents, as the JSON reports them.

use serde_json::{json, Value};

/// `{"median": m, "max": x}` of `values` (rounded to 3 decimals), or nulls when empty.
pub fn median_max(values: &[f64]) -> Value {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return json!({"median": null, "max": null});
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    json!({"median": number(median), "max": number(v[v.len() - 1])})
}

/// `x` as a JSON integer when it is whole, else rounded to 3 decimals.
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(round3(x))
    }
}

/// `x` rounded to 3 decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), json!({"median": 2, "max": 3}));
        assert_eq!(
            median_max(&[4.0, 1.0, 2.0, 3.0]),
            json!({"median": 2.5, "max": 4})
        );
        assert_eq!(median_max(&[]), json!({"median": null, "max": null}));
        assert_eq!(
            median_max(&[f64::NAN, 1.23456]),
            json!({"median": 1.235, "max": 1.235})
        );
    }
}
