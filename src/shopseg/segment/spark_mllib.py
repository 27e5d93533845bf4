"""Segmentation on Spark MLlib: K-Means, bisecting K-Means and Gaussian mixtures behind the Segmenter interface.

What runs where:

* **Preprocessing** is shopseg's :class:`~shopseg.segment.preprocess.Preprocessor`, fitted and applied on the
  driver exactly as for the other segmenters (same fills, logs, scaling), so a model means the same thing
  whichever engine fitted it.
* **Choosing k and stability** run on seeded samples on the driver (``selection_sample``, ``stability_sample``),
  with the indices of :mod:`shopseg.segment.select`, clustering each sample with scikit-learn's member of the
  same algorithm family (KMeans, BisectingKMeans, GaussianMixture). Samples are bounded, so this part does not
  grow with the shop.
* **The final model** is fitted on every customer by MLlib on Spark (``pyspark.ml.clustering``), in the
  active Spark session (the Spark engine's, or a local one started on demand).

Models are saved as the scikit-learn family's format (``algorithm`` "kmeans" or "gmm" in ``segmenter.json``,
centres or mixture parameters as ``.npy``), with ``fit.engine = "spark"``: ``shopseg score`` and
:func:`~shopseg.segment.load_segmenter` read them without Spark. Customers go to the nearest centre (K-Means,
bisecting K-Means: MLlib's own bisecting predict walks its tree of splits, which can differ from the nearest
final centre for a few customers; shopseg's labels are the nearest centre, on the training data too) or to
the most probable component (mixtures).

``SparkKMeansSegmenter(init_centers=...)`` starts Lloyd's iterations from given centres (MLlib's RDD-based
K-Means, which accepts an initial model): with the same centres it converges to the same partition as
scikit-learn's ``KMeans(init=centres, n_init=1)`` (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sklearn.cluster import BisectingKMeans, KMeans

from shopseg.errors import ConfigError
from shopseg.segment.base import Segmenter, nearest_centre, register
from shopseg.segment.gmm import GMMSegmenter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkBisectingKMeansSegmenter", "SparkGMMSegmenter", "SparkKMeansSegmenter", "spark_vectors"]


def active_session() -> SparkSession:
    """The active Spark session (the Spark engine's), or a local one."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        from shopseg.backends.spark import spark_session

        spark = spark_session("local[*]")
    return spark


def spark_vectors(spark: SparkSession, x: np.ndarray) -> DataFrame:
    """The rows of ``x`` as a Spark DataFrame with one MLlib vector column ``features`` (via Arrow)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as sf

    n, d = x.shape
    values = pa.array(np.ascontiguousarray(x, dtype=np.float64).ravel())
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    table = pa.table({"features": pa.ListArray.from_arrays(offsets, values)})
    return spark.createDataFrame(table).select(array_to_vector(sf.col("features")).alias("features"))


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise ConfigError(f"{name} must be positive, got {v!r}")


class _KMeansFamily(Segmenter):
    """K-Means-like models: centres, nearest-centre assignment, scikit-learn twin on driver samples."""

    twin: Any = KMeans

    inertia_: float

    def __init__(
        self,
        features: list[str],
        *,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        **common: Any,
    ) -> None:
        super().__init__(features, **common)
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol

    @property
    def algorithm_(self) -> str:
        return "kmeans"

    def _twin(self, k: int, seed: int) -> Any:
        return KMeans(n_clusters=k, n_init=max(1, min(self.n_init, 3)), random_state=seed)

    def _cluster_all(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        return {k: np.asarray(self._twin(k, seed).fit(x).labels_, dtype=np.int64) for k in ks}

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        return {k: nearest_centre(x_eval, self._twin(k, seed).fit(x_fit).cluster_centers_) for k in ks}

    def _n_slots(self, raw: np.ndarray) -> int:
        return len(self.state_["centers"])

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return nearest_centre(x, self.state_["centers"])

    def _state_json(self) -> dict[str, Any]:
        return {"inertia": self.inertia_}

    def _load_state_json(self, state: dict[str, Any]) -> None:
        self.inertia_ = float(state.get("inertia") or np.nan)

    #: fit on translated data (see SparkBisectingKMeansSegmenter)
    _translate: bool = False

    def _spark_fit(self, frame: DataFrame, k: int, seed: int) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        assert k is not None
        _check_positive(max_iter=self.max_iter, tol=self.tol, n_init=self.n_init)
        spark = active_session()
        offset = (1.0 - x.min(axis=0)) if self._translate and len(x) else np.zeros(x.shape[1])
        frame = spark_vectors(spark, x + offset).cache()
        try:
            best: tuple[np.ndarray, float] | None = None
            for i in range(self.n_init):
                centres, cost = self._spark_fit(frame, k, self.seed + i)
                if best is None or cost < best[1]:
                    best = (centres, cost)
        finally:
            frame.unpersist()
        assert best is not None
        self.state_ = {"centers": np.asarray(best[0], dtype=np.float64) - offset}
        self.inertia_ = float(best[1])
        self.fit_info_.update(engine="spark", spark_master=spark.sparkContext.master)
        return nearest_centre(x, self.state_["centers"])


@register
class SparkKMeansSegmenter(_KMeansFamily):
    """K-Means fitted by Spark MLlib (k-means|| initialisation, ``n_init`` runs, the lowest cost kept); k chosen
    on a driver sample with scikit-learn's K-Means. Saved as a K-Means model."""

    algorithm = "spark_kmeans"
    label = "K-Means (Spark MLlib)"

    def __init__(
        self,
        features: list[str],
        *,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        init_steps: int = 2,
        init_centers: list[list[float]] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(features, n_init=n_init, max_iter=max_iter, tol=tol, **common)
        self.init_steps = init_steps
        self.init_centers = init_centers

    def _spark_fit(self, frame: DataFrame, k: int, seed: int) -> tuple[np.ndarray, float]:
        if self.init_centers is not None:
            return self._from_centres(frame, k)
        from pyspark.ml.clustering import KMeans as MLKMeans

        model = MLKMeans(
            k=k, seed=seed, maxIter=self.max_iter, tol=self.tol, initMode="k-means||", initSteps=self.init_steps
        ).fit(frame)
        self.fit_info_["method"] = (
            f"K-Means on Spark MLlib (k-means||, {self.n_init} run(s), at most {self.max_iter} iterations)"
        )
        return np.asarray(model.clusterCenters(), dtype=np.float64), float(model.summary.trainingCost)

    def _from_centres(self, frame: DataFrame, k: int) -> tuple[np.ndarray, float]:
        from pyspark.mllib.clustering import KMeans as RDDKMeans
        from pyspark.mllib.clustering import KMeansModel
        from pyspark.mllib.linalg import Vectors

        start = np.asarray(self.init_centers, dtype=np.float64)
        if start.ndim != 2 or start.shape[0] != k:
            raise ConfigError(f"init_centers must hold k={k} centres of the features, got shape {start.shape}")
        rows = frame.rdd.map(lambda r: Vectors.dense(r["features"].toArray()))
        model = RDDKMeans.train(
            rows,
            k,
            maxIterations=self.max_iter,
            initialModel=KMeansModel([Vectors.dense(c) for c in start]),
            epsilon=self.tol,
        )
        self.fit_info_["method"] = "K-Means on Spark MLlib (Lloyd's iterations from given centres)"
        return np.asarray([np.asarray(c) for c in model.clusterCenters], dtype=np.float64), float(
            model.computeCost(rows)
        )


@register
class SparkBisectingKMeansSegmenter(_KMeansFamily):
    """Bisecting K-Means fitted by Spark MLlib (the largest-cost cluster split in two until k); k chosen on a
    driver sample with scikit-learn's BisectingKMeans. Saved as a K-Means model (nearest final centre)."""

    algorithm = "spark_bisecting"
    label = "bisecting K-Means (Spark MLlib)"
    # MLlib splits a cluster by nudging its centre by 1e-4 x the centre's norm: standardised data have their
    # mean at the origin, so nothing would split. Distances do not change when every point moves by the same
    # vector, so the fit sees the data shifted into the positive orthant (and the centres are shifted back).
    _translate = True

    def __init__(
        self,
        features: list[str],
        *,
        n_init: int = 1,
        max_iter: int = 20,
        tol: float = 1e-4,
        min_divisible_cluster_size: float = 1.0,
        **common: Any,
    ) -> None:
        super().__init__(features, n_init=n_init, max_iter=max_iter, tol=tol, **common)
        self.min_divisible_cluster_size = min_divisible_cluster_size

    def _twin(self, k: int, seed: int) -> Any:
        return BisectingKMeans(n_clusters=k, random_state=seed, bisecting_strategy="largest_cluster")

    def _spark_fit(self, frame: DataFrame, k: int, seed: int) -> tuple[np.ndarray, float]:
        from pyspark.ml.clustering import BisectingKMeans as MLBisecting

        model = MLBisecting(
            k=k, seed=seed, maxIter=self.max_iter, minDivisibleClusterSize=self.min_divisible_cluster_size
        ).fit(frame)
        self.fit_info_["method"] = (
            f"bisecting K-Means on Spark MLlib ({self.max_iter} iterations per split; customers go to the nearest "
            "final centre)"
        )
        return np.asarray(model.clusterCenters(), dtype=np.float64), float(model.summary.trainingCost)


@register
class SparkGMMSegmenter(GMMSegmenter):
    """Gaussian mixture (full covariances) fitted by Spark MLlib's EM; k chosen on a driver sample with
    scikit-learn's GaussianMixture (its BIC joins the vote). Saved as a Gaussian-mixture model."""

    algorithm = "spark_gmm"
    label = "Gaussian mixture (Spark MLlib)"

    def __init__(
        self,
        features: list[str],
        *,
        covariance_type: str = "full",
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-3,
        **common: Any,
    ) -> None:
        super().__init__(features, covariance_type=covariance_type, n_init=n_init, **common)
        self.max_iter = max_iter
        self.tol = tol

    @property
    def algorithm_(self) -> str:
        return "gmm"

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        assert k is not None
        from pyspark.ml.clustering import GaussianMixture as MLGaussianMixture

        if self.covariance_type != "full":
            raise ConfigError(
                "Spark MLlib's Gaussian mixture has full covariances only, got "
                f"covariance_type={self.covariance_type!r}"
            )
        _check_positive(max_iter=self.max_iter, tol=self.tol, n_init=self.n_init)
        spark = active_session()
        frame = spark_vectors(spark, x).cache()
        try:
            best: tuple[Any, float] | None = None
            for i in range(self.n_init):
                model = MLGaussianMixture(k=k, seed=self.seed + i, maxIter=self.max_iter, tol=self.tol).fit(frame)
                ll = float(model.summary.logLikelihood)
                if best is None or ll > best[1]:
                    best = (model, ll)
            assert best is not None
            model = best[0]
            weights = np.asarray(model.weights, dtype=np.float64)
            rows = model.gaussiansDF.collect()
        finally:
            frame.unpersist()
        means = np.asarray([r["mean"].toArray() for r in rows], dtype=np.float64)
        d = means.shape[1]
        # the same small ridge scikit-learn adds (reg_covar), so that every covariance can be inverted
        covs = np.asarray([r["cov"].toArray() for r in rows], dtype=np.float64) + 1e-6 * np.eye(d)
        self.state_ = {
            "weights": weights / weights.sum(),
            "means": means,
            "covariances": covs,
            "precisions_cholesky": _precisions_cholesky(covs),
        }
        self.fit_info_.update(
            method=f"Gaussian mixture on Spark MLlib (EM, full covariances, {self.n_init} run(s))",
            engine="spark",
            spark_master=spark.sparkContext.master,
            log_likelihood=best[1],
        )
        return self._assign(x)


def _precisions_cholesky(covariances: np.ndarray) -> np.ndarray:
    """scikit-learn's parametrisation of full covariances: the Cholesky factors of the precision matrices."""
    from scipy.linalg import cholesky, solve_triangular

    out = np.empty_like(covariances)
    for i, cov in enumerate(covariances):
        chol = cholesky(cov, lower=True)
        out[i] = solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T
    return out
