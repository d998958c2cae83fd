"""Side by side with the original implementations (issue #18 item 1).

``python -m benchmarks originals --checkouts DIR [--quick] [--models a,b] [--repeats 5] [--json out.json]``
(or ``CHANFORMER_ORIGINALS=DIR``).

``DIR`` holds one checkout per original repository, named as GitHub names the repository
(``DIR/SOFTS``, ``DIR/ChannelViT``, ``DIR/chada_vit``, ``DIR/ACMIL``, ``DIR/DBConformer``,
``DIR/Gaussian-Adaptive-Attention``, ``DIR/MambAttention``, ``DIR/multi-variate-parallel-transformer``,
``DIR/speechbrain``). Nothing of the originals is part of this repository: each is imported from the
checkout the user points to, at run time.

For every model:

1. the ORIGINAL class is imported from its checkout and built at the configuration of the issue;
2. its ``state_dict()`` is converted with chanformer's converter
   (``get_converter(name).load(state, kwargs)``), ``kwargs`` being the original's constructor
   arguments in the fixture.json form;
3. both run in eval mode on the same inputs; the outputs and the gradients of the floating-point
   inputs must agree within the reference fixtures' tolerance (``|ours - theirs| <= atol + rtol |theirs|``,
   1e-4 / 1e-4). A mismatch makes the row ``FAIL`` and it is not timed;
4. one training step each (train mode, forward + backward of the mean square of the outputs; the
   MambAttention ``infer`` row: eval mode, no autograd) is timed INTERLEAVED, original then ours, after
   one warm-up step each, ``repeats`` times; the row gives the medians, min/max, and the ratio
   original / chanformer of the medians (above 1: chanformer is faster) with the spread of the paired
   ratios (original_i / ours_i);
5. peak memory of one step each: the peak resident-set size above the level before the step (sampled
   every 0.5 ms after ``malloc_trim``; :func:`benchmarks.measure.peak_mem_mb`) -- an approximation.

Originals that need packages this environment lacks: a model's ``stubs`` are modules its class imports
but never runs (data loaders, loggers, optimisers, CUDA extensions); they are stood in by placeholders
that raise when used, so an import of such a name cannot silently change what is measured. ``bare``
packages are registered without running their ``__init__.py`` (which import the whole training stack).
Where the original still cannot be imported or run (e.g. a package that is not installed), the row is
``skipped`` with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from benchmarks.measure import peak_mem_mb
from chanformer.io import write_text_atomic

__all__ = [
    "ORIGINALS",
    "Original",
    "SideBySide",
    "import_original",
    "print_side_by_side",
    "run_originals",
]

ENV_VAR = "CHANFORMER_ORIGINALS"
ATOL = RTOL = 1e-4  # the reference fixtures' tolerance
MAX_ILL_CONDITIONED = 1e-3  # the largest share of an output's entries Original.ill_conditioned may pass over
MEMORY_METHOD = "peak RSS delta over one step, sampled every 0.5 ms after malloc_trim"

Inputs = dict[str, Tensor]
R = TypeVar("R")  # a measured row (benchmarks.floor.Floor, benchmarks.low_precision.Bf16Row)


# -- importing an original from a checkout ---------------------------------------------------------------
class _Unavailable:
    """Stands in for a name imported from a stubbed module; using it raises."""

    _stub_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{self._stub_name} is a benchmark stand-in (its package is not installed)")


class _StubModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (_Unavailable,), {"_stub_name": f"{self.__name__}.{attr}"})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves placeholder modules for ``names`` and their submodules; ``provide[module]`` are real
    attributes set on a placeholder (e.g. an initialiser the original calls in its constructor)."""

    def __init__(self, names: Sequence[str], provide: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.names = tuple(names)
        self.provide = dict(provide or {})

    def covers(self, fullname: str) -> bool:
        return any(fullname == n or fullname.startswith(n + ".") for n in self.names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if self.covers(fullname):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StubModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package: its submodules are stubs too
        for attr, value in self.provide.get(module.__name__, {}).items():
            setattr(module, attr, value)


def _under(module: types.ModuleType, root: Path) -> bool:
    file = getattr(module, "__file__", None)
    paths = list(getattr(module, "__path__", []) or [])
    where = [file] if file else paths
    return any(w and Path(w).resolve().is_relative_to(root) for w in where)


@contextlib.contextmanager
def _checkout_on_path(
    root: Path, stubs: Sequence[str], bare: Sequence[str], paths: Sequence[Path] = (),
    provide: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[None]:
    """Import window: ``root`` first on ``sys.path``, ``stubs`` served as placeholders, ``bare`` packages
    registered without their ``__init__``. Afterwards the checkout's modules and the stand-ins leave
    ``sys.modules`` again (the classes stay alive), so two checkouts with a top-level ``models`` package
    do not collide, and the real modules that the stubs hid are put back."""
    root = root.resolve()
    finder = _StubFinder(stubs, provide)
    hidden = {k: v for k, v in sys.modules.items() if finder.covers(k)}
    for k in hidden:
        del sys.modules[k]
    before = set(sys.modules)
    on_path = [str(p.resolve()) for p in (root, *paths)]
    sys.path[:0] = on_path
    sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()
    for name in bare:
        pkg = types.ModuleType(name)
        pkg.__path__ = [d for d in (str(Path(base).joinpath(*name.split("."))) for base in on_path)
                        if os.path.isdir(d)][:1]
        sys.modules[name] = pkg
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, pkg)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for p in on_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)
        for k in set(sys.modules) - before:
            mod = sys.modules[k]
            if k in bare or finder.covers(k) or isinstance(mod, _StubModule) or _under(mod, root):
                del sys.modules[k]
        sys.modules.update(hidden)
        importlib.invalidate_caches()


def import_original(
    root: str | os.PathLike[str],
    module: str,
    stubs: Sequence[str] = (),
    bare: Sequence[str] = (),
    prepare: Callable[[Callable[[str], types.ModuleType]], None] | None = None,
    paths: Sequence[Path] = (),
    provide: Mapping[str, Mapping[str, Any]] | None = None,
) -> types.ModuleType:
    """Import ``module`` from the checkout ``root`` (see :func:`_checkout_on_path`); ``prepare(imp)`` may
    import further modules of the checkout with ``imp(name)`` inside the same window (e.g. to select the
    original's own CPU reference paths)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no checkout at {root}")
    with _checkout_on_path(root, stubs, bare, paths, provide):
        mod = importlib.import_module(module)
        if prepare is not None:
            prepare(importlib.import_module)
    return mod


# -- the models ----------------------------------------------------------------------------------------
def _ns(d: Mapping[str, Any]) -> types.SimpleNamespace:
    return types.SimpleNamespace(**d)


def _norm_layer(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """fixture.json's ``norm_layer = {"class", "eps"}`` -> the ``partial(nn.LayerNorm, eps=...)`` the original takes."""
    out = dict(kwargs)
    norm = out.get("norm_layer")
    if isinstance(norm, Mapping):
        out["norm_layer"] = partial(nn.LayerNorm, eps=float(norm.get("eps", 1e-5)))
    return out


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


@dataclass
class Original:
    """One original implementation and how to put it side by side with ours.

    ``kwargs(quick)``: the original's constructor arguments in fixture.json form (what the converter
    reads); ``construct(module, kwargs)``: the original built from them (``module``: the imported
    ``module``); ``inputs(kwargs, quick, g)``: the
    inputs; ``theirs``/``ours``: one forward returning the compared outputs (same order, same meaning).
    """

    name: str  # converter name
    label: str  # the configuration, for the table
    checkout: str  # folder under the checkouts directory
    module: str
    cls: str
    kwargs: Callable[[bool], dict[str, Any]]
    construct: Callable[[types.ModuleType, dict[str, Any]], nn.Module]
    inputs: Callable[[dict[str, Any], bool, torch.Generator], Inputs]
    theirs: Callable[[nn.Module, Inputs], list[Tensor]]
    ours: Callable[[nn.Module, Inputs], list[Tensor]]
    modes: tuple[str, ...] = ("train",)  # "train": forward+backward, "infer": eval, no autograd
    stubs: tuple[str, ...] = ()
    bare: tuple[str, ...] = ()
    prepare: Callable[[Callable[[str], types.ModuleType]], None] | None = None
    paths: tuple[str, ...] = ()  # further folders of the checkout to put on sys.path
    provide: dict[str, dict[str, Any]] = field(default_factory=dict)  # real attributes on stubs
    grad_inputs: bool = True  # also compare the gradients of the floating-point inputs
    while_building: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    # (their outputs, our outputs) -> per output, the entries the comparison passes over (None: all
    # compared) and a sentence saying how many and why; only for outputs that are ill-conditioned
    # functions of other outputs that are themselves compared everywhere (see _atan2_conditioning)
    ill_conditioned: Callable[[list[Tensor | None], list[Tensor | None]], tuple[list[Tensor | None], str]] | None = None
    note: str = ""
    converter: str = ""  # chanformer converter name when ``name`` (the row's key) differs from it

    @property
    def converter_name(self) -> str:
        return self.converter or self.name

    def load(self, checkouts: Path) -> types.ModuleType:
        root = checkouts / self.checkout
        with self.while_building():
            return import_original(root, self.module, self.stubs, self.bare, self.prepare,
                                   [root / p for p in self.paths], self.provide)


def _tuple(out: Any) -> list[Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


# SOFTS ----------------------------------------------------------------------------------------------------
def _softs_kwargs(quick: bool) -> dict[str, Any]:
    big = dict(seq_len=96, pred_len=96, d_model=512, d_core=128, d_ff=512, e_layers=3, enc_in=321)
    small = dict(seq_len=24, pred_len=12, d_model=16, d_core=8, d_ff=16, e_layers=1, enc_in=5)
    cfg = (small if quick else big) | dict(dropout=0.0, activation="gelu", use_norm=True)
    return {"configs": cfg}


def _softs_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    cfg, b = kw["configs"], 2 if quick else 16
    return {"x_enc": _randn(g, b, cfg["seq_len"], cfg["enc_in"]),
            "x_mark_enc": torch.rand(b, cfg["seq_len"], 4, generator=g) - 0.5}


def _softs_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    from chanformer.batch import ChannelBatch

    values = x["x_enc"].transpose(1, 2)
    ids = torch.arange(values.shape[1]).expand(values.shape[0], -1)
    batch = ChannelBatch(values, ids, torch.ones(ids.shape, dtype=torch.bool),
                         covariates=x["x_mark_enc"].transpose(1, 2))
    return [model.forecast_with_tokens(batch)[0].transpose(1, 2)]  # type: ignore[operator]


# ChannelViT ------------------------------------------------------------------------------------------------
def _channelvit_kwargs(quick: bool) -> dict[str, Any]:
    if quick:
        size = dict(img_size=[32], patch_size=8, in_chans=3, embed_dim=32, depth=1, num_heads=2)
    else:  # ChannelViT-S/16 (the repo's channelvit_small) on 8 channels at 96 px
        size = dict(img_size=[96], patch_size=16, in_chans=8, embed_dim=384, depth=12, num_heads=6)
    return size | dict(num_classes=0, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                       attn_drop_rate=0.0, drop_path_rate=0.0,
                       norm_layer={"class": "torch.nn.LayerNorm", "eps": 1e-6})


def _channelvit_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    b, c, s = (2 if quick else 8), kw["in_chans"], kw["img_size"][0]
    return {"x": _randn(g, b, c, s, s), "channels": torch.arange(c).expand(b, -1).clone()}


def _channelvit_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    from chanformer.batch import ChannelBatch

    ids = x["channels"]
    return [model(ChannelBatch(x["x"], ids, torch.ones(ids.shape, dtype=torch.bool)))]


# ChAda-ViT ------------------------------------------------------------------------------------------------
def _chadavit_kwargs(quick: bool) -> dict[str, Any]:
    if quick:
        size = dict(img_size=[16], patch_size=8, embed_dim=32, depth=1, num_heads=2)
    else:  # the repo's chada_vit(): 12 blocks, 2 heads, embed 192 (chanformer's chadavit_small), 64 px
        size = dict(img_size=[64], patch_size=16, embed_dim=192, depth=12, num_heads=2)
    return size | dict(in_chans=1, num_classes=0, drop_rate=0.0, drop_path_rate=0.0, return_all_tokens=False,
                       max_number_channels=10, norm_layer={"class": "torch.nn.LayerNorm", "eps": 1e-6})


def _chadavit_channels(quick: bool) -> tuple[int, int]:
    return (2, 3) if quick else (8, 5)  # batch, channels per image (of 10 slots)


def _chadavit_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    b, c = _chadavit_channels(quick)
    s = kw["img_size"][0]
    return {"x": _randn(g, b * c, 1, s, s), "num_channels": torch.full((b,), c)}


def _chadavit_theirs(model: nn.Module, x: Inputs) -> list[Tensor]:
    return [model(x["x"], 0, [x["num_channels"].tolist()])]


def _chadavit_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    from chanformer.hub.converters.chadavit import stacked_to_batch

    return [model(stacked_to_batch(x["x"], x["num_channels"].tolist()))]


# ECAPA-TDNN -----------------------------------------------------------------------------------------------
def _ecapa_kwargs(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(input_size=20, channels=[16, 16, 16, 16, 48], kernel_sizes=[5, 3, 3, 3, 1],
                    dilations=[1, 2, 3, 4, 1], attention_channels=8, lin_neurons=8, res2net_scale=4,
                    se_channels=8, global_context=True)
    return dict(input_size=80, channels=[512, 512, 512, 512, 1536], kernel_sizes=[5, 3, 3, 3, 1],
                dilations=[1, 2, 3, 4, 1], attention_channels=128, lin_neurons=192, res2net_scale=8,
                se_channels=128, global_context=True)


def _ecapa_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    b, t = (2, 30) if quick else (16, 200)
    return {"x": _randn(g, b, t, kw["input_size"]), "lengths": torch.ones(b)}


def _ecapa_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    return [model.embed(x["x"].transpose(1, 2), x["lengths"])[:, None]]  # type: ignore[operator]


# DBConformer ----------------------------------------------------------------------------------------------
def _dbconformer_kwargs(quick: bool) -> dict[str, Any]:
    chn, n_times, emb = (4, 251, 20) if quick else (22, 1001, 40)
    args = dict(data_name="BNCI2014001-4", chn=chn, patch_size=125, time_sample_num=n_times, class_num=4,
                spa_dim=16, gate_flag=False, posemb_flag=True, branch="all", chn_atten_flag=True)
    return dict(emb_size=emb, tem_depth=2, chn_depth=2, chn=chn, n_classes=4, args=args)


def _dbconformer_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    return {"x": _randn(g, 2 if quick else 32, 1, kw["chn"], kw["args"]["time_sample_num"])}


def _dbconformer_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    from chanformer.batch import ChannelBatch

    v = x["x"].squeeze(1)
    ids = torch.arange(v.shape[1]).expand(v.shape[0], -1)
    features = model(ChannelBatch(v, ids, torch.ones(ids.shape, dtype=torch.bool)))
    return [features, model.classifier(features)]  # type: ignore[operator]


# MVPFormer ------------------------------------------------------------------------------------------------
def _mvpformer_kwargs(quick: bool) -> dict[str, Any]:
    if quick:
        size = dict(n_positions=8, n_channels=8, n_embd=32, n_layer=1, n_head=2, n_head_kv=1, n_inner=48)
    else:
        size = dict(n_positions=32, n_channels=32, n_embd=256, n_layer=4, n_head=4, n_head_kv=2, n_inner=1024)
    return size | dict(global_att=True, resid_pdrop=0.0, attn_pdrop=0.0, embd_pdrop=0.0,
                       wave_encoder_kwargs={"size_input": 512, "size_output": size["n_embd"]})


def _mvpformer_construct(mod: types.ModuleType, kw: dict[str, Any]) -> nn.Module:
    config = mod.MVPFormerConfig(**{k: v for k, v in kw.items() if k != "wave_encoder_kwargs"})
    return mod.MVPFormerModel(config)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _pre_ampere() -> Iterator[None]:
    """The original asks ``torch.cuda.get_device_capability()`` at import and in every block's constructor
    (flash kernel from sm80 on); on a CPU-only torch that raises. While it is built, the answer is (0, 0):
    the original then takes its own non-flash attention (``MVPFormerGQAAttention``), as on an older GPU."""
    saved = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda *a, **k: (0, 0)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.get_device_capability = saved  # type: ignore[assignment]


def _mvpformer_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    b, t, c = (1, 3, 4) if quick else (2, 25, 32)
    return {"inputs_embeds": _randn(g, b, t, c, kw["n_embd"])}


def _mvpformer_theirs(model: nn.Module, x: Inputs) -> list[Tensor]:
    return [model(inputs_embeds=x["inputs_embeds"]).last_hidden_state]


def _mvpformer_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    return [model.backbone(x["inputs_embeds"])]  # type: ignore[operator]


# ACMIL ----------------------------------------------------------------------------------------------------
def _acmil_kwargs(quick: bool) -> dict[str, Any]:
    feat, inner, tokens, masked = (32, 16, 3, 5) if quick else (1024, 512, 5, 10)
    return dict(D=16 if quick else 128, droprate=0.0, n_token=tokens, n_masked_patch=masked, mask_drop=0.6,
                conf=dict(D_feat=feat, D_inner=inner, n_class=2, n_token=tokens))


def _acmil_construct(mod: types.ModuleType, kw: dict[str, Any]) -> nn.Module:
    return mod.ACMIL_GA(_ns(kw["conf"]), **{k: v for k, v in kw.items() if k != "conf"})  # type: ignore[no-any-return]


def _acmil_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    return {"x": _randn(g, 1, 50 if quick else 8000, kw["conf"]["D_feat"])}


def _acmil_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    out = model.forward_tensors(x["x"])  # type: ignore[operator]
    return [out.branch_logits[0], out.slide_logits, out.attention]


# GAAM -----------------------------------------------------------------------------------------------------
def _gaam_kwargs(quick: bool) -> dict[str, Any]:
    heads, gauss = (2, 3) if quick else (8, 5)
    return dict(norm_axis=2, num_heads=heads, num_gaussians=gauss, padding_value=None, eps=1e-8)


def _gaam_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator) -> Inputs:
    return {"x": _randn(g, *((2, 8, 16) if quick else (16, 256, 512)))}


# MambAttention --------------------------------------------------------------------------------------------
def _mambattention_kwargs(quick: bool) -> dict[str, Any]:
    if quick:
        model = dict(hid_feature=8, num_tfmamba=1, d_state=4, d_conv=4, expand=2)
    else:  # the released checkpoint's configuration (checkpoints/MambAttention_seed3441_VB-DemandEx.yaml)
        model = dict(hid_feature=64, num_tfmamba=4, d_state=16, d_conv=4, expand=4)
    model |= dict(compress_factor=0.3, norm_epsilon=1e-5, beta=2.0, input_channel=2, output_channel=1)
    stft = dict(sampling_rate=16000, n_fft=400, hop_size=100, win_size=400)
    return {"cfg": {"model_cfg": model, "stft_cfg": stft}}


def _mambattention_inputs(kw: dict[str, Any], quick: bool, g: torch.Generator, seconds: float = 1.0) -> Inputs:
    from chanformer.hub.converters import get_converter

    wav = _randn(g, 1, 1600 if quick else round(16000 * seconds)) * 0.1  # 0.1 s (quick) / `seconds` at 16 kHz
    wav = wav * torch.sqrt(wav.shape[-1] / wav.pow(2).sum(-1, keepdim=True))  # the repo's RMS normalisation
    stft_model = get_converter("mambattention").build(kw)
    with torch.no_grad():
        mag, pha, _ = stft_model.stft(wav)  # type: ignore[operator]
    return {"noisy_mag": mag, "noisy_pha": pha}


def _with_phase_logits(model: nn.Module, decoder: nn.Module, run: Callable[[], Any]) -> list[Tensor]:
    """``run()``'s outputs (denoised magnitude, phase, complex spectrum), then the phase decoder's two
    1x1-conv outputs ``x_r``, ``x_i`` [B, F, T] whose ``atan2(x_i, x_r)`` is the phase (captured with
    forward hooks; the original and ours name these convolutions alike)."""
    got: dict[str, Tensor] = {}
    handles = [getattr(decoder, f"phase_conv_{part}").register_forward_hook(
                   lambda mod, args, out, part=part: got.__setitem__(part, out))
               for part in ("r", "i")]
    try:
        outs = _tuple(run())
    finally:
        for h in handles:
            h.remove()
    return outs + [got[part][:, 0].transpose(1, 2) for part in ("r", "i")]


def _mambattention_theirs(model: nn.Module, x: Inputs) -> list[Tensor]:
    return _with_phase_logits(model, model.phase_decoder, lambda: model(x["noisy_mag"], x["noisy_pha"]))  # type: ignore[arg-type]


def _mambattention_ours(model: nn.Module, x: Inputs) -> list[Tensor]:
    return _with_phase_logits(model, model.phase_decoder,  # type: ignore[arg-type]
                              lambda: model.forward_spectrum(x["noisy_mag"], x["noisy_pha"]))  # type: ignore[operator]


def _atan2_conditioning(theirs: list[Tensor | None], ours: list[Tensor | None]) -> tuple[list[Tensor | None], str]:
    """Outputs ``[mag, pha, com, x_r, x_i]``: the phase entries (and both parts of the complex output
    there) that the already-compared difference of ``(x_r, x_i)`` can move past the tolerance.

    ``pha = atan2(x_i, x_r)`` changes by up to ``|d(x_r, x_i)| / |(x_r, x_i)|`` for a change
    ``d(x_r, x_i)`` of its arguments, so where ``|(x_r, x_i)|`` is tiny, float32 rounding in the
    network moves the angle legitimately (at the full configuration on random noise, one bin of 32,361
    has ``|(x_r, x_i)| = 7e-4`` while float32 rounding moves ``x_r``, ``x_i`` by ~1e-6: a 9e-4 change
    of the angle, in the original as in ours against float64 runs, which agree to 2e-12). Those entries
    are passed over, and only those: a phase entry is excluded when the two sides' ``(x_r, x_i)``
    differ by more than ``ATOL * |(x_r, x_i)|``, i.e. when that difference alone can move the angle by
    more than the tolerance; the complex output ``mag * (cos, sin)(pha)`` moves ``mag`` times as much,
    so its entries are excluded when ``mag`` times that shift exceeds ``ATOL`` (the compressed
    magnitude reaches ~2.5 here). ``x_r``, ``x_i`` and the magnitude are compared at every entry, so a wrong
    weight or any error upstream of ``atan2`` still fails there, and an error in ``atan2`` itself or in
    assembling the complex output (same ``(x_r, x_i)``) leaves nothing excused. At most
    ``MAX_ILL_CONDITIONED`` of the bins are passed over; when more qualify (``(x_r, x_i)`` differing
    broadly, even within the tolerance), none is."""
    mag_t, pha_t, r_t, i_t, pha_o, r_o, i_o = (
        side[k].double() for side, ks in ((theirs, (0, 1, 3, 4)), (ours, (1, 3, 4))) for k in ks  # type: ignore[union-attr]
    )
    shift = torch.hypot(r_o - r_t, i_o - i_t) / torch.hypot(r_t, i_t)  # ~ the angle change it explains
    moved = shift > ATOL  # the phase
    moved_com = moved | (shift * mag_t > ATOL)  # the complex output: mag (cos, sin)(pha) moves mag times more
    n, n_com, total = int(moved.sum()), int(moved_com.sum()), moved.numel()
    if n_com > MAX_ILL_CONDITIONED * total:  # not a few unlucky bins: compare every bin
        return [], (f"atan2 ill-conditioned at {n_com} of {total} bins, more than {MAX_ILL_CONDITIONED:.1%}: "
                    "none passed over")
    there = f", phase error there {float((pha_o - pha_t).abs()[moved_com].max()):.1e}" if n_com else ""
    note = (f"phase passed over at {n}, complex output at {n_com} of {total} bins where atan2 is ill-conditioned "
            f"(the compared (x_r, x_i) difference can move them past the tolerance{there})")
    return [None, moved, moved_com[..., None].expand(*moved_com.shape, 2), None, None], note


def _mambattention_prepare(imp: Callable[[str], types.ModuleType]) -> None:
    """The original on CPU: the authors' own reference selective scan and reference RMSNorm (both in the
    vendored mamba-ssm 1.2.2) in place of the CUDA/Triton kernels; the causal-conv1d fast path is off
    because ``causal_conv1d`` is absent (the original's own fallback)."""
    simple = imp("mamba_ssm.modules.mamba_simple")
    scan = imp("mamba_ssm.ops.selective_scan_interface")
    norms = imp("mamba_ssm.ops.triton.layernorm")
    simple.selective_scan_fn = scan.selective_scan_ref
    simple.causal_conv1d_fn = None  # Mamba.forward then takes its own non-fused path
    ref = norms.rms_norm_ref

    def rms_forward(self: nn.Module, x: Tensor, residual: Tensor | None = None, prenorm: bool = False,
                    residual_in_fp32: bool = False) -> Any:
        return ref(x, self.weight, self.bias, residual=residual, eps=self.eps, prenorm=prenorm)

    norms.RMSNorm.forward = rms_forward


# the table ------------------------------------------------------------------------------------------------
def _kw(cls: str, norm: bool = False) -> Callable[[types.ModuleType, dict[str, Any]], nn.Module]:
    def construct(mod: types.ModuleType, kw: dict[str, Any]) -> nn.Module:
        return getattr(mod, cls)(**(_norm_layer(kw) if norm else kw))  # type: ignore[no-any-return]

    return construct


ORIGINALS: dict[str, Original] = {o.name: o for o in [
    Original("softs", "SOFTS, 321 channels, 96 -> 96, d512 / core 128 / ff 512, 3 layers, batch 16",
             "SOFTS", "models.SOFTS", "Model", _softs_kwargs,
             lambda mod, kw: mod.Model(_ns(kw["configs"])), _softs_inputs,
             lambda m, x: [m(x["x_enc"], x["x_mark_enc"], None, None)], _softs_ours, grad_inputs=False,
             note="input gradients not compared: the original normalises its input in place"),
    Original("channelvit", "ChannelViT-S/16, 8 channels, 96 px, batch 8",
             "ChannelViT", "channelvit.backbone.channel_vit", "ChannelVisionTransformer", _channelvit_kwargs,
             _kw("ChannelVisionTransformer", norm=True), _channelvit_inputs,
             lambda m, x: [m(x["x"], {"channels": x["channels"]})], _channelvit_ours,
             bare=("channelvit", "channelvit.backbone")),
    Original("chadavit", "ChAda-ViT small, 5 of 10 channel slots, 64 px, batch 8",
             "chada_vit", "src.backbones.vit.chada_vit", "ChAdaViT", _chadavit_kwargs,
             _kw("ChAdaViT", norm=True), _chadavit_inputs, _chadavit_theirs, _chadavit_ours,
             stubs=("cv2", "tifffile", "omegaconf", "timm"),
             bare=("src", "src.backbones", "src.backbones.vit", "src.utils")),
    Original("ecapa_tdnn", "ECAPA-TDNN C=512, 80 x 200 frames, batch 16",
             "speechbrain", "speechbrain.lobes.models.ECAPA_TDNN", "ECAPA_TDNN", _ecapa_kwargs,
             _kw("ECAPA_TDNN"), _ecapa_inputs, lambda m, x: [m(x["x"], x["lengths"])], _ecapa_ours,
             stubs=("torchaudio",),
             bare=("speechbrain", "speechbrain.lobes", "speechbrain.lobes.models"),
             note="SpeechBrain checkout (or its package's folder); torchaudio stood in (not used by ECAPA_TDNN)"),
    Original("dbconformer", "DBConformer, 22 x 1001, batch 32",
             "DBConformer", "models.DBConformer", "DBConformer", _dbconformer_kwargs,
             lambda mod, kw: mod.DBConformer(_ns(kw["args"]), **{k: v for k, v in kw.items() if k != "args"}),
             _dbconformer_inputs, lambda m, x: _tuple(m(x["x"])), _dbconformer_ours,
             stubs=("timm",), bare=("models",),
             provide={"timm.models.layers": {"trunc_normal_": nn.init.trunc_normal_}},
             note="needs einops; timm stood in, its trunc_normal_ (only the original's random init) by torch's"),
    Original("mvpformer", "MVPFormer backbone d256, 4 layers, C=32, T=25, batch 2",
             "multi-variate-parallel-transformer", "models.mvpformer", "MVPFormerModel", _mvpformer_kwargs,
             _mvpformer_construct, _mvpformer_inputs, _mvpformer_theirs, _mvpformer_ours,
             stubs=("deepspeed", "eeg_datasets", "loggers", "torchtune", "flash_attn"), while_building=_pre_ampere,
             note="original's non-flash attention (torch.cuda capability reported as (0, 0) while it is built); "
                  "needs transformers 4.43 (GPT2 base classes), einops, loralib, triton"),
    Original("acmil", "ACMIL 1024 -> 512, 5 branches, 8,000 instances",
             "ACMIL", "architecture.transformer", "ACMIL_GA", _acmil_kwargs,
             _acmil_construct, _acmil_inputs, lambda m, x: _tuple(m(x["x"])), _acmil_ours,
             bare=("architecture",), note="needs einops"),
    Original("gaam", "GAAM, 8 heads x 5 Gaussians, [16, 256, 512]",
             "Gaussian-Adaptive-Attention", "gaussian_adaptive_attention.GaussianBlock",
             "MultiHeadGaussianAdaptiveAttention", _gaam_kwargs, _kw("MultiHeadGaussianAdaptiveAttention"), _gaam_inputs,
             lambda m, x: [m(x["x"])], lambda m, x: [m(x["x"])], bare=("gaussian_adaptive_attention",)),
    Original("mambattention", "MambAttention, full config, 1 s of 16 kHz",
             "MambAttention", "models.generator", "MambAttention", _mambattention_kwargs,
             lambda mod, kw: mod.MambAttention(kw["cfg"]), _mambattention_inputs, _mambattention_theirs,
             _mambattention_ours, modes=("infer",), ill_conditioned=_atan2_conditioning,
             stubs=("selective_scan_cuda", "transformers"),
             bare=("models", "mamba_ssm"), prepare=_mambattention_prepare, paths=("mamba_install",),
             note="original on its authors' CPU reference scan and RMSNorm (vendored mamba_install/); "
                  "needs einops; the checkout's mamba_install/ folder is put on sys.path"),
    # training at 1 s does not fit: the original's reference scan keeps every step for backward
    # (> 19 GB of RSS on a 23 GB machine); a quarter second (41 STFT frames) takes ~6 GB
    Original("mambattention_train", "MambAttention, full config, 0.25 s of 16 kHz",
             "MambAttention", "models.generator", "MambAttention", _mambattention_kwargs,
             lambda mod, kw: mod.MambAttention(kw["cfg"]),
             lambda kw, quick, g: _mambattention_inputs(kw, quick, g, seconds=0.25), _mambattention_theirs,
             _mambattention_ours, modes=("train",), ill_conditioned=_atan2_conditioning,
             stubs=("selective_scan_cuda", "transformers"),
             bare=("models", "mamba_ssm"), prepare=_mambattention_prepare, paths=("mamba_install",),
             converter="mambattention",
             note="training row at 0.25 s (1 s exceeds this machine's memory for the original); "
                  "original on its authors' CPU reference scan and RMSNorm"),
]}


def profiled_rows() -> list[str]:
    """The training rows that the floor and bf16 benchmarks run by default: every one but
    MambAttention's, whose original takes ~85 s per training step even at 0.25 s."""
    return [n for n, s in ORIGINALS.items() if "train" in s.modes and s.converter_name != "mambattention"]


def measure_rows(
    models: Sequence[str] | None, measure_one: Callable[[Original], R], describe: Callable[[R], str]
) -> list[R]:
    """``measure_one`` of each named row (default: :func:`profiled_rows`), printing ``describe(row)``
    as it goes; an original whose own dependencies are missing here is reported and skipped."""
    names = list(models) if models else profiled_rows()
    unknown = sorted(set(names) - set(ORIGINALS))
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; known: {sorted(ORIGINALS)}")
    rows = []
    for name in names:
        try:
            row = measure_one(ORIGINALS[name])
        except ImportError as err:
            print(f"{name}: skipped, cannot import the original ({type(err).__name__}: {err})", flush=True)
            continue
        print(f"{name}: {describe(row)}", flush=True)
        rows.append(row)
    return rows


# -- measurement ---------------------------------------------------------------------------------------
@dataclass
class SideBySide:
    name: str
    label: str
    mode: str  # train (forward+backward) | infer
    status: str = "ok"  # ok | FAIL | skipped
    reason: str = ""
    max_err: float | None = None
    original_ms: list[float] = field(default_factory=list)
    ours_ms: list[float] = field(default_factory=list)
    original_mem_mb: float | None = None
    ours_mem_mb: float | None = None
    order: list[str] = field(default_factory=list)  # the timed steps, in the order they ran
    note: str = ""

    @property
    def original_median(self) -> float | None:
        return statistics.median(self.original_ms) if self.original_ms else None

    @property
    def ours_median(self) -> float | None:
        return statistics.median(self.ours_ms) if self.ours_ms else None

    @property
    def ratio(self) -> float | None:
        """original / chanformer (median times); above 1: chanformer is faster."""
        a, b = self.original_median, self.ours_median
        return a / b if a and b else None

    @property
    def ratio_spread(self) -> tuple[float, float] | None:
        """min and max of the paired ratios original_i / ours_i."""
        pairs = [a / b for a, b in zip(self.original_ms, self.ours_ms) if b]
        return (min(pairs), max(pairs)) if pairs else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"original_median_ms": self.original_median, "ours_median_ms": self.ours_median,
                               "ratio": self.ratio, "ratio_spread": self.ratio_spread}


def _outputs_and_grads(
    fn: Callable[[Inputs], list[Tensor]], x: Inputs, grad_inputs: bool, backward: bool = True
) -> list[Tensor | None]:
    """Outputs of one eval-mode forward, then (after backward of the mean square of the outputs) the
    gradients of the floating-point inputs when ``grad_inputs``; parameter gradients stay in ``.grad``.
    ``backward=False``: outputs only, without autograd (inference-only rows)."""
    if not backward:
        with torch.no_grad():
            return list(fn(x))
    leaves = {k: v.detach().clone().requires_grad_(grad_inputs and v.is_floating_point()) for k, v in x.items()}
    outs = fn(leaves)
    loss = sum(o.float().square().mean() for o in outs if o.is_floating_point() and o.requires_grad)
    if isinstance(loss, Tensor):
        loss.backward()
    grads = [v.grad if v.requires_grad else None for v in leaves.values()] if grad_inputs else []
    return [o.detach() for o in outs] + grads


def _param_grads(
    theirs: nn.Module, ours: nn.Module, converter: Any, kwargs: Mapping[str, Any]
) -> tuple[list[Tensor | None], list[Tensor | None], str]:
    """The original's parameter gradients renamed by the converter (as if they were a checkpoint) next to
    ours, for the names both have; ``note`` says how many were compared or why none."""
    grads = {k: p.grad for k, p in theirs.named_parameters() if p.grad is not None}
    try:
        renamed = converter.convert_state_dict(grads, kwargs)
    except Exception as err:  # a converter that needs the whole checkpoint (e.g. buffers) to rename
        return [], [], f"parameter gradients not compared ({type(err).__name__}: {err})"
    mine = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    both = sorted(set(renamed) & set(mine))
    return [renamed[k] for k in both], [mine[k] for k in both], f"{len(both)} of {len(mine)} parameter gradients compared"


def _compare(
    theirs: list[Tensor | None], ours: list[Tensor | None], skip: Sequence[Tensor | None] = ()
) -> tuple[float, str]:
    """Worst absolute error and the problems (empty: all within tolerance); ``skip[i]`` (optional,
    boolean, output ``i``'s shape): entries passed over (``Original.ill_conditioned``)."""
    if len(theirs) != len(ours):
        return float("inf"), f"{len(theirs)} outputs from the original, {len(ours)} from ours"
    worst, problems = 0.0, []
    for i, (t, o) in enumerate(zip(theirs, ours)):
        if t is None or o is None:
            if (t is None) != (o is None):
                problems.append(f"#{i}: gradient on one side only")
            continue
        if t.shape != o.shape:
            problems.append(f"#{i}: shape {tuple(o.shape)} != original {tuple(t.shape)}")
            continue
        t, o = t.double(), o.double()
        err = (o - t).abs()
        mask = skip[i] if i < len(skip) else None
        if mask is not None:
            err = err.masked_fill(mask, 0.0)
        if err.numel():
            worst = max(worst, float(err.max()))
        bad = ~(err <= ATOL + RTOL * t.abs())
        if bool(bad.any()):
            problems.append(f"#{i}: {int(bad.sum())} of {err.numel()} entries off (max abs err {float(err.max()):.2e})")
    return worst, "; ".join(problems)


def _step(fn: Callable[[Inputs], list[Tensor]], model: nn.Module, x: Inputs, mode: str) -> Callable[[], None]:
    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        outs = fn(x)
        loss = sum(o.float().square().mean() for o in outs if o.is_floating_point() and o.requires_grad)
        if isinstance(loss, Tensor):
            loss.backward()

    def infer_step() -> None:
        with torch.no_grad():
            fn(x)

    return train_step if mode == "train" else infer_step


def interleave(steps: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> tuple[dict[str, list[float]], list[str]]:
    """Time the callables in turns (a, b, a, b, ...) after ``warmup`` untimed turns; returns the wall
    times in ms per name and the order in which the timed calls ran."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    order: list[str] = []
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
            order.append(name)
    return times, order


def checkouts_root(checkouts: str | os.PathLike[str] | None) -> Path:
    """The folder of the originals' checkouts: ``checkouts``, else ``$CHANFORMER_ORIGINALS``."""
    where = checkouts if checkouts is not None else os.environ.get(ENV_VAR)
    if not where:
        raise ValueError(f"no checkouts directory: pass --checkouts DIR or set {ENV_VAR}")
    root = Path(where).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"checkouts directory {root} does not exist (pass --checkouts DIR or set {ENV_VAR})")
    return root


def build_pair(
    spec: Original, module: types.ModuleType, kwargs: dict[str, Any], quick: bool
) -> tuple[nn.Module, nn.Module, Inputs]:
    """The original built from ``kwargs`` (seed 0), ours from its converted ``state_dict``, both in
    eval mode, and the inputs (seed 0)."""
    from chanformer.hub.converters import get_converter

    torch.manual_seed(0)
    with spec.while_building():
        theirs = spec.construct(module, kwargs).eval()
    ours = get_converter(spec.converter_name).load(theirs.state_dict(), kwargs).eval()
    return theirs, ours, spec.inputs(kwargs, quick, torch.Generator().manual_seed(0))


def _bench(spec: Original, checkouts: Path, quick: bool, repeats: int, modes: Sequence[str]) -> list[SideBySide]:
    from chanformer.hub.converters import get_converter

    label = f"{spec.name} (quick: tiny configuration)" if quick else spec.label
    rows = [SideBySide(spec.name, label, m, note=spec.note) for m in spec.modes if m in modes]
    if not rows:
        return []

    def skip(reason: str) -> list[SideBySide]:
        for r in rows:
            r.status, r.reason = "skipped", reason
        return rows

    if not (checkouts / spec.checkout).is_dir():
        return skip(f"no checkout {checkouts / spec.checkout}")
    try:
        module = spec.load(checkouts)
    except Exception as err:  # an original that cannot be imported here: say why, go on
        return skip(f"cannot import the original: {type(err).__name__}: {err}")
    kwargs = spec.kwargs(quick)
    try:
        theirs_model, ours_model, x = build_pair(spec, module, kwargs, quick)
        converter = get_converter(spec.converter_name)
        # gradients are checked when a training step is timed; inference-only runs check the outputs
        # (MambAttention's reference scan keeps every step for backward: > 19 GB at the full config)
        backward = any(r.mode == "train" for r in rows)
        want = _outputs_and_grads(lambda t: spec.theirs(theirs_model, t), x, spec.grad_inputs, backward)
        got = _outputs_and_grads(lambda t: spec.ours(ours_model, t), x, spec.grad_inputs, backward)
    except Exception as err:
        return skip(f"cannot run the original or ours: {type(err).__name__}: {err}")
    their_grads, our_grads, grads_note = (
        _param_grads(theirs_model, ours_model, converter, kwargs) if backward
        else ([], [], "outputs compared (no gradients: inference only)")
    )
    passed_over: list[Tensor | None] = []
    skip_note = ""
    if spec.ill_conditioned is not None and len(want) == len(got):  # outputs first, then input gradients
        passed_over, skip_note = spec.ill_conditioned(want, got)
    max_err, problems = _compare(want + their_grads, got + our_grads, passed_over)
    for r in rows:
        r.max_err = max_err
        r.note = "; ".join(n for n in (grads_note, skip_note, r.note) if n)
    if problems:
        for r in rows:
            r.status, r.reason = "FAIL", f"outputs differ (atol={ATOL}, rtol={RTOL}): {problems}"
        return rows
    for r in rows:
        for m in (theirs_model, ours_model):
            m.train(r.mode == "train")
        steps = {"original": _step(lambda t: spec.theirs(theirs_model, t), theirs_model, x, r.mode),
                 "ours": _step(lambda t: spec.ours(ours_model, t), ours_model, x, r.mode)}
        times, r.order = interleave(steps, repeats)
        r.original_ms, r.ours_ms = times["original"], times["ours"]
        cpu = torch.device("cpu")
        r.original_mem_mb = peak_mem_mb(steps["original"], cpu)
        r.ours_mem_mb = peak_mem_mb(steps["ours"], cpu)
    return rows


def run_originals(
    checkouts: str | os.PathLike[str] | None = None,
    models: Sequence[str] | None = None,
    quick: bool = False,
    repeats: int = 5,
    json_path: str | os.PathLike[str] | None = None,
    modes: Sequence[str] = ("train", "infer"),
    print_table: bool = True,
    originals: Mapping[str, Original] | None = None,
) -> list[SideBySide]:
    """Run the side-by-side rows (``models``: converter names, default all); ``checkouts`` defaults to
    ``$CHANFORMER_ORIGINALS``. Returns the rows; ``json_path``: also written there (atomically)."""
    specs = ORIGINALS if originals is None else originals
    root = checkouts_root(checkouts)
    unknown = sorted(set(models or []) - set(specs))
    if unknown:
        raise ValueError(f"unknown models {', '.join(unknown)}; choose from {', '.join(specs)}")
    load_before = os.getloadavg()
    started = time.time()
    rows: list[SideBySide] = []
    for name in models or list(specs):
        for r in _bench(specs[name], root, quick, repeats, modes):
            rows.append(r)
            if print_table:  # progress: a full run takes minutes per model on a small CPU
                print(f"[originals] {r.name} {r.mode}: {r.status} ratio={_f(r.ratio, '.2f')} {r.reason}",
                      file=sys.stderr, flush=True)
    if print_table:
        print_side_by_side(rows)
    if json_path:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "quick": quick,
                "repeats": repeats, "warmup": 1, "timing": "interleaved original/ours, wall time per step",
                "memory": MEMORY_METHOD, "tolerance": {"atol": ATOL, "rtol": RTOL},
                "checkouts": str(root), "seconds": round(time.time() - started, 1)}
        payload = {"meta": meta, "rows": [r.to_dict() for r in rows]}
        write_text_atomic(Path(json_path), json.dumps(payload, indent=2))
    return rows


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_side_by_side(rows: Sequence[SideBySide]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"chanformer vs the originals on CPU ({torch.get_num_threads()} threads; memory: {MEMORY_METHOD})")
    for col in ("model, configuration", "step", "status", "max abs err", "original ms", "ours ms",
                "ratio orig/ours", "paired ratios", "orig MiB", "ours MiB", "reason"):
        table.add_column(col)
    for r in rows:
        spread = r.ratio_spread
        table.add_row(
            r.label, r.mode, r.status, _f(r.max_err, ".1e"),
            "-" if not r.original_ms else f"{r.original_median:.1f} [{min(r.original_ms):.1f}-{max(r.original_ms):.1f}]",
            "-" if not r.ours_ms else f"{r.ours_median:.1f} [{min(r.ours_ms):.1f}-{max(r.ours_ms):.1f}]",
            _f(r.ratio, ".2f"), "-" if spread is None else f"{spread[0]:.2f}-{spread[1]:.2f}",
            _f(r.original_mem_mb, ".0f"), _f(r.ours_mem_mb, ".0f"), r.reason,
        )
    Console(width=250).print(table)
