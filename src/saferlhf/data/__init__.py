"""Decoupled preference data (Safe RLHF section 1): records, readers, adapters, validation, split.

Guide: ``docs/data.md``. Entry points: :func:`load_records`, :func:`load_preference_data`,
:func:`load_prompts`, :func:`validate_records`, :func:`split_records`.
"""

from saferlhf.data.loading import PreferenceData, load_preference_data, load_prompts, load_records
from saferlhf.data.readers import DataFormatError
from saferlhf.data.records import PreferenceRecord, Prompt, prompt_messages, prompt_text
from saferlhf.data.split import split_records
from saferlhf.data.validation import DataValidationError, ValidationReport, validate_records

__all__ = [
    "DataFormatError", "DataValidationError", "PreferenceData", "PreferenceRecord", "Prompt", "ValidationReport",
    "load_preference_data", "load_prompts", "load_records", "prompt_messages", "prompt_text", "split_records",
    "validate_records",
]
