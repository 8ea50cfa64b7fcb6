"""Side-by-side ratio benchmarks (see README.md); not run by the test suite."""
