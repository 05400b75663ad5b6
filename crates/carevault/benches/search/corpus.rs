//! The corpus of the search benchmark, from a seed: tenant sizes with a Zipf law, topic-structured
//! or uniform vectors, queries from each tenant's own topics, and the exact top-k computed here,
//! outside the database.

/// A small, fast, seeded generator (SplitMix64): the same seed gives the same corpus on any
/// machine, without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Which vectors the corpus holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorKind {
    /// 256 topic centroids; each tenant draws from 2 to 6 of them; a document is its topic's
    /// centroid plus noise, so that two documents of a topic have a cosine similarity of about
    /// 0.59. What real embeddings of a clinic's documents look like, roughly.
    Topics,
    /// Every value uniform in [-1, 1]: no structure at all, the worst case for a graph index.
    Uniform,
}

pub const TOPICS: usize = 256;
/// The noise's norm relative to the unit centroid: same-topic cosine = 1 / (1 + NOISE²) ≈ 0.59.
const NOISE: f64 = 0.834;

/// Tenant sizes: `docs` rows over `tenants` tenants, size ∝ 1 / rank^1.1, at least 1 each.
pub fn zipf_sizes(docs: usize, tenants: usize) -> Vec<usize> {
    let weights: Vec<f64> = (1..=tenants).map(|rank| 1.0 / (rank as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut sizes: Vec<usize> = weights.iter().map(|w| ((w / total) * docs as f64).floor().max(1.0) as usize).collect();
    // Hand the rounding remainder to the largest tenants, one row each.
    let mut rank = 0;
    while sizes.iter().sum::<usize>() < docs {
        sizes[rank % tenants] += 1;
        rank += 1;
    }
    sizes
}

/// A unit vector.
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt() as f32;
    for x in &mut v {
        *x /= norm;
    }
    v
}

/// A random direction.
pub fn random_unit(rng: &mut Rng, dims: usize) -> Vec<f32> {
    normalized((0..dims).map(|_| rng.normal() as f32).collect())
}

/// A point near `center`: the centre plus Gaussian noise of norm about [`NOISE`].
pub fn near(rng: &mut Rng, center: &[f32]) -> Vec<f32> {
    let scale = NOISE / (center.len() as f64).sqrt();
    normalized(center.iter().map(|c| c + (rng.normal() * scale) as f32).collect())
}

/// One tenant's share of the corpus.
pub struct TenantCorpus {
    /// Its topics (indexes into the centroids), empty for uniform vectors.
    pub topics: Vec<usize>,
    /// Its documents' vectors.
    pub vectors: Vec<Vec<f32>>,
}

/// The whole corpus.
pub struct Corpus {
    pub kind: VectorKind,
    pub dims: usize,
    pub centroids: Vec<Vec<f32>>,
    pub tenants: Vec<TenantCorpus>,
}

impl Corpus {
    pub fn generate(rng: &mut Rng, kind: VectorKind, sizes: &[usize], dims: usize) -> Corpus {
        let centroids = (0..TOPICS).map(|_| random_unit(rng, dims)).collect::<Vec<_>>();
        let tenants = sizes
            .iter()
            .map(|&size| {
                let topics: Vec<usize> = match kind {
                    VectorKind::Topics => (0..2 + rng.below(5)).map(|_| rng.below(TOPICS)).collect(),
                    VectorKind::Uniform => Vec::new(),
                };
                let vectors = (0..size).map(|_| document(rng, kind, &centroids, &topics, dims)).collect();
                TenantCorpus { topics, vectors }
            })
            .collect();
        Corpus { kind, dims, centroids, tenants }
    }

    /// A query for `tenant`: from its own topic mix (never a copy of a stored row).
    pub fn query(&self, rng: &mut Rng, tenant: usize) -> Vec<f32> {
        document(rng, self.kind, &self.centroids, &self.tenants[tenant].topics, self.dims)
    }
}

fn document(rng: &mut Rng, kind: VectorKind, centroids: &[Vec<f32>], topics: &[usize], dims: usize) -> Vec<f32> {
    match kind {
        VectorKind::Topics => {
            let topic = topics[rng.below(topics.len())];
            near(rng, &centroids[topic])
        }
        VectorKind::Uniform => (0..dims).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect(),
    }
}

/// Cosine distance in f64.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}

/// The indexes of the `k` vectors nearest to `query`, nearest first: the ground truth.
pub fn exact_top_k(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> =
        vectors.iter().enumerate().map(|(i, v)| (cosine_distance(v, query), i)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// The mean cosine similarity of same-topic pairs of a fresh sample: printed with the results, so
/// that a change of the generator shows.
pub fn same_topic_similarity(rng: &mut Rng, dims: usize) -> f64 {
    let center = random_unit(rng, dims);
    let pairs: Vec<f64> = (0..100).map(|_| 1.0 - cosine_distance(&near(rng, &center), &near(rng, &center))).collect();
    pairs.iter().sum::<f64>() / pairs.len() as f64
}
