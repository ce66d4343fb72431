//! Data augmentation of training batches: random shifts, horizontal flips
//! and (opt-in) rotations, drawn from the trial's own seeded RNG so runs
//! stay reproducible. Applied on the host to the gathered batch; nothing
//! is done (and no copy made) when every knob is off.

use candle_core::{Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Augment {
    /// Maximum shift in pixels along each axis (zero fill).
    pub shift: usize,
    /// Flip half of the images left–right.
    pub flip: bool,
    /// Maximum rotation in degrees either way (bilinear, zero fill). On
    /// digits large rotations confuse 6 and 9, so it is off by default.
    pub rotate_deg: f64,
}

impl Augment {
    pub fn is_on(&self) -> bool {
        self.shift > 0 || self.flip || self.rotate_deg > 0.0
    }

    /// A randomly transformed copy of the batch `x` `(B, 1, H, W)`.
    pub fn apply(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        if !self.is_on() {
            return Ok(x.clone());
        }
        let (b, c, h, w) = x.dims4()?;
        let src = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; src.len()];
        let plane = h * w;
        for i in 0..b * c {
            let s = self.shift as i64;
            let (dx, dy) = if s > 0 {
                (rng.random_range(-s..=s), rng.random_range(-s..=s))
            } else {
                (0, 0)
            };
            let flip = self.flip && rng.random::<bool>();
            let angle = if self.rotate_deg > 0.0 {
                rng.random_range(-self.rotate_deg..=self.rotate_deg)
                    .to_radians()
            } else {
                0.0
            };
            transform(
                &src[i * plane..(i + 1) * plane],
                &mut out[i * plane..(i + 1) * plane],
                h,
                w,
                (dx, dy),
                flip,
                angle,
            );
        }
        Tensor::from_vec(out, (b, c, h, w), x.device())
    }
}

/// `dst = flip(shift(rotate(src)))`, computed by mapping each destination
/// pixel back into `src` (bilinear for rotations, zero outside).
fn transform(
    src: &[f32],
    dst: &mut [f32],
    h: usize,
    w: usize,
    (dx, dy): (i64, i64),
    flip: bool,
    angle: f64,
) {
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |y: i64, x: i64| -> f32 {
        if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
            0.0
        } else {
            src[y as usize * w + x as usize]
        }
    };
    for y in 0..h {
        for x in 0..w {
            // Undo the flip, then the shift.
            let xf = if flip { w - 1 - x } else { x };
            let (sy, sx) = (y as i64 - dy, xf as i64 - dx);
            let v = if angle == 0.0 {
                at(sy, sx)
            } else {
                // Undo the rotation about the centre.
                let (ry, rx) = (sy as f64 - cy, sx as f64 - cx);
                let fy = cos * ry - sin * rx + cy;
                let fx = sin * ry + cos * rx + cx;
                let (y0, x0) = (fy.floor(), fx.floor());
                let (ty, tx) = ((fy - y0) as f32, (fx - x0) as f32);
                let (y0, x0) = (y0 as i64, x0 as i64);
                at(y0, x0) * (1.0 - ty) * (1.0 - tx)
                    + at(y0, x0 + 1) * (1.0 - ty) * tx
                    + at(y0 + 1, x0) * ty * (1.0 - tx)
                    + at(y0 + 1, x0 + 1) * ty * tx
            };
            dst[y * w + x] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn image() -> Vec<f32> {
        // A single bright pixel at (y=1, x=2) on a 5x5 plane.
        let mut v = vec![0f32; 25];
        v[5 + 2] = 1.0;
        v
    }

    #[test]
    fn shift_flip_and_rotation_move_pixels() {
        let src = image();
        let mut dst = vec![0f32; 25];
        transform(&src, &mut dst, 5, 5, (1, 2), false, 0.0);
        assert_eq!(dst[3 * 5 + 3], 1.0, "shifted by dx=1, dy=2");
        transform(&src, &mut dst, 5, 5, (0, 0), true, 0.0);
        assert_eq!(dst[5 + 2], 1.0, "the centre column stays under a flip");
        transform(&src, &mut dst, 5, 5, (1, 0), true, 0.0);
        assert_eq!(dst[5 + 1], 1.0, "shift right, then mirror");
        // 90 degrees about the centre (2, 2): (1, 2) -> (2, 3) or (2, 1).
        transform(
            &src,
            &mut dst,
            5,
            5,
            (0, 0),
            false,
            std::f64::consts::FRAC_PI_2,
        );
        assert!(
            (dst[2 * 5 + 3] + dst[2 * 5 + 1] - 1.0).abs() < 1e-5,
            "{dst:?}"
        );
        assert!((dst.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn same_rng_same_batch_and_off_is_identity() {
        let x = Tensor::from_vec(image().repeat(4), (4, 1, 5, 5), &Device::Cpu).unwrap();
        let aug = Augment {
            shift: 1,
            flip: true,
            rotate_deg: 10.0,
        };
        let a = aug.apply(&x, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b = aug.apply(&x, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&x));
        let off = Augment {
            shift: 0,
            flip: false,
            rotate_deg: 0.0,
        };
        assert_eq!(
            v(&off.apply(&x, &mut ChaCha8Rng::seed_from_u64(1)).unwrap()),
            v(&x)
        );
    }
}
