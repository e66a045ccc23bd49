"""Structured-like connectivity in unstructured masks, and effective sparsity.

Two analyses of one set of masks, both pure functions of ``(masks, tensors)`` returning tidy DataFrames::

    from ticketlab.analysis.structure import group_structure, effective_density
    with ticketlab.open_ticket("run.h5") as t:
        masks, tensors = t.masks(t.levels[-1]), t.tensors
    group_structure(masks, tensors)      # one row per (layer, grouping): fully pruned units/filters/kernels
    effective_density(masks, tensors)    # one row per layer plus "total": direct vs effective density

**Group structure** (:func:`group_structure`). Unstructured pruning can remove whole output units (conv
filters), whole input units (conv input channels) or whole kernels, which looks like structured pruning
(Paganini & Forde 2020 saw it in conv layers with weight rewinding). Each layer of N weights with k kept is
partitioned three ways into equal groups:

==========  ==============================  ===============================  =====================
grouping    Linear ``(out, in)``            Conv ``(out, in, kh, kw)``       weights per group g
==========  ==============================  ===============================  =====================
output      row ``mask[o, :]`` (a unit)     filter ``mask[o, :, :, :]``      N / out
input       column ``mask[:, i]``           input channel ``mask[:, i]``     N / in
kernel      —                               ``mask[o, i, :, :]``             kh · kw
==========  ==============================  ===============================  =====================

For each grouping it reports the fraction of groups that are fully pruned beside its expectation, and the
dispersion of per-group kept counts, both against the null hypothesis that the layer's k kept weights were
placed **uniformly at random** among its N positions (a random mask with the same per-layer count):

- expected fully-pruned fraction = P(a given group is fully pruned) = C(N − g, k) / C(N, k), exact, computed
  in log space as Σ_{j<min(g,k)} log1p(−max(g,k)/(N − j)) (``scipy.special.gammaln`` beyond 2^22 terms,
  at a cost of about 1e-10 in log P; 0 when k > N − g); its standard deviation uses the exact pair
  probability C(N − 2g, k) / C(N, k) (the group indicators are negatively correlated);
- dispersion: with per-group kept counts k_i over n groups, k̄ = k / n and p = k / N, the statistic
  X² = Σ (k_i − k̄)² / (k̄ (1 − p)) is Pearson's chi-square test of homogeneity of the n × 2 table
  (kept, pruned) per group. Under the null the counts are multivariate hypergeometric (sampling without
  replacement), for which E[X²] = (n − 1) · N / (N − 1); X² is compared with χ²(n − 1), the usual
  approximation, good when k̄ ≥ 5 and g − k̄ ≥ 5. ``dispersion`` = X² / (n − 1) is the index of dispersion
  (≈ 1 for random placement, > 1 clustered: some units much denser than others, < 1 more even than random).
  ``p_value`` is the upper tail (over-dispersion is what structure looks like). With ``simulations=B`` a
  Monte Carlo p-value from B exact multivariate-hypergeometric draws, (1 + #{X²_b ≥ X²}) / (B + 1), is added;
  use it for very sparse or very small layers, where the χ² approximation is poor.

**Effective sparsity** (:func:`effective_masks`, :func:`effective_density`), after Vysogorets & Kempe
(2021, arXiv:2107.02306, code ``avysogorets/effective-sparsity``): a kept weight is *effective* if it lies on
some path from the network input to the network output; kept weights detached from the input (a unit upstream
lost all its incoming weights) or from the output (a unit downstream lost all its outgoing weights) are
*inactive* ("implicitly pruned", Paganini & Forde 2020b App. C). Effective density = effective kept / size.

- Computed for **plain feed-forward stacks of Linear and Conv layers** whose masked tensors, in tensor-table
  order, chain: layer i+1 takes layer i's output (``in`` of i+1 = ``out`` of i), or, at a conv → Linear
  flatten, ``in_features`` is a multiple of the conv's ``out_channels`` and output channel c feeds the block
  of H·W = in_features / out_channels Linear inputs ``c·HW … (c+1)·HW − 1`` (C-order flatten; pooling and
  global average pooling keep channels). This covers LeNet-300-100, LeNet-5, Conv-2/4/6 and VGG.
- **Refused** (``ConfigError``): tensor tables that do not chain, which catches residual and branching
  networks (ResNets' projection shortcuts); tensors whose names contain a ``shortcut`` or ``downsample``
  component; tensors of kind ``"other"``; a Linear layer followed by a Conv layer. A network with skip
  connections whose every tensor happens to chain cannot be told apart from the tensor table alone.
- Conv layers are handled at **channel level**, as Vysogorets & Kempe: input channel i connects to output
  channel o iff any tap of kernel ``mask[o, i]`` is kept; spatial borders (padding) are ignored.
- **Biases are ignored**: a unit whose incoming weights are all pruned still emits its bias (ticketlab
  never masks biases, and BatchNorm adds a bias of its own), but effective sparsity here follows Vysogorets &
  Kempe and ignores biases, so such a unit counts as disconnected from the input.
- All masked tensors count, including unpruned ones (the output layer's all-ones mask), as in ticket-file
  densities; the network's inputs (first layer's input units) are all sources and its outputs all sinks.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import special, stats

from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo, check_masks, compression, density, sparsity
from ticketlab.registry import Registry

#: The groupings of :func:`group_structure`, in output order: ``grouping(mask as (out, in, taps)) -> (per-group kept
#: counts, weights per group)``. ``kernel`` applies to conv layers only.
GROUPINGS: Registry[Callable[[np.ndarray], tuple[np.ndarray, int]]] = Registry("grouping")
GROUPINGS.register("output", lambda m: (m.sum(axis=(1, 2)), m.shape[1] * m.shape[2]))  # units / filters
GROUPINGS.register("input", lambda m: (m.sum(axis=(0, 2)), m.shape[0] * m.shape[2]))   # input units / channels
GROUPINGS.register("kernel", lambda m: (m.sum(axis=2).reshape(-1), m.shape[2]))         # one conv kernel each

#: Name components that mark a residual connection's tensors (OpenLTH/ticketlab, torchvision).
_RESIDUAL_MARKERS = ("shortcut", "downsample")

# Above this many factors the fully-pruned probability switches from a log1p product to gammaln.
_PRODUCT_TERMS = 1 << 22

# Monte Carlo draws are made in batches of at most this many counts, to bound memory.
_SIM_BATCH_ENTRIES = 1 << 22


# ----------------------------------------------------------------------------------------------------------
# The random-placement null


def _log_comb_ratio(size: int, kept: int, removed: int) -> float:
    """log( C(N − g, k) / C(N, k) ) for N = size, k = kept, g = removed; ``-inf`` when k > N − g.

    The ratio equals prod_{j < m} (1 − M / (N − j)) with m = min(g, k), M = max(g, k) (it is symmetric in g
    and k), summed as log1p terms: accurate to rounding. The gammaln form, log Γ(N−g+1) + log Γ(N−k+1) −
    log Γ(N+1) − log Γ(N−g−k+1), cancels terms of size N log N and loses about 1e-10 absolutely at N ~ 1e5
    (a 2% error in the sd of :func:`fully_pruned_null` for LeNet-300-100 at k = 2), so it is used only when
    m > 2^22 terms.
    """
    if kept > size - removed:
        return -math.inf
    m, big = min(kept, removed), max(kept, removed)
    if m <= _PRODUCT_TERMS:
        j = np.arange(m, dtype=np.float64)
        return float(np.sum(np.log1p(-big / (size - j))))
    return float(special.gammaln(size - removed + 1) + special.gammaln(size - kept + 1)
                 - special.gammaln(size + 1) - special.gammaln(size - removed - kept + 1))


def fully_pruned_probability(size: int, kept: int, group_size: int) -> float:
    """Probability that a given group of weights is fully pruned when the kept weights are placed at random.

    Parameters
    ----------
    size : int
        N, weights in the layer.
    kept : int
        k, kept weights in the layer, placed uniformly at random among the N positions (all C(N, k)
        placements equally likely).
    group_size : int
        g, weights in the group (0 ≤ g ≤ N).

    Returns
    -------
    float
        C(N − g, k) / C(N, k), computed in log space (a sum of log1p terms, or ``scipy.special.gammaln`` for
        very large g and k); 0 when k > N − g.
    """
    size, kept, group_size = int(size), int(kept), int(group_size)
    if not (0 <= kept <= size and 0 <= group_size <= size):
        raise ConfigError(f"need 0 <= kept <= size and 0 <= group_size <= size; got size={size}, kept={kept}, "
                          f"group_size={group_size}")
    return math.exp(_log_comb_ratio(size, kept, group_size))


def fully_pruned_null(groups: int, group_size: int, kept: int) -> tuple[float, float]:
    """Mean and standard deviation of the fully-pruned *fraction* of ``groups`` disjoint equal groups that
    partition a layer of N = groups · group_size weights, k of them kept uniformly at random.

    With p1 = C(N − g, k)/C(N, k) and p2 = C(N − 2g, k)/C(N, k) (two given groups both empty), the count X
    of empty groups has E[X] = n·p1 and Var[X] = n·p1(1 − p1) + n(n − 1)(p2 − p1²).

    Returns
    -------
    (mean, sd) : tuple of float
        Of X / n. ``(nan, nan)`` when there are no groups.
    """
    n, g, k = int(groups), int(group_size), int(kept)
    if n <= 0:
        return math.nan, math.nan
    size = n * g
    if not 0 <= k <= size:
        raise ConfigError(f"need 0 <= kept <= groups * group_size = {size}; got kept={k}")
    if k == 0 or g == 0:
        return 1.0, 0.0  # every group is empty
    log_p1 = _log_comb_ratio(size, k, g)
    if log_p1 == -math.inf:
        return 0.0, 0.0  # k > N - g: no group can be empty
    p1 = min(math.exp(log_p1), 1.0)
    # Var = n p1 (1 - p1) + n (n - 1) (p2 - p1^2), with 1 - p1 and p2 / p1^2 - 1 through expm1 to keep the
    # small differences; the two terms still cancel (exactly when k = 1), leaving rounding of order 1e-8
    cov = 0.0
    if n >= 2:
        log_p2 = _log_comb_ratio(size, k, 2 * g)
        cov = -p1 * p1 if log_p2 == -math.inf else p1 * p1 * math.expm1(log_p2 - 2 * log_p1)
    var = n * p1 * -math.expm1(log_p1) + n * (n - 1) * cov
    return p1, math.sqrt(max(var, 0.0)) / n


def dispersion_statistic(counts: np.ndarray, group_size: int) -> float:
    """Chi-square statistic X² = Σ (k_i − k̄)² / (k̄ (1 − k/N)) of per-group kept counts.

    Parameters
    ----------
    counts : array of int, shape (n,) or (..., n)
        Kept weights of each of n groups of ``group_size`` weights (the last axis indexes groups).
    group_size : int
        g; the layer has N = n · g weights.

    Returns
    -------
    float or ndarray
        Pearson's X² for the n × 2 (kept, pruned) table; ``nan`` when all or none of the weights are kept.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[-1]
    kept = counts.sum(axis=-1)
    size = n * int(group_size)
    mean = kept / n
    with np.errstate(invalid="ignore", divide="ignore"):
        x2 = ((counts - mean[..., None]) ** 2).sum(axis=-1) / (mean * (1.0 - kept / size))
    return np.where((kept > 0) & (kept < size), x2, np.nan)[()]


def _simulated_p(x2: float, groups: int, group_size: int, kept: int, simulations: int,
                 rng: np.random.Generator) -> float:
    """Monte Carlo p-value of X² under exact multivariate-hypergeometric per-group counts."""
    colors = np.full(groups, group_size, dtype=np.int64)
    batch = max(1, _SIM_BATCH_ENTRIES // groups)
    exceed, done = 0, 0
    while done < simulations:
        b = min(batch, simulations - done)
        sims = rng.multivariate_hypergeometric(colors, kept, size=b)
        # relative tolerance: ties with the observed value count as "at least as extreme"
        exceed += int(np.count_nonzero(dispersion_statistic(sims, group_size) >= x2 * (1 - 1e-12)))
        done += b
    return (1 + exceed) / (simulations + 1)


# ----------------------------------------------------------------------------------------------------------
# Group structure


def _group_counts(mask: np.ndarray, grouping: str) -> tuple[np.ndarray, int]:
    """Per-group kept counts (flat) and the group size for one grouping of a (≥ 2-D) mask."""
    return GROUPINGS.get(grouping)(mask.reshape(mask.shape[0], mask.shape[1], -1))


def _groupings(t: TensorInfo) -> tuple[str, ...]:
    if len(t.shape) < 2:
        return ()
    if t.kind == "conv" and len(t.shape) >= 3:
        return tuple(GROUPINGS.names())
    return ("output", "input")


def group_structure(masks: Mapping[str, np.ndarray], tensors: Iterable[TensorInfo], *, simulations: int = 0,
                    seed: int | None = 0) -> pd.DataFrame:
    """Fully-pruned units, input units and kernels per layer, and per-group dispersion, against random placement.

    Parameters
    ----------
    masks : mapping of str to bool array
        One mask per tensor of ``tensors`` (``True`` = kept).
    tensors : iterable of TensorInfo
        The tensor table (names, shapes, kinds) in model order. Linear tensors (and 2-D+ tensors of kind
        ``"other"``, read as ``(out, in, ...)``) get the ``output`` and ``input`` groupings, conv tensors also
        ``kernel``; 0-D/1-D tensors are skipped.
    simulations : int
        If > 0, add ``p_value_sim``: a Monte Carlo p-value of the dispersion statistic from this many exact
        random placements of the layer's kept weights.
    seed : int, optional
        Seed of the Monte Carlo draws.

    Returns
    -------
    pandas.DataFrame
        One row per (layer, grouping), in model order, with columns

        - ``layer``, ``kind``, ``shape`` (e.g. ``"6x1x5x5"``), ``pruned`` (whether pruning acts on it);
        - ``grouping``: ``"output"`` (output units / filters), ``"input"`` (input units / channels) or
          ``"kernel"`` (one (out, in) kernel of a conv);
        - ``groups`` (n), ``group_size`` (g, weights per group), ``size`` (N), ``kept`` (k), ``density`` (k/N);
        - ``fully_pruned``: groups with no kept weight; ``fully_pruned_fraction`` = fully_pruned / n;
        - ``expected_fully_pruned_fraction``, ``expected_fully_pruned_sd``: mean and standard deviation of
          that fraction under uniform random placement of the k kept weights (see the module docstring);
        - ``chi2`` (X²), ``dof`` (n − 1), ``dispersion`` (X² / dof; ≈ 1 under random placement),
          ``p_value`` (upper tail of χ²(dof); ``nan`` when k = 0, k = N or n = 1);
        - ``p_value_sim`` (only when ``simulations`` > 0).
    """
    tensors = list(tensors)
    masks = check_masks(masks, tensors)
    if int(simulations) < 0:
        raise ConfigError(f"simulations must be >= 0; got {simulations}")
    rng = np.random.default_rng(seed)
    rows = []
    for t in tensors:
        mask = masks[t.name]
        kept, size = int(np.count_nonzero(mask)), t.size
        for grouping in _groupings(t):
            counts, g = _group_counts(mask, grouping)
            n = counts.size
            empty = int(np.count_nonzero(counts == 0))
            mean, sd = fully_pruned_null(n, g, kept)
            x2 = float(dispersion_statistic(counts, g)) if n > 1 and g > 0 else math.nan
            dof = n - 1
            p = float(stats.chi2.sf(x2, dof)) if dof > 0 and not math.isnan(x2) else math.nan
            row = {
                "layer": t.name, "kind": t.kind, "shape": "x".join(map(str, t.shape)), "pruned": t.pruned,
                "grouping": grouping, "groups": n, "group_size": g, "size": size, "kept": kept,
                "density": density(kept, size), "fully_pruned": empty,
                "fully_pruned_fraction": empty / n if n else math.nan,
                "expected_fully_pruned_fraction": mean, "expected_fully_pruned_sd": sd,
                "chi2": x2, "dof": dof, "dispersion": x2 / dof if dof > 0 else math.nan, "p_value": p,
            }
            if simulations:
                row["p_value_sim"] = (math.nan if math.isnan(x2)
                                      else _simulated_p(x2, n, g, kept, int(simulations), rng))
            rows.append(row)
    columns = ["layer", "kind", "shape", "pruned", "grouping", "groups", "group_size", "size", "kept", "density",
               "fully_pruned", "fully_pruned_fraction", "expected_fully_pruned_fraction",
               "expected_fully_pruned_sd", "chi2", "dof", "dispersion", "p_value"]
    return pd.DataFrame(rows, columns=columns + (["p_value_sim"] if simulations else []))


# ----------------------------------------------------------------------------------------------------------
# Effective sparsity


def feedforward_chain(tensors: Iterable[TensorInfo]) -> list[int]:
    """Check that the tensor table is a plain feed-forward stack and return how consecutive layers connect.

    Parameters
    ----------
    tensors : iterable of TensorInfo
        The masked tensors in model order: Linear ``(out, in)`` and Conv ``(out, in, *kernel)`` weights.

    Returns
    -------
    list of int
        For each boundary i (between tensors i and i + 1): the number of input units of layer i + 1 fed by
        one output unit of layer i — 1 for Linear → Linear and Conv → Conv, H·W = in_features / out_channels
        at a Conv → Linear flatten.

    Raises
    ------
    ConfigError
        If the table is not such a stack (see the module docstring): shapes that do not chain (residual or
        branching networks), residual tensor names, tensors of kind ``"other"``, Linear → Conv.
    """
    tensors = list(tensors)
    if not tensors:
        raise ConfigError("effective sparsity needs at least one masked tensor")
    why = ("effective sparsity is computed only for plain feed-forward stacks of Linear and Conv layers "
           "(LeNet, Conv-2/4/6, VGG); residual or branching networks such as ResNets are not supported")
    for t in tensors:
        parts = t.name.split(".")
        if any(marker in parts for marker in _RESIDUAL_MARKERS):
            raise ConfigError(f"tensor {t.name!r} belongs to a residual connection; {why}")
        if t.kind == "other" or (t.kind == "linear" and len(t.shape) != 2) or (t.kind == "conv" and len(t.shape) < 3):
            raise ConfigError(f"tensor {t.name!r} (kind {t.kind!r}, shape {list(t.shape)}) is not a Linear "
                              f"(out, in) or Conv (out, in, *kernel) weight; {why}")
    links = []
    for a, b in zip(tensors[:-1], tensors[1:]):
        out_a, in_b = a.shape[0], b.shape[1]
        if a.kind == "conv" and b.kind == "linear":
            if out_a == 0 or in_b % out_a:
                raise ConfigError(
                    f"{b.name!r} has {in_b} input features, not a multiple of the {out_a} output channels of "
                    f"{a.name!r}, so it cannot take their flattened output; {why}")
            links.append(in_b // out_a)
        elif a.kind == "linear" and b.kind == "conv":
            raise ConfigError(f"Conv layer {b.name!r} follows Linear layer {a.name!r}; {why}")
        elif out_a != in_b:
            unit = "channels" if a.kind == "conv" else "features"
            raise ConfigError(
                f"{b.name!r} takes {in_b} input {unit} but the preceding tensor {a.name!r} has {out_a} outputs, "
                f"so it does not take that layer's output; {why}")
        else:
            links.append(1)
    return links


def _connectivity(mask: np.ndarray) -> np.ndarray:
    """(out, in) boolean unit graph of a layer: a conv's channel pair is connected iff any kernel tap is kept."""
    return mask.reshape(mask.shape[0], mask.shape[1], -1).any(axis=2)


def _unit_activity(masks: list[np.ndarray], links: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each layer, (active input units, active output units): on some input-to-output path."""
    conn = [_connectivity(m) for m in masks]
    # forward: reachable from the network input
    fwd_in = [np.ones(conn[0].shape[1], bool)]
    fwd_out = []
    for i, c in enumerate(conn):
        out = c[:, fwd_in[i]].any(axis=1)
        fwd_out.append(out)
        if i < len(links):
            fwd_in.append(np.repeat(out, links[i]))
    # backward: reaches the network output
    bwd_out = [np.ones(conn[-1].shape[0], bool)]
    bwd_in = []
    for i in range(len(conn) - 1, -1, -1):
        inp = conn[i][bwd_out[0], :].any(axis=0)
        bwd_in.insert(0, inp)
        if i > 0:
            bwd_out.insert(0, inp.reshape(-1, links[i - 1]).any(axis=1))
    return [(fi & bi, fo & bo) for fi, bi, fo, bo in zip(fwd_in, bwd_in, fwd_out, bwd_out)]


def effective_masks(masks: Mapping[str, np.ndarray], tensors: Iterable[TensorInfo]) -> dict[str, np.ndarray]:
    """The kept weights that lie on some input-to-output path (Vysogorets & Kempe's effective masks).

    Parameters
    ----------
    masks : mapping of str to bool array
        One mask per tensor of ``tensors``.
    tensors : iterable of TensorInfo
        A feed-forward stack (see :func:`feedforward_chain` and the module docstring; biases are ignored).

    Returns
    -------
    dict of str to bool array
        Same names and shapes; ``effective[w]`` is ``mask[w]`` and both the weight's input unit (channel) is
        reachable from the network input and its output unit (channel) reaches the network output.
    """
    tensors = list(tensors)
    links = feedforward_chain(tensors)
    masks = check_masks(masks, tensors)
    ordered = [masks[t.name] for t in tensors]
    out = {}
    for t, m, (act_in, act_out) in zip(tensors, ordered, _unit_activity(ordered, links)):
        extra = (1,) * (m.ndim - 2)
        out[t.name] = m & act_out.reshape((-1, 1) + extra) & act_in.reshape((1, -1) + extra)
    return out


def effective_density(masks: Mapping[str, np.ndarray], tensors: Iterable[TensorInfo]) -> pd.DataFrame:
    """Direct and effective density per layer and in total.

    Parameters
    ----------
    masks : mapping of str to bool array
        One mask per tensor of ``tensors``.
    tensors : iterable of TensorInfo
        A feed-forward stack; others are refused with :class:`ConfigError` (see :func:`feedforward_chain`).

    Returns
    -------
    pandas.DataFrame
        One row per layer in model order, then a row with ``layer = "total"`` over all masked tensors.
        Columns: ``layer``, ``kind``, ``size``, ``kept`` (direct), ``effective_kept``, ``density`` (kept/size),
        ``effective_density`` (effective_kept/size), ``sparsity`` (1 − density), ``effective_sparsity``
        (1 − effective_density), ``compression`` (size/kept), ``effective_compression`` (size/effective_kept;
        ``inf`` when nothing is kept), ``in_units``,
        ``inactive_in_units``, ``out_units``, ``inactive_out_units`` (units — channels for conv — of the layer
        on no input-to-output path; nullable ``Int64``, missing on the total row).
    """
    tensors = list(tensors)
    links = feedforward_chain(tensors)
    masks = check_masks(masks, tensors)
    ordered = [masks[t.name] for t in tensors]
    activity = _unit_activity(ordered, links)
    rows = []
    for t, m, (act_in, act_out) in zip(tensors, ordered, activity):
        extra = (1,) * (m.ndim - 2)
        eff = m & act_out.reshape((-1, 1) + extra) & act_in.reshape((1, -1) + extra)
        rows.append(_density_row(t.name, t.kind, t.size, int(np.count_nonzero(m)), int(np.count_nonzero(eff)))
                    | {"in_units": act_in.size, "inactive_in_units": int(act_in.size - np.count_nonzero(act_in)),
                       "out_units": act_out.size,
                       "inactive_out_units": int(act_out.size - np.count_nonzero(act_out))})
    size = sum(r["size"] for r in rows)
    total = _density_row("total", None, size, sum(r["kept"] for r in rows), sum(r["effective_kept"] for r in rows))
    rows.append(total | {"in_units": None, "inactive_in_units": None, "out_units": None, "inactive_out_units": None})
    df = pd.DataFrame(rows)
    for column in ("in_units", "inactive_in_units", "out_units", "inactive_out_units"):
        df[column] = df[column].astype("Int64")  # integers, missing (<NA>) on the total row
    return df


def _density_row(layer: str, kind: str | None, size: int, kept: int, eff: int) -> dict:
    return {"layer": layer, "kind": kind, "size": size, "kept": kept, "effective_kept": eff,
            "density": density(kept, size), "effective_density": density(eff, size),
            "sparsity": sparsity(kept, size), "effective_sparsity": sparsity(eff, size),
            "compression": compression(kept, size), "effective_compression": compression(eff, size)}


__all__ = ["GROUPINGS", "fully_pruned_probability", "fully_pruned_null", "dispersion_statistic",
           "group_structure", "feedforward_chain", "effective_masks", "effective_density"]
