"""Refusal detection: a rule-based pattern detector (``patterns``) and a learned classifier (``classifier``)."""

from saferlhf.refusal.patterns import (
    COMPLIANCE, FULL_REFUSAL, LABELS, PARTIAL_REFUSAL, PATTERNS, RefusalVerdict, detect_refusal, is_refusal,
)

__all__ = ["COMPLIANCE", "FULL_REFUSAL", "PARTIAL_REFUSAL", "LABELS", "PATTERNS", "RefusalVerdict",
           "detect_refusal", "is_refusal"]
