r"""``chanformer embed MODEL INPUT... --out OUT.zarr``: embeddings of files or folders, written atomically.

``MODEL`` is a pretrained folder (``chanformer fit`` exports one to ``<run>/pretrained``) or a
Hugging Face Hub id; its input contract says how to preprocess. ``INPUT`` are EEG recordings,
images or audio files, or folders of them (the files of the model's kind, not recursive). The
output is one Zarr store (or a Parquet table with ``--format parquet``) holding every row:

* ``embeddings [N, D]`` float32, ``file [N]`` (index into the ``files`` attribute), ``row [N]``
  (window or tile within the file), ``onset_s [N]`` (window start; NaN for images), ``y``/``x``
  ``[N]`` (tile corner; -1 for signals);
* attributes: ``model``, ``files``, ``channels`` and ``dropped`` (per file: the channels used,
  and those left out with the reason), ``input_contract``.

A file that cannot be embedded is named on stderr and skipped; the others are written and the
command exits 1 with a summary. The output appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chanformer embed", description="embed recordings, images or audio with a pretrained model")
    p.add_argument("model", help="pretrained folder or Hugging Face Hub id (owner/name)")
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("--out", required=True, help="output .zarr store (or .parquet with --format parquet)")
    p.add_argument("--format", choices=("zarr", "parquet"), default=None, help="default: from the --out suffix, else zarr")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--cache-dir", default=None, help="Hugging Face Hub cache folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def collect_inputs(inputs: list[str], modality: str = "") -> list[Path]:
    """Files named, plus the files of a known kind in named folders (sorted; an OME-Zarr folder
    counts as one image). In folders, BrainVision ``.eeg`` data files beside their ``.vhdr`` and
    files of another kind than the model's are skipped."""
    from chanformer.pipelines import input_kind

    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"chanformer embed: no such file or folder: {path}")
        if path.is_file() or path.suffix.lower() == ".zarr":
            out.append(path)
            continue
        for child in sorted(path.iterdir()):
            kind = input_kind(child)
            if kind is None or (modality and kind != modality):
                continue
            if child.suffix.lower() == ".eeg" and child.with_suffix(".vhdr").exists():
                continue  # BrainVision data file, read through its header
            if child.is_file() or child.suffix.lower() == ".zarr":
                out.append(child)
    if not out:
        raise FileNotFoundError(f"chanformer embed: no {modality or 'known'} input files in {', '.join(inputs)}")
    return out


def _rows(results: list[tuple[Path, Any]]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {"embeddings": [], "file": [], "row": [], "onset_s": [], "y": [], "x": []}
    for i, (_, res) in enumerate(results):
        n = len(res)
        cols["embeddings"].append(res.embeddings.astype(np.float32))
        cols["file"].append(np.full(n, i, dtype=np.int32))
        cols["row"].append(np.arange(n, dtype=np.int32))
        cols["onset_s"].append(np.asarray(res.positions.get("onset_s", np.full(n, np.nan)), dtype=np.float64))
        cols["y"].append(np.asarray(res.positions.get("y", np.full(n, -1)), dtype=np.int64))
        cols["x"].append(np.asarray(res.positions.get("x", np.full(n, -1)), dtype=np.int64))
    return {k: np.concatenate(v) for k, v in cols.items()}


def write_zarr(out: Path, cols: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """One Zarr group with the row arrays and ``attrs``, written into a temporary folder and
    renamed into place (:func:`chanformer.io.atomic_directory`)."""
    import zarr

    from chanformer.io import atomic_directory

    with atomic_directory(out) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, data in cols.items():
            chunks = (max(1, min(len(data), 4096)), *data.shape[1:])
            if hasattr(group, "create_array"):  # zarr 3
                arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
                arr[...] = data
            else:  # pragma: no cover - zarr 2
                group.create_dataset(name, data=data, chunks=chunks)
        group.attrs.update(json.loads(json.dumps(attrs)))


def write_parquet(out: Path, cols: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """A Parquet table (``file`` as the file name, ``emb_<j>`` columns) with ``attrs`` as JSON in
    the schema metadata (key ``chanformer``), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chanformer.io import write_file_atomic

    files = attrs["files"]
    table = {"file": [files[i] for i in cols["file"]], "row": cols["row"], "onset_s": cols["onset_s"],
             "y": cols["y"], "x": cols["x"]}  # fmt: skip
    emb = cols["embeddings"]
    table |= {f"emb_{j}": emb[:, j] for j in range(emb.shape[1])}
    tab = pa.table(table).replace_schema_metadata({"chanformer": json.dumps(attrs)})
    write_file_atomic(out, lambda f: pq.write_table(tab, f))


def embed_main(args: list[str]) -> int:
    from chanformer.pipelines import Pipeline

    ns = _parser().parse_args(args)
    out = Path(ns.out)
    fmt = ns.format or ("parquet" if out.suffix.lower() in (".parquet", ".pq") else "zarr")
    if out.exists() and not ns.overwrite:
        print(f"chanformer embed: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    pipe = Pipeline.from_pretrained(ns.model, device=ns.device, batch_size=ns.batch_size, revision=ns.revision,
                                    cache_dir=ns.cache_dir)  # fmt: skip
    paths = collect_inputs(ns.inputs, pipe.contract.modality)
    results: list[tuple[Path, Any]] = []
    failed: dict[str, str] = {}
    for path in paths:
        try:
            res = pipe(path)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others; it is named below
            if not isinstance(e, (ValueError, OSError, TypeError, KeyError, NotImplementedError, RuntimeError)):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failed[str(path)] = first
            print(f"chanformer embed: skipped {path}: {first}", file=sys.stderr)
            continue
        results.append((path, res))
        print(res.summary())
    if not results:
        print(f"chanformer embed: no file could be embedded ({len(failed)} failed); nothing written", file=sys.stderr)
        return 1
    attrs = {
        "model": str(ns.model),
        "files": [str(p) for p, _ in results],
        "channels": {str(p): r.channels for p, r in results},
        "dropped": {str(p): r.dropped for p, r in results},
        "failed": failed,
        "input_contract": pipe.contract.to_json(),
    }
    cols = _rows(results)
    (write_parquet if fmt == "parquet" else write_zarr)(out, cols, attrs)
    n, d = cols["embeddings"].shape
    print(f"wrote {n} x {d} embeddings of {len(results)} file(s) to {out}")
    if failed:
        print(f"chanformer embed: {len(failed)} of {len(paths)} file(s) skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
