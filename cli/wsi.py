r"""``chanformer wsi synth|tile|extract|heatmap``: whole-slide images to feature bags to heatmaps.

Workflow::

    chanformer wsi synth runs/wsi/slides --n 24            # or bring your own pyramidal TIFFs
    chanformer wsi tile runs/wsi/slides --out runs/wsi/tiles --tile-size 64
    chanformer wsi extract runs/wsi/slides --tiles runs/wsi/tiles --store runs/wsi/bags.zarr \\
        --labels runs/wsi/slides/labels.csv
    chanformer fit --config wsi-acmil --data.init_args.store=runs/wsi/bags.zarr
    chanformer wsi heatmap --model runs/wsi-acmil/.../pretrained --store runs/wsi/bags.zarr --out runs/wsi/heatmaps

``tile`` and ``extract`` skip slides they already finished, so re-running after a crash resumes.
A slide that cannot be used (unreadable, not pyramidal, blank, a bad file name) is skipped and
named on stderr while the others are processed; the command then exits 1 with a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chanformer wsi", description="whole-slide image pipeline")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write synthetic pyramidal slides (label = presence of a rare tile pattern)")
    s.add_argument("out")
    s.add_argument("--n", type=int, default=24)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--tile-size", type=int, default=64)
    t = sub.add_parser("tile", help="tissue detection + tile coordinates (<out>/<slide>.tiles.json)")
    t.add_argument("slides", nargs="+", help="slide files or folders")
    t.add_argument("--out", required=True)
    t.add_argument("--tile-size", type=int, default=256)
    t.add_argument("--level", type=int, default=0)
    t.add_argument("--magnification", type=float, default=None)
    t.add_argument("--base-magnification", type=float, default=None)
    t.add_argument("--min-tissue", type=float, default=0.5)
    t.add_argument("--overwrite", action="store_true")
    e = sub.add_parser("extract", help="run an encoder over the tiles and write one Zarr bag per slide")
    e.add_argument("slides", nargs="+")
    e.add_argument("--store", required=True)
    e.add_argument("--labels", default=None, help="CSV with columns slide,label")
    e.add_argument("--tiles", default=None, help="folder of `wsi tile` outputs (default: tile on the fly)")
    e.add_argument("--encoder", default="tile-stats", help="'tile-stats' or a registered chanformer encoder")
    e.add_argument("--encoder-kwargs", default="{}", help="JSON")
    e.add_argument("--tile-size", type=int, default=256)
    e.add_argument("--level", type=int, default=0)
    e.add_argument("--min-tissue", type=float, default=0.5)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="cpu")
    h = sub.add_parser("heatmap", help="attention heatmaps (PNG) of a trained MIL model on slide thumbnails")
    h.add_argument("--model", required=True, help="pretrained folder exported by `chanformer fit`")
    h.add_argument("--store", required=True)
    h.add_argument("--out", required=True)
    h.add_argument("--slides", nargs="*", default=None, help="slide names (default: all bags)")
    return p


def wsi_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console

    console = Console()
    if args.cmd == "synth":
        from chanformer.datasets.wsi.slides import make_synthetic_slides

        info = make_synthetic_slides(args.out, n=args.n, seed=args.seed, size=args.size, tile_size=args.tile_size)
        console.print(f"wrote {len(info)} slides ({sum(d['label'] for d in info)} positive) to {args.out}")
        return 0
    if args.cmd == "tile":
        return _tile(args, console)
    if args.cmd == "extract":
        from chanformer.datasets.wsi.bags import read_grids
        from chanformer.datasets.wsi.slides import read_labels
        from chanformer.pipelines.wsi_features import extract_features

        report = extract_features(
            args.slides, args.store, args.encoder, encoder_kwargs=json.loads(args.encoder_kwargs),
            labels=read_labels(args.labels) if args.labels else None, tile_size=args.tile_size, level=args.level,
            min_tissue=args.min_tissue, grids=read_grids(args.tiles) if args.tiles else None,
            batch_size=args.batch_size, device=args.device, on_error="skip",
        )  # fmt: skip
        console.print(f"{len(report.written)} bags written, {len(report.skipped)} already complete; "
                      f"{report.n_tiles} tiles at {report.tiles_per_s:.0f} tiles/s -> {args.store}")  # fmt: skip
        return _failures("extract", report.failed, len(report.written) + len(report.skipped) + len(report.failed))
    return _heatmap(args, console)


def _tile(args: argparse.Namespace, console: object) -> int:
    from rich.progress import Progress

    from chanformer.datasets.wsi.slides import iter_slides, tile_slide
    from chanformer.io import write_text_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = list(iter_slides(args.slides))
    if not paths:
        raise FileNotFoundError(f"no slide files in {args.slides}")
    from chanformer.datasets.wsi.slides import slide_id

    n_tiles = 0
    failed: dict[str, str] = {}
    with Progress() as bar:
        task = bar.add_task("tiling", total=len(paths))
        for p in paths:
            try:
                target = out / f"{slide_id(p)}.tiles.json"
                if target.is_file() and not args.overwrite:
                    bar.advance(task)
                    continue
                grid = tile_slide(p, args.tile_size, args.level, args.magnification, args.base_magnification,
                                  args.min_tissue)  # fmt: skip
            except (ValueError, FileNotFoundError) as e:  # SlideReadError is a ValueError
                failed[str(p)] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                bar.advance(task)
                continue
            write_text_atomic(target, json.dumps(grid.to_json()))
            n_tiles += len(grid)
            bar.advance(task)
    console.print(f"tiled {len(paths) - len(failed)} slides ({n_tiles} new tiles) -> {out}")  # type: ignore[attr-defined]
    return _failures("tile", failed, len(paths))


def _failures(what: str, failed: dict[str, str], total: int) -> int:
    """Name every slide that failed on stderr, then a one-line summary; 1 if any failed, else 0."""
    if not failed:
        return 0
    for path, reason in failed.items():
        print(f"chanformer wsi {what}: skipped {path}: {reason}", file=sys.stderr)
    print(f"chanformer wsi {what}: {len(failed)} of {total} slides failed and were skipped "
          f"({', '.join(Path(p).name for p in failed)}); the others are done", file=sys.stderr)  # fmt: skip
    return 1


def _heatmap(args: argparse.Namespace, console: object) -> int:
    from chanformer.datasets.wsi.store import BagStore
    from chanformer.hub import load_pretrained
    from chanformer.pipelines.wsi_heatmap import attention_maps, save_heatmaps

    model = load_pretrained(args.model)
    store = BagStore(args.store)
    names = args.slides or store.slides()
    for name in names:
        bag = store.read_bag(name)
        maps = attention_maps(model, bag.features)
        extent = bag.attrs["tile_size"] * bag.attrs.get("downsample", 1.0)
        save_heatmaps(bag.attrs["path"], maps, bag.coords.numpy(), extent, args.out)
    console.print(f"wrote heatmaps of {len(names)} slides -> {args.out}")  # type: ignore[attr-defined]
    return 0
