"""The public trajectory contract (see docs/data.md).

One JSON object per line:
    id (str), problem (str), exactly one of steps (list[str]) | solution (str) | messages (chat transcript),
    answer (str, optional), domain ("math" | "code" | "agent", default "math"), tests (code, optional).
Unknown extra fields are kept as metadata.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from srl_rlvr.errors import InvalidRecord

PATH_FIELDS = ("steps", "solution", "messages")


class Trajectory(BaseModel):
    """One expert trajectory. Types are strict: a number where a string belongs is an error, not coerced."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str = Field(min_length=1)
    problem: str
    steps: list[str] | None = None
    solution: str | None = None
    messages: list[dict[str, Any]] | None = None
    answer: str | None = None
    domain: Literal["math", "code", "agent"] = "math"
    tests: str | list[str] | None = None

    @field_validator("problem", "solution")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("steps")
    @classmethod
    def _steps_not_blank(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must hold at least one step")
        for i, step in enumerate(v):
            if not step.strip():
                raise ValueError(f"step {i + 1} is empty")
        return v

    @field_validator("messages")
    @classmethod
    def _messages_shape(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is None:
            return v
        for i, m in enumerate(v):
            if not isinstance(m.get("role"), str):
                raise ValueError(f"message {i + 1} has no string 'role'")
        if not any(m["role"] == "assistant" for m in v):
            raise ValueError("holds no assistant message, so there is no expert action")
        return v

    @model_validator(mode="after")
    def _exactly_one_path(self) -> "Trajectory":
        given = [name for name in PATH_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            what = "none" if not given else ", ".join(given)
            raise ValueError(f"exactly one of 'steps', 'solution', 'messages' is required (got {what})")
        return self

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def validate_trajectory(obj: Any, path: str, line: int) -> Trajectory:
    """Validate one decoded JSON value; raise InvalidRecord naming ``path:line`` and the first bad field."""
    if not isinstance(obj, dict):
        raise InvalidRecord(path, line, "<row>", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return Trajectory.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "steps|solution|messages"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        raise InvalidRecord(path, line, loc, msg) from None
