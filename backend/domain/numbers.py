"""Numbers clients send: JSON numbers only.

pydantic's lax mode would also take `true` as 1 and `"5"` as 5, which the schema (`integer`, `number`)
does not allow; an integral float such as `5.0` still counts as an integer, as JSON Schema says.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def json_number(value: Any) -> Any:
    """Let numbers through; refuse booleans and strings before pydantic would convert them."""
    if isinstance(value, bool | str):
        raise PydanticCustomError(
            "number_type",
            "Input should be a JSON number, not {kind}",
            {"kind": "text" if isinstance(value, str) else "a boolean"},
        )
    return value


JsonInt = Annotated[int, BeforeValidator(json_number)]
JsonFloat = Annotated[float, BeforeValidator(json_number)]
# A finite float or an exact integer (the arithmetic job types keep integers exact).
JsonNumber = Annotated[Annotated[float, Field(allow_inf_nan=False)] | int, BeforeValidator(json_number)]
