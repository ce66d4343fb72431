//! MNIST-format IDX datasets, resident on the training device.
//!
//! [`Dataset::load`] reads the four IDX files of MNIST / Fashion-MNIST
//! (gzip-compressed or not) and keeps images as `f32` tensors scaled to
//! `[0, 1]` with shape `(N, 1, 28, 28)` and labels as `u32` tensors of shape
//! `(N,)`, both on the device, so a minibatch is a single `index_select`.
//!
//! [`Dataset::synthetic`] and [`write_idx_dir`] produce the same small,
//! deterministic, learnable data set (a bright square whose position depends
//! on the class, over background noise) in memory or as IDX files, for tests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Image side length the model expects.
pub use hps_common::arch::SIDE;
const PIXELS: usize = SIDE * SIDE;
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Why a dataset could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file (or its directory) does not exist, under either the `.gz`
    /// or the uncompressed name. `path` is the `.gz` name.
    #[error(
        "dataset file `{}` not found: install the Debian package `dataset-fashion-mnist` \
         (apt-get install dataset-fashion-mnist) or pass --data DIR with MNIST-format IDX files",
        path.display()
    )]
    NotFound { path: PathBuf },
    /// The file exists but could not be read or decompressed.
    #[error("cannot read dataset file `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid IDX file of the expected kind.
    #[error("dataset file `{}` is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The data could not be placed on the device (e.g. out of memory).
    #[error("cannot load dataset file `{}` onto the device: {source}", path.display())]
    Device {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

/// Training and test images and labels, resident on one device.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `(N, 1, 28, 28)` f32 in `[0, 1]`.
    pub(crate) train_images: Tensor,
    /// `(N,)` u32 in `0..10`.
    pub(crate) train_labels: Tensor,
    pub(crate) test_images: Tensor,
    pub(crate) test_labels: Tensor,
}

impl Dataset {
    /// Load MNIST-format IDX files from `dir`: `train-images-idx3-ubyte.gz`,
    /// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
    /// `t10k-labels-idx1-ubyte.gz`, or the same names without `.gz`
    /// (the content is sniffed, so a misnamed file still loads).
    pub fn load(dir: &Path, device: &Device) -> Result<Dataset, DataError> {
        let (train_images, train_labels) = load_pair(dir, TRAIN_IMAGES, TRAIN_LABELS, device)?;
        let (test_images, test_labels) = load_pair(dir, TEST_IMAGES, TEST_LABELS, device)?;
        Ok(Dataset {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }

    /// A small deterministic learnable data set (see [`write_idx_dir`],
    /// which writes exactly the same data). Panics only if the device cannot
    /// allocate the tensors.
    pub fn synthetic(n_train: usize, n_test: usize, seed: u64, device: &Device) -> Dataset {
        let raw = SyntheticRaw::new(n_train, n_test, seed);
        let mk = |imgs: Vec<u8>, labels: Vec<u8>| {
            tensors_from_bytes(imgs, labels, device)
                .expect("allocating a small synthetic dataset on the device")
        };
        let (train_images, train_labels) = mk(raw.train_images, raw.train_labels);
        let (test_images, test_labels) = mk(raw.test_images, raw.test_labels);
        Dataset {
            train_images,
            train_labels,
            test_images,
            test_labels,
        }
    }

    /// Number of examples in the training file.
    pub fn train_len(&self) -> usize {
        self.train_labels.dims()[0]
    }

    /// Number of examples in the test file.
    pub fn test_len(&self) -> usize {
        self.test_labels.dims()[0]
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        self.train_images.device()
    }
}

/// Build `(images, labels)` tensors from raw IDX payloads (`n*784` pixel
/// bytes and `n` label bytes). Conversion to f32 happens on the device.
fn tensors_from_bytes(
    images: Vec<u8>,
    labels: Vec<u8>,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = labels.len();
    debug_assert_eq!(images.len(), n * PIXELS);
    let images = Tensor::from_vec(images, (n, 1, SIDE, SIDE), device)?
        .to_dtype(DType::F32)?
        .affine(1.0 / 255.0, 0.0)?;
    let labels = Tensor::from_vec(labels, n, device)?.to_dtype(DType::U32)?;
    Ok((images, labels))
}

fn load_pair(
    dir: &Path,
    images_name: &str,
    labels_name: &str,
    device: &Device,
) -> Result<(Tensor, Tensor), DataError> {
    let (images_path, images_bytes) = read_file(dir, images_name)?;
    let (labels_path, labels_bytes) = read_file(dir, labels_name)?;
    let images = parse_images(&images_path, images_bytes)?;
    let labels = parse_labels(&labels_path, labels_bytes)?;
    let n_images = images.len() / PIXELS;
    if n_images != labels.len() {
        return Err(DataError::Corrupt {
            path: labels_path,
            reason: format!(
                "holds {} labels but `{}` holds {n_images} images",
                labels.len(),
                images_path.display()
            ),
        });
    }
    tensors_from_bytes(images, labels, device).map_err(|source| DataError::Device {
        path: images_path,
        source,
    })
}

/// Find `name.gz` or `name` in `dir` and return its (decompressed) bytes.
fn read_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let plain = dir.join(name);
    let path = if gz.is_file() {
        gz
    } else if plain.is_file() {
        plain
    } else {
        return Err(DataError::NotFound { path: gz });
    };
    let io = |source| DataError::Io {
        path: path.clone(),
        source,
    };
    let raw = std::fs::read(&path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    Ok((path, bytes))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Check an IDX header and return the payload (header stripped).
fn parse_images(path: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 16 {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the 16-byte IDX image header",
            bytes.len()
        )));
    }
    let magic = be_u32(&bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(corrupt(format!(
            "bad magic number {magic:#010x}, expected {IMAGES_MAGIC:#010x} (IDX unsigned-byte images)"
        )));
    }
    let (n, rows, cols) = (
        be_u32(&bytes, 4) as usize,
        be_u32(&bytes, 8),
        be_u32(&bytes, 12),
    );
    if rows as usize != SIDE || cols as usize != SIDE {
        return Err(corrupt(format!(
            "images are {rows}x{cols}, the cnn trainer needs 28x28"
        )));
    }
    let want = n
        .checked_mul(PIXELS)
        .ok_or_else(|| corrupt(format!("absurd image count {n}")))?;
    let have = bytes.len() - 16;
    if have != want {
        return Err(corrupt(format!(
            "{}: the header announces {n} images of 28x28 ({want} bytes) but {have} bytes follow",
            if have < want {
                "truncated"
            } else {
                "trailing data"
            }
        )));
    }
    bytes.drain(..16);
    Ok(bytes)
}

fn parse_labels(path: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the 8-byte IDX label header",
            bytes.len()
        )));
    }
    let magic = be_u32(&bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(corrupt(format!(
            "bad magic number {magic:#010x}, expected {LABELS_MAGIC:#010x} (IDX unsigned-byte labels)"
        )));
    }
    let n = be_u32(&bytes, 4) as usize;
    let have = bytes.len() - 8;
    if have != n {
        return Err(corrupt(format!(
            "{}: the header announces {n} labels but {have} bytes follow",
            if have < n {
                "truncated"
            } else {
                "trailing data"
            }
        )));
    }
    bytes.drain(..8);
    if let Some((i, &l)) = bytes.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(corrupt(format!(
            "label {l} at index {i} is out of range 0..=9"
        )));
    }
    Ok(bytes)
}

/// The synthetic data set as raw IDX payloads.
struct SyntheticRaw {
    train_images: Vec<u8>,
    train_labels: Vec<u8>,
    test_images: Vec<u8>,
    test_labels: Vec<u8>,
}

impl SyntheticRaw {
    fn new(n_train: usize, n_test: usize, seed: u64) -> SyntheticRaw {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0x5e7_da7a);
        let (train_images, train_labels) = synthetic_split(&mut rng, n_train);
        let (test_images, test_labels) = synthetic_split(&mut rng, n_test);
        SyntheticRaw {
            train_images,
            train_labels,
            test_images,
            test_labels,
        }
    }
}

/// Class `c` draws a bright 8-high, 5-wide block at one of ten positions
/// (5 columns, 2 rows), jittered by a pixel, over dim uniform noise.
fn synthetic_split(rng: &mut ChaCha8Rng, n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut images = vec![0u8; n * PIXELS];
    let mut labels = Vec::with_capacity(n);
    for img in images.chunks_exact_mut(PIXELS) {
        let c: u8 = rng.random_range(0..10);
        labels.push(c);
        for p in img.iter_mut() {
            *p = rng.random_range(0..64);
        }
        let top = 3 + 13 * (c as usize / 5) + rng.random_range(0..2usize);
        let left = 5 * (c as usize % 5) + rng.random_range(0..2usize);
        for y in top..top + 8 {
            for x in left..(left + 5).min(SIDE) {
                img[y * SIDE + x] = rng.random_range(192..=255);
            }
        }
    }
    (images, labels)
}

/// Write a small learnable synthetic data set to `dir` (created if needed) as
/// the four gzip-compressed IDX files [`Dataset::load`] reads. The data are
/// exactly those of [`Dataset::synthetic`] with the same arguments.
pub fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let raw = SyntheticRaw::new(n_train, n_test, seed);
    write_idx_images(&dir.join(format!("{TRAIN_IMAGES}.gz")), &raw.train_images)?;
    write_idx_labels(&dir.join(format!("{TRAIN_LABELS}.gz")), &raw.train_labels)?;
    write_idx_images(&dir.join(format!("{TEST_IMAGES}.gz")), &raw.test_images)?;
    write_idx_labels(&dir.join(format!("{TEST_LABELS}.gz")), &raw.test_labels)?;
    Ok(())
}

fn write_gz(path: &Path, header: &[u32], payload: &[u8]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for h in header {
        gz.write_all(&h.to_be_bytes())?;
    }
    gz.write_all(payload)?;
    gz.finish()?.sync_all()
}

fn write_idx_images(path: &Path, pixels: &[u8]) -> std::io::Result<()> {
    let n = (pixels.len() / PIXELS) as u32;
    write_gz(path, &[IMAGES_MAGIC, n, SIDE as u32, SIDE as u32], pixels)
}

fn write_idx_labels(path: &Path, labels: &[u8]) -> std::io::Result<()> {
    write_gz(path, &[LABELS_MAGIC, labels.len() as u32], labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_vec_labels(t: &Tensor) -> Vec<u32> {
        t.to_vec1::<u32>().unwrap()
    }

    #[test]
    fn idx_round_trip_matches_synthetic() {
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), 50, 20, 7).unwrap();
        let d = Dataset::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!((d.train_len(), d.test_len()), (50, 20));
        assert_eq!(d.train_images.dims(), &[50, 1, 28, 28]);
        assert_eq!(d.test_images.dims(), &[20, 1, 28, 28]);
        assert_eq!(d.train_labels.dtype(), DType::U32);
        let s = Dataset::synthetic(50, 20, 7, &Device::Cpu);
        assert_eq!(
            to_vec_labels(&d.train_labels),
            to_vec_labels(&s.train_labels)
        );
        assert_eq!(to_vec_labels(&d.test_labels), to_vec_labels(&s.test_labels));
        let diff = (&d.train_images - &s.train_images)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        let max = d
            .train_images
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let min = d
            .train_images
            .min_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(min >= 0.0 && max <= 1.0 && max > 0.7, "{min} {max}");
        assert!(to_vec_labels(&d.train_labels).iter().all(|&l| l < 10));
        // Different seeds give different data.
        let o = Dataset::synthetic(50, 20, 8, &Device::Cpu);
        assert_ne!(
            to_vec_labels(&o.train_labels),
            to_vec_labels(&s.train_labels)
        );
    }

    #[test]
    fn uncompressed_files_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), 10, 5, 1).unwrap();
        for name in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
            let gz = dir.path().join(format!("{name}.gz"));
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
                .read_to_end(&mut bytes)
                .unwrap();
            std::fs::write(dir.path().join(name), bytes).unwrap();
            std::fs::remove_file(gz).unwrap();
        }
        let d = Dataset::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!((d.train_len(), d.test_len()), (10, 5));
    }

    #[test]
    fn missing_dir_names_file_and_package() {
        let e = Dataset::load(Path::new("/nonexistent/hps-data"), &Device::Cpu).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::NotFound { .. }));
        assert!(
            msg.contains("/nonexistent/hps-data/train-images-idx3-ubyte.gz"),
            "{msg}"
        );
        assert!(msg.contains("dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains("--data"), "{msg}");
    }

    #[test]
    fn missing_single_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), 10, 5, 1).unwrap();
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let msg = Dataset::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("t10k-labels-idx1-ubyte.gz` not found"),
            "{msg}"
        );
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn decompressed(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Write a valid dir, replace `name` by `mutate(decompressed bytes)`,
    /// and return the load error.
    fn corrupt_with(name: &str, mutate: impl FnOnce(&mut Vec<u8>)) -> (PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), 10, 5, 1).unwrap();
        let path = dir.path().join(format!("{name}.gz"));
        let mut bytes = decompressed(&path);
        mutate(&mut bytes);
        std::fs::write(&path, gz(&bytes)).unwrap();
        let e = Dataset::load(dir.path(), &Device::Cpu).unwrap_err();
        (path, e.to_string())
    }

    #[test]
    fn truncated_images_name_the_file() {
        let (path, msg) = corrupt_with(TRAIN_IMAGES, |b| b.truncate(b.len() - 100));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
        let (path, msg) = corrupt_with(TEST_LABELS, |b| b.truncate(5));
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("truncated"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_gzip_stream_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_idx_dir(dir.path(), 10, 5, 1).unwrap();
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let msg = Dataset::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn bad_magic_names_the_file() {
        let (path, msg) = corrupt_with(TRAIN_LABELS, |b| b[3] = 3);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("magic"), "{msg}");
        // An empty file, too.
        let (path, msg) = corrupt_with(TEST_IMAGES, |b| b.clear());
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn count_mismatch_and_bad_label_are_reported() {
        // 9 labels for 10 images.
        let (path, msg) = corrupt_with(TRAIN_LABELS, |b| {
            b[7] = 9;
            b.pop();
        });
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("9 labels") && msg.contains("10 images"),
            "{msg}"
        );
        let (path, msg) = corrupt_with(TEST_LABELS, |b| b[8 + 2] = 12);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("label 12 at index 2"), "{msg}");
    }

    #[test]
    fn wrong_image_size_is_reported() {
        let (_, msg) = corrupt_with(TRAIN_IMAGES, |b| b[11] = 27);
        assert!(msg.contains("27x28"), "{msg}");
    }
}
