"""Model cards: the ``README.md`` of a pretrained folder (YAML front matter + Markdown).

The front matter uses the keys the Hugging Face Hub reads (``library_name``, ``license``,
``tags``, ``datasets``) plus chanformer's own (``task``, ``training_data``, ``metrics``,
``intended_use``, ``limitations``, ``citation``, ``input_contract``); the body repeats them for
people. :func:`read_model_card` parses one back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["ModelCard", "read_model_card", "render_model_card"]

_DEFAULT_LIMITS = (
    "Trained and evaluated only on the data named above; embeddings of recordings from other devices, "
    "montages, populations or preprocessing may not transfer. Not a medical device: never use it for "
    "diagnosis or treatment decisions without independent validation."
)
_CITATION = """@software{chanformer,
  title = {chanformer: channel-adaptive deep learning for multichannel scientific data},
  year = {2025}
}"""


@dataclass
class ModelCard:
    """What a model card says; every field is optional.

    Attributes:
        model: the model's family/variant (e.g. ``"softs_test"``).
        task: what it was trained for (``"classification"``, ``"forecasting"``, ...).
        training_data: name or description of the training data.
        metrics: metric name -> value from the run (finite floats).
        intended_use / limitations: free text (a default caution is used when empty).
        license: SPDX identifier of the weights' licence.
        citation: BibTeX of the work to cite (default: chanformer's).
        tags: extra tags for the hub.
        contract_summary: the input contract described in lines (``InputContract.describe()``).
        extra: more front-matter keys.
    """

    model: str = ""
    task: str = ""
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    intended_use: str = ""
    limitations: str = ""
    license: str = "apache-2.0"
    citation: str = ""
    tags: list[str] = field(default_factory=list)
    contract_summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def front_matter(self) -> dict[str, Any]:
        metrics = {k: float(v) for k, v in sorted(self.metrics.items()) if math.isfinite(float(v))}
        out: dict[str, Any] = {
            "library_name": "chanformer",
            "license": self.license,
            "tags": ["chanformer", "channel-adaptive", *[t for t in self.tags if t not in ("chanformer",)]],
        }
        if self.model:
            out["model"] = self.model
        if self.task:
            out["task"] = self.task
        if self.training_data:
            out["training_data"] = self.training_data
            out["datasets"] = [self.training_data]
        if metrics:
            out["metrics"] = metrics
        out["intended_use"] = self.intended_use or _default_use(self.task)
        out["limitations"] = self.limitations or _DEFAULT_LIMITS
        out["citation"] = self.citation or _CITATION
        out.update(self.extra)
        return out


def _default_use(task: str) -> str:
    what = f"a {task} model" if task else "an encoder"
    return (f"Research use: embeddings or predictions of {what} for recordings preprocessed as in the "
            "input contract, through chanformer.pipelines.Pipeline.from_pretrained.")  # fmt: skip


def render_model_card(card: ModelCard) -> str:
    """The ``README.md`` text: YAML front matter between ``---`` lines, then Markdown."""
    fm = card.front_matter()
    head = yaml.safe_dump(fm, sort_keys=False, allow_unicode=True, width=100)
    title = card.model or "chanformer model"
    body = [f"# {title}", ""]
    if card.task or card.training_data:
        body += [f"Task: {card.task or 'unspecified'}. Training data: {card.training_data or 'unspecified'}.", ""]
    body += ["## Use", "", "```python", "from chanformer.pipelines import Pipeline",
             'pipe = Pipeline.from_pretrained("<this folder or hub id>")',
             'out = pipe("<your recording or image>")   # out.embeddings, out.dropped', "```", ""]  # fmt: skip
    if card.contract_summary:
        body += ["## Input contract (applied by the pipeline)", "", "```", card.contract_summary, "```", ""]
    if fm.get("metrics"):
        body += ["## Metrics (from the training run)", "", "| metric | value |", "|---|---|"]
        body += [f"| {k} | {v:.4g} |" for k, v in fm["metrics"].items()]
        body += [""]
    body += ["## Intended use", "", fm["intended_use"], "", "## Limitations", "", fm["limitations"], ""]
    body += ["## Licence", "", f"{fm['license']}", "", "## Citation", "", "```bibtex", fm["citation"], "```", ""]
    return f"---\n{head}---\n\n" + "\n".join(body)


def read_model_card(text: str) -> tuple[dict[str, Any], str]:
    """Split a model card into ``(front matter, Markdown body)``; no front matter -> ``({}, text)``."""
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError("model card: front matter opened with '---' is never closed")
    data = yaml.safe_load(text[3:end]) or {}
    if not isinstance(data, dict):
        raise ValueError(f"model card: front matter is a YAML {type(data).__name__}, expected a mapping")
    return data, text[end + 4 :].lstrip("\n")
