"""The public tool-use test sets (and the quick-start test sets) as evaluation cases."""

from tl_lightning.benchmarks.registry import BENCHMARKS, BenchmarkSet, load_benchmark

__all__ = ["BENCHMARKS", "BenchmarkSet", "load_benchmark"]
