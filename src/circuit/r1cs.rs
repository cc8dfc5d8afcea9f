//! [`Arith`] as rank-1 constraints over BN254's scalar field.
//!
//! [`R1cs`] runs in one of two modes:
//! - [`Mode::Constraints`] records every constraint with its linear combinations (for
//!   setup, for the matrices a prover caches, and for tests, which check satisfaction);
//! - [`Mode::Witness`] computes only the values, in the same allocation order, which is
//!   all a prover with cached matrices needs per proof.
//!
//! Variables are the constant one, public inputs (instance) and private witnesses. A
//! [`Wire`] is a linear combination of variables with its integer value; linear
//! operations build wires without constraints, and each gadget (in `gadgets`) allocates
//! the witnesses it needs, computing every derived value from the values of the wires it
//! has allocated, so that a changed witness value flows downstream as a cheating prover's
//! would (the tamper tests rely on this).

use std::collections::BTreeMap;

use ark_bn254::Fr;
use ark_ff::{One, Zero};

use super::{Arith, Range, Rescale, gadgets};

/// A variable of the constraint system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Var {
    One,
    /// A public input, numbered from 1 (0 is the constant one).
    Instance(u32),
    Witness(u32),
}

/// A linear combination, kept sorted by variable without repeats or zero coefficients.
pub type Lc = Vec<(Fr, Var)>;

/// A value in the circuit: a linear combination and the integer it evaluates to. The
/// combination is empty in witness mode.
#[derive(Debug, Clone)]
pub struct Wire {
    pub(crate) lc: Lc,
    pub(crate) value: i128,
    /// The value in the field, for the few wires that are not small integers (an inverse,
    /// the binding); boxed because wires are many and almost none has one.
    field: Option<Box<Fr>>,
}

impl Wire {
    pub fn value(&self) -> i128 {
        self.value
    }

    /// The value as the constraint system sees it.
    fn field_value(&self) -> Fr {
        match &self.field {
            Some(field) => **field,
            None => small_integer(self.value),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Constraints,
    Witness,
}

/// A change to one witness value during synthesis, for the soundness tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tamper {
    /// Which witness allocation to change.
    pub index: usize,
    pub change: Change,
}

#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    Add(i128),
    /// `v → 1 − v`: flips a bit.
    Flip,
}

/// The constraint system under construction, with its assignment.
pub struct R1cs {
    mode: Mode,
    /// Values of the instance variables; index 0 is the constant one.
    instance: Vec<Fr>,
    witness: Vec<Fr>,
    rows: Vec<[Lc; 3]>,
    /// Each row's `A·z` and `B·z`, from the values of its wires (both modes): with the
    /// assignment, all that a prover needs of the rows.
    row_values: Vec<(Fr, Fr)>,
    /// The operator each recorded row belongs to (constraint mode only).
    row_labels: Vec<&'static str>,
    operator: &'static str,
    operator_start: usize,
    costs: BTreeMap<&'static str, usize>,
    failure: Option<String>,
    #[cfg(test)]
    pub(crate) tamper: Vec<Tamper>,
}

/// The constraint matrices in ark-relations' layout: one row per constraint, columns
/// numbered one, public inputs, then witnesses.
pub struct Matrices {
    pub a: Vec<Vec<(Fr, usize)>>,
    pub b: Vec<Vec<(Fr, usize)>>,
    pub c: Vec<Vec<(Fr, usize)>>,
    /// Instance variables, the constant one included.
    pub instance_variables: usize,
    pub witness_variables: usize,
}

impl R1cs {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            instance: vec![Fr::one()],
            witness: Vec::new(),
            rows: Vec::new(),
            row_values: Vec::new(),
            row_labels: Vec::new(),
            operator: "circuit",
            operator_start: 0,
            costs: BTreeMap::new(),
            failure: None,
            #[cfg(test)]
            tamper: Vec::new(),
        }
    }

    /// [`R1cs::new`] with room for `witnesses` witness variables and `rows` rows' values,
    /// for a prover that knows its circuit's size (or a bound on it) from its key: the
    /// vectors then never grow by copying, and touch only the memory they fill. A hint
    /// only: where the room cannot be had (a bound from a damaged key's length), the
    /// vectors grow as they fill.
    pub fn with_capacity(mode: Mode, witnesses: usize, rows: usize) -> Self {
        let mut cs = Self::new(mode);
        let _ = cs.witness.try_reserve_exact(witnesses);
        let _ = cs.row_values.try_reserve_exact(rows);
        cs
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn records(&self) -> bool {
        self.mode == Mode::Constraints
    }

    /// A new public input holding `value`.
    fn public_input(&mut self, value: Fr) -> Var {
        self.instance.push(value);
        Var::Instance((self.instance.len() - 1) as u32)
    }

    /// A public input holding the integer `value − offset`, as the wire `input + offset`
    /// whose value is `value`. Offsets keep public inputs small and non-negative, which
    /// makes verification fast.
    pub fn public_integer(&mut self, value: i128, offset: i128) -> Wire {
        let var = self.public_input(Fr::from(value - offset));
        Wire {
            lc: if self.records() {
                compact(vec![(Fr::one(), var), (Fr::from(offset), Var::One)])
            } else {
                Lc::new()
            },
            value,
            field: None,
        }
    }

    /// A new public input holding a field element that is not a small integer (the
    /// binding), as its wire; the wire's integer value is meaningless and must not be used.
    pub fn public_field(&mut self, value: Fr) -> Wire {
        let var = self.public_input(value);
        Wire {
            field: Some(Box::new(value)),
            ..self.variable(var, 0)
        }
    }

    /// A wire of the variable `var`, known to hold the small integer `value` (what the
    /// prover records for it: a field value goes through `public_field` or `alloc_field`).
    fn variable(&self, var: Var, value: i128) -> Wire {
        Wire {
            lc: if self.records() {
                vec![(Fr::one(), var)]
            } else {
                Lc::new()
            },
            value,
            field: None,
        }
    }

    /// A new witness holding the integer `value`.
    pub fn alloc(&mut self, value: i128) -> Wire {
        #[cfg(test)]
        let value = self.changes().fold(value, |value, change| match change {
            Change::Add(delta) => value.wrapping_add(delta),
            Change::Flip => 1 - value,
        });
        self.push_witness(Fr::from(value), value)
    }

    /// A new witness holding a field element that is not a small integer (an inverse);
    /// its wire's integer value is meaningless and must not be used.
    pub fn alloc_field(&mut self, value: Fr) -> Wire {
        #[cfg(test)]
        let value = self.changes().fold(value, |value, change| match change {
            Change::Add(delta) => value + Fr::from(delta),
            Change::Flip => Fr::one() - value,
        });
        Wire {
            field: Some(Box::new(value)),
            ..self.push_witness(value, 0)
        }
    }

    /// The changes the tests asked for at the next witness.
    #[cfg(test)]
    fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        let next = self.witness.len();
        self.tamper
            .iter()
            .filter(move |t| t.index == next)
            .map(|t| t.change)
    }

    fn push_witness(&mut self, field: Fr, value: i128) -> Wire {
        self.witness.push(field);
        let var = Var::Witness((self.witness.len() - 1) as u32);
        self.variable(var, value)
    }

    /// The constant `value`.
    pub fn constant_wire(&self, value: i128) -> Wire {
        Wire {
            lc: if self.records() && value != 0 {
                vec![(Fr::from(value), Var::One)]
            } else {
                Lc::new()
            },
            value,
            field: None,
        }
    }

    /// `Σ coefficient·wire + constant`, free.
    pub fn sum(&self, terms: &[(i128, &Wire)], constant: i128) -> Wire {
        // One pass over the terms: in witness mode it is all the work a sum does.
        let (value, any_field) = terms.iter().fold((constant, false), |(sum, any), &(c, w)| {
            (
                sum.wrapping_add(c.wrapping_mul(w.value)),
                any || w.field.is_some(),
            )
        });
        // No gadget sums a wire that is not an integer today; should one, its sum is one too.
        let field = any_field.then(|| {
            Box::new(terms.iter().fold(small_integer(constant), |sum, &(c, w)| {
                sum + small_integer(c) * w.field_value()
            }))
        });
        if !self.records() {
            return Wire {
                lc: Lc::new(),
                value,
                field,
            };
        }
        // Every wire's combination is sorted with the constant one first. The constants
        // are summed apart, so that what remains is usually still in order (a dot
        // product over inputs taken in order, a gadget's sum of its own bits) and the
        // sort below finds it so.
        let mut lc = Lc::with_capacity(terms.iter().map(|(_, w)| w.lc.len()).sum::<usize>() + 1);
        lc.push((small_integer(constant), Var::One));
        for &(c, wire) in terms {
            if c == 0 {
                continue;
            }
            let factor = small_integer(c);
            for &(f, v) in &wire.lc {
                let coefficient = if c == 1 {
                    f
                } else if f.is_one() {
                    factor
                } else {
                    factor * f
                };
                if v == Var::One {
                    lc[0].0 += coefficient;
                } else {
                    lc.push((coefficient, v));
                }
            }
        }
        Wire {
            lc: compact(lc),
            value,
            field,
        }
    }

    /// Records `a · b = c`.
    pub fn enforce(&mut self, a: &Wire, b: &Wire, c: &Wire) {
        self.row_values.push((a.field_value(), b.field_value()));
        if self.records() {
            self.rows.push([a.lc.clone(), b.lc.clone(), c.lc.clone()]);
            self.row_labels.push(self.operator);
        }
    }

    /// Records `a = b`.
    pub fn enforce_equal(&mut self, a: &Wire, b: &Wire) {
        let difference = self.sum(&[(1, a), (-1, b)], 0);
        self.enforce(&difference, &self.constant_wire(1), &self.constant_wire(0));
    }

    /// Records `b ∈ {0, 1}`.
    pub fn enforce_boolean(&mut self, b: &Wire) {
        let b_minus_one = self.sum(&[(1, b)], -1);
        self.enforce(b, &b_minus_one, &self.constant_wire(0));
    }

    /// A new witness `a·b`, constrained.
    pub fn product(&mut self, a: &Wire, b: &Wire) -> Wire {
        let c = self.alloc(a.value.wrapping_mul(b.value));
        self.enforce(a, b, &c);
        c
    }

    /// Records that the honest witness cannot be computed (a value outside the range
    /// the model promised). The first failure is kept; the proof must not be attempted.
    pub fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(reason);
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub fn constraint_count(&self) -> usize {
        self.row_values.len()
    }

    pub fn witness_count(&self) -> usize {
        self.witness.len()
    }

    /// Instance variables, the constant one included.
    pub fn instance_count(&self) -> usize {
        self.instance.len()
    }

    pub fn instance_values(&self) -> &[Fr] {
        &self.instance
    }

    /// The full assignment: instance (the one first), then witnesses.
    pub fn assignment(&self) -> Vec<Fr> {
        [&self.instance[..], &self.witness[..]].concat()
    }

    /// The recorded constraints (constraint mode).
    pub fn rows(&self) -> &[[Lc; 3]] {
        &self.rows
    }

    /// Constraints per operator, in the order of [`Arith::enter`] labels.
    pub fn costs(&self) -> Vec<(&'static str, usize)> {
        let mut costs = self.costs.clone();
        *costs.entry(self.operator).or_default() += self.row_values.len() - self.operator_start;
        costs.into_iter().filter(|&(_, n)| n > 0).collect()
    }

    /// The first constraint that the assignment does not satisfy, with its operator.
    pub fn first_unsatisfied(&self) -> Option<(usize, &'static str)> {
        let value = self.evaluator();
        self.rows
            .iter()
            .position(|[a, b, c]| value(a) * value(b) != value(c))
            .map(|i| (i, self.row_labels[i]))
    }

    /// The first row whose recorded values (what the prover takes for `A·z` and `B·z`)
    /// are not those of its linear combinations, with its operator.
    pub fn first_misrecorded(&self) -> Option<(usize, &'static str)> {
        let value = self.evaluator();
        self.rows
            .iter()
            .zip(&self.row_values)
            .position(|([a, b, _], &recorded)| (value(a), value(b)) != recorded)
            .map(|i| (i, self.row_labels[i]))
    }

    /// A linear combination's value under the assignment.
    fn evaluator(&self) -> impl Fn(&Lc) -> Fr + '_ {
        assert!(
            self.records(),
            "only a constraint-mode system can be checked"
        );
        |lc: &Lc| -> Fr {
            lc.iter()
                .map(|&(c, v)| {
                    c * match v {
                        Var::One => Fr::one(),
                        Var::Instance(i) => self.instance[i as usize],
                        Var::Witness(i) => self.witness[i as usize],
                    }
                })
                .sum()
        }
    }

    /// Each row's `A·z` and `B·z`, in order.
    pub fn row_values(&self) -> &[(Fr, Fr)] {
        &self.row_values
    }

    /// The matrices in ark-relations' layout, made from the recorded rows in place: a
    /// one-shot prover has no other use for them, and copying a large circuit's rows
    /// costs as much as recording them did.
    pub fn into_matrices(mut self) -> Matrices {
        let rows = std::mem::take(&mut self.rows);
        self.matrices_of(rows)
    }

    /// The matrices in ark-relations' layout.
    pub fn matrices(&self) -> Matrices {
        self.matrices_of(self.rows.clone())
    }

    fn matrices_of(&self, rows: Vec<[Lc; 3]>) -> Matrices {
        assert!(
            self.records(),
            "matrices come from a constraint-mode system"
        );
        let instance_variables = self.instance.len();
        let column = |v: Var| match v {
            Var::One => 0,
            Var::Instance(i) => i as usize,
            Var::Witness(i) => instance_variables + i as usize,
        };
        // (Fr, Var) and (Fr, usize) have one size, so each collect reuses its vector.
        let convert = |lc: Lc| lc.into_iter().map(|(c, v)| (c, column(v))).collect();
        let mut matrices = Matrices {
            a: Vec::with_capacity(rows.len()),
            b: Vec::with_capacity(rows.len()),
            c: Vec::with_capacity(rows.len()),
            instance_variables,
            witness_variables: self.witness.len(),
        };
        for [a, b, c] in rows {
            matrices.a.push(convert(a));
            matrices.b.push(convert(b));
            matrices.c.push(convert(c));
        }
        matrices
    }
}

/// Sorts by variable, merges repeats and drops zero coefficients.
fn compact(mut lc: Lc) -> Lc {
    if !lc.is_sorted_by_key(|&(_, v)| v) {
        // Stable sort: it merges the sorted runs a sum of combinations is made of in
        // linear time.
        lc.sort_by_key(|&(_, v)| v);
    }
    lc.dedup_by(|next, kept| {
        let repeat = next.1 == kept.1;
        if repeat {
            kept.0 += next.0;
        }
        repeat
    });
    lc.retain(|(c, _)| !c.is_zero());
    lc
}

/// `c` in the field, from a table for the small integers that weights and gadgets use
/// most (a conversion costs a field multiplication).
fn small_integer(c: i128) -> Fr {
    const LIMIT: i128 = 1 << 10;
    static TABLE: std::sync::OnceLock<Vec<Fr>> = std::sync::OnceLock::new();
    if c.unsigned_abs() > LIMIT as u128 {
        return Fr::from(c);
    }
    let table = TABLE.get_or_init(|| (-LIMIT..=LIMIT).map(Fr::from).collect());
    table[(c + LIMIT) as usize]
}

impl Arith for R1cs {
    type Value = Wire;

    fn constant(&mut self, value: i64) -> Wire {
        self.constant_wire(value as i128)
    }

    fn linear(&mut self, terms: &[(i64, &Wire)], constant: i64) -> Wire {
        let terms: Vec<(i128, &Wire)> = terms.iter().map(|&(c, w)| (c as i128, w)).collect();
        self.sum(&terms, constant as i128)
    }

    fn mul(&mut self, a: &Wire, b: &Wire) -> Wire {
        self.product(a, b)
    }

    fn rescale(&mut self, x: &Wire, input: Range, rescale: Rescale) -> Wire {
        gadgets::rescale(self, x, input, rescale)
    }

    fn max(&mut self, a: &Wire, b: &Wire, range: Range) -> Wire {
        gadgets::max(self, a, b, range)
    }

    fn lookup(&mut self, x: &Wire, domain: Range, tables: &[&[i64]]) -> Vec<Wire> {
        gadgets::lookup(self, x, domain, tables)
    }

    fn reciprocal(&mut self, x: &Wire, input: Range, bits: u32) -> Wire {
        gadgets::reciprocal(self, x, input, bits)
    }

    fn inverse_sqrt(&mut self, x: &Wire, input: Range, bits: u32) -> Wire {
        gadgets::inverse_sqrt(self, x, input, bits)
    }

    fn enter(&mut self, operator: &'static str) {
        *self.costs.entry(self.operator).or_default() +=
            self.row_values.len() - self.operator_start;
        self.operator = operator;
        self.operator_start = self.row_values.len();
    }
}
