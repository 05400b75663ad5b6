//! Health checks of a carevault database for `carevault doctor` (being written).
