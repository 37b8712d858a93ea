"""Calibrated routing confidence: the probability that the route the router picked is the right one.

The feature is the winner's **lead**: its hybrid score minus the runner-up's. A calibration maps it to
P(correct), separately for a domain winner and a general winner (their errors differ: a domain steals a
general question, general misses a domain question), with Platt scaling (default: a logistic curve fitted
to Platt's smoothed targets) or isotonic regression (scikit-learn), on held-out questions: the domains' dev
questions and the general questions, cross-fitted (:mod:`gag_core.hybrid` builds that data). Saved as
sorted-key JSON, never pickle.

``expected_calibration_error`` and ``reliability`` measure it; ``write_reliability_png`` draws the plot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, ModuleFormatError

CALIBRATION_FORMAT = 1
METHODS = ("isotonic", "platt")
KINDS = ("domain", "general")  # a map per kind of winner
MIN_SAMPLES = 20  # fewer questions of a kind: that kind uses the map fitted on all questions
MAX_POINTS = 4096
DEFAULT_METHOD = "platt"  # held-out routing data is nearly separable: isotonic turns it into a 0/1 step


@dataclass
class Calibration:
    """Maps {kind: map}; a map is {"x": [...], "y": [...]} (isotonic, piecewise linear) or {"a", "b"} (Platt)."""

    method: str
    maps: dict[str, dict] = field(default_factory=dict)
    samples: int = 0
    ece: float | None = None  # on the data it was fitted on (cross-fitted where the router could)

    def confidence(self, lead: float, kind: str) -> float:
        m = self.maps.get(kind) or self.maps.get("all")
        if m is None:
            return float("nan")
        if "a" in m:
            return 1.0 / (1.0 + math.exp(-(m["a"] * lead + m["b"])))
        xs, ys = m["x"], m["y"]
        if lead <= xs[0]:
            return ys[0]
        if lead >= xs[-1]:
            return ys[-1]
        hi = next(i for i, x in enumerate(xs) if x >= lead)
        x0, x1, y0, y1 = xs[hi - 1], xs[hi], ys[hi - 1], ys[hi]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (lead - x0) / (x1 - x0)

    def to_dict(self) -> dict:
        return {"format_version": CALIBRATION_FORMAT, "method": self.method, "maps": self.maps,
                "samples": self.samples, "ece": self.ece}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str = "calibration") -> "Calibration":
        try:
            ok = data["format_version"] == CALIBRATION_FORMAT and data["method"] in METHODS
            maps = {k: _checked_map(v) for k, v in data["maps"].items() if k in (*KINDS, "all")}
            ece = data.get("ece")
            return cls(data["method"], maps, int(data.get("samples", 0)), None if ece is None else float(ece)) \
                if ok and maps else _bad(where)
        except (KeyError, TypeError, ValueError, AttributeError):
            return _bad(where)


def _checked_map(m: dict) -> dict:
    if set(m) == {"a", "b"}:
        return {"a": float(m["a"]), "b": float(m["b"])}
    xs, ys = [float(x) for x in m["x"]], [float(y) for y in m["y"]]
    if not xs or len(xs) != len(ys) or len(xs) > MAX_POINTS or xs != sorted(xs) or not all(0 <= y <= 1 for y in ys):
        raise ValueError("bad isotonic map")
    return {"x": xs, "y": ys}


def _bad(where: str):
    raise ModuleFormatError(f"{where} is not a gag calibration of format {CALIBRATION_FORMAT} (method one of "
                            f"{list(METHODS)}, maps of sorted points or Platt coefficients); refit or re-export it.")


def _fit_map(leads: Sequence[float], correct: Sequence[bool], method: str) -> dict:
    import numpy as np

    x, y = np.asarray(leads, dtype=float), np.asarray(correct, dtype=float)
    if y.min() == y.max():  # one class only: the observed rate, smoothed towards the unseen class
        rate = (y.sum() + 0.5) / (len(y) + 1.0)
        return {"x": [float(x.min())], "y": [float(rate)]}
    if method == "platt":  # Platt (1999): targets smoothed by the class counts keep separable data finite
        from sklearn.linear_model import LogisticRegression

        pos, neg = y.sum(), len(y) - y.sum()
        target = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))
        xx = np.concatenate([x, x]).reshape(-1, 1)
        lr = LogisticRegression(C=1e4).fit(xx, np.concatenate([np.ones_like(y), np.zeros_like(y)]),
                                           sample_weight=np.concatenate([target, 1 - target]))
        return {"a": float(lr.coef_[0][0]), "b": float(lr.intercept_[0])}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, y)
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def fit_calibration(leads: Sequence[float], kinds: Sequence[str], correct: Sequence[bool],
                    method: str = "platt") -> Calibration:
    """Fit P(correct | lead) per kind of winner ("domain"/"general"); a kind with fewer than MIN_SAMPLES
    questions falls back to the map fitted on all of them."""
    if method not in METHODS:
        raise ConfigError(f"Unknown calibration method {method!r}; use one of {list(METHODS)}.")
    if not leads or not (len(leads) == len(kinds) == len(correct)):
        raise ConfigError("Calibration needs the same non-zero number of leads, kinds and outcomes.")
    maps = {"all": _fit_map(leads, correct, method)}
    for kind in KINDS:
        rows = [(lead, c) for lead, k, c in zip(leads, kinds, correct) if k == kind]
        if len(rows) >= MIN_SAMPLES:
            maps[kind] = _fit_map([r[0] for r in rows], [r[1] for r in rows], method)
    cal = Calibration(method, maps, len(leads))
    cal.ece = expected_calibration_error([cal.confidence(lead, k) for lead, k in zip(leads, kinds)], correct)
    return cal


# --- measuring it --------------------------------------------------------------------------------------

def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Equal-width confidence bins: {lo, hi, n, confidence (mean), accuracy}; empty bins are left out."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        rows = [(c, ok) for c, ok in zip(confidences, correct) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if rows:
            out.append({"lo": lo, "hi": hi, "n": len(rows), "confidence": sum(r[0] for r in rows) / len(rows),
                        "accuracy": sum(bool(r[1]) for r in rows) / len(rows)})
    return out


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |accuracy - confidence| over equal-width bins."""
    n = len(confidences)
    if n == 0:
        return 0.0
    return sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability(confidences, correct, bins))


def write_reliability_png(path: str | Path, curves: dict[str, list[dict]], title: str = "routing reliability") -> Path:
    """Reliability diagram: per curve, accuracy against mean confidence per bin (marker size ~ bin count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, bins in curves.items():
        total = sum(b["n"] for b in bins) or 1
        xs, ys = [b["confidence"] for b in bins], [b["accuracy"] for b in bins]
        ax.plot(xs, ys, marker="o", label=name)
        ax.scatter(xs, ys, s=[12 + 400 * b["n"] / total for b in bins], alpha=0.3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (calibrated P(route correct))")
    ax.set_ylabel("observed accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# --- a module's file: its calibration questions and its train-time fit ------------------------------------

MAX_QUESTIONS = 4096


def route_calibration_json(questions: Sequence[str], calibration: Calibration | None = None) -> str:
    """``router/calibration.json``: the held-out questions the route's calibration is (re)fitted on, and the
    fit made at training time (this domain and general alone), for the record."""
    return json.dumps({"format_version": CALIBRATION_FORMAT, "questions": list(questions)[:MAX_QUESTIONS],
                       "calibration": None if calibration is None else calibration.to_dict()},
                      sort_keys=True, ensure_ascii=False) + "\n"


def read_route_calibration(text: str, where: str = "router/calibration.json"
                           ) -> tuple[list[str], Calibration | None]:
    """(questions, train-time calibration or None) of a module's calibration file; refuses malformed ones."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModuleFormatError(f"{where} is not valid JSON ({exc}); re-export the module.") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format_version") != CALIBRATION_FORMAT
            or not isinstance(questions, list) or len(questions) > MAX_QUESTIONS
            or not all(isinstance(q, str) and 0 < len(q) <= 4096 for q in questions)):
        raise ModuleFormatError(f"{where} must hold format_version {CALIBRATION_FORMAT} and 'questions' (at most "
                                f"{MAX_QUESTIONS} non-empty strings); re-export the module.")
    fit = data.get("calibration")
    return questions, None if fit is None else Calibration.from_dict(fit, where)
