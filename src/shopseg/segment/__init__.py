"""Segmentation: one Segmenter interface (fit/predict/save/load), several algorithms, k selection with many
indices, bootstrap stability, preprocessing recorded in the model, and scoring of new customers.

``make_segmenter(algorithm, features, **params)`` builds any of ``kmeans``, ``minibatch``, ``ward``, ``gmm``,
``hdbscan``, ``rfm`` and ``auto``; ``load_segmenter(directory)`` reads a saved model of any of them.
"""

from shopseg.segment.auto import AutoSegmenter
from shopseg.segment.base import (
    ALGORITHMS,
    NOISE,
    NOISE_NAME,
    Segmenter,
    available_algorithms,
    load_segmenter,
    make_segmenter,
    segmenter_from_config,
)
from shopseg.segment.gmm import GMMSegmenter
from shopseg.segment.hdbscan import HDBSCANSegmenter
from shopseg.segment.kmeans import KMeansSegmenter, MiniBatchKMeansSegmenter
from shopseg.segment.preprocess import Preprocessor
from shopseg.segment.rfm import RFM_SEGMENTS, RFMSegmenter
from shopseg.segment.select import Selection, choose_k, evaluate_k, evaluate_labels, gap_statistic, knee
from shopseg.segment.spark_mllib import SparkBisectingKMeansSegmenter, SparkGMMSegmenter, SparkKMeansSegmenter
from shopseg.segment.stability import Stability, bootstrap_stability
from shopseg.segment.ward import WardSegmenter, WardTree, ward_tree

__all__ = [
    "ALGORITHMS",
    "NOISE",
    "NOISE_NAME",
    "RFM_SEGMENTS",
    "AutoSegmenter",
    "GMMSegmenter",
    "HDBSCANSegmenter",
    "KMeansSegmenter",
    "MiniBatchKMeansSegmenter",
    "Preprocessor",
    "RFMSegmenter",
    "Segmenter",
    "Selection",
    "SparkBisectingKMeansSegmenter",
    "SparkGMMSegmenter",
    "SparkKMeansSegmenter",
    "Stability",
    "WardSegmenter",
    "WardTree",
    "available_algorithms",
    "bootstrap_stability",
    "choose_k",
    "evaluate_k",
    "evaluate_labels",
    "gap_statistic",
    "knee",
    "load_segmenter",
    "make_segmenter",
    "segmenter_from_config",
    "ward_tree",
]
