"""The StyleCompStylize regions table as the job's ``regions``: one row of knobs per region.

Row ``N`` is the knobs ``regionN_matte`` (Cryptomatte names or fnmatch patterns, comma-separated),
``regionN_prompt``, ``regionN_strength``, ``regionN_lora`` and ``regionN_lora_weight``. A row with no
names is unused. Rows are regions in table order, so a later row wins where mattes overlap (the
engine's rule). The region's name (its ``regions.<name>`` channel in the stylized EXR) is made from
its first name: ``car`` -> ``car``, ``bld*`` -> ``bld``, ``Street Lamp`` -> ``Street_Lamp``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import StyleCompNukeError

ROWS = 8  # rows on the gizmo: the engine's limit of regions per shot (stylecomp.jobspec.MAX_REGIONS)
_WILDCARDS = re.compile(r"[*?\[\]]")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]+")


def knob_name(row: int, field: str) -> str:
    """The knob holding ``field`` (matte, prompt, strength, lora, lora_weight, pick) of region row ``row``."""
    return f"region{row}_{field}"


def patterns(text: str) -> list[str]:
    """The names and patterns typed in a matte knob: comma-separated, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def region_name(first_pattern: str, row: int, taken: set[str]) -> str:
    """A region name (``^[A-Za-z_][A-Za-z0-9_]*$``, unique in ``taken``) made from the row's first pattern."""
    base = _NOT_IN_NAME.sub("_", _WILDCARDS.sub("", first_pattern)).strip("_") or f"region{row}"
    if base[0].isdigit():
        base = "_" + base
    name = base
    while name in taken:
        name = f"{base}_{row}" if name == base else name + "_"
    taken.add(name)
    return name


def read_regions(node: Any) -> list[dict[str, Any]]:
    """The job's ``regions`` from the node's table; StyleCompNukeError names the row that cannot be used."""
    regions: list[dict[str, Any]] = []
    taken: set[str] = set()
    for row in range(1, ROWS + 1):
        found = patterns(node[knob_name(row, "matte")].value())
        prompt = node[knob_name(row, "prompt")].value().strip()
        lora = node[knob_name(row, "lora")].value().strip()
        if not found:
            if prompt or lora:
                raise StyleCompNukeError(
                    f"Region {row} has a prompt or LoRA but no Cryptomatte names: type them or pick them with Names..."
                )
            continue
        strength = float(node[knob_name(row, "strength")].value())
        if not 0.0 <= strength <= 1.0:
            raise StyleCompNukeError(f"Region {row} ({', '.join(found)}): strength {strength:g} is outside 0-1.")
        region = {"name": region_name(found[0], row, taken), "select": {"cryptomatte": found}, "strength": strength}
        if prompt:
            region["prompt"] = prompt
        if lora:
            region["loras"] = [{"path": lora, "weight": float(node[knob_name(row, "lora_weight")].value())}]
        regions.append(region)
    return regions


def add_name(node: Any, row: int, name: str) -> None:
    """Add ``name`` to region row ``row``'s names, unless it is there already."""
    knob = node[knob_name(row, "matte")]
    found = patterns(knob.value())
    if name not in found:
        knob.setValue(", ".join([*found, name]))
