"""Modules of pruned ViTs: one concern per file, re-exported here."""

from vitprune.layers.attention import PrunedAttention
from vitprune.layers.block import AttnOnlyBlock, MlpOnlyBlock
from vitprune.layers.tokens import TokenPrunedBlock, TokenSelector, selector_from_block

__all__ = [
    "AttnOnlyBlock",
    "MlpOnlyBlock",
    "PrunedAttention",
    "TokenPrunedBlock",
    "TokenSelector",
    "selector_from_block",
]
