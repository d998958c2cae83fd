"""Reader for the UEA/UCR ``.ts`` text format (as written by sktime and aeon).

A file is a header of ``@tag value`` lines (``#``/``%`` lines are comments), then ``@data``
followed by one case per line: dimensions separated by ``:``, values within a dimension by
``,``, ``?`` for a missing value and, when ``@classLabel true``/``@targetLabel true``, the
label as the last ``:``-separated field. With ``@timeStamps true`` values are written as
``(timestamp,value)`` pairs; the timestamps are skipped and only the values are kept.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TsData", "TsFormatError", "TsHeader", "read_ts", "read_ts_header"]

_BOOL_TAGS = {"timestamps", "missing", "univariate", "equallength"}
_INT_TAGS = {"dimensions", "serieslength"}
_PAIR = re.compile(r"\(([^()]*)\)")


class TsFormatError(ValueError):
    """A malformed ``.ts`` file; the message names the file and the line number."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, msg: str) -> None:
        self.path, self.line = Path(path), line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {msg}")


@dataclass
class TsHeader:
    """The ``@`` tags of a ``.ts`` file (``None`` where the file does not declare them)."""

    path: Path
    problem_name: str = ""
    timestamps: bool = False
    missing: bool = False
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_label: bool = False
    class_labels: list[str] = field(default_factory=list)
    target_label: bool = False
    data_line: int = 0
    """Line number (1-based) of the ``@data`` tag."""

    @property
    def has_label(self) -> bool:
        return self.class_label or self.target_label

    @property
    def n_dims(self) -> int | None:
        """Declared channel count: ``@dimensions``, or 1 for ``@univariate true``."""
        if self.dimensions is not None:
            return self.dimensions
        return 1 if self.univariate else None


@dataclass
class TsData:
    """A parsed ``.ts`` file.

    Attributes:
        header: the header tags.
        series: one float32 array ``[C, T_i]`` per case, NaN where the file has ``?``.
        labels: class label strings per case (classification files), else ``None``.
        targets: float regression targets per case (``@targetLabel true``), else ``None``.
        lines: 1-based line number of every case, for error messages.

    """

    header: TsHeader
    series: list[np.ndarray]
    labels: list[str] | None = None
    targets: np.ndarray | None = None
    lines: list[int] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.header.path

    @property
    def classes(self) -> list[str]:
        return list(self.header.class_labels)

    @property
    def n_channels(self) -> int:
        return self.series[0].shape[0] if self.series else (self.header.n_dims or 0)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[1] for s in self.series], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.series)

    def class_indices(self) -> np.ndarray:
        """Label of every case as an index into :attr:`classes` (int64)."""
        if self.labels is None:
            raise ValueError(f"{self.path} has no class labels (@classLabel false)")
        index = {c: i for i, c in enumerate(self.header.class_labels)}
        return np.array([index[lab] for lab in self.labels], dtype=np.int64)


def _is_skipped(line: str) -> bool:
    return not line or line[0] in "#%"


def _parse_bool(path: Path, lineno: int, tag: str, value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise TsFormatError(path, lineno, f"@{tag} must be 'true' or 'false', got {value.strip()!r}")
    return v == "true"


def _parse_header_line(header: TsHeader, lineno: int, line: str) -> bool:
    """Apply one header line; returns True when it is ``@data``."""
    path = header.path
    if not line.startswith("@"):
        raise TsFormatError(path, lineno, f"expected an @tag or a comment before @data, got {line[:60]!r}")
    tag, _, rest = line[1:].partition(" ")
    tag = tag.lower()
    rest = rest.strip()
    if tag == "data":
        header.data_line = lineno
        return True
    if tag == "problemname":
        header.problem_name = rest
    elif tag in _BOOL_TAGS:
        value = _parse_bool(path, lineno, tag, rest)
        attr = {"timestamps": "timestamps", "missing": "missing", "univariate": "univariate"}.get(
            tag, "equal_length"
        )
        setattr(header, attr, value)
    elif tag in _INT_TAGS:
        try:
            n = int(rest)
        except ValueError:
            raise TsFormatError(path, lineno, f"@{tag} must be an integer, got {rest!r}") from None
        if n < 1:
            raise TsFormatError(path, lineno, f"@{tag} must be positive, got {n}")
        setattr(header, "dimensions" if tag == "dimensions" else "series_length", n)
    elif tag == "classlabel":
        flag, *labels = rest.split()
        header.class_label = _parse_bool(path, lineno, tag, flag or "")
        if header.class_label and not labels:
            raise TsFormatError(path, lineno, "@classLabel true must list the class labels")
        if len(set(labels)) != len(labels):
            raise TsFormatError(path, lineno, f"@classLabel lists duplicate labels: {labels}")
        header.class_labels = labels if header.class_label else []
    elif tag == "targetlabel":
        header.target_label = _parse_bool(path, lineno, tag, rest.split()[0] if rest else "")
    else:
        raise TsFormatError(path, lineno, f"unknown header tag @{tag}")
    return False


def _open_lines(path: Path):  # noqa: ANN202 - generator of (lineno, stripped line)
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f".ts file not found: {path}") from None
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                yield lineno, raw.strip()
        except UnicodeDecodeError as e:
            raise TsFormatError(path, None, f"not a UTF-8 text file ({e})") from None


def read_ts_header(path: str | os.PathLike[str]) -> TsHeader:
    """Read only the header (cheap); when ``@dimensions`` is absent, the first case sets it."""
    path = Path(path)
    header = TsHeader(path=path)
    in_data = False
    for lineno, line in _open_lines(path):
        if _is_skipped(line):
            continue
        if not in_data:
            in_data = _parse_header_line(header, lineno, line)
            continue
        if header.n_dims is None:
            header.dimensions = len(_split_dims(line, header)) - int(header.has_label)
        break
    if not in_data:
        raise TsFormatError(path, None, "no @data line found")
    return header


def _split_dims(line: str, header: TsHeader) -> list[str]:
    if not header.timestamps or "(" not in line:
        return line.split(":")
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append(line[start:i])
            start = i + 1
    parts.append(line[start:])
    return parts


def _parse_values(text: str, header: TsHeader, lineno: int, dim: int) -> np.ndarray:
    text = text.strip()
    if not text:
        raise TsFormatError(header.path, lineno, f"dimension {dim} is empty")
    if header.timestamps and text.startswith("("):
        tokens = [m.rpartition(",")[2] for m in _PAIR.findall(text)]
    else:
        tokens = text.split(",")
    tokens = ["nan" if t.strip() == "?" else t for t in tokens]
    try:
        return np.array(tokens, dtype=np.float32)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise TsFormatError(
            header.path, lineno, f"dimension {dim}: cannot parse value {bad.strip()!r}"
        ) from None


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_ts(path: str | os.PathLike[str]) -> TsData:
    """Parse a ``.ts`` file into per-case ``[C, T_i]`` float32 arrays (NaN = missing).

    Raises:
        FileNotFoundError: the file does not exist.
        TsFormatError: malformed header or row, a row whose dimension count differs from
            ``@dimensions`` (or from the first row), a label not listed by ``@classLabel``,
            or a length that contradicts ``@equalLength``/``@seriesLength``. The message
            names the file and line.

    """
    path = Path(path)
    header = TsHeader(path=path)
    in_data = False
    series: list[np.ndarray] = []
    labels: list[str] = []
    lines: list[int] = []
    declared: set[str] = set()
    dims_source = ""
    for lineno, line in _open_lines(path):
        if _is_skipped(line):
            continue
        if not in_data:
            in_data = _parse_header_line(header, lineno, line)
            declared = set(header.class_labels)
            dims_source = "declared by the header" if header.n_dims is not None else "set by the first case"
            continue
        parts = _split_dims(line, header)
        if header.has_label:
            if len(parts) < 2:
                raise TsFormatError(
                    path, lineno, "row has no ':'-separated label but the header declares one"
                )
            labels.append(parts.pop().strip())
            if header.class_label and labels[-1] not in declared:
                raise TsFormatError(
                    path,
                    lineno,
                    f"class label {labels[-1]!r} is not declared by @classLabel {sorted(declared)}",
                )
        n_dims = header.n_dims
        if n_dims is None:
            n_dims = header.dimensions = len(parts)
        if len(parts) != n_dims:
            raise TsFormatError(
                path, lineno, f"expected {n_dims} dimensions ({dims_source}), found {len(parts)}"
            )
        dims = [_parse_values(p, header, lineno, d) for d, p in enumerate(parts)]
        series.append(_stack_dims(dims, header, lineno))
        lines.append(lineno)
    if not in_data:
        raise TsFormatError(path, None, "no @data line found")
    if not series:
        raise TsFormatError(path, None, "no cases after @data")
    targets = None
    if header.target_label:
        try:
            targets = np.array(labels, dtype=np.float32)
        except ValueError:
            bad = next(i for i, lab in enumerate(labels) if not _is_float(lab))
            raise TsFormatError(
                path, lines[bad], f"regression target {labels[bad]!r} is not a number"
            ) from None
    return TsData(
        header=header,
        series=series,
        labels=labels if header.class_label else None,
        targets=targets,
        lines=lines,
    )


def _stack_dims(dims: list[np.ndarray], header: TsHeader, lineno: int) -> np.ndarray:
    lengths = [len(d) for d in dims]
    t = max(lengths)
    if header.equal_length:
        if min(lengths) != t:
            raise TsFormatError(
                header.path, lineno, f"@equalLength true but dimension lengths differ: {lengths}"
            )
        if header.series_length is not None and t != header.series_length:
            raise TsFormatError(
                header.path, lineno, f"series length {t} != @seriesLength {header.series_length}"
            )
    out = np.full((len(dims), t), np.nan, dtype=np.float32)
    for i, d in enumerate(dims):  # shorter dimensions of one case are padded with NaN (= missing)
        out[i, : len(d)] = d
    return out
