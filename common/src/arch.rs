//! The network's shape, resolved from [`CnnHyper`]: the filters and map
//! sizes of each conv block, the widths of the hidden dense layers, the
//! shapes of the trainable tensors, and the multiply-adds of one example.
//! The worker builds and trains the network from it; `hps-master init
//! --list-presets` estimates a study's CPU time from it. No I/O, no candle.
//!
//! ```text
//! input 1x28x28
//! conv_layers x [conv k x k, nf*nf_mult^i filters, valid|same,
//!                (batch norm), activation, pool (max|avg|none), (dropout)]
//! hidden dense layers (dense_widths, or dense_layers x dense_units):
//!                [dropout, dense, (batch norm), activation]
//! dropout, dense 10                  -> logits (softmax lives in the loss)
//! ```
//!
//! With `conv_layers: 0` the flattened 784 pixels go straight to the dense
//! layers: seed 004's MLP 784 → 128 → 64 → 10 is `conv_layers: 0,
//! dense_widths: [128, 64]`.

use crate::cnn::{Activation, CnnHyper, Init, Padding, Pool};

/// Side of the square input images (MNIST and Fashion-MNIST: 28).
pub const SIDE: usize = 28;
/// Output classes.
pub const CLASSES: usize = 10;

/// The resolved architecture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Arch {
    /// Filters of each conv layer.
    pub filters: Vec<usize>,
    pub kernel: usize,
    pub padding: Padding,
    pub pool: Pool,
    pub pool_size: usize,
    /// Widths of the hidden dense layers.
    pub dense: Vec<usize>,
    pub dropout: f64,
    pub conv_dropout: f64,
    pub batchnorm: bool,
    pub activation: Activation,
    pub init: Init,
    /// Spatial side of the feature maps after each conv block.
    pub sides: Vec<usize>,
}

/// Why a set of hyperparameters builds no network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    #[error("conv layer {layer} would have {filters} filters (nf {nf} x nf_mult {nf_mult}^{i}); at most 4096", i = .layer - 1)]
    TooManyFilters {
        /// 1-based.
        layer: usize,
        filters: f64,
        nf: usize,
        nf_mult: f64,
    },
    #[error(
        "conv layer {layer} gets a {side}x{side} map, smaller than kernel_size {kernel}; \
             use fewer conv_layers, a smaller kernel_size or pool_size, or padding `same`"
    )]
    SmallerThanKernel {
        layer: usize,
        side: usize,
        kernel: usize,
    },
    #[error("the pool after conv layer {layer} gets a {side}x{side} map, smaller than pool_size {pool}; \
             use fewer conv_layers or a smaller pool_size")]
    SmallerThanPool {
        layer: usize,
        side: usize,
        pool: usize,
    },
}

impl Arch {
    /// The architecture of a resolved set of hyperparameters, or why it
    /// cannot be built (the feature maps would shrink below one pixel).
    pub fn from_hyper(h: &CnnHyper) -> std::result::Result<Arch, ArchError> {
        let k = h.kernel_size;
        let p = h.pool_size;
        let mut filters = Vec::new();
        let mut sides = Vec::new();
        let mut side = SIDE;
        for i in 0..h.conv_layers {
            let f = (h.nf as f64 * h.nf_mult.powi(i as i32)).round().max(1.0);
            if f > 4096.0 {
                return Err(ArchError::TooManyFilters {
                    layer: i + 1,
                    filters: f,
                    nf: h.nf,
                    nf_mult: h.nf_mult,
                });
            }
            filters.push(f as usize);
            if h.padding == Padding::Valid {
                if side < k {
                    let (layer, kernel) = (i + 1, k);
                    return Err(ArchError::SmallerThanKernel {
                        layer,
                        side,
                        kernel,
                    });
                }
                side = side + 1 - k;
            }
            if h.pool != Pool::None {
                if side < p {
                    let (layer, pool) = (i + 1, p);
                    return Err(ArchError::SmallerThanPool { layer, side, pool });
                }
                side /= p;
            }
            sides.push(side);
        }
        Ok(Arch {
            filters,
            kernel: k,
            padding: h.padding,
            pool: h.pool,
            pool_size: p,
            dense: h.hidden_widths(),
            dropout: h.dropout,
            conv_dropout: h.conv_dropout,
            batchnorm: h.batchnorm,
            activation: h.activation,
            init: h.init,
            sides,
        })
    }

    /// The seed's network with `nf` filters per conv layer.
    pub fn seed(nf: usize) -> Arch {
        let h = CnnHyper {
            nf,
            ..CnnHyper::default()
        };
        Arch::from_hyper(&h).expect("the seed's architecture fits 28x28 inputs")
    }

    /// Multiply-adds of one example's forward pass: every conv (at its
    /// output map size) and dense layer; pooling, activations and batch
    /// norm are not counted. Training costs about three times this.
    pub fn macs_per_example(&self) -> u64 {
        let mut side = SIDE;
        let mut c_in = 1u64;
        let mut macs = 0u64;
        for (i, &f) in self.filters.iter().enumerate() {
            let out = if self.padding == Padding::Same {
                side
            } else {
                side + 1 - self.kernel
            } as u64;
            macs += c_in * (self.kernel * self.kernel) as u64 * f as u64 * out * out;
            side = self.sides[i];
            c_in = f as u64;
        }
        let mut d_in = self.flat() as u64;
        for &d in self.dense.iter().chain(std::iter::once(&CLASSES)) {
            macs += d_in * d as u64;
            d_in = d as u64;
        }
        macs
    }

    /// Features entering the first dense layer.
    pub fn flat(&self) -> usize {
        let s = *self.sides.last().unwrap_or(&SIDE);
        self.filters.last().copied().unwrap_or(1) * s * s
    }

    /// Shapes of the trainable tensors, in order: per conv layer kernel
    /// `(out, in, k, k)`, bias `(out,)`, and with batch norm gamma, beta;
    /// per hidden dense layer weight `(in, out)`, bias, (gamma, beta); the
    /// output layer's weight and bias.
    pub fn var_shapes(&self) -> Vec<Vec<usize>> {
        let mut v = Vec::new();
        let mut c_in = 1;
        for &f in &self.filters {
            v.push(vec![f, c_in, self.kernel, self.kernel]);
            v.push(vec![f]);
            if self.batchnorm {
                v.push(vec![f]);
                v.push(vec![f]);
            }
            c_in = f;
        }
        let mut d_in = self.flat();
        for &d in &self.dense {
            v.push(vec![d_in, d]);
            v.push(vec![d]);
            if self.batchnorm {
                v.push(vec![d]);
                v.push(vec![d]);
            }
            d_in = d;
        }
        v.push(vec![d_in, CLASSES]);
        v.push(vec![CLASSES]);
        v
    }

    /// Shapes of the batch-norm running statistics (mean, var per
    /// normalised layer), in order; empty without batch norm.
    pub fn stat_shapes(&self) -> Vec<Vec<usize>> {
        if !self.batchnorm {
            return Vec::new();
        }
        self.filters
            .iter()
            .chain(&self.dense)
            .flat_map(|&n| [vec![n], vec![n]])
            .collect()
    }

    /// Size (f32 elements) of the largest im2col buffer per example.
    pub fn cols_per_example(&self) -> usize {
        let mut side = SIDE;
        let mut c_in = 1;
        let mut most = 1;
        for (i, &f) in self.filters.iter().enumerate() {
            let pad_side = if self.padding == Padding::Same {
                side + self.kernel - 1
            } else {
                side
            };
            let out = pad_side + 1 - self.kernel;
            most = most.max(c_in * self.kernel * self.kernel * out * out);
            side = self.sides[i];
            c_in = f;
        }
        most
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_mlp_has_no_conv_and_two_hidden_layers() {
        let h = CnnHyper {
            conv_layers: 0,
            dense_widths: vec![128, 64],
            ..CnnHyper::default()
        };
        let a = Arch::from_hyper(&h).unwrap();
        assert!(a.filters.is_empty());
        assert_eq!(a.flat(), 784);
        assert_eq!(a.dense, vec![128, 64]);
        assert_eq!(
            a.var_shapes(),
            vec![
                vec![784, 128],
                vec![128],
                vec![128, 64],
                vec![64],
                vec![64, 10],
                vec![10]
            ]
        );
        assert_eq!(a.macs_per_example(), 784 * 128 + 128 * 64 + 64 * 10);
    }

    #[test]
    fn the_seed_cnn_counts_its_multiply_adds() {
        let a = Arch::seed(32);
        // conv1: 1x5x5 -> 32 at 24x24; conv2: 32x5x5 -> 32 at 8x8;
        // dense 32*4*4 -> 256 -> 10.
        let expect = 25 * 32 * 24 * 24 + 32 * 25 * 32 * 8 * 8 + 512 * 256 + 256 * 10;
        assert_eq!(a.macs_per_example(), expect as u64);
        assert_eq!(a.dense, vec![256]);
    }
}
