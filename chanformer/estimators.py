"""scikit-learn estimators around chanformer encoders: ``ChannelClassifier`` and ``ChannelRegressor``.

They take what a scientist already holds and return what scikit-learn expects::

    from chanformer.estimators import ChannelClassifier
    clf = ChannelClassifier("softs_small", max_epochs=30, random_state=0)
    clf.fit(X_train, y_train, channel_names=["Fz", "Cz", "Pz"])   # X: [n, C, T]
    clf.predict_proba(X_test, channel_names=["Cz", "Pz"])          # a subset, another order

Inputs (``X``):

* a numpy array ``[n, C, T]`` (or ``[n, C, *S]``), channels named by ``channel_names`` (the
  constructor parameter, or the keyword of ``fit``/``predict``/``score``); without names the
  channels are ``x0, x1, ...``;
* a 2-D table ``[n, F]`` (numpy or a pandas DataFrame): the **2-D convention** reads it as
  ``[n, C=F, T=1]``, one channel per feature, named by the DataFrame's columns or ``x0, x1, ...``;
  this is what lets scikit-learn's own estimator checks, which feed tables, run unchanged;
* an ``xarray.DataArray`` with dims ``("sample", "channel", "time")`` (``batch`` or ``epoch``
  also name the sample dim), channel names in the ``channel`` coordinate;
* an ``mne.Epochs`` (channel names resolved against the vocabulary, values in volts);
* a list of per-sample arrays ``[C_i, T]`` with ``channel_names`` a list of per-sample name
  lists (ragged channel sets), or a list of per-sample DataArrays with dims ``("channel",
  "time")``, which carry their names with them and so split cleanly in ``cross_val_score``.

Channel names are mapped to ids of a :class:`~chanformer.channels.ChannelVocab`: ``vocab=None``
builds one from the names seen in ``fit`` (the 10-05 EEG vocabulary, positions included, when
every name is an EEG electrode), ``vocab="eeg_1005"`` forces it, and a ``ChannelVocab`` is used as
given. Families with an optional channel-identity table (SOFTS, GAT) get it switched on, so a
channel is known by its name, not only by its values. With ``standardize=True`` every channel is
scaled by mean and standard deviation per channel name, measured on the training data.

Training runs a plain PyTorch loop, not a Lightning ``Trainer``: the classifier's network *is*
the package's :class:`~chanformer.tasks.ClassificationTask` (its head, loss and forward), driven
by ``task.compute`` batch by batch. A ``Trainer`` sets up loggers and callbacks on every
``fit`` and each task writes a pretrained export at the end of it, scikit-learn's
estimator checks and ``cross_val_score`` call ``fit`` hundreds of times, and the loop here is what
makes ``random_state`` reproduce a fit bit for bit (one seeded generator for initialisation,
shuffling and dropout, the caller's global RNG state left untouched). The package has no
per-sample regression task (``ForecastingTask`` predicts horizons of every channel), so the
regressor adds a linear head to the encoder and minimises the mean squared error on
standardised targets.

Predictions of a fitted estimator are deterministic: the network runs in eval mode and padded
channels never change an output, so the prediction of a sample does not depend on the rest of
the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import Tensor, nn

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError, eeg_1005_vocab
from chanformer.encoders import Encoder, create_encoder, encoder_class
from chanformer.spec import DataSpec

__all__ = ["ChannelClassifier", "ChannelRegressor"]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
_SAMPLE_DIMS = ("sample", "batch", "epoch")


# -- inputs -> (values per sample, names per sample) -------------------------------------------------
class _Data:
    """Samples as float32 arrays ``[C_i, *S]`` with their channel names, whatever the input form."""

    def __init__(self, values: list[np.ndarray] | np.ndarray, names: list[list[str]], sfreq: float | None = None) -> None:
        self.values = values
        self.names = names
        self.sfreq = sfreq

    def __len__(self) -> int:
        return len(self.values)

    @property
    def tail(self) -> tuple[int, ...]:
        """Trailing shape ``S`` shared by every sample."""
        return tuple(self.values[0].shape[1:])


def _is_epochs(x: Any) -> bool:
    return hasattr(x, "get_data") and hasattr(x, "ch_names") and hasattr(x, "info")


def _is_dataarray(x: Any) -> bool:
    return hasattr(x, "dims") and hasattr(x, "coords") and hasattr(x, "transpose")


def _names_list(names: Any, n: int) -> list[str]:
    out = [str(k) for k in names]
    if len(out) != n:
        raise ValueError(f"channel_names names {len(out)} channels, the data has {n} on the channel axis")
    if len(set(out)) != len(out):
        raise ValueError(f"channel_names has duplicates: {out}")
    return out


def _from_dataarray(da: Any, ragged_item: bool) -> tuple[np.ndarray, list[str], float | None]:
    """``[n, C, *S]`` (or one sample ``[C, *S]`` when ``ragged_item``) and the channel names of ``da``."""
    if "channel" not in da.dims:
        raise ValueError(f"the DataArray needs a 'channel' dimension (dims: {da.dims})")
    sample = [d for d in da.dims if d in _SAMPLE_DIMS]
    if ragged_item and sample:
        raise ValueError(f"a per-sample DataArray in a list must have no sample dimension, got dims {da.dims}")
    if not ragged_item and not sample:
        raise ValueError(
            f"the DataArray needs a sample dimension named one of {_SAMPLE_DIMS} (dims: {da.dims}); "
            "pass a list of DataArrays for samples with different channel sets"
        )
    rest = [d for d in da.dims if d not in sample and d != "channel"]
    arr = np.asarray(da.transpose(*sample, "channel", *rest).values)
    if "channel" in da.coords:
        names = [str(k) for k in da.coords["channel"].values]
    else:
        names = [f"x{i}" for i in range(da.sizes["channel"])]
    sfreq = da.attrs.get("sfreq")
    return arr, names, None if sfreq is None else float(sfreq)


def _finite_float(arr: np.ndarray, what: str) -> np.ndarray:
    out = check_array(np.asarray(arr), allow_nd=True, ensure_2d=False, dtype=[np.float64, np.float32], input_name=what)
    return out.astype(np.float32, copy=False)


# -- the shared estimator -------------------------------------------------------------------------------
class _ChannelEstimator(BaseEstimator):
    """Shared parameters, input handling and training loop (see the module docstring)."""

    def __init__(
        self,
        encoder: str = "softs_small",
        encoder_kwargs: dict[str, Any] | None = None,
        *,
        channel_names: Sequence[str] | None = None,
        vocab: ChannelVocab | str | None = None,
        max_epochs: int = 30,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str | type[torch.optim.Optimizer] = "adamw",
        standardize: bool = True,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.encoder = encoder
        self.encoder_kwargs = encoder_kwargs
        self.channel_names = channel_names
        self.vocab = vocab
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.standardize = standardize
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # -- inputs ---------------------------------------------------------------------------------
    def _read(self, X: Any, y: Any, channel_names: Any, *, fitting: bool) -> tuple[_Data, Any]:
        """Turn ``X`` (any supported form) into samples with names; validate ``y`` with it."""
        names = channel_names if channel_names is not None else self.channel_names
        if _is_epochs(X):
            data = X.get_data()
            return self._uniform(_finite_float(data, "X"), list(X.ch_names), float(X.info["sfreq"])), self._check_y(y, len(data))
        if _is_dataarray(X):
            arr, da_names, sfreq = _from_dataarray(X, ragged_item=False)
            return self._uniform(_finite_float(arr, "X"), da_names, sfreq), self._check_y(y, len(arr))
        per_sample_names = names is not None and len(names) > 0 and not isinstance(names[0], str)
        if isinstance(X, (list, tuple)) and len(X) and (_is_dataarray(X[0]) or _is_epochs(X[0]) or per_sample_names):
            return self._ragged(X, names), self._check_y(y, len(X))
        # array-likes and tables: scikit-learn's validation (n_features_in_, feature names, dtypes)
        explicit = channel_names is not None and not fitting
        if explicit:
            arr = check_array(X, allow_nd=True, dtype=[np.float64, np.float32])
            y_out = self._check_y(y, len(arr))
        elif y is None and not fitting:
            arr = validate_data(self, X, reset=False, allow_nd=True, dtype=[np.float64, np.float32])
            y_out = None
        else:
            arr, y_out = validate_data(
                self, X, y, reset=fitting, allow_nd=True, dtype=[np.float64, np.float32], **self._y_validation()
            )
        arr = arr.astype(np.float32, copy=False)
        if arr.ndim == 2:  # the 2-D convention: [n, F] -> [n, C=F, T=1]
            arr = arr[:, :, None]
        if names is None:
            feature_names = getattr(self, "feature_names_in_", None)
            names = list(feature_names) if feature_names is not None and arr.shape[1] == len(feature_names) else None
        names = [f"x{i}" for i in range(arr.shape[1])] if names is None else names
        return self._uniform(arr, names, None), y_out

    def _y_validation(self) -> dict[str, Any]:
        return {}

    def _check_y(self, y: Any, n: int) -> Any:
        if y is None:
            return None
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"X has {n} samples but y has {len(y)}")
        return y

    @staticmethod
    def _uniform(arr: np.ndarray, names: Any, sfreq: float | None) -> _Data:
        if arr.ndim < 3:
            raise ValueError(f"expected X of shape [n, C, T] (or [n, F] tables), got {arr.shape}")
        names = _names_list(names, arr.shape[1])
        return _Data(arr, [names] * len(arr), sfreq)

    @staticmethod
    def _ragged(X: Sequence[Any], names: Any) -> _Data:
        values: list[np.ndarray] = []
        all_names: list[list[str]] = []
        sfreq = None
        for i, item in enumerate(X):
            if _is_epochs(item):  # scikit-learn's splitters index an Epochs into single-epoch Epochs
                data = _finite_float(item.get_data(), "X")
                values += list(data)
                all_names += [list(item.ch_names)] * len(data)
                sfreq = float(item.info["sfreq"])
            elif _is_dataarray(item):
                arr, item_names, sfreq = _from_dataarray(item, ragged_item=True)
                values.append(_finite_float(arr, f"X[{i}]"))
                all_names.append(_names_list(item_names, arr.shape[0]))
            else:
                if names is None or len(names) != len(X) or isinstance(names[0], str):
                    raise ValueError(
                        "a list of per-sample arrays needs channel_names as one list of names per sample "
                        f"({len(X)} lists); or pass per-sample DataArrays with a 'channel' coordinate"
                    )
                arr = _finite_float(item, f"X[{i}]")
                if arr.ndim < 2:
                    raise ValueError(f"X[{i}] must be [C, *S], got shape {arr.shape}")
                values.append(arr)
                all_names.append(_names_list(names[i], arr.shape[0]))
        tails = {v.shape[1:] for v in values}
        if len(tails) > 1:
            raise ValueError(f"every sample must share its trailing shape (time length), got {sorted(tails)}")
        return _Data(values, all_names, sfreq)

    # -- vocabulary and scaling -------------------------------------------------------------------
    def _build_vocab(self, data: _Data) -> tuple[ChannelVocab, str]:
        """The vocabulary and the resolution prefix (``"eeg/"`` for EEG names)."""
        seen: dict[str, None] = {}
        for names in data.names:
            seen.update(dict.fromkeys(names))
        if isinstance(self.vocab, ChannelVocab):
            return self.vocab, ""
        if self.vocab == "eeg_1005":
            return eeg_1005_vocab(), "eeg/"
        if self.vocab is not None:
            raise ValueError(f"vocab must be None, 'eeg_1005' or a ChannelVocab, got {self.vocab!r}")
        eeg = eeg_1005_vocab()
        if all(eeg.resolve(n, "eeg/") is not None for n in seen) and not all(n.startswith("x") and n[1:].isdigit() for n in seen):
            return eeg, "eeg/"
        return ChannelVocab("estimator", [Channel(n) for n in seen]), ""

    def _ids(self, names: list[str]) -> list[int]:
        keys = [self.vocab_.resolve(n, self.prefix_) for n in names]
        unknown = [n for n, k in zip(names, keys) if k is None]
        if unknown:
            raise UnknownChannelError(unknown, self.vocab_.name)
        return self.vocab_.ids(keys)  # type: ignore[arg-type]

    def _fit_scaling(self, data: _Data, ids: list[list[int]]) -> None:
        n = len(self.vocab_)
        total, sq, count = np.zeros(n), np.zeros(n), np.zeros(n)
        for v, row in zip(data.values, ids):
            flat = v.reshape(v.shape[0], -1).astype(np.float64)
            np.add.at(total, row, flat.sum(1))
            np.add.at(sq, row, (flat**2).sum(1))
            np.add.at(count, row, flat.shape[1])
        seen = count > 0
        mean = np.where(seen, total / np.maximum(count, 1), 0.0)
        var = np.where(seen, sq / np.maximum(count, 1) - mean**2, 1.0)
        std = np.sqrt(np.maximum(var, 0.0))
        self.channel_mean_ = mean.astype(np.float32)
        self.channel_std_ = np.where(std > 1e-12 * (1 + np.abs(mean)), std, 1.0).astype(np.float32)

    def _samples(self, data: _Data, ids: list[list[int]], targets: Tensor | None) -> list[ChannelSample]:
        out = []
        for i, (v, row) in enumerate(zip(data.values, ids)):
            if self.standardize:
                shape = (len(row),) + (1,) * (v.ndim - 1)
                v = (v - self.channel_mean_[row].reshape(shape)) / self.channel_std_[row].reshape(shape)
            out.append(ChannelSample(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)), torch.tensor(row),
                                     target=None if targets is None else targets[i]))  # fmt: skip
        return out

    def _spec(self, data: _Data, **extra: Any) -> DataSpec:
        tail = data.tail
        return DataSpec(
            vocab=self.vocab_,
            n_times=tail[-1] if tail else None,
            image_size=tail[-1] if len(tail) == 2 else None,
            sfreq=data.sfreq,
            **extra,
        )

    def _encoder_kwargs(self) -> dict[str, Any]:
        kw = dict(self.encoder_kwargs or {})
        cls = encoder_class(self.encoder)
        if cls.channel_table_arg and "channel_embedding" in inspect.signature(cls.__init__).parameters:
            kw.setdefault("channel_embedding", True)
        return kw

    def _optimizer(self, params: Any) -> torch.optim.Optimizer:
        opt = self.optimizer
        if isinstance(opt, str):
            if opt.lower() not in _OPTIMIZERS:
                raise ValueError(f"optimizer={opt!r}: choose one of {sorted(_OPTIMIZERS)} or pass a torch.optim.Optimizer class")
            opt = _OPTIMIZERS[opt.lower()]
        if not (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
            raise ValueError(f"optimizer={opt!r}: a name ({sorted(_OPTIMIZERS)}) or a torch.optim.Optimizer class")
        extra = {"momentum": 0.9} if opt is torch.optim.SGD else {}
        # the Optimizer base signature is (params, defaults); every torch.optim subclass takes lr/weight_decay
        return opt(params, lr=self.lr, weight_decay=self.weight_decay, **extra)  # type: ignore[call-arg, arg-type]

    # -- training -----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("max_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}: must be a positive number")

    def _build(self, data: _Data, targets: Any) -> nn.Module:
        """The network for this estimator (the classifier's and the regressor's heads differ)."""
        raise NotImplementedError(f"{type(self).__name__} must define _build (ChannelClassifier / ChannelRegressor do)")

    def _loss(self, module: nn.Module, batch: ChannelBatch) -> Tensor:
        """The training loss of one batch."""
        raise NotImplementedError(f"{type(self).__name__} must define _loss (ChannelClassifier / ChannelRegressor do)")

    def _target_tensor(self, y: Any) -> Tensor:
        raise NotImplementedError

    def _train(self, data: _Data, y: Any) -> None:
        self._check_params()
        self.vocab_, self.prefix_ = self._build_vocab(data)
        ids = [self._ids(names) for names in data.names]
        if self.standardize:
            self._fit_scaling(data, ids)
        targets = self._target_tensor(y)
        samples = self._samples(data, ids, targets)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        order_rng = np.random.RandomState(seed)
        device = torch.device(self.device)
        self.history_: list[float] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build(data, y).to(device)
            opt = self._optimizer(module.parameters())
            module.train()
            for epoch in range(int(self.max_epochs)):
                total = 0.0
                for chunk in _chunks(order_rng.permutation(len(samples)), int(self.batch_size)):
                    batch = ChannelBatch.collate([samples[i] for i in chunk], sfreq=data.sfreq).to(device)
                    loss = self._loss(module, batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{type(self).__name__}: loss is {loss.item()} in epoch {epoch}; lower lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(chunk)
                self.history_.append(total / len(samples))
                if self.verbose:
                    print(f"{type(self).__name__} epoch {epoch + 1}/{self.max_epochs}: loss {self.history_[-1]:.4f}")
        module.eval()
        self.module_ = module

    def _forward(self, X: Any, channel_names: Any) -> np.ndarray:
        """Network outputs ``[n, K]`` (float64) for ``X``."""
        check_is_fitted(self, "module_")
        data, _ = self._read(X, None, channel_names, fitting=False)
        if not len(data):
            raise ValueError("X has no samples")
        samples = self._samples(data, [self._ids(names) for names in data.names], None)
        device = next(self.module_.parameters()).device
        out = []
        with torch.inference_mode():
            for start in range(0, len(samples), max(int(self.batch_size), 1)):
                batch = ChannelBatch.collate(samples[start : start + self.batch_size], sfreq=data.sfreq).to(device)
                out.append(self.module_(batch).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    @property
    def encoder_(self) -> Encoder:
        """The trained encoder (for embeddings, export or saving with ``save_pretrained``)."""
        check_is_fitted(self, "module_")
        return cast(Encoder, self.module_.encoder)

    def embed(self, X: Any, channel_names: Sequence[Any] | None = None) -> np.ndarray:
        """Embeddings ``[n, D]`` of the trained encoder (named ``embed``, not ``transform``, so
        that scikit-learn does not take the estimator for a transformer)."""
        check_is_fitted(self, "module_")
        data, _ = self._read(X, None, channel_names, fitting=False)
        samples = self._samples(data, [self._ids(names) for names in data.names], None)
        device = next(self.module_.parameters()).device
        out = []
        with torch.inference_mode():
            for start in range(0, len(samples), int(self.batch_size)):
                batch = ChannelBatch.collate(samples[start : start + self.batch_size], sfreq=data.sfreq).to(device)
                out.append(self.encoder_(batch).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Mini-batches of ``order``; a last batch of one sample joins the previous one (BatchNorm
    cannot train on a batch of one)."""
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = np.concatenate([chunks[-2], chunks.pop()])
    return chunks


# -- classification ---------------------------------------------------------------------------------
class ChannelClassifier(ClassifierMixin, _ChannelEstimator):
    """A chanformer encoder + the package's ClassificationTask head as a scikit-learn classifier.

    Args:
        encoder: registered encoder name (``chanformer.list_encoders()``); its data-dependent
            arguments (series length, image size, channel-table size) come from ``X``.
        encoder_kwargs: overrides of the variant's defaults.
        channel_names: names of the channels of array inputs (else ``x0, x1, ...``); the
            ``channel_names=`` keyword of ``fit``/``predict``/``score`` overrides it per call.
        vocab: ``None`` (built from the names seen in ``fit``; 10-05 EEG when they are
            electrodes), ``"eeg_1005"`` or a :class:`~chanformer.channels.ChannelVocab`.
        max_epochs, batch_size, lr, weight_decay: training schedule.
        optimizer: ``"adamw"``, ``"adam"``, ``"sgd"`` (momentum 0.9), ``"rmsprop"`` or a
            ``torch.optim.Optimizer`` class.
        standardize: scale each channel by its training mean and standard deviation.
        device: torch device to train and predict on.
        random_state: seed (or ``RandomState``) for initialisation, shuffling and dropout.
        verbose: print the loss of every epoch.

    Fitted attributes: ``classes_``, ``vocab_``, ``module_`` (the trained
    :class:`~chanformer.tasks.ClassificationTask`), ``encoder_``, ``history_`` (mean training
    loss per epoch), ``n_features_in_`` (channels of array inputs), ``channel_mean_``/``channel_std_``.
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _y_validation(self) -> dict[str, Any]:
        return {"multi_output": False}

    def _check_y(self, y: Any, n: int) -> Any:
        y = super()._check_y(y, n)
        if y is not None and y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels, got shape {y.shape}")
        return y

    def _target_tensor(self, y: Any) -> Tensor:
        return torch.as_tensor(self._encoded_y, dtype=torch.long)

    def _build(self, data: _Data, y: Any) -> nn.Module:
        from chanformer.tasks import ClassificationTask

        return ClassificationTask(
            encoder=self.encoder,
            encoder_kwargs=self._encoder_kwargs(),
            data_spec=self._spec(data, num_classes=len(self.classes_), class_names=[str(c) for c in self.classes_]),
            num_classes=len(self.classes_),
            optimizer=self._optimizer,
        )

    def _loss(self, module: nn.Module, batch: ChannelBatch) -> Tensor:
        loss, _, _ = module.compute(batch)  # type: ignore[operator]
        return loss  # type: ignore[no-any-return]

    def fit(self, X: Any, y: Any, channel_names: Sequence[Any] | None = None) -> ChannelClassifier:
        """Train on ``X`` (see the module docstring for its forms) and class labels ``y``."""
        data, y = self._read(X, y, channel_names, fitting=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        check_classification_targets(y)
        self.classes_, self._encoded_y = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got 1 class: {self.classes_.tolist()}")
        self._train(data, y)
        del self._encoded_y
        return self

    def predict_proba(self, X: Any, channel_names: Sequence[Any] | None = None) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` in the order of ``classes_``."""
        logits = torch.from_numpy(self._forward(X, channel_names))
        return torch.softmax(logits, dim=-1).numpy()

    def predict_log_proba(self, X: Any, channel_names: Sequence[Any] | None = None) -> np.ndarray:
        """Log class probabilities ``[n, n_classes]``."""
        return torch.log_softmax(torch.from_numpy(self._forward(X, channel_names)), dim=-1).numpy()

    def predict(self, X: Any, channel_names: Sequence[Any] | None = None) -> np.ndarray:
        """The most probable class of each sample."""
        scores = self._forward(X, channel_names)
        return self.classes_[np.argmax(scores, axis=1)]  # type: ignore[no-any-return]

    def score(self, X: Any, y: Any, sample_weight: Any = None, channel_names: Sequence[Any] | None = None) -> float:
        """Accuracy on ``X``, ``y``."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X, channel_names), sample_weight=sample_weight))


# -- regression ---------------------------------------------------------------------------------------
class _RegressionNet(nn.Module):
    """Encoder ``[B, D]`` -> linear head ``[B, n_outputs]`` (standardised targets)."""

    def __init__(self, encoder: Encoder, n_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, n_outputs)

    def forward(self, batch: ChannelBatch) -> Tensor:
        return self.head(self.encoder(batch))  # type: ignore[no-any-return]


class ChannelRegressor(RegressorMixin, _ChannelEstimator):
    """A chanformer encoder + a linear head trained with the mean squared error, as a scikit-learn regressor.

    ``y`` is ``[n]`` or ``[n, n_outputs]``; targets are standardised for training (mean and
    standard deviation of each output, ``y_mean_``/``y_std_``) and predictions returned on the
    original scale. Parameters and fitted attributes as :class:`ChannelClassifier` (``module_``
    is the encoder + head).
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _y_validation(self) -> dict[str, Any]:
        return {"multi_output": True, "y_numeric": True}

    def _check_y(self, y: Any, n: int) -> Any:
        y = super()._check_y(y, n)
        if y is not None:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        return y

    def _target_tensor(self, y: Any) -> Tensor:
        y2 = y.reshape(len(y), -1)
        return torch.as_tensor((y2 - self.y_mean_) / self.y_std_, dtype=torch.float32)

    def _build(self, data: _Data, y: Any) -> nn.Module:
        encoder = create_encoder(self.encoder, data_spec=self._spec(data), **self._encoder_kwargs())
        return _RegressionNet(encoder, self.n_outputs_)

    def _loss(self, module: nn.Module, batch: ChannelBatch) -> Tensor:
        return F.mse_loss(module(batch), batch.target)  # type: ignore[arg-type]

    def fit(self, X: Any, y: Any, channel_names: Sequence[Any] | None = None) -> ChannelRegressor:
        """Train on ``X`` (see the module docstring for its forms) and targets ``y``."""
        data, y = self._read(X, y, channel_names, fitting=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self.y_mean_ = y2.mean(0)
        std = y2.std(0)
        self.y_std_ = np.where(std > 0, std, 1.0)
        self._train(data, y)
        return self

    def predict(self, X: Any, channel_names: Sequence[Any] | None = None) -> np.ndarray:
        """Predicted targets ``[n]`` (or ``[n, n_outputs]`` when fitted on 2-D ``y``)."""
        out = self._forward(X, channel_names)
        out = out * self.y_std_ + self.y_mean_
        return out[:, 0] if self._y_ndim == 1 else out  # type: ignore[no-any-return]

    def score(self, X: Any, y: Any, sample_weight: Any = None, channel_names: Sequence[Any] | None = None) -> float:
        """Coefficient of determination R^2 on ``X``, ``y``."""
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.predict(X, channel_names), sample_weight=sample_weight))
