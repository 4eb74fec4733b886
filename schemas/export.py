"""Export the contracts as JSON Schema files into `schemas/json/` (checked in).

The files let consumers in other languages validate events; a test fails when they
drift from the models, so run `fiscobridge schemas export` after changing a contract.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.events import EVENT_TYPES
from schemas.invoice import Invoice

JSON_DIR = Path(__file__).parent / "json"
MODELS: tuple[type[BaseModel], ...] = (Invoice, *EVENT_TYPES)


def render() -> dict[str, str]:
    """File name -> file text, for every exported model."""
    return {
        f"{model.__name__}.schema.json": json.dumps(
            model.model_json_schema(mode="serialization"), indent=2, sort_keys=True
        )
        + "\n"
        for model in MODELS
    }


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing, different, or no longer generated."""
    wanted = render()
    present = {p.name for p in directory.glob("*.schema.json")}
    out = [n for n, text in wanted.items() if not (directory / n).exists()
           or (directory / n).read_text() != text]
    return sorted(out + sorted(present - set(wanted)))


def write(directory: Path = JSON_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render()
    for name, text in wanted.items():
        (directory / name).write_text(text)
    for path in directory.glob("*.schema.json"):
        if path.name not in wanted:
            path.unlink()
    return sorted(wanted)
