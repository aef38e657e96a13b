"""budgetprune: Vision Transformers pruned to a latency budget, certified on the target device.

This package holds what every process shares and none of them needs torch for: settings, the
pydantic models at the boundaries (job spec, arch spec, agent protocol, certificate), the model
catalog, the job store and the command line.
"""

__version__ = "0.1.0"
