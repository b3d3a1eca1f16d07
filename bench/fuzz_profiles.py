"""Hypothesis profiles of the fuzz tests (``tests/*/test_fuzz_*.py``).

* ``ci`` (default): a few hundred derandomised examples per test, so the whole fuzz
  suite stays well under a minute and never flakes.
* ``long``: ``EID_FUZZ_EXAMPLES`` examples per test (default 12 000), random seeds; what
  ``bench/fuzz_long.py`` runs (at least 100 000 cases in total).

Select with ``EID_FUZZ_PROFILE=long``.
"""

from __future__ import annotations

import logging
import os

from hypothesis import HealthCheck, settings

logger = logging.getLogger(__name__)

PROFILE_ENV = "EID_FUZZ_PROFILE"
EXAMPLES_ENV = "EID_FUZZ_EXAMPLES"
CI_EXAMPLES = 300

settings.register_profile(
    "ci", max_examples=CI_EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=int(os.environ.get(EXAMPLES_ENV, "12000")), deadline=None,
    database=None, suppress_health_check=[HealthCheck.too_slow],
)


def load_profile() -> str:
    """Activate the profile named by ``EID_FUZZ_PROFILE`` (``ci`` by default)."""
    name = os.environ.get(PROFILE_ENV, "ci")
    settings.load_profile(name)
    return name


def scaled(examples: int) -> int:
    """``examples`` in the ci profile, the long profile's count otherwise (socket tests)."""
    if os.environ.get(PROFILE_ENV, "ci") == "long":
        return int(settings.get_profile("long").max_examples)
    return examples
