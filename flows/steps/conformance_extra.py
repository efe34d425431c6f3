"""Optional conformance outputs of a pmjobs job: the model as BPMN, and alignment fitness.

Both take the :class:`mining.PetriModel` discovered by :func:`mining.discover_model`, so the
BPMN and the alignment figures describe the same model as the PNML and token-replay figures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py

from flows.steps import mining


def to_bpmn_bytes(model: mining.PetriModel) -> bytes:
    """The model as a BPMN 2.0 XML document (with pm4py's auto layout).

    The net is converted back to its process tree first (inductive-miner nets are block
    structured, so this always works for them) and the tree to BPMN: pm4py's tree conversion
    yields proper XOR/AND gateways, while converting the net directly adds a gateway per place.
    A net that is not block structured falls back to the direct net conversion.
    Element ids are random UUIDs (pm4py's choice), so two exports of one model differ in ids.
    """
    net, im, fm = model.net, model.initial_marking, model.final_marking
    try:
        tree = pm4py.convert_to_process_tree(net, im, fm)
    except Exception:  # pm4py only documents that it "may raise" (ValueError in practice)
        bpmn = pm4py.convert_to_bpmn(net, im, fm)
    else:
        bpmn = pm4py.convert_to_bpmn(tree)
    with tempfile.TemporaryDirectory(prefix="pmjobs-bpmn-") as tmp:
        path = Path(tmp) / "model.bpmn"
        pm4py.write_bpmn(bpmn, str(path))
        return path.read_bytes()


def alignments(df: pd.DataFrame, model: mining.PetriModel, max_cases: int) -> dict[str, Any]:
    """Alignment-based fitness (pm4py's ``fitness_alignments``), if the log is small enough.

    Alignments are exact but expensive (an A* search per variant: ~20 s on Sepsis' 1,050
    cases), so logs with more than ``max_cases`` cases are skipped with a reason instead.
    ``percentageFitTraces`` is on pm4py's 0-100 scale; the other values are in [0, 1].
    """
    frame = mining.prepare(df)
    cases = int(frame[mining.CASE].nunique())
    if cases > max_cases:
        return {
            "computed": False,
            "reason": f"log has {cases} cases, more than alignmentsMaxCases={max_cases}",
            "cases": cases,
            "maxCases": max_cases,
        }
    fitness = pm4py.fitness_alignments(frame, model.net, model.initial_marking, model.final_marking)
    return {
        "computed": True,
        "averageTraceFitness": float(fitness["average_trace_fitness"]),
        "logFitness": float(fitness["log_fitness"]),
        "percentageFitTraces": float(fitness["percentage_of_fitting_traces"]),
    }
