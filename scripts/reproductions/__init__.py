"""The reproductions of ``scripts/reproduce.py`` (docs/reproductions.md): published lottery-ticket results as study
specs, runners and claims stated as code.

``core`` holds what a reproduction is (:class:`~reproductions.core.Claim`, :class:`~reproductions.core.Item`,
:class:`~reproductions.core.Data`), the helpers they share and the registry ``ITEMS``; each other module is one
paper or topic (``lth``: lth, effective, fairness; ``renda``; ``transfer``; ``paganini``; ``masks``) and registers
its items when imported. ``scripts/reproduce.py`` imports them in that order, which is the order of ``--list``.
"""
