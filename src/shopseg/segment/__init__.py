"""Segmentation: preprocessing, K-Means with k chosen from four indices, persistence, scoring."""

from shopseg.segment.kmeans import KMeansSegmenter
from shopseg.segment.preprocess import Preprocessor
from shopseg.segment.select import Selection, choose_k, evaluate_k, knee

__all__ = ["KMeansSegmenter", "Preprocessor", "Selection", "choose_k", "evaluate_k", "knee"]
