"""The data-quality checks, by modality: what the validate stage runs over the cleaned rows.

A modality's checks give validate its `checker` (the rules of the registry, the group keys, the profile;
quality.Checker's interface: scan, write, result, profiler, empty_passed, empty_quarantine), the part of the
profile its report shows, and the drift of a profile against the champion's. Text's are data/quality/ (the
rules, including those judged on a text alone), data/keys.py (the group key the split uses) and
data/profile.py (label priors, word-length histogram, vocabulary; drift by Jensen-Shannon divergence and OOV
rate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bigmodel_core.data import quality
from bigmodel_core.data.profile import compare
from bigmodel_core.modalities.base import Facet

if TYPE_CHECKING:
    from bigmodel_core.config import Params


class Checks(Protocol):
    def checker(self, params: Params, reference: dict | None) -> Any: ...

    def report_profile(self, current: dict) -> dict: ...

    def drift(self, checker: Any, current: dict, reference: dict, params: Params, version: str | None) -> dict: ...


class TextChecks:
    def checker(self, params: Params, reference: dict | None) -> quality.Checker:
        """The rules of validate over texts; the champion's vocabulary (reference) gives the OOV rate."""
        return quality.Checker(
            params.validate,
            params.data.labels,
            max_tokens=params.tokenizer.max_length,
            reference_vocab=reference["vocab"] if reference else None,
        )

    def report_profile(self, current: dict) -> dict:
        """The profile as the report shows it: rows, label priors, length histogram, words, the top 20 words."""
        shown = {k: current[k] for k in ("rows", "label_priors", "length_bins", "length_hist", "words")}
        shown["top_words"] = dict(list(current["vocab"].items())[:20])
        return shown

    def drift(
        self, checker: quality.Checker, current: dict, reference: dict, params: Params, version: str | None
    ) -> dict:
        return compare(None, current, reference, params.validate.drift, version, oov=checker.profiler.oov_rate())


CHECKS: Facet[Checks] = Facet("data-quality checks", {"text": TextChecks()})
