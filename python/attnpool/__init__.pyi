# Type stubs of attnpool's public functions (docstrings: attnpool/__init__.py).
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._core import CudaError as CudaError, Error as Error, InvalidArgument as InvalidArgument

__version__: str
BACKENDS: tuple[str, ...]
KERNELS: tuple[str, ...]
COMPACT_KERNELS: tuple[str, ...]

Kernel = Literal["gaussian", "laplacian", "epanechnikov", "boxcar", "tricube"]
Backend = Literal["automatic", "reference", "cpu", "cuda_fused", "cuda_unfused"]
Mask = Literal["none", "leave_one_out", "valid_length"] | None
Empty = Literal["error", "nan", "nearest"]
Method = Literal["quasi_newton", "book_sgd"]
Stop = Literal["converged", "no_progress", "max_epochs"]
Array = Any  # the caller's kind of array: numpy.ndarray, or torch.Tensor for tensor inputs

def pool(queries: ArrayLike, keys: ArrayLike, values: ArrayLike, bandwidth: float = 1.0, *,
         kernel: Kernel = "gaussian", bandwidths: ArrayLike | None = None, mask: Mask = None,
         valid_lens: ArrayLike | None = None, empty: Empty = "error",
         backend: Backend = "automatic", threads: int = 0, check_finite: bool = True) -> Array: ...
def attention_weights(queries: ArrayLike, keys: ArrayLike, bandwidth: float = 1.0, *,
                      kernel: Kernel = "gaussian", bandwidths: ArrayLike | None = None,
                      mask: Mask = None, valid_lens: ArrayLike | None = None,
                      empty: Empty = "error", backend: Backend = "automatic", threads: int = 0,
                      check_finite: bool = True) -> Array: ...
def average_pool(values: ArrayLike, n: int | ArrayLike, *, backend: Backend = "automatic",
                 threads: int = 0, check_finite: bool = True) -> Array: ...

class Gradients(NamedTuple):
    queries: Array | None
    keys: Array | None
    values: Array | None
    bandwidth: float | None

def pool_backward(queries: ArrayLike, keys: ArrayLike, values: ArrayLike, dout: ArrayLike,
                  bandwidth: float = 1.0, *, kernel: Kernel = "gaussian",
                  bandwidths: ArrayLike | None = None, mask: Mask = None,
                  valid_lens: ArrayLike | None = None, empty: Empty = "error",
                  backend: Backend = "automatic", threads: int = 0, check_finite: bool = True,
                  wrt: Sequence[Literal["queries", "keys", "values", "bandwidth"]] = ...,
                  ) -> Gradients: ...
def loo_cv_error(x: ArrayLike, y: ArrayLike, bandwidths: ArrayLike, *,
                 backend: Backend = "automatic", threads: int = 0,
                 check_finite: bool = True) -> np.ndarray: ...

class BandwidthSelection(NamedTuple):
    bandwidth: float
    cv_error: float
    grid: np.ndarray
    cv: np.ndarray
    evaluations: int
    at_boundary: bool
    bandwidths: np.ndarray
    isotropic_cv_error: float
    per_dimension_stop: Stop

def select_bandwidth(x: ArrayLike, y: ArrayLike, *, grid_size: int = 64, h_min: float = 0.0,
                     h_max: float = 0.0, refine: bool = True, log_tolerance: float = 1e-3,
                     per_dimension: bool = False, max_iterations: int = 100,
                     backend: Backend = "automatic", threads: int = 0,
                     check_finite: bool = True) -> BandwidthSelection: ...

class ParametricFit(NamedTuple):
    w: np.ndarray
    loss: np.ndarray
    final_loss: float
    gradient: np.ndarray
    stop: Stop
    evaluations: int

def train_parametric(x: ArrayLike, y: ArrayLike, *, method: Method = "quasi_newton",
                     max_epochs: int | None = None, tolerance: float = 1e-4,
                     learning_rate: float = 0.5, per_dimension: bool = False, seed: int = 0,
                     initial_w: ArrayLike | None = None, backend: Backend = "automatic",
                     threads: int = 0, check_finite: bool = True) -> ParametricFit: ...
def pool_batched(queries: ArrayLike, keys: ArrayLike, values: ArrayLike,
                 query_offsets: ArrayLike, key_offsets: ArrayLike, bandwidth: float = 1.0, *,
                 kernel: Kernel = "gaussian", bandwidths: ArrayLike | None = None,
                 mask: Mask = None, valid_lens: ArrayLike | None = None,
                 empty: Empty = "error", backend: Backend = "automatic", threads: int = 0,
                 check_finite: bool = True) -> Array: ...

class PartialStates(NamedTuple):
    max: np.ndarray
    sum: np.ndarray
    acc: np.ndarray

def pool_partial(queries: ArrayLike, keys_shard: ArrayLike, values_shard: ArrayLike,
                 bandwidth: float = 1.0, *, kernel: Kernel = "gaussian",
                 bandwidths: ArrayLike | None = None, mask: Mask = None,
                 valid_lens: ArrayLike | None = None, key_offset: int = 0,
                 empty: Empty = "error", backend: Backend = "automatic", threads: int = 0,
                 check_finite: bool = True) -> PartialStates: ...
def merge_partials(shards: Sequence[PartialStates], *, kernel: Kernel = "gaussian",
                   empty: Empty = "error") -> np.ndarray: ...
def cuda_available() -> bool: ...
def resolve_backend(backend: Backend = "automatic") -> str: ...
