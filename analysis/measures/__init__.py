"""Latent entropy of a trained autoencoder, and a comparison of the code Z with the normal images X_n.

Three kinds of measurement live here.

1. ``H(Z)``: the differential entropy of the code of a run (:func:`run_entropy`), with a standard
   error, in nats, by any estimator of :mod:`entropy_ae.estimators` (:mod:`.entropy`). It is what
   the paper talks about, but on its own it is *not* comparable with H(X_n): differential entropy
   shifts by ``D log a`` under a rescaling by ``a`` and is -inf for data on a lower-dimensional
   manifold (images of k factors inside 4096 pixels), so "H(Z) = H(X_n)" has no meaning as written.

2. Comparable counterparts of "H(Z) = H(X_n)", computed the same way on Z and on X_n:

   * the intrinsic dimension (TwoNN, Levina-Bickel; :mod:`.intrinsic_dim`): scale- and
     ambient-dimension-free; for a smooth manifold it is the rate at which information grows
     with resolution, ``I_sigma ~ ID * log(1/sigma)`` (Renyi's information dimension), so
     "the code holds the normal information" at fine resolution means ID(Z) = ID(X_n);
   * ``I_sigma`` (:func:`information_at_resolution`, :mod:`.information`): the information, in
     nats, a representation scaled to unit total variance carries about *which* input it came
     from when Gaussian noise of standard deviation ``sigma`` is added per coordinate.

3. What the theory predicts directly: how much the code knows about lesions,
   ``I(Z; Y)`` between the code and the normal/abnormal label, and the entropy of abnormal codes
   beyond normal ones (:func:`label_information`). These use test labels and are *analysis*
   only; the recommendation never sees them.

4. Their normal-data counterparts, the "too large" side without test labels (:mod:`.pseudo`):
   how much the code knows about pseudo-anomalies made from the held-out normal validation
   images, ``I(Z; perturbed)`` and ``H(Z | perturbed) - H(Z | clean)``
   (:func:`pseudo_information`), beside the copy ratio and pseudo AUROC of the run
   (:func:`run_pseudo_leakage`).

:mod:`.recorded` puts them together as the sweep records them: :func:`data_reference` (once per
dataset) and :func:`run_measurements` (once per run).
"""

from analysis.measures.entropy import (
    JACKKNIFE_GROUPS,
    entropy_with_stderr,
    label_information,
    min_samples_for_stderr,
    run_entropy,
)
from analysis.measures.information import UNITS, information_at_resolution, matching_sigma, normalise
from analysis.measures.intrinsic_dim import ID_METHODS, IntrinsicDimension, intrinsic_dimension, levina_bickel, twonn
from analysis.measures.pseudo import pseudo_codes, pseudo_information, run_pseudo_leakage
from analysis.measures.recorded import code_measurements, data_reference, run_measurements

__all__ = [
    "ID_METHODS",
    "JACKKNIFE_GROUPS",
    "UNITS",
    "IntrinsicDimension",
    "code_measurements",
    "data_reference",
    "entropy_with_stderr",
    "information_at_resolution",
    "intrinsic_dimension",
    "label_information",
    "levina_bickel",
    "matching_sigma",
    "min_samples_for_stderr",
    "normalise",
    "pseudo_codes",
    "pseudo_information",
    "run_entropy",
    "run_measurements",
    "run_pseudo_leakage",
    "twonn",
]
