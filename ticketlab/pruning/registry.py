"""The pruning-strategy registry: what a strategy is (:class:`PruningStrategy`) and how it is found by name.

A strategy entry carries its behaviour and properties, so callers ask the entry instead of comparing names:
``strategy.scope == "global"`` (one pool over all tensors), ``strategy.structured`` (whole output channels),
``strategy.needs_rng``, ``strategy.options`` / ``strategy.required_options`` (e.g. ``ln_structured`` needs
``norm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ticketlab.registry import Registry

__all__ = ["STRATEGIES", "PruningStrategy", "StrategyFunc", "get_strategy", "list_strategies", "register_strategy"]

#: Signature of a registered strategy function, called by :func:`~ticketlab.pruning.prune` after validation:
#: ``func(weights, masks, rate, rates, rng, **options) -> dict[str, numpy.ndarray]`` where ``weights`` are numpy
#: arrays, ``masks`` boolean numpy arrays (to be left unmodified), ``rate`` the global rate and ``rates`` the
#: per-tensor rates (``rate`` overridden by ``layer_rates``).
StrategyFunc = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class PruningStrategy:
    """One registered pruning strategy.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"global_magnitude"``.
    description : str
        One line for ``ticketlab strategies``.
    func : callable
        The implementation (see ``StrategyFunc``); call it through :func:`~ticketlab.pruning.prune`, which
        validates the inputs.
    scope : str
        ``"layer"``: each tensor is pruned at its own rate (``layer_rates`` allowed); ``"global"``: all tensors
        form one pool pruned at ``rate`` (``layer_rates`` rejected).
    structured : bool
        Whether whole output channels/units (slices ``w[c]`` along dim 0) are pruned instead of single weights;
        ``rate`` then counts channels.
    needs_rng : bool
        Whether ``rng`` is required.
    options : tuple of str
        Names of the extra keyword options the strategy accepts (e.g. ``("norm",)``).
    required_options : tuple of str
        Those of ``options`` that must be given (``ln_structured`` cannot rank channels without ``norm``).
    """

    name: str
    description: str
    func: StrategyFunc
    scope: str
    structured: bool = False
    needs_rng: bool = False
    options: tuple[str, ...] = ()
    required_options: tuple[str, ...] = ()

    @property
    def pooled(self) -> bool:
        """True for the ``global_*`` strategies: all tensors form one pool pruned at one rate."""
        return self.scope == "global"


#: The registered strategies, by name, in registration order.
STRATEGIES: Registry[PruningStrategy] = Registry("pruning strategy")


def register_strategy(
    name: str,
    description: str,
    *,
    scope: str,
    structured: bool = False,
    needs_rng: bool = False,
    options: tuple[str, ...] = (),
    required_options: tuple[str, ...] = (),
) -> Callable[[StrategyFunc], StrategyFunc]:
    """Decorator adding a strategy function to the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry name; must be new (``ValueError`` otherwise).
    description : str
        One line (no newline) shown by ``ticketlab strategies``.
    scope : {"layer", "global"}
        See :class:`PruningStrategy`.
    structured, needs_rng, options, required_options
        See :class:`PruningStrategy`.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if "\n" in description or not description.strip():
        raise ValueError("a strategy description is one non-empty line")
    if not set(required_options) <= set(options):
        raise ValueError("required_options must be among options")

    def decorator(func: StrategyFunc) -> StrategyFunc:
        STRATEGIES.register(
            name,
            PruningStrategy(
                name=name,
                description=description,
                func=func,
                scope=scope,
                structured=structured,
                needs_rng=needs_rng,
                options=tuple(options),
                required_options=tuple(required_options),
            ),
        )
        return func

    return decorator


def list_strategies() -> list[str]:
    """Names of the registered strategies, in registration order.

    Returns
    -------
    list of str
        Use :func:`get_strategy` for each one's description and properties.
    """
    return STRATEGIES.names()


def get_strategy(name: str) -> PruningStrategy:
    """The registered strategy called ``name``.

    Raises
    ------
    ConfigError
        If no strategy has that name; the one-line message lists the valid names.
    """
    return STRATEGIES.get(name)
