"""The DuckDB → Spark SQL translation (sqlglot plus the fix-ups of shopseg.backends.dialect), without Spark.

What the translated SQL *computes* is checked against DuckDB on a real Spark session in test_spark_backend.py;
here: the text each fix-up produces, the refusals, parameter binding and the format conversion.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from shopseg.backends.dialect import DUCKDB, SPARK, SPARK_FIXUPS, strptime_to_java
from shopseg.clean import rules_for
from shopseg.config import CleanConfig
from shopseg.errors import BackendError
from shopseg.features import feature_sql


def spark(sql: str) -> str:
    return SPARK.transpile(sql)


@pytest.mark.parametrize(
    ("fmt", "pattern", "two_digit"),
    [
        ("%Y-%m-%d %H:%M:%S", "yyyy-M-d H:m:s", False),
        ("%m/%d/%Y %H:%M", "M/d/yyyy H:m", False),
        ("%d.%m.%y", "d.M.yy", True),
        ("%Y%m%d", "yyyyMMdd", False),
        ("%Y%m%d%H%M%S", "yyyyMMddHHmmss", False),
        ("%Y-%m-%dT%H:%M:%S.%fZ", "yyyy-M-d'T'H:m:s.SSSSSS'Z'", False),
        ("%d %b %Y", "d MMM yyyy", False),
        ("%B %d, %Y", "MMMM d, yyyy", False),
        ("%Y-%m-%d %H:%M:%S UTC", "yyyy-M-d H:m:s' UTC'", False),
        ("%d-%m-%Y 100%%", "d-M-yyyy' 100%'", False),
    ],
)
def test_strptime_formats_become_java_patterns(fmt: str, pattern: str, two_digit: bool) -> None:
    assert strptime_to_java(fmt) == (pattern, two_digit)


def test_a_strptime_directive_without_java_equivalent_is_refused() -> None:
    with pytest.raises(BackendError, match="%U"):
        strptime_to_java("%Y week %U")


def test_duckdb_is_the_source_dialect_and_left_alone() -> None:
    sql = "SELECT regexp_full_match(x, '\\d+'), isodow(ts) FROM t USING SAMPLE reservoir(10 ROWS)"
    assert DUCKDB.transpile(sql) == sql


@pytest.mark.parametrize(
    ("duckdb", "expected"),
    [
        # whole-string match, anchored for RLIKE (backslashes escaped in the Spark string literal)
        ("SELECT regexp_full_match(x, '\\d+') FROM t", "x RLIKE '^(?:\\\\d+)\\\\z'"),
        # the ISO weekday: not sqlglot's (DAYOFWEEK(x) % 7) + 1
        ("SELECT isodow(ts) FROM t", "(WEEKDAY(ts) + 1)"),
        # seconds since the epoch with the fraction kept
        ("SELECT epoch(ts) FROM t", "UNIX_MICROS(ts) / CAST(1000000 AS DOUBLE)"),
        # milliseconds/microseconds to a naive timestamp
        ("SELECT epoch_ms(CAST(v AS BIGINT)) FROM t", "CAST(TIMESTAMP_MILLIS(CAST(v AS BIGINT)) AS TIMESTAMP_NTZ)"),
        ("SELECT isfinite(q) FROM t", "(NOT ISNAN(q) AND ABS(q) < CAST('Infinity' AS DOUBLE))"),
        ("SELECT trunc(q) FROM t", "(q - q % 1)"),
        ("SELECT CAST(q AS HUGEINT) FROM t", "CAST(q AS DECIMAL(38, 0))"),
        ("SELECT regexp_replace(v, '^(\\d+)\\.0+$', '\\1') FROM t", "'$1'"),
        ("SELECT regexp_replace(v, 'a', 'b', 'g') FROM t", "REGEXP_REPLACE(v, 'a', 'b')"),
        ("SELECT regexp_replace(v, 'a', 'b', 'gi') FROM t", "CONCAT('(?i)', 'a')"),
        ("SELECT quantile_cont(s, 0.25) FROM t", "PERCENTILE(s, CAST(0.25 AS DOUBLE))"),
        # a materialization hint is dropped; hash() keeps 64 bits
        ("WITH a AS NOT MATERIALIZED (SELECT 1 AS x) SELECT x FROM a", "WITH a AS (SELECT 1 AS x) SELECT x FROM a"),
        ("SELECT hash(a, b) FROM t GROUP BY hash(a, b)", "SELECT XXHASH64(a, b) FROM t GROUP BY XXHASH64(a, b)"),
        ("SELECT least(1.0, x / 86400.0) FROM t", "LEAST(CAST(1.0 AS DOUBLE), x / CAST(86400.0 AS DOUBLE))"),
        (
            "SELECT v FROM t WHERE v IS NOT NULL USING SAMPLE reservoir(20000 ROWS) REPEATABLE (7)",
            "SELECT v FROM (SELECT * FROM t ORDER BY RAND(7) LIMIT 20000) AS t WHERE NOT v IS NULL",
        ),
        (
            "SELECT try_strptime(v, ['%m/%d/%Y', '%Y-%m-%d']) FROM t",
            "COALESCE(TRY_TO_TIMESTAMP(v, 'M/d/yyyy'), TRY_TO_TIMESTAMP(v, 'yyyy-M-d'))",
        ),
        (
            "SELECT try_strptime(v, '%d/%m/%y') FROM t",
            "CASE WHEN YEAR(TRY_TO_TIMESTAMP(v, 'd/M/yy')) >= 2069 "
            "THEN TRY_TO_TIMESTAMP(v, 'd/M/yy') - INTERVAL '100' YEAR ELSE TRY_TO_TIMESTAMP(v, 'd/M/yy') END",
        ),
    ],
)
def test_fixups_write_the_spark_equivalent(duckdb: str, expected: str) -> None:
    assert expected in spark(duckdb)


def test_every_fixup_is_named_and_explained() -> None:
    names = [f.name for f in SPARK_FIXUPS]
    assert len(names) == len(set(names))
    assert all(len(f.why) > 20 for f in SPARK_FIXUPS)


def test_a_first_match_replacement_is_refused_unless_anchored() -> None:
    with pytest.raises(BackendError, match="replaces only the first match"):
        spark("SELECT regexp_replace(v, '\\.', '') FROM t")


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("SELECT a FROM t UNION ALL BY NAME SELECT b FROM u", "UNION ... BY NAME"),
        ("SELECT * EXCLUDE (a) FROM t", "EXCLUDE"),
    ],
)
def test_constructs_without_translation_are_refused_by_name(sql: str, construct: str) -> None:
    with pytest.raises(BackendError, match=construct.split()[0]):
        spark(sql)


def test_parameters_are_bound_in_textual_order() -> None:
    out = SPARK.transpile(
        "SELECT * FROM t WHERE a = ? AND b IN (SELECT c FROM u WHERE d = ?) AND ts < ?",
        ["x'y", 3, datetime(2011, 1, 2, 3, 4, 5)],
    )
    assert "a = 'x\\'y'" in out
    assert "d = 3" in out
    assert "ts < CAST('2011-01-02 03:04:05' AS TIMESTAMP_NTZ)" in out
    lists = SPARK.transpile("SELECT unnest(?) AS customer_id", [["a", "b"]])
    assert lists == "SELECT EXPLODE(ARRAY('a', 'b')) AS customer_id"


def test_a_parameter_count_mismatch_is_an_error() -> None:
    with pytest.raises(BackendError, match="2 parameter"):
        SPARK.transpile("SELECT ? + ?", [1])


def test_the_feature_definitions_translate_without_refusal() -> None:
    sql = spark(feature_sql(datetime(2011, 12, 10)))
    assert "WEEKDAY(ts) + 1" in sql and "DAYOFWEEK" not in sql
    assert "UNIX_MICROS(o.last_ts)" in sql and "UNIX_TIMESTAMP" not in sql
    assert "86400.0 AS DOUBLE" in sql


def test_the_event_feature_definitions_translate() -> None:
    from shopseg.features.events import event_feature_sql

    sql = spark(event_feature_sql(datetime(2019, 10, 31)))
    assert "MATERIALIZED" not in sql and "XXHASH64(customer_id)" in sql
    assert "HASH(" not in sql.replace("XXHASH64(", "")


def test_the_cleaning_rules_translate() -> None:
    for rule in rules_for(CleanConfig()):
        if rule.condition.startswith("<"):
            continue
        out = spark(f"SELECT CASE WHEN {rule.condition} THEN '{rule.code}' END FROM t")
        assert rule.code in out


def test_unparseable_sql_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="cannot parse"):
        spark("SELECT FROM WHERE (")


# ----------------------------------------------------------------------------------------------- on Spark
#: values every fix-up is tried on: dates in many styles, Monday and Sunday, fractions of a second, NaN/inf
VALUES = {
    "s": ["12/1/2010 8:26", "1/2/95", "2011-01-05", "20110105", "5 jan 2011", "17850.0", "abc 123", None],
    "ts": [
        datetime(2024, 1, 1, 10, 0),
        datetime(2024, 1, 7, 23, 59, 59, 500000),
        datetime(2011, 12, 9, 12, 50),
        None,
        datetime(2010, 12, 1, 0, 0, 1),
        datetime(2016, 2, 29, 6, 30),
        datetime(2011, 1, 2, 18, 0),
        datetime(2011, 1, 3, 5, 59),
    ],
    "d": [17850.0, -3.5, float("nan"), float("inf"), None, 2.0, 0.1, -0.0],
    "n": [1293840001, 1293840001123, 5, None, 0, 99999999999, 1, 42],
}
#: the same instants as ``ts``, time-zone aware (as pandas writes tz-aware columns to Parquet)
ZONED = [None if v is None else v.replace(tzinfo=UTC) for v in VALUES["ts"]]

EXPRESSIONS = [
    "regexp_full_match(s, '\\d+')",
    "regexp_full_match(s, '-?\\d*\\.\\d+')",
    "try_strptime(s, '%m/%d/%Y %H:%M')",
    "try_strptime(s, ['%d/%m/%y', '%Y-%m-%d', '%Y%m%d'])",
    "try_strptime(s, '%d %b %Y')",
    "epoch(ts)",
    "CASE WHEN n >= 1000000000000 THEN epoch_ms(CAST(n AS BIGINT)) END",
    "CASE WHEN n < 100000000000 THEN make_timestamp(CAST(n AS BIGINT) * 1000000) END",
    "isodow(ts)",
    "timezone('UTC', tz)",
    "timezone('Europe/London', tz)",
    "date_diff('day', CAST(ts AS DATE), CAST(TIMESTAMP '2024-02-01 00:00:00' AS DATE))",
    "date_trunc('month', ts)",
    "isfinite(d)",
    "CASE WHEN isfinite(d) THEN trunc(d) END",
    "CASE WHEN isfinite(d) AND d = trunc(d) THEN CAST(CAST(d AS HUGEINT) AS VARCHAR) END",
    "regexp_replace(s, '^(\\d+)\\.0+$', '\\1')",
    "regexp_replace(s, '[^0-9]', '', 'g')",
    "1.0 / 3 + n",
    "least(1.0, n / 86400.0)",
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import pyarrow as pa

    import spark_support
    from shopseg.backends import DuckDBBackend
    from shopseg.backends.spark import SparkBackend

    tmp = tmp_path_factory.mktemp("fixups")
    table = pa.table(
        {
            "id": list(range(len(VALUES["s"]))),
            "s": VALUES["s"],
            "ts": pa.array(VALUES["ts"], pa.timestamp("us")),
            "d": VALUES["d"],
            "n": pa.array(VALUES["n"], pa.int64()),
            "tz": pa.array(ZONED, pa.timestamp("us", tz="UTC")),
        }
    )
    duck, spark = DuckDBBackend(tmp / "db.duckdb"), SparkBackend(tmp / "warehouse", spark=spark_support.session())
    for b in (duck, spark):
        b.create_table("vals", table)
    yield duck, spark
    duck.close()
    spark.close()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


@pytest.mark.spark
@pytest.mark.slow
def test_every_fixup_computes_what_duckdb_computes(engines: Any) -> None:
    duck, spark = engines
    select = ", ".join(f"{e} AS e{i}" for i, e in enumerate(EXPRESSIONS))
    sql = f"SELECT id, {select} FROM vals ORDER BY id"
    expected, got = duck.rows(sql), spark.rows(sql)
    assert len(expected) == len(got) == len(VALUES["s"])
    for row_d, row_s in zip(expected, got, strict=True):
        for i, (a, b) in enumerate(zip(row_d[1:], row_s[1:], strict=True)):
            assert _same(a, b), f"row {row_d[0]}: {EXPRESSIONS[i]} gives {b!r} on Spark, {a!r} on DuckDB"
    # the dates were parsed at all (not NULL on both sides)
    assert expected[1][4] == datetime(1995, 2, 1) and expected[0][3] == datetime(2010, 12, 1, 8, 26)


@pytest.mark.spark
@pytest.mark.slow
def test_aggregates_samples_and_updates_agree(engines: Any) -> None:
    duck, spark = engines
    sql = (
        "SELECT quantile_cont(d, 0.25), median(d), count(DISTINCT date_trunc('month', ts)), "
        "arg_max(s, n), arg_min(s, (-n, s)) FROM vals WHERE isfinite(d)"
    )
    assert [_same(a, b) for a, b in zip(duck.rows(sql)[0], spark.rows(sql)[0], strict=True)] == [True] * 5
    # DuckDB samples the FROM source before WHERE: 3 of the 8 rows, then the non-null ones among them
    sample = "SELECT count(*) FROM (SELECT id FROM vals USING SAMPLE reservoir(3 ROWS) REPEATABLE (7))"
    assert duck.rows(sample) == spark.rows(sample) == [(3,)]
    filtered = "SELECT count(*) FROM vals v WHERE v.n > 0 USING SAMPLE reservoir(8 ROWS) REPEATABLE (7)"
    assert duck.rows(filtered) == spark.rows(filtered) == [(6,)]
