"""One local Spark session for the whole test run, shared by every Spark test module.

Starting Spark's JVM takes 10-50 s on a busy 2-core machine, so the session is made once (local[2], two shuffle
partitions, no UI, error-level logs, bound to 127.0.0.1) and never stopped by a test: the JVM ends with the
test process. A test module uses it through its own fixture::

    @pytest.fixture(scope="module")
    def spark() -> SparkSession:
        return spark_support.session()
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Settings of the test session (beyond what shopseg sets for every session).
TEST_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2",
    "spark.driver.memory": "1g",
    # small test tables: broadcast every join side, never spill
    "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
}


@functools.cache
def session() -> SparkSession:
    from shopseg.backends.spark import spark_session

    return spark_session("local[2]", app_name="shopseg-tests", shuffle_partitions=2, conf=TEST_CONF)
