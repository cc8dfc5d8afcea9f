//! Table lookup without a lookup argument: R1CS has none, but a function of an 8-bit
//! value can be read from a constant table with two one-hot selectors.
//!
//! The index `x − lo` (at most 256 values) is written as `16·row + column`. The prover
//! commits to a one-hot row selector `R` and a one-hot column selector `C` (booleans
//! summing to one; the last of each is `1 − Σ others`, so it costs no variable), and one
//! constraint ties them to `x`. The entry is then the bilinear form
//! `Σ_i R_i · (Σ_j T[16i + j]·C_j)`: the inner sums are free, so each table costs one
//! product per row. For 256 values: 16 + 16 + 1 + 16 = 49 constraints, and 16 more for
//! each further table on the same index (interpolation reads two). Domains of 16 values
//! or fewer need no row selector and no product: columns + 1.
//!
//! Cheaper in R1CS than the alternatives: decomposing the index into bits and taking the
//! multilinear extension needs a product per monomial (255), and any polynomial through
//! 256 points has degree 255.

use super::{R1cs, Wire};
use crate::circuit::{MAX_LOOKUP_DOMAIN, Range};

/// Columns of the table layout: a nibble.
const COLUMNS: usize = 16;

pub(crate) fn lookup(cs: &mut R1cs, x: &Wire, domain: Range, tables: &[&[i64]]) -> Vec<Wire> {
    let size = domain.size();
    if size > MAX_LOOKUP_DOMAIN {
        cs.fail(format!(
            "a lookup over {size} values; at most {MAX_LOOKUP_DOMAIN}"
        ));
    }
    let size = size.min(MAX_LOOKUP_DOMAIN) as usize;
    let columns = size.min(COLUMNS);
    let rows = size.div_ceil(columns);
    let index = x.value - domain.lo as i128;
    if !(0..size as i128).contains(&index) {
        cs.fail(format!(
            "the lookup index {} is outside {domain}: a range the model promised does not hold",
            x.value
        ));
    }
    let index = index.clamp(0, size as i128 - 1) as usize;
    let row_selector = one_hot(cs, rows, index / columns);
    let column_selector = one_hot(cs, columns, index % columns);

    // x = lo + columns·Σ i·R_i + Σ j·C_j
    let mut terms: Vec<(i128, &Wire)> = Vec::with_capacity(rows + columns);
    terms.extend(
        row_selector
            .iter()
            .enumerate()
            .map(|(i, r)| ((columns * i) as i128, r)),
    );
    terms.extend(
        column_selector
            .iter()
            .enumerate()
            .map(|(j, c)| (j as i128, c)),
    );
    let position = cs.sum(&terms, domain.lo as i128);
    cs.enforce_equal(&position, x);

    tables
        .iter()
        .map(|table| {
            let entry = |i: usize, j: usize| table.get(i * columns + j).copied().unwrap_or(0);
            let row_entries: Vec<Wire> = (0..rows)
                .map(|i| {
                    let terms: Vec<(i128, &Wire)> = column_selector
                        .iter()
                        .enumerate()
                        .map(|(j, c)| (entry(i, j) as i128, c))
                        .collect();
                    cs.sum(&terms, 0)
                })
                .collect();
            if rows == 1 {
                return row_entries.into_iter().next().expect("one row");
            }
            let products: Vec<Wire> = row_selector
                .iter()
                .zip(&row_entries)
                .map(|(r, e)| cs.product(r, e))
                .collect();
            let terms: Vec<(i128, &Wire)> = products.iter().map(|p| (1, p)).collect();
            cs.sum(&terms, 0)
        })
        .collect()
}

/// `n` booleans summing to one, the `hot`-th set: n − 1 witnesses, n constraints.
fn one_hot(cs: &mut R1cs, n: usize, hot: usize) -> Vec<Wire> {
    if n == 1 {
        return vec![cs.constant_wire(1)];
    }
    let mut selector: Vec<Wire> = (0..n - 1).map(|i| cs.alloc((i == hot) as i128)).collect();
    let terms: Vec<(i128, &Wire)> = selector.iter().map(|s| (-1, s)).collect();
    let last = cs.sum(&terms, 1);
    selector.push(last);
    for s in &selector {
        cs.enforce_boolean(s);
    }
    selector
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_pair_tampering_refused, assert_tampering_refused, run};
    use super::*;
    use crate::circuit::r1cs::{Change, Mode, Tamper};

    /// A table with no structure a bug could hide behind.
    fn table(len: usize, seed: i64) -> Vec<i64> {
        (0..len as i64)
            .map(|i| (i * i * 31 + seed * 17 + i * 7) % 251 - 125)
            .collect()
    }

    #[test]
    fn reads_every_entry_of_every_domain_size() {
        for (lo, size) in [(-128, 256), (0, 256), (0, 100), (-3, 16), (5, 7), (0, 1)] {
            let domain = Range::new(lo, lo + size - 1);
            let (t1, t2) = (table(size as usize, 1), table(size as usize, 2));
            for x in domain.lo..=domain.hi {
                let mut cs = R1cs::new(Mode::Constraints);
                let wire = cs.alloc(x as i128);
                let out = lookup(&mut cs, &wire, domain, &[&t1, &t2]);
                let i = (x - lo) as usize;
                assert_eq!(out[0].value, t1[i] as i128);
                assert_eq!(out[1].value, t2[i] as i128);
                assert_eq!(cs.first_unsatisfied(), None, "{domain} at {x}");
            }
        }
    }

    #[test]
    fn every_changed_witness_is_refused() {
        let domain = Range::INT8;
        let t = table(256, 3);
        for x in [-128, -1, 0, 77, 127] {
            let gadget = |cs: &mut R1cs, w: &[Wire]| lookup(cs, &w[0], domain, &[&t]);
            let (outputs, refused) = assert_tampering_refused(&[x], gadget);
            assert_eq!(outputs, vec![t[(x + 128) as usize] as i128]);
            assert!(refused > 0);
            let (outputs, refused) = assert_pair_tampering_refused(&[x], gadget);
            assert_eq!(outputs, vec![t[(x + 128) as usize] as i128]);
            assert!(refused > 0);
        }
    }

    #[test]
    fn moving_the_hot_selector_is_refused() {
        // Pick another row or column, consistently: the old selector cleared, the new one
        // set, the products recomputed. Only the tie to x can catch it, and it does.
        let domain = Range::INT8;
        let t = table(256, 4);
        let x = 37i128; // index 165: row 10, column 5
        let gadget = |cs: &mut R1cs, w: &[Wire]| lookup(cs, &w[0], domain, &[&t]);
        let (honest, _) = run(&[x], &[], &gadget);
        assert_eq!(honest.first_unsatisfied(), None);
        // Witness 0 is x, then 15 row selectors, then 15 column selectors.
        let (row, column) = (1 + 10, 1 + 15 + 5);
        for other in 0..15 {
            for (first, hot) in [(1, row), (16, column)] {
                if first + other == hot {
                    continue;
                }
                let moved = [
                    Tamper {
                        index: hot,
                        change: Change::Add(-1),
                    },
                    Tamper {
                        index: first + other,
                        change: Change::Add(1),
                    },
                ];
                let (cs, _) = run(&[x], &moved, &gadget);
                assert!(cs.first_unsatisfied().is_some(), "moved to {other}");
            }
        }
    }

    #[test]
    fn another_table_entry_is_refused() {
        // A prover reading a different entry for the hot row changes that row's product.
        let domain = Range::INT8;
        let t = table(256, 5);
        let gadget = |cs: &mut R1cs, w: &[Wire]| lookup(cs, &w[0], domain, &[&t]);
        // x = 37: the products follow the 30 selectors and x itself; row 10's is at 31 + 10.
        for delta in [1, -1, 100] {
            let (cs, out) = run(
                &[37],
                &[Tamper {
                    index: 31 + 10,
                    change: Change::Add(delta),
                }],
                &gadget,
            );
            assert_eq!(out[0], t[165] as i128 + delta);
            assert!(cs.first_unsatisfied().is_some());
        }
    }

    #[test]
    fn costs_forty_nine_constraints_for_256_values() {
        let cost = |domain: Range, tables: usize| {
            let t = table(domain.size() as usize, 0);
            let tables: Vec<&[i64]> = (0..tables).map(|_| &t[..]).collect();
            let mut cs = R1cs::new(Mode::Constraints);
            let wire = cs.alloc(domain.lo as i128);
            lookup(&mut cs, &wire, domain, &tables);
            cs.constraint_count()
        };
        assert_eq!(cost(Range::INT8, 1), 49);
        assert_eq!(cost(Range::INT8, 2), 65);
        assert_eq!(cost(Range::new(0, 15), 1), 17);
    }
}
