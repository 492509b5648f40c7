"""The mapping language: YAML mappings with Segment triggers and field values."""

from segmetro.mapping.load import DEFAULT_MAPPING, MappingError, load_mapping, parse_mapping
from segmetro.mapping.model import MappedEvent, Mapping, MappingSet
from segmetro.mapping.paths import MISSING

__all__ = [
    "DEFAULT_MAPPING", "MISSING", "MappedEvent", "Mapping", "MappingError", "MappingSet",
    "load_mapping", "parse_mapping",
]
