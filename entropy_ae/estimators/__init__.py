"""Entropy and mutual-information estimators for continuous samples (latent codes or any array).

One public surface; the estimators are private and chosen with ``method=``.
Inputs are numpy arrays or torch tensors of shape (n,) or (n, d), validated
once here. Results are floats in nats unless ``base`` says otherwise.

Threads: the compiled neighbour searches use ``torch.get_num_threads()``
threads, and the numbers do not depend on how many. While an estimator runs,
numpy's BLAS is limited to one thread (``_threads.one_blas_thread``).

>>> import numpy as np
>>> from entropy_ae.estimators import entropy, mutual_information
>>> x = np.random.default_rng(0).standard_normal((2000, 2))
>>> round(entropy(x), 1)           # true value log(2 pi e) = 2.84 nats
2.8
"""

from ._entropy import ENTROPY_METHODS, entropy
from ._mutual_info import (
    MI_METHODS,
    conditional_mutual_information,
    mutual_information,
    mutual_information_discrete,
)
from ._uncertainty import Estimate, PermutationResult, permutation_test, with_error
from ._validation import EstimatorWarning

__all__ = [
    "ENTROPY_METHODS",
    "MI_METHODS",
    "Estimate",
    "EstimatorWarning",
    "PermutationResult",
    "conditional_mutual_information",
    "entropy",
    "mutual_information",
    "mutual_information_discrete",
    "permutation_test",
    "with_error",
]
