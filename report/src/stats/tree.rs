//! CART regression trees over points of the unit cube, grown for the fANOVA
//! importance ([`super::importance`]), which needs each leaf's box.
//!
//! Splits minimise the summed squared error of the two children (variance
//! reduction) over all features, with the threshold midway between the two
//! neighbouring distinct values. The node's items are kept sorted along
//! every feature and partitioned stably at each split, so growing a tree is
//! O(d · m · depth) for m items and d features, with no sorting per node.

/// Limits on how far a tree grows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeParams {
    /// Each leaf holds at least this many items.
    pub min_samples_leaf: usize,
    /// Depth of the deepest leaf (the root is at depth 0).
    pub max_depth: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf {
        value: f64,
    },
    /// Points with `x[feature] <= threshold` go to `left`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
}

/// A fitted regression tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
}

/// A leaf's region `lo < x <= hi` of the unit cube (closed at 0) and its
/// prediction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeafBox {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    pub value: f64,
}

/// The best split of one node: `count` first items along `feature` go left.
struct Split {
    feature: usize,
    count: usize,
    threshold: f64,
    gain: f64,
}

impl Tree {
    /// Fits a tree to the points `x[i]`, `y[i]` for `i` in `sample`
    /// (repeats allowed: a bootstrap resample). Every `x[i]` has the same
    /// length d ≥ 1 and all values are finite.
    pub(crate) fn fit(x: &[Vec<f64>], y: &[f64], sample: &[usize], params: TreeParams) -> Tree {
        let d = x.first().map_or(0, Vec::len);
        // The resample column by column: columns[j][s] is feature j of item
        // s (the s-th draw), ys[s] its target.
        let columns: Vec<Vec<f64>> = (0..d)
            .map(|j| sample.iter().map(|&i| x[i][j]).collect())
            .collect();
        let ys: Vec<f64> = sample.iter().map(|&i| y[i]).collect();
        // orders[j]: item numbers sorted by feature j.
        let mut orders: Vec<Vec<usize>> = columns
            .iter()
            .map(|col| {
                let mut o: Vec<usize> = (0..sample.len()).collect();
                o.sort_by(|&a, &b| col[a].total_cmp(&col[b]));
                o
            })
            .collect();
        let grower = Grower {
            columns: &columns,
            ys: &ys,
            params,
        };
        let mut scratch = Vec::with_capacity(sample.len());
        let mut nodes = vec![Node::Leaf { value: f64::NAN }];
        let mut goes_left = vec![false; sample.len()];
        let mut stack = vec![(0usize, 0usize, sample.len(), 0usize)];
        while let Some((id, lo, hi, depth)) = stack.pop() {
            let items = orders.first().map_or(&[][..], |o| &o[lo..hi]);
            let mean = items.iter().map(|&s| ys[s]).sum::<f64>() / items.len() as f64;
            nodes[id] = Node::Leaf { value: mean };
            let Some(split) = grower.best_split(&orders, lo, hi, depth, mean) else {
                continue;
            };
            for (k, &s) in orders[split.feature][lo..hi].iter().enumerate() {
                goes_left[s] = k < split.count;
            }
            for order in &mut orders {
                partition_stable(&mut order[lo..hi], &goes_left, &mut scratch);
            }
            let (left, right) = (nodes.len(), nodes.len() + 1);
            nodes.push(Node::Leaf { value: f64::NAN });
            nodes.push(Node::Leaf { value: f64::NAN });
            nodes[id] = Node::Split {
                feature: split.feature,
                threshold: split.threshold,
                left,
                right,
            };
            let mid = lo + split.count;
            stack.push((right, mid, hi, depth + 1));
            stack.push((left, lo, mid, depth + 1));
        }
        Tree { nodes }
    }

    /// The leaves' boxes in the unit cube of dimension `d`; they partition it.
    pub(crate) fn leaves(&self, d: usize) -> Vec<LeafBox> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, vec![0.0; d], vec![1.0; d])];
        while let Some((id, lo, hi)) = stack.pop() {
            match self.nodes.get(id) {
                Some(&Node::Leaf { value }) => out.push(LeafBox { lo, hi, value }),
                Some(&Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                }) => {
                    let (mut left_hi, mut right_lo) = (hi.clone(), lo.clone());
                    left_hi[feature] = threshold;
                    right_lo[feature] = threshold;
                    stack.push((left, lo, left_hi));
                    stack.push((right, right_lo, hi));
                }
                None => {}
            }
        }
        out
    }

    /// The tree's prediction at `point`.
    #[cfg(test)]
    pub(crate) fn predict(&self, point: &[f64]) -> f64 {
        let mut id = 0;
        loop {
            match self.nodes[id] {
                Node::Leaf { value } => return value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    id = if point[feature] <= threshold {
                        left
                    } else {
                        right
                    }
                }
            }
        }
    }
}

struct Grower<'a> {
    columns: &'a [Vec<f64>],
    ys: &'a [f64],
    params: TreeParams,
}

impl Grower<'_> {
    /// The split of items `lo..hi` that most reduces the squared error, or
    /// None when the node must stay a leaf.
    fn best_split(
        &self,
        orders: &[Vec<usize>],
        lo: usize,
        hi: usize,
        depth: usize,
        mean: f64,
    ) -> Option<Split> {
        let n = hi - lo;
        let min_leaf = self.params.min_samples_leaf.max(1);
        if depth >= self.params.max_depth || n < 2 * min_leaf {
            return None;
        }
        let node = &orders.first()?[lo..hi];
        let yc = |s: usize| self.ys[s] - mean;
        let sse: f64 = node.iter().map(|&s| yc(s).powi(2)).sum();
        let total: f64 = node.iter().map(|&s| yc(s)).sum();
        let mut best: Option<Split> = None;
        for (feature, order) in orders.iter().enumerate() {
            let items = &order[lo..hi];
            let column = &self.columns[feature];
            let xj = |k: usize| column[items[k]];
            let mut left_sum = 0.0;
            for (k, &item) in items.iter().enumerate().take(n - 1) {
                left_sum += yc(item);
                let (nl, nr) = (k + 1, n - k - 1);
                if nl < min_leaf || nr < min_leaf || xj(k) >= xj(k + 1) {
                    continue;
                }
                let right_sum = total - left_sum;
                let gain = left_sum * left_sum / nl as f64 + right_sum * right_sum / nr as f64
                    - total * total / n as f64;
                let better = match &best {
                    None => true,
                    Some(b) => gain > b.gain,
                };
                if better {
                    let (a, b) = (xj(k), xj(k + 1));
                    let mid = a + (b - a) / 2.0;
                    best = Some(Split {
                        feature,
                        count: nl,
                        // Rounding may land the midpoint on b; then cut at a.
                        threshold: if mid < b { mid } else { a },
                        gain,
                    });
                }
            }
        }
        // A split that does not reduce the error (beyond rounding) is noise.
        best.filter(|b| b.gain > sse * 1e-12 && b.gain > 0.0)
    }
}

/// Reorders `items` so that those with `goes_left` come first, each side
/// keeping its order.
fn partition_stable(items: &mut [usize], goes_left: &[bool], scratch: &mut Vec<usize>) {
    scratch.clear();
    let mut left = 0;
    for k in 0..items.len() {
        let s = items[k];
        if goes_left[s] {
            items[left] = s;
            left += 1;
        } else {
            scratch.push(s);
        }
    }
    items[left..].copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: TreeParams = TreeParams {
        min_samples_leaf: 1,
        max_depth: 32,
    };

    #[test]
    fn a_step_is_one_split_at_the_midpoint() {
        let x: Vec<Vec<f64>> = [0.1, 0.2, 0.6, 0.9].iter().map(|&v| vec![0.5, v]).collect();
        let y = [1.0, 1.0, 3.0, 3.0];
        let tree = Tree::fit(&x, &y, &[0, 1, 2, 3], PARAMS);
        let leaves = tree.leaves(2);
        assert_eq!(leaves.len(), 2);
        let left = leaves.iter().find(|l| l.value == 1.0).unwrap();
        assert_eq!(
            (left.lo.clone(), left.hi.clone()),
            (vec![0.0, 0.0], vec![1.0, 0.4])
        );
        assert_eq!(tree.predict(&[0.0, 0.39]), 1.0);
        assert_eq!(tree.predict(&[0.0, 0.41]), 3.0);
    }

    #[test]
    fn grown_tree_fits_distinct_points_and_respects_limits() {
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![i as f64 / 19.0, ((i * 7) % 20) as f64 / 19.0])
            .collect();
        let y: Vec<f64> = x.iter().map(|p| p[0] * 3.0 + (p[1] * 5.0).sin()).collect();
        let sample: Vec<usize> = (0..20).collect();
        let tree = Tree::fit(&x, &y, &sample, PARAMS);
        for (p, v) in x.iter().zip(&y) {
            assert!((tree.predict(p) - v).abs() < 1e-12);
        }
        let small = Tree::fit(
            &x,
            &y,
            &sample,
            TreeParams {
                min_samples_leaf: 3,
                max_depth: 2,
            },
        );
        assert!(small.leaves(2).len() <= 4);
        let stump = Tree::fit(
            &x,
            &y,
            &sample,
            TreeParams {
                min_samples_leaf: 1,
                max_depth: 0,
            },
        );
        assert_eq!(stump.leaves(2).len(), 1);
    }

    #[test]
    fn leaves_partition_the_cube() {
        let x: Vec<Vec<f64>> = (0..30)
            .map(|i| vec![(i % 5) as f64 / 4.0, (i / 5) as f64 / 5.0, 0.3])
            .collect();
        let y: Vec<f64> = x.iter().map(|p| p[0] * p[1]).collect();
        let sample: Vec<usize> = (0..30).chain(0..10).collect();
        let leaves = Tree::fit(&x, &y, &sample, PARAMS).leaves(3);
        let volume: f64 = leaves
            .iter()
            .map(|l| l.lo.iter().zip(&l.hi).map(|(a, b)| b - a).product::<f64>())
            .sum();
        assert!((volume - 1.0).abs() < 1e-12);
        assert!(leaves.iter().all(|l| l.lo[2] == 0.0 && l.hi[2] == 1.0));
    }

    #[test]
    fn constant_target_is_one_leaf() {
        let x: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64 / 9.0]).collect();
        let tree = Tree::fit(&x, &[2.0; 10], &(0..10).collect::<Vec<_>>(), PARAMS);
        assert_eq!(
            tree.leaves(1),
            vec![LeafBox {
                lo: vec![0.0],
                hi: vec![1.0],
                value: 2.0
            }]
        );
    }
}
