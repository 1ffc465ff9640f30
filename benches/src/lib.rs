//! Criterion benchmarks for EngageNinja Dispatch; see `benches/`.
