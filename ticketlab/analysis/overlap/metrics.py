"""The overlap metric registry: similarities and distances of two masks computed from their overlap counts.

Every metric states its properties (symmetry, the value of a mask with itself, bounds, similarity or distance),
and one common test checks each registered metric against them (scikit-learn's way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ticketlab.analysis.overlap.counts import OverlapCounts
from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

__all__ = ["OverlapMetric", "METRICS", "register_metric", "get_metric", "list_metrics", "jaccard_overlap",
           "jaccard_distance", "dice_overlap", "overlap_coefficient", "cosine_overlap", "hamming_fraction",
           "containment"]


@dataclass(frozen=True)
class OverlapMetric:
    """A similarity or distance of two masks computed from their :class:`OverlapCounts`.

    Attributes
    ----------
    name : str
        Registry name; ``*_overlap`` and ``*_coefficient`` are similarities (higher = more alike),
        ``*_distance`` are distances (lower = more alike); ``*_fraction`` is a fraction of the N weights
        (``hamming_fraction``: the Hamming count ``hamming`` / N, a distance). ``kind`` says which.
    func : callable
        ``func(counts) -> float``.
    symmetric : bool
        Whether ``metric(A, B) == metric(B, A)`` for all masks.
    identity : float
        ``metric(A, A)`` for every mask A (including an empty one).
    bounds : tuple of float
        The closed range ``(low, high)`` every value lies in (NaN is allowed only where documented).
    kind : str
        ``"similarity"`` or ``"distance"``.
    description : str
        The formula, for ``--help`` and the docs.
    """

    name: str
    func: Callable[[OverlapCounts], float]
    symmetric: bool
    identity: float
    bounds: tuple[float, float]
    kind: str
    description: str

    def __call__(self, counts: OverlapCounts) -> float:
        return float(self.func(counts))


#: All overlap metrics: a :class:`~ticketlab.registry.Registry` of :class:`OverlapMetric` filled by
#: :func:`register_metric`; ``METRICS.get(name)`` raises a one-line ConfigError naming the choices.
METRICS: Registry[OverlapMetric] = Registry("overlap metric")
_KINDS = ("similarity", "distance")


def register_metric(name: str, *, symmetric: bool, identity: float, bounds: tuple[float, float], kind: str,
                    description: str, aliases: tuple[str, ...] = ()
                    ) -> Callable[[Callable[[OverlapCounts], float]], Callable]:
    """Decorator adding ``func(counts) -> float`` to :data:`METRICS`; every property must be stated."""
    if kind not in _KINDS:
        raise ConfigError(f"metric kind must be one of {', '.join(_KINDS)}; got {kind!r}")

    def decorate(func: Callable[[OverlapCounts], float]) -> Callable[[OverlapCounts], float]:
        metric = OverlapMetric(name, func, bool(symmetric), float(identity), (float(bounds[0]), float(bounds[1])),
                               kind, description)
        try:
            METRICS.register(name, metric, aliases=aliases)
        except ValueError as err:  # registered twice
            raise ConfigError(str(err)) from None
        return func

    return decorate


def get_metric(name: str) -> OverlapMetric:
    """The registered metric ``name``; raises :class:`ConfigError` listing the valid names."""
    return METRICS.get(name)


def list_metrics() -> list[str]:
    """Names of the registered overlap metrics, sorted."""
    return sorted(METRICS)


def _ratio(num: float, den: float, both_empty: bool) -> float:
    """``num / den``; for 0/0, 1.0 when both masks are empty (identical sets) and NaN otherwise."""
    if den:
        return num / den
    return 1.0 if both_empty else float("nan")


def _both_empty(c: OverlapCounts) -> bool:
    return c.kept_a == 0 and c.kept_b == 0


@register_metric("jaccard_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / |A∪B| (intersection over union); 1 when both masks are empty")
def jaccard_overlap(c: OverlapCounts) -> float:
    return _ratio(c.intersection, c.union, _both_empty(c))


@register_metric("jaccard_distance", symmetric=True, identity=0.0, bounds=(0.0, 1.0), kind="distance",
                 description="1 − |A∩B| / |A∪B|; 0 when both masks are empty")
def jaccard_distance(c: OverlapCounts) -> float:
    return 1.0 - jaccard_overlap(c)


@register_metric("dice_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="2|A∩B| / (|A| + |B|); 1 when both masks are empty")
def dice_overlap(c: OverlapCounts) -> float:
    return _ratio(2 * c.intersection, c.kept_a + c.kept_b, _both_empty(c))


@register_metric("overlap_coefficient", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / min(|A|, |B|) (Szymkiewicz–Simpson); 1 when both masks are empty, NaN "
                 "when only one is")
def overlap_coefficient(c: OverlapCounts) -> float:
    return _ratio(c.intersection, min(c.kept_a, c.kept_b), _both_empty(c))


@register_metric("cosine_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / sqrt(|A|·|B|) (Ochiai, the cosine of the 0/1 vectors); 1 when both "
                 "masks are empty, NaN when only one is")
def cosine_overlap(c: OverlapCounts) -> float:
    return _ratio(c.intersection, math.sqrt(c.kept_a * c.kept_b), _both_empty(c))


@register_metric("hamming_fraction", symmetric=True, identity=0.0, bounds=(0.0, 1.0), kind="distance",
                 description="|A Δ B| / N, the fraction of the N weights on which the masks differ (the Hamming "
                 "count 'hamming' divided by the size; scipy.spatial.distance.hamming); 0 for an empty tensor",
                 aliases=("hamming_distance",))
def hamming_fraction(c: OverlapCounts) -> float:
    return c.hamming / c.size if c.size else 0.0


@register_metric("containment", symmetric=False, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / |A|, the fraction of A's kept weights that B also keeps; 1 when both "
                 "masks are empty, NaN when only A is")
def containment(c: OverlapCounts) -> float:
    return _ratio(c.intersection, c.kept_a, _both_empty(c))
