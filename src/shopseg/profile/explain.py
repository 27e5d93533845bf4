"""Readable rules that explain each segment, from shallow surrogate decision trees.

For every segment, one seeded scikit-learn ``DecisionTreeClassifier`` (depth ≤ 3, on the original feature units)
learns *this segment vs every other customer* (one-vs-rest). One-vs-rest rather than one multi-class tree: a
depth-3 tree has at most 8 leaves, too few to give each of up to 10 segments its own readable leaves, and a
per-segment tree can spend all its splits on the boundary of that one segment.

The tree's leaves are kept greedily, purest first, while each raises the segment's F1 score by at least
``min_gain`` (0.01); every kept leaf is a
path of conditions joined by AND, and the kept leaves are joined by OR (two sibling leaves that are both kept
merge into their parent's path). Thresholds are shown as the shortest round number that splits the fitted
customers exactly as the tree does ("recency_days ≤ 35" rather than "≤ 35.5"; for whole-number features the
upper side reads "frequency ≥ 6").

Every figure is computed by :func:`apply_rules` on the rules as written, on every customer (not only the fitting
sample): ``precision`` = share of matched customers who are in the segment, ``recall`` = share of the segment
that is matched, ``fidelity`` = F1 of the two, ``coverage`` = share of all customers the rule matches. A
customer with a missing value matches no condition on that feature. One-vs-rest rules may overlap: a customer
can match the rules of two segments.

The JSON export (:meth:`SegmentRuleSet.to_dict`, ``segment_rules.json`` in a run) lists per segment its rule
entries (ORed), each a list of ``{"feature", "op", "value"}`` conditions (ANDed), so a rule-based CRM can rebuild
the segment; :func:`load_rules` + :func:`rule_fidelity` reproduce the figures from the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopseg.errors import DataError, SchemaError

__all__ = [
    "FORMAT_VERSION",
    "OPS",
    "Condition",
    "Rule",
    "SegmentRuleSet",
    "SegmentRules",
    "apply_rules",
    "explain_segments",
    "load_rules",
    "rule_fidelity",
]

FORMAT_VERSION = 1
#: Comparison operators of a condition, as written in the JSON, and how they read.
OPS: dict[str, str] = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}


def _fmt(v: float) -> str:
    if float(v).is_integer():
        return f"{int(v):,}".replace(",", "")
    return f"{v:.6g}"


@dataclass(frozen=True)
class Condition:
    """``feature op value``, e.g. ``Condition("recency_days", "<=", 35)``."""

    feature: str
    op: str
    value: float

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame[self.feature].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            if self.op == "<=":
                out = x <= self.value
            elif self.op == "<":
                out = x < self.value
            elif self.op == ">=":
                out = x >= self.value
            else:
                out = x > self.value
        return np.asarray(out, dtype=bool)

    def text(self) -> str:
        return f"{self.feature} {OPS[self.op]} {_fmt(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        v = self.value
        return {"feature": self.feature, "op": self.op, "value": int(v) if float(v).is_integer() else v}


@dataclass(frozen=True)
class Rule:
    """Conditions joined by AND, with the figures of the rule alone."""

    conditions: tuple[Condition, ...]
    matched: int = 0
    precision: float = math.nan
    recall: float = math.nan

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.ones(len(frame), dtype=bool)
        for c in self.conditions:
            out &= c.mask(frame)
        return out

    def text(self) -> str:
        return " and ".join(c.text() for c in self.conditions) if self.conditions else "every customer"


@dataclass(frozen=True)
class SegmentRules:
    """One segment's rule entries (joined by OR) and how well they reproduce the segment."""

    segment: int
    name: str
    size: int
    rules: tuple[Rule, ...]
    matched: int = 0
    precision: float = math.nan
    recall: float = math.nan
    fidelity: float = math.nan
    coverage: float = math.nan

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(frame), dtype=bool)
        for r in self.rules:
            out |= r.mask(frame)
        return out

    def text(self) -> str:
        if not self.rules:
            return "no simple rule found"
        if len(self.rules) == 1:
            return self.rules[0].text()
        return " or ".join(f"({r.text()})" if len(r.conditions) > 1 else r.text() for r in self.rules)


@dataclass
class SegmentRuleSet:
    """The rules of every segment, the features they use and how they were made."""

    features: list[str]
    segments: list[SegmentRules]
    n_customers: int
    max_depth: int = 3
    seed: int = 0
    fitted_on: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, segment: int) -> SegmentRules:
        for s in self.segments:
            if s.segment == segment:
                return s
        raise KeyError(segment)

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), 6)

        return {
            "format_version": FORMAT_VERSION,
            "kind": "shopseg segment rules",
            "description": "Per segment, rule entries joined by OR; each entry's conditions are joined by AND. "
            "A customer with a missing value matches no condition on that feature. precision = share of "
            "matched customers in the segment; recall = share of the segment matched; fidelity = F1; "
            "coverage = share of all customers matched.",
            "features": self.features,
            "max_depth": self.max_depth,
            "seed": self.seed,
            "n_customers": self.n_customers,
            "fitted_on": self.fitted_on,
            **self.extra,
            "segments": [
                {
                    "segment": s.segment,
                    "name": s.name,
                    "size": s.size,
                    "rule": s.text(),
                    "precision": num(s.precision),
                    "recall": num(s.recall),
                    "fidelity": num(s.fidelity),
                    "coverage": num(s.coverage),
                    "matched": s.matched,
                    "rules": [
                        {
                            "conditions": [c.to_dict() for c in r.conditions],
                            "text": r.text(),
                            "matched": r.matched,
                            "precision": num(r.precision),
                            "recall": num(r.recall),
                        }
                        for r in s.rules
                    ],
                }
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str = "rules") -> SegmentRuleSet:
        """Rebuild from :meth:`to_dict` output (or a hand-written file with the same shape); validated."""
        if not isinstance(d, Mapping) or not isinstance(d.get("segments"), list):
            raise DataError(f"{origin}: expected an object with a 'segments' list (a shopseg segment_rules.json)")
        segments = []
        for i, s in enumerate(d["segments"]):
            where = f"{origin}: segments[{i}]"
            if not isinstance(s, Mapping) or "segment" not in s or not isinstance(s.get("rules"), list):
                raise DataError(f"{where} needs 'segment' and a 'rules' list")
            rules = []
            for j, r in enumerate(s["rules"]):
                conds = r.get("conditions") if isinstance(r, Mapping) else None
                if not isinstance(conds, list):
                    raise DataError(f"{where}.rules[{j}] needs a 'conditions' list")
                parsed = []
                for c in conds:
                    if not isinstance(c, Mapping) or set(c) < {"feature", "op", "value"}:
                        raise DataError(f"{where}.rules[{j}]: a condition needs feature, op and value; got {c!r}")
                    if c["op"] not in OPS:
                        raise DataError(
                            f"{where}.rules[{j}]: op {c['op']!r} is not one of {list(OPS)}; write e.g. "
                            '{"feature": "recency_days", "op": "<=", "value": 35}'
                        )
                    try:
                        value = float(c["value"])
                    except (TypeError, ValueError):
                        raise DataError(f"{where}.rules[{j}]: value {c['value']!r} is not a number") from None
                    parsed.append(Condition(str(c["feature"]), str(c["op"]), value))
                rules.append(Rule(tuple(parsed)))
            segments.append(
                SegmentRules(int(s["segment"]), str(s.get("name", "")), int(s.get("size", 0)), tuple(rules))
            )
        feats = d.get("features") or sorted({c.feature for s in segments for r in s.rules for c in r.conditions})
        return cls(
            list(feats),
            segments,
            int(d.get("n_customers", 0)),
            int(d.get("max_depth", 3)),
            int(d.get("seed", 0)),
            int(d.get("fitted_on", 0)),
        )

    def write(self, path: str | Path) -> Path:
        """Write the JSON filter definitions (temp file + rename)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False), encoding="utf-8")
        tmp.replace(p)
        return p

    def table(self) -> pd.DataFrame:
        """One row per rule entry (a segment without rules gets one row with an empty rule)."""
        rows = []
        for s in self.segments:
            entries: Sequence[Rule | None] = s.rules or (None,)
            for i, r in enumerate(entries, start=1):
                rows.append(
                    {
                        "segment": s.segment,
                        "name": s.name,
                        "rule_no": i if r is not None else None,
                        "rule": r.text() if r is not None else "",
                        "conditions": json.dumps([c.to_dict() for c in r.conditions]) if r is not None else "[]",
                        "matched": r.matched if r is not None else 0,
                        "precision": r.precision if r is not None else math.nan,
                        "recall": r.recall if r is not None else math.nan,
                        "segment_rule": s.text(),
                        "segment_precision": s.precision,
                        "segment_recall": s.recall,
                        "fidelity": s.fidelity,
                        "coverage": s.coverage,
                    }
                )
        out = pd.DataFrame(rows)
        out["rule_no"] = out["rule_no"].astype("Int64")
        return out


RulesLike = SegmentRuleSet | Mapping[str, Any] | str | Path


def load_rules(source: RulesLike) -> SegmentRuleSet:
    """A rule set from a ``segment_rules.json`` path, its parsed dict, or a :class:`SegmentRuleSet`."""
    if isinstance(source, SegmentRuleSet):
        return source
    if isinstance(source, Mapping):
        return SegmentRuleSet.from_dict(source)
    p = Path(source)
    if p.is_dir():
        p = p / "segment_rules.json"
    if not p.is_file():
        raise DataError(f"rules file '{p}' not found; pass a run's segment_rules.json (or the run folder)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"rules file '{p}' is not valid JSON: {exc}") from None
    return SegmentRuleSet.from_dict(data, origin=str(p))


def _check_columns(rules: SegmentRuleSet, frame: pd.DataFrame) -> None:
    used = sorted({c.feature for s in rules.segments for r in s.rules for c in r.conditions})
    missing = [f for f in used if f not in frame.columns]
    if missing:
        raise SchemaError(
            f"the rules use feature(s) {missing} that the frame lacks; pass a features frame with these columns "
            "(e.g. a run's segments.csv or features table)"
        )


def apply_rules(rules: RulesLike, frame: pd.DataFrame) -> pd.DataFrame:
    """Which customers match each segment's rules: a boolean frame (index = ``frame.index``, one column per
    segment number). A customer may match several segments, or none."""
    rs = load_rules(rules)
    _check_columns(rs, frame)
    return pd.DataFrame({s.segment: s.mask(frame) for s in rs.segments}, index=frame.index)


def _prf(pred: np.ndarray, truth: np.ndarray) -> tuple[int, float, float, float]:
    matched = int(pred.sum())
    tp = int((pred & truth).sum())
    size = int(truth.sum())
    precision = tp / matched if matched else math.nan
    recall = tp / size if size else math.nan
    f1 = 2 * tp / (matched + size) if (matched + size) else math.nan
    return matched, precision, recall, f1


def rule_fidelity(rules: RulesLike, frame: pd.DataFrame, labels: np.ndarray | pd.Series) -> pd.DataFrame:
    """Per segment: size, matched, precision, recall, fidelity (F1) and coverage of the rules on ``frame``
    against the segment ``labels`` (one per row of ``frame``)."""
    rs = load_rules(rules)
    lab = np.asarray(labels)
    if len(lab) != len(frame):
        raise DataError(f"got {len(lab)} labels for {len(frame)} customers; pass one label per row of the frame")
    m = apply_rules(rs, frame)
    rows = []
    for s in rs.segments:
        truth = lab == s.segment
        matched, p, r, f1 = _prf(m[s.segment].to_numpy(), truth)
        rows.append(
            {
                "segment": s.segment,
                "name": s.name,
                "size": int(truth.sum()),
                "matched": matched,
                "precision": p,
                "recall": r,
                "fidelity": f1,
                "coverage": matched / len(frame) if len(frame) else math.nan,
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ fitting
def _nice(lo: float, hi: float) -> float:
    """The number with the fewest significant digits in ``[lo, hi)``; ``lo`` when nothing shorter fits."""
    top = max(abs(lo), abs(hi), 1e-12)
    for e in range(math.ceil(math.log10(top)) + 1, -10, -1):
        step = 10.0**e
        v = math.ceil(lo / step) * step
        v = round(v, max(0, -e))
        if lo <= v < hi:
            return float(v)
    return float(lo)


def _threshold(values: np.ndarray, t: float) -> float:
    """Replace a tree threshold by a round number that splits the sorted unique ``values`` the same way."""
    i = int(np.searchsorted(values, t, side="right"))  # values[:i] <= t < values[i:]
    if i == 0 or i == len(values):
        return float(t)
    return _nice(float(values[i - 1]), float(values[i]))


def _tree_rules(
    x: np.ndarray,
    y: np.ndarray,
    feats: list[str],
    integer: dict[str, bool],
    *,
    max_depth: int,
    min_leaf: int,
    min_gain: float,
    seed: int,
) -> list[tuple[Condition, ...]]:
    from sklearn.tree import DecisionTreeClassifier

    if y.all() or not y.any():
        return [()] if y.all() else []
    clf = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_leaf, random_state=seed).fit(x, y)
    t = clf.tree_
    leaf = clf.apply(x)
    pos = np.bincount(leaf, weights=y.astype(float), minlength=t.node_count)
    tot = np.bincount(leaf, minlength=t.node_count).astype(float)
    leaves = [int(i) for i in np.flatnonzero(tot > 0) if t.children_left[i] == -1]
    leaves.sort(key=lambda i: (-(pos[i] / tot[i]), -pos[i], i))
    size = float(y.sum())
    chosen: set[int] = set()
    tp = matched = 0.0
    best = 0.0
    for i in leaves:
        f1 = 2 * (tp + pos[i]) / (matched + tot[i] + size)
        if f1 > best + (min_gain if chosen else 0.0):
            chosen.add(i)
            tp, matched, best = tp + pos[i], matched + tot[i], f1
    if not chosen:
        return []
    sorted_vals = {j: np.unique(x[:, j]) for j in range(x.shape[1])}

    def walk(node: int, path: list[tuple[int, bool, float]]) -> None:
        under = _leaves_under(t, node)
        if all(leaf_id in chosen for leaf_id in under):
            paths.append(path)  # every leaf below is kept: the node's own path says it all
            return
        if len(under) == 1:
            return
        f, thr = int(t.feature[node]), float(t.threshold[node])
        walk(int(t.children_left[node]), [*path, (f, True, thr)])
        walk(int(t.children_right[node]), [*path, (f, False, thr)])

    paths: list[list[tuple[int, bool, float]]] = []
    walk(0, [])
    out = []
    for path in paths:
        upper: dict[int, float] = {}
        lower: dict[int, float] = {}
        for f, left, thr in path:
            if left:
                upper[f] = min(upper.get(f, math.inf), thr)
            else:
                lower[f] = max(lower.get(f, -math.inf), thr)
        conds = []
        for f in sorted(set(upper) | set(lower)):
            name = feats[f]
            if f in lower:
                v = _threshold(sorted_vals[f], lower[f])
                if integer[name] and float(v).is_integer():
                    conds.append(Condition(name, ">=", float(math.floor(v) + 1)))
                else:
                    conds.append(Condition(name, ">", v))
            if f in upper:
                conds.append(Condition(name, "<=", _threshold(sorted_vals[f], upper[f])))
        out.append(tuple(conds))
    return out


def _leaves_under(t: Any, node: int) -> list[int]:
    if t.children_left[node] == -1:
        return [node]
    return _leaves_under(t, int(t.children_left[node])) + _leaves_under(t, int(t.children_right[node]))


def explain_segments(
    frame: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    features: Sequence[str],
    *,
    names: Mapping[int, str] | None = None,
    max_depth: int = 3,
    min_leaf_share: float = 0.005,
    min_gain: float = 0.01,
    sample: int = 100_000,
    seed: int = 0,
) -> SegmentRuleSet:
    """Fit one surrogate tree per segment (one-vs-rest) and turn its best leaves into readable rules.

    ``frame`` holds the features in their original units (one row per customer), ``labels`` the segment of
    each row. Trees are fitted on a seeded sample of at most ``sample`` customers (missing values filled with
    the median); leaves hold at least ``min_leaf_share`` of the fitted customers, and a leaf joins a segment's
    rules only when it raises the F1 score by ``min_gain`` or more (fewer, more readable rules). The figures are
    computed on every customer by :func:`rule_fidelity`.
    """
    feats = list(features)
    missing = [f for f in feats if f not in frame.columns]
    if missing:
        raise SchemaError(f"features {missing} are not in the frame; available: {list(frame.columns)}")
    if not 1 <= max_depth <= 10:
        raise DataError(f"max_depth must be between 1 and 10, got {max_depth}")
    lab = np.asarray(labels)
    n = len(frame)
    if len(lab) != n:
        raise DataError(f"got {len(lab)} labels for {n} customers; pass one label per row")
    x_all = frame[feats].to_numpy(dtype="float64")
    integer = {}
    for j, f in enumerate(feats):
        col = x_all[:, j]
        fin = col[np.isfinite(col)]
        integer[f] = bool(fin.size and np.all(fin == np.round(fin)))
    med = np.nanmedian(np.where(np.isfinite(x_all), x_all, np.nan), axis=0) if n else np.zeros(len(feats))
    med = np.where(np.isfinite(med), med, 0.0)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    x = x_all[idx]
    x = np.where(np.isfinite(x), x, med)
    y_lab = lab[idx]
    min_leaf = max(1, math.ceil(min_leaf_share * len(idx)))
    segs = sorted({int(v) for v in np.unique(lab)})
    draft = []
    for seg in segs:
        paths = _tree_rules(
            x, y_lab == seg, feats, integer, max_depth=max_depth, min_leaf=min_leaf, min_gain=min_gain, seed=seed
        )
        draft.append(
            SegmentRules(
                seg, (names or {}).get(seg, f"Segment {seg}"), int((lab == seg).sum()), tuple(Rule(p) for p in paths)
            )
        )
    rs = SegmentRuleSet(feats, draft, n, max_depth, seed, len(idx))
    # figures from the rules as written, on everyone
    final = []
    for s in rs.segments:
        truth = lab == s.segment
        rules = []
        for r in s.rules:
            matched, p, rc, _ = _prf(r.mask(frame), truth)
            rules.append(replace(r, matched=matched, precision=p, recall=rc))
        rules.sort(key=lambda r: (-r.matched, r.text()))
        matched, p, rc, f1 = _prf(s.mask(frame), truth)
        final.append(
            replace(
                s,
                rules=tuple(rules),
                matched=matched,
                precision=p,
                recall=rc,
                fidelity=f1 if math.isfinite(f1) else 0.0,
                coverage=matched / n if n else math.nan,
            )
        )
    rs.segments = final
    return rs
