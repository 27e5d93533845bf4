"""SQL dialects: the one place where shopseg's SQL, written once in DuckDB's dialect, becomes another engine's.

Every SQL text in shopseg (the typing expressions of ingest, the cleaning rules, the feature definitions in
``features/sql/*.sql``) is written once, for DuckDB. A backend on another engine hands each statement to its
:class:`Dialect`, which

1. binds ``?`` parameters as literals (engines take parameters differently),
2. parses the DuckDB text with sqlglot,
3. applies the dialect's **fix-ups**: rewrites of constructs that sqlglot does not translate, or translates
   with a different meaning. They are data (:data:`SPARK_FIXUPS`), each with the reason it exists, and a test
   runs every one of them on Spark against DuckDB's answer;
4. refuses the few constructs without an equivalent (:data:`SPARK_UNSUPPORTED`) with an error that names
   them, instead of letting the engine compute something else;
5. generates the target dialect's SQL (sqlglot, unsupported constructs raise).

Nothing outside this module knows how two dialects differ: backends carry a :class:`Dialect`, the pipeline
never asks which engine it runs on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from shopseg.errors import BackendError

__all__ = ["DUCKDB", "SPARK", "SPARK_FIXUPS", "SPARK_UNSUPPORTED", "Dialect", "Fixup", "strptime_to_java"]

#: The dialect every SQL text in shopseg is written in.
SOURCE = "duckdb"


@dataclass(frozen=True)
class Fixup:
    """One rewrite applied to the parsed DuckDB statement before the target SQL is generated.

    ``node`` is the sqlglot expression class it applies to; for functions sqlglot does not know
    (``exp.Anonymous``) ``function`` names the function. ``rewrite`` returns the replacement, or ``None`` to
    leave the node as it is.
    """

    name: str
    why: str
    node: type[exp.Expression]
    rewrite: Callable[[exp.Expression], exp.Expression | None]
    function: str | None = None

    def matches(self, node: exp.Expression) -> bool:
        if not isinstance(node, self.node):
            return False
        if self.function is None:
            return True
        return isinstance(node, exp.Anonymous) and str(node.this).lower() == self.function


@dataclass(frozen=True)
class Unsupported:
    """A construct with no faithful translation: using it on this dialect raises :class:`BackendError`."""

    name: str
    why: str
    check: Callable[[exp.Expression], bool]


@dataclass(frozen=True)
class Dialect:
    """A target SQL dialect: sqlglot's name for it, plus the fix-ups and refusals it needs."""

    name: str
    fixups: tuple[Fixup, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_source(self) -> bool:
        """True for DuckDB, the dialect the SQL is written in: nothing to translate."""
        return self.name == SOURCE

    def parse(self, sql: str, params: Sequence[Any] | None = None) -> exp.Expression:
        """The statement parsed from DuckDB SQL, parameters bound, fix-ups applied (one statement only)."""
        try:
            statements = [s for s in sqlglot.parse(sql, read=SOURCE) if s is not None]
        except SqlglotError as exc:
            raise BackendError(f"cannot parse SQL for the {self.name} backend: {exc}\nSQL: {sql[:2000]}") from None
        if len(statements) != 1:
            raise BackendError(f"expected one SQL statement, got {len(statements)}\nSQL: {sql[:2000]}")
        tree = cast(exp.Expression, statements[0])
        if params:
            tree = bind(tree, params)
        for node in reversed(_nodes(tree)):
            for rule in self.unsupported:
                if rule.check(node):
                    raise BackendError(f"the {self.name} backend cannot run {rule.name}: {rule.why}\nSQL: {sql[:2000]}")
        return self._fix(tree)

    def _fix(self, tree: exp.Expression) -> exp.Expression:
        # children before parents, so that a rewrite sees (and keeps) already fixed arguments
        # (a rewrite builds its replacement from copies or from the node's children, never the node itself)
        for node in reversed(_nodes(tree)):
            for rule in self.fixups:
                if rule.matches(node):
                    new = rule.rewrite(node)
                    if new is not None and new is not node:
                        if node is tree:
                            tree = new
                        else:
                            node.replace(new)
                    break
        return tree

    def generate(self, tree: exp.Expression) -> str:
        """The target dialect's SQL for a (fixed-up) tree."""
        try:
            return tree.sql(dialect=self.name, unsupported_level=ErrorLevel.RAISE)
        except SqlglotError as exc:
            raise BackendError(f"cannot write this SQL in the {self.name} dialect: {exc}") from None

    def transpile(self, sql: str, params: Sequence[Any] | None = None) -> str:
        """DuckDB SQL → this dialect's SQL (unchanged for DuckDB itself)."""
        if self.is_source:
            return sql
        if params:
            return self.generate(self.parse(sql, params))
        cached = self._cache.get(sql)
        if cached is None:
            cached = self.generate(self.parse(sql))
            if len(self._cache) < 2048:
                self._cache[sql] = cached
        return cached


#: DuckDB's TIMESTAMP: without a time zone (Spark's TIMESTAMP_NTZ)
_NAIVE_TIMESTAMP = exp.DataType(this=exp.DataType.Type.TIMESTAMPNTZ)

# ----------------------------------------------------------------------------------------------- parameters


def literal(value: Any) -> exp.Expression:
    """A Python value as a SQL literal (for engines that bind parameters by text)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        return exp.Cast(this=exp.Literal.number(repr(value)), to=exp.DataType.build("DOUBLE"))
    if isinstance(value, datetime):
        return exp.Cast(this=exp.Literal.string(value.isoformat(sep=" ")), to=_NAIVE_TIMESTAMP.copy())
    if isinstance(value, date):
        return exp.Cast(this=exp.Literal.string(value.isoformat()), to=exp.DataType.build("DATE"))
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[literal(v) for v in value])
    return exp.Literal.string(str(value))


def bind(tree: exp.Expression, params: Sequence[Any]) -> exp.Expression:
    """Replace the ``?`` placeholders, in the order they appear, by literals."""
    holders = [n for n in _nodes(tree) if isinstance(n, exp.Placeholder)]
    holders.sort(key=lambda n: _position(n))
    if len(holders) != len(params):
        raise BackendError(f"the SQL has {len(holders)} parameter(s) but {len(params)} value(s) were given")
    for node, value in zip(holders, params, strict=True):
        node.replace(literal(value))
    return tree


def _position(node: exp.Expression) -> tuple[int, ...]:
    """Textual position of a node: the path of argument indexes from the root (depth-first order)."""
    path: list[int] = []
    current: Any = node
    while current.parent is not None:
        siblings = list(current.parent.iter_expressions())
        path.append(next(i for i, s in enumerate(siblings) if s is current))
        current = current.parent
    return tuple(reversed(path))


def _nodes(tree: exp.Expression) -> list[exp.Expression]:
    """Every node of a tree, depth first, parents before children."""
    return [cast(exp.Expression, n) for n in tree.walk(bfs=False)]


# ----------------------------------------------------------------------------------------------- helpers


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _double(text: str) -> exp.Expression:
    return exp.Cast(this=exp.Literal.number(text), to=exp.DataType.build("DOUBLE"))


def _string_arg(node: exp.Expression | None, what: str) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    raise BackendError(f"{what} must be a string literal to be translated, got {node.sql() if node else None}")


#: strptime directives → Java DateTimeFormatter letters: (when set off by literal text, when next to another
#: number). Spark ignores the count of a number's letters when parsing unless two numbers touch, so one
#: letter accepts '1' and '01' like strptime does; touching numbers need their fixed width.
_STRPTIME: dict[str, tuple[str, str, bool]] = {
    "Y": ("yyyy", "yyyy", True),
    "y": ("yy", "yy", True),
    "m": ("M", "MM", True),
    "d": ("d", "dd", True),
    "H": ("H", "HH", True),
    "I": ("h", "hh", True),
    "M": ("m", "mm", True),
    "S": ("s", "ss", True),
    "f": ("SSSSSS", "SSSSSS", True),
    "j": ("D", "DDD", True),
    "b": ("MMM", "MMM", False),
    "B": ("MMMM", "MMMM", False),
    "a": ("E", "E", False),
    "A": ("EEEE", "EEEE", False),
    "p": ("a", "a", False),
}


def strptime_to_java(fmt: str) -> tuple[str, bool]:
    """A strptime format as a Java/Spark datetime pattern, and whether it has a two-digit year (``%y``).

    >>> strptime_to_java("%m/%d/%Y %H:%M")
    ('M/d/yyyy H:m', False)
    >>> strptime_to_java("%Y%m%d")
    ('yyyyMMdd', False)
    """
    tokens: list[tuple[str, str]] = []  # ("dir", letter) | ("lit", text)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            d = fmt[i + 1]
            if d == "%":
                if tokens and tokens[-1][0] == "lit":
                    tokens[-1] = ("lit", tokens[-1][1] + "%")
                else:
                    tokens.append(("lit", "%"))
            elif d in _STRPTIME:
                tokens.append(("dir", d))
            else:
                raise BackendError(f"the date format directive %{d} (in '{fmt}') has no Spark equivalent")
            i += 2
        else:
            if tokens and tokens[-1][0] == "lit":
                tokens[-1] = ("lit", tokens[-1][1] + ch)
            else:
                tokens.append(("lit", ch))
            i += 1
    out = []
    for k, (kind, value) in enumerate(tokens):
        if kind == "lit":
            out.append(_java_literal(value))
            continue
        loose, fixed, numeric = _STRPTIME[value]
        touching = numeric and any(
            0 <= j < len(tokens) and tokens[j][0] == "dir" and _STRPTIME[tokens[j][1]][2] for j in (k - 1, k + 1)
        )
        out.append(fixed if touching else loose)
    return "".join(out), any(kind == "dir" and value == "y" for kind, value in tokens)


def _java_literal(text: str) -> str:
    if re.fullmatch(r"[ /\-:.,]*", text):
        return text
    return "'" + text.replace("'", "''") + "'"


# ----------------------------------------------------------------------------------------------- Spark fix-ups


def _full_match(node: exp.Expression) -> exp.Expression:
    pattern = node.args["expression"]
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        anchored: exp.Expression = exp.Literal.string(f"^(?:{pattern.this})\\z")
    else:
        anchored = exp.Concat(expressions=[exp.Literal.string("^(?:"), pattern, exp.Literal.string(")\\z")])
    return exp.RegexpLike(this=node.this, expression=anchored)


def _strptime(node: exp.Expression) -> exp.Expression:
    args = node.expressions if isinstance(node, exp.Anonymous) else [node.this, node.args.get("format")]
    if len(args) != 2:
        raise BackendError(f"try_strptime takes a value and a format, got {node.sql()}")
    value, formats = args
    fmts = formats.expressions if isinstance(formats, exp.Array) else [formats]
    parsed = []
    for f in fmts:
        pattern, two_digit_year = strptime_to_java(_string_arg(f, "a strptime format"))
        ts = _fn("TRY_TO_TIMESTAMP", value.copy(), exp.Literal.string(pattern))
        if two_digit_year:
            # strptime's %y reads 69-99 as 19xx and 00-68 as 20xx; Spark's yy reads every year as 20xx
            ts = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.GTE(this=exp.Year(this=ts.copy()), expression=exp.Literal.number(2069)),
                        true=exp.Sub(
                            this=ts.copy(),
                            expression=exp.Interval(this=exp.Literal.string("100"), unit=exp.Var(this="YEAR")),
                        ),
                    )
                ],
                default=ts,
            )
        parsed.append(ts)
    return parsed[0] if len(parsed) == 1 else exp.Coalesce(this=parsed[0], expressions=parsed[1:])


def _epoch(node: exp.Expression) -> exp.Expression:
    return exp.Div(this=_fn("UNIX_MICROS", node.this), expression=_double("1000000"))


def _naive_timestamp(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node.parent, exp.Cast):
        return None
    return exp.Cast(this=node.copy(), to=_NAIVE_TIMESTAMP.copy())


def _timezone(node: exp.Expression) -> exp.Expression:
    zone, value = node.expressions
    shifted = _fn("FROM_UTC_TIMESTAMP", value.copy(), zone.copy())
    return exp.Cast(this=shifted, to=_NAIVE_TIMESTAMP.copy())


def _isodow(node: exp.Expression) -> exp.Expression:
    return exp.Paren(this=exp.Add(this=_fn("WEEKDAY", node.this), expression=exp.Literal.number(1)))


def _isfinite(node: exp.Expression) -> exp.Expression:
    (x,) = node.expressions
    inf = exp.Cast(this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE"))
    return exp.Paren(
        this=exp.And(
            this=exp.Not(this=_fn("ISNAN", x.copy())),
            expression=exp.LT(this=exp.Abs(this=x.copy()), expression=inf),
        )
    )


def _trunc(node: exp.Expression) -> exp.Expression:
    if node.args.get("decimals") is not None:
        raise BackendError(f"trunc with a number of decimals has no Spark translation here: {node.sql()}")
    x = node.this
    return exp.Paren(this=exp.Sub(this=x.copy(), expression=exp.Mod(this=x.copy(), expression=exp.Literal.number(1))))


def _hugeint(node: exp.Expression) -> exp.Expression | None:
    if node.this == exp.DataType.Type.INT128:
        return exp.DataType.build("DECIMAL(38, 0)")
    return None


def _regexp_replace(node: exp.Expression) -> exp.Expression:
    replacement = node.args.get("replacement")
    if isinstance(replacement, exp.Literal) and replacement.is_string:
        text = str(replacement.this).replace("$", "\\$")
        text = re.sub(r"\\(\d)", r"$\1", text)
        node.set("replacement", exp.Literal.string(text))
    modifiers = node.args.get("modifiers")
    options = _string_arg(modifiers, "regexp_replace's options") if modifiers is not None else ""
    pattern = node.args.get("expression")
    if set(options) - {"g", "i"}:
        raise BackendError(f"regexp_replace options {options!r} have no Spark translation: {node.sql()}")
    if "i" in options:
        node.set("expression", exp.Concat(expressions=[exp.Literal.string("(?i)"), pattern]))
    if "g" not in options and not (
        isinstance(pattern, exp.Literal) and pattern.is_string and str(pattern.this).startswith("^")
    ):
        raise BackendError(
            "regexp_replace without the 'g' option replaces only the first match in DuckDB; Spark always "
            f"replaces every match. Anchor the pattern with ^ or pass 'g': {node.sql()}"
        )
    node.set("modifiers", None)
    node.set("single_replace", None)
    return node


def _quantile(node: exp.Expression) -> exp.Expression:
    return _fn("PERCENTILE", node.this, node.args["expression"])


def _decimal_literal(node: exp.Expression) -> exp.Expression | None:
    if node.is_string or "." not in str(node.this) or "e" in str(node.this).lower():
        return None
    return _double(str(node.this))


def _sample(node: exp.Expression) -> exp.Expression | None:
    sample = node.args.get("sample")
    if sample is None:
        return None
    size = sample.args.get("size")
    if sample.args.get("percent") or not isinstance(size, exp.Literal) or size.is_string:
        raise BackendError(f"only samples of a number of rows translate to Spark: {sample.sql()}")
    key = "from_" if "from_" in node.args else "from"
    source = node.args.get(key)
    if source is None or node.args.get("joins"):
        raise BackendError(f"USING SAMPLE translates to Spark for a single table or subquery: {node.sql()[:300]}")
    table = source.this
    seed = sample.args.get("seed")
    # DuckDB samples what FROM gives, before WHERE. Spark's TABLESAMPLE (n ROWS) is the first n rows and takes
    # no seed: the source is cut at n rows in a seeded random order instead (Spark runs ORDER BY … LIMIT as a
    # top-n per partition, without sorting everything), under the source's own name
    rand = _fn("RAND", seed.copy() if isinstance(seed, exp.Literal) else exp.Literal.number(0))
    sampled = exp.select("*").from_(table.copy()).order_by(rand).limit(size.copy())
    outer = node.copy()
    outer.set("sample", None)
    outer.set(key, exp.From(this=sampled.subquery(table.alias_or_name)))
    return outer


def _union_by_name(node: exp.Expression) -> bool:
    return isinstance(node, exp.Union) and bool(node.args.get("by_name"))


def _not_materialized(node: exp.Expression) -> exp.Expression | None:
    if node.args.get("materialized") is None:
        return None
    new = node.copy()
    new.set("materialized", None)
    return new


def _hash64(node: exp.Expression) -> exp.Expression:
    return _fn("XXHASH64", *(e.copy() for e in node.expressions))


def _star_exclude(node: exp.Expression) -> bool:
    return isinstance(node, exp.Star) and any(
        node.args.get(k) for k in ("except", "except_", "replace", "replace_", "rename", "rename_")
    )


SPARK_FIXUPS: tuple[Fixup, ...] = (
    Fixup(
        "regexp_full_match",
        "Spark has no whole-string match; RLIKE finds the pattern anywhere, so it is anchored with ^(?:…)\\z",
        exp.RegexpFullMatch,
        _full_match,
    ),
    Fixup(
        "try_strptime",
        "strptime formats become Java patterns (one letter per number so that '1' and '01' both parse, as "
        "with strptime); a list of formats becomes coalesce() of try_to_timestamp in the same order; %y gets "
        "strptime's century (69-99 → 19xx)",
        exp.Anonymous,
        _strptime,
        function="try_strptime",
    ),
    Fixup("strptime", "as try_strptime (Spark returns NULL where DuckDB raises)", exp.StrToTime, _strptime),
    Fixup(
        "epoch",
        "sqlglot writes UNIX_TIMESTAMP, which drops the fraction of a second; unix_micros keeps it",
        exp.TimeToUnix,
        _epoch,
    ),
    Fixup(
        "epoch_ms / make_timestamp",
        "Spark's TIMESTAMP_MILLIS/MICROS give a time-zone-aware timestamp; DuckDB's is naive",
        exp.UnixToTime,
        _naive_timestamp,
    ),
    Fixup(
        "isodow",
        "sqlglot writes (DAYOFWEEK(x) % 7) + 1, which is 3 for a Monday; ISO weekday is WEEKDAY(x) + 1",
        exp.DayOfWeekIso,
        _isodow,
    ),
    Fixup(
        "timezone",
        "DuckDB's timezone(zone, timestamptz) is the wall time in zone, without a zone; Spark has no such "
        "function: from_utc_timestamp in a UTC session, then naive (used for time-zone-aware Parquet columns)",
        exp.Anonymous,
        _timezone,
        function="timezone",
    ),
    Fixup("isfinite", "Spark has no isfinite", exp.Anonymous, _isfinite, function="isfinite"),
    Fixup(
        "trunc",
        "sqlglot writes CAST(x AS BIGINT), which overflows; x - x % 1 truncates any double exactly",
        exp.Trunc,
        _trunc,
    ),
    Fixup("HUGEINT", "Spark has no 128-bit integer; DECIMAL(38, 0) holds the same range", exp.DataType, _hugeint),
    Fixup(
        "regexp_replace",
        "back-references are \\1 in DuckDB and $1 in Java; DuckDB replaces the first match unless 'g' is given",
        exp.RegexpReplace,
        _regexp_replace,
    ),
    Fixup(
        "quantile_cont",
        "Spark's PERCENTILE_CONT takes WITHIN GROUP; percentile(x, q) interpolates the same way",
        exp.PercentileCont,
        _quantile,
    ),
    Fixup(
        "decimal literals",
        "1.0 is DECIMAL in both engines, but Spark keeps decimal arithmetic at a fixed scale (1.0 / 3 has six "
        "digits); DuckDB computes such expressions in DOUBLE, so the literals become DOUBLE",
        exp.Literal,
        _decimal_literal,
    ),
    Fixup(
        "WITH ... AS [NOT] MATERIALIZED",
        "Spark has no materialization hints on CTEs (it decides itself); the hint is a speed choice, so it is dropped",
        exp.CTE,
        _not_materialized,
    ),
    Fixup(
        "hash",
        "DuckDB's hash() is 64 bits, Spark's HASH() 32 bits: grouping by it would merge groups at a few "
        "hundred thousand keys; XXHASH64 is 64 bits (a different value, used only as a grouping key)",
        exp.Anonymous,
        _hash64,
        function="hash",
    ),
    Fixup(
        "USING SAMPLE n ROWS",
        "Spark's TABLESAMPLE (n ROWS) takes the first n rows and no seed: the FROM source is cut at n rows in "
        "a seeded random order instead (before WHERE, where DuckDB samples)",
        exp.Select,
        _sample,
    ),
)

SPARK_UNSUPPORTED: tuple[Unsupported, ...] = (
    Unsupported("UNION ... BY NAME", "Spark SQL has no union by name; list the columns of each side", _union_by_name),
    Unsupported(
        "SELECT * EXCLUDE/REPLACE",
        "Spark SQL has no star modifiers; list the columns (Backend.columns_of)",
        _star_exclude,
    ),
)

DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark", SPARK_FIXUPS, SPARK_UNSUPPORTED)
