//! Length distributions for prompts and outputs, written the way users type them: `512`, `512:64` (normal with
//! a standard deviation), `256-768` (uniform range).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LengthDist {
    Fixed(u32),
    Normal { mean: u32, stddev: u32 },
    Uniform { min: u32, max: u32 },
}

impl FromStr for LengthDist {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{}` is not a whole number", s.trim()))
        };
        let dist = if let Some((mean, sd)) = text.split_once(':') {
            LengthDist::Normal {
                mean: num(mean)?,
                stddev: num(sd)?,
            }
        } else if let Some((min, max)) = text.split_once('-') {
            let (min, max) = (num(min)?, num(max)?);
            if min > max {
                return Err(format!("range {min}-{max} is empty"));
            }
            LengthDist::Uniform { min, max }
        } else {
            LengthDist::Fixed(num(text)?)
        };
        if dist.mean() < 1.0 {
            return Err("lengths must be at least 1".into());
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
    /// A draw, never below 1.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            LengthDist::Fixed(n) => n.max(1),
            LengthDist::Uniform { min, max } => rng.random_range(min..=max).max(1),
            LengthDist::Normal { mean, stddev } => {
                match Normal::new(f64::from(mean), f64::from(stddev)) {
                    Ok(normal) => normal.sample(rng).round().max(1.0) as u32,
                    Err(_) => mean.max(1),
                }
            }
        }
    }

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
        for text in ["512", "512:64", "256-768"] {
            assert_eq!(text.parse::<LengthDist>().unwrap().to_string(), text);
        }
        for bad in ["", "x", "5-2", "0", "1:x", "-3"] {
            assert!(bad.parse::<LengthDist>().is_err(), "{bad}");
        }
    }

    #[test]
    fn samples_stay_in_range_and_repeat_with_the_seed() {
        let d: LengthDist = "10-20".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<u32> = (0..1000).map(|_| d.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&v| (10..=20).contains(&v)));
        let mut again = StdRng::seed_from_u64(1);
        assert_eq!(
            draws[..10],
            (0..10).map(|_| d.sample(&mut again)).collect::<Vec<_>>()[..]
        );
        let n: LengthDist = "100:30".parse().unwrap();
        let mean = (0..5000)
            .map(|_| f64::from(n.sample(&mut rng)))
            .sum::<f64>()
            / 5000.0;
        assert!((mean - 100.0).abs() < 3.0, "{mean}");
    }
}
