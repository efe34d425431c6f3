"""Fast re-implementations of pm4py calls, bit-identical to pm4py 2.7.23.11 (pinned).

Each public function mirrors exactly one pm4py call (named in its docstring) and returns the
same values, types and dict key order, only faster. Several of them lean on pm4py internals
(row orders, float formulas, private classes of the inductive miner), which is why the pm4py
version is pinned and the tests in ``tests/flows/test_fastpm_*.py`` assert it: an upgrade must
fail loudly there instead of silently changing results.

The input "frame" of the mining functions is the output of ``flows.steps.mining.prepare``:
columns ``case:concept:name`` / ``concept:name`` / ``time:timestamp``, each case one contiguous
block, timestamps non-decreasing within a case, ties in original order.
"""

PM4PY_VERSION = "2.7.23.11"
