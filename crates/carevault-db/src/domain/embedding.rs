//! Document embeddings: the values pgvector can compare meaningfully.

use crate::ValidationError;

/// The number of dimensions of every embedding (`VECTOR(1024)`).
pub const EMBEDDING_DIMENSIONS: usize = 1024;

/// A document embedding: exactly 1024 finite values of magnitude at most 1e15, at least one of
/// them of magnitude 1e-15 or more.
///
/// The bounds keep pgvector's arithmetic meaningful. pgvector 0.8 accumulates the dot product and
/// the norms of `<=>` in float32, so a square beyond float32's range overflows and one below it
/// underflows, and the distance silently comes out wrong or NaN. Measured on PostgreSQL 18 +
/// pgvector 0.8.6 against `[1,1,0]`, whose true distance is 0.2929 from any `[x,0,0]`:
/// `[1e20,0,0]` gives 1, `[1e-30,0,0]` gives 0, and a query of float32's largest value against
/// the stored documents gave NaN (found by the schema fuzzer). With every value within 1e15 the
/// sums stay below 1024 × 1e30, far inside float32; with one value of at least 1e-15 the norm
/// stays a normal float32. The zero vector, whose cosine distance is NaN and which the HNSW index
/// skips, is refused by the same rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// The largest magnitude a value may have.
    pub const MAX_MAGNITUDE: f64 = 1e15;

    /// The magnitude at least one value must reach.
    pub const MIN_LARGEST_MAGNITUDE: f64 = 1e-15;

    /// Validates the values, as sent (in f64, as JSON numbers arrive), before they are rounded to
    /// float32.
    pub fn parse<V: Into<f64>>(values: impl IntoIterator<Item = V>) -> Result<Embedding, ValidationError> {
        let invalid = |reason| Err(ValidationError::new("embedding", reason));
        let values: Vec<f64> = values.into_iter().map(Into::into).collect();
        if values.len() != EMBEDDING_DIMENSIONS {
            return invalid("must have exactly 1024 values");
        }
        if values.iter().any(|v| !v.is_finite() || v.abs() > Self::MAX_MAGNITUDE) {
            return invalid("values must be finite numbers between -1e15 and 1e15");
        }
        if values.iter().all(|v| v.abs() < Self::MIN_LARGEST_MAGNITUDE) {
            return invalid("must not be the zero vector (at least one value of magnitude 1e-15 or more)");
        }
        // Rounding to nearest; every value is inside float32's range.
        Ok(Embedding(values.into_iter().map(|v| v as f32).collect()))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub(crate) fn to_pgvector(&self) -> pgvector::Vector {
        pgvector::Vector::from(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_requires_1024_bounded_values_not_all_tiny() {
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS]).is_ok());
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS - 1]).is_err());
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS + 1]).is_err());
        assert!(Embedding::parse(Vec::<f32>::new()).is_err());
        assert!(
            Embedding::parse(vec![0.0_f32; EMBEDDING_DIMENSIONS])
                .unwrap_err()
                .reason
                .starts_with("must not be the zero")
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX] {
            let mut values = vec![0.5; EMBEDDING_DIMENSIONS];
            values[17] = bad;
            assert!(Embedding::parse(values).is_err());
        }
        // Tiny values are fine next to one that is not.
        let mut values = vec![1e-30_f32; EMBEDDING_DIMENSIONS];
        assert!(Embedding::parse(values.clone()).is_err());
        values[5] = 0.1;
        assert!(Embedding::parse(values).is_ok());
    }

    #[test]
    fn embedding_bounds_are_exact() {
        let one_value = |v: f64| {
            let mut values = vec![0.0_f64; EMBEDDING_DIMENSIONS];
            values[3] = v;
            Embedding::parse(values)
        };
        let next_up = |v: f64| f64::from_bits(v.to_bits() + 1);
        let next_down = |v: f64| f64::from_bits(v.to_bits() - 1);
        for sign in [1.0, -1.0] {
            assert!(one_value(sign * Embedding::MAX_MAGNITUDE).is_ok());
            assert!(one_value(sign * next_up(Embedding::MAX_MAGNITUDE)).is_err());
            assert!(one_value(sign * Embedding::MIN_LARGEST_MAGNITUDE).is_ok());
            assert!(one_value(sign * next_down(Embedding::MIN_LARGEST_MAGNITUDE)).is_err());
        }
    }
}
