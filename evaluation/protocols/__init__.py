"""Published evaluation protocols as named, versioned objects (``bench protocols``, ``--protocol``).

:mod:`~evaluation.protocols.model` the dataclasses, :mod:`~evaluation.protocols.definitions` the built-ins,
:mod:`~evaluation.protocols.registry` lookup, :mod:`~evaluation.protocols.apply` what ``--protocol`` does to a run,
:mod:`bfrcore.celebrefhq_split` the shipped ``celebref_hq_v1.json`` identity split.
"""

from evaluation.protocols.model import (  # noqa: F401
    MetricSpec,
    Protocol,
    ProtocolError,
    PublishedRow,
    ReferenceRule,
    TestSetRecipe,
)
from evaluation.protocols.registry import get_protocol, list_protocols  # noqa: F401
