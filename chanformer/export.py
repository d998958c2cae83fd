"""Export encoders for deployment: ONNX (checked with onnxruntime) and ``torch.export``.

An exported graph takes plain tensors, not a :class:`~chanformer.batch.ChannelBatch`:
:class:`FlatEncoder` wraps an encoder so that its inputs are ``values [B, C, *S]``,
``channel_ids [B, C]`` (int64), ``mask [B, C]`` (bool) and, when the example batch has them,
``coords [B, C, k]`` and ``lengths [B]`` (int64); it rebuilds the batch inside, zeroes padded
slots (and time steps past ``lengths``) as every encoder does, and returns the embedding
``[B, D]``. :func:`flatten_batch` turns a batch into those tensors in that order.

The channel contract's *checks* (a sample with no present channel, ids outside the channel
table) raise Python errors and cannot live in a graph; run :func:`check_inputs` (the encoder's
own check) on a batch before feeding an exported model when the data is not known to be valid.

::

    from chanformer import create_encoder
    from chanformer.export import export_onnx, export_torch, flatten_batch

    enc = create_encoder("softs_test").eval()
    export_onnx(enc, "softs.onnx")            # dynamic batch and channel count, checked with onnxruntime
    export_torch(enc, "softs.pt2")            # torch.export.ExportedProgram, reload with load_torch()

Both writers are atomic (:mod:`chanformer.io`): an interrupted export leaves no partial file.
Which families export, with which dynamic axes, and why the others do not: ``docs/export.md``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders import Encoder
from chanformer.io import write_bytes_atomic, write_file_atomic

__all__ = [
    "ExportError",
    "ExportMismatchError",
    "ExportReport",
    "FlatEncoder",
    "check_inputs",
    "export_onnx",
    "export_torch",
    "flatten_batch",
    "load_torch",
    "run_onnx",
]

#: Families whose channel axis is a fixed layout (the montage of DBConformer, the mel bins of
#: ECAPA-TDNN): their channel count is never a dynamic axis.
FIXED_CHANNEL_FAMILIES = frozenset({"DBConformer", "ECAPA_TDNN"})
_MAX_DIM = 1 << 16


class ExportError(RuntimeError):
    """The encoder could not be exported in this format; the message summarises the exporter's error."""


class ExportMismatchError(ExportError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance."""


@dataclass
class ExportReport:
    """What an export wrote and how it was checked (returned by the writers)."""

    path: Path
    format: str
    exporter: str
    input_names: list[str]
    dynamic_batch: bool
    dynamic_channels: bool
    max_abs_error: float | None = None
    checked_shapes: list[tuple[int, ...]] | None = None


class FlatEncoder(nn.Module):
    """``encoder`` as a function of tensors: ``(values, channel_ids, mask[, coords][, lengths]) -> [B, D]``.

    Padded slots (``mask=False``) and, with ``lengths``, time steps past each sample's length are
    zeroed inside the graph, exactly as :meth:`Encoder.check_batch` does, so what is stored there
    never changes an output. The batch's validation is not part of the graph (see
    :func:`check_inputs`).
    """

    def __init__(self, encoder: Encoder, *, coords: bool = False, lengths: bool = False, sfreq: float | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder):
            raise TypeError(f"FlatEncoder wraps a chanformer Encoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.has_coords = bool(coords)
        self.has_lengths = bool(lengths)
        self.sfreq = sfreq

    @property
    def input_names(self) -> list[str]:
        return ["values", "channel_ids", "mask"] + ["coords"] * self.has_coords + ["lengths"] * self.has_lengths

    def forward(self, values: Tensor, channel_ids: Tensor, mask: Tensor, *extra: Tensor) -> Tensor:
        if len(extra) != self.has_coords + self.has_lengths:
            raise TypeError(f"FlatEncoder takes {self.input_names}, got {3 + len(extra)} tensors")
        coords = extra[0] if self.has_coords else None
        lengths = extra[-1] if self.has_lengths else None
        keep = mask.reshape(*mask.shape, *([1] * (values.ndim - 2)))
        if lengths is not None:
            steps = torch.arange(values.shape[-1], device=values.device)
            in_time = (steps[None, :] < lengths[:, None]).reshape(values.shape[0], *([1] * (values.ndim - 2)), -1)
            keep = keep & in_time
        values = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
        if coords is not None and coords.is_floating_point():
            coords = torch.where(mask[..., None], coords, torch.zeros((), dtype=coords.dtype, device=coords.device))
        batch = ChannelBatch(values, channel_ids, mask, coords=coords, sfreq=self.sfreq)
        if lengths is not None:
            # set after construction: ChannelBatch's range check of lengths reads tensor values
            batch.lengths = lengths
        # The padding was zeroed above; the value-dependent checks of Encoder.check_batch raise
        # Python errors, which a graph cannot hold, so the batch is marked as checked for this
        # encoder (check_inputs runs them outside the graph).
        object.__setattr__(batch, "_contract_checked", self.encoder)
        return self.encoder(batch)  # type: ignore[no-any-return]


def flatten_batch(batch: ChannelBatch, flat: FlatEncoder | None = None) -> tuple[Tensor, ...]:
    """The tensors a :class:`FlatEncoder` (and an exported model) takes, in input order.

    Without ``flat``, ``coords`` and ``lengths`` are included when the batch has them.
    """
    has_coords = batch.coords is not None if flat is None else flat.has_coords
    has_lengths = batch.lengths is not None if flat is None else flat.has_lengths
    out = [batch.values, batch.channel_ids, batch.mask]
    for name, wanted in (("coords", has_coords), ("lengths", has_lengths)):
        if wanted:
            value = getattr(batch, name)
            if value is None:
                raise ValueError(f"the exported model takes {name!r}, the batch has none")
            out.append(value)
    return tuple(out)


def check_inputs(encoder: Encoder, batch: ChannelBatch) -> ChannelBatch:
    """The encoder's channel-contract checks (empty samples, ids outside its table), which an
    exported graph does not run; returns the batch with its padding zeroed."""
    return encoder.check_batch(batch)


def _dynamic_channels_default(encoder: Encoder) -> bool:
    return type(encoder).__name__ not in FIXED_CHANNEL_FAMILIES and not encoder.required_channels()


def _prepare(
    encoder: Encoder, example: ChannelBatch | None, dynamic_channels: bool | None
) -> tuple[FlatEncoder, ChannelBatch, bool]:
    if not isinstance(encoder, Encoder):
        raise TypeError(f"export takes a chanformer Encoder, got {type(encoder).__name__}")
    if example is None:
        example = encoder.example_batch(batch_size=2)
    example = check_inputs(encoder, example)
    flat = FlatEncoder(encoder, coords=example.coords is not None, lengths=example.lengths is not None, sfreq=example.sfreq)
    flat.eval()
    dyn_c = _dynamic_channels_default(encoder) if dynamic_channels is None else bool(dynamic_channels)
    return flat, example, dyn_c


def _torch_dynamic_shapes(flat: FlatEncoder, dynamic_batch: bool, dynamic_channels: bool) -> dict[str, Any]:
    """``dynamic_shapes`` by parameter name of :meth:`FlatEncoder.forward` (``extra`` is its tuple of
    optional inputs)."""
    batch = torch.export.Dim("batch", min=1, max=_MAX_DIM)
    channels = torch.export.Dim("channels", min=1, max=_MAX_DIM)
    shapes: list[dict[int, Any]] = []
    for name in flat.input_names:
        axes: dict[int, Any] = {}
        if dynamic_batch:
            axes[0] = batch
        if dynamic_channels and name in ("values", "channel_ids", "mask", "coords"):
            axes[1] = channels
        shapes.append(axes)
    out: dict[str, Any] = {"values": shapes[0], "channel_ids": shapes[1], "mask": shapes[2]}
    if shapes[3:]:
        out["extra"] = tuple(shapes[3:])
    return out


def _variants(
    encoder: Encoder, flat: FlatEncoder, example: ChannelBatch, dynamic_batch: bool, dynamic_channels: bool
) -> list[ChannelBatch]:
    """Batches with other sizes along the dynamic axes, to check that the export generalises."""
    out = [example]
    if dynamic_batch:
        for size in (3, 1):
            try:
                other = encoder.example_batch(batch_size=size, seed=1)
            except (NotImplementedError, TypeError):
                other = example[:1] if size == 1 else example
            if (other.coords is None) == (not flat.has_coords) and (other.lengths is None) == (not flat.has_lengths):
                out.append(other)
    if dynamic_channels and example.n_channels > 1:
        k = example.n_channels - 1
        cut = ChannelBatch(
            example.values[:, :k], example.channel_ids[:, :k], example.mask[:, :k],
            coords=None if example.coords is None else example.coords[:, :k],
            lengths=example.lengths, sfreq=example.sfreq,
        )  # fmt: skip
        if bool(cut.mask.any(1).all()):
            out.append(cut)
    return out


def _summarise(exc: BaseException) -> str:
    """The first informative lines of an exporter error (they run to pages)."""
    text = f"{type(exc).__name__}: {exc}"
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if "File " in ln or "Could not guard" in ln or "data-dependent" in ln.lower()][:4]
    head = lines[0] if lines else type(exc).__name__
    return "; ".join(dict.fromkeys([head[:300], *(k.strip()[:200] for k in keep)]))


def _compare(name: str, got: np.ndarray, want: Tensor, atol: float, rtol: float) -> float:
    ref = want.detach().float().cpu().numpy()
    if got.shape != ref.shape:
        raise ExportMismatchError(f"{name}: output shape {got.shape}, PyTorch gives {ref.shape}")
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    if not np.allclose(got, ref, atol=atol, rtol=rtol):
        raise ExportMismatchError(
            f"{name}: outputs differ from PyTorch by up to {err:.3g} (atol={atol}, rtol={rtol})"
        )
    return err


def _metadata(encoder: Encoder, flat: FlatEncoder, exporter: str, dyn_b: bool, dyn_c: bool) -> dict[str, str]:
    meta = {
        "chanformer.inputs": json.dumps(flat.input_names),
        "chanformer.exporter": exporter,
        "chanformer.dynamic_axes": json.dumps({"batch": dyn_b, "channels": dyn_c}),
    }
    if encoder.encoder_name is not None:
        meta["chanformer.encoder"] = json.dumps(encoder.pretrained_spec())
    if encoder.vocab is not None:
        meta["chanformer.vocab"] = json.dumps(encoder.vocab.to_json())
    return meta


# -- torch.export ------------------------------------------------------------------------------------
def export_torch(
    encoder: Encoder,
    path: str | os.PathLike[str],
    *,
    example: ChannelBatch | None = None,
    dynamic_batch: bool = True,
    dynamic_channels: bool | None = None,
    check: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> ExportReport:
    """Export ``encoder`` with :func:`torch.export.export` and save it to ``path`` (``.pt2``).

    Args:
        encoder: a chanformer encoder (put in eval mode for the export).
        path: destination file, written atomically.
        example: the batch to trace with (default: ``encoder.example_batch()``).
        dynamic_batch: make the batch axis dynamic.
        dynamic_channels: make the channel axis dynamic (default: yes, except for fixed-layout
            families, :data:`FIXED_CHANNEL_FAMILIES`).
        check: run the exported program on the example and on batches of other sizes along
            the dynamic axes and compare with the eager encoder.
        atol, rtol: tolerance of that comparison.

    Raises:
        ExportError: ``torch.export`` refused the model (the message names the failing line).
        ExportMismatchError: the exported program's outputs differ from the eager ones.

    The file also holds ``chanformer.json`` (input names, encoder spec, vocabulary) as an
    extra file; :func:`load_torch` reads both.
    """
    flat, example, dyn_c = _prepare(encoder, example, dynamic_channels)
    was_training = encoder.training
    encoder.eval()
    try:
        args = flatten_batch(example, flat)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shapes = _torch_dynamic_shapes(flat, dynamic_batch, dyn_c)
                program = torch.export.export(flat, args, dynamic_shapes=shapes, strict=False)
        except Exception as e:  # noqa: BLE001 - every exporter failure is reported the same way
            raise ExportError(f"torch.export failed for {type(encoder).__name__}: {_summarise(e)}") from e
        report = ExportReport(Path(path), "torch.export", "torch.export", flat.input_names, dynamic_batch, dyn_c)
        if check:
            module = program.module()
            errs: list[float] = []
            checked: list[tuple[int, ...]] = []
            with torch.no_grad():
                for batch in _variants(encoder, flat, example, dynamic_batch, dyn_c):
                    got = module(*flatten_batch(batch, flat)).float().numpy()
                    errs.append(_compare(f"torch.export of {type(encoder).__name__}", got, encoder(batch), atol, rtol))
                    checked.append(tuple(batch.values.shape))
            report.max_abs_error, report.checked_shapes = max(errs), checked
        extra = {"chanformer.json": json.dumps(_metadata(encoder, flat, "torch.export", dynamic_batch, dyn_c))}
        write_file_atomic(path, lambda f: torch.export.save(program, f, extra_files=extra))
        return report
    finally:
        encoder.train(was_training)


def load_torch(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load a :func:`export_torch` file: ``(module, metadata)``; call ``module(*flatten_batch(batch))``."""
    extra = {"chanformer.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    meta = json.loads(extra["chanformer.json"]) if extra["chanformer.json"] else {}
    return program.module(), {k: json.loads(v) if k != "chanformer.exporter" else v for k, v in meta.items()}


# -- ONNX -----------------------------------------------------------------------------------------------
def _onnx_dynamo(flat: FlatEncoder, args: tuple[Tensor, ...], dyn_b: bool, dyn_c: bool, opset: int | None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            flat, args, dynamo=True, dynamic_shapes=_torch_dynamic_shapes(flat, dyn_b, dyn_c),
            input_names=flat.input_names, output_names=["embedding"], opset_version=opset, verbose=False,
        )  # fmt: skip
    return program.model_proto.SerializeToString()  # type: ignore[union-attr,no-any-return]


def _onnx_torchscript(flat: FlatEncoder, args: tuple[Tensor, ...], dyn_b: bool, dyn_c: bool, opset: int | None) -> bytes:
    axes: dict[str, dict[int, str]] = {}
    for name in flat.input_names:
        axes[name] = {}
        if dyn_b:
            axes[name][0] = "batch"
        if dyn_c and name in ("values", "channel_ids", "mask", "coords"):
            axes[name][1] = "channels"
    axes["embedding"] = {0: "batch"} if dyn_b else {}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch annotates f as a path, but the TorchScript exporter (dynamo=False) writes through
        # torch.serialization._open_file_like, which takes a binary buffer too.
        torch.onnx.export(
            flat, args, buf, dynamo=False, input_names=flat.input_names, output_names=["embedding"],  # type: ignore[arg-type]
            dynamic_axes=axes, opset_version=opset or 17, do_constant_folding=True,
        )  # fmt: skip
    return buf.getvalue()


def _with_metadata(model_bytes: bytes, meta: dict[str, str]) -> bytes:
    try:
        import onnx
    except ImportError:  # pragma: no cover - torch.onnx needs onnx itself
        return model_bytes
    model = onnx.load_from_string(model_bytes)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()  # type: ignore[no-any-return]


def _onnx_session(model: bytes | str | os.PathLike[str]) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("checking an ONNX export needs onnxruntime: pip install 'chanformer[export]'") from e
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def run_onnx(model: str | os.PathLike[str] | Any, batch: ChannelBatch) -> np.ndarray:
    """Embeddings ``[B, D]`` of ``batch`` from an exported ONNX file (or an onnxruntime session), on CPU."""
    session: Any = model if hasattr(model, "run") else _onnx_session(model)
    names = [i.name for i in session.get_inputs()]
    tensors = {"values": batch.values, "channel_ids": batch.channel_ids, "mask": batch.mask,
               "coords": batch.coords, "lengths": batch.lengths}  # fmt: skip
    missing = [n for n in names if tensors.get(n) is None]
    if missing:
        raise ValueError(f"the ONNX model takes {names}; the batch lacks {missing}")
    feed = {n: tensors[n].detach().cpu().numpy() for n in names}  # type: ignore[union-attr]
    return session.run(None, feed)[0]  # type: ignore[no-any-return]


def export_onnx(
    encoder: Encoder,
    path: str | os.PathLike[str],
    *,
    example: ChannelBatch | None = None,
    dynamic_batch: bool = True,
    dynamic_channels: bool | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> ExportReport:
    """Export ``encoder`` to ONNX at ``path`` (written atomically), checked with onnxruntime on CPU.

    Args:
        encoder, example, dynamic_batch, dynamic_channels: as :func:`export_torch`.
        exporter: ``"dynamo"`` (``torch.onnx.export(dynamo=True)``, built on ``torch.export``),
            ``"torchscript"`` (the tracing exporter: value-dependent Python branches are fixed at
            the branch the example takes, which is why the default example has ragged channel
            sets), or ``"auto"``: dynamo, and the tracing exporter where dynamo refuses the model.
        opset: ONNX opset (default: the exporter's).
        check: run the ONNX model with onnxruntime on the example and on batches of other sizes
            along the dynamic axes, and compare with PyTorch (needs ``onnxruntime``).
        atol, rtol: tolerance of that comparison.

    Raises:
        ExportError: no exporter could convert the model (the messages of each are summarised).
        ExportMismatchError: onnxruntime's outputs differ from PyTorch's.

    The model's metadata (``metadata_props``) holds the input names, the dynamic axes, the
    exporter used, the encoder spec and its vocabulary.
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter={exporter!r}: expected 'auto', 'dynamo' or 'torchscript'")
    flat, example, dyn_c = _prepare(encoder, example, dynamic_channels)
    was_training = encoder.training
    encoder.eval()
    try:
        args = flatten_batch(example, flat)
        errors = []
        data, used = None, ""
        for kind in (["dynamo", "torchscript"] if exporter == "auto" else [exporter]):
            build = _onnx_dynamo if kind == "dynamo" else _onnx_torchscript
            try:
                data, used = build(flat, args, dynamic_batch, dyn_c, opset), kind
                break
            except Exception as e:  # noqa: BLE001 - every exporter failure is reported the same way
                errors.append(f"{kind}: {_summarise(e)}")
        if data is None:
            raise ExportError(f"ONNX export failed for {type(encoder).__name__}: " + " | ".join(errors))
        data = _with_metadata(data, _metadata(encoder, flat, used, dynamic_batch, dyn_c))
        report = ExportReport(Path(path), "onnx", used, flat.input_names, dynamic_batch, dyn_c)
        if check:
            session = _onnx_session(data)
            errs, shapes = [], []
            with torch.no_grad():
                for batch in _variants(encoder, flat, example, dynamic_batch, dyn_c):
                    got = run_onnx(session, batch)
                    errs.append(_compare(f"ONNX ({used}) export of {type(encoder).__name__}", got, encoder(batch), atol, rtol))
                    shapes.append(tuple(batch.values.shape))
            report.max_abs_error, report.checked_shapes = max(errs), shapes
        write_bytes_atomic(path, data)
        return report
    finally:
        encoder.train(was_training)
