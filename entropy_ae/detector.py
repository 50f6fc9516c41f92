"""The autoencoder as a scikit-learn / PyOD style anomaly detector: ``fit`` on normal images, then score.

::

    from entropy_ae.detector import AutoencoderDetector

    det = AutoencoderDetector(latent_size=16, epochs=20, value_range=(0, 255)).fit(normal_images)
    scores = det.decision_function(images)   # higher = more abnormal (PyOD's sign)
    flags = det.predict(images)              # 1 abnormal / 0 normal, at target_fpr on held-out normals
    det.save("runs/detector")                # a run directory (entropy_ae.runs)
    det = AutoencoderDetector.load("runs/detector")

It trains with :func:`entropy_ae.training.train_model` and scores with the helpers of
:mod:`entropy_ae.evaluation`, so its numbers are those of ``entropy-ae train`` for the same
images, settings and seed. Every model kind of :mod:`entropy_ae.model` can be trained
(``model="vae"``, ``"memae"``, ...): all share the autoencoder's interface and score by
reconstruction error. ``nested`` scores at ``truncation`` (chosen by the user, e.g. by model
selection; ``entropy-ae train --model nested`` chooses it from normal data in the analysis
layer, which this core module does not import).
"""

from __future__ import annotations

import math
import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .data import AnomalyData
from .data._images import VAL_FRACTION, as_numpy, images_to_unit, resize_images, split_val
from .evaluation import anomaly_maps, encode_images, image_scores, threshold_at_fpr
from .model import MODEL_KINDS, check_model, check_sizes, truncations
from .runs import RunDirError, load_config, load_loss_history, load_metrics, load_model, save_run
from .training import TrainConfig, train_model

# The model kinds the detector trains: all of entropy_ae.model (one interface, scored by reconstruction error).
DETECTOR_MODELS = MODEL_KINDS
MODEL_STRIDE = 16  # the autoencoder's image side must be a multiple of this (four stride-2 blocks)


class AutoencoderDetector(TransformerMixin, BaseEstimator):
    """Anomaly detector: an autoencoder trained on normal images, scored by reconstruction error.

    Parameters
    ----------
    latent_size : int, default 16
        Dimension of the code.
    epochs, batch_size, lr : int, int, float, default 20, 64, 1e-3
        Training settings (:class:`entropy_ae.training.TrainConfig`).
    model : str, default "ae"
        The model kind, one of :data:`DETECTOR_MODELS` (:data:`entropy_ae.model.MODEL_KINDS`):
        ``"ae"`` (the paper's autoencoder), ``"vae"``, ``"memae"``, ``"ceae"``, ``"dae"``,
        ``"nested"`` or ``"gated"``.
    model_options : dict, optional
        The kind's settings (e.g. ``{"kl_weight": 0.01}`` for ``"vae"``); unset ones take the
        kind's defaults (:func:`entropy_ae.model.check_model`).
    truncation : int, optional
        ``model="nested"`` only: the number of leading code units scored, one of
        :func:`entropy_ae.model.truncations` of ``latent_size`` (1, 2, 4, ..., ``latent_size``);
        default all ``latent_size`` units. The decoder's BatchNorm statistics are re-estimated
        for it on the training images (as ``analysis.adaptive`` does) before the threshold is fixed.
    device : str, default "auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
    seed : int, default 0
        Seeds the validation hold-out, the initial weights and the batch order: the same seed
        gives the same numbers.
    target_fpr : float, default 0.05
        False-positive rate on the held-out normal images that fixes :attr:`threshold_`.
    val_fraction : float, default 0.1
        Share of the images given to :meth:`fit` held out (at least one) to fix the threshold.
    image_size : int, optional
        Side the images are resized to for the model, a multiple of 16; default the smallest
        multiple of 16 not below the input side. :meth:`anomaly_map` returns maps of this side.
    value_range : (low, high), "fit" or None, default None
        Intensity range of the inputs, mapped onto [-1, 1] as in :func:`entropy_ae.data.from_arrays`:
        optional for uint8 images (then ``(0, 255)``), required for float ones; values outside it
        are an error. ``"fit"`` learns it from the training images (their minimum and maximum) and
        clips later images into it.

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained model (eval mode).
    threshold_ : float
        Score above which an image is called abnormal.
    decision_scores_ : ndarray of shape (n,)
        Scores of the images given to :meth:`fit` (PyOD's attribute).
    labels_ : ndarray of shape (n,)
        0/1 predictions of those images.
    val_scores_ : ndarray
        Scores of the held-out normal images that fixed the threshold.
    n_train_ : int
        Images trained on (those given to :meth:`fit` less the held-out ones).
    loss_history_ : list of float
        Mean training loss per epoch.
    effective_latent_size_ : int
        Width of the code :meth:`transform` returns: ``latent_size``, except the open units of a
        ``gated`` model and ``truncation`` of a ``nested`` one.
    input_shape_ : (int, int)
        Side of the images :meth:`fit` saw; later inputs must have it.
    n_features_in_ : int
        Pixels per image (height x width).

    Notes
    -----
    Images are ``(n, s, s)``, ``(n, 1, s, s)`` or flattened ``(n, s*s)`` numpy arrays or torch tensors.
    """

    def __init__(self, latent_size: int = 16, epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
                 model: str = "ae", device: str = "auto", seed: int = 0, target_fpr: float = 0.05,
                 val_fraction: float = VAL_FRACTION, image_size: int | None = None, value_range=None,
                 model_options: dict | None = None, truncation: int | None = None):
        self.latent_size = latent_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.model = model
        self.device = device
        self.seed = seed
        self.target_fpr = target_fpr
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.value_range = value_range
        self.model_options = model_options
        self.truncation = truncation

    # ------------------------------------------------------------------------------------ fitting

    def fit(self, X, y=None):
        """Train on normal images ``X``; ``y`` is ignored (unsupervised; there for scikit-learn pipelines).

        ``val_fraction`` of ``X`` (at least one image) is held out to fix the threshold; at least 3
        images are needed (2 to train, BatchNorm's minimum, and 1 held out).
        """
        self._check_params()
        raw = self._as_images(X, "X", minimum=3)
        self.value_range_ = self._fitted_range(raw)
        self.input_shape_ = tuple(int(v) for v in raw.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        self.image_size_ = self.image_size or max(MODEL_STRIDE, math.ceil(raw.shape[1] / MODEL_STRIDE) * MODEL_STRIDE)
        check_sizes(self.latent_size, self.image_size_)
        images = self._to_model(raw)
        train, val = split_val(images, self.val_fraction, self.seed, "images given to fit")
        config = self._config()
        data = self._data(train, val)
        self.model_, self.loss_history_ = train_model(data, config, progress=False)
        if self.model == "nested":  # training mixed the truncations: the decoder's statistics for this one
            self.model_.set_truncation(int(self.truncation or self.latent_size), train)
        self.effective_latent_size_ = _code_width(self.model_)
        self.val_scores_ = image_scores(self.model_, val).astype(np.float64)
        self.threshold_ = threshold_at_fpr(self.val_scores_, self.target_fpr)
        self.decision_scores_ = image_scores(self.model_, images).astype(np.float64)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        self.n_train_ = len(train)
        return self

    def _check_params(self) -> None:
        if self.model not in DETECTOR_MODELS:
            raise ValueError(f"model={self.model!r} is not a model kind; choose one of {', '.join(DETECTOR_MODELS)}")
        if self.model_options is not None and not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict of the {self.model!r} model's settings or None, "
                             f"got {self.model_options!r}")
        check_model(self.model, self.model_options)  # ValueError naming the bad setting and the known ones
        if self.truncation is not None:
            if self.model != "nested":
                raise ValueError(f"truncation={self.truncation!r} applies to model='nested' only (model is "
                                 f"{self.model!r}); drop it or use model='nested'")
            valid_size = isinstance(self.latent_size, int) and self.latent_size > 0
            allowed = truncations(self.latent_size) if valid_size else []
            if isinstance(self.truncation, bool) or self.truncation not in allowed:
                raise ValueError(f"truncation={self.truncation!r}: a nested model of latent_size={self.latent_size!r} "
                                 f"scores at one of {allowed}; pick one of these or None (all units)")
        if not isinstance(self.target_fpr, (int, float)) or not 0 < self.target_fpr < 1:
            raise ValueError(f"target_fpr must be strictly between 0 and 1, got {self.target_fpr!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be strictly between 0 and 1, got {self.val_fraction!r}")
        vr = self.value_range
        if not (vr is None or (isinstance(vr, str) and vr == "fit") or (isinstance(vr, (tuple, list)) and len(vr) == 2)):
            raise ValueError(f"value_range must be (low, high), 'fit' or None, got {vr!r}")

    def _config(self) -> TrainConfig:
        return TrainConfig(latent_size=self.latent_size, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           seed=self.seed, device=self.device, model=self.model,
                           model_options=dict(self.model_options or {}))

    def _data(self, train: np.ndarray, val: np.ndarray) -> AnomalyData:
        """The images as :class:`AnomalyData` (only ``train`` is trained on; the spec records the counts)."""
        spec = {"source": "arrays", "name": "detector", "image_size": int(self.image_size_), "seed": self.seed,
                "n_train": len(train), "n_val": len(val), "n_test": 0}
        return AnomalyData("detector", spec, train, val, val[:0], np.zeros(0, np.int64), None)

    # ----------------------------------------------------------------------------------- the inputs

    @staticmethod
    def _as_images(X, field: str, minimum: int = 1) -> np.ndarray:
        """``(n, s, s)``, ``(n, 1, s, s)`` or flattened ``(n, s*s)`` -> ``(n, s, s)``, values untouched.

        The messages use scikit-learn's wording where its checks look for it (sparse, complex,
        NaN, sample and feature counts).
        """
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):  # scipy.sparse, without importing scipy here
            raise TypeError(f"{field} is a sparse matrix: sparse input is not supported; images are dense arrays "
                            "(use X.toarray())")
        arr = as_numpy(X, field)
        if arr.dtype.kind == "c":
            raise ValueError(f"{field} holds complex numbers: Complex data not supported; give real intensities")
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{field} has dtype object and cannot be converted to numbers") from None
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{field} contains NaN or infinity; images must be finite")
        if arr.ndim >= 1 and len(arr) < minimum:
            raise ValueError(f"fit needs at least {minimum} images (2 to train, 1 held out for the threshold), "
                             f"got n_samples = {len(arr)}")
        if arr.ndim == 2 and arr.shape[1] == 0:
            raise ValueError(f"{field} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            side = math.isqrt(arr.shape[1])
            if side * side != arr.shape[1] or side == 0:
                raise ValueError(f"{field} has shape {arr.shape}: a 2-D input must be flattened square images "
                                 f"(n, s*s), but {arr.shape[1]} is not a square number; pass (n, s, s) images")
            arr = arr.reshape(len(arr), side, side)
        if arr.ndim != 3 or len(arr) == 0 or arr.shape[1] != arr.shape[2]:
            raise ValueError(f"{field} has shape {arr.shape}; expected a non-empty (n, s, s), (n, 1, s, s) or (n, s*s) "
                             "array of square grey images")
        if arr.dtype.kind not in "uif":
            raise ValueError(f"{field} has dtype {arr.dtype}; expected numbers")
        return arr

    def _fitted_range(self, raw: np.ndarray):
        if isinstance(self.value_range, str):  # "fit": the training images' own range
            x = raw.astype(np.float64)
            if not np.all(np.isfinite(x)):
                raise ValueError("X contains NaN or infinite values")
            low, high = float(x.min()), float(x.max())
            return (low, high if high > low else low + 1.0)
        return None if self.value_range is None else tuple(float(v) for v in self.value_range)

    def _to_model(self, raw: np.ndarray) -> np.ndarray:
        """Images in the fitted value range -> float32 ``(n, 1, image_size_, image_size_)`` in [-1, 1]."""
        x = raw
        if isinstance(self.value_range, str):
            x = np.clip(raw.astype(np.float64), *self.value_range_)
        return resize_images(images_to_unit(x, "X", self.value_range_), self.image_size_)

    def _images(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        raw = self._as_images(X, "X")
        if tuple(raw.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has {raw.shape[1] * raw.shape[2]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input: it was fitted on {self.input_shape_[0]}x"
                             f"{self.input_shape_[1]} images, these are {raw.shape[1]}x{raw.shape[2]}; give images "
                             "of the fitted size")
        return self._to_model(raw)

    # ------------------------------------------------------------------------------------- scoring

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score per image, ``(n,)``: its mean squared reconstruction error; higher = more abnormal."""
        images = self._images(X)  # first: it raises NotFittedError before fit
        return image_scores(self.model_, images).astype(np.float64)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's sign: ``-decision_function(X)``, higher = more normal."""
        return -self.decision_function(X)

    def predict(self, X) -> np.ndarray:
        """1 (abnormal) where the score is above :attr:`threshold_`, else 0; int64 ``(n,)``."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and return the 0/1 predictions of ``X`` itself (:attr:`labels_`)."""
        return self.fit(X, y).labels_

    def anomaly_map(self, X) -> np.ndarray:
        """Per-pixel squared reconstruction error, float32 ``(n, 1, image_size_, image_size_)``."""
        images = self._images(X)
        return anomaly_maps(self.model_, images)

    def transform(self, X) -> np.ndarray:
        """The latent codes, float32 ``(n, effective_latent_size_)`` (``latent_size`` but for gated / nested)."""
        images = self._images(X)
        return encode_images(self.model_, images)

    # ---------------------------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write a run directory (:mod:`entropy_ae.runs`: weights.safetensors, config.json, ...).

        ``config.json``'s ``extra.detector`` holds the parameters, the fitted input shape, value
        range and threshold, so :meth:`load` rebuilds an identical detector.
        """
        check_is_fitted(self, "model_")
        params = self.get_params()
        if isinstance(params["value_range"], tuple):
            params["value_range"] = list(params["value_range"])
        n_val = len(self.val_scores_)
        metrics = {"threshold": self.threshold_, "target_fpr": float(self.target_fpr),
                   "val_fpr": float(np.mean(self.val_scores_ > self.threshold_)),
                   "rec_error_val_normal": float(self.val_scores_.mean()), "n_train": self.n_train_, "n_val": n_val}
        extra = {"detector": {"params": params, "input_shape": list(self.input_shape_),
                              "value_range": None if self.value_range_ is None else list(self.value_range_),
                              "image_size": int(self.image_size_), "threshold": self.threshold_,
                              "val_scores": self.val_scores_.tolist(), "n_train": self.n_train_}}
        empty = np.zeros((0, 1, self.image_size_, self.image_size_), np.float32)
        data = self._data(empty, empty)
        data.spec.update(n_train=self.n_train_, n_val=n_val)
        save_run(path, self.model_, self._config(), data, metrics, self.loss_history_, extra, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "AutoencoderDetector":
        """Rebuild a detector written by :meth:`save` (never unpickles: safetensors and JSON only).

        The model, threshold, input handling, held-out scores and loss history are restored; the
        scores of the fit images (:attr:`decision_scores_`, :attr:`labels_`) are not saved.
        """
        config = load_config(path)
        saved = (config.get("extra") or {}).get("detector")
        if not isinstance(saved, dict):
            raise RunDirError(f"{path} holds a run but not a detector (config.json has no extra.detector section); "
                              "load a training run with entropy_ae.load_model instead")
        load_metrics(path)  # a complete run only
        params = dict(saved["params"], device=device)
        if isinstance(params.get("value_range"), list):
            params["value_range"] = tuple(params["value_range"])
        det = cls(**params)
        det.model_, _ = load_model(path, device=device)
        det.input_shape_ = tuple(saved["input_shape"])
        det.n_features_in_ = int(np.prod(det.input_shape_))
        det.image_size_ = int(saved["image_size"])
        det.value_range_ = None if saved["value_range"] is None else tuple(saved["value_range"])
        det.threshold_ = float(saved["threshold"])
        det.val_scores_ = np.asarray(saved["val_scores"], dtype=np.float64)
        det.n_train_ = int(saved["n_train"])
        det.loss_history_ = load_loss_history(path)
        det.effective_latent_size_ = _code_width(det.model_)
        return det


def _code_width(model) -> int:
    """The number of code units ``model.encode`` returns (the open / kept ones of gated / nested)."""
    width = getattr(model, "effective_latent_size", None)
    return int(width()) if width is not None else int(model.latent_size)
