"""Reader for the UEA/UCR ``.ts`` text format (as written by sktime and aeon).

A file is a header of ``@tag value`` lines (``#``/``%`` lines are comments), then ``@data``
followed by one case per line: dimensions separated by ``:``, values within a dimension by
``,``, ``?`` for a missing value and, when ``@classLabel true``/``@targetLabel true``, the
label as the last ``:``-separated field. With ``@timeStamps true`` values are written as
``(timestamp,value)`` pairs; the timestamps are skipped and only the values are kept.

Values must be finite in float32: ``inf``/``-inf`` and numbers beyond +-3.4e38 are refused
(:class:`TsFormatError` naming file, line, dimension and value), as they would poison every
statistic computed from the channel; missing values are written ``?`` (or ``NaN``).

Header slips that the data resolve are read the way the data say, with a warning naming the
file and lines: ``@equalLength true`` with a ``@seriesLength`` that no case has, while every
case has the same other length (UEA's EyesOpenShut declares 127 and holds 128 values). What
the data cannot resolve is refused: cases (or dimensions) of different lengths under
``@equalLength true``, dimension counts other than ``@dimensions``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TsData", "TsFormatError", "TsHeader", "read_ts", "read_ts_header"]

_BOOL_TAGS = {"timestamps", "missing", "univariate", "equallength"}
_INT_TAGS = {"dimensions", "serieslength"}
_PAIR = re.compile(r"\(([^()]*)\)")
_F32_MAX = float(np.finfo(np.float32).max)


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
    tag_lines: dict[str, int] = field(default_factory=dict)
    """Line number (1-based) of every header tag read, by lower-case tag name."""

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
    header.tag_lines[tag] = lineno
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
        flag, *labels = rest.split() or [""]
        header.class_label = _parse_bool(path, lineno, tag, flag)
        if not header.class_label and labels:
            raise TsFormatError(path, lineno, f"@classLabel false must not list labels, got {labels}")
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
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise TsFormatError(
            header.path, lineno, f"dimension {dim}: cannot parse value {bad.strip()!r}"
        ) from None
    _check_finite(values, tokens, header.path, lineno, f"dimension {dim}")
    return values.astype(np.float32)


def _check_finite(
    values: np.ndarray, tokens: list[str], path: Path, lineno: int | None, where: str
) -> None:
    """Refuse +-inf and values beyond float32's range (NaN = missing passes)."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > _F32_MAX  # False for NaN; True for +-inf
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    token = tokens[i].strip()
    what = "is infinite" if token.lower().lstrip("+-") in ("inf", "infinity") else "overflows float32 (|x| > 3.4e38)"
    more = f" ({int(bad.sum())} such values in this {where.split()[0]})" if bad.sum() > 1 else ""
    raise TsFormatError(
        path,
        lineno,
        f"{where}, value {i}: {token!r} {what}{more}; only finite values are accepted "
        "(write a missing value as '?')",
    )


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
            dims_source = "header declares" if header.n_dims is not None else "row 1 has"
            continue
        row = len(series) + 1
        parts = _split_dims(line, header)
        label: str | None = None
        if header.has_label:
            if len(parts) < 2:
                raise TsFormatError(
                    path,
                    lineno,
                    f"row {row} has no ':'-separated label but the header declares one "
                    f"({'@classLabel' if header.class_label else '@targetLabel'} true); truncated row?",
                )
            label = parts.pop().strip()
        n_dims = header.n_dims
        if n_dims is None:
            n_dims = header.dimensions = len(parts)
        if len(parts) != n_dims:
            extra = (
                f" (+ the label: {n_dims + 1} ':'-separated fields expected, found {len(parts) + 1}"
                f"{'; truncated row?' if len(parts) < n_dims else ''})"
                if label is not None
                else ""
            )
            raise TsFormatError(
                path, lineno, f"row {row} has {len(parts)} dimensions, {dims_source} {n_dims}{extra}"
            )
        if label is not None:
            labels.append(label)
            if header.class_label and label not in declared:
                raise TsFormatError(
                    path,
                    lineno,
                    f"row {row}: class label {label!r} is not declared by @classLabel {sorted(declared)}",
                )
        dims = [_parse_values(p, header, lineno, d) for d, p in enumerate(parts)]
        series.append(_stack_dims(dims, header, lineno, row))
        lines.append(lineno)
    if not in_data:
        raise TsFormatError(path, None, "no @data line found")
    if not series:
        raise TsFormatError(path, None, "no cases after @data")
    if header.equal_length:
        _check_equal_lengths(header, series, lines)
    targets = None
    if header.target_label:
        try:
            targets = np.array(labels, dtype=np.float64)
        except ValueError:
            bad = next(i for i, lab in enumerate(labels) if not _is_float(lab))
            raise TsFormatError(
                path, lines[bad], f"regression target {labels[bad]!r} is not a number"
            ) from None
        for i, t in enumerate(targets):
            _check_finite(t[None], [labels[i]], path, lines[i], f"row {i + 1} regression target")
        targets = targets.astype(np.float32)
    return TsData(
        header=header,
        series=series,
        labels=labels if header.class_label else None,
        targets=targets,
        lines=lines,
    )


def _check_equal_lengths(header: TsHeader, series: list[np.ndarray], lines: list[int]) -> None:
    """``@equalLength true``: every case must have one length; a ``@seriesLength`` that
    contradicts a length all cases share is a header slip: warn and keep the data's length.
    """
    t0 = series[0].shape[1]
    declared = header.series_length
    for i, s in enumerate(series[1:], start=1):
        if s.shape[1] != t0:
            decl = f"header declares @seriesLength {declared}, " if declared is not None else ""
            raise TsFormatError(
                header.path,
                lines[i],
                f"row {i + 1} has {s.shape[1]} values per dimension, {decl}row 1 (line {lines[0]}) "
                f"has {t0}; @equalLength true but the cases differ in length",
            )
    if declared is not None and declared != t0:
        tag_line = header.tag_lines.get("serieslength")
        warnings.warn(
            f"{header.path}, line {tag_line}: header declares @seriesLength {declared} but all "
            f"{len(series)} rows (lines {lines[0]}-{lines[-1]}) hold {t0} values per dimension; "
            f"reading {t0} values as the data say",
            UserWarning,
            stacklevel=3,
        )
        header.series_length = t0


def _stack_dims(dims: list[np.ndarray], header: TsHeader, lineno: int, row: int) -> np.ndarray:
    lengths = [len(d) for d in dims]
    t = max(lengths)
    if header.equal_length and min(lengths) != t:
        d = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise TsFormatError(
            header.path,
            lineno,
            f"row {row}: dimension {d} has {lengths[d]} values, dimension 0 has {lengths[0]} "
            "(@equalLength true; truncated row?)",
        )
    out = np.full((len(dims), t), np.nan, dtype=np.float32)
    for i, dim in enumerate(dims):  # shorter dimensions of one case are padded with NaN (= missing)
        out[i, : len(dim)] = dim
    return out
