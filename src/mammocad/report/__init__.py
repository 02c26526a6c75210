"""The paper's Table 1, regenerated from this run's metrics, and a ROC figure (§4.3).

The published values are kept beside this run's so a reader sees both; the paper reports
accuracy, recall and precision only, this report adds ROC AUC with its patient-bootstrap
95 % interval and the initialisation each backbone actually used.

Modules: :mod:`~mammocad.report.table1` (the paper's values, Table 1's rows, the ImageNet
transfer gains, the Markdown), :mod:`~mammocad.report.deployment` (the deployment table,
paper §4.3), :mod:`~mammocad.report.system` (the whole system's section, paper Fig. 1),
:mod:`~mammocad.report.figures` (the ROC, latency and FROC figures) and
:mod:`~mammocad.report.cells` (how values are written in the tables).
"""

from mammocad.report.deployment import VARIANTS, deployment_markdown, deployment_table
from mammocad.report.figures import froc_figure, latency_figure, roc_figure, save_figure
from mammocad.report.system import SYSTEM_LABELS, system_markdown
from mammocad.report.table1 import (
    COLUMNS,
    PAPER_TABLE1,
    build_table,
    table_order,
    to_markdown,
    transfer_gains,
)

__all__ = [
    "COLUMNS",
    "PAPER_TABLE1",
    "SYSTEM_LABELS",
    "VARIANTS",
    "build_table",
    "deployment_markdown",
    "deployment_table",
    "froc_figure",
    "latency_figure",
    "roc_figure",
    "save_figure",
    "system_markdown",
    "table_order",
    "to_markdown",
    "transfer_gains",
]
