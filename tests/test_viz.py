"""chanformer.viz renders importance plots (Agg backend) to non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from chanformer.channels import eeg_1005_vocab, sentinel2_vocab, series_vocab  # noqa: E402
from chanformer.viz import plot_band_importance, plot_channel_importance, plot_importance_topomap  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _save(ax, path: Path) -> None:  # type: ignore[no-untyped-def]
    ax.figure.savefig(path)
    plt.close(ax.figure)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_bar_chart(tmp_path: Path) -> None:
    imp = torch.softmax(torch.randn(5, 4), 1)  # [B, C] is averaged over B
    _save(plot_channel_importance(imp, ["series/a", "series/b", "series/c", "series/d"], title="t"), tmp_path / "bar.png")
    with pytest.raises(ValueError, match="3 names"):
        plot_channel_importance(imp, ["a", "b", "c"])


def test_topomap(tmp_path: Path) -> None:
    keys = ["eeg/Fz", "eeg/C3", "eeg/Cz", "eeg/C4", "eeg/Pz", "eeg/O1", "eeg/O2"]
    _save(plot_importance_topomap(torch.rand(len(keys)), keys, eeg_1005_vocab()), tmp_path / "topo.png")
    with pytest.raises(ValueError, match="no position for channel.*series/x"):
        plot_importance_topomap(torch.rand(2), ["series/x", "series/y"], series_vocab(["series/x", "series/y"]))


def test_band_bars_follow_wavelength(tmp_path: Path) -> None:
    vocab = sentinel2_vocab()
    keys = ["s2/B12", "s2/B02", "s2/B08", "s2/B04"]
    ax = plot_band_importance(torch.tensor([0.4, 0.1, 0.3, 0.2]), keys, vocab)
    labels = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert labels == ["B02", "B04", "B08", "B12"]
    _save(ax, tmp_path / "bands.png")
