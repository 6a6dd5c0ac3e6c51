"""The public tool-use test sets (and the quick-start test sets) as evaluation cases."""

from tl_lightning.benchmarks.base import BenchmarkSet, benchmarks_root
from tl_lightning.benchmarks.registry import BENCHMARKS, REGISTRY, Benchmark, load_benchmark

__all__ = ["BENCHMARKS", "REGISTRY", "Benchmark", "BenchmarkSet", "benchmarks_root", "load_benchmark"]
