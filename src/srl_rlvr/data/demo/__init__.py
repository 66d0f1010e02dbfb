"""The demo task: seeded multi-step arithmetic word problems with expert steps and an integer answer.

Each problem takes 2-4 operations (+, -, *) by default (``min_ops``/``max_ops``; ``srl-rlvr demo`` uses 1-3 with
``numbers="small"``: operands <= 9, values <= 50). Every expert step does one operation, written with ASCII
operators as ``a op b = c`` plus the running value, and the last step ends with "The answer is N."::

    Mia has 7 boxes with 6 pens in each. First she gives away 9 pens, and then she buys 15 more.
    How many pens does she have now?
    -> "Mia starts with 7 * 6 = 42 pens."
       "After giving away 9, she has 42 - 9 = 33 pens."
       "After buying 15 more, she has 33 + 15 = 48 pens. The answer is 48."

``style="equations"`` writes the same problems with terse steps, one equation each
(``7 * 6 = 42`` / ``42 - 9 = 33`` / ``33 + 15 = 48. The answer is 48.``): the SRL step reward (2M/T
similarity) is then decided by the numbers and operators rather than by the wording around them, which
is what a 135M model can learn in a CPU-sized run (docs/results.md).

Four splits, each from its own seeded stream (``make_demo_splits``; ``write_demo_task(out_dir)`` writes them):

* ``test`` (stream ``srl-rlvr-demo-heldout-{seed}``): the published split. No tuning reads it.
* ``dev`` (stream ``srl-rlvr-demo-test-{seed}``): for choosing recipes and settings. It is the split that was
  called "test" before dev existed (same problems, ids renamed ``demo-dev-NNNN``), which earlier sessions
  tuned on; that is why it is dev now.
* ``transfer`` (stream ``srl-rlvr-demo-transfer-{seed}``): the same operations, number scale and step counts
  in a second phrasing family (other templates, verbs, nouns, subjects, sentence frames and questions;
  rows carry ``"phrasing": "transfer"``) that no training split ever uses::

      A bakery receives 4 racks, each holding 6 loaves. In the morning, a delivery brings 7 more loaves.
      Around noon, customers take home 5 loaves. How many loaves are left?

* ``train`` (stream ``srl-rlvr-demo-train-{seed}``).

Draw order is test, dev, transfer, train, and a split drops any problem text an earlier one holds, so no text
is in two splits. The test split also never takes a text among the first ``RESERVE`` (1000) distinct problems
of the dev and train streams, so a test problem was never in any dev (old test) or train split of up to that
size, and then dev (up to ``RESERVE`` rows) and train (up to about ``RESERVE``) never meet a test text. So
test depends only on (n_test, seed, min_ops, max_ops, numbers); dev only on (n_dev, ...) while
n_dev <= RESERVE; transfer only on (n_transfer, ...) (its phrasing cannot produce a standard text); train also
on the dev and transfer it excludes. The style changes the steps only: both styles draw the same problems.

Modules: ``problems`` (the standard phrasing, number scales, the scene table :data:`SCENES`), ``transfer``
(the transfer phrasing), ``splits`` (streams, splits, files) and ``solver`` (the SIMULATED exact solver the
routing demo uses as its big tier, registered as the ``demo_solver`` route-target backend).
"""

from __future__ import annotations

from srl_rlvr.data.demo.problems import ANSWER_PHRASE, MAX_OPS, MAX_VALUE, MIN_OPS, NUMBER_SCALES, SCENES, STYLES
from srl_rlvr.data.demo.splits import (
    RESERVE,
    SPLITS,
    STREAMS,
    make_demo_splits,
    make_demo_task,
    separate_answer_step,
    write_demo_task,
)

__all__ = [
    "ANSWER_PHRASE", "MAX_OPS", "MAX_VALUE", "MIN_OPS", "NUMBER_SCALES", "RESERVE", "SCENES", "SPLITS", "STREAMS",
    "STYLES", "make_demo_splits", "make_demo_task", "separate_answer_step", "write_demo_task",
]
