"""Mask overlap: intersection counts, a metric registry, the chance level and tidy tables.

==========  ===========================================================================================
module      holds
==========  ===========================================================================================
counts      :class:`OverlapCounts` and bit-packed counting (:func:`packed_overlap_counts`, :func:`pack`)
metrics     the overlap metric registry :data:`METRICS` (symmetry, identity, bounds, kind of each metric)
chance      the chance level: expected intersection and Jaccard, per-layer and model-total p-values
tables      tidy tables: :func:`overlap_table`, :func:`pairwise_overlap`, :func:`jaccard_matrix`
==========  ===========================================================================================

Two masks A and B of one tensor of N weights keep ``kept_a = |A|`` and ``kept_b = |B|`` weights. Everything
here is computed from four counts (:class:`OverlapCounts`)::

    intersection  |A ∩ B|                     weights kept by both
    union         |A ∪ B| = kept_a + kept_b − intersection
    hamming       |A Δ B| = union − intersection   weights kept by exactly one mask (a count;
                                               the hamming_fraction metric is hamming / N)
    jaccard       |A ∩ B| / |A ∪ B|           intersection over union (IoU), 1 when both masks are empty

Model totals pool the counts of all layers (the Jaccard of a model is Σ|A∩B| / Σ|A∪B|, as in Paganini & Forde
2020b), never averages of per-layer ratios.

**Chance level.** The null model keeps, in every layer, the same number of weights as each observed mask, but
chosen uniformly at random and independently for A and B. In a layer the intersection is then hypergeometric,
``X ~ Hypergeometric(N, kept_a, kept_b)`` (draw kept_b of N weights of which kept_a are "kept by A"):

- ``E|A∩B| = kept_a · kept_b / N`` and ``Var|A∩B| = kept_b · p(1 − p) · (N − kept_b) / (N − 1)``,
  p = kept_a / N.
- For a model, the expected intersection is the *sum* of the per-layer expectations. The pooled density is never
  used: uneven layer densities alone raise the expected overlap above ``d_a · d_b · N``.
- Expected Jaccard is defined as the ratio of expectations ``E|A∩B| / (kept_a + kept_b − E|A∩B|)``
  (:func:`expected_jaccard`). Because the union is ``kept_a + kept_b − X``, this is ``f(E X)`` for the convex
  ``f(x) = x / (kept_a + kept_b − x)``, which slightly *underestimates* ``E[f(X)]`` (Jensen); the gap is about
  ``f''(E X) · Var X / 2``, e.g. 0.1 % of the value for N = 1000, kept 200 and 300, and shrinks as 1/N.
- The p-value is one-sided, ``P(X ≥ observed)``: small when the masks share more weights than chance. For one
  layer it is the exact hypergeometric survival function (scipy). For a model total it is the tail of the sum of
  independent per-layer hypergeometrics, computed by :func:`total_intersection_pvalue`: by exact convolution of
  the per-layer pmfs when that is cheap (``method="convolution"``), otherwise by a normal approximation with
  continuity correction (``method="normal"``); see that function for the details and error bounds.

**Speed.** Masks are compared bit-packed (``numpy.packbits``, 1 bit per weight): the intersection is the
popcount of ``a & b`` on uint64 words (``numpy.bitwise_count``, or a byte lookup table on numpy < 2.0), taken in
cache-sized blocks so that no full-size temporary is made. The union and Hamming distance follow from the
counts, so only the intersection (and the kept counts, when not already known) is ever counted.
"""

from ticketlab.analysis.overlap.chance import (EXACT_WORK_LIMIT, PVALUE_FLOOR, PVALUE_METHODS,  # noqa: F401
                                               expected_intersection, expected_jaccard, hypergeometric_sum_pmf,
                                               intersection_pvalue, intersection_variance,
                                               total_intersection_pvalue)
from ticketlab.analysis.overlap.counts import (OverlapCounts, overlap_counts, pack,  # noqa: F401
                                               packed_overlap_counts, total_counts)
from ticketlab.analysis.overlap.metrics import (METRICS, OverlapMetric, containment, cosine_overlap,  # noqa: F401
                                                dice_overlap, get_metric, hamming_fraction, jaccard_distance,
                                                jaccard_overlap, list_metrics, overlap_coefficient,
                                                register_metric)
from ticketlab.analysis.overlap.tables import (OVERLAP_COLUMNS, jaccard_matrix, mask_overlap,  # noqa: F401
                                               overlap_table, pairwise_overlap)

__all__ = [
    "OverlapCounts", "total_counts", "pack", "packed_overlap_counts", "overlap_counts",
    "OverlapMetric", "METRICS", "register_metric", "get_metric", "list_metrics", "jaccard_overlap",
    "jaccard_distance", "dice_overlap", "overlap_coefficient", "cosine_overlap", "hamming_fraction", "containment",
    "expected_intersection", "intersection_variance", "expected_jaccard", "intersection_pvalue",
    "hypergeometric_sum_pmf", "total_intersection_pvalue", "PVALUE_FLOOR", "EXACT_WORK_LIMIT", "PVALUE_METHODS",
    "OVERLAP_COLUMNS", "overlap_table", "pairwise_overlap", "mask_overlap", "jaccard_matrix",
]
