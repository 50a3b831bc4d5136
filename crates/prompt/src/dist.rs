//! Length distributions for prompts and outputs, written the way users type them: `512`, `512:64` (normal with
//! a standard deviation), `256-768` (uniform range, inclusive).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::PromptError;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LengthDist {
    Fixed(u32),
    Normal { mean: u32, stddev: u32 },
    Uniform { min: u32, max: u32 },
}

impl FromStr for LengthDist {
    type Err = PromptError;

    fn from_str(text: &str) -> Result<Self, PromptError> {
        let bad = |reason: String| PromptError::BadLength {
            text: text.to_string(),
            reason,
        };
        let num = |part: &str| {
            let part = part.trim();
            match part.parse::<u32>() {
                Ok(n) => Ok(n),
                Err(_) if part.is_empty() => Err(bad("a number is missing".into())),
                Err(_) => Err(bad(format!("`{part}` is not a whole number"))),
            }
        };
        let dist = if let Some((mean, sd)) = text.split_once(':') {
            LengthDist::Normal {
                mean: num(mean)?,
                stddev: num(sd)?,
            }
        } else if let Some((min, max)) = text.split_once('-') {
            let (min, max) = (num(min)?, num(max)?);
            if min > max {
                return Err(bad(format!("the range {min}-{max} is empty")));
            }
            LengthDist::Uniform { min, max }
        } else {
            LengthDist::Fixed(num(text)?)
        };
        let smallest = match dist {
            LengthDist::Fixed(n) => n,
            LengthDist::Normal { mean, .. } => mean,
            LengthDist::Uniform { min, .. } => min,
        };
        if smallest == 0 {
            return Err(bad("lengths start at 1 token".into()));
        }
        Ok(dist)
    }
}

impl fmt::Display for LengthDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthDist::Fixed(n) => write!(f, "{n}"),
            LengthDist::Normal { mean, stddev } => write!(f, "{mean}:{stddev}"),
            LengthDist::Uniform { min, max } => write!(f, "{min}-{max}"),
        }
    }
}

impl LengthDist {
    /// A draw, never below 1: a zero-token prompt or output is not a request a server can serve.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            LengthDist::Fixed(n) => n.max(1),
            LengthDist::Uniform { min, max } => rng.random_range(min..=max).max(1),
            // A u32 standard deviation is always finite and non-negative, so `Normal::new` cannot refuse it.
            LengthDist::Normal { mean, stddev } => Normal::new(f64::from(mean), f64::from(stddev))
                .map_or(mean, |normal| normal.sample(rng).round().max(1.0) as u32)
                .max(1),
        }
    }

    /// The mean of the distribution as written (before clamping at 1), for planning and reports.
    pub fn mean(&self) -> f64 {
        match *self {
            LengthDist::Fixed(n) => f64::from(n),
            LengthDist::Normal { mean, .. } => f64::from(mean),
            LengthDist::Uniform { min, max } => (f64::from(min) + f64::from(max)) / 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn parses_and_prints_every_form() {
        let cases = [
            ("512", LengthDist::Fixed(512)),
            (
                "512:64",
                LengthDist::Normal {
                    mean: 512,
                    stddev: 64,
                },
            ),
            ("256-768", LengthDist::Uniform { min: 256, max: 768 }),
            ("7-7", LengthDist::Uniform { min: 7, max: 7 }),
            (
                "100:0",
                LengthDist::Normal {
                    mean: 100,
                    stddev: 0,
                },
            ),
        ];
        for (text, want) in cases {
            let got: LengthDist = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        assert_eq!(" 64 ".parse::<LengthDist>().unwrap(), LengthDist::Fixed(64));
    }

    #[test]
    fn bad_forms_name_the_text_and_the_accepted_forms() {
        for (bad, why) in [
            ("", "missing"),
            ("x", "`x` is not a whole number"),
            ("5-2", "empty"),
            ("0", "start at 1"),
            ("0-9", "start at 1"),
            ("0:5", "start at 1"),
            ("1:x", "`x`"),
            ("-3", "missing"),
            ("1.5", "`1.5`"),
            ("99999999999", "not a whole number"),
            ("5:2:1", "`2:1`"),
        ] {
            let err = bad.parse::<LengthDist>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{bad}`")), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("512:64") && err.contains("256-768"), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,12}") {
            if let Ok(dist) = text.parse::<LengthDist>() {
                proptest::prop_assert_eq!(dist.to_string().parse::<LengthDist>().unwrap(), dist);
            }
        }

        #[test]
        fn every_distribution_prints_back_to_itself(a in 1u32.., b in 0u32.., kind in 0..3) {
            let dist = match kind {
                0 => LengthDist::Fixed(a),
                1 => LengthDist::Normal { mean: a, stddev: b },
                _ => LengthDist::Uniform { min: a.min(b.max(1)), max: a.max(b) },
            };
            proptest::prop_assert_eq!(dist.to_string().parse::<LengthDist>().unwrap(), dist);
            let draw = dist.sample(&mut StdRng::seed_from_u64(u64::from(b)));
            proptest::prop_assert!(draw >= 1);
        }
    }

    #[test]
    fn samples_stay_in_range_and_repeat_with_the_seed() {
        let uniform: LengthDist = "10-20".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<u32> = (0..2000).map(|_| uniform.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&v| (10..=20).contains(&v)));
        assert!(draws.contains(&10) && draws.contains(&20), "inclusive");
        let mut again = StdRng::seed_from_u64(1);
        let replay: Vec<u32> = (0..2000).map(|_| uniform.sample(&mut again)).collect();
        assert_eq!(draws, replay);

        let normal: LengthDist = "100:30".parse().unwrap();
        let draws: Vec<f64> = (0..5000)
            .map(|_| f64::from(normal.sample(&mut rng)))
            .collect();
        let mean = draws.iter().sum::<f64>() / 5000.0;
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 5000.0).sqrt();
        assert!((mean - 100.0).abs() < 3.0, "{mean}");
        assert!((sd - 30.0).abs() < 3.0, "{sd}");

        let wide: LengthDist = "2:50".parse().unwrap();
        assert!(
            (0..2000).all(|_| wide.sample(&mut rng) >= 1),
            "clamped at 1"
        );
        assert_eq!(LengthDist::Fixed(9).sample(&mut rng), 9);
        assert_eq!(uniform.mean(), 15.0);
        assert_eq!(wide.mean(), 2.0);
    }
}
