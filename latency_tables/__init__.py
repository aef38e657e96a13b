"""Latency models of a device: measured lookup tables and the predictors built on them.

Torch-free at import: the API and device agents use the tables and the predictor. The builder
(`latency_tables.build`, torch), the differentiable form (`latency_tables.torch_expect`, torch)
and the analytical FPGA profiles (`latency_tables.fpga`) are imported from their modules.
"""

from latency_tables.linear import LinearMacsPredictor
from latency_tables.predictor import Breakdown, LutPredictor, table_breakdown
from latency_tables.schema import SCHEMA_VERSION, LatencyTable
from latency_tables.store import find_table, load_table, save_table, table_key

__all__ = [
    "SCHEMA_VERSION",
    "Breakdown",
    "LatencyTable",
    "LinearMacsPredictor",
    "LutPredictor",
    "find_table",
    "load_table",
    "save_table",
    "table_breakdown",
    "table_key",
]
