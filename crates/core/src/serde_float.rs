//! JSON has no NaN or infinity: serde_json writes them as `null`. These read such numbers back (and write a
//! histogram's `+Inf` bound as the string Prometheus uses), so every document round-trips.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number that may have been written as `null` (NaN: "no observation").
pub fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A bucket bound: a number, or `"+Inf"` (older files: `null`).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Bound {
    Number(f64),
    Text(String),
    Missing(Option<()>),
}

pub fn serialize_bounds<S: Serializer>(bounds: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
    let written: Vec<(Bound, f64)> = bounds
        .iter()
        .map(|&(le, count)| {
            let le = if le.is_finite() {
                Bound::Number(le)
            } else {
                Bound::Text(if le > 0.0 { "+Inf" } else { "-Inf" }.into())
            };
            (le, count)
        })
        .collect();
    written.serialize(s)
}

pub fn deserialize_bounds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
    let read: Vec<(Bound, f64)> = Vec::deserialize(d)?;
    Ok(read
        .into_iter()
        .map(|(le, count)| {
            let le = match le {
                Bound::Number(v) => v,
                Bound::Text(t) if t == "-Inf" => f64::NEG_INFINITY,
                Bound::Text(_) | Bound::Missing(_) => f64::INFINITY,
            };
            (le, count)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::signals::{Buckets, HistogramStats, QuantileLimit};

    #[test]
    fn infinite_bounds_and_nan_statistics_survive_json() {
        let b = Buckets {
            bounds: vec![(0.5, 1.0), (f64::INFINITY, 3.0)],
            sum: 1.0,
            count: 3.0,
        };
        let text = serde_json::to_string(&b).unwrap();
        assert!(text.contains("\"+Inf\""), "{text}");
        assert_eq!(serde_json::from_str::<Buckets>(&text).unwrap(), b);
        let h = HistogramStats {
            count: 0.0,
            mean: f64::NAN,
            p50: f64::NAN,
            p90: 1.0,
            p99: 2.0,
            limits: [("p99".to_string(), QuantileLimit::AtLeast(2.0))].into(),
        };
        let back: HistogramStats =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert!(back.mean.is_nan() && back.p50.is_nan() && back.p99 == 2.0);
        assert_eq!(back.limits, h.limits);
    }
}
