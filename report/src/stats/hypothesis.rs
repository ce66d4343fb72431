//! The verdict on a hypothesis: does the measured effect's confidence
//! interval lie on the side of zero the study file expects?

use hps_common::exercise::Expect;

use super::{welch, Summary, Welch};

/// What the data say of a hypothesis about one compared value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The whole 95 % interval of the effect is on the expected side of 0.
    Supported,
    /// The whole interval is on the other side.
    Contradicted,
    /// The interval contains 0 (or touches it).
    Inconclusive,
}

impl Verdict {
    /// The word the report prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict for an effect (value − baseline, on the metric's own scale)
/// with 95 % interval `ci`, when the hypothesis expects the metric to be
/// `expect` (lower or higher) at the value than at the baseline. `expect`
/// is about the metric's value, not about better or worse, so the
/// objective's direction does not enter. None without `expect` or when an
/// end of the interval is not a number.
pub fn verdict(ci: (f64, f64), expect: Option<Expect>) -> Option<Verdict> {
    let expect = expect?;
    let (lo, hi) = ci;
    if lo.is_nan() || hi.is_nan() {
        return None;
    }
    let (below, above) = (hi < 0.0, lo > 0.0);
    Some(match (expect, below, above) {
        (Expect::Lower, true, _) | (Expect::Higher, _, true) => Verdict::Supported,
        (Expect::Lower, _, true) | (Expect::Higher, true, _) => Verdict::Contradicted,
        _ => Verdict::Inconclusive,
    })
}

/// The effect of a value against the baseline: Welch's test of
/// `value.mean − baseline.mean`, and the verdict on its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub welch: Welch,
    /// None when the hypothesis states no expected direction.
    pub verdict: Option<Verdict>,
}

/// The effect of `value` against `baseline`; None when either has fewer
/// than 2 observations or a number is not finite.
pub fn effect(value: &Summary, baseline: &Summary, expect: Option<Expect>) -> Option<Effect> {
    let w = welch(value, baseline)?;
    Some(Effect {
        welch: w,
        verdict: verdict(w.ci95, expect),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize;
    use crate::stats::welch::tests::normal;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Five runs of a validation error with mean `mean` and std 0.01.
    fn runs(rng: &mut ChaCha8Rng, mean: f64) -> Summary {
        let v: Vec<f64> = (0..5).map(|_| mean + 0.01 * normal(rng)).collect();
        summarize(&v).unwrap()
    }

    #[test]
    fn a_clear_effect_in_the_expected_direction_is_supported() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (base, bn) = (runs(&mut rng, 0.15), runs(&mut rng, 0.10));
        let e = effect(&bn, &base, Some(Expect::Lower)).unwrap();
        assert!(e.welch.ci95.1 < 0.0, "{e:?}");
        assert_eq!(e.verdict, Some(Verdict::Supported));
        let e = effect(&base, &bn, Some(Expect::Higher)).unwrap();
        assert_eq!(e.verdict, Some(Verdict::Supported));
    }

    #[test]
    fn no_effect_is_inconclusive() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (base, same) = (runs(&mut rng, 0.15), runs(&mut rng, 0.15));
        for expect in [Expect::Lower, Expect::Higher] {
            let e = effect(&same, &base, Some(expect)).unwrap();
            assert_eq!(e.verdict, Some(Verdict::Inconclusive), "{e:?}");
        }
    }

    #[test]
    fn the_wrong_direction_is_contradicted() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (base, worse) = (runs(&mut rng, 0.10), runs(&mut rng, 0.15));
        let e = effect(&worse, &base, Some(Expect::Lower)).unwrap();
        assert_eq!(e.verdict, Some(Verdict::Contradicted));
    }

    #[test]
    fn no_expectation_or_no_spread_estimate_gives_no_verdict() {
        assert_eq!(verdict((-2.0, -1.0), None), None);
        assert_eq!(verdict((f64::NAN, 1.0), Some(Expect::Lower)), None);
        // An end exactly at 0 is not "wholly on one side".
        assert_eq!(
            verdict((-1.0, 0.0), Some(Expect::Lower)),
            Some(Verdict::Inconclusive)
        );
        let one = Summary::from_parts(0.1, 0.0, 1);
        assert!(effect(&one, &one, Some(Expect::Lower)).is_none());
    }
}
