"""Scenario tables of the synthetic generator: ``base`` (what a scenario is, the slot-value pools),
``personal`` and ``office`` (each an explicit ``SCENARIOS`` list)."""
