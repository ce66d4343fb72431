//! Quasi-random search: a Sobol sequence, scrambled by seed.
//!
//! Setting `c` is point `c` of the sequence (Gray-code order, Joe & Kuo's
//! direction numbers), so the first 2^k settings are a (t, m, s)-net: far
//! more even than independent draws, which is what an initial design wants.
//! With `scramble` (the default) each dimension gets a random linear matrix
//! scramble and a digital shift seeded by `seed` (what SciPy's
//! `qmc.Sobol(scramble=True)` does); without it the all-zero first point is
//! skipped and setting 0 is the centre of the cube.

use hps_common::{Params, Study};
use rand::Rng;

use super::unit::{self, UnitSpace};
use super::{Observation, Proposal, Sampler};

/// Bits per coordinate.
const BITS: usize = 32;

/// Joe & Kuo (2008), `new-joe-kuo-6.21201`, dimensions 2..=64: the
/// primitive polynomial (with its leading and trailing 1 bits) and the
/// initial direction numbers m_1..m_s. Dimension 1 is van der Corput's.
const DIRECTIONS: &[(u32, &[u32])] = &[
    (3, &[1]),
    (7, &[1, 3]),
    (11, &[1, 3, 1]),
    (13, &[1, 1, 1]),
    (19, &[1, 1, 3, 3]),
    (25, &[1, 3, 5, 13]),
    (37, &[1, 1, 5, 5, 17]),
    (41, &[1, 1, 5, 5, 5]),
    (47, &[1, 1, 7, 11, 19]),
    (55, &[1, 1, 5, 1, 1]),
    (59, &[1, 1, 1, 3, 11]),
    (61, &[1, 3, 5, 5, 31]),
    (67, &[1, 3, 3, 9, 7, 49]),
    (91, &[1, 1, 1, 15, 21, 21]),
    (97, &[1, 3, 1, 13, 27, 49]),
    (103, &[1, 1, 1, 15, 7, 5]),
    (109, &[1, 3, 1, 15, 13, 25]),
    (115, &[1, 1, 5, 5, 19, 61]),
    (131, &[1, 3, 7, 11, 23, 15, 103]),
    (137, &[1, 3, 7, 13, 13, 15, 69]),
    (143, &[1, 1, 3, 13, 7, 35, 63]),
    (145, &[1, 3, 5, 9, 1, 25, 53]),
    (157, &[1, 3, 1, 13, 9, 35, 107]),
    (167, &[1, 3, 1, 5, 27, 61, 31]),
    (171, &[1, 1, 5, 11, 19, 41, 61]),
    (185, &[1, 3, 5, 3, 3, 13, 69]),
    (191, &[1, 1, 7, 13, 1, 19, 1]),
    (193, &[1, 3, 7, 5, 13, 19, 59]),
    (203, &[1, 1, 3, 9, 25, 29, 41]),
    (211, &[1, 3, 5, 13, 23, 1, 55]),
    (213, &[1, 3, 7, 3, 13, 59, 17]),
    (229, &[1, 3, 1, 3, 5, 53, 69]),
    (239, &[1, 1, 5, 5, 23, 33, 13]),
    (241, &[1, 1, 7, 7, 1, 61, 123]),
    (247, &[1, 1, 7, 9, 13, 61, 49]),
    (253, &[1, 3, 3, 5, 3, 55, 33]),
    (285, &[1, 3, 1, 15, 31, 13, 49, 245]),
    (299, &[1, 3, 5, 15, 31, 59, 63, 97]),
    (301, &[1, 3, 1, 11, 11, 11, 77, 249]),
    (333, &[1, 3, 1, 11, 27, 43, 71, 9]),
    (351, &[1, 1, 7, 15, 21, 11, 81, 45]),
    (355, &[1, 3, 7, 3, 25, 31, 65, 79]),
    (357, &[1, 3, 1, 1, 19, 11, 3, 205]),
    (361, &[1, 1, 5, 9, 19, 21, 29, 157]),
    (369, &[1, 3, 7, 11, 1, 33, 89, 185]),
    (391, &[1, 3, 3, 3, 15, 9, 79, 71]),
    (397, &[1, 3, 7, 11, 15, 39, 119, 27]),
    (425, &[1, 1, 3, 1, 11, 31, 97, 225]),
    (451, &[1, 1, 1, 3, 23, 43, 57, 177]),
    (463, &[1, 3, 7, 7, 17, 17, 37, 71]),
    (487, &[1, 3, 1, 5, 27, 63, 123, 213]),
    (501, &[1, 1, 3, 5, 11, 43, 53, 133]),
    (529, &[1, 3, 5, 5, 29, 17, 47, 173, 479]),
    (539, &[1, 3, 3, 11, 3, 1, 109, 9, 69]),
    (545, &[1, 1, 1, 5, 17, 39, 23, 5, 343]),
    (557, &[1, 3, 1, 5, 25, 15, 31, 103, 499]),
    (563, &[1, 1, 1, 11, 11, 17, 63, 105, 183]),
    (601, &[1, 1, 5, 11, 9, 29, 97, 231, 363]),
    (607, &[1, 1, 5, 15, 19, 45, 41, 7, 383]),
    (617, &[1, 3, 7, 7, 31, 19, 83, 137, 221]),
    (623, &[1, 1, 1, 3, 23, 15, 111, 223, 83]),
    (631, &[1, 1, 5, 13, 31, 15, 55, 25, 161]),
    (637, &[1, 1, 3, 13, 25, 47, 39, 87, 257]),
];

/// Largest dimension with its own direction numbers; further dimensions
/// draw independent uniform coordinates (seeded by setting).
pub const MAX_DIM: usize = DIRECTIONS.len() + 1;

/// A Sobol sequence in `[0, 1)^d`.
#[derive(Debug, Clone)]
pub struct Sobol {
    /// `v[j][k]`: direction number k+1 of dimension j, scaled to 32 bits.
    v: Vec<[u32; BITS]>,
    shift: Vec<u32>,
    dim: usize,
    scrambled: bool,
    seed: u64,
}

impl Sobol {
    pub fn new(dim: usize, scramble: bool, seed: u64) -> Self {
        let mut v: Vec<[u32; BITS]> = Vec::with_capacity(dim.min(MAX_DIM));
        for j in 0..dim.min(MAX_DIM) {
            let mut vj = [0u32; BITS];
            if j == 0 {
                for (k, x) in vj.iter_mut().enumerate() {
                    *x = 1 << (BITS - 1 - k);
                }
            } else {
                let (poly, m) = DIRECTIONS[j - 1];
                let s = m.len();
                for k in 0..BITS {
                    vj[k] = if k < s {
                        m[k] << (BITS - 1 - k)
                    } else {
                        let mut x = vj[k - s] ^ (vj[k - s] >> s);
                        for i in 1..s {
                            if (poly >> (s - i)) & 1 == 1 {
                                x ^= vj[k - i];
                            }
                        }
                        x
                    };
                }
            }
            v.push(vj);
        }
        let mut shift = vec![0u32; v.len()];
        if scramble {
            let mut rng = unit::rng(&[TAG, seed]);
            for (vj, sh) in v.iter_mut().zip(shift.iter_mut()) {
                // Lower-triangular (in digits, most significant first)
                // with a unit diagonal: digit i of the output mixes input
                // digits 0..=i, so the net structure is kept.
                let rows: Vec<u32> = (0..BITS)
                    .map(|i| {
                        let below = if i == 0 {
                            0
                        } else {
                            rng.random::<u32>() & !(u32::MAX >> i)
                        };
                        below | (1 << (BITS - 1 - i))
                    })
                    .collect();
                for x in vj.iter_mut() {
                    let mut out = 0u32;
                    for (i, row) in rows.iter().enumerate() {
                        if (row & *x).count_ones() % 2 == 1 {
                            out |= 1 << (BITS - 1 - i);
                        }
                    }
                    *x = out;
                }
                *sh = rng.random::<u32>();
            }
        }
        Sobol {
            v,
            shift,
            dim,
            scrambled: scramble,
            seed,
        }
    }

    /// Point `n` of the sequence (of the unscrambled one: point `n + 1`).
    pub fn point(&self, n: u64) -> Vec<f64> {
        let n = if self.scrambled { n } else { n.wrapping_add(1) };
        let g = n ^ (n >> 1);
        let mut x: Vec<f64> = self
            .v
            .iter()
            .zip(&self.shift)
            .map(|(vj, sh)| {
                let mut acc = *sh;
                for (k, d) in vj.iter().enumerate() {
                    if (g >> k) & 1 == 1 {
                        acc ^= d;
                    }
                }
                acc as f64 / (1u64 << BITS) as f64
            })
            .collect();
        if self.dim > x.len() {
            let mut rng = unit::rng(&[TAG, self.seed, n]);
            x.extend((x.len()..self.dim).map(|_| rng.random::<f64>()));
        }
        x
    }
}

const TAG: u64 = 0x5150_u64;

pub struct QuasiRandomSampler {
    space: UnitSpace,
    sobol: Sobol,
}

impl QuasiRandomSampler {
    pub fn new(study: &Study, seed: u64, scramble: bool) -> Self {
        let space = UnitSpace::new(study);
        let sobol = Sobol::new(space.dim(), scramble, seed);
        QuasiRandomSampler { space, sobol }
    }
}

impl Sampler for QuasiRandomSampler {
    fn propose(&mut self, config: u64, _history: &[Observation], _pending: &[Params]) -> Proposal {
        Proposal::plain(self.space.params_at(&self.sobol.point(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscrambled_matches_the_reference_sequence() {
        // scipy.stats.qmc.Sobol(d=4, scramble=False).random(8)[1:]
        let s = Sobol::new(4, false, 0);
        let want = [
            [0.5, 0.5, 0.5, 0.5],
            [0.75, 0.25, 0.25, 0.25],
            [0.25, 0.75, 0.75, 0.75],
            [0.375, 0.375, 0.625, 0.875],
            [0.875, 0.875, 0.125, 0.375],
            [0.625, 0.125, 0.875, 0.625],
            [0.125, 0.625, 0.375, 0.125],
        ];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(s.point(n as u64), w.to_vec(), "point {}", n + 1);
        }
        // scipy.stats.qmc.Sobol(d=64, scramble=False).random(1024)[n][[10, 30, 63]]
        let s = Sobol::new(64, false, 0);
        let want = [
            (5, [0.375, 0.875, 0.625]),
            (100, [0.4609375, 0.7109375, 0.6484375]),
            (1023, [0.6787109375, 0.9287109375, 0.0400390625]),
        ];
        for (n, w) in want {
            let p = s.point(n - 1);
            assert_eq!([p[10], p[30], p[63]], w, "point {n}");
        }
    }

    #[test]
    fn every_dimension_is_a_net() {
        // The first 2^k points put exactly one point in each of 2^k equal
        // intervals of every coordinate, scrambled or not.
        for (scramble, seed) in [(false, 0), (true, 1), (true, 2)] {
            let s = Sobol::new(MAX_DIM, scramble, seed);
            let pts: Vec<Vec<f64>> = (0..64)
                .map(|n| s.point(if scramble { n } else { n.wrapping_sub(1) }))
                .collect();
            for j in 0..MAX_DIM {
                let mut cells: Vec<usize> = pts.iter().map(|p| (p[j] * 64.0) as usize).collect();
                cells.sort();
                assert_eq!(
                    cells,
                    (0..64).collect::<Vec<_>>(),
                    "dim {j} scramble={scramble}"
                );
            }
        }
    }

    #[test]
    fn two_dimensional_projections_are_nets() {
        // (0, m, 2)-net property of the first two dimensions: 16 points,
        // one in each 4x4 cell.
        let s = Sobol::new(2, true, 7);
        let mut cells: Vec<(usize, usize)> = (0..16)
            .map(|n| s.point(n))
            .map(|p| ((p[0] * 4.0) as usize, (p[1] * 4.0) as usize))
            .collect();
        cells.sort();
        cells.dedup();
        assert_eq!(cells.len(), 16);
    }
}
