import pytest

from tandem.errors import InvalidInput
from tandem.recovery.substances import substance, substances


def test_alcohol_is_counted_in_drinks_and_others_are_not() -> None:
    by_id = {s.id: s for s in substances()}
    assert by_id["alcohol"].drinks
    assert not any(s.drinks for s in substances() if s.id != "alcohol")


def test_an_unknown_substance_names_the_field_and_the_known_ids() -> None:
    with pytest.raises(InvalidInput) as refused:
        substance("glue", field="use.substance")
    assert refused.value.field == "use.substance"
    assert "alcohol" in refused.value.message
